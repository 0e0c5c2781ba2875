// EntryRef (peekRef / current / pinRef): the unpinned, reusable references serving loops keep.
// What users rely on: a current ref names exactly the entry the key has now, and every way an
// entry can change (rewrite, delete, eviction, source edit, unmapping, another process) makes
// current() false instead of serving old bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ImageCache, PixtableError, type EntryRef, type FormatSpec } from '../../src/index.js';
import { rmrf, solidPng, tempDir, withCache } from '../helpers/fixtures.js';

const SMALL: FormatSpec[] = [{ name: 's', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 3 }];

const first = (r: EntryRef) => [...r.transientPixels.subarray(0, 4)];

test('peekRef returns one reusable ref with the view’s bytes; current() counts hits', async () => {
  await withCache(SMALL, async (cache) => {
    assert.equal(cache.peekRef('s', 'a.png'), undefined, 'never decoded: no ref (peekRef never decodes)');
    await cache.put('a.png', await solidPng(20, 20, [10, 20, 30]));
    using v = await cache.get('s', 'a.png');
    const ref = cache.peekRef('s', 'a.png')!;
    assert.ok(ref.transientPixels.equals(v.pixels));
    assert.deepEqual(
      [ref.width, ref.height, ref.stride, ref.pixelFormat, ref.etag, ref.generation],
      [v.width, v.height, v.stride, v.pixelFormat, v.etag, v.generation],
    );
    assert.equal(cache.peekRef('s', 'a.png'), ref, 'the same object while the entry stays');
    const hits = cache.stats().formats[0]!.hits;
    for (let i = 0; i < 5; i++) assert.equal(cache.current(ref), true);
    assert.equal(cache.stats().formats[0]!.hits, hits + 5);
    assert.equal(cache.stats().formats[0]!.pinned, 1, 'only the view pins; refs do not');
  });
});

test('a rewritten, deleted or evicted entry is no longer current', async () => {
  await withCache(SMALL, async (cache) => {
    await cache.put('a.png', await solidPng(20, 20, [10, 20, 30]));
    (await cache.get('s', 'a.png')).release();
    const old = cache.peekRef('s', 'a.png')!;
    await cache.put('a.png', await solidPng(20, 20, [200, 0, 0]));
    (await cache.get('s', 'a.png')).release();
    assert.equal(cache.current(old), false, 'rewritten');
    const now = cache.peekRef('s', 'a.png')!;
    assert.notEqual(now.etag, old.etag);
    assert.deepEqual(first(now), [200, 0, 0, 255]);

    await cache.delete('a.png');
    assert.equal(cache.current(now), false, 'deleted');
    assert.equal(cache.peekRef('s', 'a.png'), undefined);

    await cache.put('b.png', await solidPng(20, 20, [1, 2, 3]));
    (await cache.get('s', 'b.png')).release();
    const b = cache.peekRef('s', 'b.png')!;
    for (let i = 0; i < 3; i++) {
      await cache.put(`c${i}.png`, await solidPng(20, 20, [i, i, i]));
      (await cache.get('s', `c${i}.png`)).release();
    }
    assert.ok(!cache.has('s', 'b.png'), 'b was the least recently used of a full table');
    assert.equal(cache.current(b), false, 'evicted');
  });
});

test('current() keeps a served entry out of the LRU’s reach', async () => {
  await withCache(SMALL, async (cache) => {
    for (const k of ['a', 'b', 'c']) {
      await cache.put(`${k}.png`, await solidPng(20, 20, [1, 2, 3]));
      (await cache.get('s', `${k}.png`)).release();
    }
    const a = cache.peekRef('s', 'a.png')!;
    (await cache.get('s', 'b.png')).release();
    (await cache.get('s', 'c.png')).release();
    assert.equal(cache.current(a), true); // a becomes the most recently used again
    await cache.put('d.png', await solidPng(20, 20, [4, 5, 6]));
    (await cache.get('s', 'd.png')).release();
    assert.ok(cache.has('s', 'a.png') && !cache.has('s', 'b.png'), 'b, not a, was recycled');
    assert.equal(cache.current(a), true);
  });
});

test('a source edited on disk ends current() after revalidateMs; peekRef then misses', async () => {
  let clock = 0;
  await withCache(
    SMALL,
    async (cache) => {
      const file = path.join(cache.sourcesDir, 'r.png');
      fs.writeFileSync(file, await solidPng(20, 20, [10, 20, 30]));
      (await cache.get('s', 'r.png')).release();
      const ref = cache.peekRef('s', 'r.png')!;
      fs.writeFileSync(file, await solidPng(20, 20, [200, 100, 50]));
      clock += 4_999;
      assert.equal(cache.current(ref), true, 'within the interval the source is not looked at');
      clock += 1;
      assert.equal(cache.current(ref), false, 'the interval is over: look again');
      assert.equal(cache.peekRef('s', 'r.png'), undefined, 'the source changed: a miss, not old bytes');
      (await cache.get('s', 'r.png')).release();
      assert.deepEqual(first(cache.peekRef('s', 'r.png')!), [200, 100, 50, 255]);
    },
    { revalidateMs: 5_000, now: () => clock },
  );
});

