// Damage on disk — flipped bytes in an entry, a truncated or foreign table file, a truncated or
// corrupted index, a table written for another geometry — is detected on open or on first use:
// the damaged entry is dropped (and decoded again on get) or the table is rebuilt, a warning says
// so, nothing crashes, and no damaged or misread pixels are ever served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import {
  ImageCache,
  PixtableError,
  validateFormat,
  type FormatSpec,
  type ImageView,
} from '../../src/index.js';
import { entryGeometry } from '../../src/engine/table.js';
import { PAGE_SIZE } from '../../src/native/mmap.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';

type Rgb = [number, number, number];

// rgb8 at 32 px: 96 bytes of pixels and 32 of padding per row, so padding damage is testable too.
const FMT: FormatSpec = {
  name: 'dmg',
  width: 32,
  height: 24,
  fit: 'cover',
  pixelFormat: 'rgb8',
  maxCount: 16,
};
const COLOURS: Rgb[] = [
  [200, 10, 10],
  [10, 200, 10],
  [10, 10, 200],
  [220, 220, 20],
  [20, 220, 220],
  [220, 20, 220],
];
const KEYS = COLOURS.map((_, i) => `k${i}.png`);

interface Warning {
  msg: string;
  fields: Record<string, unknown> | undefined;
}

async function open(
  storage: string,
  warnings: Warning[],
  extra: { formats?: FormatSpec[]; readOnly?: boolean } = {},
): Promise<ImageCache> {
  return ImageCache.open({
    storage,
    formats: extra.formats ?? [FMT],
    readOnly: extra.readOnly ?? false,
    logger: { warn: (msg, fields) => warnings.push({ msg, fields }) },
  });
}

/** A storage with KEYS[0..n) put into FMT, closed again. */
async function seeded(n = KEYS.length): Promise<string> {
  const storage = tempDir('pixtable-damage-');
  const c = await open(storage, []);
  for (let i = 0; i < n; i++) await c.put(KEYS[i]!, await solidPng(40, 30, COLOURS[i]!));
  await c.close();
  return storage;
}

function assertColour(v: ImageView, colour: Rgb, what: string): void {
  for (let y = 0; y < v.height; y++) {
    for (let x = 0; x < v.width; x++) {
      const p = y * v.stride + x * v.bytesPerPixel;
      const got = [v.pixels[p], v.pixels[p + 1], v.pixels[p + 2]];
      if (got.some((c, i) => c !== colour[i])) assert.fail(`${what}: pixel (${x},${y}) is ${got}`);
    }
  }
}

const tableDir = (storage: string, name = FMT.name) => path.join(storage, 'tables', name);
const segFile = (storage: string) => path.join(tableDir(storage), 'seg-00000.tbl');
const indexFile = (storage: string) => path.join(tableDir(storage), 'index.log');

/** File offset of the entry whose trailer names `key` (found by scanning the segment). */
function entryOffset(storage: string, key: string): number {
  const f = validateFormat(FMT);
  const { entrySize } = entryGeometry(f, 4 << 20);
  const keyFp = createHash('sha256').update(key).digest().subarray(0, 16);
  const seg = fs.readFileSync(segFile(storage));
  for (let off = PAGE_SIZE; off + entrySize <= seg.length; off += entrySize) {
    const t = off + f.pixelBytes;
    if (seg.readUInt32LE(t) === 0x4e455850 && seg.subarray(t + 8, t + 24).equals(keyFp)) return off;
  }
  throw new Error(`no entry for ${key}`);
}

