// Entry pixels must equal what sharp itself produces for the same source and geometry, laid out in
// the format's pixel layout at the format's stride, with zeroed row padding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache, PIXEL_FORMATS, type FormatSpec, type PixelFormat } from '../../src/index.js';
import { gradientPng, rmrf, tempDir } from '../helpers/fixtures.js';

const roundDiv255 = (v: number) => Math.round(v / 255);

/** Independent reference conversion from sharp's straight RGBA/RGB/gray output. */
function reference(pf: PixelFormat, raw: Buffer, width: number, height: number): Buffer {
  const out: number[] = [];
  for (let i = 0; i < width * height; i++) {
    if (pf === 'gray8') {
      out.push(raw[i]!);
      continue;
    }
    const ch = pf === 'rgb8' || pf === 'rgb565' ? 3 : 4;
    const [r, g, b] = [raw[i * ch]!, raw[i * ch + 1]!, raw[i * ch + 2]!];
    const a = ch === 4 ? raw[i * ch + 3]! : 255;
    switch (pf) {
      case 'rgba8':
      case 'rgbx8':
        out.push(r, g, b, a);
        break;
      case 'rgb8':
        out.push(r, g, b);
        break;
      case 'rgba8-premultiplied':
        out.push(roundDiv255(r * a), roundDiv255(g * a), roundDiv255(b * a), a);
        break;
      case 'bgra8-premultiplied':
        out.push(roundDiv255(b * a), roundDiv255(g * a), roundDiv255(r * a), a);
        break;
      case 'rgb565': {
        const v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3);
        out.push(v & 255, v >> 8);
        break;
      }
    }
  }
  return Buffer.from(out);
}

async function sharpOutput(
  src: Buffer,
  f: Required<Pick<FormatSpec, 'width' | 'height' | 'fit'>>,
  pf: PixelFormat,
) {
  let img = sharp(src)
    .autoOrient()
    .resize(f.width, f.height, { fit: f.fit, position: 'centre', withoutEnlargement: f.fit === 'inside' });
  if (pf === 'gray8') img = img.flatten().toColourspace('b-w');
  else if (pf === 'rgb8' || pf === 'rgb565') img = img.flatten().toColourspace('srgb');
  else if (pf === 'rgbx8') img = img.flatten().toColourspace('srgb').ensureAlpha(1);
  else img = img.toColourspace('srgb').ensureAlpha();
  return img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
}

function tightRows(pixels: Buffer, stride: number, rowBytes: number, height: number): Buffer {
  const out = Buffer.alloc(rowBytes * height);
  for (let y = 0; y < height; y++) pixels.copy(out, y * rowBytes, y * stride, y * stride + rowBytes);
  return out;
}

test('every pixel format matches sharp output at row alignments 64 and 256', async () => {
  const dir = tempDir();
  try {
    const formats: FormatSpec[] = [];
    for (const pf of PIXEL_FORMATS) {
      for (const rowAlignment of [64, 256]) {
        formats.push({
          name: `c-${pf}-${rowAlignment}`,
          width: 37,
          height: 23,
          fit: 'cover',
          pixelFormat: pf,
          rowAlignment,
        });
      }
      formats.push({
        name: `i-${pf}`,
        width: 50,
        height: 50,
        fit: 'inside',
        pixelFormat: pf,
        rowAlignment: 64,
      });
    }
    const cache = await ImageCache.open({ storage: dir, formats, sync: 'none' });
    const src = await gradientPng(120, 80);
    await cache.put('g.png', src);
    for (const spec of formats) {
      const f = cache.format(spec.name);
      const view = await cache.get(spec.name, 'g.png');
      try {
        const { data, info } = await sharpOutput(src, f, f.pixelFormat);
        assert.equal(view.width, info.width, `${spec.name} width`);
        assert.equal(view.height, info.height, `${spec.name} height`);
        if (f.fit === 'inside')
          assert.deepEqual([view.width, view.height], [50, 33], `${spec.name} keeps aspect`);
        assert.equal(view.stride % f.rowAlignment, 0, `${spec.name} stride aligned`);
        assert.ok(view.stride >= view.width * view.bytesPerPixel);
        assert.equal(view.pixels.length, view.stride * view.height);
        const rowBytes = view.width * view.bytesPerPixel;
        const expected = reference(f.pixelFormat, data, info.width, info.height);
        const actual = tightRows(view.pixels, view.stride, rowBytes, view.height);
        assert.ok(actual.equals(expected), `${spec.name}: pixels differ from sharp's output`);
        for (let y = 0; y < view.height; y++) {
          const pad = view.pixels.subarray(y * view.stride + rowBytes, (y + 1) * view.stride);
          assert.ok(
            pad.every((b) => b === 0),
            `${spec.name}: padding of row ${y} is not zero`,
          );
        }
      } finally {
        view.release();
      }
    }
    await cache.close();
  } finally {
    rmrf(dir);
  }
});

