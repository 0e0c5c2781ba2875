// `npm run bench:sharing`: N processes reading the same entries share one copy of the pixels.
// A writer stores ENTRIES entries of 1 MiB; then 1, 2 and 4 read-only processes each map and touch
// every entry, and /proc/PID/smaps gives, per reader, the table mappings' resident, proportional
// (PSS) and shared-clean bytes. One copy in the page cache means PSS ≈ table bytes / N per reader,
// and private bytes ≈ 0. The baseline in the same run is N = 1 (PSS = the whole table).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ImageCache, type FormatSpec } from '../src/index.js';

const ENTRIES = Number(process.env.BENCH_ENTRIES ?? 48);
const FORMATS: FormatSpec[] = [
  { name: 'share', width: 512, height: 512, fit: 'cover', pixelFormat: 'rgba8', maxCount: ENTRIES },
];
const index = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** A reader: opens read-only, touches every page of every entry, says READY, waits for stdin. */
const READER = `
import { ImageCache } from ${JSON.stringify(index)};
const [storage, formats, n] = JSON.parse(process.argv[1]);
const cache = await ImageCache.open({ storage, formats, readOnly: true, logger: { warn() {} } });
const views = [];
let sum = 0;
for (let i = 0; i < n; i++) {
  const v = await cache.get('share', 'k' + i + '.png');
  for (let p = 0; p < v.pixels.length; p += 4096) sum += v.pixels[p];
  views.push(v);
}
process.stdout.write('READY ' + sum + '\\n');
process.stdin.resume();
process.stdin.on('end', async () => { for (const v of views) v.release(); await cache.close(); });
`;

interface Mapped {
  rss: number;
  pss: number;
  sharedClean: number;
  private: number;
}

/** Sums the smaps fields of every mapping of the table's segment files in process `pid`. */
function tableMappings(pid: number, segDir: string): Mapped {
  const out: Mapped = { rss: 0, pss: 0, sharedClean: 0, private: 0 };
  let inTable = false;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      inTable = line.includes(segDir);
      continue;
    }
    if (!inTable) continue;
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (!m) continue;
    const kb = Number(m[2]) * 1024;
    if (m[1] === 'Rss') out.rss += kb;
    else if (m[1] === 'Pss') out.pss += kb;
    else if (m[1] === 'Shared_Clean') out.sharedClean += kb;
    else if (m[1] === 'Private_Clean' || m[1] === 'Private_Dirty') out.private += kb;
  }
  return out;
}

async function startReader(storage: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', READER, JSON.stringify([storage, FORMATS, ENTRIES])],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => l.startsWith('READY') && resolve());
    child.once('exit', (c) => reject(new Error(`reader exited with ${c}`)));
  });
  return child;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function main() {
  if (os.platform() !== 'linux') throw new Error('bench:sharing reads /proc/PID/smaps (Linux)');
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-sharing-'));
  try {
    const writer = await ImageCache.open({ storage, formats: FORMATS, logger: { warn() {} } });
    for (let i = 0; i < ENTRIES; i++) {
      const png = await sharp({
        create: { width: 64, height: 64, channels: 3, background: { r: i * 5, g: 255 - i * 5, b: i } },
      })
        .png()
        .toBuffer();
      await writer.put(`k${i}.png`, png);
    }
    await writer.close();
    const segDir = path.join(fs.realpathSync(storage), 'tables', 'share', 'seg-');
    const tableBytes = ENTRIES * 512 * 512 * 4;
    console.log(
      `# bench:sharing: ${ENTRIES} entries of 1 MiB (${mib(tableBytes)} of pixels), node ${process.version}, ` +
        `load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
    );
    console.log('| readers | per reader: Rss | Pss | Shared_Clean | Private | Pss × readers / pixels |');
    console.log('|---|---|---|---|---|---|');
    for (const n of [1, 2, 4]) {
      const readers: ChildProcess[] = [];
      for (let i = 0; i < n; i++) readers.push(await startReader(storage));
      const m = readers.map((r) => tableMappings(r.pid!, segDir));
      const avg = (f: keyof Mapped) => m.reduce((s, x) => s + x[f], 0) / n;
      const pssTotal = m.reduce((s, x) => s + x.pss, 0);
      console.log(
        `| ${n} | ${mib(avg('rss'))} | ${mib(avg('pss'))} | ${mib(avg('sharedClean'))} | ${mib(avg('private'))} | ` +
          `${(pssTotal / tableBytes).toFixed(3)} |`,
      );
      for (const r of readers) {
        r.stdin!.end();
        await new Promise((res) => r.once('exit', res));
      }
    }
  } finally {
    fs.rmSync(storage, { recursive: true, force: true });
  }
}

await main();
