// GET /v1/pixels/:format/*key — raw pixels from the table mapping (raw-response.ts writes them).
// Hits without Range arrive here only when the shortcut could not answer them (inject(), errors).
import type { FastifyInstance } from 'fastify';
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
      const { rect } = request.query as Record<string, string | undefined>;
      const view = await entries.load(t.formatName, t.key);
      raw.send(request.raw, reply.raw, view, rect, reply);
      return reply;
    },
  });
}
