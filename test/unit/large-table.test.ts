// Tables far beyond 2 GiB of logical size map correctly. mmap-io reads offsets and sizes as 32-bit
// ints (offset 2 GiB fails, 4 GiB silently maps offset 0), so tables are split into segment files
// and the one mapping module refuses anything at or past 2^31. Sparse files (no preallocation)
// keep these tests cheap in disk and time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ImageCache, validateFormat } from '../../src/index.js';
import { Table, SEGMENT_BYTES_MAX, type ChunkCache } from '../../src/engine/table.js';
import { MAP_LIMIT, PAGE_SIZE, mapRange } from '../../src/native/mmap.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';

const GiB = 2 ** 30;
const fp = (s: string) => createHash('sha256').update(s).digest().subarray(0, 16);

function newTable(dir: string, writable: boolean): Table {
  const chunks: ChunkCache = new LRUCache<number, Buffer>({
    maxSize: 64 << 20,
    sizeCalculation: (b) => b.length,
  });
  const t = new Table(dir, validateFormat({ name: 'big', width: 1024, height: 1024, pixelFormat: 'rgba8' }), {
    writable,
    chunkBytes: 4 << 20,
    preallocate: false,
    chunks,
    tableNo: 0,
    warn: (msg, fields) => assert.fail(`unexpected warning: ${msg} ${JSON.stringify(fields)}`),
  });
  t.open();
  return t;
}

/** Distinct pixels per slot: every row starts with the slot and row number, the rest a slot byte. */
function pattern(slot: number, bytes: number, stride: number): Buffer {
  const b = Buffer.alloc(bytes, (slot * 37 + 11) & 0xff);
  for (let row = 0; row * stride < bytes; row++) {
    b.writeUInt32LE(slot, row * stride);
    b.writeUInt32LE(row, row * stride + 4);
  }
  return b;
}

test('a 1024x1024 rgba8 table maps entries correctly in segments up to ~6 GiB of logical offset', async () => {
  const dir = tempDir('pixtable-large-');
  try {
    const t = newTable(path.join(dir, 'big'), true);
    const f = t.format;
    assert.equal(t.entriesPerSegment, 255, '~4 MiB entries, 255 per 1 GiB segment');
    // First and last entries of segment 0, first of 1, one inside 2, the last of segment 5.
    const slots = [0, 254, 255, 2 * 255 + 100, 5 * 255 + 254];
    const logicalEnd = (slots.at(-1)! + 1) * t.entrySize;
    assert.ok(logicalEnd > 5.9 * GiB, `logical size ${logicalEnd}`);
    const written = new Map<number, Buffer>();
    for (const slot of slots) {
      const px = pattern(slot, f.pixelBytes, f.stride);
      written.set(slot, px);
      await t.writeEntry(slot, 1000 + slot, fp(`key-${slot}`), fp(`src-${slot}`), 1024, 1024, px);
    }
    const check = (table: Table, what: string) => {
      for (const slot of slots) {
        const c = table.checkEntry(slot, 1000 + slot, fp(`key-${slot}`));
        assert.deepEqual(c, { ok: true, width: 1024, height: 1024 }, `${what}: slot ${slot}`);
        const map = table.chunkFor(slot)!;
        const off = table.offsetInChunk(slot);
        const px = map.subarray(off, off + f.pixelBytes);
        assert.ok(px.equals(written.get(slot)!), `${what}: pixels of slot ${slot} read through the mapping`);
        // A slot's trailer never matches another slot's identity.
        assert.equal(table.checkEntry(slot, 1000 + slot, fp(`key-${slot + 1}`)).ok, false);
      }
    };
    check(t, 'writer');
    t.close();

    // The bytes sit where the layout says, in the segment files, not aliased to offset 0.
    const tableDir = path.join(dir, 'big');
    const segs = fs
      .readdirSync(tableDir)
      .filter((n) => n.endsWith('.tbl'))
      .sort();
    assert.deepEqual(segs, ['seg-00000.tbl', 'seg-00001.tbl', 'seg-00002.tbl', 'seg-00005.tbl']);
    for (const slot of slots) {
      const seg = Math.floor(slot / t.entriesPerSegment);
      const file = path.join(tableDir, `seg-${String(seg).padStart(5, '0')}.tbl`);
      const st = fs.statSync(file);
      assert.ok(st.size <= SEGMENT_BYTES_MAX, `${file} is ${st.size} bytes`);
      assert.ok(st.blocks * 512 < 64 << 20, `${file} is sparse (${st.blocks * 512} bytes on disk)`);
      const fd = fs.openSync(file, 'r');
      try {
        const head = Buffer.alloc(64);
        fs.readSync(fd, head, 0, 64, PAGE_SIZE + (slot % t.entriesPerSegment) * t.entrySize);
        assert.ok(head.equals(written.get(slot)!.subarray(0, 64)), `slot ${slot} at its file offset`);
      } finally {
        fs.closeSync(fd);
      }
    }

    // A fresh process-side view of the same files (new chunk cache), read-only: same answers, and
    // a slot in a segment that does not exist is "beyond the end", not a new file.
    const reader = newTable(tableDir, false);
    check(reader, 'reader');
    assert.equal(reader.checkEntry(3 * 255 + 7, 1, fp('none')).ok, false);
    assert.equal(fs.existsSync(path.join(tableDir, 'seg-00003.tbl')), false);
    reader.close();
  } finally {
    rmrf(dir);
  }
});

