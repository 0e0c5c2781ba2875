// One writer per storage across processes, many readers: a second writer in another process gets
// STORAGE_LOCKED naming the holder's pid (or waits, with lockTimeoutMs), a killed holder's lock is
// released by the kernel, and read-only opens work beside the writer and see what it adds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import {
  ImageCache,
  PixtableError,
  type FormatSpec,
  type ImageView,
  type OpenOptions,
} from '../../src/index.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';
import { Child } from '../helpers/cache-child.js';

const FORMATS: FormatSpec[] = [
  { name: 'small', width: 16, height: 16, pixelFormat: 'rgba8', maxCount: 3 },
  { name: 'wide', width: 40, height: 20, pixelFormat: 'rgb8', maxCount: 3 },
];
type Rgb = [number, number, number];

async function setup() {
  const root = tempDir('pixtable-lock-');
  const storage = path.join(root, 'storage');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const colours = new Map<string, Rgb>();
  const image = async (key: string, colour: Rgb): Promise<string> => {
    const file = path.join(images, `${key}-${colour.join('-')}.png`);
    fs.writeFileSync(file, await solidPng(48, 32, colour));
    colours.set(file, colour);
    return file;
  };
  const options: OpenOptions = { storage, formats: FORMATS, logger: { warn: () => {} } };
  return { root, storage, image, options };
}

function assertSolid(v: ImageView, colour: Rgb, what: string): void {
  for (let y = 0; y < v.height; y++) {
    for (let x = 0; x < v.width; x++) {
      const p = y * v.stride + x * v.bytesPerPixel;
      const got = [v.pixels[p], v.pixels[p + 1], v.pixels[p + 2]];
      if (got.some((c, i) => c !== colour[i])) assert.fail(`${what}: pixel (${x},${y}) is ${got}`);
    }
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function isLocked(pid: number) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof PixtableError, `expected a PixtableError, got ${String(e)}`);
    assert.equal(e.code, 'STORAGE_LOCKED');
    assert.equal(e.status, 503);
    assert.match(e.message, new RegExp(`\\bprocess ${pid}\\b`), 'the message names the holder');
    assert.ok(e.message.includes('read-only'), 'the message says what to do');
    return true;
  };
}

test('a second writer in another process gets STORAGE_LOCKED naming the holder pid', async () => {
  const { root, image, options } = await setup();
  const child = new Child();
  try {
    await child.ok({ op: 'open', options });
    await child.ok({ op: 'put', key: 'a.png', file: await image('a', [200, 30, 30]) });

    const t0 = Date.now();
    await assert.rejects(ImageCache.open(options), isLocked(child.pid));
    assert.ok(Date.now() - t0 < 1000, 'lockTimeoutMs 0 fails at once');
    // The failed attempt changed nothing: the holder still works and is still the one named.
    await child.ok({ op: 'put', key: 'b.png', file: await image('b', [30, 200, 30]) });
    await assert.rejects(ImageCache.open(options), isLocked(child.pid));

    // The other way round: this process holds it, the child is refused and told our pid.
    await child.ok({ op: 'close' });
    const mine = await ImageCache.open(options);
    try {
      const r = await child.send({ op: 'open', options });
      assert.equal(r.ok, false);
      assert.equal(r.code, 'STORAGE_LOCKED');
      assert.match(String(r.message), new RegExp(`\\bprocess ${process.pid}\\b`));
      using v = await mine.get('small', 'b.png');
      assertSolid(v, [30, 200, 30], 'b.png after the child closed');
      assert.equal(mine.stats().formats[0]!.decodes, 0, 'the child wrote it; this process hits it');
    } finally {
      await mine.close();
    }
  } finally {
    await child.end();
    rmrf(root);
  }
});