test('a ref whose chunk is unmapped lets go of the mapping and is not current', async () => {
  // 64×64 rgba8 entries (16 KiB + trailer, page aligned): three per 64 KiB chunk, and only one
  // chunk may stay mapped.
  const formats: FormatSpec[] = [{ name: 'm', width: 64, height: 64, pixelFormat: 'rgba8', maxCount: 8 }];
  await withCache(
    formats,
    async (cache) => {
      for (let i = 0; i < 4; i++) {
        await cache.put(`k${i}.png`, await solidPng(64, 64, [i * 50, 7, 7]));
        (await cache.get('m', `k${i}.png`)).release();
      }
      const k0 = cache.peekRef('m', 'k0.png')!;
      assert.deepEqual(first(k0), [0, 7, 7, 255]);
      const k3 = cache.peekRef('m', 'k3.png')!; // another chunk: k0's is unmapped
      assert.deepEqual(first(k3), [150, 7, 7, 255]);
      assert.equal(k0.transientPixels.length, 0, 'the dead ref holds no mapping');
      assert.equal(cache.current(k0), false);
      const again = cache.peekRef('m', 'k0.png')!;
      assert.notEqual(again, k0);
      assert.deepEqual(first(again), [0, 7, 7, 255]);
      assert.ok(cache.stats().mappedBytes <= 64 << 10);
    },
    { chunkBytes: 64 << 10, maxMappedBytes: 64 << 10 },
  );
});

test('pinRef keeps a ref’s slot from being recycled until unpinRef', async () => {
  await withCache(SMALL, async (cache) => {
    const refs: EntryRef[] = [];
    for (let i = 0; i < 3; i++) {
      await cache.put(`k${i}.png`, await solidPng(20, 20, [i * 80, 0, 0]));
      (await cache.get('s', `k${i}.png`)).release();
      const r = cache.peekRef('s', `k${i}.png`)!;
      cache.pinRef(r);
      refs.push(r);
    }
    assert.equal(cache.stats().formats[0]!.pinned, 3);
    await assert.rejects(cache.put('k3.png', await solidPng(20, 20, [0, 0, 9])), { code: 'TABLE_FULL' });
    refs.forEach((r, i) => assert.deepEqual(first(r), [i * 80, 0, 0, 255], 'pinned pixels untouched'));
    cache.unpinRef(refs[1]!);
    await cache.put('k3.png', await solidPng(20, 20, [0, 0, 9]));
    assert.equal(cache.current(refs[1]!), false, 'the unpinned one was recycled');
    assert.equal(cache.current(refs[0]!), true);
    cache.unpinRef(refs[0]!);
    cache.unpinRef(refs[2]!);
    assert.equal(cache.stats().formats[0]!.pinned, 0);
  });
});

test('anything but a ref from peekRef is a typed error', async () => {
  await withCache(SMALL, async (cache) => {
    await cache.put('a.png', await solidPng(20, 20, [1, 2, 3]));
    (await cache.get('s', 'a.png')).release();
    const fake = { ...cache.peekRef('s', 'a.png')! };
    for (const call of [() => cache.current(fake), () => cache.pinRef(fake), () => cache.unpinRef(fake)]) {
      assert.throws(call, (e: unknown) => e instanceof PixtableError && e.code === 'INVALID_PARAMETER');
    }
  });
});

test('in a read-only cache, a slot the writer rewrote is no longer current', async () => {
  const dir = tempDir();
  const formats: FormatSpec[] = [{ name: 'one', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 1 }];
  const writer = await ImageCache.open({ storage: dir, formats, sync: 'always' });
  try {
    await writer.put('a.png', await solidPng(20, 20, [10, 20, 30]));
    (await writer.get('one', 'a.png')).release();
    const reader = await ImageCache.open({ storage: dir, formats, readOnly: true });
    try {
      const ref = reader.peekRef('one', 'a.png')!;
      assert.deepEqual(first(ref), [10, 20, 30, 255]);
      assert.equal(reader.current(ref), true);
      // the only slot goes to b.png: same slot, new generation in its trailer
      await writer.put('b.png', await solidPng(20, 20, [90, 90, 90]));
      (await writer.get('one', 'b.png')).release();
      assert.equal(reader.current(ref), false);
      assert.equal(reader.peekRef('one', 'a.png'), undefined);
      assert.deepEqual(first(reader.peekRef('one', 'b.png')!), [90, 90, 90, 255]);
    } finally {
      await reader.close();
    }
  } finally {
    await writer.close();
    rmrf(dir);
  }
});
