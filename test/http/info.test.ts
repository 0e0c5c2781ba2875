// GET /v1/info/*key: the same answer as cache.info(), the usual 404 for an unknown key, signed
// URLs enforced like every other GET, and no decode for a key nobody asked for yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, addSource, makeImage, errorOf } from './helpers.js';
import { signUrl } from '../../src/http/sign.js';

test('GET /v1/info agrees with cache.info, before and after the key is decoded', async () => {
  const f = await fixture();
  try {
    await addSource(f, 'dir/cat.png', await makeImage('png', 120, 80));
    let r = await f.app.inject('/v1/info/dir/cat.png');
    assert.equal(r.statusCode, 200, r.body);
    assert.match(String(r.headers['content-type']), /application\/json/);
    assert.equal(r.headers['cache-control'], 'no-cache');
    const before = r.json();
    assert.deepEqual(before, await f.cache.info('dir/cat.png'));
    assert.deepEqual(before.formats, { small: null, box: null }, 'info does not decode');
    assert.equal(before.placeholder, undefined);
    assert.deepEqual(before.source, { bytes: before.source.bytes, width: 120, height: 80, type: 'png' });
    assert.ok(f.cache.stats().formats.every((s) => s.decodes === 0));

    assert.equal((await f.app.inject('/v1/thumbnails/box/dir/cat.png?type=png')).statusCode, 200);
    r = await f.app.inject('/v1/info/dir/cat.png');
    const after = r.json();
    assert.deepEqual(after, await f.cache.info('dir/cat.png'));
    assert.deepEqual(after.formats, { small: null, box: { width: 48, height: 32 } });
    assert.match(after.placeholder!.thumbHash, /^[A-Za-z0-9+/]+=*$/);
    assert.match(after.placeholder!.dominantColor, /^#[0-9a-f]{6}$/);
  } finally {
    await f.close();
  }
});

test('GET /v1/info after the source changed on disk: the stale entries and placeholder are not reported, and a GET brings them back', async () => {
  const f = await fixture({ open: { revalidate: true, revalidateMs: 0 } });
  try {
    await addSource(f, 'cat.png', await makeImage('png', 120, 80));
    assert.equal((await f.app.inject('/v1/thumbnails/box/cat.png?type=png')).statusCode, 200);
    const before = (await f.app.inject('/v1/info/cat.png')).json();
    assert.deepEqual(before.formats.box, { width: 48, height: 32 });
    assert.ok(before.placeholder);
    // someone replaces the file (another size, so a stale answer would show)
    await addSource(f, 'cat.png', await makeImage('png', 60, 90));
    const r = await f.app.inject('/v1/info/cat.png');
    assert.equal(r.statusCode, 200, r.body);
    const changed = r.json();
    assert.deepEqual(changed, await f.cache.info('cat.png'));
    assert.deepEqual(changed.source, { bytes: changed.source.bytes, width: 60, height: 90, type: 'png' });
    assert.deepEqual(
      changed.formats,
      { small: null, box: null },
      'entries of the old picture are not cached ones',
    );
    assert.equal(changed.placeholder, undefined, 'no placeholder of the old picture');
    assert.equal((await f.app.inject('/v1/thumbnails/box/cat.png?type=png')).statusCode, 200);
    const after = (await f.app.inject('/v1/info/cat.png')).json();
    assert.deepEqual(after.formats.box, { width: 32, height: 48 });
    assert.ok(after.placeholder);
    assert.notEqual(after.placeholder.thumbHash, before.placeholder.thumbHash);
  } finally {
    await f.close();
  }
});

test('GET /v1/info: 404 SOURCE_NOT_FOUND for an unknown key, 400 for a bad one', async () => {
  const f = await fixture();
  try {
    let r = await f.app.inject('/v1/info/none.png');
    assert.equal(r.statusCode, 404);
    assert.equal(errorOf(r.body).code, 'SOURCE_NOT_FOUND');
    r = await f.app.inject(`/v1/info/${'x'.repeat(300)}.png`);
    assert.equal(r.statusCode, 400, r.body);
    assert.equal(errorOf(r.body).code, 'INVALID_KEY');
  } finally {
    await f.close();
  }
});

test('GET /v1/info needs a valid signature when signing is on', async () => {
  const k = { key: Buffer.alloc(32, 5), salt: Buffer.from('s') };
  const f = await fixture({ config: { signingKeys: [k] } });
  try {
    await addSource(f, 'cat.png', await makeImage('png'));
    const unsigned = await f.app.inject('/v1/info/cat.png');
    assert.equal(unsigned.statusCode, 403, unsigned.body);
    const forged = await f.app.inject(
      signUrl('/v1/info/cat.png', { key: Buffer.alloc(32, 6), salt: Buffer.from('s') }),
    );
    assert.equal(forged.statusCode, 403);
    const ok = await f.app.inject(signUrl('/v1/info/cat.png', k));
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().key, 'cat.png');
  } finally {
    await f.close();
  }
});

test('the OpenAPI document describes /v1/info', async () => {
  const f = await fixture();
  try {
    const doc = (await f.app.inject('/openapi.json')).json();
    const path = Object.keys(doc.paths).find((p) => p.startsWith('/v1/info/'));
    assert.ok(path, Object.keys(doc.paths).join(' '));
    assert.ok(doc.paths[path].get.responses['200']);
  } finally {
    await f.close();
  }
});
