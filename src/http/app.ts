// The HTTP service. Hot paths (raw pixels, thumbnail hits) take the reply over (`reply.hijack()`)
// and write Buffer views of the table mapping straight to the socket with a pre-built header
// list: one `writeHead` + one `end(slice)` for a whole entry, synchronous `write(row)` per row for
// a rectangle (Node corks the socket for the tick, so the rows leave as one gathered writev of
// mapping slices). Nothing is concatenated, copied or serialised per request on those paths.
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import swagger from '@fastify/swagger';
import { ERRORS, PixtableError, isPixtableError } from '../errors.js';
import {
  clientErrorHandler,
  errorHandler,
  frameworkErrorHandler,
  notFoundHandler,
  sendError,
} from './errors.js';
import { describeFormat, type Format } from '../formats.js';
import type { EntryRef, ImageView } from '../types.js';
import type { ServerConfig } from '../config/env.js';
import type { PixelCache } from './cache-api.js';
import { sharpEncode, loadSharp, type EncodeFn } from './encode.js';
import { keyFromUrl } from './keys.js';
import { chooseType, MIME } from './negotiate.js';
import { verifyUrl } from './sign.js';
import { fetchFromOrigin } from './origin.js';
import {
  ThumbCache,
  deriveEtag,
  encodedThumb,
  sendThumb,
  writeThumb,
  type EncodedThumb,
} from './thumbcache.js';
import { RawResponses } from './raw-response.js';
import { BY_ACCEPT, HotUrls, scanHeaders, type FastHeaders, type Hot } from './hot.js';
import { installLane, type LaneOut, type LaneRequest, type LaneStats } from './lane.js';
import { Metrics } from './metrics.js';
import * as schemas from './schemas.js';
import { registerWebPage } from '../web/plugin.js';
import { makeDrainable } from './drain.js';

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
  /** Responses served by the fast path, lane included (tests check it is really taken). */
  fastResponses: number;
  /** Of those, the ones the fast lane wrote straight to the socket (lane.ts). */
  laneResponses: number;
  /** The fast lane's connection counts; undefined when it is off (PIXTABLE_FAST_LANE=false). */
  lane: LaneStats | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    pixtable: AppState;
  }
}

const PIXELS_PREFIX = '/v1/pixels/';
const THUMBS_PREFIX = '/v1/thumbnails/';
const SOURCES_PREFIX = '/v1/sources/';
const HAS_ALPHA = new Set(['rgba8', 'rgba8-premultiplied', 'bgra8-premultiplied']);

/** Memory for the fast path's remembered URLs (hot.ts): about 16 000 typical targets. */
const HOT_URL_BYTES = 4 << 20;
const EMPTY = Buffer.alloc(0);

/** Splits `/<prefix><format>/<key...>` (raw, encoded) into the format name and decoded key. */
function formatAndKey(rawUrl: string, prefixLength: number): { formatName: string; key: string } {
  const slash = rawUrl.indexOf('/', prefixLength);
  const q = rawUrl.indexOf('?');
  if (slash < 0 || (q >= 0 && slash > q))
    throw new PixtableError('INVALID_KEY', 'the URL has no key after the format');
  let formatName: string;
  try {
    formatName = decodeURIComponent(rawUrl.slice(prefixLength, slash));
  } catch {
    throw new PixtableError('UNKNOWN_FORMAT', 'malformed percent-encoding in the format name');
  }
  return { formatName, key: keyFromUrl(rawUrl, slash + 1) };
}

