// ImageCache behaviour users rely on: hits without decode, hard maxCount with LRU recycling, pins,
// replacement of pinned keys, in-flight de-duplication, source changes, typed errors, key safety.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache, PixtableError, type FormatSpec, type ImageView } from '../../src/index.js';
import { gradientPng, rmrf, solidPng, tempDir, withCache } from '../helpers/fixtures.js';

const SMALL: FormatSpec[] = [{ name: 's', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 3 }];

function firstPixel(v: ImageView): number[] {
  return [...v.pixels.subarray(0, 4)];
}

test('a reopened cache serves stored entries without decoding', async () => {
  const dir = tempDir();
  try {
    const a = await ImageCache.open({ storage: dir, sync: 'always' });
    await a.put('cat.png', await gradientPng(300, 200));
    const before = await a.get('thumb-256', 'cat.png');
    const bytes = Buffer.from(before.pixels);
    before.release();
    await a.close();
    const b = await ImageCache.open({ storage: dir });
    using v = await b.get('thumb-256', 'cat.png');
    assert.ok(v.pixels.equals(bytes));
    const s = b.stats().formats.find((f) => f.format === 'thumb-256')!;
    assert.equal(s.decodes, 0);
    assert.equal(s.hits, 1);
    assert.equal(s.entries, 1);
    await b.close();
  } finally {
    rmrf(dir);
  }
});

test('formats of one family come from a single decode', async () => {
  let decodes = 0;
  let produced: readonly string[] = [];
  await withCache(
    [
      { name: 'a', width: 32, height: 32, family: 'f' },
      { name: 'b', width: 64, height: 48, fit: 'inside', family: 'f' },
      { name: 'c', width: 20, height: 20 },
    ],
    async (cache) => {
      await cache.put('x.png', await gradientPng(200, 100));
      assert.equal(decodes, 2, 'one decode for family f, one for c');
      decodes = 0;
      fs.writeFileSync(path.join(cache.sourcesDir, 'y.png'), await gradientPng(90, 90));
      (await cache.get('b', 'y.png')).release();
      assert.equal(decodes, 1);
      assert.deepEqual(produced, ['a', 'b']);
      assert.ok(cache.has('a', 'y.png'), 'sibling format filled by the same decode');
      assert.ok(!cache.has('c', 'y.png'));
    },
    {
      onDecode: (_ms, formats) => {
        decodes++;
        produced = formats;
      },
    },
  );
});

test('maxCount is a hard limit: the least recently used entry is recycled', async () => {
  await withCache(SMALL, async (cache) => {
    const colours: [number, number, number][] = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [255, 255, 0],
    ];
    for (let i = 0; i < 3; i++) await cache.put(`k${i}.png`, await solidPng(20, 20, colours[i]!));
    (await cache.get('s', 'k0.png')).release(); // k0 becomes most recent; k1 is now the oldest
    await cache.put('k3.png', await solidPng(20, 20, colours[3]!));
    const st = cache.stats().formats[0]!;
    assert.equal(st.entries, 3);
    assert.equal(st.evictions, 1);
    assert.ok(!cache.has('s', 'k1.png'), 'least recently used was recycled');
    for (const i of [0, 2, 3]) {
      using v = (await cache.peek('s', `k${i}.png`))!;
      assert.deepEqual(firstPixel(v), [...colours[i]!, 255]);
    }
    // Its source is still there: a get decodes it again (and recycles the next oldest).
    using again = await cache.get('s', 'k1.png');
    assert.deepEqual(firstPixel(again), [0, 255, 0, 255]);
    assert.equal(cache.stats().formats[0]!.entries, 3);
  });
});

