// The index log: records survive reopen, a torn tail is cut at the first bad record, the file
// doubles when full or compacts (temp file + rename) when most records are dead, and compaction
// keeps recency order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { IndexLog, OP_DEL, OP_SET } from '../../src/engine/index-log.js';
import { ImageCache } from '../../src/index.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';

const ID = Buffer.from('0123456789abcdef', 'hex');

test('records replay after reopen; a torn tail is discarded and zeroed', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'index.log');
    const first = IndexLog.open(file, ID, true, true)!;
    assert.equal(first.reset, true);
    for (let i = 0; i < 10; i++) first.log.append(OP_SET, `k${i}`, i, i + 1, () => []);
    first.log.append(OP_DEL, 'k3', 3, 4, () => []);
    first.log.close();
    const again = IndexLog.open(file, ID, true, true)!;
    assert.equal(again.reset, false);
    assert.equal(again.records.length, 11);
    assert.deepEqual(again.records[10], { op: OP_DEL, key: 'k3', slot: 3, generation: 4 });
    again.log.close();
    // Damage the 6th record's payload: replay keeps the 5 before it.
    const bytes = fs.readFileSync(file);
    let pos = 4096;
    for (let i = 0; i < 5; i++) pos += 8 + bytes.readUInt32LE(pos);
    bytes[pos + 8 + 13] = bytes[pos + 8 + 13]! ^ 0xff;
    fs.writeFileSync(file, bytes);
    const cut = IndexLog.open(file, ID, true, true)!;
    assert.equal(cut.records.length, 5);
    assert.ok(cut.discardedBytes > 0);
    cut.log.append(OP_SET, 'new', 42, 99, () => []);
    cut.log.close();
    const after = IndexLog.open(file, ID, true, true)!;
    assert.deepEqual(
      after.records.map((r) => r.key),
      ['k0', 'k1', 'k2', 'k3', 'k4', 'new'],
    );
    assert.equal(after.discardedBytes, 0, 'the torn tail was zeroed, new appends replay cleanly');
    after.log.close();
    // An index of another table is started afresh, not misread.
    const other = IndexLog.open(file, Buffer.alloc(8, 7), true, true)!;
    assert.equal(other.reset, true);
    assert.equal(other.records.length, 0);
    other.log.close();
  } finally {
    rmrf(dir);
  }
});

test('a full log doubles while records are live and compacts when they are not', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'index.log');
    const { log } = IndexLog.open(file, ID, true, true)!;
    const initial = log.capacityBytes;
    const live = new Map<string, number>();
    const liveList = () => [...live.entries()].map(([key, slot]) => ({ key, slot, generation: slot + 1 }));
    // All distinct keys stay live: the file must grow.
    for (let i = 0; i < 4000; i++) {
      const key = `photos/${String(i).padStart(6, '0')}.jpg`;
      log.append(OP_SET, key, i, i + 1, liveList);
      live.set(key, i);
    }
    assert.ok(log.capacityBytes >= 2 * initial, 'grew by doubling');
    const grown = log.capacityBytes;
    // Now churn one key: dead records pile up and compaction reclaims them instead of growing.
    live.clear();
    live.set('hot.jpg', 0);
    for (let i = 0; i < 20000; i++) log.append(OP_SET, 'hot.jpg', 0, i + 1, liveList);
    assert.equal(log.capacityBytes, grown, 'compacted in place of growing');
    log.close();
    const r = IndexLog.open(file, ID, true, true)!;
    assert.ok(r.records.length < 20000, `dead records were dropped (${r.records.length} remain)`);
    assert.ok(!r.records.some((x) => x.key.startsWith('photos/')), 'keys no longer live are gone');
    const last = r.records.filter((x) => x.key === 'hot.jpg').pop()!;
    assert.equal(last.generation, 20000);
    assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.tmp')), 'no temp file left behind');
    r.log.close();
  } finally {
    rmrf(dir);
  }
});

test('compaction preserves recency: the least recently used entry is still evicted first after reopen', async () => {
  const dir = tempDir();
  try {
    const formats = [{ name: 's', width: 8, height: 8, maxCount: 3 }];
    const a = await ImageCache.open({ storage: dir, formats });
    for (const k of ['a', 'b', 'c']) await a.put(`${k}.png`, await solidPng(8, 8, [1, 2, 3]));
    await a.put('a.png', await solidPng(8, 8, [3, 2, 1])); // a rewritten: b is now the oldest
    await a.compact();
    await a.close();
    const b = await ImageCache.open({ storage: dir, formats });
    await b.put('d.png', await solidPng(8, 8, [9, 9, 9]));
    assert.ok(!b.has('s', 'b.png'), 'b was least recently written');
    assert.ok(b.has('s', 'a.png') && b.has('s', 'c.png') && b.has('s', 'd.png'));
    await b.close();
  } finally {
    rmrf(dir);
  }
});

test('mapped memory stays within maxMappedBytes however many entries are read', async () => {
  const dir = tempDir();
  try {
    // 64x64 rgba8 entries are 20 KiB; 64 KiB chunks hold 3; a 128 KiB budget holds 2 chunks.
    const cache = await ImageCache.open({
      storage: dir,
      formats: [{ name: 'm', width: 64, height: 64, maxCount: 100 }],
      chunkBytes: 64 * 1024,
      maxMappedBytes: 128 * 1024,
    });
    for (let i = 0; i < 30; i++) await cache.put(`k${i}.png`, await solidPng(64, 64, [i, i * 2, i * 3]));
    let peak = 0;
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 30; i++) {
        using v = await cache.get('m', `k${i}.png`);
        assert.deepEqual([...v.pixels.subarray(0, 3)], [i, i * 2, i * 3]);
        peak = Math.max(peak, cache.stats().mappedBytes);
      }
    }
    assert.ok(peak <= 128 * 1024, `peak mapped ${peak}`);
    assert.ok(peak > 0);
    await cache.close();
  } finally {
    rmrf(dir);
  }
});
