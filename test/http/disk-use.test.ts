// Disk use made visible (issue 12, item 23): every entry reserves its format's whole box, so
// /v1/formats and stats() say what an entry costs, what the table reaches when full and what its
// files take now; `maxBytes` bounds a table by bytes as well as by count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { fixture, makeImage } from './helpers.js';
import { ImageCache } from '../../src/cache.js';
import { PixtableError } from '../../src/errors.js';
import { PAGE_SIZE } from '../../src/native/mmap.js';

interface FormatJson {
  name: string;
  maxCount: number;
  maxBytes?: number;
  entryBytes: number;
  entries: number;
  capacity: { entries: number; bytes: number };
  diskBytes: number;
}

const pageUp = (n: number) => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/**
 * What `du` would count for the table's files: segments, index log, reader table, key map and,
 * where the format has them, its decode group's placeholders.
 */
function allocated(storage: string, format: string): number {
  const tables = path.join(storage, 'tables');
  const files = [
    ...fs.readdirSync(path.join(tables, format)).map((n) => path.join(tables, format, n)),
    path.join(tables, `${format}.readers`),
    path.join(tables, `${format}.keys`),
    path.join(tables, `${format}.place`),
  ].filter((f) => fs.existsSync(f));
  return files.reduce((sum, f) => sum + fs.statSync(f).blocks * 512, 0);
}

test('/v1/formats gives bytes per entry, capacity in entries and bytes, and bytes on disk', async () => {
  const f = await fixture({
    config: {
      formats: [
        { name: 'small', width: 32, height: 32, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 64 },
        { name: 'wide', width: 300, height: 200, fit: 'inside', pixelFormat: 'rgb8', maxBytes: 5_000_000 },
      ],
    },
  });
  try {
    const before = (await f.app.inject('/v1/formats')).json() as FormatJson[];
    const [small, wide] = before;
    assert.ok(small && wide);
    // small: 32 rows of 128 B + 64 B trailer, page-aligned
    assert.equal(small.entryBytes, pageUp(32 * 128 + 64));
    assert.deepEqual(small.capacity, { entries: 10_000, bytes: 10_000 * small.entryBytes });
    assert.equal(small.maxBytes, undefined);
    // wide: stride 900 B rounded to 64 = 960, × 200 rows + trailer; maxBytes holds 26 of them
    assert.equal(wide.entryBytes, pageUp(960 * 200 + 64));
    assert.equal(wide.maxBytes, 5_000_000);
    assert.equal(wide.maxCount, Math.floor(5_000_000 / wide.entryBytes));
    assert.deepEqual(wide.capacity, { entries: wide.maxCount, bytes: wide.maxCount * wide.entryBytes });
    assert.equal(small.entries, 0);
    assert.equal(small.diskBytes, allocated(f.dir, 'small'));

    // A 1×1 PNG still reserves the whole box in every format.
    const dot = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    const r = await f.app.inject({ method: 'PUT', url: '/v1/sources/dot.png', payload: dot });
    assert.equal(r.statusCode, 201, r.body);
    const after = (await f.app.inject('/v1/formats')).json() as FormatJson[];
    // the decode wrote a placeholder and key-map records: those files count too
    for (const ext of ['place', 'keys']) {
      const file = path.join(f.dir, 'tables', `small.${ext}`);
      assert.ok(fs.existsSync(file) && fs.statSync(file).blocks > 0, `small.${ext} is on disk`);
    }
    for (const [i, fmt] of after.entries()) {
      assert.equal(fmt.entries, 1);
      assert.equal(fmt.diskBytes, allocated(f.dir, fmt.name), `${fmt.name}: st_blocks × 512 of its files`);
      assert.ok(fmt.diskBytes - before[i]!.diskBytes >= fmt.entryBytes, `${fmt.name} grew by an entry`);
    }
    const stats = f.cache.stats().formats;
    assert.deepEqual(
      stats.map((s) => [s.format, s.entryBytes, s.capacity, s.capacityBytes]),
      after.map((j) => [j.name, j.entryBytes, j.capacity.entries, j.capacity.bytes]),
    );
  } finally {
    await f.close();
  }
});

test('maxBytes bounds a table: the smaller of maxCount and maxBytes / entry holds', async () => {
  const f = await fixture({
    config: {
      formats: [{ name: 'tiny', width: 16, height: 16, maxBytes: 3 * PAGE_SIZE + 100, maxCount: 50 }],
    },
  });
  try {
    for (let i = 0; i < 6; i++) {
      const body = await makeImage('png', 20, 20, i * 40);
      const r = await f.app.inject({ method: 'PUT', url: `/v1/sources/k${i}.png`, payload: body });
      assert.equal(r.statusCode, 201, r.body);
    }
    const [s] = f.cache.stats().formats;
    assert.ok(s);
    assert.equal(s.entryBytes, PAGE_SIZE, '16 rows of 64 B + trailer fit one page');
    assert.equal(s.capacity, 3);
    assert.equal(s.entries, 3, 'older entries were recycled');
    const [fmt] = f.cache.formats;
    assert.equal(fmt?.maxCount, 3);
  } finally {
    await f.close();
  }
});

test('maxBytes is validated: an integer holding at least one entry', async () => {
  const storage = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'pixtable-maxbytes-'));
  try {
    for (const [maxBytes, pattern] of [
      [0, /format big\.maxBytes must be an integer from 1/],
      ['lots', /format big\.maxBytes must be an integer/],
      [1.5, /format big\.maxBytes must be an integer/],
      [
        1_000_000,
        new RegExp(
          `format big\\.maxBytes must hold at least one entry \\(${pageUp(4096 * 1024 + 64)} bytes.*got 1000000`,
        ),
      ],
    ] as const) {
      await assert.rejects(
        ImageCache.open({
          storage,
          formats: [{ name: 'big', width: 1024, height: 1024, maxBytes } as never],
        }),
        (e: unknown) => {
          assert.ok(e instanceof PixtableError, String(e));
          assert.equal(e.code, 'INVALID_FORMAT');
          assert.match(e.message, pattern);
          return true;
        },
        String(maxBytes),
      );
    }
  } finally {
    fs.rmSync(storage, { recursive: true, force: true });
  }
});