test('pinned entries are never recycled; a full table of pins fails with TABLE_FULL', async () => {
  await withCache(SMALL, async (cache) => {
    const views: ImageView[] = [];
    for (let i = 0; i < 3; i++) {
      await cache.put(`k${i}.png`, await solidPng(20, 20, [i * 80, 0, 0]));
      views.push(await cache.get('s', `k${i}.png`));
    }
    assert.equal(cache.stats().formats[0]!.pinned, 3);
    await assert.rejects(cache.put('k3.png', await solidPng(20, 20, [0, 0, 9])), { code: 'TABLE_FULL' });
    views.forEach((v, i) => assert.deepEqual(firstPixel(v), [i * 80, 0, 0, 255], 'pinned pixels untouched'));
    views[1]!.release();
    views[1]!.release(); // idempotent
    await cache.put('k3.png', await solidPng(20, 20, [0, 0, 9]));
    assert.ok(!cache.has('s', 'k1.png'), 'the unpinned one was recycled');
    views[0]!.release();
    views[2]!.release();
    assert.equal(cache.stats().formats[0]!.pinned, 0);
  });
});

test('replacing a pinned key writes a new slot; the old pixels stay intact until release', async () => {
  await withCache(SMALL, async (cache) => {
    await cache.put('a.png', await solidPng(20, 20, [200, 0, 0]));
    const old = await cache.get('s', 'a.png');
    const oldBytes = Buffer.from(old.pixels);
    await cache.put('a.png', await solidPng(20, 20, [0, 0, 200]));
    using fresh = await cache.get('s', 'a.png');
    assert.deepEqual(firstPixel(fresh), [0, 0, 200, 255]);
    assert.ok(old.pixels.equals(oldBytes), 'a held view is never overwritten');
    assert.notEqual(old.etag, fresh.etag);
    assert.equal(cache.stats().formats[0]!.entries, 1);
    old.release();
    // The orphaned slot is free again: three more keys fit without evicting a.png.
    await cache.put('b.png', await solidPng(20, 20, [1, 2, 3]));
    await cache.put('c.png', await solidPng(20, 20, [1, 2, 3]));
    assert.ok(cache.has('s', 'a.png'));
    assert.equal(cache.stats().formats[0]!.evictions, 0);
  });
});

test('concurrent gets of one missing key decode once', async () => {
  let decodes = 0;
  await withCache(
    [{ name: 'm', width: 64, height: 64 }],
    async (cache) => {
      fs.writeFileSync(path.join(cache.sourcesDir, 'big.png'), await gradientPng(1200, 900));
      const views = await Promise.all(Array.from({ length: 12 }, () => cache.get('m', 'big.png')));
      assert.equal(decodes, 1);
      assert.ok(views.every((v) => v.pixels.equals(views[0]!.pixels)));
      views.forEach((v) => v.release());
      const st = cache.stats().formats[0]!;
      assert.equal(st.misses, 12);
      assert.equal(st.decodes, 1);
    },
    { onDecode: () => decodes++ },
  );
});

test('a source changed on disk is decoded again; a deleted one is purged', async () => {
  await withCache(
    SMALL,
    async (cache) => {
      const file = path.join(cache.sourcesDir, 'c.png');
      fs.writeFileSync(file, await solidPng(20, 20, [10, 20, 30]));
      const a = await cache.get('s', 'c.png');
      assert.deepEqual(firstPixel(a), [10, 20, 30, 255]);
      a.release();
      fs.writeFileSync(file, await solidPng(20, 20, [90, 80, 70]));
      using b = await cache.get('s', 'c.png');
      assert.deepEqual(firstPixel(b), [90, 80, 70, 255]);
      assert.equal(cache.stats().formats[0]!.decodes, 2);
      // Same bytes rewritten (new mtime): hashed, found identical, no decode.
      fs.writeFileSync(file, fs.readFileSync(file));
      (await cache.get('s', 'c.png')).release();
      assert.equal(cache.stats().formats[0]!.decodes, 2);
      fs.unlinkSync(file);
      await assert.rejects(cache.get('s', 'c.png'), { code: 'SOURCE_NOT_FOUND' });
      assert.ok(!cache.has('s', 'c.png'));
    },
    { revalidateMs: 0 },
  );
});