test('rows() returns no-copy slices of the rectangle and rejects rectangles outside the image', async () => {
  const dir = tempDir();
  try {
    const cache = await ImageCache.open({
      storage: dir,
      formats: [{ name: 't', width: 40, height: 30, pixelFormat: 'rgb8', rowAlignment: 256 }],
    });
    await cache.put('g.png', await gradientPng(80, 60));
    using view = await cache.get('t', 'g.png');
    const rows = view.rows(5, 7, 10, 4);
    assert.equal(rows.length, 4);
    rows.forEach((r, i) => {
      assert.equal(r.length, 30);
      assert.equal(r.buffer, view.pixels.buffer, 'row shares the mapping');
      const start = (7 + i) * view.stride + 5 * 3;
      assert.ok(r.equals(view.pixels.subarray(start, start + 30)));
    });
    for (const bad of [
      [35, 0, 6, 1],
      [0, 29, 1, 2],
      [-1, 0, 1, 1],
      [0, 0, 0, 1],
      [0.5, 0, 1, 1],
    ] as const) {
      assert.throws(() => view.rows(bad[0], bad[1], bad[2], bad[3]), { code: 'INVALID_RECT' });
    }
    await cache.close();
  } finally {
    rmrf(dir);
  }
});

// Stored pixels such that displaying them with EXIF orientation n shows the reference picture:
// the inverse of each orientation's display transform.
function storedFor(n: number, ref: Buffer, w: number, h: number): { data: Buffer; w: number; h: number } {
  const swap = n >= 5;
  const sw = swap ? h : w;
  const sh = swap ? w : h;
  const out = Buffer.alloc(sw * sh * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // display (x, y) comes from stored (sx, sy)
      let sx: number;
      let sy: number;
      switch (n) {
        case 1:
          [sx, sy] = [x, y];
          break;
        case 2:
          [sx, sy] = [w - 1 - x, y];
          break;
        case 3:
          [sx, sy] = [w - 1 - x, h - 1 - y];
          break;
        case 4:
          [sx, sy] = [x, h - 1 - y];
          break;
        case 5:
          [sx, sy] = [y, x];
          break;
        case 6:
          [sx, sy] = [y, w - 1 - x];
          break;
        case 7:
          [sx, sy] = [h - 1 - y, w - 1 - x];
          break;
        default:
          [sx, sy] = [h - 1 - y, x];
          break;
      }
      ref.copy(out, (sy * sw + sx) * 3, (y * w + x) * 3, (y * w + x) * 3 + 3);
    }
  }
  return { data: out, w: sw, h: sh };
}

test('EXIF orientations 1-8 all decode upright', async () => {
  const dir = tempDir();
  try {
    const w = 64;
    const h = 48;
    // Four flat quadrants: red, green / blue, white.
    const ref = Buffer.alloc(w * h * 3);
    const colours = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [255, 255, 255],
    ];
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        ref.set(colours[(y < h / 2 ? 0 : 2) + (x < w / 2 ? 0 : 1)]!, (y * w + x) * 3);
    const cache = await ImageCache.open({
      storage: dir,
      formats: [{ name: 'o', width: 64, height: 48, fit: 'cover', pixelFormat: 'rgb8', rowAlignment: 64 }],
    });
    for (let n = 1; n <= 8; n++) {
      const s = storedFor(n, ref, w, h);
      const jpeg = await sharp(s.data, { raw: { width: s.w, height: s.h, channels: 3 } })
        .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
        .withMetadata({ orientation: n })
        .toBuffer();
      assert.equal((await sharp(jpeg).metadata()).orientation, n);
      await cache.put(`o${n}.jpg`, jpeg);
      using v = await cache.get('o', `o${n}.jpg`);
      assert.deepEqual([v.width, v.height], [64, 48]);
      for (const [qx, qy, q] of [
        [16, 12, 0],
        [48, 12, 1],
        [16, 36, 2],
        [48, 36, 3],
      ] as const) {
        const px = [...v.pixels.subarray(qy * v.stride + qx * 3, qy * v.stride + qx * 3 + 3)];
        px.forEach((c, i) =>
          assert.ok(Math.abs(c - colours[q]![i]!) < 24, `orientation ${n} quadrant ${q}: ${px}`),
        );
      }
    }
    await cache.close();
  } finally {
    rmrf(dir);
  }
});

test('inside formats store their real size and never enlarge unless asked', async () => {
  const dir = tempDir();
  try {
    const cache = await ImageCache.open({
      storage: dir,
      formats: [
        { name: 'big', width: 300, height: 300, fit: 'inside' },
        { name: 'big-up', width: 300, height: 300, fit: 'inside', enlarge: true },
        { name: 'wide', width: 100, height: 100, fit: 'inside' },
      ],
    });
    await cache.put('p.png', await gradientPng(120, 80));
    const sizes = await Promise.all(
      ['big', 'big-up', 'wide'].map(async (f) => {
        using v = await cache.get(f, 'p.png');
        return [v.width, v.height];
      }),
    );
    assert.deepEqual(sizes, [
      [120, 80],
      [300, 200],
      [100, 67],
    ]);
    assert.ok(fs.existsSync(path.join(dir, 'tables', 'big', 'seg-00000.tbl')));
    await cache.close();
  } finally {
    rmrf(dir);
  }
});
