// Process entry for `pixtable serve`: open the cache, listen, and shut down gracefully on
// SIGTERM/SIGINT — readiness goes 503, the listener stops accepting, in-flight responses finish
// (bounded by PIXTABLE_SHUTDOWN_TIMEOUT_MS), then the cache closes and flushes its index.
import type { FastifyInstance } from 'fastify';
import { ImageCache } from '../cache.js';
import type { ServerConfig } from '../config/env.js';
import { openOptions } from '../config/open-options.js';
import { buildApp, type AppRole } from './app.js';
import { Metrics } from './metrics.js';

export interface RunningServer {
  app: FastifyInstance;
  cache: ImageCache;
  /** Bound address, e.g. http://127.0.0.1:8080 */
  url: string;
  /** Graceful stop; resolves when the cache is closed. Idempotent. */
  stop(reason?: string): Promise<void>;
}

export interface StartOptions {
  /** Stop on SIGTERM/SIGINT and exit (default true). */
  handleSignals?: boolean;
  logger?: boolean | object;
  /** A process of `serve --workers N` (src/serve/): default one process doing everything. */
  role?: AppRole;
  /** Listen on this Unix socket instead of config.host/port (the writer of `--workers N`). */
  socketPath?: string;
  metrics?: Metrics;
  /**
   * Listen on a socket of this process's own with SO_REUSEPORT (a worker of `--workers N` with
   * PIXTABLE_DISTRIBUTION=reuseport; src/serve/distribution.ts). Default false.
   */
  reusePort?: boolean;
  /** Log the `pixtable listening` line (default true; the supervisor of --workers N logs its own). */
  announce?: boolean;
}

export async function startServer(config: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const metrics = opts.metrics ?? new Metrics();
  // The engine logs through this until the app's pino logger exists, then through pino (JSON).
  let log: { warn(o: object, m: string): void; info(o: object, m: string): void } | undefined;
  const logger = {
    warn: (msg: string, fields?: Record<string, unknown>) =>
      log ? log.warn(fields ?? {}, msg) : console.warn(msg, fields ?? ''),
    info: (msg: string, fields?: Record<string, unknown>) => log?.info(fields ?? {}, msg),
  };
  const cache = await ImageCache.open(openOptions(config, { onDecode: metrics.onDecode, logger }));
  let app: FastifyInstance;
  try {
    app = await buildApp({
      cache,
      config,
      metrics,
      ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
      ...(opts.role ? { role: opts.role } : {}),
    });
    log = app.log;
    // exclusive: a process of a cluster listens on its own socket, not through the supervisor
    if (opts.socketPath !== undefined) await app.listen({ path: opts.socketPath, exclusive: true });
    else if (opts.reusePort === true) {
      // `reusePort` is Node ≥ 22.12's (distribution.ts checks); fastify hands the options to
      // net.Server.listen as they are
      await app.listen({ port: config.port, host: config.host, exclusive: true, reusePort: true } as {
        port: number;
        host: string;
      });
    } else await app.listen({ port: config.port, host: config.host });
  } catch (e) {
    await cache.close();
    throw e;
  }
  const addr = app.server.address();
  const url =
    typeof addr === 'object' && addr
      ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
      : String(addr);

  let stopping: Promise<void> | undefined;
  const stop = (reason = 'stop'): Promise<void> => {
    stopping ??= (async () => {
      app.log.info({ reason }, 'shutting down: draining in-flight requests');
      app.pixtable.ready = false;
      // Connections still busy after the grace period are cut, so a stuck client cannot hold
      // the process (and the writer lock) forever.
      const timer = setTimeout(() => {
        app.log.warn('shutdown grace period over; closing remaining connections');
        app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      timer.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
        await cache.close();
        app.log.info('stopped; index flushed');
      }
    })();
    return stopping;
  };

  if (opts.handleSignals !== false) {
    const onSignal = (sig: NodeJS.Signals) => {
      stop(sig).then(
        () => process.exit(0),
        (e: unknown) => {
          app.log.error({ err: e }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  if (opts.announce !== false) {
    app.log.info(
      { url, storage: cache.storage, formats: cache.formats.map((f) => f.name) },
      'pixtable listening',
    );
  }
  return { app, cache, url, stop };
}
