// libuv's thread pool for `pixtable serve`. Decodes and thumbnail encodes each hold one pool thread
// for their whole run, and Node's file operations (stat, realpath, reads of sources) queue for the
// same threads: with Node's default of 4 and four encodes running, a 404 waited seconds for one
// realpath. So the server runs with decode + encode concurrency + FILE_THREADS threads, and the
// queues (PIXTABLE_DECODE_*, PIXTABLE_ENCODE_*) never let image work take the last FILE_THREADS.
//
// The pool's size is read from UV_THREADPOOL_SIZE when Node first uses the pool, and Node's ESM
// loader uses it to read this very file, so setting the variable here is too late: the command
// starts itself once more with it set, and stays as a thin parent that forwards signals and the
// exit status. An operator who sets UV_THREADPOOL_SIZE gets no second process.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { loadConfig } from '../config/env.js';
import { serveEnv } from './serve.js';

/** Pool threads left to file operations however much image work runs. */
export const FILE_THREADS = 4;

/** libuv's upper bound on UV_THREADPOOL_SIZE. */
const UV_MAX = 1024;

/** Marks the restarted child, which stops when its parent is gone. */
const CHILD_MARK = 'PIXTABLE_THREADPOOL_CHILD';

export function poolSizeFor(decodeConcurrency: number, encodeConcurrency: number): number {
  return Math.min(UV_MAX, decodeConcurrency + encodeConcurrency + FILE_THREADS);
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The pool `pixtable <argv>` needs when it is a `serve` without UV_THREADPOOL_SIZE; undefined
 * otherwise, and for a command line or configuration main() refuses (it says why, in one process).
 */
export function wantedPoolSize(argv: readonly string[], env: Env): number | undefined {
  if (argv[0] !== 'serve' || env.UV_THREADPOOL_SIZE !== undefined || env[CHILD_MARK]) return undefined;
  try {
    const parsed = serveEnv(argv.slice(1));
    if (parsed.help) return undefined;
    const { config } = loadConfig({ ...env, ...parsed.env });
    return poolSizeFor(config.decode.concurrency ?? os.availableParallelism(), config.encode.concurrency);
  } catch {
    return undefined;
  }
}

/** Runs this command again with UV_THREADPOOL_SIZE=`size`; this process only relays. */
export function rerunWithPool(size: number): void {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    // the IPC channel closes when this process dies, however it dies (SIGKILL included)
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, UV_THREADPOOL_SIZE: String(size), [CHILD_MARK]: '1' },
    // its own process group: a terminal's Ctrl-C reaches it once, through the relay below
    detached: true,
  });
  const relay = (signal: NodeJS.Signals) => child.kill(signal);
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, relay);
  child.on('error', (e) => {
    process.stderr.write(`pixtable: cannot start the server process: ${e.message}\n`);
    process.exitCode = 70;
  });
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
  });
}

/** In the restarted child: stop (gracefully, as on SIGTERM) once the relaying parent is gone. */
export function followParent(env: Env = process.env): void {
  if (!env[CHILD_MARK] || !process.channel) return;
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
