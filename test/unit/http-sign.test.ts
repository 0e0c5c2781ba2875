import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { signUrl, verifyUrl } from '../../src/http/sign.js';
import { PixtableError } from '../../src/errors.js';

const k1 = { key: Buffer.alloc(32, 1), salt: Buffer.from('s1') };
const k2 = { key: Buffer.alloc(32, 2), salt: Buffer.from('s2') };

function rejects(url: string, keys: (typeof k1)[], code: string, now = 0) {
  assert.throws(
    () => verifyUrl(url, keys, now),
    (e: unknown) => e instanceof PixtableError && e.code === code,
  );
}

test('sig is HMAC-SHA256(key, salt ‖ path-and-query) in base64url, as the last parameter', () => {
  const url = signUrl('/v1/pixels/thumb-64/a.jpg?rect=0,0,1,1', k1);
  const expected = createHmac('sha256', k1.key)
    .update(Buffer.concat([k1.salt, Buffer.from('/v1/pixels/thumb-64/a.jpg?rect=0,0,1,1')]))
    .digest('base64url');
  assert.equal(url, `/v1/pixels/thumb-64/a.jpg?rect=0,0,1,1&sig=${expected}`);
  assert.match(signUrl('/x', k1), /^\/x\?sig=[A-Za-z0-9_-]{43}$/);
  verifyUrl(url, [k1], 0);
});

test('any configured key verifies (rotation); others do not', () => {
  const byOld = signUrl('/v1/thumbnails/t/a.jpg', k2);
  verifyUrl(byOld, [k1, k2], 0);
  rejects(byOld, [k1], 'SIGNATURE_INVALID');
});

test('missing, misplaced and tampered signatures are refused', () => {
  rejects('/v1/pixels/t/a.jpg', [k1], 'SIGNATURE_REQUIRED');
  const good = signUrl('/v1/pixels/t/a.jpg?rect=0,0,1,1', k1);
  rejects(good.replace('a.jpg', 'b.jpg'), [k1], 'SIGNATURE_INVALID');
  rejects(good.replace('rect=0,0,1,1', 'rect=0,0,2,2'), [k1], 'SIGNATURE_INVALID');
  rejects(`${good}&rect=5,5,1,1`, [k1], 'SIGNATURE_INVALID'); // sig not last
  const sig = good.slice(-43);
  const flipped = good.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A');
  rejects(flipped, [k1], 'SIGNATURE_INVALID');
  rejects(good.slice(0, -1), [k1], 'SIGNATURE_INVALID'); // truncated sig
  // The salt is part of the message: same key, other salt does not verify.
  rejects(good, [{ key: k1.key, salt: Buffer.from('other') }], 'SIGNATURE_INVALID');
});

test('exp bounds the lifetime and is covered by the signature', () => {
  const url = signUrl('/v1/pixels/t/a.jpg?exp=1000', k1);
  verifyUrl(url, [k1], 999_000);
  rejects(url, [k1], 'SIGNATURE_EXPIRED', 1_000_001);
  rejects(url.replace('exp=1000', 'exp=9999'), [k1], 'SIGNATURE_INVALID', 1_000_001);
});
