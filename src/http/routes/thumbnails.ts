// GET /v1/thumbnails/:format/*key — the entry encoded (WebP, AVIF, PNG, JPEG), each encoding kept
// in the thumbnail LRU (thumbcache.ts) so a hot thumbnail is encoded once; the shortcut answers
// its later hits.
import type { FastifyInstance } from 'fastify';
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
  async function encodeEntry(view: ImageView, type: EncodedType, etag: string): Promise<EncodedThumb> {
    const body = await encode(view, type, quality);
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
