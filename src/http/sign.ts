// Signed URLs. signature = base64url(HMAC-SHA256(key, salt ‖ path-and-query-before-sig)), carried
// as the LAST query parameter `sig`. Signing the raw path and query as sent (not a re-encoded
// form) means there is exactly one byte string to agree on. An optional `exp` parameter (Unix
// seconds) inside the signed part bounds a URL's lifetime. Several keys verify (rotation: add the
// new key first, roll out signers, then drop the old key); the first one signs.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { PixtableError } from '../errors.js';
import type { SigningKey } from '../config/env.js';

const SIG_RE = /[?&]sig=([A-Za-z0-9_-]{43})$/;

function mac(k: SigningKey, message: string): Buffer {
  return createHmac('sha256', k.key).update(k.salt).update(message, 'latin1').digest();
}

/** Appends `sig` to a path-and-query (which must already be percent-encoded as it will be sent). */
export function signUrl(pathAndQuery: string, key: SigningKey): string {
  const sig = mac(key, pathAndQuery).toString('base64url');
  return `${pathAndQuery}${pathAndQuery.includes('?') ? '&' : '?'}sig=${sig}`;
}

/**
 * Verifies the raw request target (`req.url`). Throws SIGNATURE_REQUIRED when there is no
 * `sig`, SIGNATURE_INVALID when no key matches, SIGNATURE_EXPIRED after `exp`. Returns when the
 * URL expires (ms since the epoch; Infinity without `exp`).
 */
export function verifyUrl(rawUrl: string, keys: readonly SigningKey[], nowMs: number): number {
  const m = SIG_RE.exec(rawUrl);
  if (!m || m[1] === undefined) {
    if (/[?&]sig=/.test(rawUrl)) {
      throw new PixtableError(
        'SIGNATURE_INVALID',
        'sig must be the last query parameter, 43 base64url characters',
      );
    }
    throw new PixtableError('SIGNATURE_REQUIRED');
  }
  const message = rawUrl.slice(0, m.index);
  const given = Buffer.from(m[1], 'base64url');
  let ok = false;
  for (const k of keys) {
    // timingSafeEqual: the comparison takes the same time wherever the first differing byte is.
    if (timingSafeEqual(mac(k, message), given)) ok = true;
  }
  if (!ok) throw new PixtableError('SIGNATURE_INVALID');
  // exp is checked only after the signature, so a forged exp cannot be probed.
  let expiresAt = Infinity;
  const q = message.indexOf('?');
  if (q >= 0) {
    for (const part of message.slice(q + 1).split('&')) {
      if (part.startsWith('exp=')) {
        const exp = Number(part.slice(4));
        if (!Number.isFinite(exp) || exp * 1000 < nowMs) throw new PixtableError('SIGNATURE_EXPIRED');
        expiresAt = Math.min(expiresAt, exp * 1000);
      }
    }
  }
  return expiresAt;
}
