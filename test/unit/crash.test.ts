// Crash safety: a child process writing entries (put / ingest / compact) is SIGKILLed at random
// moments, round after round on the same storage. After each kill the storage is reopened and:
//  - every entry the index serves holds whole pixels of a source of that very key (no torn or
//    mixed entry is ever served), with the real size that source decodes to;
//  - verify() finds at most one damaged entry per format (the write the kill interrupted; the
//    formats of a put are written concurrently), and it is dropped, never served;
//  - temp files of an interrupted segment creation or compaction are gone;
//  - every write the child saw complete survives, unless enough later writes evicted it (a killed
//    process never loses acknowledged data, in any sync mode);
//  - a revalidating get of every key returns the pixels of the source now on disk, re-decoding
//    whatever was dropped or went stale.
// The PRNG seed is printed; PIXTABLE_CRASH_SEED=<n> replays a run's choices (kill timing still
// depends on the machine's speed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ImageCache, type FormatSpec, type ImageView, type SyncMode } from '../../src/index.js';

const ROUNDS = 24;
const KEYS = 16;
const VERSIONS = 3;
const MAX_COUNT = 12;
// One family, as in the default configuration: each source is decoded once for all three formats,
// and their entries are written concurrently.
const FORMATS: FormatSpec[] = [
  { name: 'sq32', width: 32, height: 32, fit: 'inside', pixelFormat: 'rgba8' },
  { name: 'box48', width: 48, height: 40, fit: 'inside', pixelFormat: 'rgb8' },
  // Bigger entries converted pixel by pixel: the write window is a fair part of each put, so kills
  // regularly land mid-entry and the torn-entry path is exercised, not just hoped for.
  { name: 'cover256', width: 256, height: 256, fit: 'cover', pixelFormat: 'bgra8-premultiplied' },
].map((f) => ({ ...f, family: 'crash', maxCount: MAX_COUNT }) as FormatSpec);
const SYNC_MODES: SyncMode[] = ['none', 'always', 'batch'];
const WRITER = fileURLToPath(new URL('../fixtures/crash-writer.js', import.meta.url));

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const fingerprint = (b: Buffer): string =>
  createHash('sha256').update(b).digest().subarray(0, 16).toString('hex');

type Rgb = [number, number, number];

interface Variant {
  key: string;
  colour: Rgb;
}

/** Asserts that the view is `colour` over its real size (alpha opaque) with zeroed row padding. */
function assertSolid(v: ImageView, colour: Rgb, what: string): void {
  const bpp = v.bytesPerPixel;
  // Opaque, so premultiplying changes nothing; BGRA only swaps red and blue.
  const [r, g, b] = colour;
  const want =
    v.pixelFormat === 'bgra8-premultiplied' ? [b, g, r, 255] : bpp === 4 ? [r, g, b, 255] : [r, g, b];
  assert.equal(v.pixels.length, v.stride * v.height, `${what}: pixel buffer length`);
  for (let y = 0; y < v.height; y++) {
    const row = y * v.stride;
    for (let x = 0; x < v.width; x++) {
      for (let c = 0; c < bpp; c++) {
        const got = v.pixels[row + x * bpp + c];
        if (got !== want[c]) {
          assert.fail(`${what}: pixel (${x},${y}) channel ${c} is ${got}, expected ${want[c]}`);
        }
      }
    }
    for (let b = row + v.width * bpp; b < row + v.stride; b++) {
      if (v.pixels[b] !== 0) assert.fail(`${what}: row ${y} padding byte ${b - row} is ${v.pixels[b]}`);
    }
  }
}

interface WriteEvent {
  key: string;
  /** source fingerprint the entry holds after the write; null for the write the kill interrupted */
  fp: string | null;
}

/** Per format, the writes of one round in order (the interrupted one last). */
function parseLog(lines: string[], formats: number): { events: WriteEvent[][]; done: number } {
  const events: WriteEvent[][] = Array.from({ length: formats }, () => []);
  let pending: string | null = null;
  let done = 0;
  for (const line of lines) {
    const [kind, op, key, fp, mask] = line.split(' ');
    if (kind === 'begin') pending = op === 'compact' ? null : key!;
    if (kind !== 'done') continue;
    pending = null;
    if (op === 'compact') continue;
    done++;
    for (let i = 0; i < formats; i++) if (Number(mask) & (1 << i)) events[i]!.push({ key: key!, fp: fp! });
  }
  if (pending !== null) for (const list of events) list.push({ key: pending, fp: null });
  return { events, done };
}

/**
 * Acknowledged writes that must still be in the index: the last completed write of a key, unless
 * the interrupted write was to that key, or at least maxCount distinct other keys were written
 * after it (only then can LRU recycling have evicted it).
 */
function mustSurvive(events: WriteEvent[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let p = 0; p < events.length; p++) {
    const e = events[p]!;
    if (e.fp === null) continue;
    const later = events.slice(p + 1);
    if (later.some((l) => l.key === e.key)) continue;
    const others = new Set(later.map((l) => l.key));
    if (others.size < MAX_COUNT) out.set(e.key, e.fp);
  }
  return out;
}

