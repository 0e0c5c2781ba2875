// Signed URLs. signature = base64url(HMAC-SHA256(key, salt ‖ METHOD ‖ " " ‖ path-and-query-before-sig)),
// carried as the LAST query parameter `sig`. Signing the raw path and query as sent (not a
// re-encoded form) means there is exactly one byte string to agree on; the method in front means a
// URL signed for one method does nothing under another (an upload URL cannot delete). HEAD is
// checked as GET: it reads what GET reads. Optional parameters inside the signed part: `exp` (Unix
// seconds) bounds a URL's lifetime; `sha256` (64 hex digits) binds a PUT to one body (signed.ts).
// Several keys verify (rotation: add the new key first, roll out signers, then drop the old key);
// the first one signs.
//
// The scheme of pixtable 0.1.0 signed the path and query alone. Such signatures no longer verify:
// any of them may have been made for an upload, and nothing in the URL says which. They are
// recognised only to say so in the error (docs/http.md, "Migrating from unsigned methods").
import { createHmac, timingSafeEqual } from 'node:crypto';
import { PixtableError } from '../errors.js';
import type { SigningKey } from '../config/env.js';

/** The methods a signature can be made for: HEAD is signed and checked as GET. */
export const SIGNED_METHODS = ['GET', 'PUT', 'DELETE'] as const;
export type SignedMethod = (typeof SIGNED_METHODS)[number];

const SIG_RE = /[?&]sig=([A-Za-z0-9_-]{43})$/;

function mac(k: SigningKey, message: string): Buffer {
  return createHmac('sha256', k.key).update(k.salt).update(message, 'latin1').digest();
}

/** The method a request is checked under, or undefined for one no signature covers. */
function signedMethod(method: string): SignedMethod | undefined {
  const m = method === 'HEAD' ? 'GET' : method;
  return (SIGNED_METHODS as readonly string[]).includes(m) ? (m as SignedMethod) : undefined;
}

function macFor(k: SigningKey, method: SignedMethod, pathAndQuery: string): Buffer {
  return mac(k, `${method} ${pathAndQuery}`);
}

/**
 * Appends `sig` to a path-and-query (which must already be percent-encoded as it will be sent),
 * signed for `method` (default GET, which also allows HEAD).
 */
export function signUrl(
  pathAndQuery: string,
  key: SigningKey,
  method: SignedMethod | 'HEAD' = 'GET',
): string {
  const sig = macFor(key, signedMethod(method)!, pathAndQuery).toString('base64url');
  return `${pathAndQuery}${pathAndQuery.includes('?') ? '&' : '?'}sig=${sig}`;
}

function anyKeyMatches(
  keys: readonly SigningKey[],
  given: Buffer,
  macOf: (k: SigningKey) => Buffer,
): boolean {
  let ok = false;
  // timingSafeEqual: the comparison takes the same time wherever the first differing byte is.
  for (const k of keys) if (timingSafeEqual(macOf(k), given)) ok = true;
  return ok;
}

/**
 * Why a signature that did not verify for `method` does not: signed for another method, or by
 * the scheme without a method. Only on the failure path, so a valid request pays one HMAC a key.
 */
function mismatch(
  keys: readonly SigningKey[],
  given: Buffer,
  method: SignedMethod,
  message: string,
): PixtableError {
  for (const other of SIGNED_METHODS) {
    if (other !== method && anyKeyMatches(keys, given, (k) => macFor(k, other, message)))
      return new PixtableError('SIGNATURE_INVALID', `the URL is signed for ${other}, not ${method}`);
  }
  if (anyKeyMatches(keys, given, (k) => mac(k, message)))
    return new PixtableError(
      'SIGNATURE_INVALID',
      `signed by the scheme without the method, which is no longer accepted; sign "${method} <path and query>"`,
    );
  return new PixtableError('SIGNATURE_INVALID');
}

/**
 * Verifies the raw request target (`req.url`) of a `method` request. Throws SIGNATURE_REQUIRED
 * when there is no `sig`, SIGNATURE_INVALID when no key matches for this method, SIGNATURE_EXPIRED
 * after `exp`. Returns when the URL expires (ms since the epoch; Infinity without `exp`).
 */
export function verifyUrl(
  method: string,
  rawUrl: string,
  keys: readonly SigningKey[],
  nowMs: number,
): number {
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
  const signed = signedMethod(method);
  if (signed === undefined) throw new PixtableError('SIGNATURE_INVALID', `no signature covers ${method}`);
  const message = rawUrl.slice(0, m.index);
  const given = Buffer.from(m[1], 'base64url');
  if (!anyKeyMatches(keys, given, (k) => macFor(k, signed, message)))
    throw mismatch(keys, given, signed, message);
  // exp is checked only after the signature, so a forged exp cannot be probed.
  let expiresAt = Infinity;
  for (const exp of signedParams(message, 'exp')) {
    const s = Number(exp);
    if (!Number.isFinite(s) || s * 1000 < nowMs) throw new PixtableError('SIGNATURE_EXPIRED');
    expiresAt = Math.min(expiresAt, s * 1000);
  }
  return expiresAt;
}

/** Every value of query parameter `name` in a path-and-query, as written (not decoded). */
export function signedParams(pathAndQuery: string, name: string): string[] {
  const q = pathAndQuery.indexOf('?');
  if (q < 0) return [];
  const prefix = `${name}=`;
  return pathAndQuery
    .slice(q + 1)
    .split('&')
    .filter((p) => p.startsWith(prefix))
    .map((p) => p.slice(prefix.length));
}
