// `npm run bench:cluster`: what the nginx hop of a cluster costs on a hit, and a cold miss from S3
// against one from local disk (docs/deploy.md, "The cost of the nginx hop").
// - Hop: one replica (local sources) asked directly and through the shipped nginx config
//   (deploy/local-cluster/parts.ts writes it, one nginx worker), wrk on keep-alive connections,
//   RUNS rounds alternating which side goes first; medians and ranges of requests/s and p50
//   latency, and the ratio nginx / direct per round. Hits: a `thumb-64` raw entry and a cached
//   WebP thumbnail.
// - Cold miss: KEYS objects put into the bucket behind pixtable's back and the same files copied
//   into a local-sources replica's storage/sources/; the first GET of each (one decode of the
//   three default formats) timed, one at a time.
// Needs wrk and nginx (Debian packages) and `npm run build`. The load average is printed before
// and after: on a shared machine figures taken under load say so.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import {
  bucketClient,
  freePort,
  startNginx,
  startReplica,
  startS3rver,
  stopChild,
  waitFor,
  writeNginxConfig,
} from '../deploy/local-cluster/parts.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 16;
const KEYS = 8;

/** wrk's own summary as JSON (a Lua `done` hook), instead of scraping its report. */
const WRK_SCRIPT = `done = function(summary, latency, requests)
  io.write(string.format('{"requests":%d,"seconds":%f,"non2xx":%d,"errors":%d,"p50us":%d,"p99us":%d}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

interface Run {
  rps: number;
  p50us: number;
}

/** wrk, without blocking this process (s3rver runs in it and answers the S3 replica's HEADs). */
async function wrk(script: string, url: string): Promise<Run> {
  const proc = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '-s', script, url]);
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((r) => proc.on('close', (c) => r(c)));
  if (code !== 0) throw new Error(`wrk failed: ${err}`);
  const line = out.trim().split('\n').pop() ?? '';
  const s = JSON.parse(line) as {
    requests: number;
    seconds: number;
    non2xx: number;
    errors: number;
    p50us: number;
  };
  // an error page is fast: a figure with any would mean nothing
  if (s.non2xx > 0 || s.errors > 0 || s.requests === 0) throw new Error(`${url}: ${line}`);
  return { rps: s.requests / s.seconds, p50us: s.p50us };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const range = (xs: number[], digits = 0) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function image(seed: number): Promise<Buffer> {
  const w = 1600;
  const h = 1200;
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * seed + (i >> 9)) & 255;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

async function timed(url: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  // a pooled connection the server closed while idle (keep-alive timeout) is not the figure: once more
  const r = await fetch(url).catch(() => fetch(url));
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function main(): Promise<void> {
  for (const [cmd, pkg] of [
    ['wrk', 'wrk'],
    ['/usr/sbin/nginx', 'nginx'],
  ] as const) {
    if (spawnSync(cmd, ['-v']).error) throw new Error(`${cmd} not found (apt-get install ${pkg})`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-bench-cluster-'));
  fs.chmodSync(dir, 0o711);
  const children: ChildProcess[] = [];
  const s3 = await startS3rver('127.0.0.1', 0, path.join(dir, 's3'));
  const bucket = bucketClient(`http://127.0.0.1:${s3.port}`);

  try {
    console.log(`load average at start: ${load()} (${os.availableParallelism()} CPUs)`);
    const endpoint = `http://127.0.0.1:${s3.port}`;
    const s3Port = await freePort();
    const s3Replica = startReplica({
      host: '127.0.0.1',
      port: s3Port,
      storage: path.join(dir, 's3-replica'),
      s3Endpoint: endpoint,
    });
    children.push(s3Replica);
    // the same replica settings, sources on its own disk (no S3 variables)
    const localPort = await freePort();
    const localStorage = path.join(dir, 'local-replica');
    const localReplica = startReplica({
      host: '127.0.0.1',
      port: localPort,
      storage: localStorage,
      s3Endpoint: endpoint,
      env: {
        PIXTABLE_S3_ENDPOINT: '',
        PIXTABLE_S3_BUCKET: '',
        PIXTABLE_S3_REGION: '',
        PIXTABLE_S3_FORCE_PATH_STYLE: '',
      },
    });
    children.push(localReplica);
    const fromS3 = `http://127.0.0.1:${s3Port}`;
    const local = `http://127.0.0.1:${localPort}`;
    await waitFor(`${fromS3}/readyz`, 60_000);
    await waitFor(`${local}/readyz`, 60_000);

    // ---- cold misses: S3 against local disk ----
    const s3Ms: number[] = [];
    const localMs: number[] = [];
    for (let i = 0; i < KEYS; i++) {
      const key = `cold/${i}.jpg`;
      const bytes = await image(i + 3);
      await bucket.put(key, bytes);
      fs.mkdirSync(path.join(localStorage, 'sources/cold'), { recursive: true });
      fs.writeFileSync(path.join(localStorage, 'sources', key), bytes);
      // alternate which goes first, so neither always meets a warmer machine
      if (i % 2) {
        s3Ms.push(await timed(`${fromS3}/v1/pixels/thumb-64/${key}`));
        localMs.push(await timed(`${local}/v1/pixels/thumb-64/${key}`));
      } else {
        localMs.push(await timed(`${local}/v1/pixels/thumb-64/${key}`));
        s3Ms.push(await timed(`${fromS3}/v1/pixels/thumb-64/${key}`));
      }
    }

    // ---- the nginx hop on hits ----
    const nport = await freePort();
    // the hop is measured on the local-sources replica: what the hop costs does not depend on
    // where sources live, and a hit there makes no revalidation HEAD to s3rver
    const conf = writeNginxConfig(path.join(dir, 'nginx'), `127.0.0.1:${nport}`, [`127.0.0.1:${localPort}`]);
    const nginx = startNginx(conf);
    children.push(nginx);
    const front = `http://127.0.0.1:${nport}`;
    const direct = local;
    await waitFor(`${front}/v1/formats`, 20_000);
    const script = path.join(dir, 'summary.lua');
    fs.writeFileSync(script, WRK_SCRIPT);
    const targets = {
      'raw thumb-64 hit': '/v1/pixels/thumb-64/cold/0.jpg',
      'WebP thumbnail hit': '/v1/thumbnails/thumb-64/cold/0.jpg?type=webp',
    };
    console.log(
      `\n${RUNS} rounds × ${SECONDS} s per side, wrk -t1 -c${CONNECTIONS}, one nginx worker, one replica process`,
    );
    console.log(
      '| hit | direct req/s (median, range) | via nginx req/s | nginx / direct (median, range) | p50 direct | p50 via nginx |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const [name, p] of Object.entries(targets)) {
      await timed(`${direct}${p}`);
      await timed(`${front}${p}`);
      const d: Run[] = [];
      const n: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        if (i % 2) {
          n.push(await wrk(script, `${front}${p}`));
          d.push(await wrk(script, `${direct}${p}`));
        } else {
          d.push(await wrk(script, `${direct}${p}`));
          n.push(await wrk(script, `${front}${p}`));
        }
      }
      const ratios = d.map((x, i) => n[i]!.rps / x.rps);
      console.log(
        `| ${name} | ${median(d.map((x) => x.rps)).toFixed(0)} (${range(d.map((x) => x.rps))}) | ${median(n.map((x) => x.rps)).toFixed(0)} (${range(n.map((x) => x.rps))}) | ${median(ratios).toFixed(2)} (${range(ratios, 2)}) | ${(median(d.map((x) => x.p50us)) / 1000).toFixed(2)} ms | ${(median(n.map((x) => x.p50us)) / 1000).toFixed(2)} ms |`,
      );
    }
    console.log(
      `\ncold miss (first GET of a 1600×1200 JPEG: fetch + one decode of three formats), ${KEYS} keys, one at a time:`,
    );
    console.log(`  from S3 (s3rver on loopback): median ${median(s3Ms).toFixed(1)} ms (${range(s3Ms, 1)})`);
    console.log(
      `  from local disk:              median ${median(localMs).toFixed(1)} ms (${range(localMs, 1)})`,
    );
    console.log(`\nload average at end: ${load()}`);
  } finally {
    for (const c of children.reverse()) await stopChild(c);
    bucket.client.destroy();
    await s3.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