test('revalidateMs bounds source checks to one per interval per entry', async () => {
  let clock = 0;
  await withCache(
    SMALL,
    async (cache) => {
      const file = path.join(cache.sourcesDir, 'r.png');
      fs.writeFileSync(file, await solidPng(20, 20, [10, 20, 30]));
      (await cache.get('s', 'r.png')).release();
      fs.writeFileSync(file, await solidPng(20, 20, [200, 100, 50]));
      clock += 4_999;
      using stale = await cache.get('s', 'r.png');
      assert.deepEqual(
        firstPixel(stale),
        [10, 20, 30, 255],
        'within the interval the source is not looked at',
      );
      clock += 1;
      using fresh = await cache.get('s', 'r.png');
      assert.deepEqual(firstPixel(fresh), [200, 100, 50, 255], 'after it, the change is noticed');
      assert.equal(cache.stats().formats[0]!.decodes, 2);
    },
    { revalidateMs: 5_000, now: () => clock },
  );
});

test('delete removes the source and purges every format', async () => {
  await withCache([...SMALL, { name: 't', width: 8, height: 8 }], async (cache) => {
    await cache.put('d/e.png', await solidPng(20, 20, [1, 1, 1]));
    assert.ok(cache.has('s', 'd/e.png') && cache.has('t', 'd/e.png'));
    assert.deepEqual(await cache.listSources(), ['d/e.png']);
    assert.equal(await cache.delete('d/e.png'), true);
    assert.ok(!cache.has('s', 'd/e.png') && !cache.has('t', 'd/e.png'));
    assert.ok(!fs.existsSync(path.join(cache.sourcesDir, 'd/e.png')));
    assert.equal(await cache.delete('d/e.png'), false);
    await assert.rejects(cache.get('s', 'd/e.png'), { code: 'SOURCE_NOT_FOUND' });
  });
});

test('keys that escape the sources root are refused', async () => {
  await withCache(SMALL, async (cache, dir) => {
    const outside = path.join(dir, 'secret.png');
    fs.writeFileSync(outside, await solidPng(4, 4, [1, 2, 3]));
    // A sibling directory sharing the root's name as a prefix.
    fs.mkdirSync(path.join(dir, 'sources-evil'));
    fs.writeFileSync(path.join(dir, 'sources-evil', 'x.png'), await solidPng(4, 4, [1, 2, 3]));
    fs.symlinkSync(outside, path.join(cache.sourcesDir, 'link.png'));
    fs.symlinkSync(path.join(dir, 'sources-evil'), path.join(cache.sourcesDir, 'evil'));
    for (const key of [
      '../secret.png',
      'a/../../secret.png',
      '/etc/hostname',
      outside,
      '../sources-evil/x.png',
      'a\u0000b.png',
      'a\\..\\secret.png',
      '',
      'a//b.png',
      './x.png',
      '.hidden',
    ]) {
      await assert.rejects(cache.get('s', key), { code: 'INVALID_KEY' }, JSON.stringify(key));
    }
    await assert.rejects(cache.get('s', 'link.png'), { code: 'INVALID_KEY' });
    await assert.rejects(cache.get('s', 'evil/x.png'), { code: 'INVALID_KEY' });
    await assert.rejects(cache.put('evil/new.png', await solidPng(4, 4, [0, 0, 0])), { code: 'INVALID_KEY' });
    await assert.rejects(cache.put('../up.png', await solidPng(4, 4, [0, 0, 0])), { code: 'INVALID_KEY' });
    assert.ok(!fs.existsSync(path.join(dir, 'sources-evil', 'new.png')));
    assert.ok(!fs.existsSync(path.join(dir, 'up.png')));
  });
});

