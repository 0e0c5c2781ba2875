// The HTTP service. Hot paths (raw pixels, thumbnail hits) take the reply over (`reply.hijack()`)
// and write Buffer views of the table mapping straight to the socket with a pre-built header
// list: one `writeHead` + one `end(slice)` for a whole entry, synchronous `write(row)` per row for
// a rectangle (Node corks the socket for the tick, so the rows leave as one gathered writev of
// mapping slices). Nothing is concatenated, copied or serialised per request on those paths.
import fs from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { ERRORS, PixtableError } from '../errors.js';
import {
  clientErrorHandler,
  errorHandler,
  frameworkErrorHandler,
  notFoundHandler,
  sendError,
} from './errors.js';
import { describeFormat, type Format } from '../formats.js';
import type { ImageView } from '../types.js';
import type { ServerConfig } from '../config/env.js';
import type { PixelCache } from './cache-api.js';
import { sharpEncode, loadSharp, type EncodeFn } from './encode.js';
import { keyFromUrl } from './keys.js';
import { chooseType, hasAlpha, MIME } from './negotiate.js';
import { ThumbCache, deriveEtag, encodedThumb, writeThumb, type EncodedThumb } from './thumbcache.js';
import { RawResponses } from './raw-response.js';
import type { LaneStats } from './lane.js';
import { Metrics } from './metrics.js';
import * as schemas from './schemas.js';
import { registerWebPage } from '../web/plugin.js';
import { Shortcut } from './shortcut.js';
import { ServerFactory } from './server-factory.js';
import { signatureCheck } from './signed.js';
import { ReadThrough } from './read-through.js';
import { parseTarget, targetOf, type Target } from './target.js';

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
}

export interface AppState {
  /** false once shutdown started: /readyz answers 503 so load balancers drain us. */
  ready: boolean;
  thumbs: ThumbCache;
  metrics: Metrics;
  /** Responses the hit shortcut answered, the lane's included (tests check it is really taken). */
  readonly shortcutResponses: number;
  /** Of those, the ones written through the lane, straight to the socket (lane.ts). */
  readonly laneResponses: number;
  /** The lane's connection counts; undefined when it is off (PIXTABLE_FAST_LANE=false). */
  readonly lane: LaneStats | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    pixtable: AppState;
  }
}

const SOURCES_PREFIX = '/v1/sources/';

