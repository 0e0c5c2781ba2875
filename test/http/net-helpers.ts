// Real-socket helpers for the HTTP e2e tests: a server from startServer() on an ephemeral port,
// and a raw HTTP/1.1 client that sends the request target byte-for-byte (fetch and inject
// normalise "%2e%2e" away, which would hide exactly what the traversal tests check).
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, type RunningServer } from '../../src/http/server.js';
import { defaultConfig, type ServerConfig } from '../../src/config/env.js';

export async function start(
  overrides: Partial<ServerConfig> = {},
): Promise<RunningServer & { dir: string; done(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-e2e-'));
  const config = defaultConfig({
    storage: dir,
    port: 0,
    host: '127.0.0.1',
    logRequests: false,
    ...overrides,
  });
  const s = await startServer(config, { handleSignals: false, logger: false });
  return {
    ...s,
    dir,
    async done() {
      await s.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the path sent exactly as given. */
export function request(
  base: string,
  rawPath: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: rawPath,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Writes bytes on a plain TCP socket and collects everything until the server closes. */
export function rawExchange(base: string, send: string, opts: { keepOpenMs?: number } = {}): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    }, opts.keepOpenMs ?? 5000);
    sock.on('connect', () => sock.write(send));
    sock.on('data', (c) => chunks.push(c));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    sock.on('error', reject);
  });
}

export function pinned(s: RunningServer): number {
  return s.cache.stats().formats.reduce((n, f) => n + f.pinned, 0);
}

export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Child {
  proc: import('node:child_process').ChildProcess;
  url: string;
  pid: number;
  /** everything the child wrote to stdout/stderr so far */
  output(): string;
  /** resolves with the exit code (or signal name) */
  exited: Promise<number | string>;
}

/** Starts test/http/serve-child.ts as a real process configured by `env`; resolves once it listens. */
export async function spawnServer(env: Record<string, string>): Promise<Child> {
  const { spawn } = await import('node:child_process');
  const script = new URL('./serve-child.js', import.meta.url);
  const proc = spawn(process.execPath, [script.pathname], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((resolve) =>
    proc.on('exit', (code, sig) => resolve(code ?? sig ?? 'unknown')),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 15_000);
    const check = () => {
      const m = /LISTENING (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((c) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${c}) before listening:\n${out}`));
    });
  });
  return { proc, url, pid: proc.pid!, output: () => out, exited };
}
