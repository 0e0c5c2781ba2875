// GET /v1/thumbnails/:format/*key — the entry encoded (WebP, AVIF, PNG, JPEG), each encoding kept
// in the thumbnail LRU (thumbcache.ts) so a hot thumbnail is encoded once; the shortcut answers
// its later hits. Encodes go through a bounded queue (PIXTABLE_ENCODE_CONCURRENCY running,
// PIXTABLE_ENCODE_QUEUE waiting, one more is 503 QUEUE_FULL): each holds a libuv pool thread for
// its whole run, and unbounded they took every thread file operations need (an unrelated 404 waited
// seconds behind 30 AVIF encodes).
import type { FastifyInstance } from 'fastify';
import { DecodeQueue } from '../../engine/queue.js';
import type { EncodedType } from '../../formats.js';
import type { ImageView } from '../../types.js';
import { MIME, chooseType, hasAlpha } from '../negotiate.js';
import * as schemas from '../schemas.js';
import { targetFor } from '../target.js';
import { deriveEtag, encodedThumb, writeThumb, type EncodedThumb } from '../thumbcache.js';
import { noValidation, type RouteContext } from './shared.js';

export async function thumbnailRoutes(
  app: FastifyInstance,
  { cache, config, entries, thumbs, encode, cors, signed }: RouteContext,
): Promise<void> {
  const quality = config.thumbQuality;
  const qualityTag = quality === undefined ? '' : `-q${quality}`;
  const queue = new DecodeQueue(config.encode.concurrency, config.encode.maxQueue, 'encoding');
  async function encodeEntry(view: ImageView, type: EncodedType, etag: string): Promise<EncodedThumb> {
    // queued inside getOrEncode: concurrent requests for one thumbnail take one place
    const body = await queue.run(() => encode(view, type, quality));
    return encodedThumb(body, etag, MIME[type], config.cacheControl, cors);
  }

  app.route({
    method: 'GET',
    url: '/v1/thumbnails/:format/*',
    schema: schemas.thumbnails,
    ...noValidation,
    ...signed,
    async handler(request, reply) {
      const target = targetFor(request.raw, 'thumbnails', cache);
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
}
