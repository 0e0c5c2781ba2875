import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, addSource, makeImage, errorOf, type Fixture } from './helpers.js';

let f: Fixture;
let whole: Buffer; // the entry bytes as the library API sees them
before(async () => {
  f = await fixture();
  await addSource(f, 'photos/cat.png', await makeImage('png'));
  await addSource(f, 'a b/ü.png', await makeImage('png', 60, 90, 7));
  const v = await f.cache.get('small', 'photos/cat.png');
  whole = Buffer.from(v.pixels);
  v.release();
});
after(() => f.close());

test('whole entry: the mapping bytes, with geometry headers, ETag and Cache-Control', async () => {
  const r = await f.app.inject('/v1/pixels/small/photos/cat.png');
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['content-type'], 'application/octet-stream');
  assert.equal(r.headers['x-image-width'], '32');
  assert.equal(r.headers['x-image-height'], '32');
  assert.equal(r.headers['x-row-stride'], '128');
  assert.equal(r.headers['x-pixel-format'], 'rgba8');
  assert.equal(r.headers['content-length'], String(128 * 32));
  assert.equal(r.headers['accept-ranges'], 'bytes');
  assert.equal(r.headers['cache-control'], 'public, max-age=3600');
  assert.match(String(r.headers.etag), /^".+"$/);
  assert.ok(r.rawPayload.equals(whole));
});

test('inside format: real size (≤ box) and padded stride', async () => {
  const r = await f.app.inject('/v1/pixels/box/a%20b/%C3%BC.png');
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['x-image-width'], '32'); // 60x90 into 48x48 inside → 32x48
  assert.equal(r.headers['x-image-height'], '48');
  // rows keep the table's stride (box width 48 × 3 B = 144), whatever the entry's real width
  assert.equal(r.headers['x-row-stride'], '144');
  assert.equal(r.headers['x-pixel-format'], 'rgb8');
  assert.equal(r.rawPayload.length, 144 * 48);
});

test('?rect returns the tightly packed rectangle', async () => {
  const r = await f.app.inject('/v1/pixels/small/photos/cat.png?rect=3,5,10,4');
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['x-image-width'], '10');
  assert.equal(r.headers['x-image-height'], '4');
  assert.equal(r.headers['x-row-stride'], '40');
  assert.equal(r.headers['content-length'], '160');
  const expected = Buffer.concat(
    [0, 1, 2, 3].map((i) => whole.subarray((5 + i) * 128 + 3 * 4, (5 + i) * 128 + 13 * 4)),
  );
  assert.ok(r.rawPayload.equals(expected));
});

test('bad and out-of-bounds rectangles are 400 INVALID_RECT', async () => {
  for (const q of [
    'rect=0,0,33,1',
    'rect=31,31,2,2',
    'rect=1,2,3',
    'rect=a,b,c,d',
    'rect=0,0,0,0',
    'rect=-1,0,1,1',
  ]) {
    const r = await f.app.inject(`/v1/pixels/small/photos/cat.png?${q}`);
    assert.equal(r.statusCode, 400, q);
    assert.equal(errorOf(r.body).code, 'INVALID_RECT', q);
  }
  // the pin taken for the request is released when the request fails
  assert.equal(f.cache.stats().formats.find((s) => s.format === 'small')?.pinned, 0);
});

test('If-None-Match with the ETag gives 304 without a body', async () => {
  const first = await f.app.inject('/v1/pixels/small/photos/cat.png');
  const etag = String(first.headers.etag);
  const r = await f.app.inject({
    url: '/v1/pixels/small/photos/cat.png',
    headers: { 'if-none-match': etag },
  });
  assert.equal(r.statusCode, 304);
  assert.equal(r.headers.etag, etag);
  assert.equal(r.rawPayload.length, 0);
  const other = await f.app.inject({
    url: '/v1/pixels/small/photos/cat.png',
    headers: { 'if-none-match': '"nope"' },
  });
  assert.equal(other.statusCode, 200);
});

