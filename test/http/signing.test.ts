import { test, before, after } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { fixture, addSource, makeImage, errorOf, type Fixture } from './helpers.js';
import { signUrl } from '../../src/http/sign.js';

const oldKey = { key: Buffer.alloc(32, 7), salt: Buffer.from('old') };
const newKey = { key: Buffer.alloc(32, 9), salt: Buffer.from('new') };
let f: Fixture;
before(async () => {
  f = await fixture({ config: { signingKeys: [newKey, oldKey] } });
  await addSource(f, 'cat.png', await makeImage('png'));
});
after(() => f.close());

test('signed requests pass, with either key (rotation)', async () => {
  for (const k of [newKey, oldKey]) {
    assert.equal((await f.app.inject(signUrl('/v1/pixels/small/cat.png', k))).statusCode, 200);
    assert.equal((await f.app.inject(signUrl('/v1/pixels/small/cat.png?rect=0,0,2,2', k))).statusCode, 200);
    assert.equal((await f.app.inject(signUrl('/v1/thumbnails/small/cat.png?type=png', k))).statusCode, 200);
  }
});

test('unsigned 403 SIGNATURE_REQUIRED; tampered or foreign-key 403 SIGNATURE_INVALID; expired 403', async () => {
  let r = await f.app.inject('/v1/pixels/small/cat.png');
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_REQUIRED');
  const good = signUrl('/v1/pixels/small/cat.png?rect=0,0,2,2', newKey);
  r = await f.app.inject(good.replace('rect=0,0,2,2', 'rect=0,0,4,4'));
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  r = await f.app.inject(
    signUrl('/v1/pixels/small/cat.png', { key: Buffer.alloc(32, 1), salt: Buffer.from('x') }),
  );
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  r = await f.app.inject(
    signUrl(`/v1/pixels/small/cat.png?exp=${Math.floor(Date.now() / 1000) - 10}`, newKey),
  );
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_EXPIRED');
  r = await f.app.inject(
    signUrl(`/v1/pixels/small/cat.png?exp=${Math.floor(Date.now() / 1000) + 60}`, newKey),
  );
  assert.equal(r.statusCode, 200);
});

test('uploads and deletes need signatures too; operations routes do not', async () => {
  const img = await makeImage('png');
  let r = await f.app.inject({ method: 'PUT', url: '/v1/sources/s.png', payload: img });
  assert.equal(r.statusCode, 403);
  r = await f.app.inject({ method: 'PUT', url: signUrl('/v1/sources/s.png', newKey, 'PUT'), payload: img });
  assert.equal(r.statusCode, 201);
  r = await f.app.inject({ method: 'DELETE', url: '/v1/sources/s.png' });
  assert.equal(r.statusCode, 403);
  // a signature for one path does not authorise another
  r = await f.app.inject({
    method: 'DELETE',
    url: signUrl('/v1/sources/s.png', newKey, 'DELETE').replace('s.png', 'cat.png'),
  });
  assert.equal(r.statusCode, 403);
  for (const u of ['/healthz', '/readyz', '/metrics', '/v1/formats', '/openapi.json']) {
    assert.equal((await f.app.inject(u)).statusCode, 200, u);
  }
});

test('the method is signed: an upload URL neither deletes nor reads, a read URL neither uploads nor deletes', async () => {
  const img = await makeImage('png', 20, 20, 1);
  const putUrl = signUrl('/v1/sources/m.png', newKey, 'PUT');
  assert.equal((await f.app.inject({ method: 'PUT', url: putUrl, payload: img })).statusCode, 201);
  // the finding: the same URL deleted the source
  let r = await f.app.inject({ method: 'DELETE', url: putUrl });
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  assert.match(errorOf(r.body).message, /signed for PUT, not DELETE/);
  assert.equal(
    (await f.app.inject(signUrl('/v1/pixels/small/m.png', newKey))).statusCode,
    200,
    'still there',
  );
  r = await f.app.inject({ method: 'PUT', url: signUrl('/v1/sources/m.png', newKey), payload: img });
  assert.equal(r.statusCode, 403, 'a GET signature does not upload');
  r = await f.app.inject({ method: 'DELETE', url: signUrl('/v1/sources/m.png', newKey) });
  assert.equal(r.statusCode, 403, 'a GET signature does not delete');
  r = await f.app.inject({ method: 'GET', url: signUrl('/v1/pixels/small/m.png', newKey, 'PUT') });
  assert.equal(r.statusCode, 403, 'a PUT signature does not read');
  // HEAD is checked as GET
  r = await f.app.inject({ method: 'HEAD', url: signUrl('/v1/pixels/small/m.png', newKey) });
  assert.equal(r.statusCode, 200);
  r = await f.app.inject({ method: 'DELETE', url: signUrl('/v1/sources/m.png', newKey, 'DELETE') });
  assert.equal(r.statusCode, 204);
});

test('a URL signed the old way (path and query, no method) is refused with a message saying so', async () => {
  const { createHmac } = await import('node:crypto');
  const target = '/v1/pixels/small/cat.png';
  const old = `${target}?sig=${createHmac('sha256', newKey.key).update(newKey.salt).update(target).digest('base64url')}`;
  const r = await f.app.inject(old);
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  assert.match(errorOf(r.body).message, /scheme without the method/);
});

test('sha256= in a signed PUT URL binds it to one body: other bytes are refused and nothing is stored', async () => {
  const img = await makeImage('png', 24, 24, 2);
  const other = await makeImage('png', 24, 24, 3);
  const digest = createHash('sha256').update(img).digest('hex');
  const url = signUrl(`/v1/sources/d.png?sha256=${digest}`, newKey, 'PUT');
  // the finding: a PUT URL stored whatever bytes came with it
  let r = await f.app.inject({ method: 'PUT', url, payload: other });
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'CONTENT_DIGEST_MISMATCH');
  assert.match(errorOf(r.body).message, new RegExp(createHash('sha256').update(other).digest('hex')));
  assert.equal((await f.app.inject(signUrl('/v1/pixels/small/d.png', newKey))).statusCode, 404, 'not stored');
  r = await f.app.inject({ method: 'PUT', url, payload: Buffer.concat([img, Buffer.from('x')]) });
  assert.equal(errorOf(r.body).code, 'CONTENT_DIGEST_MISMATCH', 'one byte more');
  r = await f.app.inject({ method: 'PUT', url, payload: img });
  assert.equal(r.statusCode, 201);
  // upper-case hex is the same digest; the digest is signed like the rest of the query
  const upper = signUrl(`/v1/sources/d.png?sha256=${digest.toUpperCase()}`, newKey, 'PUT');
  assert.equal((await f.app.inject({ method: 'PUT', url: upper, payload: img })).statusCode, 200);
  r = await f.app.inject({
    method: 'PUT',
    url: url.replace(digest, createHash('sha256').update(other).digest('hex')),
    payload: other,
  });
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID', 'the digest cannot be swapped');
  r = await f.app.inject({
    method: 'PUT',
    url: signUrl('/v1/sources/d.png?sha256=abc', newKey, 'PUT'),
    payload: img,
  });
  assert.equal(r.statusCode, 400);
  assert.equal(errorOf(r.body).code, 'INVALID_PARAMETER');
  // without sha256 a PUT URL takes any body (documented): the signer chooses
  r = await f.app.inject({ method: 'PUT', url: signUrl('/v1/sources/d.png', newKey, 'PUT'), payload: other });
  assert.equal(r.statusCode, 200);
});