export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { cache, config } = opts;
  const encode = opts.encode ?? sharpEncode;
  const metrics = opts.metrics ?? new Metrics();
  const thumbs = new ThumbCache(config.thumbCacheBytes);
  metrics.attach(cache, thumbs);

  const cacheControl = config.cacheControl;
  const cors: string[] = config.corsOrigin
    ? [
        'Access-Control-Allow-Origin',
        config.corsOrigin,
        'Access-Control-Expose-Headers',
        'ETag, Content-Length, Content-Range, X-Image-Width, X-Image-Height, X-Row-Stride, X-Pixel-Format',
      ]
    : [];
  const raw = new RawResponses(cacheControl, cors, cache);
  // The shortcut and the server exist before the app: fastify calls the server factory while it
  // builds itself. Their getters below read them only once requests are answered.
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
    // fastify's default is two lines per request; we write one (onResponse), or none under load.
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

  // ---------- errors ----------
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);

  // ---------- logging and metrics ----------
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.countRequest(route, request.method, reply.statusCode);
    if (config.logRequests) {
      request.log.info(
        {
          method: request.method,
          url: request.url,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
        },
        'request',
      );
    }
    done();
  });

  // ---------- signed URLs ----------
  const signed = signatureCheck(config.signingKeys);

  // Schemas are documentation (OpenAPI) and response serialisation; request parsing on the hot
  // routes is hand-written (stricter messages, no per-request validator run).
  const noValidation = { validatorCompiler: () => () => true };

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'pixtable',
        version: '1',
        description:
          'Decoded-image cache: raw pixels straight from memory-mapped tables, encoded thumbnails, source uploads. ' +
          'Every error body is {"error":{"code","message"}}; codes are listed in docs/errors.md.',
      },
      components: config.signingKeys.length
        ? { securitySchemes: { sig: { type: 'apiKey', in: 'query', name: 'sig' } } }
        : {},
    },
  });

  const entries = new ReadThrough(cache, config.origin, state);

  // ---------- raw pixels ----------
  app.route({
    method: 'GET',
    url: '/v1/pixels/:format/*',
    schema: schemas.pixels,
    ...noValidation,
    ...signed,
    handler(request, reply) {
      const t = pixelsTarget(request.raw);
      const q = request.query as Record<string, string | undefined>;
      return entries.load(t.formatName, t.key).then((view) => {
        raw.send(request.raw, reply.raw, view, q.rect, reply);
        return reply;
      });
    },
  });

  // ---------- thumbnails ----------
  const quality = config.thumbQuality;
  const qualityTag = quality === undefined ? '' : `-q${quality}`;
  async function encodeEntry(view: ImageView, type: keyof typeof MIME, etag: string): Promise<EncodedThumb> {
    const body = await encode(view, type, quality);
    return encodedThumb(body, etag, MIME[type], cacheControl, cors);
  }

  app.route({
    method: 'GET',
    url: '/v1/thumbnails/:format/*',
    schema: schemas.thumbnails,
    ...noValidation,
    ...signed,
    async handler(request, reply) {
      const target = thumbnailsTarget(request.raw);
      const q = request.query as Record<string, string | undefined>;
      const { type, negotiated } =
        target.thumb ??
        chooseType(q.type, request.headers.accept, config.thumbTypes, hasAlpha(target.format.pixelFormat));
      const view = await entries.load(target.formatName, target.key);
      let t: EncodedThumb;
      try {
        const etag = deriveEtag(view.etag, `${type}${qualityTag}`);
        const lruKey = `${view.etag}\u0000${type}`;
        t = thumbs.get(lruKey) ?? (await thumbs.getOrEncode(lruKey, () => encodeEntry(view, type, etag)));
      } finally {
        view.release();
      }
      reply.hijack();
      writeThumb(reply.raw, t, negotiated, request.headers['if-none-match']);
      return reply;
    },
  });

  /** What the shortcut parsed of a request, or the same parsed here (inject(), lane declines…). */
  const pixelsTarget = (req: http.IncomingMessage): Target => {
    const t = targetOf(req);
    return t !== undefined && t.route === 'pixels' ? t : parseTarget(req.url ?? '', 'pixels', cache);
  };
  const thumbnailsTarget = (req: http.IncomingMessage): Target => {
    const t = targetOf(req);
    return t !== undefined && t.route === 'thumbnails' ? t : parseTarget(req.url ?? '', 'thumbnails', cache);
  };

  // ---------- sources ----------
  await app.register(async (scope) => {
    // Uploads are opaque bytes whatever Content-Type says; the engine decides what they are.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      '*',
      { parseAs: 'buffer', bodyLimit: config.maxUploadBytes },
      (_req, body, done) => {
        done(null, body);
      },
    );
    const sourcesPrefixLength = SOURCES_PREFIX.length;
    scope.route({
      method: 'PUT',
      url: '/v1/sources/*',
      schema: schemas.putSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', sourcesPrefixLength);
        const body = request.body;
        if (!Buffer.isBuffer(body) || body.length === 0) throw new PixtableError('EMPTY_SOURCE');
        if (!state.ready) throw new PixtableError('SHUTTING_DOWN', 'uploads are refused while draining');
        let existed = false;
        try {
          existed = (await fs.stat(path.join(cache.sourcesDir, key))).isFile();
        } catch {
          existed = false;
        }
        const result = await cache.put(key, body);
        return reply.code(existed ? 200 : 201).send(result);
      },
    });
    scope.route({
      method: 'DELETE',
      url: '/v1/sources/*',
      schema: schemas.deleteSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', sourcesPrefixLength);
        if (!(await cache.delete(key))) throw new PixtableError('SOURCE_NOT_FOUND', key);
        return reply.code(204).send();
      },
    });
  });

  app.route({
    method: 'GET',
    url: '/v1/sources',
    schema: schemas.listSources,
    ...signed,
    async handler() {
      return { keys: await cache.listSources() };
    },
  });

  // ---------- formats ----------
  const formatsJson = JSON.stringify(cache.formats.map(describeFormat));
  app.route({
    method: 'GET',
    url: '/v1/formats',
    schema: schemas.formats,
    handler(_request, reply) {
      void reply.type('application/json; charset=utf-8').send(formatsJson);
    },
  });

  // ---------- operations ----------
  let health: { at: number; ok: boolean; checks: Record<string, string> } | undefined;
  async function checkHealth() {
    const checks: Record<string, string> = {};
    let ok = true;
    try {
      const m = await loadSharp();
      checks.sharp = `ok (libvips ${m.sharpVersions().vips ?? '?'})`;
    } catch (e) {
      ok = false;
      checks.sharp = `failed: ${(e as Error).message}`;
    }
    // Writable = we can create and remove a file, not just that the mode bits say so (a full or
    // read-only-remounted volume passes access(W_OK)).
    const probe = path.join(cache.storage, `.healthz-${process.pid}`);
    try {
      await fs.writeFile(probe, 'ok');
      await fs.rm(probe, { force: true });
      checks.storage = 'ok (writable)';
    } catch (e) {
      if (config.readOnly) checks.storage = 'read-only (as configured)';
      else {
        ok = false;
        checks.storage = `failed: ${(e as Error).message}`;
      }
    }
    return { ok, checks };
  }
  app.route({
    method: 'GET',
    url: '/healthz',
    schema: schemas.health,
    async handler(_request, reply) {
      const now = Date.now();
      // At most one probe per second however often the orchestrator asks.
      if (!health || now - health.at > 1000) health = { at: now, ...(await checkHealth()) };
      return reply
        .code(health.ok ? 200 : 503)
        .send({ status: health.ok ? 'ok' : 'failing', checks: health.checks });
    },
  });
  app.route({
    method: 'GET',
    url: '/readyz',
    schema: schemas.ready,
    handler(_request, reply) {
      if (!state.ready) {
        void reply.code(503).header('Retry-After', '1').send({ status: 'shutting down' });
        return;
      }
      void reply.send({ status: 'ready' });
    },
  });
  app.route({
    method: 'GET',
    url: '/metrics',
    schema: { hide: true },
    async handler(_request, reply) {
      const text = await metrics.text();
      return reply.type(metrics.contentType).send(text);
    },
  });
  app.route({
    method: 'GET',
    url: '/openapi.json',
    schema: { hide: true },
    handler(_request, reply) {
      void reply.send(app.swagger());
    },
  });
  // The web page (src/web): gallery and raw-pixel viewer at GET /. When its files are not
  // shipped (a trimmed install), a small built-in page still tells a person what to do.
  try {
    await registerWebPage(app, { cache });
  } catch (e) {
    app.log.warn({ err: (e as Error).message }, 'web page files missing; serving the built-in index');
    app.route({
      method: 'GET',
      url: '/',
      schema: { hide: true },
      handler(_request, reply) {
        void reply.type('text/html; charset=utf-8').send(indexPage(cache.formats));
      },
    });
  }

  // ---------- 405 for known paths ----------
  const allowed: Record<string, string[]> = {
    '/v1/formats': ['GET', 'HEAD'],
    '/v1/pixels/:format/*': ['GET', 'HEAD'],
    '/v1/thumbnails/:format/*': ['GET', 'HEAD'],
    '/v1/sources': ['GET', 'HEAD'],
    '/v1/sources/*': ['PUT', 'DELETE'],
    '/healthz': ['GET', 'HEAD'],
    '/readyz': ['GET', 'HEAD'],
    '/metrics': ['GET', 'HEAD'],
  };
  const all = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH'];
  for (const [url, methods] of Object.entries(allowed)) {
    const others = all.filter((m) => !methods.includes(m));
    const allow = methods.join(', ');
    app.route({
      method: others,
      url,
      schema: { hide: true },
      handler(request, reply) {
        reply.header('Allow', allow);
        sendError(
          reply,
          'METHOD_NOT_ALLOWED',
          `${ERRORS.METHOD_NOT_ALLOWED.message}: ${request.method}; allowed: ${allow}`,
        );
      },
    });
  }

  app.addHook('onClose', (_instance, done) => {
    state.ready = false;
    done();
  });

  return app;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function indexPage(formats: readonly Format[]): string {
  const rows = formats
    .map(
      (f) =>
        `<tr><td>${escapeHtml(f.name)}</td><td>${f.width}×${f.height}</td><td>${f.fit}</td><td>${f.pixelFormat}</td><td>${f.stride}</td></tr>`,
    )
    .join('');
  return `<!doctype html><meta charset="utf-8"><title>pixtable</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}code{background:#f2f2f2;padding:0 .2em}td,th{padding:.1rem .6rem;text-align:left}</style>
<h1>pixtable</h1>
<p>Decoded-image cache. Upload a source, then ask for pixels or a thumbnail in any format below.</p>
<pre>curl -T cat.jpg http://HOST/v1/sources/photos/cat.jpg
curl -o t.webp -H 'Accept: image/webp' http://HOST/v1/thumbnails/${escapeHtml(formats[0]?.name ?? 'thumb-64')}/photos/cat.jpg
curl -D- -o cat.rgba http://HOST/v1/pixels/${escapeHtml(formats[0]?.name ?? 'thumb-64')}/photos/cat.jpg</pre>
<table><tr><th>format</th><th>box</th><th>fit</th><th>pixels</th><th>stride</th></tr>${rows}</table>
<p>API: <a href="/openapi.json">/openapi.json</a> · <a href="/v1/formats">/v1/formats</a> · <a href="/v1/sources">/v1/sources</a> · <a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p>`;
}
