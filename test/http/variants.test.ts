// Responsive variants (?w, ?h, ?dpr, Client Hints) through app.inject(): the pixels are sharp's
// resize of the master entry (the smallest cached entry of the family large enough), the source
// is not decoded again, sizes are bounded, and the headers (Vary, Accept-CH, ETag, 304) are right.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { fixture, addSource, makeImage, errorOf, type Fixture } from './helpers.js';
import type { FormatSpec } from '../../src/formats.js';
import type { ImageView } from '../../src/types.js';
import { signUrl } from '../../src/http/sign.js';

// One family of rgba8 formats (two cover, two inside), with strides that are not width × 4
// (sq-48: 192 bytes of pixels in 256-byte rows), plus a premultiplied BGRA format of its own.
const FORMATS: FormatSpec[] = [
  { name: 'sq-48', width: 48, height: 48, fit: 'cover', rowAlignment: 256, family: 'fam' },
  { name: 'sq-96', width: 96, height: 96, fit: 'cover', family: 'fam' },
  { name: 'wide-80', width: 80, height: 80, fit: 'inside', family: 'fam' },
  { name: 'wide-160', width: 160, height: 160, fit: 'inside', rowAlignment: 256, family: 'fam' },
  { name: 'skia-96', width: 96, height: 96, fit: 'cover', pixelFormat: 'bgra8-premultiplied' },
];
const SIZES = [16, 24, 32, 48, 64, 80, 96, 120, 128, 160, 200];

let f: Fixture;
const signKey = { key: Buffer.alloc(32, 5), salt: Buffer.from('v') };
let signed: Fixture;

/** A 200×150 RGBA source whose alpha varies, so premultiplied layouts are really exercised. */
async function alphaSource(): Promise<Buffer> {
  const w = 200;
  const h = 150;
  const raw = Buffer.alloc(w * h * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      raw[i] = (x * 5) & 255;
      raw[i + 1] = (y * 7) & 255;
      raw[i + 2] = (x * y) & 255;
      raw[i + 3] = 64 + ((x + y) % 192);
    }
  return sharp(raw, { raw: { width: w, height: h, channels: 4 } })
    .png()
    .toBuffer();
}

before(async () => {
  f = await fixture({ config: { formats: FORMATS, variantWidths: SIZES } });
  await addSource(f, 'cat.png', await alphaSource());
  await addSource(f, 'fresh.png', await makeImage('png', 200, 150, 9));
  await addSource(f, 'other.png', await makeImage('png', 200, 150, 4));
  // the masters: one decode fills the whole family
  (await f.cache.get('sq-48', 'cat.png')).release();
  (await f.cache.get('skia-96', 'cat.png')).release();
  signed = await fixture({ config: { formats: FORMATS, variantWidths: SIZES, signingKeys: [signKey] } });
  await addSource(signed, 'cat.png', await makeImage('png', 200, 150));
});
after(async () => {
  await f.close();
  await signed.close();
});

function decodes(x: Fixture = f): number {
  return x.cache.stats().formats.reduce((n, s) => n + s.decodes, 0);
}

/** Straight RGBA rows of a view, tightly packed, unpacked here independently of the server. */
function straightRgba(v: ImageView): Buffer {
  const out = Buffer.alloc(v.width * v.height * 4);
  for (let y = 0; y < v.height; y++)
    for (let x = 0; x < v.width; x++) {
      const s = y * v.stride + x * 4;
      const o = (y * v.width + x) * 4;
      const px = v.pixels;
      const a = px[s + 3]!;
      const un = (c: number): number =>
        v.pixelFormat === 'rgba8' ? c : a === 0 ? 0 : Math.min(255, Math.round((c * 255) / a));
      const bgra = v.pixelFormat === 'bgra8-premultiplied';
      out[o] = un(px[s + (bgra ? 2 : 0)]!);
      out[o + 1] = un(px[s + 1]!);
      out[o + 2] = un(px[s + (bgra ? 0 : 2)]!);
      out[o + 3] = a;
    }
  return out;
}

/** sharp resizing the master entry `format` to width×height (cover: centre crop; inside: scale). */
async function expected(format: string, width: number, height: number, fit: 'cover' | 'fill') {
  const v = f.cache.peek(format, 'cat.png')!;
  try {
    const img = sharp(straightRgba(v), { raw: { width: v.width, height: v.height, channels: 4 } });
    const sized =
      width === v.width && height === v.height ? img : img.resize(width, height, { fit, position: 'centre' });
    return { pixels: await sized.raw().toBuffer(), etag: v.etag };
  } finally {
    v.release();
  }
}

