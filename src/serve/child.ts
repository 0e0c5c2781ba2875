// One process started by the supervisor of `pixtable serve --workers N` (supervisor.ts): the
// writer (the only process that decodes, takes uploads and deletes, and holds the writer lock;
// it listens on a private Unix socket) or a worker (a read-only cache and the fast lane on the
// shared public port; misses and writes go to the writer). It runs the same server as a single
// process, in its role, and talks to the supervisor over the cluster's IPC channel.
import fs from 'node:fs';
import type { ServerConfig } from '../config/env.js';
import { PixtableError } from '../errors.js';
import { Metrics } from '../http/metrics.js';
import { startServer, type RunningServer } from '../http/server.js';
import { WriterLink } from '../http/writer-link.js';
import { listenMode } from './distribution.js';
import { isPixtableMessage, type ChildMessage, type Role, type SupervisorMessage } from './messages.js';

/** Requests to the supervisor and their answers, matched by id. */
class SupervisorChannel {
  private nextId = 1;
  private readonly pending = new Map<number, (m: SupervisorMessage) => void>();

  send(m: ChildMessage): void {
    process.send?.(m);
  }

  /** Sends a request; resolves with the answer carrying its id, or fails after `ms`. */
  ask(kind: 'metrics' | 'sync', ms: number): Promise<SupervisorMessage> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PixtableError('INTERNAL', `the supervisor did not answer ${kind} within ${ms} ms`));
      }, ms);
      this.pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.send({ pixtable: kind, id });
    });
  }

  /** An answer to one of ours; false for anything else. */
  answered(m: SupervisorMessage): boolean {
    if (m.pixtable !== 'metrics' && m.pixtable !== 'synced') return false;
    const done = this.pending.get(m.id);
    this.pending.delete(m.id);
    done?.(m);
    return true;
  }
}

export async function runServeChild(
  config: ServerConfig,
  role: Role,
  socketPath: string,
  worker: string,
): Promise<RunningServer> {
  const channel = new SupervisorChannel();
  const metrics = new Metrics({ role, worker });
  metrics.reportToCluster(async () => {
    const m = await channel.ask('metrics', 10_000);
    if (m.pixtable !== 'metrics' || m.text === undefined) {
      throw new PixtableError('INTERNAL', `metrics: ${m.pixtable === 'metrics' ? m.error : 'no answer'}`);
    }
    return m.text;
  });
  let link: WriterLink | undefined;
  let server: RunningServer;
  // the supervisor decided the same from the same config (and gave us the port it claimed)
  const reusePort = listenMode(config.distribution) === 'reuseport';
  if (role === 'writer') {
    // the supervisor made the path for this server alone; a writer that died left it behind
    fs.rmSync(socketPath, { force: true });
    server = await startServer(config, { role: { kind: 'writer' }, socketPath, metrics, announce: false });
  } else if (socketPath === '') {
    // --read-only --workers N: no writer, every worker a read-only server as with one process
    server = await startServer({ ...config, readOnly: true }, { metrics, announce: false, reusePort });
  } else {
    const writer = new WriterLink({
      socketPath,
      timeoutMs: config.requestTimeoutMs,
      sync: async () => {
        await channel.ask('sync', 5_000);
      },
    });
    link = writer;
    // a worker never writes: without the lock, beside the writer, its pins in the reader table
    server = await startServer(
      { ...config, readOnly: true },
      {
        role: { kind: 'worker', writer },
        metrics,
        announce: false,
        reusePort,
      },
    );
  }
  const stop = (reason: string) => {
    server.stop(reason).then(
      () => {
        link?.close();
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on('message', (m: unknown) => {
    if (!isPixtableMessage<SupervisorMessage>(m) || channel.answered(m)) return;
    switch (m.pixtable) {
      case 'writer':
        if (link) link.up = m.up;
        if (m.up) server.cache.refresh(); // a new writer may have rewritten the indexes
        break;
      case 'registry': {
        const id = m.id;
        metrics.json().then(
          (json) => channel.send({ pixtable: 'registry', id, metrics: json }),
          () => channel.send({ pixtable: 'registry', id, metrics: [] }),
        );
        break;
      }
      case 'refresh':
        server.cache.refresh();
        channel.send({ pixtable: 'refreshed', id: m.id });
        break;
      case 'drain':
        stop('drain');
        break;
    }
  });
  // The supervisor is gone (killed): nobody restarts or drains us, so we drain ourselves.
  process.on('disconnect', () => stop('supervisor gone'));
  channel.send({ pixtable: 'ready', url: server.url });
  return server;
}
