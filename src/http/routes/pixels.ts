// GET /v1/pixels/:format/*key — raw pixels from the table mapping (raw-response.ts writes them).
// Hits without Range arrive here only when the shortcut could not answer them (inject(), errors).
import type { FastifyInstance } from 'fastify';
import { PixtableError } from '../../errors.js';
import * as schemas from '../schemas.js';
import { targetFor } from '../target.js';
import { noValidation, type RouteContext } from './shared.js';

export async function pixelsRoutes(
  app: FastifyInstance,
  { cache, entries, raw, signed }: RouteContext,
): Promise<void> {
  app.route({
    method: 'GET',
    url: '/v1/pixels/:format/*',
    schema: schemas.pixels,
    ...noValidation,
    ...signed,
    async handler(request, reply) {
      const t = targetFor(request.raw, 'pixels', cache);
      const { rect, w, h, dpr } = request.query as Record<string, string | undefined>;
      // a variant of raw pixels would need a table of its own; the thumbnails route cuts them
      if (w !== undefined || h !== undefined || dpr !== undefined)
        throw new PixtableError(
          'INVALID_VARIANT',
          'w, h and dpr are for /v1/thumbnails; raw pixels come at the entry size (use ?rect= for a part)',
        );
      const view = await entries.load(t.formatName, t.key);
      raw.send(request.raw, reply.raw, view, rect, reply);
      return reply;
    },
  });
}
