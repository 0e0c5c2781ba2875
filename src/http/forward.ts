// In a worker of `pixtable serve --workers N`, every request that changes storage (PUT and DELETE
// of sources) goes to the writer before fastify parses anything of it: the body streams through
// (writer-link.ts) and the writer's answer is the client's. Reads stay here.
import type { FastifyInstance } from 'fastify';
import type { WriterLink } from './writer-link.js';

const WRITES = new Set(['PUT', 'DELETE']);

export function forwardWrites(app: FastifyInstance, writer: WriterLink): void {
  app.addHook('onRequest', async (request, reply) => {
    if (!WRITES.has(request.method)) return;
    await writer.forward(request, reply);
    return reply;
  });
}
