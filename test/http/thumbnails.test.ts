import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { fixture, addSource, makeImage, errorOf, type Fixture } from './helpers.js';
import { sharpEncode, type EncodeFn } from '../../src/http/encode.js';

let f: Fixture;
const encodes: string[] = [];
// Counts real encodes so the test can tell a cache hit from a fresh encode.
const counting: EncodeFn = (v, type, q) => {
  encodes.push(`${v.width}x${v.height}:${type}`);
  return sharpEncode(v, type, q);
};

before(async () => {
  f = await fixture({ encode: counting });
  await addSource(f, 'cat.png', await makeImage('png'));
});
after(() => f.close());

test('?type picks the encoding; the image has the entry size', async () => {
  for (const [type, mime, fmt] of [
    ['webp', 'image/webp', 'webp'],
    ['png', 'image/png', 'png'],
    ['jpeg', 'image/jpeg', 'jpeg'],
    ['avif', 'image/avif', 'heif'],
  ] as const) {
    const r = await f.app.inject(`/v1/thumbnails/small/cat.png?type=${type}`);
    assert.equal(r.statusCode, 200, type);
    assert.equal(r.headers['content-type'], mime);
    assert.equal(r.headers.vary, undefined, 'an explicit type does not vary by Accept');
    assert.equal(Number(r.headers['content-length']), r.rawPayload.length);
    const m = await sharp(r.rawPayload).metadata();
    assert.equal(m.format, fmt);
    assert.equal(m.width, 32);
    assert.equal(m.height, 32);
  }
});

test('Accept negotiation: WebP/AVIF when named, PNG for alpha formats otherwise; Vary: Accept', async () => {
  let r = await f.app.inject({
    url: '/v1/thumbnails/small/cat.png',
    headers: { accept: 'image/avif,image/webp,*/*' },
  });
  assert.equal(r.headers['content-type'], 'image/webp');
  assert.equal(r.headers.vary, 'Accept');
  r = await f.app.inject({ url: '/v1/thumbnails/small/cat.png', headers: { accept: '*/*' } });
  assert.equal(r.headers['content-type'], 'image/png'); // rgba8 keeps alpha
  r = await f.app.inject({ url: '/v1/thumbnails/box/cat.png', headers: { accept: '*/*' } });
  assert.equal(r.headers['content-type'], 'image/jpeg'); // rgb8 has none
  const m = await sharp(r.rawPayload).metadata();
  assert.equal(m.width, 48);
  assert.equal(m.height, 32);
});

test('406 when nothing acceptable can be produced; 400 for an unknown ?type', async () => {
  let r = await f.app.inject({ url: '/v1/thumbnails/small/cat.png', headers: { accept: 'image/gif' } });
  assert.equal(r.statusCode, 406);
  assert.equal(errorOf(r.body).code, 'NOT_ACCEPTABLE');
  r = await f.app.inject('/v1/thumbnails/small/cat.png?type=gif');
  assert.equal(r.statusCode, 400);
  assert.equal(errorOf(r.body).code, 'INVALID_PARAMETER');
});

test('a hot thumbnail is encoded once; ETag per type; 304 on If-None-Match', async () => {
  await addSource(f, 'hot.png', await makeImage('png', 50, 50, 3));
  const before = encodes.length;
  const a = await f.app.inject('/v1/thumbnails/small/hot.png?type=webp');
  const b = await f.app.inject('/v1/thumbnails/small/hot.png?type=webp');
  assert.equal(encodes.length - before, 1);
  assert.ok(a.rawPayload.equals(b.rawPayload));
  const png = await f.app.inject('/v1/thumbnails/small/hot.png?type=png');
  assert.notEqual(png.headers.etag, a.headers.etag);
  const r = await f.app.inject({
    url: '/v1/thumbnails/small/hot.png?type=webp',
    headers: { 'if-none-match': String(a.headers.etag) },
  });
  assert.equal(r.statusCode, 304);
  assert.equal(r.rawPayload.length, 0);
  assert.equal(f.app.pixtable.thumbs.size >= 2, true);
  assert.ok(f.app.pixtable.thumbs.bytes > 0);
});

test('replacing the source changes the ETag and the encoding', async () => {
  await addSource(f, 'swap.png', await makeImage('png', 50, 50, 1));
  const a = await f.app.inject('/v1/thumbnails/small/swap.png?type=png');
  const put = await f.app.inject({
    method: 'PUT',
    url: '/v1/sources/swap.png',
    payload: await makeImage('png', 50, 50, 99),
  });
  assert.equal(put.statusCode, 200);
  const b = await f.app.inject('/v1/thumbnails/small/swap.png?type=png');
  assert.notEqual(a.headers.etag, b.headers.etag);
  assert.ok(!a.rawPayload.equals(b.rawPayload));
});

test('HEAD on a thumbnail has the length and no body; missing sources are 404', async () => {
  const r = await f.app.inject({ method: 'HEAD', url: '/v1/thumbnails/small/cat.png?type=png' });
  assert.equal(r.statusCode, 200);
  assert.ok(Number(r.headers['content-length']) > 0);
  assert.equal(r.rawPayload.length, 0);
  const m = await f.app.inject('/v1/thumbnails/small/none.png');
  assert.equal(m.statusCode, 404);
  assert.equal(errorOf(m.body).code, 'SOURCE_NOT_FOUND');
  assert.equal(f.cache.stats().formats.find((s) => s.format === 'small')?.pinned, 0);
});
