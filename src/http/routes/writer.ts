// The writer's own route in `pixtable serve --workers N`: a worker that missed asks the writer to
// store an entry, and serves it from its own mapping once this answers 204. Registered only in the
// writer, which listens on a Unix socket its workers know, never on the public port.
import type { FastifyInstance } from 'fastify';
import { LOAD_PATH } from '../writer-link.js';
import type { RouteContext } from './shared.js';

export async function writerRoutes(app: FastifyInstance, { entries }: RouteContext): Promise<void> {
  app.route<{ Body: { format: string; key: string } }>({
    method: 'POST',
    url: LOAD_PATH,
    schema: {
      hide: true,
      body: {
        type: 'object',
        required: ['format', 'key'],
        additionalProperties: false,
        properties: { format: { type: 'string' }, key: { type: 'string' } },
      },
    },
    async handler(request, reply) {
      // the same loading as a GET here (in-flight de-duplication, origin read-through)
      const view = await entries.load(request.body.format, request.body.key);
      view.release();
      return reply.code(204).send();
    },
  });
}
