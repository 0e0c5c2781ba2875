// `pixtable serve --workers N`: the supervisor. It starts one writer (the only process that
// decodes, takes uploads and deletes, appends to the indexes and holds the writer lock) and N
// workers that share the public port through Node's cluster, each answering hits from its own
// mappings of the same table files — one copy of the pixels in the page cache for all of them.
// It restarts a process that dies, tells the workers whether the writer is up, runs the barrier
// that makes a write visible through every worker before it is answered, sums the metrics, and
// on SIGTERM/SIGINT drains the workers first and the writer last.
import cluster, { type Worker } from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerConfig } from '../config/env.js';
import { SupervisorMetrics } from '../http/metrics.js';
import { claimPort, listenMode } from './distribution.js';
import { isPixtableMessage, type ChildMessage, type Role, type SupervisorMessage } from './messages.js';

/** A process the supervisor keeps running: its role, worker number, and the current incarnation. */
interface Place {
  role: Role;
  /** "0" for the writer, "1".."N" for workers. */
  worker: string;
  proc: Worker | undefined;
  ready: boolean;
  startedAt: number;
  /** ms before the next restart; doubles while the process keeps dying young. */
  backoff: number;
  /** Settles the current incarnation's start with the URL it listens on. */
  readyResolve?: (url: string) => void;
}

/** A refresh barrier in progress: the worker that asked, and who still has to answer. */
interface Barrier {
  from: Worker;
  id: number;
  waiting: Set<number>;
  timer: NodeJS.Timeout;
}

const MIN_BACKOFF = 100;
const MAX_BACKOFF = 5_000;
/** A process that lived this long before dying is restarted at once. */
const HEALTHY_MS = 10_000;
/** A process that does not send its metrics within this is left out of the scrape. */
const COLLECT_MS = 2_000;
/** A worker that does not acknowledge a refresh within this is not waited for. */
const BARRIER_MS = 1_000;

function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}) {
  const levels = { info: 30, warn: 40, error: 50 };
  // the same JSON line shape as the processes' pino logs
  process.stdout.write(
    `${JSON.stringify({ level: levels[level], time: Date.now(), pid: process.pid, role: 'supervisor', ...fields, msg })}\n`,
  );
}

export interface SupervisorOptions {
  config: ServerConfig;
  /** `serve`'s own arguments, passed to every process it starts. */
  args: readonly string[];
}

/**
 * Starts the writer and the workers. Resolves to 'running' once every one listens, or to the exit
 * code of the first that failed to start (it has said why on stderr); then all are stopped.
 */
