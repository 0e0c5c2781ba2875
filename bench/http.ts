// `npm run bench:http`: pixtable's HTTP hot paths against nginx and against decode-per-request
// servers, with wrk on loopback. Everything is started here and stopped at the end: pixtable
// (`pixtable serve`: the writer, plus read-only readers with the fast lane on and off; and
// `--workers 2`), nginx (temporary prefix and config, one worker — and two for the --workers rows —
// sendfile on),
// a sharp-per-request server (what imgproxy/thumbor do; node:cluster, one worker per core) and
// nginx's image_filter module. Each ratio comes from one run in which both sides are measured back
// to back, in interleaved one-second slices (see measurePair); the table reports the median of
// BENCH_RUNS runs (default 5).
//
// Environment: BENCH_SECONDS (per side and measurement, default 5), BENCH_RUNS (default 5),
// BENCH_CONNECTIONS (default 32), BENCH_KEEP=1 keeps the temp directory, BENCH_ONLY=regex picks
// comparisons by name, BENCH_PIXTABLE_ENV="A=1 B=2" adds settings to pixtable's environment,
// BENCH_PIN=0 turns CPU pinning off. With taskset and 2+ cores, pixtable and nginx (one process /
// worker each) run on CPU 0, so every server gets the same one core; wrk itself is not pinned (it
// runs where the scheduler puts it, mostly on the other core); the decode-per-request server and
// the two-worker rows' servers keep all cores.
// Needs Debian packages wrk, nginx, libnginx-mod-http-image-filter.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import cluster from 'node:cluster';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import {
  addAccount,
  childCpuFromStat,
  cpuSeconds,
  describe,
  emptyAccount,
  idleSeconds,
  listeners,
  sleeps,
  measured,
  type Account,
} from './cpu-account.js';
import { runtimeHasReusePort } from '../src/serve/distribution.js';
import { writeBenchSource } from './source-image.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const PIN =
  process.env.BENCH_PIN !== '0' &&
  os.availableParallelism() >= 2 &&
  spawnSync('sh', ['-c', 'command -v taskset']).status === 0;
/** argv prefix that pins a command to one CPU (or nothing when pinning is off). */
const onCpu = (cpu: number): string[] => (PIN ? ['taskset', '-c', String(cpu)] : []);

function spawnOn(cpu: number | undefined, cmd: string, args: string[], opts: Parameters<typeof spawn>[2]) {
  const pre = cpu === undefined ? [] : onCpu(cpu);
  return pre.length ? spawn(pre[0]!, [...pre.slice(1), cmd, ...args], opts) : spawn(cmd, args, opts);
}

// ---- decode-per-request server (child mode) --------------------------------------------------
// `node dist/bench/http.js --decode-server PORT FILE`: every request reads and decodes the source
// and encodes a 256×256 WebP, like an on-the-fly image proxy without a cache.
interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  errors: string;
  p50: string;
  p99: string;
  /** where the CPU went during the measurement */
  account: Account;
}

/**
 * How evenly a `--workers` server's workers shared each one-second slice: after every slice of a
 * URL of such a server, the largest worker's share of the responses it gave in that slice (from
 * its /metrics, fetched synchronously with curl so the slices stay back to back).
 */
const workerServers = new Set<string>();
const lastCounts = new Map<string, number[]>();
const largestShare = new Map<string, number[]>();
function workerCounts(origin: string): number[] {
  const r = spawnSync('curl', ['-s', `${origin}/metrics`], { encoding: 'utf8' });
  const byWorker: number[] = [];
  for (const l of r.stdout.split('\n')) {
    const m = /^pixtable_server_responses_total\{role="worker",worker="(\d+)"\} (\S+)$/.exec(l);
    if (m) byWorker[Number(m[1]) - 1] = Number(m[2]);
  }
  return byWorker;
}
function noteSlice(url: string): void {
  const origin = new URL(url).origin;
  if (!workerServers.has(origin)) return;
  const now = workerCounts(origin);
  const before = lastCounts.get(origin);
  lastCounts.set(origin, now);
  if (before === undefined || before.length !== now.length) return;
  const gained = now.map((v, i) => v - (before[i] ?? 0));
  const total = gained.reduce((a, b) => a + b, 0);
  if (total > 100)
    largestShare.set(origin, [...(largestShare.get(origin) ?? []), Math.max(...gained) / total]);
}

