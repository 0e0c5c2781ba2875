// `npm run bench:http` (after bench/http.ts), or `node dist/bench/variants.js`: responsive variants.
// (1) `?w=320` WebP from a cached `preview-1024` the first time (the encoded LRU off, so every
//     request resizes and encodes; the master is cached), against sharp decoding the 6 MP source
//     to the same size and encoding it — in this process, without HTTP, so the ratio is a lower
//     bound for pixtable (target ≥ 20×); for a JPEG source (shrink-on-load) and the same picture
//     as PNG (decoded whole). It also times the WebP encode alone, which both sides pay: their
//     time / the encode is the most any implementation can reach, printed beside the ratio.
// (2) the same variant repeated (in the LRU: the hit shortcut / fast lane answers), against nginx
//     serving the very same bytes from a file, with wrk in interleaved one-second slices (target ≥ 1.0×).
// For (2) pixtable and nginx (one worker) are pinned to CPU 0 when taskset is there; wrk is not
// pinned. (1) pins nothing: the decode it is compared with runs in this process, unpinned.
// Environment: BENCH_RUNS (default 5), BENCH_SECONDS (1 s slices per side per run, default 5),
// BENCH_CONNECTIONS (default 32), BENCH_FIRSTS (first-time requests per run, default 40).
// Needs Debian packages wrk and nginx.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { writeBenchSource } from './source-image.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SLICES = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const FIRSTS = Number(process.env.BENCH_FIRSTS ?? 40);
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const PINNED = os.availableParallelism() >= 2 && has('taskset');
const variantOf = (key: string): string => `/v1/thumbnails/preview-1024/${key}?w=320&type=webp`;
const VARIANT = variantOf('bench/source.jpg');
sharp.concurrency(1);

/** `cmd` on CPU 0 when pinning is possible and `pin`. */
function onCpu0(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, pin = true): ChildProcess {
  const argv = PINNED && pin ? ['taskset', '-c', '0', cmd, ...args] : [cmd, ...args];
  return spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'inherit', 'inherit'] });
}

async function listening(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up in 30 s`);
}

function port(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address() as { port: number };
      s.close(() => resolve(p));
    });
  });
}

/** Requests per second of one wrk slice; refuses a slice with any error status. */
function rate(url: string, seconds: number): number {
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk: ${r.stderr}`);
  if (/Non-2xx/.test(r.stdout)) throw new Error(`${url} answered errors:\n${r.stdout}`);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
}

const mid = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};
const range = (xs: readonly number[], digits: number): string =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/** The median milliseconds of `n` sequential calls of `fn`, in this process. */
async function medianMs(fn: () => Promise<unknown>, n: number): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return mid(t);
}

/** Milliseconds of each of `n` sequential GETs of `url` on one keep-alive connection. */
async function timedGets(url: string, n: number, agent: http.Agent): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      http
        .get(url, { agent }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`${url}: ${res.statusCode}`));
          res.on('data', () => {});
          res.on('end', resolve);
        })
        .on('error', reject);
    });
    out.push(performance.now() - t0);
  }
  return out;
}

