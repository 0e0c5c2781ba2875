// GET /v1/thumbnails/:format/*key — the entry encoded (WebP, AVIF, PNG, JPEG), each encoding kept
// in the thumbnail LRU (thumbcache.ts) so a hot thumbnail is encoded once; the shortcut answers
// its later hits. Encodes go through a bounded queue (PIXTABLE_ENCODE_CONCURRENCY running,
// PIXTABLE_ENCODE_QUEUE waiting, one more is 503 QUEUE_FULL): each holds a libuv pool thread for
// its whole run, and unbounded they took every thread file operations need (an unrelated 404 waited
// seconds behind 30 AVIF encodes).
// With `w`, `h` or `dpr` (variants.ts) the encoding is a variant cut from a cached entry of the
// key's family, kept in the same LRU under its master's ETag and its size.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DecodeQueue } from '../../engine/queue.js';
import type { EncodedType, Format } from '../../formats.js';
import type { ImageView } from '../../types.js';
import { MIME, chooseType, hasAlpha } from '../negotiate.js';
import * as schemas from '../schemas.js';
import { targetFor } from '../target.js';
import { deriveEtag, encodedThumb, writeThumb, type EncodedThumb } from '../thumbcache.js';
import {
  Families,
  cutFrom,
  cutTag,
  deviceBox,
  encodeVariant,
  variantAsk,
  variantKey,
  type Cut,
  type VariantAsk,
} from '../variants.js';
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

  const families = new Families(cache.formats);
  const sizes = config.variantWidths;
  async function encodeCut(
    master: ImageView,
    cut: Cut,
    type: EncodedType,
    etag: string,
    hints: string,
  ): Promise<EncodedThumb> {
    const body = await queue.run(() => encodeVariant(master, cut, type, quality));
    return encodedThumb(body, etag, MIME[type], config.cacheControl, cors, hints);
  }

  /**
   * A variant: cut from the smallest cached entry of the family that is large enough, or (none
   * cached) from the format's own entry, which the normal load decodes (or, in a worker, asks
   * the writer for) first.
   */
  async function variant(
    format: Format,
    key: string,
    ask: VariantAsk,
    type: EncodedType,
    headers: FastifyRequest['headers'],
  ): Promise<EncodedThumb> {
    const box = deviceBox(
      ask,
      { dpr: header(headers, 'sec-ch-dpr'), width: header(headers, 'sec-ch-width') },
      sizes,
    );
    let picked = families.pick(
      format,
      box,
      (name) => cache.peek(name, key),
      (v) => v.release(),
    );
    if (picked === undefined) {
      const own = await entries.load(format.name, key);
      // cutFrom() accepts the format's own entry whatever its size
      picked = { format, entry: own, cut: cutFrom(format, box, format, own)! };
    }
    const { entry, cut } = picked;
    try {
      const lruKey = variantKey(entry.etag, type, cut, box.hints);
      const etag = deriveEtag(entry.etag, `${type}${qualityTag}-${cutTag(cut)}`);
      return (
        thumbs.get(lruKey) ??
        (await thumbs.getOrEncode(lruKey, () => encodeCut(entry, cut, type, etag, box.hints)))
      );
    } finally {
      entry.release();
    }
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
      const ask = variantAsk(q);
      const { type, negotiated } =
        target.thumb ??
        chooseType(q.type, request.headers.accept, config.thumbTypes, hasAlpha(target.format.pixelFormat));
      let t: EncodedThumb;
      if (ask !== undefined) {
        t = await variant(target.format, target.key, ask, type, request.headers);
      } else {
        const view = await entries.load(target.formatName, target.key);
        try {
          const etag = deriveEtag(view.etag, `${type}${qualityTag}`);
          const lruKey = `${view.etag}\u0000${type}`;
          t = thumbs.get(lruKey) ?? (await thumbs.getOrEncode(lruKey, () => encodeEntry(view, type, etag)));
        } finally {
          view.release();
        }
      }
      reply.hijack();
      writeThumb(reply.raw, t, negotiated, request.headers['if-none-match']);
      return reply;
    },
  });
}

function header(headers: FastifyRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
}
