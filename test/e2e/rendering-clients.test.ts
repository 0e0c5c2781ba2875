// Views consumed the way rendering pipelines consume them, by the real libraries, with no
// conversion in between: Skia (@napi-rs/canvas) painting rows, sharp reading padded rows as raw
// input, the row offsets a WebGPU/GL upload uses, and a worker thread reading views of a
// read-only cache zero-copy while its pins hold the writer off. The recipes are docs/library.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { ImageData, createCanvas } from '@napi-rs/canvas';
import { ImageCache, type FormatSpec } from '../../src/index.js';
import { gradientPng, rmrf, solidPng, tempDir } from '../helpers/fixtures.js';

const quiet = { warn: () => {} };

/** Keys k0..k3, each a gradient with varying alpha, offset so no two entries are alike. */
async function seed(cache: ImageCache, n = 4): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const png = await gradientPng(40 + i * 7, 40 + i * 3);
    await cache.put(`k${i}.png`, png);
    keys.push(`k${i}.png`);
  }
  return keys;
}

test('@napi-rs/canvas: a canvas tiled from entries’ rows() holds the table’s pixels, Skia’s premultiplied store is the bgra8-premultiplied table', async () => {
  const T = 32;
  const formats: FormatSpec[] = [
    { name: 'straight', width: T, height: T, pixelFormat: 'rgba8', family: 't' },
    { name: 'skia', width: T, height: T, pixelFormat: 'bgra8-premultiplied', family: 't' },
  ];
  const storage = tempDir('pixtable-canvas-');
  const cache = await ImageCache.open({ storage, formats, logger: quiet });
  try {
    const keys = await seed(cache);
    const canvas = createCanvas(2 * T, 2 * T);
    const ctx = canvas.getContext('2d');
    const views = keys.map((k) => cache.peek('straight', k)!);
    try {
      // ImageData's layout is straight RGBA, tightly packed: each row of an rgba8 entry is one,
      // wrapped without a copy; Skia copies it into its surface (that is the paint).
      views.forEach((v, i) => {
        const [dx, dy] = [(i % 2) * T, Math.floor(i / 2) * T];
        v.rows(0, 0, v.width, v.height).forEach((row, y) => {
          const data = new Uint8ClampedArray(row.buffer, row.byteOffset, row.length);
          ctx.putImageData(new ImageData(data, v.width, 1), dx, dy + y);
        });
      });
      // read back straight: what putImageData kept where alpha > 0 (premultiplying loses colour
      // precision at low alpha, so compare through Skia's own round trip: within 255/alpha)
      const back = ctx.getImageData(0, 0, 2 * T, 2 * T).data;
      let compared = 0;
      views.forEach((v, i) => {
        const [dx, dy] = [(i % 2) * T, Math.floor(i / 2) * T];
        for (let y = 0; y < v.height; y++) {
          for (let x = 0; x < v.width; x++) {
            const p = y * v.stride + x * 4;
            const q = ((dy + y) * 2 * T + dx + x) * 4;
            const a = v.pixels[p + 3]!;
            assert.equal(back[q + 3], a, `alpha at tile ${i} ${x},${y}`);
            for (let c = 0; c < 3; c++) {
              const d = Math.abs(back[q + c]! - v.pixels[p + c]!);
              assert.ok(
                d <= Math.ceil(255 / a),
                `tile ${i} ${x},${y} channel ${c}: ${back[q + c]} vs ${v.pixels[p + c]}`,
              );
            }
            compared++;
          }
        }
      });
      assert.equal(compared, 4 * T * T);
      // Skia's store is premultiplied RGBA; the bgra8-premultiplied entries hold the same bytes in
      // N32 (BGRA) order — what Skia, Cairo and Core Graphics surfaces take directly
      const stored = canvas.data();
      keys.forEach((k, i) => {
        using s = cache.peek('skia', k)!;
        const [dx, dy] = [(i % 2) * T, Math.floor(i / 2) * T];
        for (let y = 0; y < T; y++) {
          for (let x = 0; x < T; x++) {
            const p = y * s.stride + x * 4;
            const q = ((dy + y) * 2 * T + dx + x) * 4;
            const bgra = [stored[q + 2]!, stored[q + 1]!, stored[q]!, stored[q + 3]!];
            for (let c = 0; c < 4; c++)
              assert.ok(Math.abs(bgra[c]! - s.pixels[p + c]!) <= 1, `${k} ${x},${y} channel ${c}`);
          }
        }
      });
    } finally {
      for (const v of views) v.release();
    }
  } finally {
    await cache.close();
    rmrf(storage);
  }
});

