// Read-only caches over the writer's key map (src/engine/key-map.ts through FormatStore): they
// never replay the index log, see what the writer writes and deletes at once, and follow a writer
// that rebuilt the map (every writer open) or the whole table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ImageCache, type FormatSpec } from '../../src/index.js';
import { segmentFile, tableDir, tablesDir } from '../../src/engine/layout.js';
import { solidPng, withCache } from '../helpers/fixtures.js';

const FMT: FormatSpec[] = [{ name: 's', width: 8, height: 8, pixelFormat: 'rgba8', maxCount: 8 }];
const quiet = { warn() {} };

const reader = (storage: string) =>
  ImageCache.open({ storage, formats: FMT, readOnly: true, revalidate: false, logger: quiet });

function red(cache: ImageCache, key: string): number | undefined {
  const v = cache.peek('s', key);
  if (v === undefined) return undefined;
  try {
    return v.pixels[0];
  } finally {
    v.release();
  }
}

test('a reader sees an entry the moment the writer wrote it, and a delete the moment it is done', async () => {
  await withCache(FMT, async (w, storage) => {
    const r = await reader(storage);
    try {
      assert.equal(red(r, 'a.png'), undefined);
      await w.put('a.png', await solidPng(8, 8, [10, 0, 0]));
      // no poll, no retry: the very next lookup finds it
      const t0 = performance.now();
      const seen = red(r, 'a.png');
      const delayUs = (performance.now() - t0) * 1000;
      assert.equal(seen, 10, 'visible at once');
      const ref = r.peekRef('s', 'a.png')!;
      assert.equal(r.current(ref), true);
      await w.put('a.png', await solidPng(8, 8, [20, 0, 0]));
      assert.equal(r.current(ref), false, 'the rewrite is seen by the held ref');
      assert.equal(red(r, 'a.png'), 20);
      const ref2 = r.peekRef('s', 'a.png')!;
      assert.equal(await w.delete('a.png'), true);
      assert.equal(red(r, 'a.png'), undefined, 'a deleted entry is not served by a reader');
      assert.equal(r.has('s', 'a.png'), false);
      assert.equal(r.current(ref2), false, 'nor through a ref it holds');
      assert.equal(r.stats().formats[0]!.entries, 0);
      console.log(`first lookup after the write: ${delayUs.toFixed(0)} µs (it verifies the entry's CRC)`);
    } finally {
      await r.close();
    }
  });
});

test('a reader never replays the index log: it opens and serves from the key map alone', async () => {
  await withCache(FMT, async (w, storage) => {
    for (const [k, c] of [
      ['a.png', 30],
      ['b.png', 40],
    ] as const)
      await w.put(k, await solidPng(8, 8, [c, 0, 0]));
    await w.flush();
    // the log made unreadable as a log: a replaying reader would see an empty index
    const log = path.join(tableDir(tablesDir(storage), 's'), 'index.log');
    const fd = fs.openSync(log, 'r+');
    fs.writeSync(fd, Buffer.alloc(16), 0, 16, 0);
    fs.closeSync(fd);
    const r = await reader(storage);
    try {
      assert.equal(red(r, 'a.png'), 30);
      assert.equal(red(r, 'b.png'), 40);
      assert.equal(r.stats().formats[0]!.entries, 2);
    } finally {
      await r.close();
    }
  });
});

test('a reader follows a writer that restarted (the map rebuilt) and one that rebuilt its table', async () => {
  await withCache(FMT, async (w0, storage) => {
    await w0.put('a.png', await solidPng(8, 8, [50, 0, 0]));
    await w0.put('b.png', await solidPng(8, 8, [60, 0, 0]));
    await w0.close();
    const r = await reader(storage);
    let w: ImageCache | undefined;
    try {
      assert.equal(red(r, 'a.png'), 50);
      // restart: the new writer rebuilds the map from the log and retires the old file
      w = await ImageCache.open({ storage, formats: FMT, sync: 'none', logger: quiet });
      await w.delete('b.png');
      await w.put('c.png', await solidPng(8, 8, [70, 0, 0]));
      assert.equal(red(r, 'c.png'), 70, 'written after the restart');
      assert.equal(red(r, 'b.png'), undefined, 'deleted after the restart');
      assert.equal(red(r, 'a.png'), 50, 'kept across it');
      await w.close();
      // a damaged table: the next writer starts a new one (new table id) and a new map
      const seg = segmentFile(tableDir(tablesDir(storage), 's'), 0);
      const fd = fs.openSync(seg, 'r+');
      fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 0);
      fs.closeSync(fd);
      w = await ImageCache.open({ storage, formats: FMT, sync: 'none', logger: quiet });
      await w.put('d.png', await solidPng(8, 8, [80, 0, 0]));
      r.peek('s', 'zzz'); // the reader notices the new map within a few ms
      await new Promise((res) => setTimeout(res, 20));
      assert.equal(red(r, 'd.png'), 80, 'an entry of the new table');
      assert.equal(red(r, 'a.png'), undefined, 'the old table is gone');
      assert.equal(r.stats().formats[0]!.entries, 1);
    } finally {
      await w?.close();
      await r.close();
    }
  });
});

test('a reader looking a key up while the writer rewrites it finds it gone for now, not damaged', async () => {
  await withCache(FMT, async (w, storage) => {
    const warnings: string[] = [];
    // Each reader's first look at an entry is the one that checks it whole: 32 readers look first
    // at 32 consecutive event-loop turns of the rewrite, from a random turn each round.
    const readers = await Promise.all(
      Array.from({ length: 32 }, () =>
        ImageCache.open({
          storage,
          formats: FMT,
          readOnly: true,
          revalidate: false,
          logger: { warn: (m) => warnings.push(m) },
        }),
      ),
    );
    const turn = () => new Promise((res) => setImmediate(res));
    try {
      let turns = 0;
      await w.put('probe.png', await solidPng(8, 8, [1, 0, 0]));
      const probe = w.put('probe.png', await solidPng(8, 8, [2, 0, 0])).then(() => (turns = -turns));
      while (turns >= 0 && turns < 100_000) {
        turns++;
        await turn();
      }
      await probe;
      const span = Math.max(32, -turns); // event-loop turns a rewrite takes here
      let missesInFlight = 0;
      // bounded: at most 400 rounds or 20 s, stopping at the first look that landed inside
      const until = Date.now() + 20_000;
      for (let round = 0; round < 400 && missesInFlight === 0 && Date.now() < until; round++) {
        const key = `k${round}.png`;
        await w.put(key, await solidPng(8, 8, [round % 100, 0, 0]));
        const put = w.put(key, await solidPng(8, 8, [100 + (round % 100), 0, 0]));
        const start = Math.floor(Math.random() * span);
        for (let t = 0; t < start + 32; t++) {
          if (t >= start && !readers[t - start]!.has('s', key)) missesInFlight++;
          await turn();
        }
        await put;
        for (const r of readers) assert.equal(red(r, key), 100 + (round % 100));
      }
      assert.ok(missesInFlight > 0, 'no first look landed inside a rewrite (the test saw nothing)');
      assert.deepEqual(warnings, [], 'nothing reported as damaged');
      for (const r of readers) assert.equal(r.stats().formats[0]!.dropped, 0);
    } finally {
      for (const r of readers) await r.close();
    }
  });
});
