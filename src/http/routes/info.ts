// GET /v1/info/*key — what is stored for a key (cache.info): the source's size and type, each
// format's cached entry size, the placeholder. Reads only; a worker of `serve --workers N`
// answers it from its own read-only cache, with the placeholders the writer stored.
import type { FastifyInstance } from 'fastify';
import { keyFromUrl } from '../keys.js';
import * as schemas from '../schemas.js';
import { noValidation, type RouteContext } from './shared.js';

const INFO_PREFIX = '/v1/info/';

export async function infoRoutes(app: FastifyInstance, { cache, signed }: RouteContext): Promise<void> {
  app.route({
    method: 'GET',
    url: '/v1/info/*',
    schema: schemas.info,
    ...noValidation,
    ...signed,
    async handler(request, reply) {
      const info = await cache.info(keyFromUrl(request.raw.url ?? '', INFO_PREFIX.length));
      // the answer changes when the key is decoded or replaced: caches must ask again
      void reply.header('cache-control', 'no-cache');
      return info;
    },
  });
}
