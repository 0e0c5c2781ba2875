// The parts of a local pixtable cluster, shared by `npm run cluster` (launcher.ts), the cluster
// test (test/e2e/cluster.test.ts) and the nginx-hop bench (bench/cluster.ts): the nginx config
// generated from the shipped deploy/nginx/pixtable.conf, an S3-protocol server (s3rver, a dev
// dependency), `pixtable serve` replicas, readiness polling. Nothing here is part of the product;
// it lives under deploy/ beside the files it turns into a running cluster.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

/** The checkout's root, from dist/deploy/local-cluster/ (tsc's output) or deploy/local-cluster/. */
export const ROOT = path.resolve(
  import.meta.dirname,
  import.meta.dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..',
);
export const NGINX = '/usr/sbin/nginx';
const MAIN = path.join(ROOT, 'dist/src/cli/main.js');

/** s3rver's fixed credentials, given to the replicas as the AWS SDK's default chain reads them. */
export const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
export const S3_BUCKET = 'pixtable';
export const S3_REGION = 'us-east-1';

/** One `server` line of the upstream file per replica (`host:port`), with the shipped health bounds. */
export function upstreamLines(replicas: readonly string[]): string {
  return replicas.map((r) => `server ${r} max_fails=2 fail_timeout=5s;\n`).join('');
}

/**
 * Writes `nginx.conf` and `pixtable-upstreams.inc` into `dir` (nginx's prefix, logs and temp
 * files there too): the shipped deploy/nginx/pixtable.conf as it is, but for its `listen`.
 * Returns the config file's path.
 */
export function writeNginxConfig(
  dir: string,
  listen: string,
  replicas: readonly string[],
  workerProcesses = 1,
  /** http-context lines added around the shipped file (the cluster test's X-Upstream header). */
  httpExtra = '',
): string {
  const shipped = fs.readFileSync(path.join(ROOT, 'deploy/nginx/pixtable.conf'), 'utf8');
  const listens = shipped.match(/^\s*listen 8080;$/gm) ?? [];
  if (listens.length !== 1) throw new Error('deploy/nginx/pixtable.conf: expected one "listen 8080;" line');
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  // nginx's workers run as nobody and write uploads to client_body_temp_path under `dir`
  fs.chmodSync(dir, 0o755);
  fs.writeFileSync(
    path.join(dir, 'pixtable.conf'),
    shipped.replace(/^(\s*)listen 8080;$/m, `$1listen ${listen};`),
  );
  fs.writeFileSync(path.join(dir, 'pixtable-upstreams.inc'), upstreamLines(replicas));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${dir}/${t};`)
    .join('\n');
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `# written by deploy/local-cluster/parts.ts around the shipped pixtable.conf
worker_processes ${workerProcesses};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
${temp}
  ${httpExtra}
  include ${dir}/pixtable.conf;
}
`,
  );
  return conf;
}

/** Starts nginx on a config writeNginxConfig wrote (its own prefix: no system paths touched). */
export function startNginx(conf: string): ChildProcess {
  return spawn(NGINX, ['-p', path.dirname(conf), '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Whether the s3rver dev dependency can be loaded. */
export function s3rverInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('s3rver');
    return true;
  } catch {
    return false;
  }
}

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

/** s3rver on `address:port` (0: any free port) over `directory`, with the bucket made. */
export async function startS3rver(
  address: string,
  port: number,
  directory: string,
): Promise<{ port: number; close(): Promise<void> }> {
  const require = createRequire(import.meta.url);
  let S3rver: new (o: Record<string, unknown>) => S3rverInstance;
  try {
    S3rver = require('s3rver') as typeof S3rver;
  } catch {
    throw new Error('s3rver is not installed: it is a dev dependency (npm ci installs it)');
  }
  const server = new S3rver({
    address,
    port,
    directory,
    silent: true,
    configureBuckets: [{ name: S3_BUCKET }],
  });
  const info = await server.run();
  return { port: info.port, close: () => server.close() };
}

/** A client of the local bucket, for changing objects behind pixtable's back. */
export function bucketClient(endpoint: string): {
  client: S3Client;
  put(key: string, body: Buffer): Promise<unknown>;
} {
  const client = new S3Client({
    region: S3_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: S3_CREDENTIALS.AWS_ACCESS_KEY_ID,
      secretAccessKey: S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    },
  });
  return {
    client,
    put: (key, body) => client.send(new PutObjectCommand({ Bucket: S3_BUCKET, Key: key, Body: body })),
  };
}

export interface ReplicaSpec {
  /** Address the replica listens on (HOST). */
  host: string;
  port: number;
  storage: string;
  /** S3 endpoint as the replica reaches it. */
  s3Endpoint: string;
  /** PIXTABLE_PEERS, comma-separated (empty: off). */
  peers?: string;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** More variables (they win). */
  env?: Record<string, string>;
}

/** The environment of one replica: S3 sources, one process, quiet request log. */
export function replicaEnv(r: ReplicaSpec): Record<string, string> {
  return {
    PORT: String(r.port),
    HOST: r.host,
    PIXTABLE_STORAGE: r.storage,
    PIXTABLE_S3_ENDPOINT: r.s3Endpoint,
    PIXTABLE_S3_BUCKET: S3_BUCKET,
    PIXTABLE_S3_REGION: S3_REGION,
    PIXTABLE_S3_FORCE_PATH_STYLE: 'true',
    ...S3_CREDENTIALS,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // one process per replica: three replicas already share this machine's cores
    PIXTABLE_WORKERS: '1',
    // sized here, so serve does not start itself again for it (one pid to signal)
    UV_THREADPOOL_SIZE: '8',
    PIXTABLE_LOG_REQUESTS: 'false',
    PIXTABLE_LOG_LEVEL: 'warn',
    // a test storage folder is small; the cluster must not report itself unready for it
    PIXTABLE_MIN_FREE_BYTES: '0',
    ...(r.peers ? { PIXTABLE_PEERS: r.peers } : {}),
    ...r.env,
  };
}

/** Starts `pixtable serve` for `r` from dist/ (built by `npm run build`). */
export function startReplica(r: ReplicaSpec, stdio: 'inherit' | 'pipe' = 'inherit'): ChildProcess {
  fs.mkdirSync(r.storage, { recursive: true });
  const cmd = [process.execPath, MAIN, 'serve'];
  const [file, args] = r.netns ? ['ip', ['netns', 'exec', r.netns, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  // PIXTABLE_* of the caller's shell would leak into every replica; only the cluster's own count
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PIXTABLE_')));
  return spawn(file as string, args as string[], {
    env: { ...base, ...replicaEnv(r) },
    stdio: ['ignore', stdio, stdio],
  });
}

/** A free TCP port on 127.0.0.1 (for a config that names its ports: nginx's, the upstreams'). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `url` until it answers `status` (default 200); throws after `ms`. */
export async function waitFor(url: string, ms: number, status = 200): Promise<void> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === status) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = String((e as Error).cause ?? e);
    }
    if (Date.now() > end) throw new Error(`${url} did not answer ${status} within ${ms} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends `signal` to `child` and waits (at most `ms`, then SIGKILL) for it to exit. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  ms = 10_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
}
