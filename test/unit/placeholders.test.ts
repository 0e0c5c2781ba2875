// Placeholders: computed at ingest from the smallest entry of the family (no second decode),
// stored per slot so every process reads them, never trusted when torn, and reported with the
// source's facts and each format's real size by cache.info().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';
import { ImageCache, PixtableError, type FormatSpec, type ImageView } from '../../src/index.js';
import { placeholdersFile } from '../../src/engine/layout.js';
import { RECORD_BYTES } from '../../src/engine/placeholder-file.js';
import { dominantColour } from '../../src/engine/placeholder.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

// a family of two (the placeholder comes from `small`) and a format of its own
const FORMATS: FormatSpec[] = [
  { name: 'small', width: 48, height: 48, fit: 'cover', family: 'f', maxCount: 8 },
  {
    name: 'large',
    width: 160,
    height: 160,
    fit: 'inside',
    family: 'f',
    maxCount: 8,
    pixelFormat: 'bgra8-premultiplied',
  },
  { name: 'alone', width: 96, height: 64, fit: 'cover', pixelFormat: 'rgb8', maxCount: 8 },
];

const FAMILY = FORMATS.filter((f) => f.family === 'f');

/** 300×200: left half one colour, right half another, a bar of a third across the bottom. */
async function twoTone(a: number[], b: number[], c: number[]): Promise<Buffer> {
  const w = 300;
  const h = 200;
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) raw.set(y >= 160 ? c : x < 150 ? a : b, (y * w + x) * 3);
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

const IMAGES: [string, number[], number[], number[]][] = [
  ['a.png', [220, 40, 30], [30, 60, 200], [250, 250, 250]],
  ['b.png', [20, 180, 40], [240, 220, 20], [0, 0, 0]],
  ['c.png', [120, 30, 160], [200, 200, 200], [40, 120, 120]],
];

/** Mean of each RGB channel of an rgba8 view. */
function meanRgb(v: ImageView): number[] {
  const sum = [0, 0, 0];
  for (let y = 0; y < v.height; y++)
    for (let x = 0; x < v.width; x++)
      for (let c = 0; c < 3; c++) sum[c]! += v.pixels[y * v.stride + x * 4 + c]!;
  return sum.map((s) => s / (v.width * v.height));
}

/** Mean absolute difference per channel between a rendered ThumbHash and an rgba8 entry shrunk to its size. */
async function meanAbsDifference(
  img: { w: number; h: number; rgba: Uint8Array },
  entry: ImageView,
): Promise<number> {
  const shrunk = await sharp(entry.pixels, {
    raw: { width: entry.stride / 4, height: entry.height, channels: 4 },
  })
    .extract({ left: 0, top: 0, width: entry.width, height: entry.height })
    .resize(img.w, img.h, { fit: 'fill' })
    .raw()
    .toBuffer();
  let diff = 0;
  for (let i = 0; i < img.w * img.h; i++)
    for (let ch = 0; ch < 3; ch++) diff += Math.abs(img.rgba[i * 4 + ch]! - shrunk[i * 4 + ch]!);
  return diff / (img.w * img.h * 3);
}

async function seeded(): Promise<string> {
  const storage = tempDir('pixtable-place-');
  const c = await ImageCache.open({ storage, formats: FORMATS });
  for (const [key, a, b, bar] of IMAGES) await c.put(key, await twoTone(a, b, bar));
  await c.close();
  return storage;
}

