import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fixture, makeImage, errorOf, type Fixture } from './helpers.js';

let f: Fixture;
before(async () => {
  f = await fixture({
    config: { maxUploadBytes: 200_000 },
    open: { decode: { maxInputBytes: 200_000, maxInputPixels: 1_000_000 } },
  });
});
after(() => f.close());

test('PUT creates (201) then replaces (200); the source is on disk and served', async () => {
  const img = await makeImage('jpeg');
  let r = await f.app.inject({
    method: 'PUT',
    url: '/v1/sources/up/new.jpg',
    payload: img,
    headers: { 'content-type': 'image/jpeg' },
  });
  assert.equal(r.statusCode, 201, r.body);
  const body = r.json() as { key: string; width: number; height: number; formats: string[] };
  assert.equal(body.key, 'up/new.jpg');
  assert.equal(body.width, 120);
  assert.equal(body.height, 80);
  assert.deepEqual(body.formats.sort(), ['box', 'small']);
  assert.ok((await fs.readFile(path.join(f.cache.sourcesDir, 'up/new.jpg'))).equals(img));
  // any content type (or none) is taken as bytes
  r = await f.app.inject({
    method: 'PUT',
    url: '/v1/sources/up/new.jpg',
    payload: img,
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.statusCode, 200, r.body);
  assert.equal((await f.app.inject('/v1/pixels/small/up/new.jpg')).statusCode, 200);
  const list = (await f.app.inject('/v1/sources')).json() as { keys: string[] };
  assert.ok(list.keys.includes('up/new.jpg'));
});

test('broken uploads get 4xx JSON and replace nothing', async () => {
  const good = await makeImage('png');
  await f.app.inject({ method: 'PUT', url: '/v1/sources/keep.png', payload: good });
  const cases: [string, Buffer, number, RegExp][] = [
    ['empty', Buffer.alloc(0), 400, /EMPTY_SOURCE/],
    ['truncated', good.subarray(0, 200), 422, /CORRUPT_IMAGE|UNSUPPORTED_IMAGE/],
    ['text', Buffer.from('hello, not an image'), 415, /UNSUPPORTED_IMAGE/],
    ['too large', Buffer.alloc(300_000, 1), 413, /BODY_TOO_LARGE/],
  ];
  for (const [what, payload, status, code] of cases) {
    const r = await f.app.inject({
      method: 'PUT',
      url: '/v1/sources/keep.png',
      payload,
      headers: { 'content-type': 'image/png' },
    });
    assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${what}: ${r.statusCode}`);
    if (what !== 'truncated') assert.equal(r.statusCode, status, what);
    assert.match(errorOf(r.body).code, code, what);
    assert.ok(
      (await fs.readFile(path.join(f.cache.sourcesDir, 'keep.png'))).equals(good),
      `${what} replaced nothing`,
    );
  }
});

test('decompression bomb: a small file with too many pixels is refused with 4xx', async () => {
  // 2000×2000 of one colour compresses to a few KiB but exceeds maxInputPixels (1,000,000)
  const { default: sharp } = await import('sharp');
  const bomb = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#123456' } })
    .png()
    .toBuffer();
  assert.ok(bomb.length < 200_000);
  const r = await f.app.inject({ method: 'PUT', url: '/v1/sources/bomb.png', payload: bomb });
  assert.equal(r.statusCode, 422);
  assert.equal(errorOf(r.body).code, 'TOO_MANY_PIXELS');
  assert.equal((await f.app.inject('/healthz')).statusCode, 200);
});

test('DELETE removes the source and purges every format; then 404', async () => {
  await f.app.inject({ method: 'PUT', url: '/v1/sources/gone.png', payload: await makeImage('png') });
  assert.equal((await f.app.inject('/v1/pixels/small/gone.png')).statusCode, 200);
  assert.ok(f.cache.has('small', 'gone.png'));
  let r = await f.app.inject({ method: 'DELETE', url: '/v1/sources/gone.png' });
  assert.equal(r.statusCode, 204);
  assert.ok(!f.cache.has('small', 'gone.png'));
  assert.ok(!f.cache.has('box', 'gone.png'));
  r = await f.app.inject('/v1/pixels/small/gone.png');
  assert.equal(r.statusCode, 404);
  r = await f.app.inject({ method: 'DELETE', url: '/v1/sources/gone.png' });
  assert.equal(r.statusCode, 404);
  assert.equal(errorOf(r.body).code, 'SOURCE_NOT_FOUND');
});

test('upload keys are validated like read keys', async () => {
  for (const url of ['/v1/sources/a%2f..%2f..%2fevil.png', '/v1/sources//abs.png', '/v1/sources/x%00.png']) {
    const r = await f.app.inject({ method: 'PUT', url, payload: Buffer.from('x') });
    assert.equal(r.statusCode, 400, url);
    assert.equal(errorOf(r.body).code, 'INVALID_KEY');
  }
});