/** The server processes behind each port, found once (the bench restarts none of them). */
const serverPids = new Map<number, number[]>();
function pidsOf(url: string): number[] {
  const port = Number(new URL(url).port);
  let pids = serverPids.get(port);
  if (pids === undefined) serverPids.set(port, (pids = listeners(port)));
  return pids;
}

function need(cmd: string, pkg: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`]);
  if (r.status !== 0) {
    console.error(`bench:http needs ${cmd}: apt-get install -y ${pkg}`);
    process.exit(2);
  }
}

function wrk(url: string, connections = CONNECTIONS, seconds = SECONDS, threads = 1): WrkResult {
  const pids = pidsOf(url);
  const server0 = cpuSeconds(pids);
  const sleeps0 = sleeps(pids);
  const idle0 = idleSeconds();
  const t0 = process.hrtime.bigint();
  const [cmd, args] = measured('wrk', [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--latency',
    url,
  ]);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const idle = idleSeconds() - idle0;
  const server = cpuSeconds(pids) - server0;
  const slept = sleeps(pids) - sleeps0;
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const cut = r.stdout.lastIndexOf('\n', r.stdout.length - 2);
  const out = r.stdout.slice(0, cut);
  const client = childCpuFromStat(r.stdout.slice(cut + 1));
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 'NaN');
  const res: WrkResult = {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
    errors: /Socket errors: (.*)/.exec(out)?.[1] ?? '',
    p50: /\s50%\s+(\S+)/.exec(out)?.[1] ?? '?',
    p99: /\s99%\s+(\S+)/.exec(out)?.[1] ?? '?',
    account: { server, client, idle, wall, requests: 0, sleeps: slept },
  };
  res.account.requests = res.requests;
  // A fast error page would make any ratio meaningless: refuse to report one.
  if (res.non2xx > 0 || !(res.requests > 0))
    throw new Error(`${url}: ${res.non2xx} non-2xx of ${res.requests}\n${out}`);
  return res;
}

async function waitFor(url: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > end) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * One run of one comparison. This machine's load drifts within seconds, so fast peers are measured
 * in interleaved one-second slices (A B B A A B …, BENCH_SECONDS slices per side) and each side's
 * rate is its total over its slices: a load swing then hits both sides alike instead of whichever
 * happened to run during it. Slow decode-per-request peers (a few requests per second) get one
 * long measurement per side, in alternating order between runs.
 */
function measurePair(
  p: { ours: string; theirs: string; theirConnections?: number; threads?: number },
  run: number,
): { ours: WrkResult; theirs: WrkResult } {
  const t = p.threads ?? 1;
  if (p.theirConnections !== undefined) {
    const first = run % 2 === 0;
    const a = first ? wrk(p.ours) : wrk(p.theirs, p.theirConnections);
    const b = first ? wrk(p.theirs, p.theirConnections) : wrk(p.ours);
    return first ? { ours: a, theirs: b } : { ours: b, theirs: a };
  }
  const ours: WrkResult[] = [];
  const theirs: WrkResult[] = [];
  for (let i = 0; i < SECONDS; i++) {
    const oursFirst = (i + run) % 2 === 0;
    const slice = (url: string) => {
      noteSlice(url); // counts before the slice
      const r = wrk(url, CONNECTIONS, 1, t);
      noteSlice(url);
      return r;
    };
    if (oursFirst) ours.push(slice(p.ours));
    theirs.push(slice(p.theirs));
    if (!oursFirst) ours.push(slice(p.ours));
  }
  return { ours: combine(ours), theirs: combine(theirs) };
}

/** Slices of one side as one measurement: total requests over total time; the worst p50/p99. */
function combine(slices: WrkResult[]): WrkResult {
  const requests = slices.reduce((n, s) => n + s.requests, 0);
  const worst = (pick: (s: WrkResult) => string) =>
    slices.map(pick).reduce((a, b) => (latencyUs(b) > latencyUs(a) ? b : a));
  return {
    rps: slices.reduce((n, s) => n + s.rps, 0) / slices.length,
    requests,
    non2xx: 0,
    errors: slices.map((s) => s.errors).find((e) => e !== '') ?? '',
    p50: worst((s) => s.p50),
    p99: worst((s) => s.p99),
    account: slices.map((s) => s.account).reduce(addAccount, emptyAccount()),
  };
}

/** wrk's latency text ("812.00us", "3.85ms", "1.02s") in microseconds. */
function latencyUs(t: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(t);
  if (!m) return Infinity;
  return Number(m[1]) * (m[2] === 'us' ? 1 : m[2] === 'ms' ? 1000 : 1_000_000);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  need('wrk', 'wrk');
  need('nginx', 'nginx libnginx-mod-http-image-filter');
  const moduleSo = ['/usr/lib/nginx/modules/ngx_http_image_filter_module.so'].find((p) => fs.existsSync(p));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-bench-'));
  // nginx started by root drops its worker to `nobody`, which must be able to read the files
  fs.chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  const stopAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  try {
    const load0 = os.loadavg()[0]!.toFixed(2);
    console.log(
      `pixtable bench:http — ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, ` +
        `wrk -t1 -c${CONNECTIONS}, ${SECONDS} interleaved 1 s slices per side (decode peers: -d${SECONDS}s), ${RUNS} runs; ` +
        (PIN
          ? 'one-process pixtable and nginx pinned to CPU 0, wrk not pinned (the decode-per-request server and the --workers 2 rows use both cores)'
          : 'not pinned: wrk shares the cores with the servers') +
        `; load average at start ${load0}`,
    );

    const source = path.join(dir, 'source.jpg');
    await writeBenchSource(source);

    // ---- pixtable ----
    const port = await freePort();
    const storage = path.join(dir, 'storage');
    const base = `http://127.0.0.1:${port}`;
    const formats = JSON.stringify([
      { name: 'bench-256', width: 256, height: 256, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 64 },
      { name: 'bench-64', width: 64, height: 64, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 64 },
    ]);
    // `cpu`: 'unpinned' for the multi-process rows, which use both cores as wrk does. (It used to
    // be `undefined`, which a default parameter turns into 0: the --workers servers ran pinned
    // to CPU 0, both workers on one core, against an unpinned nginx.)
    const pixtable = async (p: number, extra: Record<string, string>, cpu: number | 'unpinned' = 0) => {
      const child = spawnOn(
        cpu === 'unpinned' ? undefined : cpu,
        process.execPath,
        [path.join(repo, 'dist/src/cli/main.js'), 'serve'],
        {
          env: {
            ...process.env,
            PORT: String(p),
            HOST: '127.0.0.1',
            PIXTABLE_STORAGE: storage,
            // one process, as before `--workers`; the multi-process rows below set their own
            PIXTABLE_WORKERS: '1',
            PIXTABLE_FORMATS: formats,
            // nginx below runs with access_log off; the same for us
            PIXTABLE_LOG_REQUESTS: 'false',
            PIXTABLE_LOG_LEVEL: 'warn',
            ...extra,
            ...Object.fromEntries(
              (process.env.BENCH_PIXTABLE_ENV ?? '')
                .split(/\s+/)
                .filter((kv) => kv.includes('='))
                .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
            ),
          },
          stdio: ['ignore', 'inherit', 'inherit'],
        },
      );
      children.push(child);
      await waitFor(`http://127.0.0.1:${p}/readyz`);
    };
    await pixtable(port, {});
    const put = await fetch(`${base}/v1/sources/bench/source.jpg`, {
      method: 'PUT',
      body: fs.readFileSync(source),
    });
    if (put.status !== 201) throw new Error(`upload failed: ${put.status} ${await put.text()}`);
    const raw256 = `${base}/v1/pixels/bench-256/bench/source.jpg`;
    const raw64 = `${base}/v1/pixels/bench-64/bench/source.jpg`;
    const thumb = `${base}/v1/thumbnails/bench-256/bench/source.jpg?type=webp`;
    const bytes = async (u: string) => Buffer.from(await (await fetch(u)).arrayBuffer());

    // ---- nginx, serving the very same bytes ----
    const ngx = path.join(dir, 'nginx');
    const html = path.join(ngx, 'html');
    fs.mkdirSync(path.join(ngx, 'logs'), { recursive: true });
    fs.mkdirSync(path.join(ngx, 'tmp'), { recursive: true });
    fs.mkdirSync(html, { recursive: true });
    const e256 = await bytes(raw256);
    const e64 = await bytes(raw64);
    const webp = await bytes(thumb);
    if (e256.length !== 256 * 1024 || e64.length !== 16 * 1024) throw new Error('unexpected entry sizes');
    fs.writeFileSync(path.join(html, 'e256'), e256);
    fs.writeFileSync(path.join(html, 'e64'), e64);
    fs.writeFileSync(path.join(html, 'thumb.webp'), webp);
    fs.copyFileSync(source, path.join(html, 'source.jpg'));
    const nport = await freePort();
    const tmp = path.join(ngx, 'tmp');
    const nginxConf = (workers: number, listen: number, pid: string) =>
      `${moduleSo ? `load_module ${moduleSo};` : ''}
worker_processes ${workers};
daemon off;
pid ${pid};
error_log ${ngx}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path ${tmp}; proxy_temp_path ${tmp}; fastcgi_temp_path ${tmp}; uwsgi_temp_path ${tmp}; scgi_temp_path ${tmp};
  server {
    listen 127.0.0.1:${listen};
    root ${html};
    location /crop/ {
      alias ${html}/;
      ${moduleSo ? 'image_filter crop 256 256; image_filter_buffer 64M; image_filter_jpeg_quality 80;' : 'return 501;'}
    }
  }
}
`;
    const conf = path.join(ngx, 'nginx.conf');
    fs.writeFileSync(conf, nginxConf(1, nport, `${ngx}/nginx.pid`));
    const nginx = spawnOn(0, 'nginx', ['-p', ngx, '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(nginx);
    const nbase = `http://127.0.0.1:${nport}`;
    await waitFor(`${nbase}/e64`);

    // ---- decode-per-request server ----
    const dport = await freePort();
    const decoder = spawn(
      process.execPath,
      [fileURLToPath(import.meta.url), '--decode-server', String(dport), source],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    children.push(decoder);
    const dbase = `http://127.0.0.1:${dport}`;
    await waitFor(`${dbase}/`);

    // ---- a bare node:http handler (reference, not a target) ----
    // The same 16 KiB body and the same headers from a plain http.createServer handler on the same
    // CPU: the ceiling any Node server with http.ServerResponse reaches here, to read the 16 KiB
    // ratio against.
    const bport = await freePort();
    const bare = spawnOn(
      0,
      process.execPath,
      [fileURLToPath(import.meta.url), '--bare-server', String(bport), path.join(html, 'e64')],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    children.push(bare);
    const bbase = `http://127.0.0.1:${bport}`;
    await waitFor(`${bbase}/`);
    // A second pixtable process on the same storage, read-only (no writer lock, shares the page
    // cache) and without per-hit revalidation of the source file (a stat per request): what a
    // fleet of readers in front of one writer looks like, and the cost of revalidation.
    const rport = await freePort();
    await pixtable(rport, { PIXTABLE_READ_ONLY: 'true', PIXTABLE_REVALIDATE: 'false' });
    const rbase = `http://127.0.0.1:${rport}`;
    const ro256 = `${rbase}/v1/pixels/bench-256/bench/source.jpg`;
    const ro64 = `${rbase}/v1/pixels/bench-64/bench/source.jpg`;
    const roThumb = `${rbase}/v1/thumbnails/bench-256/bench/source.jpg?type=webp`;
    // A third, as the second but with the fast lane off (PIXTABLE_FAST_LANE=false): every request
    // through Node's HTTP parser and fastify's server, i.e. what the lane saves.
    const oport = await freePort();
    await pixtable(oport, {
      PIXTABLE_READ_ONLY: 'true',
      PIXTABLE_REVALIDATE: 'false',
      PIXTABLE_FAST_LANE: 'false',
    });
    const off64 = `http://127.0.0.1:${oport}/v1/pixels/bench-64/bench/source.jpg`;

    // ---- two workers each, unpinned: pixtable --workers 2 against nginx worker_processes 2 ----
    // Both use both cores, and so does wrk (-t2): on this 2-core machine the load generator takes
    // a share of the very cores the servers scale onto, for both sides alike. pixtable's second
    // storage has a writer of its own (the first server holds the first storage's lock).
    const n2port = await freePort();
    const conf2 = path.join(ngx, 'nginx2.conf');
    fs.writeFileSync(conf2, nginxConf(2, n2port, `${ngx}/nginx2.pid`));
    children.push(spawn('nginx', ['-p', ngx, '-c', conf2], { stdio: ['ignore', 'inherit', 'inherit'] }));
    const n2base = `http://127.0.0.1:${n2port}`;
    await waitFor(`${n2base}/e64`);
    const wstorage = path.join(dir, 'storage-workers');
    // the round-robin one is read-only: the first holds the storage's writer lock
    // the first is the default (`auto`: reuseport where Node has it) and the writer; the others,
    // read-only, compare the ways of handing out connections
    const workersAt = async (distribution: 'auto' | 'shared' | 'round-robin', readOnly: boolean) => {
      const wp = await freePort();
      await pixtable(
        wp,
        {
          PIXTABLE_STORAGE: wstorage,
          PIXTABLE_WORKERS: '2',
          PIXTABLE_REVALIDATE: 'false',
          PIXTABLE_DISTRIBUTION: distribution,
          ...(readOnly ? { PIXTABLE_READ_ONLY: 'true' } : {}),
        },
        'unpinned',
      );
      return `http://127.0.0.1:${wp}`;
    };
    const wbase = await workersAt('auto', false);
    const up = await fetch(`${wbase}/v1/sources/bench/source.jpg`, {
      method: 'PUT',
      body: fs.readFileSync(source),
    });
    if (up.status !== 201) throw new Error(`upload to --workers 2 failed: ${up.status} ${await up.text()}`);
    const wrr = await workersAt('round-robin', true);
    const wshared = await workersAt('shared', true);
    const reuse = runtimeHasReusePort();
    for (const u of [wbase, wrr, wshared]) workerServers.add(u);
    const single = await freePort();
    await pixtable(
      single,
      { PIXTABLE_STORAGE: wstorage, PIXTABLE_READ_ONLY: 'true', PIXTABLE_REVALIDATE: 'false' },
      'unpinned',
    );
    const w256 = `${wbase}/v1/pixels/bench-256/bench/source.jpg`;
    const w64 = `${wbase}/v1/pixels/bench-64/bench/source.jpg`;
    const wrr64 = `${wrr}/v1/pixels/bench-64/bench/source.jpg`;
    const wshared64 = `${wshared}/v1/pixels/bench-64/bench/source.jpg`;
    const one64 = `http://127.0.0.1:${single}/v1/pixels/bench-64/bench/source.jpg`;
    // 0 wrong bytes: every worker, on connections of their own, serves exactly nginx's file
    let checked = 0;
    for (const [u, want] of [
      [w256, e256],
      [w64, e64],
      [wrr64, e64],
      [wshared64, e64],
    ] as const) {
      for (let i = 0; i < 40; i++) {
        const got = await new Promise<Buffer>((resolve, reject) => {
          http
            .get(u, { agent: false }, (res) => {
              const c: Buffer[] = [];
              res.on('data', (d: Buffer) => c.push(d));
              res.on('end', () => resolve(Buffer.concat(c)));
            })
            .on('error', reject);
        });
        if (!got.equals(want)) throw new Error(`${u}: response ${i} differs from the entry's bytes`);
        checked++;
      }
    }
    console.log(`--workers 2: ${checked} bodies on fresh connections compared with the entry: 0 wrong bytes`);

    // warm every path once (first hits map chunks and fill the encoded-thumbnail cache)
    for (const u of [
      raw256,
      raw64,
      thumb,
      ro256,
      ro64,
      roThumb,
      off64,
      `${nbase}/e256`,
      `${nbase}/thumb.webp`,
      w256,
      w64,
      wrr64,
      wshared64,
      one64,
      `${n2base}/e64`,
      `${n2base}/e256`,
    ])
      wrk(u, 4, 1);

    interface Pair {
      name: string;
      ours: string;
      theirs: string;
      against: string;
      target: number;
      /** decode-per-request sides are slow: fewer connections keep queues short */
      theirConnections?: number;
      /** a reference measurement, not a pixtable path: no target */
      reference?: boolean;
      /** wrk threads (default 1; 2 for the two-worker rows) */
      threads?: number;
    }
    const pairs: Pair[] = [
      {
        name: 'raw 256x256 rgba8 (256 KiB)',
        ours: raw256,
        theirs: `${nbase}/e256`,
        against: 'nginx static, sendfile',
        target: 1.0,
      },
      {
        name: 'raw 64x64 rgba8 (16 KiB)',
        ours: raw64,
        theirs: `${nbase}/e64`,
        against: 'nginx static, sendfile',
        target: 0.7,
      },
      {
        name: 'reference: bare node:http handler, same 16 KiB + headers',
        ours: `${bbase}/`,
        theirs: `${nbase}/e64`,
        against: 'nginx static, sendfile',
        target: 0,
        reference: true,
      },
      {
        name: 'raw 16 KiB',
        ours: raw64,
        theirs: `${bbase}/`,
        against: 'bare node:http handler (reference)',
        target: 0,
        reference: true,
      },
      {
        name: 'raw 256 KiB, 2nd process: read-only, no revalidate',
        ours: ro256,
        theirs: `${nbase}/e256`,
        against: 'nginx static, sendfile',
        target: 1.0,
      },
      {
        name: 'raw 16 KiB, 2nd process: read-only, no revalidate',
        ours: ro64,
        theirs: `${nbase}/e64`,
        against: 'nginx static, sendfile',
        target: 0.7,
      },
      {
        name: 'reference: raw 16 KiB, 3rd process: as the 2nd, fast lane off',
        ours: off64,
        theirs: `${nbase}/e64`,
        against: 'nginx static, sendfile',
        target: 0,
        reference: true,
      },
      {
        name: `thumbnail hit, WebP (${webp.length} B)`,
        ours: thumb,
        theirs: `${nbase}/thumb.webp`,
        against: 'nginx static, same bytes',
        target: 0.7,
      },
      {
        name: 'thumbnail hit, 2nd process: read-only, no revalidate',
        ours: roThumb,
        theirs: `${nbase}/thumb.webp`,
        against: 'nginx static, same bytes',
        target: 0.7,
      },
      {
        name: 'thumbnail hit, WebP',
        ours: thumb,
        theirs: `${dbase}/`,
        against: 'sharp per request (2 workers)',
        target: 100,
        theirConnections: 4,
      },
      {
        name: 'raw 256 KiB, --workers 2 (unpinned, wrk -t2)',
        ours: w256,
        theirs: `${n2base}/e256`,
        against: 'nginx worker_processes 2',
        target: 1.0,
        threads: 2,
      },
      {
        name: 'raw 16 KiB, --workers 2 (unpinned, wrk -t2)',
        ours: w64,
        theirs: `${n2base}/e64`,
        against: 'nginx worker_processes 2',
        target: 1.0,
        threads: 2,
      },
      {
        name: 'raw 16 KiB, --workers 2',
        ours: w64,
        theirs: one64,
        against: 'one process (unpinned, read-only, wrk -t2)',
        target: 0,
        reference: true,
        threads: 2,
      },
      {
        name: `raw 16 KiB, --workers 2, ${reuse ? 'reuseport' : 'shared socket'} (the default here)`,
        ours: w64,
        theirs: wrr64,
        against: 'the same (read-only), PIXTABLE_DISTRIBUTION=round-robin',
        target: 0,
        reference: true,
        threads: 2,
      },
      ...(reuse
        ? [
            {
              name: 'raw 16 KiB, --workers 2, reuseport (the default here)',
              ours: w64,
              theirs: wshared64,
              against: 'the same (read-only), PIXTABLE_DISTRIBUTION=shared',
              target: 0,
              reference: true,
              threads: 2,
            },
          ]
        : []),
      ...(moduleSo
        ? [
            {
              name: 'thumbnail hit, WebP',
              ours: thumb,
              theirs: `${nbase}/crop/source.jpg`,
              against: 'nginx image_filter crop',
              target: 100,
              theirConnections: 4,
            },
          ]
        : []),
    ];
    const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined;
    if (only) pairs.splice(0, pairs.length, ...pairs.filter((p) => only.test(`${p.name} vs ${p.against}`)));
    interface Tally {
      ours: number[];
      theirs: number[];
      ratio: number[];
      oursAcc: Account;
      theirsAcc: Account;
    }
    const results = new Map<Pair, Tally>();
    for (const p of pairs)
      results.set(p, { ours: [], theirs: [], ratio: [], oursAcc: emptyAccount(), theirsAcc: emptyAccount() });
    const cpus = os.availableParallelism();
    for (let run = 0; run < RUNS; run++) {
      for (const p of pairs) {
        const { ours, theirs } = measurePair(p, run);
        const r = results.get(p)!;
        r.ours.push(ours.rps);
        r.theirs.push(theirs.rps);
        r.ratio.push(ours.rps / theirs.rps);
        r.oursAcc = addAccount(r.oursAcc, ours.account);
        r.theirsAcc = addAccount(r.theirsAcc, theirs.account);
        console.log(
          `run ${run + 1} ${p.name} vs ${p.against}: ${ours.rps.toFixed(0)} vs ${theirs.rps.toFixed(0)} req/s ` +
            `= ${(ours.rps / theirs.rps).toFixed(2)}x (p99 ${ours.p99} vs ${theirs.p99})\n` +
            `      pixtable: ${describe(ours.account, cpus)}; other: ${describe(theirs.account, cpus)}`,
        );
      }
    }

    const rows = pairs.map((p) => {
      const r = results.get(p)!;
      const ratio = median(r.ratio);
      return [
        p.name,
        p.against,
        median(r.ours).toFixed(0),
        median(r.theirs).toFixed(0),
        `${ratio.toFixed(2)}x`,
        `${Math.min(...r.ratio).toFixed(2)}–${Math.max(...r.ratio).toFixed(2)}`,
        p.reference ? '-' : `>= ${p.target}x`,
        p.reference ? '-' : ratio >= p.target ? 'yes' : 'NO',
      ];
    });
    const head = [
      'pixtable path',
      'against',
      'pixtable req/s',
      'other req/s',
      'ratio (median)',
      'range',
      'target',
      'met',
    ];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
    console.log(
      `\n${line(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n${rows.map(line).join('\n')}`,
    );
    // Where the CPU went, over all runs of each row: a ratio below 1 with the server's µs per
    // request at or below the other's means the server got less CPU, not that it needs more.
    console.log('\nCPU per request over all runs (server processes, wrk, idle share of all CPUs):');
    for (const p of pairs) {
      const r = results.get(p)!;
      console.log(
        `  ${p.name} vs ${p.against}:\n    pixtable ${describe(r.oursAcc, cpus)}\n    other    ${describe(r.theirsAcc, cpus)}`,
      );
    }
    for (const [origin, shares] of largestShare) {
      const label =
        origin === wbase
          ? 'default'
          : origin === wrr
            ? 'round-robin'
            : origin === wshared
              ? 'shared'
              : origin;
      const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
      console.log(
        `--workers 2 (${label}): the busier worker's share of each slice's responses: median ${pct(median(shares))}, ` +
          `worst ${pct(Math.max(...shares))}, slices with one worker only ${shares.filter((x) => x > 0.999).length} of ${shares.length}`,
      );
    }
    // how the kernel spread the --workers 2 server's connections over its two workers
    // (curl, a connection of its own: fetch would reuse a keep-alive connection from before the
    // runs, which the server closed while spawnSync held this event loop, and fail with EPIPE)
    const split = spawnSync('curl', ['-s', `${wbase}/metrics`], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.startsWith('pixtable_server_responses_total{role="worker"'))
      .map((l) => l.replace(/^.*worker="(\d+)"\} /, 'worker $1: '));
    console.log(`\n--workers 2 responses per worker over the whole run: ${split.join(', ')}`);
    console.log(
      `\nload average at end ${os.loadavg()[0]!.toFixed(2)}; medians of ${RUNS} runs, each ratio from one run.`,
    );
  } finally {
    stopAll();
    await new Promise((r) => setTimeout(r, 300));
    if (process.env.BENCH_KEEP) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--bare-server') {
  const body = fs.readFileSync(process.argv[4] as string);
  const headers = [
    'Content-Type',
    'application/octet-stream',
    'Content-Length',
    String(body.length),
    'ETag',
    '"0123456789abcdef0123456789abcdef-bench-64-1"',
    'Cache-Control',
    'public, max-age=31536000, immutable',
    'Accept-Ranges',
    'bytes',
    'X-Image-Width',
    '64',
    'X-Image-Height',
    '64',
    'X-Row-Stride',
    '256',
    'X-Pixel-Format',
    'rgba8',
  ];
  http
    .createServer((_req, res) => {
      res.writeHead(200, headers);
      res.end(body);
    })
    .listen(Number(process.argv[3]), '127.0.0.1');
} else if (process.argv[2] === '--decode-server') {
  const port = Number(process.argv[3]);
  const file = process.argv[4] as string;
  if (cluster.isPrimary) {
    for (let i = 0; i < os.availableParallelism(); i++) cluster.fork();
  } else {
    http
      .createServer((_req, res) => {
        sharp(file)
          .resize(256, 256, { fit: 'cover' })
          .webp({ quality: 80 })
          .toBuffer()
          .then(
            (b) => {
              res.writeHead(200, { 'Content-Type': 'image/webp', 'Content-Length': b.length });
              res.end(b);
            },
            (e: Error) => {
              res.writeHead(500);
              res.end(e.message);
            },
          );
      })
      .listen(port, '127.0.0.1');
  }
} else {
  await main();
}