test('with lockTimeoutMs a second writer waits, and succeeds once the first closes', async () => {
  const { root, image, options } = await setup();
  const child = new Child();
  try {
    await child.ok({ op: 'open', options });
    await child.ok({ op: 'put', key: 'a.png', file: await image('a', [10, 20, 230]) });

    // Held for longer than the timeout: refused, but only after waiting for it.
    let t0 = Date.now();
    await assert.rejects(ImageCache.open({ ...options, lockTimeoutMs: 400 }), isLocked(child.pid));
    assert.ok(Date.now() - t0 >= 400, `gave up after ${Date.now() - t0} ms`);

    t0 = Date.now();
    const waiting = ImageCache.open({ ...options, lockTimeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    await child.ok({ op: 'close' });
    const c = await waiting;
    try {
      const waited = Date.now() - t0;
      assert.ok(waited >= 450 && waited < 10_000, `waited ${waited} ms`);
      using v = await c.get('wide', 'a.png');
      assertSolid(v, [10, 20, 230], 'a.png written by the first holder');
      assert.equal(c.stats().formats[1]!.decodes, 0);
      // Now the child is the one refused.
      const r = await child.send({ op: 'open', options });
      assert.equal(r.code, 'STORAGE_LOCKED');
    } finally {
      await c.close();
    }
  } finally {
    await child.end();
    rmrf(root);
  }
});

test('a SIGKILLed holder releases the lock: the next writer opens at once', async () => {
  const { root, image, options } = await setup();
  const child = new Child();
  try {
    await child.ok({ op: 'open', options });
    await child.ok({ op: 'put', key: 'a.png', file: await image('a', [120, 130, 140]) });
    await assert.rejects(ImageCache.open(options), isLocked(child.pid));
    const exited = new Promise((r) => child.proc.once('exit', r));
    child.proc.kill('SIGKILL');
    await exited;
    const c = await ImageCache.open(options);
    try {
      using v = await c.get('small', 'a.png');
      assertSolid(v, [120, 130, 140], 'a.png after the holder was killed');
    } finally {
      await c.close();
    }
  } finally {
    await child.end();
    rmrf(root);
  }
});

test('a read-only open works beside the writer in another process and sees what it adds', async () => {
  const { root, storage, image, options } = await setup();
  const child = new Child();
  try {
    await child.ok({ op: 'open', options });
    await child.ok({ op: 'put', key: 'a.png', file: await image('a', [250, 120, 0]) });

    const reader = await ImageCache.open({ ...options, readOnly: true });
    try {
      // An entry the writer stored: the same pixels, byte for byte, as the writer's own view.
      for (const f of FORMATS) {
        const theirs = await child.ok({ op: 'get', format: f.name, key: 'a.png' });
        using v = await reader.get(f.name, 'a.png');
        assert.equal(sha(v.pixels), theirs.sha256, `${f.name}/a.png`);
        assert.deepEqual([v.width, v.height, v.stride], [theirs.width, theirs.height, theirs.stride]);
        assertSolid(v, [250, 120, 0], `reader ${f.name}/a.png`);
      }
      // Added after the reader opened: visible too.
      await child.ok({ op: 'put', key: 'b.png', file: await image('b', [0, 90, 250]) });
      for (const f of FORMATS) {
        const theirs = await child.ok({ op: 'get', format: f.name, key: 'b.png' });
        using v = await reader.get(f.name, 'b.png');
        assert.equal(sha(v.pixels), theirs.sha256, `${f.name}/b.png`);
      }
      // Not cached: a reader cannot decode, whether or not the source exists.
      fs.writeFileSync(path.join(storage, 'sources', 'c.png'), await solidPng(48, 32, [1, 2, 3]));
      await assert.rejects(reader.get('small', 'c.png'), { code: 'READ_ONLY' });
      await assert.rejects(reader.get('small', 'missing.png'), { code: 'READ_ONLY' });
      await assert.rejects(reader.put('d.png', await solidPng(8, 8, [1, 1, 1])), { code: 'READ_ONLY' });
      assert.equal(reader.stats().formats[0]!.decodes, 0);

      // The writer replaces a.png and recycles slots (maxCount 3): the reader serves the new
      // pixels or refuses, never another key's or the old ones.
      await child.ok({ op: 'put', key: 'a.png', file: await image('a', [5, 250, 5]) });
      {
        using v = await reader.get('small', 'a.png');
        assertSolid(v, [5, 250, 5], 'a.png after the writer replaced it');
      }
      for (const [k, colour] of [
        ['e.png', [60, 60, 60]],
        ['f.png', [90, 0, 90]],
        ['g.png', [0, 0, 0]],
      ] as [string, Rgb][]) {
        await child.ok({ op: 'put', key: k, file: await image(k, colour) });
      }
      for (const f of FORMATS) {
        await assert.rejects(
          reader.get(f.name, 'a.png'),
          { code: 'READ_ONLY' },
          `${f.name}/a.png was evicted`,
        );
        using v = await reader.get(f.name, 'g.png');
        assertSolid(v, [0, 0, 0], `${f.name}/g.png`);
      }
    } finally {
      await reader.close();
    }
  } finally {
    await child.end();
    rmrf(root);
  }
});
