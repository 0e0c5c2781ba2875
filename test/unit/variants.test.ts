// The variant rules on their own (src/http/variants.ts): what a query means in device pixels, how
// sizes snap to PIXTABLE_VARIANT_WIDTHS, which cached entry is the master, and the config variable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, DEFAULT_VARIANT_WIDTHS } from '../../src/config/env.js';
import { validateFormats } from '../../src/formats.js';
import { isPixtableError } from '../../src/errors.js';
import { Families, cutFrom, deviceBox, variantAsk } from '../../src/http/variants.js';

const SIZES = [32, 64, 128, 256, 512];
const noHints = { dpr: undefined, width: undefined };

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isPixtableError(e) ? e.code : String(e);
  }
  return undefined;
}

test('device box: CSS pixels × dpr, rounded up to the next allowed size; beyond the last is refused', () => {
  const box = (q: Record<string, string>) => deviceBox(variantAsk(q)!, noHints, SIZES);
  assert.deepEqual(box({ w: '30' }), { width: 32, height: undefined, hints: '' });
  assert.deepEqual(box({ w: '33', dpr: '2' }), { width: 128, height: undefined, hints: '' });
  assert.deepEqual(box({ h: '100', dpr: '3' }), { width: undefined, height: 512, hints: '' });
  assert.deepEqual(box({ w: '512' }), { width: 512, height: undefined, hints: '' });
  assert.equal(
    code(() => box({ w: '513' })),
    'VARIANT_TOO_LARGE',
  );
  assert.equal(
    code(() => box({ w: '200', dpr: '3' })),
    'VARIANT_TOO_LARGE',
  );
  assert.equal(variantAsk({ type: 'webp' }), undefined, 'no variant parameter: the format’s own size');
  for (const q of [
    { w: '0' },
    { w: '01' },
    { w: ['1', '2'] },
    { h: '1e3' },
    { w: '5', dpr: '0' },
    { dpr: '1' },
  ])
    assert.equal(
      code(() => variantAsk(q)),
      'INVALID_VARIANT',
      JSON.stringify(q),
    );
});

test('hints: only for auto; Sec-CH-DPR rounds up to 1, 2, 3; Sec-CH-Width snaps and caps at the largest', () => {
  const auto = variantAsk({ w: '40', dpr: 'auto' })!;
  assert.deepEqual(deviceBox(auto, { dpr: '1.5', width: '999' }, SIZES), {
    width: 128,
    height: undefined,
    hints: 'Sec-CH-DPR',
  });
  assert.equal(deviceBox(auto, { dpr: '0.75', width: undefined }, SIZES).width, 64);
  assert.equal(deviceBox(auto, { dpr: '9', width: undefined }, SIZES).width, 128);
  assert.equal(deviceBox(auto, { dpr: '-1', width: undefined }, SIZES).width, 64, 'malformed: dpr 1');
  const w = variantAsk({ w: 'auto' })!;
  assert.deepEqual(deviceBox(w, { dpr: '3', width: '100' }, SIZES), {
    width: 128,
    height: undefined,
    hints: 'Sec-CH-Width',
  });
  assert.equal(deviceBox(w, { dpr: undefined, width: '100000' }, SIZES).width, 512);
  assert.equal(deviceBox(w, noHints, SIZES).width, undefined);
  // explicit values never read a hint
  assert.equal(deviceBox(variantAsk({ w: '40', dpr: '1' })!, { dpr: '3', width: '512' }, SIZES).width, 64);
});

