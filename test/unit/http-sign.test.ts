import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { signUrl, verifyUrl } from '../../src/http/sign.js';
import { PixtableError } from '../../src/errors.js';

const k1 = { key: Buffer.alloc(32, 1), salt: Buffer.from('s1') };
const k2 = { key: Buffer.alloc(32, 2), salt: Buffer.from('s2') };

function rejects(url: string, keys: (typeof k1)[], code: string, now = 0, method = 'GET', message?: RegExp) {
  assert.throws(
    () => verifyUrl(method, url, keys, now),
    (e: unknown) => e instanceof PixtableError && e.code === code && (!message || message.test(e.message)),
  );
}

const hmac = (k: typeof k1, message: string) =>
  createHmac('sha256', k.key)
    .update(Buffer.concat([k.salt, Buffer.from(message)]))
    .digest('base64url');

test('sig is HMAC-SHA256(key, salt ‖ METHOD SP path-and-query) in base64url, as the last parameter', () => {
  const url = signUrl('/v1/pixels/thumb-64/a.jpg?rect=0,0,1,1', k1);
  assert.equal(
    url,
    `/v1/pixels/thumb-64/a.jpg?rect=0,0,1,1&sig=${hmac(k1, 'GET /v1/pixels/thumb-64/a.jpg?rect=0,0,1,1')}`,
  );
  assert.equal(
    signUrl('/v1/sources/a.jpg', k1, 'PUT'),
    `/v1/sources/a.jpg?sig=${hmac(k1, 'PUT /v1/sources/a.jpg')}`,
  );
  assert.match(signUrl('/x', k1), /^\/x\?sig=[A-Za-z0-9_-]{43}$/);
  verifyUrl('GET', url, [k1], 0);
});

test('the method is signed: a URL signed for one method is refused for another, saying which it is for', () => {
  const put = signUrl('/v1/sources/a.jpg', k1, 'PUT');
  verifyUrl('PUT', put, [k1], 0);
  rejects(put, [k1], 'SIGNATURE_INVALID', 0, 'DELETE', /signed for PUT, not DELETE/);
  rejects(put, [k1], 'SIGNATURE_INVALID', 0, 'GET', /signed for PUT, not GET/);
  const del = signUrl('/v1/sources/a.jpg', k1, 'DELETE');
  verifyUrl('DELETE', del, [k1], 0);
  rejects(del, [k1], 'SIGNATURE_INVALID', 0, 'PUT', /signed for DELETE/);
  const get = signUrl('/v1/sources/a.jpg', k1);
  rejects(get, [k1], 'SIGNATURE_INVALID', 0, 'PUT', /signed for GET/);
  rejects(get, [k1], 'SIGNATURE_INVALID', 0, 'DELETE');
  // HEAD reads what GET reads: checked as GET, either way it was signed
  verifyUrl('HEAD', get, [k1], 0);
  verifyUrl('HEAD', signUrl('/v1/sources/a.jpg', k1, 'HEAD'), [k1], 0);
  assert.equal(signUrl('/x', k1, 'HEAD'), signUrl('/x', k1, 'GET'));
  // methods no signature covers
  rejects(get, [k1], 'SIGNATURE_INVALID', 0, 'POST', /no signature covers POST/);
  rejects(get, [k1], 'SIGNATURE_INVALID', 0, 'get');
});

test('signatures of the scheme without the method no longer verify, and the error says so', () => {
  const target = '/v1/thumbnails/t/a.jpg?type=webp';
  const old = `${target}&sig=${hmac(k1, target)}`;
  for (const method of ['GET', 'HEAD', 'PUT', 'DELETE'])
    rejects(old, [k1], 'SIGNATURE_INVALID', 0, method, /scheme without the method/);
  // with a key the server does not have: only the plain refusal
  rejects(`${target}&sig=${hmac(k2, target)}`, [k1], 'SIGNATURE_INVALID', 0, 'GET', /does not match$/);
});

test('any configured key verifies (rotation); others do not', () => {
  const byOld = signUrl('/v1/thumbnails/t/a.jpg', k2);
  verifyUrl('GET', byOld, [k1, k2], 0);
  rejects(byOld, [k1], 'SIGNATURE_INVALID');
  const putByOld = signUrl('/v1/sources/a.jpg', k2, 'PUT');
  verifyUrl('PUT', putByOld, [k1, k2], 0);
  rejects(putByOld, [k1, k2], 'SIGNATURE_INVALID', 0, 'DELETE', /signed for PUT/);
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
  verifyUrl('GET', url, [k1], 999_000);
  rejects(url, [k1], 'SIGNATURE_EXPIRED', 1_000_001);
  rejects(url.replace('exp=1000', 'exp=9999'), [k1], 'SIGNATURE_INVALID', 1_000_001);
});
