import { test, before, after } from 'node:test';
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
  r = await f.app.inject({ method: 'PUT', url: signUrl('/v1/sources/s.png', newKey), payload: img });
  assert.equal(r.statusCode, 201);
  r = await f.app.inject({ method: 'DELETE', url: '/v1/sources/s.png' });
  assert.equal(r.statusCode, 403);
  // a signature for one path does not authorise another
  r = await f.app.inject({
    method: 'DELETE',
    url: signUrl('/v1/sources/s.png', newKey).replace('s.png', 'cat.png'),
  });
  assert.equal(r.statusCode, 403);
  for (const u of ['/healthz', '/readyz', '/metrics', '/v1/formats', '/openapi.json']) {
    assert.equal((await f.app.inject(u)).statusCode, 200, u);
  }
});
