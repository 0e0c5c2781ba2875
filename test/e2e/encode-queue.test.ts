// Thumbnail encodes go through a bounded queue, and file work does not wait behind them: a real
// server on a real socket, 31 concurrent AVIF thumbnails of 31 cached entries with room for 30
// (2 encoding, 28 waiting), then a request for a missing source (a realpath) while they run.
// Functional only: which requests are refused and what is answered first, not how fast.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { FormatSpec } from '../../src/formats.js';
import { request, start, type RawResponse } from '../http/net-helpers.js';

const N = 31;
const FORMATS: FormatSpec[] = [{ name: 'enc', width: 256, height: 256, fit: 'cover', pixelFormat: 'rgba8' }];
let server: Awaited<ReturnType<typeof start>>;

before(async () => {
  server = await start({
    formats: FORMATS,
    thumbCacheBytes: 0,
    encode: { concurrency: 2, maxQueue: 28 },
  });
  // noise: every AVIF encode takes long enough (hundreds of ms) that all 31 are in before one ends
  for (let i = 0; i < N; i++) {
    const png = await sharp(randomBytes(256 * 256 * 3), { raw: { width: 256, height: 256, channels: 3 } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    await fs.writeFile(path.join(server.dir, 'sources', `k${i}.png`), png);
    const warm = await request(server.url, `/v1/pixels/enc/k${i}.png`);
    assert.equal(warm.status, 200);
  }
});

after(async () => {
  await server?.done();
});

test('encodes over the queue bound get 503 QUEUE_FULL with Retry-After; a 404 is answered while they run', async () => {
  const order: string[] = [];
  const thumbs = Array.from({ length: N }, (_, i) =>
    request(server.url, `/v1/thumbnails/enc/k${i}.png?type=avif`).then((r) => {
      if (r.status === 200) order.push('encoded');
      return r;
    }),
  );
  // after every thumbnail request is sent: a key with no source, which ends in a realpath
  const missing = new Promise((r) => setTimeout(r, 50)).then(() =>
    request(server.url, '/v1/pixels/enc/no-such-source.png').then((r) => {
      order.push('404');
      return r;
    }),
  );
  const results: RawResponse[] = await Promise.all(thumbs);
  const notFound = await missing;

  const refused = results.filter((r) => r.status === 503);
  assert.equal(refused.length, 1, `statuses: ${results.map((r) => r.status).join(' ')}`);
  const body = JSON.parse(refused[0]!.body.toString()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'QUEUE_FULL');
  assert.match(body.error.message, /: 2 encoding, 28 waiting$/);
  assert.equal(refused[0]!.headers['retry-after'], '1');
  const ok = results.filter((r) => r.status === 200);
  assert.equal(ok.length, N - 1);
  for (const r of ok) assert.equal(r.headers['content-type'], 'image/avif');

  assert.equal(notFound.status, 404);
  // answered before the encodes were done: at most the two running when it came had finished
  assert.ok(order.indexOf('404') <= 2, `order of answers: ${order.join(' ')}`);
});
