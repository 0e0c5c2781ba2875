// `npm run cluster`: a whole pixtable cluster on loopback, for trying the deploy files out and
// for the cluster test's fallback: s3rver (the bucket of sources), three `pixtable serve`
// replicas with storage folders of their own and each other as PIXTABLE_PEERS, and Debian's
// nginx with the shipped deploy/nginx/pixtable.conf in front. Prints one line
// `cluster ready: http://127.0.0.1:PORT` when every replica's /readyz and a request through
// nginx answer; Ctrl-C or SIGTERM stops every part and removes the temp folder.
//
// Options: --port N (nginx; default PORT or 8080), --replicas N (1..9, default 3).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  freePort,
  startNginx,
  startReplica,
  startS3rver,
  stopChild,
  waitFor,
  writeNginxConfig,
  NGINX,
} from './parts.js';

function usage(message: string): never {
  process.stderr.write(`npm run cluster: ${message}\nusage: npm run cluster -- [--port N] [--replicas N]\n`);
  process.exit(2);
}

function intOption(args: string[], name: string, dflt: number, min: number, max: number): number {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  const n = Number(v);
  if (v === undefined || !/^\d+$/.test(v) || n < min || n > max)
    usage(`${name} takes an integer ${min}..${max}, got ${v ?? 'nothing'}`);
  args.splice(i, 2);
  return n;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const envPort = process.env.PORT && /^\d+$/.test(process.env.PORT) ? Number(process.env.PORT) : 8080;
  const port = intOption(args, '--port', envPort, 1, 65535);
  const count = intOption(args, '--replicas', 3, 1, 9);
  if (args.length > 0) usage(`unknown argument ${args[0]}`);
  if (!fs.existsSync(NGINX)) usage(`${NGINX} not found (apt-get install nginx)`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-cluster-'));
  // traversable by nginx's workers (user nobody), which write upload bodies under dir/nginx
  fs.chmodSync(dir, 0o711);
  const children: { name: string; proc: ChildProcess }[] = [];
  let s3: Awaited<ReturnType<typeof startS3rver>> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (code: number) => {
    stopping ??= (async () => {
      // nginx first (no new requests), then the replicas drain, then the bucket goes
      for (const c of [...children].reverse()) await stopChild(c.proc);
      await s3?.close();
      fs.rmSync(dir, { recursive: true, force: true });
      process.exit(code);
    })();
    return stopping;
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  const watch = (name: string, proc: ChildProcess) => {
    children.push({ name, proc });
    proc.on('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(`npm run cluster: ${name} exited (${signal ?? code}); stopping the cluster\n`);
      void stop(1);
    });
  };

  try {
    s3 = await startS3rver('127.0.0.1', 0, path.join(dir, 's3'));
    const endpoint = `http://127.0.0.1:${s3.port}`;
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    ports.forEach((p, i) => {
      const proc = startReplica({
        host: '127.0.0.1',
        port: p,
        storage: path.join(dir, `replica-${i + 1}`),
        s3Endpoint: endpoint,
        peers: urls.join(','),
      });
      watch(`replica ${i + 1} (${urls[i]})`, proc);
    });
    for (const u of urls) await waitFor(`${u}/readyz`, 60_000);

    const conf = writeNginxConfig(
      path.join(dir, 'nginx'),
      `127.0.0.1:${port}`,
      ports.map((p) => `127.0.0.1:${p}`),
    );
    watch('nginx', startNginx(conf));
    const front = `http://127.0.0.1:${port}`;
    await waitFor(`${front}/v1/formats`, 20_000);
    process.stdout.write(`cluster ready: ${front}\n`);
  } catch (e) {
    process.stderr.write(`npm run cluster: ${(e as Error).message}\n`);
    await stop(1);
  }
}

await main();
