// `npm run bench:index`: what a reading process pays per entry for the index. For 1,000, 20,000
// and 100,000 entries (16×16 gray8), a fresh read-only process opens the storage and reports its
// private memory (smaps Private_* after a GC, the mappings of tables/ excluded — segments, key
// map, reader table — so shared page-cache pages do not count), the time the open took, and the
// steady cost of a hit over random keys (`peek()` and `get()`, release included). The baseline
// in the same run is the same process before it opened anything. Issue 13's target for a worker:
// private memory that does not grow with the entry count (≤ 64 B per entry). Then, per count,
// how soon an entry the writer wrote is visible to a read-only cache (the key map is shared:
// the first lookup after the write's promise resolved should find it).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ImageCache, type FormatSpec } from '../src/index.js';

const COUNTS = (process.env.BENCH_COUNTS ?? '1000,20000,100000').split(',').map(Number);
const index = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** Private bytes of this process outside the table's segment mappings, from smaps. */
const PROBE = `
import fs from 'node:fs';
import { ImageCache } from ${JSON.stringify(index)};
const [storage, formats, n] = JSON.parse(process.argv[1]);
function privateBytes() {
  let total = 0, table = false;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) { table = line.includes('/tables/'); continue; }
    const m = /^Private_(Clean|Dirty):\\s+(\\d+) kB/.exec(line);
    if (m && !table) total += Number(m[2]) * 1024;
  }
  return total;
}
const settle = () => { globalThis.gc(); globalThis.gc(); return privateBytes(); };
const before = settle();
let t = performance.now();
const cache = await ImageCache.open({ storage, formats, readOnly: true, revalidate: false, logger: { warn() {} } });
const openMs = performance.now() - t;
const opened = settle();
for (let i = 0; i < n; i++) cache.peek('tiny', 'k' + i)?.release();
const touched = settle();
const keys = Array.from({ length: 4096 }, () => 'k' + Math.floor(Math.random() * n));
const rounds = 200_000;
t = performance.now();
for (let i = 0; i < rounds; i++) cache.peek('tiny', keys[i & 4095])?.release();
const peekUs = ((performance.now() - t) * 1000) / rounds;
const getRounds = 50_000;
t = performance.now();
for (let i = 0; i < getRounds; i++) (await cache.get('tiny', keys[i & 4095])).release();
const getUs = ((performance.now() - t) * 1000) / getRounds;
process.stdout.write(JSON.stringify({ before, opened, touched, openMs, peekUs, getUs }) + '\\n');
await cache.close();
`;

/**
 * Writes `rounds` new entries with a read-only cache open beside the writer; per write, the
 * lookups the reader needed once the write resolved (1 = at once) and how long they took.
 */
async function visibility(
  storage: string,
  formats: FormatSpec[],
  png: Buffer,
  rounds: number,
): Promise<{ atOnce: number; maxLookups: number; medianUs: number }> {
  const sources = path.join(storage, 'sources');
  for (let i = 0; i < rounds; i++) fs.writeFileSync(path.join(sources, `v${i}`), png);
  const writer = await ImageCache.open({ storage, formats, sync: 'none', logger: { warn() {} } });
  const reader = await ImageCache.open({
    storage,
    formats,
    readOnly: true,
    revalidate: false,
    logger: { warn() {} },
  });
  const us: number[] = [];
  let atOnce = 0;
  let maxLookups = 0;
  try {
    for (let i = 0; i < rounds; i++) {
      await writer.ingest(`v${i}`);
      const t = performance.now();
      let lookups = 0;
      for (;;) {
        lookups++;
        const v = reader.peek('tiny', `v${i}`);
        if (v !== undefined) {
          v.release();
          break;
        }
        if (lookups >= 10_000) throw new Error(`v${i} not visible after ${lookups} lookups`);
        await new Promise((r) => setImmediate(r));
      }
      us.push((performance.now() - t) * 1000);
      if (lookups === 1) atOnce++;
      maxLookups = Math.max(maxLookups, lookups);
    }
  } finally {
    await reader.close();
    await writer.close();
  }
  us.sort((a, b) => a - b);
  return { atOnce, maxLookups, medianUs: us[us.length >> 1]! };
}

function probe(storage: string, formats: FormatSpec[], n: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--input-type=module', '-e', PROBE, JSON.stringify([storage, formats, n])],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as Record<string, number>)
        : reject(new Error(`probe exited ${code}`)),
    );
  });
}

async function main() {
  const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
  console.log(
    `# bench:index: 16x16 gray8 entries, node ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    '| entries | private after open | per entry | after touching all | per entry | open | peek() | get() |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  const seen: string[] = [];
  for (const n of COUNTS) {
    const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-index-'));
    try {
      const VISIBILITY_ROUNDS = 200;
      const formats: FormatSpec[] = [
        { name: 'tiny', width: 16, height: 16, pixelFormat: 'gray8', maxCount: n + VISIBILITY_ROUNDS },
      ];
      const sources = path.join(storage, 'sources');
      fs.mkdirSync(sources, { recursive: true });
      for (let i = 0; i < n; i++) fs.writeFileSync(path.join(sources, `k${i}`), png);
      const writer = await ImageCache.open({ storage, formats, sync: 'none', logger: { warn() {} } });
      let next = 0;
      await Promise.all(
        Array.from({ length: os.availableParallelism() }, async () => {
          while (next < n) await writer.ingest(`k${next++}`);
        }),
      );
      await writer.close();
      const r = await probe(storage, formats, n);
      const opened = r.opened! - r.before!;
      const touched = r.touched! - r.before!;
      const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
      console.log(
        `| ${n} | ${kib(opened)} | ${(opened / n).toFixed(0)} B | ${kib(touched)} | ${(touched / n).toFixed(0)} B | ` +
          `${r.openMs!.toFixed(0)} ms | ${r.peekUs!.toFixed(2)} µs | ${r.getUs!.toFixed(2)} µs |`,
      );
      const v = await visibility(storage, formats, png, VISIBILITY_ROUNDS);
      seen.push(
        `${n} entries: ${v.atOnce}/${VISIBILITY_ROUNDS} written entries visible to the reader's first lookup ` +
          `after the write resolved (at most ${v.maxLookups} lookups), median ${v.medianUs.toFixed(0)} µs`,
      );
    } finally {
      fs.rmSync(storage, { recursive: true, force: true });
    }
  }
  console.log('');
  for (const line of seen) console.log(`- visibility, ${line}`);
}

await main();