test('broken input gets typed errors and stored entries are untouched', async () => {
  await withCache(
    SMALL,
    async (cache) => {
      const good = await solidPng(20, 20, [7, 8, 9]);
      await cache.put('keep.png', good);
      const jpeg = await sharp(await gradientPng(200, 200))
        .jpeg()
        .toBuffer();
      const bomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#000' } })
        .png({ compressionLevel: 9 })
        .toBuffer();
      const cases: [string, Buffer, string][] = [
        ['empty', Buffer.alloc(0), 'EMPTY_SOURCE'],
        ['text', Buffer.from('this is not an image at all'), 'UNSUPPORTED_IMAGE'],
        ['truncated jpeg', jpeg.subarray(0, jpeg.length >> 1), 'CORRUPT_IMAGE'],
        ['bomb', bomb, 'TOO_MANY_PIXELS'],
        ['oversized', Buffer.alloc(300_001, 1), 'SOURCE_TOO_LARGE'],
      ];
      for (const [what, bytes, code] of cases) {
        const err = await cache.put('keep.png', bytes).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof PixtableError, `${what}: typed error`);
        assert.equal(err.code, code, `${what}: ${err.message}`);
      }
      assert.ok(fs.readFileSync(path.join(cache.sourcesDir, 'keep.png')).equals(good), 'source not replaced');
      using v = await cache.get('s', 'keep.png');
      assert.deepEqual(firstPixel(v), [7, 8, 9, 255]);
      assert.equal(cache.stats().formats[0]!.decodes, 1, 'the stored entry was not re-decoded');
    },
    { decode: { maxInputPixels: 1_000_000, maxInputBytes: 300_000 } },
  );
});

test('a full decode queue fails fast with QUEUE_FULL and a retry hint', async () => {
  await withCache(
    [{ name: 'q', width: 64, height: 64 }],
    async (cache) => {
      for (let i = 0; i < 4; i++)
        fs.writeFileSync(path.join(cache.sourcesDir, `q${i}.png`), await gradientPng(1500, 1500));
      const results = await Promise.allSettled([0, 1, 2, 3].map((i) => cache.get('q', `q${i}.png`)));
      const rejected = results.filter((r) => r.status === 'rejected');
      assert.ok(rejected.length >= 2, 'beyond 1 running + 1 queued, requests are refused');
      for (const r of rejected) {
        const e = (r as PromiseRejectedResult).reason as PixtableError;
        assert.equal(e.code, 'QUEUE_FULL');
        assert.equal(e.status, 503);
        assert.equal(e.details?.retryAfter, 1);
      }
      for (const r of results) if (r.status === 'fulfilled') r.value.release();
    },
    { decode: { concurrency: 1, maxQueue: 1 } },
  );
});

test('bad options and formats are refused with messages naming the parameter', async () => {
  await assert.rejects(
    ImageCache.open({ storage: tempDir(), sync: 'sometimes' as never }),
    (e: PixtableError) => {
      assert.equal(e.code, 'INVALID_OPTION');
      assert.match(e.message, /sync must be "none", "batch" or "always", got "sometimes"/);
      return true;
    },
  );
  await assert.rejects(
    ImageCache.open({ storage: tempDir(), formats: [{ name: 'x', width: 0, height: 4 }] }),
    /format x\.width must be an integer from 1 to 16384, got 0/,
  );
  await assert.rejects(
    ImageCache.open({ storage: tempDir(), formats: [{ name: 'x', width: 4, height: 4, rowAlignment: 48 }] }),
    /rowAlignment must be a power of two, got 48/,
  );
  await assert.rejects(
    ImageCache.open({
      storage: tempDir(),
      formats: [{ name: 'x', width: 4, height: 4, pixelFormat: 'rgba16' as never }],
    }),
    { code: 'INVALID_FORMAT' },
  );
  await withCache(SMALL, async (cache) => {
    await assert.rejects(cache.get('nope', 'a.png'), { code: 'UNKNOWN_FORMAT', status: 404 });
  });
});

test('a closed cache refuses work', async () => {
  const dir = tempDir();
  const cache = await ImageCache.open({ storage: dir, formats: SMALL });
  await cache.close();
  await assert.rejects(cache.get('s', 'a.png'), { code: 'CACHE_CLOSED' });
  rmrf(dir);
});
