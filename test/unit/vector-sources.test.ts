// Vector sources are rendered at the size each format needs, not rasterised at their intrinsic
// size and enlarged: an SVG with an 8×8 viewBox decoded into a family of formats (256 and 64
// cover, 128 inside with enlarge) against sharp rendering the same SVG directly at each size.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache } from '../../src/cache.js';
import type { FormatSpec } from '../../src/formats.js';

// sharp edges and a diagonal: an upscaled 8×8 raster blurs all of them
const SVG = Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8" viewBox="0 0 8 8">' +
    '<rect width="8" height="8" fill="#fff"/>' +
    '<circle cx="4" cy="4" r="3" fill="#c00"/>' +
    '<rect x="0.5" y="0.5" width="2" height="2" fill="#00f"/>' +
    '<path d="M0 8 L8 0" stroke="#080" stroke-width="0.5"/>' +
    '</svg>',
);

const FORMATS: FormatSpec[] = [
  { name: 'v-256', width: 256, height: 256, fit: 'cover', pixelFormat: 'rgba8', family: 'v' },
  { name: 'v-64', width: 64, height: 64, fit: 'cover', pixelFormat: 'rgba8', family: 'v' },
  { name: 'v-128', width: 128, height: 128, fit: 'inside', enlarge: true, pixelFormat: 'rgba8', family: 'v' },
];

/** Mean absolute difference per channel byte of two tightly packed RGBA images. */
function meanAbsDiff(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** sharp on its own, rendering the SVG at `size` (its density scaled from the 72 dpi default). */
async function direct(size: number): Promise<Buffer> {
  return sharp(SVG, { density: (72 * size) / 8 })
    .resize(size, size, { fit: 'cover' })
    .ensureAlpha()
    .raw()
    .toBuffer();
}

/** The old way: rasterised at its intrinsic 8×8 (the family's shared intermediate), then enlarged. */
async function enlarged(size: number): Promise<Buffer> {
  const raster = await sharp(SVG).ensureAlpha().raw().toBuffer();
  return sharp(raster, { raw: { width: 8, height: 8, channels: 4 } })
    .resize(size, size, { fit: 'cover' })
    .raw()
    .toBuffer();
}

const BOUND = 2; // of 255, mean per channel byte: resampling differences only

let dir: string;
let cache: ImageCache;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-vector-'));
  cache = await ImageCache.open({ storage: dir, formats: FORMATS });
  await cache.put('icon.svg', SVG);
});
after(async () => {
  await cache.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

for (const [format, size] of [
  ['v-256', 256],
  ['v-64', 64],
  ['v-128', 128],
] as const) {
  test(`${format}: the SVG rendered at ${size}×${size}, as sharp renders it directly`, async () => {
    const view = await cache.get(format, 'icon.svg');
    try {
      assert.equal(view.width, size);
      assert.equal(view.height, size);
      const packed = Buffer.alloc(size * size * 4);
      for (let y = 0; y < size; y++)
        view.pixels.copy(packed, y * size * 4, y * view.stride, y * view.stride + size * 4);
      const crisp = await direct(size);
      const diff = meanAbsDiff(packed, crisp);
      assert.ok(diff < BOUND, `mean abs diff to the direct rendering ${diff.toFixed(2)} ≥ ${BOUND}`);
      // the bound is tight enough to tell: the enlarged 8×8 raster is far off
      const old = meanAbsDiff(await enlarged(size), crisp);
      assert.ok(old > 4 * BOUND, `the enlarged raster differs by only ${old.toFixed(2)}`);
    } finally {
      view.release();
    }
  });
}