test('sharp takes a padded view as raw input (stride ≠ width × channels) and re-encodes it exactly', async () => {
  // 37 px of rgba8 is 148 bytes, padded to 192: 48 px per row as sharp sees it, 11 of them
  // padding; 50 px of rgb8 is 150, padded to 192 (64 px). A stride that is not a whole number of
  // pixels (37 px of rgb8: 128 bytes) cannot be handed to sharp without a copy: choose the width.
  const formats: FormatSpec[] = [
    { name: 'odd', width: 37, height: 23, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 64 },
    { name: 'odd-rgb', width: 50, height: 23, fit: 'cover', pixelFormat: 'rgb8', rowAlignment: 64 },
  ];
  const storage = tempDir('pixtable-sharp-raw-');
  const cache = await ImageCache.open({ storage, formats, logger: quiet });
  try {
    await seed(cache, 1);
    for (const f of formats) {
      using v = await cache.get(f.name, 'k0.png');
      const channels = v.bytesPerPixel as 3 | 4;
      assert.notEqual(v.stride, v.width * channels, 'the rows are padded');
      assert.equal(v.stride % channels, 0);
      const png = await sharp(v.pixels, { raw: { width: v.stride / channels, height: v.height, channels } })
        .extract({ left: 0, top: 0, width: v.width, height: v.height })
        .png()
        .toBuffer();
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [v.width, v.height, channels]);
      const rows = v.rows(0, 0, v.width, v.height);
      rows.forEach((row, y) =>
        assert.ok(row.equals(data.subarray(y * row.length, (y + 1) * row.length)), `${f.name} row ${y}`),
      );
    }
  } finally {
    await cache.close();
    rmrf(storage);
  }
});

test('a 256-byte-aligned format meets a GPU upload pitch: bytesPerRow, row offsets and buffer size', async () => {
  const formats: FormatSpec[] = [
    { name: 'gpu', width: 100, height: 60, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 256 },
  ];
  const storage = tempDir('pixtable-gpu-');
  const cache = await ImageCache.open({ storage, formats, logger: quiet });
  try {
    await seed(cache, 2);
    for (const key of ['k0.png', 'k1.png']) {
      using v = await cache.get('gpu', key);
      // WebGPU copyBufferToTexture / writeTexture: bytesPerRow a multiple of 256, ≥ width × 4
      const bytesPerRow = v.stride;
      assert.equal(bytesPerRow, 512);
      assert.equal(bytesPerRow % 256, 0);
      assert.ok(bytesPerRow >= v.width * 4);
      // the buffer covers what the copy reads: bytesPerRow × (rows − 1) + the last row's texels
      assert.ok(v.pixels.length >= bytesPerRow * (v.height - 1) + v.width * 4);
      // the offset in the mapping is a multiple of the texel size (entries start on pages)
      assert.equal(v.pixels.byteOffset % 4096, 0);
      // row r is where the upload reads it: offset + r × bytesPerRow, for every row; for GL,
      // UNPACK_ROW_LENGTH = bytesPerRow / 4 px with UNPACK_ALIGNMENT 8 gives the same offsets
      const rows = v.rows(0, 0, v.width, v.height);
      const rowLength = bytesPerRow / 4;
      rows.forEach((row, r) => {
        assert.equal(row.byteOffset - v.pixels.byteOffset, r * bytesPerRow, `row ${r}`);
        assert.equal(row.buffer, v.pixels.buffer, 'the same mapping, no copy');
        assert.equal(r * rowLength * 4, r * bytesPerRow);
      });
      // and the pixels at those offsets are the image: the padding after each row is zero
      for (let r = 0; r < v.height; r++)
        assert.ok(
          v.pixels.subarray(r * bytesPerRow + v.width * 4, (r + 1) * bytesPerRow).every((b) => b === 0),
        );
    }
  } finally {
    await cache.close();
    rmrf(storage);
  }
});