export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { cache, config } = opts;
  const encode = opts.encode ?? sharpEncode;
  const metrics = opts.metrics ?? new Metrics();
  const thumbs = new ThumbCache(config.thumbCacheBytes);
  metrics.attach(cache, thumbs);

  // Set further down, once the routes' state exists; the server is created first.
  const fast: {
    path?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
    lane?: (req: LaneRequest, out: LaneOut) => boolean;
  } = {};
  let laneStats: LaneStats | undefined;
  const app = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
    // fastify's default is two lines per request; we write one (onResponse), or none under load.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    bodyLimit: config.maxUploadBytes,
    // Our own server so Node checks header/request deadlines often enough for them to mean
    // something (its default sweep runs every 30 s, which would let a 10 s limit last 40 s).
    serverFactory: (handler) => {
      const server = http.createServer(
        {
          requestTimeout: config.requestTimeoutMs,
          headersTimeout: config.headersTimeoutMs,
          keepAliveTimeout: config.keepAliveTimeoutMs,
          connectionsCheckingInterval: Math.min(
            30_000,
            Math.max(50, Math.floor(config.headersTimeoutMs / 4)),
          ),
        },
        (req, res) => {
          if (drain.draining) res.shouldKeepAlive = false;
          // Hits of the hot routes are answered here, before fastify builds request/reply
          // objects and runs its router (see fast.path); everything else goes to fastify.
          if (fast.path === undefined || !fast.path(req, res)) handler(req, res);
        },
      );
      const drain = makeDrainable(server);
      // Socket inactivity: also ends responses to clients that stopped reading (releasing pins).
      server.setTimeout(config.idleTimeoutMs);
      // Hits straight from the socket, before Node's HTTP machinery (lane.ts). Requests the lane
      // does not answer reach the handler below (fast.path, then fastify) one at a time, or with
      // the connection when they are outside the lane's grammar.
      if (config.fastLane) {
        const lane = (laneStats = installLane(server, {
          handle: (req, out) => fast.lane !== undefined && fast.lane(req, out),
          open: () => !drain.draining,
          keepAliveTimeoutMs: config.keepAliveTimeoutMs,
          idleTimeoutMs: config.idleTimeoutMs,
          maxHeaderBytes: http.maxHeaderSize,
          requestIds: config.logRequests,
          onError: (err) => app.log.error({ err }, 'fast lane: answering a request failed'),
        }));
        metrics.attachLane({
          responses: () => state.laneResponses,
          delegated: () => lane.delegated,
          handovers: () => lane.handovers,
        });
      }
      return server;
    },
    // While draining, requests on open keep-alive connections are still answered (with
    // Connection: close) instead of fastify's own 503 body; new decodes are refused (SHUTTING_DOWN).
    return503OnClosing: false,
    // Closing is ours (drain.ts): fastify's idle-connection close would cut slow downloads.
    forceCloseConnections: false,
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    ajv: { customOptions: { coerceTypes: false } },
  });
  const state: AppState = {
    ready: true,
    thumbs,
    metrics,
    fastResponses: 0,
    laneResponses: 0,
    lane: laneStats,
  };
  app.decorate('pixtable', state);

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
  const signed =
    config.signingKeys.length > 0
      ? {
          onRequest: (request: FastifyRequest, _reply: FastifyReply, done: (e?: Error) => void) => {
            try {
              verifyUrl(request.raw.url ?? '', config.signingKeys, Date.now());
              done();
            } catch (e) {
              done(e as Error);
            }
          },
        }
      : {};

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

  // ---------- loading entries ----------
  const originFetches = new Map<string, Promise<void>>();
  async function fetchOrigin(key: string): Promise<void> {
    let p = originFetches.get(key);
    if (!p) {
      const o = config.origin;
      if (!o) throw new PixtableError('SOURCE_NOT_FOUND', key);
      p = (async () => {
        const bytes = await fetchFromOrigin(o, key);
        await cache.put(key, bytes);
      })().finally(() => originFetches.delete(key));
      originFetches.set(key, p);
    }
    return p;
  }

  async function load(formatName: string, key: string): Promise<ImageView> {
    // A decode can take seconds; during shutdown only hits are served so draining stays short.
    if (!state.ready) throw new PixtableError('SHUTTING_DOWN', 'misses are not decoded while draining');
    try {
      return await cache.get(formatName, key);
    } catch (e) {
      if (!config.origin || !isPixtableError(e) || e.code !== 'SOURCE_NOT_FOUND') throw e;
      await fetchOrigin(key);
      return cache.get(formatName, key);
    }
  }

  function lookupFormat(name: string): Format {
    return cache.format(name); // throws UNKNOWN_FORMAT
  }

  // ---------- raw pixels ----------
  const pixelsPrefixLength = PIXELS_PREFIX.length;
  app.route({
    method: 'GET',
    url: '/v1/pixels/:format/*',
    schema: schemas.pixels,
    ...noValidation,
    ...signed,
    handler(request, reply) {
      const { formatName, key } = formatAndKey(request.raw.url ?? '', pixelsPrefixLength);
      lookupFormat(formatName);
      const q = request.query as Record<string, string | undefined>;
      const hit = cache.peek(formatName, key);
      if (hit) {
        raw.send(request.raw, reply.raw, hit, q.rect, reply);
        return reply;
      }
      return load(formatName, key).then((view) => {
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

  const thumbsPrefixLength = THUMBS_PREFIX.length;
  app.route({
    method: 'GET',
    url: '/v1/thumbnails/:format/*',
    schema: schemas.thumbnails,
    ...noValidation,
    ...signed,
    async handler(request, reply) {
      const { formatName, key } = formatAndKey(request.raw.url ?? '', thumbsPrefixLength);
      const format = lookupFormat(formatName);
      const q = request.query as Record<string, string | undefined>;
      const { type, negotiated } = chooseType(
        q.type,
        request.headers.accept,
        config.thumbTypes,
        HAS_ALPHA.has(format.pixelFormat),
      );
      const view = cache.peek(formatName, key) ?? (await load(formatName, key));
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

  // ---------- fast path ----------
  // Hits of whole entries and cached thumbnails skip fastify: no request/reply objects, router,
  // hooks or per-request child logger — at 16 KiB bodies those cost more than the response itself.
  // A URL answered once is remembered (hot.ts): the next hit is a lookup by the raw target and
  // `cache.current(ref)`. Anything the fast path does not handle completely (misses, Range, ?rect,
  // errors, bad keys) returns false and takes the fastify route, which produces the same bytes and
  // every error.
  const pixelsCounter = metrics.route('/v1/pixels/:format/*');
  const thumbsCounter = metrics.route('/v1/thumbnails/:format/*');
  const signing = config.signingKeys.length > 0;
  const logRequests = config.logRequests;
  const log = app.log;
  const hot = new HotUrls(HOT_URL_BYTES);
  /** Answers from a Hot whose ref the caller just found current (`t`: its thumbnail encoding). */
  function answer(
    res: http.ServerResponse,
    h: Hot,
    t: EncodedThumb | undefined,
    isHead: boolean,
    inm: string | undefined,
  ): number {
    if (t !== undefined) return writeThumb(res, t, h.vary, inm);
    return raw.writeHit(res, h, h.ref, isHead, inm);
  }

  /**
   * The remembered answer to `url` if it is still current (re-remembered when not), else undefined:
   * the fastify route answers. For thumbnails `foundThumb` is set to the encoding to send.
   */
  let foundThumb: EncodedThumb | undefined;
  function lookup(url: string, hd: FastHeaders): Hot | undefined {
    let h = hot.get(url);
    if (h === BY_ACCEPT) h = hot.get(`${url}\n${hd.accept ?? ''}`);
    let t: EncodedThumb | undefined;
    if (
      h === undefined ||
      (h.expiresAt !== Infinity && h.expiresAt < Date.now()) ||
      (h.thumbKey === undefined ? hd.range : (t = thumbs.get(h.thumbKey)) === undefined) ||
      !cache.current(h.ref)
    ) {
      h = remember(url, hd);
      if (h === undefined) return undefined;
      if (h.thumbKey !== undefined && (t = thumbs.get(h.thumbKey)) === undefined) return undefined;
    }
    foundThumb = t;
    return h;
  }

  function done(
    h: Hot,
    method: string,
    url: string,
    isHead: boolean,
    status: number,
    reqId: unknown,
    t0: number,
  ) {
    h.counter.inc(isHead, status);
    state.fastResponses++;
    if (logRequests) {
      log.info(
        {
          reqId: reqId ?? `f-${state.fastResponses}`,
          method,
          url,
          status,
          ms: Math.round((performance.now() - t0) * 10) / 10,
        },
        'request',
      );
    }
  }

  fast.path = (req, res) => {
    if (!state.ready) return false;
    const t0 = logRequests ? performance.now() : 0;
    const method = req.method;
    const isHead = method === 'HEAD';
    if (method !== 'GET' && !isHead) return false;
    const url = req.url ?? '';
    const hd = scanHeaders(req.rawHeaders);
    const h = lookup(url, hd);
    if (h === undefined) return false;
    const status = answer(res, h, foundThumb, isHead, hd.ifNoneMatch);
    done(h, method, url, isHead, status, logRequests ? req.headers['x-request-id'] : undefined, t0);
    return true;
  };

  fast.lane = (req, out) => {
    if (!state.ready) return false;
    const t0 = logRequests ? performance.now() : 0;
    const h = lookup(req.target, req);
    if (h === undefined) return false;
    const status = answerLane(out, h, foundThumb, req.isHead, req.ifNoneMatch);
    state.laneResponses++;
    done(h, req.isHead ? 'HEAD' : 'GET', req.target, req.isHead, status, req.requestId, t0);
    return true;
  };

  /** answer() for the lane: prepared heads written straight to the socket. */
  function answerLane(
    out: LaneOut,
    h: Hot,
    t: EncodedThumb | undefined,
    isHead: boolean,
    inm: string | undefined,
  ): number {
    if (t !== undefined) return sendThumb(out, t, h.vary, isHead, inm);
    return raw.sendHit(out, h, h.ref, isHead, inm);
  }

  /**
   * The full fast path: parses and checks the URL, finds the entry (and cached encoding) and
   * remembers how to answer it. Undefined when the fastify route must answer instead.
   */
  function remember(url: string, hd: FastHeaders): Hot | undefined {
    const isPixels = url.startsWith(PIXELS_PREFIX);
    if (!isPixels && !url.startsWith(THUMBS_PREFIX)) return undefined;
    if (isPixels && hd.range) return undefined;
    let typeParam: string | undefined;
    const qi = url.indexOf('?');
    if (qi >= 0) {
      // only parameters the fast path fully understands; anything else (rect, …) takes the route
      for (const part of url.slice(qi + 1).split('&')) {
        if (part.startsWith('sig=') || part.startsWith('exp=')) continue;
        if (!isPixels && part.startsWith('type=')) typeParam = part.slice(5);
        else return undefined;
      }
    }
    let ref: EntryRef | undefined;
    let type: keyof typeof MIME = 'png';
    let negotiated = false;
    let expiresAt = Infinity;
    try {
      if (signing) expiresAt = verifyUrl(url, config.signingKeys, Date.now());
      const { formatName, key } = formatAndKey(url, isPixels ? pixelsPrefixLength : thumbsPrefixLength);
      const format = cache.format(formatName);
      if (!isPixels) {
        ({ type, negotiated } = chooseType(
          typeParam,
          hd.accept,
          config.thumbTypes,
          HAS_ALPHA.has(format.pixelFormat),
        ));
      }
      ref = cache.peekRef(formatName, key);
    } catch {
      return undefined;
    }
    if (ref === undefined) return undefined;
    if (isPixels) {
      const heads = raw.whole(ref, ref.transientPixels.length);
      const h: Hot = {
        ref,
        thumbKey: undefined,
        headers: heads.headers,
        notModified: heads.notModified,
        head: heads.head,
        head304: heads.head304,
        vary: false,
        expiresAt,
        counter: pixelsCounter,
      };
      hot.set(url, h);
      return h;
    }
    const thumbKey = `${ref.etag}\u0000${type}`;
    if (thumbs.get(thumbKey) === undefined) return undefined; // not encoded yet: the route encodes
    const h: Hot = {
      ref,
      thumbKey,
      headers: [],
      notModified: [],
      head: EMPTY,
      head304: EMPTY,
      vary: negotiated,
      expiresAt,
      counter: thumbsCounter,
    };
    if (negotiated) {
      hot.set(url, BY_ACCEPT);
      hot.set(`${url}\n${hd.accept ?? ''}`, h);
    } else {
      hot.set(url, h);
    }
    return h;
  }

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