test('HEAD gives the headers and no body', async () => {
  const r = await f.app.inject({ method: 'HEAD', url: '/v1/pixels/small/photos/cat.png' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['content-length'], String(whole.length));
  assert.equal(r.headers['x-image-width'], '32');
  assert.equal(r.rawPayload.length, 0);
});

test('Range: 206 with Content-Range, suffix ranges, ranges over a rect, 416, If-Range', async () => {
  let r = await f.app.inject({ url: '/v1/pixels/small/photos/cat.png', headers: { range: 'bytes=100-199' } });
  assert.equal(r.statusCode, 206);
  assert.equal(r.headers['content-range'], `bytes 100-199/${whole.length}`);
  assert.ok(r.rawPayload.equals(whole.subarray(100, 200)));
  r = await f.app.inject({ url: '/v1/pixels/small/photos/cat.png', headers: { range: 'bytes=-10' } });
  assert.ok(r.rawPayload.equals(whole.subarray(whole.length - 10)));
  // range inside the packed rectangle, crossing row boundaries
  const full = await f.app.inject('/v1/pixels/small/photos/cat.png?rect=3,5,10,4');
  r = await f.app.inject({
    url: '/v1/pixels/small/photos/cat.png?rect=3,5,10,4',
    headers: { range: 'bytes=30-95' },
  });
  assert.equal(r.statusCode, 206);
  assert.equal(r.headers['content-range'], 'bytes 30-95/160');
  assert.ok(r.rawPayload.equals(full.rawPayload.subarray(30, 96)));
  r = await f.app.inject({
    url: '/v1/pixels/small/photos/cat.png',
    headers: { range: `bytes=${whole.length}-` },
  });
  assert.equal(r.statusCode, 416);
  assert.equal(errorOf(r.body).code, 'RANGE_NOT_SATISFIABLE');
  r = await f.app.inject({
    url: '/v1/pixels/small/photos/cat.png',
    headers: { range: 'bytes=0-9', 'if-range': '"stale"' },
  });
  assert.equal(r.statusCode, 200, 'If-Range with another validator sends the whole body');
  assert.equal(r.rawPayload.length, whole.length);
});

test('unknown format 404, missing source 404, both with JSON errors', async () => {
  let r = await f.app.inject('/v1/pixels/nope/photos/cat.png');
  assert.equal(r.statusCode, 404);
  assert.equal(errorOf(r.body).code, 'UNKNOWN_FORMAT');
  r = await f.app.inject('/v1/pixels/small/photos/missing.png');
  assert.equal(r.statusCode, 404);
  assert.equal(errorOf(r.body).code, 'SOURCE_NOT_FOUND');
  assert.match(String(r.headers['content-type']), /application\/json/);
});

// inject() normalises "%2e%2e" segments away before routing (like a browser would), so encoded
// dot-segments are tested over a real socket in test/e2e/http-server.test.ts.
test('keys with encoded slashes, empty segments, NUL or bad escapes are 400 INVALID_KEY', async () => {
  for (const url of [
    '/v1/pixels/small/photos%2f..%2f..%2fx.png',
    '/v1/pixels/small//etc/passwd',
    '/v1/pixels/small/a%00b.png',
    '/v1/pixels/small/%ZZ.png',
    '/v1/thumbnails/small/a%2f..%2fsecret.png',
  ]) {
    const r = await f.app.inject(url);
    assert.equal(r.statusCode, 400, url);
    assert.equal(errorOf(r.body).code, 'INVALID_KEY', url);
  }
});

test('a corrupt source gives 422 CORRUPT_IMAGE and the next request is served', async () => {
  const good = await makeImage('png');
  await addSource(f, 'broken.png', good.subarray(0, Math.floor(good.length / 2)));
  const r = await f.app.inject('/v1/pixels/small/broken.png');
  assert.ok(r.statusCode >= 400 && r.statusCode < 500, String(r.statusCode));
  assert.match(errorOf(r.body).code, /CORRUPT_IMAGE|UNSUPPORTED_IMAGE/);
  assert.equal((await f.app.inject('/v1/pixels/small/photos/cat.png')).statusCode, 200);
});

test('symlinks leading out of sources/ (also to a sibling-prefix directory) are refused', async () => {
  const { default: fs } = await import('node:fs/promises');
  const { default: path } = await import('node:path');
  const sibling = `${f.cache.sourcesDir}-evil`; // "sources-evil": shares the prefix "sources"
  await fs.mkdir(sibling, { recursive: true });
  await fs.writeFile(path.join(sibling, 'x.png'), await makeImage('png'));
  await fs.symlink(sibling, path.join(f.cache.sourcesDir, 'link'));
  await fs.symlink(path.join(sibling, 'x.png'), path.join(f.cache.sourcesDir, 'file-link.png'));
  for (const url of [
    '/v1/pixels/small/link/x.png',
    '/v1/pixels/small/file-link.png',
    '/v1/thumbnails/small/link/x.png',
  ]) {
    const r = await f.app.inject(url);
    assert.equal(r.statusCode, 400, url);
    assert.equal(errorOf(r.body).code, 'INVALID_KEY', url);
  }
  await fs.rm(sibling, { recursive: true, force: true });
});