async function pixelsOf(body: Buffer) {
  const { data, info } = await sharp(body).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function maxDiff(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('cover variants at dpr 1, 2, 3: sharp resizing the smallest large-enough entry, byte for byte', async () => {
  // w=20 in device pixels: 20 → 24 (from sq-48), 40 → 48 (sq-48 as it is), 60 → 64: sq-48 is too
  // small and wide-80's crop (60×60) too, so sq-96
  for (const [dpr, side, master] of [
    [1, 24, 'sq-48'],
    [2, 48, 'sq-48'],
    [3, 64, 'sq-96'],
  ] as const) {
    const before = decodes();
    const r = await f.app.inject(`/v1/thumbnails/sq-96/cat.png?w=20&dpr=${dpr}&type=png`);
    assert.equal(r.statusCode, 200, r.body);
    const got = await pixelsOf(r.rawPayload);
    assert.deepEqual([got.width, got.height], [side, side]);
    const want = await expected(master, side, side, 'cover');
    assert.equal(maxDiff(got.data, want.pixels), 0, `dpr ${dpr}`);
    assert.equal(
      r.headers.etag,
      `"${want.etag.replace(/"/g, '')}-png-${side}x${side}c"`,
      'named by its master',
    );
    assert.equal(decodes(), before, 'no decode for a variant of cached entries');
  }
});

test('inside variants at dpr 1, 2, 3 keep the aspect, from the smallest inside entry large enough', async () => {
  // 200×150 source: wide-80 holds 80×60, wide-160 holds 160×120; w=40: 40 → 48, 80, 120
  for (const [dpr, w, h, master] of [
    [1, 48, 36, 'wide-80'],
    [2, 80, 60, 'wide-80'],
    [3, 120, 90, 'wide-160'],
  ] as const) {
    const before = decodes();
    const r = await f.app.inject(`/v1/thumbnails/wide-160/cat.png?w=40&dpr=${dpr}&type=png`);
    assert.equal(r.statusCode, 200, r.body);
    const got = await pixelsOf(r.rawPayload);
    assert.deepEqual([got.width, got.height], [w, h]);
    const want = await expected(master, w, h, 'fill');
    assert.equal(maxDiff(got.data, want.pixels), 0, `dpr ${dpr}`);
    assert.ok(String(r.headers.etag).startsWith(`"${want.etag.replace(/"/g, '')}-png-`));
    assert.equal(decodes(), before);
  }
  // h alone: the box's height decides
  const r = await f.app.inject('/v1/thumbnails/wide-160/cat.png?h=30&type=png');
  const got = await pixelsOf(r.rawPayload);
  assert.deepEqual([got.width, got.height], [43, 32]); // 30 → 32, 80×60 × 32/60
});

test('a premultiplied BGRA entry is unpacked before the resize (within 1 of an independent unpack)', async () => {
  for (const dpr of [1, 2, 3]) {
    const r = await f.app.inject(`/v1/thumbnails/skia-96/cat.png?w=16&dpr=${dpr}&type=png`);
    assert.equal(r.statusCode, 200, r.body);
    const got = await pixelsOf(r.rawPayload);
    const side = 16 * dpr;
    assert.deepEqual([got.width, got.height], [side, side]);
    const want = await expected('skia-96', side, side, 'cover');
    // unpremultiplying rounds; this test's unpack and the engine's may differ by one step
    assert.ok(maxDiff(got.data, want.pixels) <= 1, `dpr ${dpr}`);
  }
});

test('a variant of a key not cached decodes it once through the normal path, then never again', async () => {
  assert.equal(f.cache.has('wide-160', 'fresh.png'), false);
  const before = decodes();
  const r = await f.app.inject('/v1/thumbnails/wide-160/fresh.png?w=100&type=webp');
  assert.equal(r.statusCode, 200, r.body);
  const m = await sharp(r.rawPayload).metadata();
  assert.deepEqual([m.width, m.height], [120, 90]); // 100 → 120
  assert.equal(f.cache.has('wide-160', 'fresh.png'), true);
  const afterFirst = decodes();
  assert.ok(afterFirst > before, 'the source was decoded (the family at once)');
  for (const q of ['w=16', 'w=64&dpr=2', 'h=100', 'w=24&type=jpeg', 'w=200']) {
    const v = await f.app.inject(
      `/v1/thumbnails/wide-160/fresh.png?${q}${q.includes('type') ? '' : '&type=webp'}`,
    );
    assert.equal(v.statusCode, 200, q);
    const c = await f.app.inject(`/v1/thumbnails/sq-96/fresh.png?${q}`);
    assert.equal(c.statusCode, 200, q);
  }
  assert.equal(decodes(), afterFirst, 'every later variant came from the tables');
});

test('sizes snap up to PIXTABLE_VARIANT_WIDTHS; never beyond the entry; refusals are 400s', async () => {
  const size = async (url: string) => {
    const r = await f.app.inject(url);
    assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
    const m = await sharp(r.rawPayload).metadata();
    return [m.width, m.height];
  };
  assert.deepEqual(await size('/v1/thumbnails/sq-96/cat.png?w=17&type=png'), [24, 24]);
  assert.deepEqual(await size('/v1/thumbnails/sq-96/cat.png?w=81&type=png'), [96, 96]);
  // beyond the format's entry: the entry's own size, not an enlargement
  assert.deepEqual(await size('/v1/thumbnails/sq-96/cat.png?w=200&type=png'), [96, 96]);
  assert.deepEqual(await size('/v1/thumbnails/wide-160/cat.png?w=100&dpr=2&type=png'), [160, 120]);
  assert.deepEqual(await size('/v1/thumbnails/wide-80/cat.png?w=120&type=png'), [80, 60]);

  const before = decodes();
  for (const [q, code] of [
    ['w=0', 'INVALID_VARIANT'],
    ['w=abc', 'INVALID_VARIANT'],
    ['w=-5', 'INVALID_VARIANT'],
    ['w=16385', 'INVALID_VARIANT'],
    ['w=2.5', 'INVALID_VARIANT'],
    ['w=16&w=32', 'INVALID_VARIANT'],
    ['w=16&dpr=1.5', 'INVALID_VARIANT'],
    ['w=16&dpr=4', 'INVALID_VARIANT'],
    ['dpr=2', 'INVALID_VARIANT'],
    ['w=auto&dpr=2', 'INVALID_VARIANT'],
    ['w=auto&h=20', 'INVALID_VARIANT'],
    ['w=201', 'VARIANT_TOO_LARGE'],
    ['w=150&dpr=2', 'VARIANT_TOO_LARGE'],
    ['h=70&dpr=3', 'VARIANT_TOO_LARGE'],
  ] as const) {
    const r = await f.app.inject(`/v1/thumbnails/sq-96/other.png?${q}`);
    assert.equal(r.statusCode, 400, q);
    assert.equal(errorOf(r.body).code, code, q);
  }
  // the raw route serves entries at their table size only
  const raw = await f.app.inject('/v1/pixels/sq-96/other.png?w=16');
  assert.equal(raw.statusCode, 400);
  assert.equal(errorOf(raw.body).code, 'INVALID_VARIANT');
  assert.equal(decodes(), before, 'a refused request decodes nothing');
  assert.equal(f.cache.has('sq-96', 'other.png'), false);
});

test('Client Hints: w=auto reads Sec-CH-Width, dpr=auto Sec-CH-DPR; Vary names exactly those used', async () => {
  const get = (url: string, headers: Record<string, string> = {}) => f.app.inject({ url, headers });
  let r = await get('/v1/thumbnails/wide-160/cat.png?w=auto&type=png', { 'sec-ch-width': '100' });
  assert.deepEqual(await dims(r.rawPayload), [120, 90]);
  assert.equal(r.headers.vary, 'Sec-CH-Width');
  assert.equal(r.headers['accept-ch'], 'Sec-CH-DPR, Sec-CH-Width');
  // without the hint: the format's own size, still varying by it
  r = await get('/v1/thumbnails/wide-160/cat.png?w=auto&type=png');
  assert.deepEqual(await dims(r.rawPayload), [160, 120]);
  assert.equal(r.headers.vary, 'Sec-CH-Width');
  // a hint beyond the largest size is the largest (hints never make a request fail)
  r = await get('/v1/thumbnails/sq-96/cat.png?w=auto&type=png', { 'sec-ch-width': '5000' });
  assert.equal(r.statusCode, 200);
  // type from Accept too
  r = await get('/v1/thumbnails/wide-160/cat.png?w=auto', { 'sec-ch-width': '30', accept: 'image/webp' });
  assert.equal(r.headers['content-type'], 'image/webp');
  assert.equal(r.headers.vary, 'Accept, Sec-CH-Width');
  assert.deepEqual(await dims(r.rawPayload), [32, 24]);

  for (const [hint, side] of [
    ['2.625', 64], // rounded up to dpr 3: 60 → 64
    ['2', 48],
    ['1', 24],
    ['bogus', 24], // a malformed hint counts as absent
  ] as const) {
    r = await get('/v1/thumbnails/sq-96/cat.png?w=20&dpr=auto&type=png', { 'sec-ch-dpr': hint });
    assert.deepEqual(await dims(r.rawPayload), [side, side], hint);
    assert.equal(r.headers.vary, 'Sec-CH-DPR');
  }
  // explicit parameters: no hint is read, so none is in Vary
  r = await get('/v1/thumbnails/sq-96/cat.png?w=20&dpr=2&type=png', {
    'sec-ch-dpr': '3',
    'sec-ch-width': '16',
  });
  assert.deepEqual(await dims(r.rawPayload), [48, 48]);
  assert.equal(r.headers.vary, undefined);
  // a plain thumbnail ignores hints too (and still advertises them)
  r = await get('/v1/thumbnails/sq-96/cat.png?type=png', { 'sec-ch-width': '16' });
  assert.deepEqual(await dims(r.rawPayload), [96, 96]);
  assert.equal(r.headers.vary, undefined);
  assert.equal(r.headers['accept-ch'], 'Sec-CH-DPR, Sec-CH-Width');
});

async function dims(body: Buffer): Promise<number[]> {
  const m = await sharp(body).metadata();
  return [m.width, m.height];
}

test('ETag per variant size and type; 304 with the same Vary; one LRU entry per variant', async () => {
  const a = await f.app.inject('/v1/thumbnails/sq-96/cat.png?w=32&type=webp');
  const b = await f.app.inject('/v1/thumbnails/sq-96/cat.png?w=32&type=png');
  const c = await f.app.inject('/v1/thumbnails/sq-96/cat.png?w=48&type=webp');
  const plain = await f.app.inject('/v1/thumbnails/sq-96/cat.png?type=webp');
  const tags = new Set([a, b, c, plain].map((r) => r.headers.etag));
  assert.equal(tags.size, 4);
  // the same variant asked another way (w=30 snaps to 32) is the same representation
  const same = await f.app.inject('/v1/thumbnails/sq-96/cat.png?w=30&type=webp');
  assert.equal(same.headers.etag, a.headers.etag);
  assert.ok(same.rawPayload.equals(a.rawPayload));

  let r = await f.app.inject({
    url: '/v1/thumbnails/sq-96/cat.png?w=32&type=webp',
    headers: { 'if-none-match': String(a.headers.etag) },
  });
  assert.equal(r.statusCode, 304);
  assert.equal(r.rawPayload.length, 0);
  assert.equal(r.headers.etag, a.headers.etag);
  r = await f.app.inject({
    url: '/v1/thumbnails/sq-96/cat.png?w=20&dpr=auto',
    headers: { accept: 'image/webp' },
  });
  r = await f.app.inject({
    url: '/v1/thumbnails/sq-96/cat.png?w=20&dpr=auto',
    headers: { accept: 'image/webp', 'if-none-match': String(r.headers.etag) },
  });
  assert.equal(r.statusCode, 304);
  assert.equal(r.headers.vary, 'Accept, Sec-CH-DPR');

  // concurrent requests for one new variant share one encoding
  const size = f.app.pixtable.thumbs.size;
  const all = await Promise.all(
    Array.from({ length: 6 }, () => f.app.inject('/v1/thumbnails/wide-160/cat.png?w=64&type=avif')),
  );
  assert.equal(f.app.pixtable.thumbs.size, size + 1);
  for (const x of all) assert.ok(x.rawPayload.equals(all[0]!.rawPayload));
});

test('signed URLs: the signature covers w, h and dpr', async () => {
  const url = signUrl('/v1/thumbnails/sq-96/cat.png?w=32&type=png', signKey);
  assert.equal((await signed.app.inject(url)).statusCode, 200);
  const r = await signed.app.inject(url.replace('w=32', 'w=48'));
  assert.equal(r.statusCode, 403);
  assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  const unsigned = await signed.app.inject('/v1/thumbnails/sq-96/cat.png?w=32&type=png');
  assert.equal(errorOf(unsigned.body).code, 'SIGNATURE_REQUIRED');
});

test('/openapi.json describes w, h and dpr on the thumbnails route', async () => {
  const doc = (await f.app.inject('/openapi.json')).json() as {
    paths: Record<string, { get: { parameters: { name: string; in: string; description?: string }[] } }>;
  };
  const params = doc.paths['/v1/thumbnails/{format}/{*}']!.get.parameters.filter((p) => p.in === 'query');
  for (const name of ['w', 'h', 'dpr']) {
    const p = params.find((x) => x.name === name);
    assert.ok(p?.description, `${name} in ${params.map((x) => x.name).join(', ')}`);
  }
  assert.match(params.find((x) => x.name === 'dpr')!.description!, /Sec-CH-DPR/);
});