export async function superviseServe(o: SupervisorOptions): Promise<number | 'running'> {
  const { config } = o;
  const socketPath = path.join(
    os.tmpdir(),
    `pixtable-${process.pid}-${crypto.randomBytes(4).toString('hex')}.sock`,
  );
  const metrics = new SupervisorMetrics();
  // The kernel hands connections to the workers (a socket each with reuseport, or one they all
  // accept on) unless round robin is asked for: with the supervisor accepting and passing each
  // connection on, a connection passed to a worker that had just died was left hanging, never
  // answered nor closed (Node's hand-off waits for an acknowledgement that never comes).
  // Measured in bench/http.ts (`--workers 2` rows); see distribution.ts.
  const mode = listenMode(config.distribution);
  cluster.schedulingPolicy = mode === 'round-robin' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  // every worker binds the port itself: one real port for all, and nobody else on it
  const port = mode === 'reuseport' ? await claimPort(config.host, config.port) : config.port;
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('../cli/main.js', import.meta.url)),
    args: ['serve', ...o.args],
  });
  const places: Place[] = [];
  const writer: Place | undefined = config.readOnly
    ? undefined
    : { role: 'writer', worker: '0', proc: undefined, ready: false, startedAt: 0, backoff: MIN_BACKOFF };
  for (let i = 1; i <= config.workers; i++) {
    places.push({
      role: 'worker',
      worker: String(i),
      proc: undefined,
      ready: false,
      startedAt: 0,
      backoff: MIN_BACKOFF,
    });
  }
  const all = writer ? [writer, ...places] : places;
  let shutting = false;
  let starting = true;
  const barriers = new Map<number, Barrier>();
  let nextBarrier = 1;
  let startFailed: ((code: number) => void) | undefined;

  const send = (w: Worker | undefined, m: SupervisorMessage) => {
    if (w?.isConnected()) w.send(m);
  };
  const workersUp = () => places.filter((p) => p.ready && p.proc?.isConnected());
  const writerUp = () => writer === undefined || writer.ready;
  const broadcastWriter = () => {
    metrics.writer(writer?.ready ?? false);
    for (const p of places) send(p.proc, { pixtable: 'writer', up: writerUp() });
  };

  const finishBarrier = (b: Barrier, id: number) => {
    clearTimeout(b.timer);
    barriers.delete(id);
    send(b.from, { pixtable: 'synced', id: b.id });
  };

  /** Metrics being collected from the processes that are up, by request id. */
  const collections = new Map<number, { parts: unknown[][]; waiting: Set<number>; done: () => void }>();
  let nextCollection = 1;
  const collectMetrics = async (): Promise<string> => {
    const id = nextCollection++;
    const up = all.filter((p) => p.ready && p.proc?.isConnected()).map((p) => p.proc!);
    const parts: unknown[][] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), COLLECT_MS);
      const done = () => {
        clearTimeout(timer);
        collections.delete(id);
        resolve();
      };
      collections.set(id, { parts, waiting: new Set(up.map((w) => w.id)), done });
      if (up.length === 0) done();
      for (const w of up) send(w, { pixtable: 'registry', id });
    });
    return metrics.text(parts);
  };

  const onMessage = (place: Place, w: Worker, m: ChildMessage) => {
    switch (m.pixtable) {
      case 'ready':
        place.ready = true;
        if (place.role === 'writer') broadcastWriter();
        else send(w, { pixtable: 'writer', up: writerUp() });
        place.readyResolve?.(m.url);
        break;
      case 'metrics':
        collectMetrics().then(
          (text) => send(w, { pixtable: 'metrics', id: m.id, text }),
          (e: unknown) => send(w, { pixtable: 'metrics', id: m.id, error: (e as Error).message }),
        );
        break;
      case 'sync': {
        const id = nextBarrier++;
        const up = workersUp();
        const b: Barrier = {
          from: w,
          id: m.id,
          waiting: new Set(up.map((p) => p.proc!.id)),
          timer: setTimeout(() => {
            log('warn', 'workers did not apply a write in time; answering anyway', {
              waiting: b.waiting.size,
            });
            finishBarrier(b, id);
          }, BARRIER_MS),
        };
        barriers.set(id, b);
        if (b.waiting.size === 0) finishBarrier(b, id);
        for (const p of up) send(p.proc, { pixtable: 'refresh', id });
        break;
      }
      case 'registry': {
        const c = collections.get(m.id);
        if (!c) break;
        c.parts.push(m.metrics);
        c.waiting.delete(w.id);
        if (c.waiting.size === 0) c.done();
        break;
      }
      case 'refreshed': {
        const b = barriers.get(m.id);
        if (!b) break;
        b.waiting.delete(w.id);
        if (b.waiting.size === 0) finishBarrier(b, m.id);
        break;
      }
    }
  };

  const fork = (place: Place): Promise<string> => {
    const w = cluster.fork({
      PIXTABLE_SERVE_ROLE: place.role,
      // empty: --read-only, no writer; each worker serves what is cached, as one process would
      PIXTABLE_SERVE_SOCKET: writer ? socketPath : '',
      PIXTABLE_SERVE_WORKER: place.worker,
      // over PORT and --port alike (the args it was given come again): port 0 claimed once
      PIXTABLE_SERVE_PORT: String(port),
      // the relay of src/cli/threadpool.ts is this process's parent, not theirs
      PIXTABLE_THREADPOOL_CHILD: '',
    });
    place.proc = w;
    place.ready = false;
    place.startedAt = Date.now();
    const ready = new Promise<string>((resolve) => {
      place.readyResolve = resolve;
    });
    w.on('message', (m: unknown) => {
      if (isPixtableMessage<ChildMessage>(m)) onMessage(place, w, m);
    });
    w.on('exit', (code, signal) => {
      if (place.proc !== w) return;
      place.ready = false;
      place.proc = undefined;
      // neither a refresh barrier nor a scrape waits for the dead
      for (const [id, b] of barriers) {
        if (b.waiting.delete(w.id) && b.waiting.size === 0) finishBarrier(b, id);
      }
      for (const c of collections.values()) if (c.waiting.delete(w.id) && c.waiting.size === 0) c.done();
      if (place.role === 'writer') broadcastWriter();
      if (shutting) return;
      if (starting) {
        // one that ended before it listened failed, whatever its status says
        startFailed?.(code ? code : 1);
        return;
      }
      const lived = Date.now() - place.startedAt;
      place.backoff = lived > HEALTHY_MS ? MIN_BACKOFF : Math.min(MAX_BACKOFF, place.backoff * 2);
      const delay = lived > HEALTHY_MS ? 0 : place.backoff;
      log('warn', `${place.role} died; restarting`, {
        worker: place.worker,
        pid: w.process.pid,
        code,
        signal,
        inMs: delay,
      });
      metrics.restarted(place.role);
      setTimeout(() => {
        if (!shutting) void fork(place);
      }, delay).unref();
    });
    return ready;
  };

  const stopAll = async (reason: string): Promise<void> => {
    shutting = true;
    log('info', 'shutting down: draining workers, then the writer', { reason });
    const drain = async (ps: Place[]) => {
      const exits = ps
        .filter((p) => p.proc)
        .map(
          (p) =>
            new Promise<void>((resolve) => {
              const w = p.proc!;
              if (w.isDead()) return resolve();
              w.once('exit', () => resolve());
              send(w, { pixtable: 'drain' });
              // the process has its own grace period; this only catches one that hangs
              setTimeout(() => w.process.kill('SIGKILL'), config.shutdownTimeoutMs + 5_000).unref();
            }),
        );
      await Promise.all(exits);
    };
    await drain(places);
    if (writer) await drain([writer]);
    fs.rmSync(socketPath, { force: true });
  };

  const failed = new Promise<number>((resolve) => {
    startFailed = resolve;
  });
  const started = (async () => {
    if (writer) await fork(writer);
    return Promise.all(places.map((p) => fork(p)));
  })();
  const first = await Promise.race([started, failed]);
  if (typeof first === 'number') {
    await stopAll('a process failed to start');
    return first;
  }
  starting = false;
  log('info', 'pixtable listening', {
    url: first[0],
    storage: config.storage,
    workers: places.length,
    writer: writer?.proc?.process.pid,
    pids: all.map((p) => p.proc?.process.pid),
  });
  const onSignal = (sig: NodeJS.Signals) => {
    if (shutting) return;
    stopAll(sig).then(
      () => {
        log('info', 'stopped');
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return 'running';
}