test('mapRange refuses offset + size at or past 2^31 and unaligned or empty ranges', () => {
  const dir = tempDir('pixtable-large-');
  const file = path.join(dir, 'sparse');
  const fd = fs.openSync(file, 'w+');
  try {
    fs.ftruncateSync(fd, MAP_LIMIT - PAGE_SIZE);
    const refused: [number, number][] = [
      [MAP_LIMIT - PAGE_SIZE, PAGE_SIZE], // ends exactly at 2^31
      [MAP_LIMIT, PAGE_SIZE], // mmap-io: fails
      [2 ** 32, PAGE_SIZE], // mmap-io: silently maps offset 0
      [2 ** 32 + PAGE_SIZE, PAGE_SIZE],
      [0, MAP_LIMIT], // size of 2 GiB
      [0, 2 ** 32 + PAGE_SIZE], // mmap-io: silently maps 4 KiB
      [100, PAGE_SIZE], // unaligned offset
      [PAGE_SIZE / 2, PAGE_SIZE],
      [PAGE_SIZE, 0],
      [-PAGE_SIZE, PAGE_SIZE],
      [Number.NaN, PAGE_SIZE],
      [PAGE_SIZE, 1.5],
    ];
    for (const [offset, size] of refused) {
      assert.throws(() => mapRange(fd, offset, size, false), RangeError, `offset ${offset} size ${size}`);
    }
    // The highest page below the bound maps the right bytes, not offset 0.
    const top = MAP_LIMIT - 2 * PAGE_SIZE;
    fs.writeSync(fd, Buffer.from('offset zero'), 0, 11, 0);
    fs.writeSync(fd, Buffer.from('top page'), 0, 8, top);
    assert.equal(mapRange(fd, top, PAGE_SIZE, false).toString('latin1', 0, 8), 'top page');
    assert.equal(mapRange(fd, 0, PAGE_SIZE, false).toString('latin1', 0, 11), 'offset zero');
  } finally {
    fs.closeSync(fd);
    rmrf(dir);
  }
});

test('ImageCache: 256 MiB entries (3 per segment) spread over 4 segment files and reopen without decoding', async () => {
  const storage = tempDir('pixtable-large-');
  const formats = [
    { name: 'huge', width: 16384, height: 16384, fit: 'inside' as const, pixelFormat: 'gray8' as const },
  ];
  const levels = Array.from({ length: 10 }, (_, i) => 20 + i * 22);
  const maxMappedBytes = 600 << 20;
  try {
    const first = new Map<string, Buffer>();
    const c = await ImageCache.open({ storage, formats, preallocate: false, maxMappedBytes });
    try {
      for (const [i, v] of levels.entries()) {
        await c.put(`g${i}.png`, await solidPng(8, 6, [v, v, v]));
        using view = await c.get('huge', `g${i}.png`);
        assert.deepEqual([view.width, view.height, view.stride], [8, 6, 16384]);
        first.set(`g${i}.png`, Buffer.from(view.pixels.subarray(0, view.stride * view.height)));
      }
      assert.ok(c.stats().mappedBytes <= maxMappedBytes, 'mapped bytes stay bounded');
    } finally {
      await c.close();
    }
    const segs = fs.readdirSync(path.join(storage, 'tables', 'huge')).filter((n) => n.endsWith('.tbl'));
    assert.deepEqual(segs.sort(), ['seg-00000.tbl', 'seg-00001.tbl', 'seg-00002.tbl', 'seg-00003.tbl']);

    const again = await ImageCache.open({ storage, formats, preallocate: false, maxMappedBytes });
    try {
      for (const [i, v] of levels.entries()) {
        using view = await again.get('huge', `g${i}.png`);
        assert.ok(view.pixels.equals(first.get(`g${i}.png`)!), `g${i} after reopen`);
        for (let y = 0; y < view.height; y++) {
          for (let x = 0; x < view.width; x++) {
            const got = view.pixels[y * view.stride + x]!;
            assert.ok(Math.abs(got - v) <= 2, `g${i} (${x},${y}) is ${got}, expected ~${v}`);
          }
          assert.ok(
            view.pixels.subarray(y * view.stride + view.width, (y + 1) * view.stride).every((b) => b === 0),
          );
        }
      }
      const st = again.stats().formats[0]!;
      assert.equal(st.decodes, 0, 'every entry was a hit after reopen');
      assert.equal(st.entries, levels.length);
      assert.deepEqual(await again.verify(), []);
      assert.ok(again.stats().mappedBytes <= maxMappedBytes, 'mapped bytes stay bounded');
    } finally {
      await again.close();
    }
  } finally {
    rmrf(storage);
  }
});
