// Smart crop: a cover format's `position` decides which part of the source its crop keeps, and it
// is geometry: the table written with one strategy is rebuilt (never served) under another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  ImageCache,
  PixtableError,
  describeFormat,
  validateFormat,
  type FormatSpec,
  type ImageView,
} from '../../src/index.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const KEY = 'subject-right.png';

/**
 * 600×200, flat mid grey, with a red-and-white checkerboard (the only saturated, detailed thing
 * in it) at x 500..580: a 100×100 cover crop of the 300×100 shrink keeps x 100..200 with centre,
 * which holds none of it.
 */
async function offCentreSubject(): Promise<Buffer> {
  const tile = 8;
  const raw = Buffer.alloc(80 * 120 * 3);
  for (let y = 0; y < 120; y++) {
    for (let x = 0; x < 80; x++) {
      const red = ((x / tile) ^ (y / tile)) & 1;
      raw.set(red ? [230, 10, 20] : [255, 255, 255], (y * 80 + x) * 3);
    }
  }
  const subject = await sharp(raw, { raw: { width: 80, height: 120, channels: 3 } })
    .png()
    .toBuffer();
  return sharp({ create: { width: 600, height: 200, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .composite([{ input: subject, left: 500, top: 40 }])
    .png()
    .toBuffer();
}

/** Pixels of `v` that are clearly the subject's red (the background is neutral grey). */
function redPixels(v: ImageView): number {
  let n = 0;
  for (let y = 0; y < v.height; y++) {
    for (let x = 0; x < v.width; x++) {
      const p = y * v.stride + x * 4;
      if (v.pixels[p]! > 180 && v.pixels[p + 1]! < 90 && v.pixels[p + 2]! < 90) n++;
    }
  }
  return n;
}

const fmt = (position?: FormatSpec['position']): FormatSpec => ({
  name: 'square',
  width: 100,
  height: 100,
  fit: 'cover',
  pixelFormat: 'rgba8',
  maxCount: 4,
  ...(position ? { position } : {}),
});

test('attention keeps an off-centre subject in the crop, centre does not; entropy too', async () => {
  const source = await offCentreSubject();
  const red: Record<string, number> = {};
  for (const position of ['centre', 'attention', 'entropy'] as const) {
    const storage = tempDir('pixtable-crop-');
    try {
      const c = await ImageCache.open({ storage, formats: [fmt(position)] });
      try {
        await c.put(KEY, source);
        using v = await c.get('square', KEY);
        assert.deepEqual([v.width, v.height], [100, 100]);
        red[position] = redPixels(v);
      } finally {
        await c.close();
      }
    } finally {
      rmrf(storage);
    }
  }
  assert.equal(red.centre, 0, 'the centre crop is background only');
  // the subject is 40×60 px after the shrink, about half of it red
  assert.ok(red.attention! > 600, `attention kept ${red.attention} red pixels`);
  assert.ok(red.entropy! > 600, `entropy kept ${red.entropy} red pixels`);
});

test('changing position rebuilds the table: the old crop is never served, the new one decodes', async () => {
  const storage = tempDir('pixtable-crop-');
  try {
    const first = await ImageCache.open({ storage, formats: [fmt()] });
    await first.put(KEY, await offCentreSubject());
    await first.close();

    const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
    const c = await ImageCache.open({
      storage,
      formats: [fmt('attention')],
      logger: { warn: (msg, fields) => warnings.push({ msg, ...(fields ? { fields } : {}) }) },
    });
    try {
      const rebuilt = warnings.filter((w) => w.msg === 'table rebuilt');
      assert.equal(rebuilt.length, 1, JSON.stringify(warnings));
      assert.match(String(rebuilt[0]!.fields?.problem), /geometry differs/);
      assert.equal(c.has('square', KEY), false, 'the centre crop is gone');
      using v = await c.get('square', KEY);
      assert.ok(redPixels(v) > 600, 'decoded again with attention');
      assert.equal(c.stats().formats[0]!.decodes, 1);
    } finally {
      await c.close();
    }
    // the same strategy again is the same table: a hit, no rebuild
    const same: string[] = [];
    const again = await ImageCache.open({
      storage,
      formats: [fmt('attention')],
      logger: { warn: (msg) => same.push(msg) },
    });
    try {
      assert.deepEqual(same, []);
      assert.equal(again.has('square', KEY), true);
    } finally {
      await again.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('position is validated: a known strategy, on cover formats only', () => {
  assert.equal(validateFormat(fmt()).position, 'centre');
  assert.equal(validateFormat(fmt('entropy')).position, 'entropy');
  // GET /v1/formats and `pixtable stats` say which strategy a format crops with (not the default)
  assert.equal(describeFormat(validateFormat(fmt('entropy'))).position, 'entropy');
  assert.equal('position' in describeFormat(validateFormat(fmt())), false);
  assert.throws(
    () => validateFormat({ ...fmt(), position: 'middle' }),
    (e: unknown) =>
      e instanceof PixtableError &&
      e.code === 'INVALID_FORMAT' &&
      /position/.test(e.message) &&
      /centre, attention, entropy|"centre"/.test(e.message),
  );
  assert.throws(
    () => validateFormat({ ...fmt('attention'), fit: 'inside' }),
    (e: unknown) =>
      e instanceof PixtableError &&
      e.code === 'INVALID_FORMAT' &&
      /position/.test(e.message) &&
      /cover/.test(e.message),
  );
});
