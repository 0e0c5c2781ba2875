// The HTTP service, assembled: fastify on our own server (server-factory.ts), the hit shortcut
// in front of it (shortcut.ts), one error family (errors.ts), and the routes as plugins by
// concern (routes/). Nothing here answers a request itself.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { ServerConfig } from '../config/env.js';
import type { PixelCache } from './cache-api.js';
import { sharpEncode, type EncodeFn } from './encode.js';
import { clientErrorHandler, errorHandler, frameworkErrorHandler, notFoundHandler } from './errors.js';
import type { LaneStats } from './lane/index.js';
import { Metrics } from './metrics.js';
import { registerOpenApi } from './openapi.js';
import { RawResponses } from './raw-response.js';
import { forwardWrites } from './forward.js';
import { ReadThrough } from './read-through.js';
import { installRequestLog } from './request-log.js';
import { notAllowedRoutes } from './routes/not-allowed.js';
import { operationRoutes } from './routes/operations.js';
import { infoRoutes } from './routes/info.js';
import { pixelsRoutes } from './routes/pixels.js';
import type { RouteContext } from './routes/shared.js';
import { peerRoutes } from './peers.js';
import { sourceRoutes } from './routes/sources.js';
import { thumbnailRoutes } from './routes/thumbnails.js';
import { webRoutes } from './routes/web.js';
import { writerRoutes } from './routes/writer.js';
import { ServerFactory } from './server-factory.js';
import { Shortcut } from './shortcut.js';
import { signatureCheck } from './signed.js';
import { ThumbCache } from './thumbcache.js';
import { WorkerEntries } from './worker-entries.js';
import type { WriterLink } from './writer-link.js';

// Kept importable from here, where they used to live.
export { errorBody, toPixtableError } from './errors.js';

export interface BuildOptions {
  cache: PixelCache;
  config: ServerConfig;
  /** fastify logger option; default: JSON logs at config.logLevel. */
  logger?: boolean | object;
  /** Shared with the cache's onDecode (see startServer); created when absent. */
  metrics?: Metrics;
  /** Thumbnail encoder; default sharp via src/native/sharp.ts. */
  encode?: EncodeFn;
  /** Which process of `serve --workers N` this is (src/serve/); default one process doing all. */
  role?: AppRole;
}

/**
 * `single`: one process decodes, writes and serves. `writer`: decodes and writes for the workers,
 * on its private socket. `worker`: serves from its read-only cache, misses and writes go to the
 * writer.
 */
export type AppRole = { kind: 'single' } | { kind: 'writer' } | { kind: 'worker'; writer: WriterLink };

export interface AppState {
  /** false once shutdown started: /readyz answers 503 so load balancers drain us. */
  ready: boolean;
  thumbs: ThumbCache;
  metrics: Metrics;
  /** Responses the hit shortcut answered, the lane's included (tests check it is really taken). */
  readonly shortcutResponses: number;
  /** Of those, the ones written through the lane, straight to the socket (lane/). */
  readonly laneResponses: number;
  /** The lane's connection counts; undefined when it is off (PIXTABLE_FAST_LANE=false). */
  readonly lane: LaneStats | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    pixtable: AppState;
  }
}

/** Headers every pixels and thumbnail response carries when a CORS origin is configured. */
function corsHeaders(origin: string | undefined): string[] {
  if (!origin) return [];
  return [
    'Access-Control-Allow-Origin',
    origin,
    'Access-Control-Expose-Headers',
    'ETag, Content-Length, Content-Range, X-Image-Width, X-Image-Height, X-Row-Stride, X-Pixel-Format',
  ];
}

export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { cache, config } = opts;
  const metrics = opts.metrics ?? new Metrics();
  const thumbs = new ThumbCache(config.thumbCacheBytes);
  metrics.attach(cache, thumbs);
  const cors = corsHeaders(config.corsOrigin);
  const raw = new RawResponses(config.cacheControl, cors, cache);

  // The shortcut and the server exist before the app: fastify calls the server factory while it
  // builds itself. The getters read them only once requests are answered.
  const state: AppState = {
    ready: true,
    thumbs,
    metrics,
    get shortcutResponses() {
      return shortcut.responses;
    },
    get laneResponses() {
      return shortcut.laneResponses;
    },
    get lane() {
      return servers.lane;
    },
  };
  const shortcut = new Shortcut({
    cache,
    config,
    thumbs,
    raw,
    metrics,
    state,
    // fastify makes its logger inside Fastify(); request lines are written once it exists
    log: { info: (fields, msg) => app.log.info(fields, msg) },
  });
  const servers = new ServerFactory({ config, shortcut, metrics });

  const app = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
    // fastify's default is two lines per request; we write one (request-log.ts), or none under load.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    bodyLimit: config.maxUploadBytes,
    serverFactory: servers.create,
    // While draining, requests on open keep-alive connections are still answered (with
    // Connection: close) instead of fastify's own 503 body; new decodes are refused (SHUTTING_DOWN).
    return503OnClosing: false,
    // Closing is ours (drain.ts): fastify's idle-connection close would cut slow downloads.
    forceCloseConnections: false,
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    ajv: { customOptions: { coerceTypes: false } },
  });
  app.decorate('pixtable', state);
  // Handlers and hooks on the root, before any plugin: every route scope inherits them.
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  installRequestLog(app, metrics, config.logRequests);
  app.addHook('onClose', (_instance, done) => {
    state.ready = false;
    done();
  });
  await registerOpenApi(app, config.signingKeys.length > 0);

  const role = opts.role ?? { kind: 'single' };
  let entries: RouteContext['entries'] = new ReadThrough(cache, config.origin, state);
  let readiness: RouteContext['readiness'] = {};
  if (role.kind === 'worker') {
    const writer = role.writer;
    entries = new WorkerEntries(cache, writer, state);
    readiness = { writer: () => (writer.up ? undefined : 'writer unavailable') };
    forwardWrites(app, writer);
  }
  const routes: RouteContext = {
    cache,
    config,
    state,
    metrics,
    entries,
    readiness,
    raw,
    thumbs,
    encode: opts.encode ?? sharpEncode,
    cors,
    signed: signatureCheck(config.signingKeys),
  };
  await app.register(pixelsRoutes, routes);
  await app.register(thumbnailRoutes, routes);
  // before the web page, which serves GET /v1/sources itself only when nothing else does
  await app.register(sourceRoutes, routes);
  await app.register(infoRoutes, routes);
  await app.register(operationRoutes, routes);
  await app.register(peerRoutes, routes);
  await app.register(webRoutes, routes);
  if (role.kind === 'writer') await app.register(writerRoutes, routes);
  await app.register(notAllowedRoutes);
  return app;
}