test('the stored ThumbHash decodes (thumbhash.thumbHashToRGBA) to an image close to the entry', async () => {
  const storage = await seeded();
  try {
    const c = await ImageCache.open({ storage, formats: FORMATS, readOnly: true });
    try {
      for (const [key] of IMAGES) {
        const info = await c.info(key);
        assert.ok(info.placeholder, `${key} has a placeholder`);
        const hash = Buffer.from(info.placeholder.thumbHash, 'base64');
        assert.ok(hash.length >= 5 && hash.length <= 25, `${hash.length} bytes`);
        using v = c.peek('small', key)!;
        // Tolerance 1: the hash's average colour within 6/255 of the entry's mean, per channel.
        const avg = thumbHashToAverageRGBA(hash);
        const mean = meanRgb(v);
        [avg.r, avg.g, avg.b].forEach((x, i) =>
          assert.ok(Math.abs(x * 255 - mean[i]!) <= 6, `${key} channel ${i}: ${x * 255} vs ${mean[i]}`),
        );
        // Tolerance 2: the rendered placeholder against the entry shrunk to its size, mean
        // absolute difference per channel ≤ 40/255 (measured 19–29: a ThumbHash keeps only the
        // lowest frequencies, so the hard edges between the colours blur), while against another
        // key's entry it is ≥ 60 (measured 95–160).
        const img = thumbHashToRGBA(hash);
        const mad = (entry: ImageView) => meanAbsDifference(img, entry);
        const own = await mad(v);
        assert.ok(own <= 40, `${key}: mean abs difference ${own.toFixed(1)}`);
        for (const [other] of IMAGES.filter(([k]) => k !== key)) {
          using o = c.peek('small', other)!;
          const theirs = await mad(o);
          assert.ok(theirs >= 60, `${key} against ${other}: ${theirs.toFixed(1)}`);
        }
        // and the dominant colour is one the image really has most of: the left or right half
        const dom = info.placeholder.dominantColor;
        assert.match(dom, /^#[0-9a-f]{6}$/);
        const rgb = [1, 3, 5].map((i) => parseInt(dom.slice(i, i + 2), 16));
        const near = (want: number[]) => want.every((x, i) => Math.abs(x - rgb[i]!) <= 24);
        const [, a, b] = IMAGES.find(([k]) => k === key)!;
        assert.ok(near(a) || near(b), `${key}: dominant ${dom}`);
      }
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('a smallest entry over 100 px is shrunk (libvips) before hashing, with the same result quality', async () => {
  const storage = tempDir('pixtable-place-');
  try {
    const formats: FormatSpec[] = [{ name: 'wide', width: 240, height: 160, fit: 'cover', maxCount: 4 }];
    const c = await ImageCache.open({ storage, formats });
    try {
      const [key, a, b, bar] = IMAGES[0]!;
      await c.put(key, await twoTone(a, b, bar));
      const info = await c.info(key);
      const hash = Buffer.from(info.placeholder!.thumbHash, 'base64');
      const img = thumbHashToRGBA(hash);
      assert.ok(img.w > img.h, `the hash keeps the landscape aspect: ${img.w}×${img.h}`);
      using v = c.peek('wide', key)!;
      const d = await meanAbsDifference(img, v);
      assert.ok(d <= 40, `mean abs difference ${d.toFixed(1)}`);
      const rgb = [1, 3, 5].map((i) => parseInt(info.placeholder!.dominantColor.slice(i, i + 2), 16));
      assert.ok(
        [a, b].some((want) => want.every((x, i) => Math.abs(x - rgb[i]!) <= 24)),
        info.placeholder!.dominantColor,
      );
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('info: the source facts, each format’s real entry size, and a placeholder per key', async () => {
  const storage = await seeded();
  try {
    const c = await ImageCache.open({ storage, formats: FORMATS });
    try {
      const info = await c.info('a.png');
      const bytes = fs.statSync(path.join(storage, 'sources', 'a.png')).size;
      assert.deepEqual(info.source, { bytes, width: 300, height: 200, type: 'png' });
      assert.deepEqual(info.formats, {
        small: { width: 48, height: 48 },
        large: { width: 160, height: 107 },
        alone: { width: 96, height: 64 },
      });
      // different images, different placeholders
      const others = await Promise.all(['b.png', 'c.png'].map((k) => c.info(k)));
      const hashes = new Set([info, ...others].map((i) => i.placeholder?.thumbHash));
      assert.equal(hashes.size, 3);
      await assert.rejects(
        c.info('nope.png'),
        (e: unknown) => e instanceof PixtableError && e.code === 'SOURCE_NOT_FOUND',
      );
      await assert.rejects(
        c.info('../x'),
        (e: unknown) => e instanceof PixtableError && e.code === 'INVALID_KEY',
      );
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('info never decodes: an uncached key has null formats and no placeholder until a get', async () => {
  const storage = tempDir('pixtable-place-');
  try {
    fs.mkdirSync(path.join(storage, 'sources'), { recursive: true });
    fs.writeFileSync(
      path.join(storage, 'sources', 'fresh.png'),
      await twoTone([1, 2, 3], [200, 100, 0], [9, 9, 9]),
    );
    const c = await ImageCache.open({ storage, formats: FORMATS });
    try {
      const before = await c.info('fresh.png');
      assert.deepEqual(before.formats, { small: null, large: null, alone: null });
      assert.equal(before.placeholder, undefined);
      assert.ok(
        c.stats().formats.every((f) => f.decodes === 0),
        'nothing decoded',
      );
      (await c.get('large', 'fresh.png')).release();
      const after = await c.info('fresh.png');
      assert.deepEqual(after.formats.small, { width: 48, height: 48 });
      assert.equal(after.formats.alone, null, 'another group is not decoded by this one');
      assert.ok(after.placeholder, 'the family decode stored a placeholder');
      // a miss of the other group, for a key the family never decoded: that group's entry gives one
      fs.writeFileSync(
        path.join(storage, 'sources', 'other.png'),
        await twoTone([250, 0, 0], [0, 0, 250], [0, 250, 0]),
      );
      (await c.get('alone', 'other.png')).release();
      const other = await c.info('other.png');
      assert.equal(other.formats.small, null);
      assert.ok(other.placeholder, 'from alone, the only entry there is');
      // an upload computes one placeholder, from the group with the smallest format: none in
      // alone's file (info() in a writer would compute one there only if the family had none)
      await c.put('up.png', await twoTone([5, 5, 5], [90, 90, 90], [200, 200, 200]));
      assert.ok((await c.info('up.png')).placeholder);
      const aloneFile = placeholdersFile(path.join(storage, 'tables'), 'alone');
      assert.equal(recordOffsets(aloneFile).length, 1, 'only other.png has a record in alone');
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

/** The offsets of the non-empty records of a placeholder file. */
function recordOffsets(file: string): number[] {
  const b = fs.readFileSync(file);
  const out: number[] = [];
  for (let at = 4096; at + RECORD_BYTES <= b.length; at += RECORD_BYTES)
    if (b.subarray(at, at + RECORD_BYTES).some((x) => x !== 0)) out.push(at);
  return out;
}

test('placeholders survive reopen; a torn or damaged record is never trusted and the writer redoes it', async () => {
  const storage = await seeded();
  // the family only: `alone`'s own placeholder would answer for a missing one
  const FORMATS = FAMILY;
  try {
    const first = await ImageCache.open({ storage, formats: FORMATS, readOnly: true });
    const original = new Map<string, string>();
    for (const [key] of IMAGES) original.set(key, (await first.info(key)).placeholder!.thumbHash);
    await first.close();

    // reopened, by a writer and by a reader: the same placeholders (and a fresh file a killed
    // writer never renamed is removed)
    const leftover = `${placeholdersFile(path.join(storage, 'tables'), 'small')}.tmp-99999`;
    fs.writeFileSync(leftover, 'x');
    const w = await ImageCache.open({ storage, formats: FORMATS });
    assert.equal(fs.existsSync(leftover), false);
    for (const [key] of IMAGES) assert.equal((await w.info(key)).placeholder?.thumbHash, original.get(key));
    await w.close();

    // a crash cut the last record short (the file ends inside it), and a bit flipped in another
    const file = placeholdersFile(path.join(storage, 'tables'), 'small');
    const offsets = recordOffsets(file);
    assert.equal(offsets.length, 3, 'one record per key of the family');
    const torn = offsets[offsets.length - 1]!;
    fs.truncateSync(file, torn + 30);
    const fd = fs.openSync(file, 'r+');
    const flipped = Buffer.alloc(1);
    fs.readSync(fd, flipped, 0, 1, offsets[0]! + 40);
    flipped[0]! ^= 0x10;
    fs.writeSync(fd, flipped, 0, 1, offsets[0]! + 40);
    fs.closeSync(fd);

    const reader = await ImageCache.open({ storage, formats: FORMATS, readOnly: true });
    try {
      const got = await Promise.all(IMAGES.map(([key]) => reader.info(key)));
      const whole = got.filter((i) => i.placeholder !== undefined);
      assert.equal(whole.length, 1, 'the torn and the flipped records are absent, not garbage');
      assert.equal(whole[0]!.placeholder!.thumbHash, original.get(whole[0]!.key));
    } finally {
      await reader.close();
    }
    // the writer computes the missing ones again from the entries: the same bytes as at ingest
    const writer = await ImageCache.open({ storage, formats: FORMATS });
    try {
      for (const [key] of IMAGES)
        assert.equal((await writer.info(key)).placeholder?.thumbHash, original.get(key));
      assert.ok(
        writer.stats().formats.every((f) => f.decodes === 0),
        'from the entries, not the sources',
      );
    } finally {
      await writer.close();
    }
    const after = await ImageCache.open({ storage, formats: FORMATS, readOnly: true });
    try {
      for (const [key] of IMAGES)
        assert.equal((await after.info(key)).placeholder?.thumbHash, original.get(key));
    } finally {
      await after.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('a placeholder of a rebuilt table is never read as the new entry’s', async () => {
  const storage = await seeded();
  try {
    // another geometry for `small`: the table is rebuilt, so is its placeholder file
    // (the family only: `alone`'s own placeholder would answer instead)
    const changed = FAMILY.map((f) => (f.name === 'small' ? { ...f, width: 40 } : f));
    const c = await ImageCache.open({ storage, formats: changed });
    try {
      const info = await c.info('a.png');
      assert.equal(info.formats.small, null);
      assert.equal(info.placeholder, undefined, 'the old table’s record does not count');
      (await c.get('small', 'a.png')).release();
      assert.ok((await c.info('a.png')).placeholder);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('the dominant colour is the fullest bin’s mean, transparent pixels left out', () => {
  const px = (r: number, g: number, b: number, a: number, n: number) =>
    Array.from({ length: n }, () => [r, g, b, a]).flat();
  // 5 fully transparent blue, 3 of two near reds in one bin, 2 green
  const rgba = Uint8Array.from([
    ...px(0, 0, 255, 0, 5),
    ...px(200, 10, 20, 255, 2),
    ...px(206, 12, 22, 128, 1),
    ...px(0, 200, 0, 255, 2),
  ]);
  assert.deepEqual(dominantColour(rgba), { r: 202, g: 11, b: 21 });
  assert.deepEqual(dominantColour(Uint8Array.from(px(9, 9, 9, 0, 4))), { r: 0, g: 0, b: 0 });
});
