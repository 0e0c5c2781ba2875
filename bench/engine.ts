// Engine benchmark: each figure is a ratio against a baseline measured in the same run.
//  1. hit get() latency vs decoding the same source with the engine's own pipeline (target: >= 1000x faster)
//  2. ingest throughput vs the engine's own decode pipeline alone doing the same work, both cores
//     busy (target: overhead <= 10%)
// Usage: npm run bench [-- --images 24 --rounds 3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ImageCache, DEFAULT_FORMATS, validateFormats } from '../src/index.js';
import { groupByFamily, targetsOf, toTableLayout } from '../src/engine/decoding.js';
import { decodeImage } from '../src/native/sharp.js';

const { values } = parseArgs({
  options: { images: { type: 'string', default: '24' }, rounds: { type: 'string', default: '3' } },
});
const IMAGES = Number(values.images);
const ROUNDS = Number(values.rounds);
const CORES = os.availableParallelism();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function photo(i: number): Promise<Buffer> {
  // Photo-like content (smooth gradients plus sensor noise) so JPEG decode costs what real photos cost.
  const w = 2400;
  const h = 1600;
  const noise = await sharp({
    create: {
      width: w,
      height: h,
      channels: 3,
      background: '#000',
      noise: { type: 'gaussian', mean: 128, sigma: 40 },
    },
  })
    .raw()
    .toBuffer();
  for (let p = 0; p < noise.length; p += 3) {
    const x = (p / 3) % w;
    noise[p] = (noise[p]! + x / 10 + i * 9) & 255;
  }
  return sharp(noise, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

const FORMATS = validateFormats(DEFAULT_FORMATS);
const DECODE = { maxInputPixels: 50_000_000, timeoutMs: 30_000 };

/**
 * The baseline: pixtable's own decode pipeline (src/engine/decoding.ts, the code a miss runs) with
 * no cache around it — one shared decode per family, converted to each format's layout — so the
 * ratio is exactly what storing the result (table write, index append) costs on top.
 */
async function pipelineAlone(file: string): Promise<number> {
  let bytes = 0;
  for (const g of groupByFamily(FORMATS.map((format) => ({ format })))) {
    const images = await decodeImage(file, g.targets, { ...DECODE, shared: g.members.length > 1 });
    images.forEach((img, i) => (bytes += toTableLayout(img, g.members[i]!.format).length));
  }
  return bytes;
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function main() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-bench-'));
  try {
    const sources = path.join(root, 'sources');
    fs.mkdirSync(sources, { recursive: true });
    const keys: string[] = [];
    for (let i = 0; i < IMAGES; i++) {
      const key = `p${i}.jpg`;
      fs.writeFileSync(path.join(sources, key), await photo(i));
      keys.push(key);
    }
    console.log(
      `# engine bench: ${IMAGES} JPEGs 2400x1600, ${CORES} cores, ${ROUNDS} rounds, node ${process.version}`,
    );

    // ---- ingest throughput -------------------------------------------------------------------
    const ours: number[] = [];
    const base: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      let t = performance.now();
      await pool(keys, CORES, (k) => pipelineAlone(path.join(sources, k)));
      base.push(IMAGES / ((performance.now() - t) / 1000));
      const storage = path.join(root, `s${r}`);
      fs.mkdirSync(storage);
      fs.symlinkSync(sources, path.join(storage, 'sources'));
      const cache = await ImageCache.open({ storage, sync: 'batch' });
      t = performance.now();
      await pool(keys, CORES, (k) => cache.ingest(k));
      ours.push(IMAGES / ((performance.now() - t) / 1000));
      await cache.close();
      fs.rmSync(storage, { recursive: true, force: true });
    }
    const ingestRatio = median(ours) / median(base);
    console.log(
      `ingest  pipeline alone ${median(base).toFixed(2)} images/s (median; runs ${base.map((x) => x.toFixed(2)).join(', ')})`,
    );
    console.log(
      `ingest  pixtable       ${median(ours).toFixed(2)} images/s (median; runs ${ours.map((x) => x.toFixed(2)).join(', ')})`,
    );
    console.log(
      `ingest  ratio          ${ingestRatio.toFixed(3)}x  overhead ${((1 - ingestRatio) * 100).toFixed(1)}%  (target <= 10%)`,
    );

    // ---- hit latency vs decode ---------------------------------------------------------------
    const storage = path.join(root, 'hits');
    fs.mkdirSync(storage);
    fs.symlinkSync(sources, path.join(storage, 'sources'));
    const cache = await ImageCache.open({ storage, sync: 'none' });
    await cache.ingest(keys[0]!);
    const decodeMs: number[] = [];
    const thumbTarget = targetsOf(FORMATS.filter((f) => f.name === 'thumb-256'));
    for (let i = 0; i < 9; i++) {
      const t = performance.now();
      await decodeImage(path.join(sources, keys[0]!), thumbTarget, { ...DECODE, shared: false });
      decodeMs.push(performance.now() - t);
    }
    const N = 200_000;
    const hitUs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < N; i++) (await cache.get('thumb-256', keys[0]!)).release();
      hitUs.push(((performance.now() - t) * 1000) / N);
    }
    const peekUs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < N; i++) cache.peek('thumb-256', keys[0]!)!.release();
      peekUs.push(((performance.now() - t) * 1000) / N);
    }
    // A serving loop's hit: one kept EntryRef re-checked with current() (no lookup, no view).
    // As a serving loop does it: a ref that is no longer current (its source is due for a stat
    // once per revalidateMs) is looked up again with peekRef().
    let ref = cache.peekRef('thumb-256', keys[0]!)!;
    const currentUs: number[] = [];
    let served = 0;
    let again = 0;
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < N; i++) {
        if (!cache.current(ref)) {
          ref = cache.peekRef('thumb-256', keys[0]!)!;
          again++;
        }
        served += ref.transientPixels.length > 0 ? 1 : 0;
      }
      currentUs.push(((performance.now() - t) * 1000) / N);
    }
    if (served !== 5 * N) throw new Error(`a ref served no pixels ${5 * N - served} times`);
    await cache.close();
    // The strictest setting: a stat of the source on every hit.
    const strict = await ImageCache.open({ storage, sync: 'none', revalidateMs: 0 });
    const statUs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < N / 4; i++) (await strict.get('thumb-256', keys[0]!)).release();
      statUs.push(((performance.now() - t) * 1000) / (N / 4));
    }
    await strict.close();
    const dMs = median(decodeMs);
    const hit = median(hitUs);
    console.log(`decode  pipeline thumb-256 from source ${dMs.toFixed(2)} ms (median of 9)`);
    const stat = median(statUs);
    const row = (label: string, value: string) => console.log(`hit     ${label.padEnd(36)} ${value}`);
    row('get() (default revalidateMs 1000)', `${hit.toFixed(2)} us (median of 5 x ${N})`);
    row('get() (revalidateMs 0: stat per hit)', `${stat.toFixed(2)} us (median of 5 x ${N / 4})`);
    row('peek()', `${median(peekUs).toFixed(2)} us`);
    row('ratio decode/get()', `${((dMs * 1000) / hit).toFixed(0)}x  (target >= 1000x)`);
    row('ratio decode/get(), stat per hit', `${((dMs * 1000) / stat).toFixed(0)}x  (target >= 1000x)`);
    row('ratio decode/peek()', `${((dMs * 1000) / median(peekUs)).toFixed(0)}x`);
    row(
      'current(ref) (EntryRef kept by the caller)',
      `${median(currentUs).toFixed(3)} us (${again} peekRef again in ${5 * N})`,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