function flipByte(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x5a;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** Byte offsets of the index records, in log order, with their keys. */
function indexRecords(storage: string): { pos: number; key: string }[] {
  const b = fs.readFileSync(indexFile(storage));
  const out = [];
  for (let pos = PAGE_SIZE; pos + 8 <= b.length;) {
    const len = b.readUInt32LE(pos);
    if (len === 0) break;
    out.push({ pos, key: b.toString('utf8', pos + 8 + 12, pos + 8 + len) });
    pos += 8 + len;
  }
  return out;
}

/** get every key: each must return its own colour at the format's full geometry. */
/** What the repaired storage must do for the next process: serve every key, decoding nothing, clean. */
async function assertReopenServesWithoutDecoding(storage: string): Promise<void> {
  const again = await open(storage, []);
  try {
    await assertAllServed(again);
    assert.equal(again.stats().formats[0]!.decodes, 0);
    assert.deepEqual(await again.verify(), []);
  } finally {
    await again.close();
  }
}

async function assertAllServed(c: ImageCache, keys = KEYS, name = FMT.name): Promise<void> {
  for (const key of keys) {
    using v = await c.get(name, key);
    assertColour(v, COLOURS[KEYS.indexOf(key)]!, `${name}/${key}`);
  }
}

test('flipped bytes in pixels, row padding or trailer: entry dropped, decoded again, never served', async () => {
  const storage = await seeded();
  try {
    const f = validateFormat(FMT);
    flipByte(segFile(storage), entryOffset(storage, 'k1.png') + 5 * f.stride + 17); // a pixel
    flipByte(segFile(storage), entryOffset(storage, 'k2.png') + 3 * f.stride + 100); // padding
    flipByte(segFile(storage), entryOffset(storage, 'k3.png') + f.pixelBytes + 30); // source fp
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      const problems = await c.verify();
      assert.deepEqual(problems.map((p) => [p.key, p.problem]).sort(), [
        ['k1.png', 'CRC mismatch'],
        ['k2.png', 'CRC mismatch'],
        ['k3.png', 'CRC mismatch'],
      ]);
      assert.equal(c.stats().formats[0]!.dropped, 0, 'verify() without repair only reports');
      assert.equal(c.has(FMT.name, 'k1.png'), false, 'a damaged entry is not served');
      assert.equal(c.stats().formats[0]!.dropped, 1);
      await assertAllServed(c);
      const st = c.stats().formats[0]!;
      assert.equal(st.dropped, 3);
      assert.equal(st.decodes, 3, 'exactly the damaged entries were decoded again');
      assert.equal(st.hits, 3);
      const dropped = warnings.filter((w) => w.msg === 'cache entry dropped');
      assert.deepEqual(dropped.map((w) => w.fields?.key).sort(), ['k1.png', 'k2.png', 'k3.png']);
      assert.ok(dropped.every((w) => w.fields?.problem === 'CRC mismatch' && w.fields?.format === FMT.name));
      assert.deepEqual(await c.verify(), []);
    } finally {
      await c.close();
    }
    // The re-decoded entries were written back: the next process hits them.
    await assertReopenServesWithoutDecoding(storage);
  } finally {
    rmrf(storage);
  }
});