// The recipe's thread: a read-only cache of its own, views read in place (their pixels are a
// window on the chunk's mapping, not a copy), a pin held until the main thread says release.
const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));
const THREAD = `
import { parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
const { ImageCache } = await import(workerData.index);
const cache = await ImageCache.open({ storage: workerData.storage, formats: workerData.formats, readOnly: true, logger: { warn() {} } });
const v = await cache.get('p', 'held.png');
const again = cache.peek('p', 'held.png');
const sha = () => createHash('sha256').update(v.pixels).digest('hex');
// a mean over the rows, as an ML pre-processor would read them
let sum = 0;
for (const row of v.rows(0, 0, v.width, v.height)) for (let i = 0; i < row.length; i += 4) sum += row[i];
parentPort.postMessage({
  sha: sha(),
  meanRed: sum / (v.width * v.height),
  window: v.pixels.buffer.byteLength > v.pixels.length,
  shared: again.pixels.buffer === v.pixels.buffer && again.pixels.byteOffset === v.pixels.byteOffset,
});
again.release();
parentPort.on('message', async (m) => {
  if (m === 'sha') parentPort.postMessage({ sha: sha() });
  if (m === 'release') { v.release(); await cache.close(); parentPort.postMessage({ released: true }); }
});
`;

test('a worker thread reads views of a read-only cache zero-copy; its pin keeps the writer off the slot', async () => {
  const formats: FormatSpec[] = [{ name: 'p', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 2 }];
  const storage = tempDir('pixtable-thread-');
  const writer = await ImageCache.open({ storage, formats, logger: quiet });
  await writer.put('held.png', await solidPng(8, 8, [200, 20, 30]));
  await writer.put('other.png', await solidPng(8, 8, [40, 50, 60]));
  const expected = (() => {
    using v = writer.peek('p', 'held.png')!;
    return createHash('sha256').update(v.pixels).digest('hex');
  })();
  const worker = new Worker(THREAD, { eval: true, workerData: { index: INDEX, storage, formats } });
  type Msg = { sha?: string; meanRed?: number; window?: boolean; shared?: boolean; released?: boolean };
  const next = () => new Promise<Msg>((r) => worker.once('message', r));
  const first = next();
  try {
    const m = await first;
    assert.equal(m.sha, expected, 'the thread reads the entry the writer wrote');
    assert.equal(m.meanRed, 200);
    assert.equal(m.window, true, 'pixels are a window on a larger mapping, not a copy');
    assert.equal(m.shared, true, 'two views of one entry are the same bytes of the same mapping');
    // two slots: each put recycles one, never the one the thread holds
    for (let i = 0; i < 6; i++) {
      await writer.put(`n${i}.png`, await solidPng(8, 8, [i * 30, 0, 99]));
      assert.ok(writer.has('p', 'held.png'), `put ${i}: the held entry was recycled`);
    }
    const again = next();
    worker.postMessage('sha');
    assert.equal((await again).sha, expected, "the thread's view kept its bytes");
    const released = next();
    worker.postMessage('release');
    assert.equal((await released).released, true);
    await writer.put('n6.png', await solidPng(8, 8, [1, 2, 3]));
    await writer.put('n7.png', await solidPng(8, 8, [4, 5, 6]));
    assert.ok(!writer.has('p', 'held.png'), 'released, its slot is recycled');
  } finally {
    await worker.terminate();
    await writer.close();
    rmrf(storage);
  }
});