async function main(): Promise<void> {
  for (const cmd of ['wrk', 'nginx']) {
    if (!has(cmd)) {
      console.error(`bench variants needs ${cmd}: apt-get install -y ${cmd}`);
      process.exit(2);
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-variants-bench-'));
  fs.chmodSync(dir, 0o755); // nginx's worker runs as nobody
  const children: ChildProcess[] = [];
  const stop = (c: ChildProcess) => {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  try {
    console.log(
      `pixtable bench variants — ${os.availableParallelism()} cores, node ${process.version}, ${RUNS} runs; ` +
        `${PINNED ? 'row 2: pixtable and nginx pinned to CPU 0' : 'not pinned'}; load average at start ${os.loadavg()[0]!.toFixed(2)}`,
    );
    const source = path.join(dir, 'source.jpg');
    await writeBenchSource(source);
    const storage = path.join(dir, 'storage');
    const serve = async (
      extra: Record<string, string>,
      pin: boolean,
    ): Promise<{ child: ChildProcess; base: string }> => {
      const p = await port();
      const child = onCpu0(
        process.execPath,
        [path.join(repo, 'dist/src/cli/main.js'), 'serve'],
        {
          ...process.env,
          PORT: String(p),
          HOST: '127.0.0.1',
          PIXTABLE_STORAGE: storage,
          PIXTABLE_WORKERS: '1',
          PIXTABLE_LOG_REQUESTS: 'false',
          PIXTABLE_LOG_LEVEL: 'warn',
          ...extra,
        },
        pin,
      );
      children.push(child);
      const base = `http://127.0.0.1:${p}`;
      await listening(`${base}/readyz`);
      return { child, base };
    };

    // ---- (1) first-time variants: the encoded LRU off, so each request resizes and encodes ----
    // Not pinned, like the in-process decode it is compared with; both run one libvips thread
    // per image (pixtable's setting, and sharp.concurrency(1) here)
    const cold = await serve({ PIXTABLE_THUMB_CACHE_BYTES: '0' }, false);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    /** Row (1) for one source file: the variant's bytes (for row 2) and the printed line. */
    const firstTime = async (key: string, file: string, what: string): Promise<Buffer> => {
      const put = await fetch(`${cold.base}/v1/sources/${key}`, {
        method: 'PUT',
        body: fs.readFileSync(file),
      });
      if (put.status !== 201) throw new Error(`upload: ${put.status}`);
      const url = `${cold.base}${variantOf(key)}`;
      const variant = Buffer.from(await (await fetch(url)).arrayBuffer());
      const meta = await sharp(variant).metadata();
      const decodeToSize = () =>
        sharp(file).resize(meta.width, meta.height, { fit: 'fill' }).webp({ quality: 80 }).toBuffer();
      const ratios: number[] = [];
      const oursMs: number[] = [];
      const theirsMs: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const ours = mid(await timedGets(url, FIRSTS, agent));
        const theirs = await medianMs(decodeToSize, Math.max(3, FIRSTS >> 3));
        oursMs.push(ours);
        theirsMs.push(theirs);
        ratios.push(theirs / ours);
      }
      // What neither side can skip, and pixtable's own step: the WebP encode of the variant and
      // libvips' resize of the master's rows (fetched raw, rgba8), each alone in this process.
      // Both sides pay the encode, so theirs / encode bounds the ratio however fast the rest is.
      const rgb = await sharp(variant).removeAlpha().raw().toBuffer();
      const encodeOnly = () =>
        sharp(rgb, { raw: { width: meta.width!, height: meta.height!, channels: 3 } })
          .webp({ quality: 80 })
          .toBuffer();
      const master = await fetch(`${cold.base}/v1/pixels/preview-1024/${key}`);
      const [mw, mh, stride] = ['x-image-width', 'x-image-height', 'x-row-stride'].map((h) =>
        Number(master.headers.get(h)),
      );
      const rows = Buffer.from(await master.arrayBuffer());
      const resizeOnly = () =>
        sharp(rows, { raw: { width: stride! / 4, height: mh!, channels: 4 } })
          .extract({ left: 0, top: 0, width: mw!, height: mh! })
          .resize(meta.width, meta.height, { fit: 'fill' })
          .raw()
          .toBuffer();
      const encodeMs = await medianMs(encodeOnly, Math.max(5, FIRSTS >> 2));
      const resizeMs = await medianMs(resizeOnly, Math.max(5, FIRSTS >> 2));
      console.log(
        `(1) ?w=320 WebP (${meta.width}x${meta.height}) first time from a cached preview-1024: ` +
          `median ${mid(oursMs).toFixed(2)} ms per request over HTTP (runs ${range(oursMs, 2)}); ` +
          `sharp decoding the 3000x2000 ${what} to that size, in process: ${mid(theirsMs).toFixed(1)} ms (${range(theirsMs, 1)}); ` +
          `ratio ${mid(ratios).toFixed(1)}× (runs ${range(ratios, 1)}), target ≥ 20×; load ${os.loadavg()[0]!.toFixed(2)}\n` +
          `    in process, alone: the WebP encode both sides pay ${encodeMs.toFixed(1)} ms, so the ratio cannot pass ` +
          `${(mid(theirsMs) / encodeMs).toFixed(1)}× however fast the rest; pixtable's resize of the ${mw}x${mh} master ${resizeMs.toFixed(1)} ms`,
      );
      return variant;
    };
    const variant = await firstTime('bench/source.jpg', source, 'JPEG (libjpeg shrinks on load)');
    // the same picture as PNG: no shrink-on-load, the whole image is decoded
    const png = path.join(dir, 'source.png');
    await sharp(source).png({ compressionLevel: 6 }).toFile(png);
    await firstTime('bench/source.png', png, 'PNG');
    agent.destroy();
    stop(cold.child);
    await new Promise((r) => cold.child.once('exit', r));

    // ---- (2) repeated variant hits against nginx serving the same bytes ----
    const warm = await serve({}, true);
    const body = Buffer.from(await (await fetch(`${warm.base}${VARIANT}`)).arrayBuffer());
    if (!body.equals(variant)) throw new Error('the variant changed between the two servers');
    const html = path.join(dir, 'nginx', 'html');
    fs.mkdirSync(path.join(dir, 'nginx', 'logs'), { recursive: true });
    fs.mkdirSync(html, { recursive: true });
    fs.writeFileSync(path.join(html, 'v320.webp'), body);
    const np = await port();
    const conf = path.join(dir, 'nginx', 'nginx.conf');
    const tmp = path.join(dir, 'nginx');
    fs.writeFileSync(
      conf,
      `worker_processes 1; daemon off; pid ${tmp}/nginx.pid; error_log ${tmp}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  types { image/webp webp; }
  client_body_temp_path ${tmp}; proxy_temp_path ${tmp}; fastcgi_temp_path ${tmp}; uwsgi_temp_path ${tmp}; scgi_temp_path ${tmp};
  server { listen 127.0.0.1:${np}; root ${html}; }
}
`,
    );
    const nginx = onCpu0('nginx', ['-p', tmp, '-c', conf]);
    children.push(nginx);
    const nurl = `http://127.0.0.1:${np}/v320.webp`;
    await listening(nurl);
    const fromNginx = Buffer.from(await (await fetch(nurl)).arrayBuffer());
    if (!fromNginx.equals(body)) throw new Error('nginx serves other bytes');
    const ours = `${warm.base}${VARIANT}`;
    rate(ours, 1); // warm both up
    rate(nurl, 1);
    const hitRatios: number[] = [];
    const oursRps: number[] = [];
    const nginxRps: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      let a = 0;
      let b = 0;
      for (let i = 0; i < SLICES; i++) {
        // A B B A …: a load swing during the run hits both sides alike
        if ((i + run) % 2 === 0) a += rate(ours, 1);
        b += rate(nurl, 1);
        if ((i + run) % 2 === 1) a += rate(ours, 1);
      }
      oursRps.push(a / SLICES);
      nginxRps.push(b / SLICES);
      hitRatios.push(a / b);
    }
    console.log(
      `(2) repeated ?w=320 WebP hit (${body.length} B): pixtable ${mid(oursRps).toFixed(0)} req/s (${range(oursRps, 0)}), ` +
        `nginx from a file ${mid(nginxRps).toFixed(0)} req/s (${range(nginxRps, 0)}); ` +
        `ratio ${mid(hitRatios).toFixed(2)}× (runs ${range(hitRatios, 2)}), target ≥ 1.0×; wrk -t1 -c${CONNECTIONS}, ` +
        `${SLICES} interleaved 1 s slices per side per run; load ${os.loadavg()[0]!.toFixed(2)}`,
    );
  } finally {
    for (const c of children) stop(c);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