interface Kill {
  lines: string[];
  stderr: string;
  signal: NodeJS.Signals | null;
  code: number | null;
  readyAt: number;
}

function runAndKill(configFile: string, early: boolean, delayMs: number): Promise<Kill> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let armed = false;
    const t0 = Date.now();
    let readyAt = -1;
    const arm = () => {
      if (armed) return;
      armed = true;
      setTimeout(() => child.kill('SIGKILL'), delayMs);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (early && out.includes('opening\n')) arm();
      if (out.includes('ready\n')) {
        if (readyAt < 0) readyAt = Date.now() - t0;
        arm();
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    // A child that never reaches `opening` (e.g. cannot load) must not hang the test.
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ lines: out.split('\n').filter(Boolean), stderr, signal, code, readyAt });
    });
  });
}

const NAME = `SIGKILLed writers never leave a served entry torn, mixed or lost (${ROUNDS} rounds)`;
test(NAME, { timeout: 180_000 }, async (t) => {
  const seed = Number(process.env.PIXTABLE_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`crash.test: seed ${seed} (PIXTABLE_CRASH_SEED=${seed} replays its choices)`);
  const rand = prng(seed);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-crash-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const storage = path.join(root, 'storage');
  const variantsDir = path.join(root, 'variants');
  fs.mkdirSync(variantsDir);

  // Sources: solid colours of varied size, VERSIONS colours per key; fingerprint → (key, colour).
  const keys = Array.from({ length: KEYS }, (_, i) => `set-${i % 3}/img${i}.png`);
  const byFp = new Map<string, Variant>();
  const refDims = new Map<string, { width: number; height: number }[]>();
  const ref = await ImageCache.open({
    storage: path.join(root, 'ref'),
    formats: FORMATS.map((f) => ({ ...f, maxCount: 64 })),
    logger: { warn: () => {} },
  });
  for (let i = 0; i < KEYS; i++) {
    const width = 8 + Math.floor(rand() * 90);
    const height = 8 + Math.floor(rand() * 90);
    for (let v = 0; v < VERSIONS; v++) {
      let colour: Rgb;
      let png: Buffer;
      do {
        colour = [0, 0, 0].map(() => Math.floor(rand() * 256)) as Rgb;
        const background = { r: colour[0], g: colour[1], b: colour[2] };
        png = await sharp({ create: { width, height, channels: 3, background } })
          .png()
          .toBuffer();
      } while (byFp.has(fingerprint(png)));
      byFp.set(fingerprint(png), { key: keys[i]!, colour });
      fs.writeFileSync(path.join(variantsDir, `${i}-${v}.png`), png);
      if (v === 0) {
        fs.mkdirSync(path.dirname(path.join(storage, 'sources', keys[i]!)), { recursive: true });
        fs.writeFileSync(path.join(storage, 'sources', keys[i]!), png);
        await ref.put(keys[i]!, png);
        const dims = [];
        for (const f of FORMATS) {
          using view = await ref.get(f.name, keys[i]!);
          dims.push({ width: view.width, height: view.height });
        }
        refDims.set(keys[i]!, dims);
      }
    }
  }
  await ref.close();

  /** Checks a served view against the variant its fingerprint names. */
  const checkView = (view: ImageView, fi: number, key: string, what: string): void => {
    const variant = byFp.get(view.sourceFingerprint);
    assert.ok(variant, `${what}: entry holds unknown source fingerprint ${view.sourceFingerprint}`);
    assert.equal(variant.key, key, `${what}: entry holds a source of another key`);
    const dims = refDims.get(key)![fi]!;
    assert.deepEqual({ width: view.width, height: view.height }, dims, `${what}: real size`);
    assertSolid(view, variant.colour, what);
  };

  // (a writer killed early in its first open may not have made tables/ yet: no temp files then)
  const tempFiles = () =>
    fs.existsSync(path.join(storage, 'tables'))
      ? fs
          .readdirSync(path.join(storage, 'tables'), { recursive: true, encoding: 'utf8' })
          .filter((f) => f.includes('.tmp-'))
      : [];
  let tempsLeft = 0;
  const ms = { writers: 0, reopen: 0, gets: 0 };
  let roundsWithWrites = 0;
  let tornDetected = 0;
  let indexDiscards = 0;
  let survivorsChecked = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const sync = SYNC_MODES[round % SYNC_MODES.length]!;
    const early = rand() < 0.2;
    const delayMs = early ? Math.floor(rand() * 25) : Math.floor(rand() * 500);
    const configFile = path.join(root, 'writer.json');
    const childSeed = Math.floor(rand() * 2 ** 31);
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        storage,
        variants: variantsDir,
        keys,
        versions: VERSIONS,
        formats: FORMATS,
        sync,
        seed: childSeed,
      }),
    );
    const what = `round ${round} (sync ${sync}, ${early ? 'during open' : 'after ready'} +${delayMs} ms)`;
    const t0 = Date.now();
    const kill = await runAndKill(configFile, early, delayMs);
    const t1 = Date.now();
    assert.equal(
      kill.signal,
      'SIGKILL',
      `${what}: writer exited by itself (code ${kill.code}): ${kill.stderr}`,
    );
    tempsLeft += tempFiles().length;
    const { events, done } = parseLog(kill.lines, FORMATS.length);
    if (done > 0) roundsWithWrites++;

    // Phase 1: what the reopened index serves, as stored (no revalidation against sources).
    const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
    const a = await ImageCache.open({
      storage,
      formats: FORMATS,
      revalidate: false,
      logger: { warn: (msg, fields) => warnings.push({ msg, fields }) },
    });
    try {
      // Temp files of a segment creation or compaction the kill interrupted are gone after reopen.
      assert.deepEqual(tempFiles(), [], `${what}: temp files left behind`);
      const problems = await a.verify();
      const entryProblems = problems.filter((p) => p.key !== null);
      indexDiscards += problems.length - entryProblems.length;
      // One operation is in flight when the kill lands; it writes each format's entry at most once.
      for (const f of FORMATS) {
        const damaged = entryProblems.filter((p) => p.format === f.name);
        assert.ok(
          damaged.length <= 1,
          `${what}: damaged ${f.name} entries ${JSON.stringify(damaged)}; writer's last lines: ` +
            kill.lines.slice(-8).join(' | '),
        );
      }
      tornDetected += entryProblems.length;
      for (let fi = 0; fi < FORMATS.length; fi++) {
        const name = FORMATS[fi]!.name;
        const survivors = mustSurvive(events[fi]!);
        for (const key of keys) {
          const served = a.has(name, key);
          if (survivors.has(key)) {
            survivorsChecked++;
            assert.ok(served, `${what}: acknowledged write of ${name}/${key} is missing after reopen`);
          }
          if (!served) continue;
          using view = await a.get(name, key);
          checkView(view, fi, key, `${what}: ${name}/${key}`);
          const acked = survivors.get(key);
          if (acked !== undefined) {
            assert.equal(view.sourceFingerprint, acked, `${what}: ${name}/${key} holds an older source`);
          }
        }
        const st = a.stats().formats[fi]!;
        assert.equal(st.decodes, 0, `${what}: ${name} decoded while only reading`);
        const damaged = entryProblems.filter((p) => p.format === name);
        assert.equal(st.dropped, damaged.length, `${what}: ${name} dropped count`);
        assert.ok(st.entries <= MAX_COUNT, `${what}: ${name} has ${st.entries} entries`);
      }
      const dropWarnings = warnings.filter((w) => w.msg === 'cache entry dropped');
      assert.equal(dropWarnings.length, entryProblems.length, `${what}: one warning per dropped entry`);
      const after = await a.verify();
      assert.deepEqual(
        after.filter((p) => p.key !== null),
        [],
        `${what}: damage left after the drops`,
      );
    } finally {
      await a.close();
    }

    const t2 = Date.now();
    // Phase 2: revalidating gets of every key serve the source now on disk, re-decoding as needed.
    const b = await ImageCache.open({ storage, formats: FORMATS, logger: { warn: () => {} } });
    try {
      for (const key of keys) {
        const onDisk = fingerprint(fs.readFileSync(path.join(storage, 'sources', key)));
        assert.ok(byFp.has(onDisk), `${what}: source ${key} on disk is not one of its variants`);
        const views = await Promise.all(FORMATS.map((f) => b.get(f.name, key)));
        views.forEach((view, fi) => {
          const name = FORMATS[fi]!.name;
          try {
            assert.equal(view.sourceFingerprint, onDisk, `${what}: get ${name}/${key} serves a stale source`);
            checkView(view, fi, key, `${what}: get ${name}/${key}`);
          } finally {
            view.release();
          }
        });
      }
    } finally {
      await b.close();
    }
    ms.writers += t1 - t0;
    ms.reopen += t2 - t1;
    ms.gets += Date.now() - t2;
  }
  const uploadTemps = fs.existsSync(path.join(storage, 'sources', '.tmp'))
    ? fs.readdirSync(path.join(storage, 'sources', '.tmp')).length
    : 0;
  t.diagnostic(
    `seed ${seed}: rounds with completed writes ${roundsWithWrites}/${ROUNDS}, torn entries detected ${tornDetected}, ` +
      `index tail discards ${indexDiscards}, survivor checks ${survivorsChecked}, ` +
      `temp files of killed writers removed on reopen ${tempsLeft}, ` +
      `upload temp files left in sources/.tmp ${uploadTemps}; ms ${JSON.stringify(ms)}`,
  );
  assert.equal(uploadTemps, 0, 'upload temp files of killed writers are removed when a writer reopens');
  // The kills must land while the child is writing, or the test proves nothing.
  assert.ok(roundsWithWrites >= ROUNDS / 3, `only ${roundsWithWrites} rounds reached a write`);
  assert.ok(survivorsChecked > 0, 'no acknowledged write was checked');
});