test('verify({ repair: true }) drops damaged entries so the next get decodes them', async () => {
  const storage = await seeded(3);
  try {
    flipByte(segFile(storage), entryOffset(storage, 'k0.png') + 7);
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      const problems = await c.verify({ repair: true });
      assert.deepEqual(
        problems.map((p) => p.key),
        ['k0.png'],
      );
      assert.equal(c.stats().formats[0]!.dropped, 1);
      assert.equal(c.has(FMT.name, 'k0.png'), false);
      assert.deepEqual(await c.verify(), []);
      await assertAllServed(c, KEYS.slice(0, 3));
      assert.equal(c.stats().formats[0]!.decodes, 1);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('a table segment truncated mid-entry: whole entries before the cut survive, the rest decode again', async () => {
  const storage = await seeded();
  try {
    const f = validateFormat(FMT);
    const { entrySize } = entryGeometry(f, 4 << 20);
    const byOffset = KEYS.map((k) => ({ k, off: entryOffset(storage, k) })).sort((a, b) => a.off - b.off);
    const cut = byOffset[2]!.off + Math.floor(entrySize / 2);
    fs.truncateSync(segFile(storage), cut);
    const intact = byOffset.filter((e) => e.off + entrySize <= cut).map((e) => e.k);
    const lost = byOffset.filter((e) => e.off + entrySize > cut).map((e) => e.k);
    assert.equal(intact.length, 2);

    // A reader cannot grow the file: it serves nothing from beyond the end (no SIGBUS) and says so.
    const rw: Warning[] = [];
    const reader = await open(storage, rw, { readOnly: true });
    try {
      for (const key of KEYS) {
        try {
          using v = await reader.get(FMT.name, key);
          assertColour(v, COLOURS[KEYS.indexOf(key)]!, `reader ${key}`);
          assert.ok(intact.includes(key), `reader served ${key}, which lies past the cut`);
        } catch (e) {
          assert.ok(e instanceof PixtableError && e.code === 'READ_ONLY', `reader ${key}: ${String(e)}`);
        }
      }
    } finally {
      await reader.close();
    }

    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      for (const key of intact) assert.equal(c.has(FMT.name, key), true, `${key} was whole`);
      for (const key of lost) assert.equal(c.has(FMT.name, key), false, `${key} was cut`);
      await assertAllServed(c);
      const st = c.stats().formats[0]!;
      assert.equal(st.dropped, lost.length);
      assert.equal(st.decodes, lost.length);
      assert.deepEqual(
        warnings
          .filter((w) => w.msg === 'cache entry dropped')
          .map((w) => w.fields?.key)
          .sort(),
        lost.sort(),
      );
      assert.deepEqual(await c.verify(), []);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

for (const size of [0, 100, PAGE_SIZE - 1]) {
  test(`a table segment truncated to ${size} bytes (inside its header) is rebuilt`, async () => {
    const storage = await seeded(3);
    try {
      fs.truncateSync(segFile(storage), size);
      const warnings: Warning[] = [];
      const c = await open(storage, warnings);
      try {
        const rebuilt = warnings.filter((w) => w.msg === 'table rebuilt');
        assert.equal(rebuilt.length, 1, JSON.stringify(warnings));
        assert.match(String(rebuilt[0]!.fields?.problem), /shorter than its header/);
        for (const key of KEYS.slice(0, 3)) assert.equal(c.has(FMT.name, key), false);
        await assertAllServed(c, KEYS.slice(0, 3));
        assert.equal(c.stats().formats[0]!.decodes, 3);
        assert.deepEqual(await c.verify(), []);
      } finally {
        await c.close();
      }
      const again = await open(storage, warnings);
      try {
        await assertAllServed(again, KEYS.slice(0, 3));
        assert.equal(again.stats().formats[0]!.decodes, 0, 'the rebuilt table persisted');
      } finally {
        await again.close();
      }
    } finally {
      rmrf(storage);
    }
  });
}

test('a flipped byte in an index record: replay keeps the records before it, later keys decode again', async () => {
  const storage = await seeded();
  try {
    const recs = indexRecords(storage);
    assert.deepEqual(
      recs.map((r) => r.key),
      KEYS,
    );
    flipByte(indexFile(storage), recs[3]!.pos + 8 + 12 + 1); // inside the key of the 4th record
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      const discarded = warnings.filter((w) => w.msg === 'index tail discarded (torn or damaged records)');
      assert.equal(discarded.length, 1, JSON.stringify(warnings));
      assert.ok(Number(discarded[0]!.fields?.bytes) > 0);
      const problems = await c.verify();
      assert.equal(problems.length, 1);
      assert.equal(problems[0]!.key, null);
      assert.match(problems[0]!.problem, /index: \d+ bytes/);
      for (const key of KEYS.slice(0, 3)) assert.equal(c.has(FMT.name, key), true, key);
      for (const key of KEYS.slice(3)) assert.equal(c.has(FMT.name, key), false, key);
      await assertAllServed(c);
      assert.equal(c.stats().formats[0]!.decodes, 3);
    } finally {
      await c.close();
    }
    // the cut tail was zeroed and new records replay
    await assertReopenServesWithoutDecoding(storage);
  } finally {
    rmrf(storage);
  }
});

test('a flipped record length in the index: replay stops there, no crash', async () => {
  const storage = await seeded();
  try {
    const recs = indexRecords(storage);
    flipByte(indexFile(storage), recs[2]!.pos + 3); // high byte of the length: points far past the file
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      assert.ok(warnings.some((w) => w.msg.startsWith('index tail discarded')));
      for (const key of KEYS.slice(0, 2)) assert.equal(c.has(FMT.name, key), true, key);
      for (const key of KEYS.slice(2)) assert.equal(c.has(FMT.name, key), false, key);
      await assertAllServed(c);
      assert.equal(c.stats().formats[0]!.decodes, 4);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

test('an index truncated mid-record: replay keeps the whole records before the cut', async () => {
  const storage = await seeded();
  try {
    const recs = indexRecords(storage);
    fs.truncateSync(indexFile(storage), recs[4]!.pos + 10);
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      for (const key of KEYS.slice(0, 4)) assert.equal(c.has(FMT.name, key), true, `${key} precedes the cut`);
      for (const key of KEYS.slice(4)) assert.equal(c.has(FMT.name, key), false, `${key} follows the cut`);
      const damaged = warnings.filter((w) => w.msg === 'index damaged');
      assert.equal(damaged.length, 1, `a warning names the loss: ${JSON.stringify(warnings)}`);
      assert.match(String(damaged[0]!.fields?.problem), /truncated/);
      await assertAllServed(c);
      assert.equal(c.stats().formats[0]!.decodes, 2);
    } finally {
      await c.close();
    }
    await assertReopenServesWithoutDecoding(storage);
  } finally {
    rmrf(storage);
  }
});

test('an index replaced by foreign bytes is started afresh with a warning; every get still works', async () => {
  const storage = await seeded(3);
  try {
    fs.writeFileSync(indexFile(storage), randomBytes(3 * PAGE_SIZE));
    const warnings: Warning[] = [];
    const c = await open(storage, warnings);
    try {
      const unusable = warnings.filter((w) => w.msg === 'index unusable; started afresh');
      assert.equal(unusable.length, 1, `a warning says the index was unusable: ${JSON.stringify(warnings)}`);
      assert.match(String(unusable[0]!.fields?.problem), /bad magic/);
      for (const key of KEYS.slice(0, 3)) assert.equal(c.has(FMT.name, key), false);
      await assertAllServed(c, KEYS.slice(0, 3));
      assert.equal(c.stats().formats[0]!.decodes, 3);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

const GEOMETRY_CHANGES: [string, Partial<FormatSpec>][] = [
  ['width', { width: 40 }],
  ['height', { height: 20 }],
  ['pixel format', { pixelFormat: 'rgba8' }],
  ['row alignment', { rowAlignment: 256 }],
  ['fit', { fit: 'inside' }],
];

for (const [what, change] of GEOMETRY_CHANGES) {
  test(`a table written for another ${what} is rebuilt, never misread`, async () => {
    const storage = await seeded(3);
    try {
      const changed: FormatSpec = { ...FMT, ...change };
      const g = validateFormat(changed);

      // A reader must not misread it either: it serves nothing until a writer rebuilds.
      const rw: Warning[] = [];
      const reader = await open(storage, rw, { formats: [changed], readOnly: true });
      try {
        assert.ok(
          rw.some((w) => /table unusable/.test(w.msg)),
          JSON.stringify(rw),
        );
        assert.equal(reader.has(FMT.name, 'k0.png'), false);
        await assert.rejects(reader.get(FMT.name, 'k0.png'), { code: 'READ_ONLY' });
      } finally {
        await reader.close();
      }

      const warnings: Warning[] = [];
      const c = await open(storage, warnings, { formats: [changed] });
      try {
        const rebuilt = warnings.filter((w) => w.msg === 'table rebuilt');
        assert.equal(rebuilt.length, 1, JSON.stringify(warnings));
        assert.match(String(rebuilt[0]!.fields?.problem), /geometry differs/);
        for (const key of KEYS.slice(0, 3)) {
          assert.equal(c.has(FMT.name, key), false, `${key} of the old geometry is not served`);
          using v = await c.get(FMT.name, key);
          assert.equal(v.stride, g.stride);
          assert.equal(v.pixelFormat, g.pixelFormat);
          assert.ok(v.width <= g.width && v.height <= g.height);
          if (g.fit === 'cover') assert.deepEqual([v.width, v.height], [g.width, g.height]);
          assert.equal(v.pixels.length, g.stride * v.height);
          assertColour(v, COLOURS[KEYS.indexOf(key)]!, `${what} ${key}`);
        }
        assert.equal(c.stats().formats[0]!.decodes, 3);
      } finally {
        await c.close();
      }
      // Reopening with the new geometry hits; going back to the old one rebuilds again.
      const same: Warning[] = [];
      const again = await open(storage, same, { formats: [changed] });
      try {
        assert.deepEqual(same, []);
        await assertAllServed(again, KEYS.slice(0, 3));
        assert.equal(again.stats().formats[0]!.decodes, 0);
      } finally {
        await again.close();
      }
      const back: Warning[] = [];
      const old = await open(storage, back);
      try {
        assert.equal(back.filter((w) => w.msg === 'table rebuilt').length, 1);
        await assertAllServed(old, KEYS.slice(0, 3));
        assert.equal(old.stats().formats[0]!.decodes, 3);
      } finally {
        await old.close();
      }
    } finally {
      rmrf(storage);
    }
  });
}

test('a smaller maxCount on reopen keeps at most maxCount entries, all correct', async () => {
  const storage = await seeded();
  try {
    const warnings: Warning[] = [];
    const c = await open(storage, warnings, { formats: [{ ...FMT, maxCount: 3 }] });
    try {
      assert.ok(c.stats().formats[0]!.entries <= 3);
      assert.deepEqual(await c.verify(), []);
      await assertAllServed(c);
      assert.ok(c.stats().formats[0]!.entries <= 3);
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});

const FOREIGN: [string, () => Buffer][] = [
  ['random bytes', () => randomBytes(3 * PAGE_SIZE)],
  ['zeros', () => Buffer.alloc(2 * PAGE_SIZE)],
  [
    'our magic with a corrupt header',
    () => {
      const b = randomBytes(2 * PAGE_SIZE);
      b.writeUInt32LE(0x42545850, 0);
      return b;
    },
  ],
];

for (const [what, bytes] of FOREIGN) {
  test(`a table file of ${what} is rebuilt with a warning`, async () => {
    const storage = await seeded(3);
    try {
      fs.writeFileSync(segFile(storage), bytes());
      const warnings: Warning[] = [];
      const c = await open(storage, warnings);
      try {
        const rebuilt = warnings.filter((w) => w.msg === 'table rebuilt');
        assert.equal(rebuilt.length, 1, JSON.stringify(warnings));
        assert.match(String(rebuilt[0]!.fields?.problem), /bad magic|header CRC/);
        for (const key of KEYS.slice(0, 3)) assert.equal(c.has(FMT.name, key), false);
        await assertAllServed(c, KEYS.slice(0, 3));
        assert.equal(c.stats().formats[0]!.decodes, 3);
        assert.deepEqual(await c.verify(), []);
      } finally {
        await c.close();
      }
    } finally {
      rmrf(storage);
    }
  });
}

test("a killed writer's temp files (segment creation, index compaction) are removed by the next writer", async () => {
  const storage = await seeded(2);
  try {
    const temps = ['index.log.tmp-999999', 'seg-00000.tbl.tmp-999998', 'seg-00001.tbl.tmp-4'];
    for (const name of temps)
      fs.writeFileSync(path.join(tableDir(storage), name), randomBytes(3 * PAGE_SIZE));
    const reader = await open(storage, [], { readOnly: true });
    await reader.close();
    for (const name of temps)
      assert.ok(fs.existsSync(path.join(tableDir(storage), name)), 'readers leave them');
    const c = await open(storage, []);
    try {
      const left = fs.readdirSync(tableDir(storage)).filter((n) => n.includes('.tmp-'));
      assert.deepEqual(left, []);
      await assertAllServed(c, KEYS.slice(0, 2));
      assert.equal(c.stats().formats[0]!.decodes, 0, 'the table itself was untouched');
    } finally {
      await c.close();
    }
  } finally {
    rmrf(storage);
  }
});
