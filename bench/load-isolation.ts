// `npm run bench:isolation`: do hits and file work stay fast while thumbnails encode? A real
// `pixtable serve` (with its own thread-pool sizing) on a real port; ENCODES cached entries are
// asked for as AVIF thumbnails at once (the thumbnail cache off, so each is a real encode), and
// while they run one connection asks for a cached hit over and over and another, every 50 ms, for a
// key without a source (a 404 that costs a realpath on libuv's pool). Prints the hit and 404
// latencies and what the encodes got, and the same loops for QUIET_MS before the encodes (the
// machine's own noise). Bounded: at most MAX_MS of measuring, MAX_HITS hits per phase.
//
// BENCH_PIXTABLE_ENV="UV_THREADPOOL_SIZE=4 PIXTABLE_ENCODE_CONCURRENCY=30" reproduces the old
// behaviour (every encode admitted at once into Node's default pool of 4).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const ENCODES = Number(process.env.BENCH_ENCODES ?? 30);
const MAX_MS = 120_000;
const QUIET_MS = 3_000;
const MAX_HITS = 200_000;
const SIZE = 256;
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** One GET on `agent`; resolves to status and the time to the last byte, in ms. */
function get(agent: http.Agent, port: number, p: string): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
      })
      .on('error', reject);
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function describe(label: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (v: number) => v.toFixed(2);
  return `${label}: n=${s.length} p50=${f(quantile(s, 0.5))} ms p99=${f(quantile(s, 0.99))} ms max=${f(s.at(-1) ?? NaN)} ms`;
}

async function waitReady(port: number, child: ChildProcess): Promise<void> {
  const agent = new http.Agent();
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      if ((await get(agent, port, '/readyz')).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become ready');
}

/** Hits back to back on one connection, a 404 every 50 ms on another, while `more()` and for at most `ms`. */
async function measure(
  hitAgent: http.Agent,
  missAgent: http.Agent,
  port: number,
  more: () => boolean,
  ms: number,
): Promise<{ hits: number[]; misses: number[] }> {
  const t0 = performance.now();
  const busy = () => more() && performance.now() - t0 < ms;
  const hits: number[] = [];
  const misses: number[] = [];
  await Promise.all([
    (async () => {
      while (busy() && hits.length < MAX_HITS) {
        const r = await get(hitAgent, port, '/v1/pixels/bench/k0.png');
        if (r.status !== 200) throw new Error(`hit answered ${r.status}`);
        hits.push(r.ms);
      }
    })(),
    (async () => {
      for (let n = 0; busy(); n++) {
        const r = await get(missAgent, port, `/v1/pixels/bench/missing-${ms}-${n}.png`);
        if (r.status !== 404) throw new Error(`missing source answered ${r.status}`);
        misses.push(r.ms);
        await new Promise((res) => setTimeout(res, 50));
      }
    })(),
  ]);
  return { hits, misses };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-bench-isolation-'));
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(path.join(storage, 'sources'), { recursive: true });
  // noise, so each AVIF encode is real work (a few hundred ms on one core)
  for (let i = 0; i <= ENCODES; i++) {
    await sharp(randomBytes(SIZE * SIZE * 3), { raw: { width: SIZE, height: SIZE, channels: 3 } })
      .png({ compressionLevel: 1 })
      .toFile(path.join(storage, 'sources', `k${i}.png`));
  }
  const port = await freePort();
  const extra = Object.fromEntries(
    (process.env.BENCH_PIXTABLE_ENV ?? '')
      .split(/\s+/)
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const child = spawn(process.execPath, [cli, 'serve'], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      PIXTABLE_STORAGE: storage,
      PIXTABLE_FORMATS: JSON.stringify([
        { name: 'bench', width: SIZE, height: SIZE, fit: 'cover', pixelFormat: 'rgba8' },
      ]),
      PIXTABLE_THUMB_CACHE_BYTES: '0',
      PIXTABLE_ENCODE_QUEUE: String(ENCODES),
      PIXTABLE_LOG_REQUESTS: 'false',
      PIXTABLE_LOG_LEVEL: 'warn',
      ...extra,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    await waitReady(port, child);
    const warm = new http.Agent({ keepAlive: true, maxSockets: 4 });
    for (let i = 0; i <= ENCODES; i++) {
      const r = await get(warm, port, `/v1/pixels/bench/k${i}.png`);
      if (r.status !== 200) throw new Error(`warming k${i}: ${r.status}`);
    }
    warm.destroy();

    const hitAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const missAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const encAgent = new http.Agent({ keepAlive: true, maxSockets: ENCODES });
    // a few hits before, so the shortcut remembers the URL
    for (let i = 0; i < 50; i++) await get(hitAgent, port, '/v1/pixels/bench/k0.png');

    // the same loops for QUIET_MS without encodes: what this machine gives anyway
    const quiet = await measure(hitAgent, missAgent, port, () => true, QUIET_MS);

    const t0 = performance.now();
    const statuses = new Map<number, number>();
    let pending = ENCODES;
    const encodes = Array.from({ length: ENCODES }, (_, i) =>
      get(encAgent, port, `/v1/thumbnails/bench/k${i + 1}.png?type=avif`).then((r) => {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        pending--;
        return r.ms;
      }),
    );
    const during = measure(hitAgent, missAgent, port, () => pending > 0, MAX_MS);
    const encodeMs = await Promise.all(encodes);
    const wall = performance.now() - t0;
    const { hits, misses } = await during;
    for (const a of [hitAgent, missAgent, encAgent]) a.destroy();

    const env = Object.keys(extra).length
      ? Object.entries(extra)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')
      : 'defaults';
    console.log(
      `load isolation (${env}; ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(2)})`,
    );
    console.log(
      `${ENCODES} concurrent AVIF encodes of ${SIZE}x${SIZE}: ${[...statuses].map(([s, n]) => `${n}x${s}`).join(' ')}, all answered in ${(wall / 1000).toFixed(2)} s`,
    );
    console.log(describe('  encode responses', encodeMs));
    console.log(describe('  hits during them', hits));
    console.log(describe('  404s during them', misses));
    console.log(describe(`  hits, ${QUIET_MS / 1000} s without encodes`, quiet.hits));
    console.log(describe(`  404s, ${QUIET_MS / 1000} s without encodes`, quiet.misses));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