test('cuts: cover keeps its aspect and covers the box; inside fits it; neither exceeds the entry', () => {
  const [cover, inside, small] = validateFormats([
    { name: 'c', width: 200, height: 100, fit: 'cover', family: 'f' },
    { name: 'i', width: 400, height: 400, fit: 'inside', family: 'f' },
    { name: 's', width: 50, height: 50, fit: 'inside', family: 'f' },
  ]);
  const box = (width?: number, height?: number) => ({ width, height, hints: '' });
  assert.deepEqual(cutFrom(cover!, box(64), cover!, { width: 200, height: 100 }), {
    width: 64,
    height: 32,
    fit: 'cover',
  });
  // h decides when it needs the larger size
  assert.deepEqual(cutFrom(cover!, box(64, 64), cover!, { width: 200, height: 100 }), {
    width: 128,
    height: 64,
    fit: 'cover',
  });
  assert.deepEqual(cutFrom(cover!, box(512), cover!, { width: 200, height: 100 }), {
    width: 200,
    height: 100,
    fit: 'cover',
  });
  // from an inside master: its crop must be large enough (400×300 → 400×200 crop)
  assert.deepEqual(cutFrom(cover!, box(128), inside!, { width: 400, height: 300 }), {
    width: 128,
    height: 64,
    fit: 'cover',
  });
  assert.equal(cutFrom(cover!, box(128), small!, { width: 50, height: 38 }), undefined);
  // inside: a 300×150 entry (a small source) is never enlarged to the 400 box
  assert.deepEqual(cutFrom(inside!, box(512), inside!, { width: 300, height: 150 }), {
    width: 300,
    height: 150,
    fit: 'fill',
  });
  assert.deepEqual(cutFrom(inside!, box(undefined, 64), inside!, { width: 300, height: 150 }), {
    width: 128,
    height: 64,
    fit: 'fill',
  });
  assert.equal(cutFrom(inside!, box(64), small!, { width: 50, height: 25 }), undefined);
});

test('masters: the smallest cached entry large enough, of the same family and pixel format only', () => {
  const formats = validateFormats([
    { name: 'big', width: 1024, height: 1024, fit: 'inside', family: 'f' },
    { name: 'mid', width: 256, height: 256, fit: 'cover', family: 'f' },
    { name: 'tiny', width: 64, height: 64, fit: 'cover', family: 'f' },
    { name: 'wide', width: 256, height: 128, fit: 'cover', family: 'f' },
    { name: 'gray', width: 128, height: 128, fit: 'cover', family: 'f', pixelFormat: 'gray8' },
    { name: 'alone', width: 128, height: 128, fit: 'cover' },
  ]);
  const by = new Map(formats.map((f) => [f.name, f]));
  const fam = new Families(formats);
  const sizes: Record<string, { width: number; height: number }> = {
    big: { width: 1024, height: 768 },
    mid: { width: 256, height: 256 },
    tiny: { width: 64, height: 64 },
    wide: { width: 256, height: 128 },
    gray: { width: 128, height: 128 },
    alone: { width: 128, height: 128 },
  };
  const dropped: string[] = [];
  const pick = (format: string, width: number, cached = Object.keys(sizes)) =>
    fam.pick(
      by.get(format)!,
      { width, height: undefined, hints: '' },
      (n) => (cached.includes(n) ? { name: n, ...sizes[n]! } : undefined),
      (e) => dropped.push(e.name),
    )?.format.name;
  assert.equal(pick('mid', 64), 'tiny');
  assert.equal(pick('mid', 128), 'mid', 'tiny is too small; wide has another aspect; gray other pixels');
  assert.deepEqual(dropped, ['tiny']);
  assert.equal(pick('mid', 128, ['tiny', 'big']), 'big', 'mid not cached: the inside entry');
  assert.equal(pick('big', 128), 'big', 'an inside variant only from an inside entry');
  assert.equal(pick('alone', 64), 'alone', 'no family: its own entry');
  assert.equal(pick('mid', 128, ['tiny']), undefined, 'nothing large enough: the caller decodes');
});

test('PIXTABLE_VARIANT_WIDTHS: sorted, deduplicated, 1..16384, at most 64; default list', () => {
  assert.deepEqual(loadConfig({}).config.variantWidths, DEFAULT_VARIANT_WIDTHS);
  assert.deepEqual(
    loadConfig({ PIXTABLE_VARIANT_WIDTHS: '640, 320,320,1280' }).config.variantWidths,
    [320, 640, 1280],
  );
  for (const bad of ['0', '16385', 'abc', '320,x', Array.from({ length: 65 }, (_, i) => i + 1).join(',')]) {
    assert.equal(
      code(() => loadConfig({ PIXTABLE_VARIANT_WIDTHS: bad })),
      'INVALID_CONFIG',
      bad,
    );
  }
});
