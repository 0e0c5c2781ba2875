// /v1/sources: uploads (PUT), originals (GET, HEAD), deletes (DELETE) and the list of keys (GET).
// An upload's body is never buffered: the request stream goes to the engine, which writes it to
// the upload temp file chunk by chunk (src/engine/uploads.ts), so a plain streamed body — from a
// client or a proxy in front of this process, with or without Content-Length — costs one chunk of
// memory, and the number of uploads received at once is bounded.
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PixtableError, bodyTooLargeDetail } from '../../errors.js';
import { keyFromUrl } from '../keys.js';
import { parseRange } from '../range.js';
import * as schemas from '../schemas.js';
import { etagMatches } from '../thumbcache.js';
import type { PixelCache } from '../cache-api.js';
import { noValidation, type RouteContext } from './shared.js';

const SOURCES_PREFIX = '/v1/sources/';

/**
 * The request body as chunks, cut with BODY_TOO_LARGE at the first byte over `maxBytes`. The
 * request is not destroyed when the engine stops reading (an error it found): the response
 * still has to reach the client, and Node discards the rest of the body after it.
 */
async function* limitedBody(body: Readable, maxBytes: number): AsyncGenerator<Buffer> {
  let size = 0;
  try {
    for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        throw new PixtableError(
          'BODY_TOO_LARGE',
          `${bodyTooLargeDetail(undefined, maxBytes)}; nothing was stored`,
        );
      }
      yield chunk;
    }
  } catch (e) {
    if (e instanceof PixtableError) throw e;
    throw new PixtableError('BAD_REQUEST', `the upload body ended early after ${size} bytes`, { cause: e });
  }
}

/** Image types recognised from a file's first bytes, for an original's Content-Type. */
function sniffType(head: Buffer): string {
  const ascii = (at: number, s: string) => head.toString('latin1', at, at + s.length) === s;
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (ascii(0, '\x89PNG\r\n\x1a\n')) return 'image/png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'image/gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'image/webp';
  if (ascii(4, 'ftyp')) {
    const brand = head.toString('latin1', 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'image/avif';
    if (['heic', 'heix', 'hevc', 'heim', 'heis', 'mif1', 'msf1'].includes(brand)) return 'image/heic';
  }
  if (ascii(0, 'II*\0') || ascii(0, 'MM\0*')) return 'image/tiff';
  if ((head[0] === 0xff && head[1] === 0x0a) || ascii(4, 'JXL ')) return 'image/jxl';
  if (/^(?:\ufeff)?\s*<(?:\?xml|svg|!--|!DOCTYPE svg)/i.test(head.toString('utf8')) && head.includes('<svg'))
    return 'image/svg+xml';
  return 'application/octet-stream';
}

/** Bytes read to sniff an original's type (an SVG's root element may follow a prolog). */
const SNIFF_BYTES = 1024;

/**
 * An original's response headers. The CSP sandbox and nosniff keep an uploaded SVG (or anything
 * else) from running script in this origin when it is opened directly.
 */
function sourceHeaders(type: string, etag: string, cacheControl: string, mtimeMs: number) {
  return {
    'content-type': type,
    etag,
    'cache-control': cacheControl,
    'last-modified': new Date(mtimeMs).toUTCString(),
    'accept-ranges': 'bytes',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; sandbox",
  };
}

/** GET/HEAD of an original: its bytes as stored, with a strong ETag from its fingerprint. */
async function sendSource(
  cache: PixelCache,
  cacheControl: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const key = keyFromUrl(request.raw.url ?? '', SOURCES_PREFIX.length);
  const src = await cache.openSource(key);
  let streaming = false;
  try {
    const etag = `"${src.fingerprint}"`;
    const notModified = etagMatches(request.headers['if-none-match'], etag);
    const ifRange = request.headers['if-range'];
    const range =
      notModified || (ifRange !== undefined && ifRange !== etag)
        ? undefined
        : parseRange(request.headers.range, src.size);
    // refused before any of the original's headers are set: an error body carries none of them
    if (range === 'unsatisfiable') {
      throw new PixtableError(
        'RANGE_NOT_SATISFIABLE',
        `${request.headers.range} is outside the ${src.size}-byte source`,
        { details: { size: src.size } },
      );
    }
    const head = Buffer.alloc(Math.min(SNIFF_BYTES, src.size));
    await src.handle.read(head, 0, head.length, 0);
    void reply.headers(sourceHeaders(sniffType(head), etag, cacheControl, src.mtimeMs));
    if (notModified) return await reply.code(304).send();
    const start = range?.start ?? 0;
    const end = range?.end ?? src.size - 1;
    if (range) void reply.code(206).header('content-range', `bytes ${start}-${end}/${src.size}`);
    void reply.header('content-length', String(end - start + 1));
    if (request.method === 'HEAD' || src.size === 0) return await reply.send();
    streaming = true;
    // The stream owns the handle from here: it closes it at the end or when the client goes away.
    return await reply.send(src.handle.createReadStream({ start, end, autoClose: true }));
  } finally {
    if (!streaming) await src.handle.close();
  }
}

export async function sourceRoutes(
  app: FastifyInstance,
  { cache, config, state, signed }: RouteContext,
): Promise<void> {
  await app.register(async (uploads) => {
    // Uploads are opaque bytes whatever Content-Type says; the engine decides what they are. The
    // parser hands the handler the request stream itself (no parseAs: nothing is buffered).
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser('*', (_req, payload, done) => {
      done(null, payload);
    });
    let receiving = 0;
    uploads.route({
      method: 'PUT',
      url: '/v1/sources/*',
      schema: schemas.putSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', SOURCES_PREFIX.length);
        if (!state.ready) throw new PixtableError('SHUTTING_DOWN', 'uploads are refused while draining');
        const max = config.maxUploadBytes;
        const declared = Number(request.headers['content-length'] ?? NaN);
        if (declared > max) {
          throw new PixtableError(
            'BODY_TOO_LARGE',
            `${bodyTooLargeDetail(declared, max)} (the declared Content-Length)`,
          );
        }
        const body = request.body as Readable | undefined;
        if (body === undefined || declared === 0) throw new PixtableError('EMPTY_SOURCE');
        if (receiving >= config.maxConcurrentUploads) {
          throw new PixtableError(
            'UPLOADS_BUSY',
            `${receiving} uploads in progress (PIXTABLE_MAX_CONCURRENT_UPLOADS=${config.maxConcurrentUploads})`,
            { details: { retryAfter: 1 } },
          );
        }
        receiving++;
        try {
          const existed = await cache.sourceExists(key);
          const result = await cache.put(key, limitedBody(body, max));
          return await reply.code(existed ? 200 : 201).send(result);
        } finally {
          receiving--;
        }
      },
    });
    uploads.route({
      method: 'DELETE',
      url: '/v1/sources/*',
      schema: schemas.deleteSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', SOURCES_PREFIX.length);
        if (!(await cache.delete(key))) throw new PixtableError('SOURCE_NOT_FOUND', key);
        return reply.code(204).send();
      },
    });
  });

  app.route({
    // HEAD declared here, not derived by fastify: its derived HEAD would read the whole file only
    // to measure it and reset Content-Length.
    method: ['GET', 'HEAD'],
    url: '/v1/sources/*',
    schema: schemas.getSource,
    ...noValidation,
    ...signed,
    handler(request, reply) {
      return sendSource(cache, config.cacheControl, request, reply);
    },
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
}
