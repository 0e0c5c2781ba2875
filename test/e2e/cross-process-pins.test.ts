// Pins that cross processes (the reader table, src/engine/reader-table.ts): a view held by a
// read-only cache in another process keeps the writer from recycling its slot until the view is
// released or its process dies; with every slot held elsewhere the writer answers TABLE_FULL.
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { ImageCache, PixtableError, type FormatSpec } from '../../src/index.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';
import { Child } from '../helpers/cache-child.js';
import { requireComponentIn } from '../helpers/requires.js';

const FORMATS: FormatSpec[] = [{ name: 'p', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 2 }];
const quiet = { warn: () => {} };

async function setup() {
  const storage = tempDir('pixtable-xpins-');
  const writer = await ImageCache.open({ storage, formats: FORMATS, logger: quiet });
  const colours = new Map<string, number>();
  const put = async (key: string, i: number) => {
    await writer.put(key, await solidPng(8, 8, [i * 20, 255 - i * 20, 7]));
    colours.set(key, i);
  };
  const reader = new Child();
  await reader.ok({ op: 'open', options: { storage, formats: FORMATS, readOnly: true } });
  return { storage, writer, put, reader };
}

/** The sha256 of the pixels the child's held view shows now. */
async function heldSha(reader: Child): Promise<string> {
  return (await reader.ok({ op: 'held' })).sha256 as string;
}

test('a view held in another process is never overwritten; released, its slot is recycled', async () => {
  const { storage, writer, put, reader } = await setup();
  try {
    await put('a', 0);
    await put('b', 1);
    const pinned = await reader.ok({ op: 'pin', format: 'p', key: 'a' });
    const before = await heldSha(reader);
    assert.equal(pinned.sha256, before);
    // Two slots: every put must recycle one. 'a' is the least recently used, but held elsewhere.
    for (let i = 2; i < 12; i++) {
      await put(`k${i}`, i);
      assert.ok(writer.has('p', 'a'), `put ${i}: the held entry was recycled`);
      assert.equal(await heldSha(reader), before, `put ${i}: the held view's bytes changed`);
    }
    await reader.ok({ op: 'release' });
    await put('k12', 12);
    await put('k13', 13);
    assert.ok(!writer.has('p', 'a'), 'released, the slot is recycled like any other');
  } finally {
    await reader.end();
    await writer.close();
    rmrf(storage);
  }
});

test('every slot held elsewhere: TABLE_FULL with retryAfter; the holder killed, the writer goes on at once', async () => {
  const { storage, writer, put, reader } = await setup();
  const second = new Child();
  try {
    await put('a', 0);
    await put('b', 1);
    await second.ok({ op: 'open', options: { storage, formats: FORMATS, readOnly: true } });
    await reader.ok({ op: 'pin', format: 'p', key: 'a' });
    await second.ok({ op: 'pin', format: 'p', key: 'b' });
    await assert.rejects(put('c', 2), (e: unknown) => {
      assert.ok(e instanceof PixtableError);
      assert.equal(e.code, 'TABLE_FULL');
      assert.equal(e.status, 503);
      assert.equal(e.details?.retryAfter, 1);
      return true;
    });
    assert.ok(writer.has('p', 'a') && writer.has('p', 'b'), 'a refused put changes nothing stored');
    second.proc.kill('SIGKILL');
    await new Promise((r) => second.proc.once('exit', r));
    const t0 = performance.now();
    await put('c', 2); // the dead reader's pin no longer counts: nobody had to clean up after it
    const ms = performance.now() - t0;
    assert.ok(writer.has('p', 'c'));
    assert.ok(!writer.has('p', 'b'), "the dead reader's slot was the one recycled");
    assert.ok(writer.has('p', 'a'), "the live reader's slot was not");
    console.log(`# put after SIGKILL of the holder: ${ms.toFixed(1)} ms`);
  } finally {
    await second.end();
    await reader.end();
    await writer.close();
    rmrf(storage);
  }
});

