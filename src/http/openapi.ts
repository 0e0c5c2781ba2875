// The OpenAPI document served at /openapi.json (routes/operations.ts), collected by
// @fastify/swagger from the routes' schemas (schemas.ts) as they are registered.
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';

/** Registers the collector; before any route, or that route is missing from the document. */
export async function registerOpenApi(app: FastifyInstance, signed: boolean): Promise<void> {
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
      components: signed ? { securitySchemes: { sig: { type: 'apiKey', in: 'query', name: 'sig' } } } : {},
    },
  });
}