test('SIGKILL of a reader holding views, 20 rounds: its pins are reclaimed every time', async () => {
  const { storage, writer, put, reader } = await setup();
  await reader.end();
  try {
    let live = ['a', 'b'];
    await put('a', 0);
    await put('b', 1);
    const times: number[] = [];
    for (let round = 0; round < 20; round++) {
      const r = new Child();
      await r.ok({ op: 'open', options: { storage, formats: FORMATS, readOnly: true } });
      for (const k of live) await r.ok({ op: 'pin', format: 'p', key: k });
      await assert.rejects(
        put(`t${round}`, 3),
        { code: 'TABLE_FULL' },
        `round ${round}: the reader's pins hold`,
      );
      r.proc.kill('SIGKILL');
      await new Promise((res) => r.proc.once('exit', res));
      const t0 = performance.now();
      live = [`r${round}`, `s${round}`];
      for (const [i, k] of live.entries()) await put(k, 4 + i);
      times.push(performance.now() - t0);
      for (const k of live) assert.ok(writer.has('p', k));
    }
    times.sort((p, q) => p - q);
    console.log(
      `# 20 SIGKILLs: the two puts after each took ${times[10]!.toFixed(1)} ms (median), ${times[19]!.toFixed(1)} ms at most`,
    );
  } finally {
    await writer.close();
    rmrf(storage);
  }
});

// A reader in a worker thread of the writer's own process: its ImageCache claims its own record
// (its own open file description, whose lock the writer's description sees), so its pins count.
const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));
const THREAD = `
import { parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
const { ImageCache } = await import(workerData.index);
const cache = await ImageCache.open({ storage: workerData.storage, formats: workerData.formats, readOnly: true, logger: { warn() {} } });
const v = await cache.get('p', 'a');
const sha = () => createHash('sha256').update(v.pixels).digest('hex');
parentPort.postMessage({ sha: sha() });
parentPort.on('message', async (m) => {
  if (m === 'sha') parentPort.postMessage({ sha: sha() });
  if (m === 'release') { v.release(); await cache.close(); parentPort.postMessage({ released: true }); }
});
`;

test('a view held by a read-only cache in a worker thread blocks recycling like another process', async () => {
  const storage = tempDir('pixtable-xpins-thread-');
  const writer = await ImageCache.open({ storage, formats: FORMATS, logger: quiet });
  await writer.put('a', await solidPng(8, 8, [10, 20, 30]));
  await writer.put('b', await solidPng(8, 8, [40, 50, 60]));
  const worker = new Worker(THREAD, { eval: true, workerData: { index: INDEX, storage, formats: FORMATS } });
  const next = () => new Promise<{ sha?: string; released?: boolean }>((r) => worker.once('message', r));
  const first = next(); // before this turn ends: the thread cannot have answered yet
  try {
    const { sha } = await first;
    for (let i = 0; i < 6; i++) {
      await writer.put(`k${i}`, await solidPng(8, 8, [i * 30, 0, 99]));
      assert.ok(writer.has('p', 'a'), `put ${i}: the entry the thread holds was recycled`);
    }
    const again = next();
    worker.postMessage('sha');
    assert.equal((await again).sha, sha, "the thread's view kept its bytes");
    const released = next();
    worker.postMessage('release');
    assert.equal((await released).released, true);
    await writer.put('k6', await solidPng(8, 8, [1, 2, 3]));
    await writer.put('k7', await solidPng(8, 8, [4, 5, 6]));
    assert.ok(!writer.has('p', 'a'), 'released, its slot is recycled');
  } finally {
    await worker.terminate();
    await writer.close();
    rmrf(storage);
  }
});

test('a read-only cache on a read-only mount still serves, and warns that its pins are not published', async (t) => {
  const storage = tempDir('pixtable-xpins-ro-');
  const mnt = tempDir('pixtable-xpins-mnt-');
  const writer = await ImageCache.open({ storage, formats: FORMATS, logger: quiet });
  await writer.put('a', await solidPng(8, 8, [10, 20, 30]));
  const mounted =
    spawnSync('mount', ['--bind', storage, mnt]).status === 0 &&
    spawnSync('mount', ['-o', 'remount,ro,bind', mnt]).status === 0;
  try {
    // a read-only bind mount needs root (CI runs as root)
    if (!requireComponentIn(t, 'a read-only bind mount', mounted, 'mount failed (needs root)')) {
      return;
    }
    assert.throws(() => fs.writeFileSync(`${mnt}/probe`, 'x'), { code: 'EROFS' });
    const warnings: string[] = [];
    const reader = await ImageCache.open({
      storage: mnt,
      formats: FORMATS,
      readOnly: true,
      logger: { warn: (m) => warnings.push(m) },
    });
    try {
      using v = await reader.get('p', 'a');
      assert.equal(v.width, 16);
      assert.ok(
        warnings.some((w) => w.startsWith('reader table not writable')),
        `warned: ${JSON.stringify(warnings)}`,
      );
    } finally {
      await reader.close();
    }
  } finally {
    // lazy: the reader's mappings stay until they are collected (mmap-io has no munmap)
    if (mounted) spawnSync('umount', ['-l', mnt]);
    await writer.close();
    rmrf(storage);
    rmrf(mnt);
  }
});
