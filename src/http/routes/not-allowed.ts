// 405 METHOD_NOT_ALLOWED, with Allow, for the other methods on every known path (unknown paths
// are the not-found handler's 404). The answer is given in onRequest, before fastify parses a
// body: a POST with a Content-Type no parser knows would otherwise be refused as an unsupported
// media type (415), blaming the body for what is the method's fault.
import type { FastifyInstance } from 'fastify';
import { ERRORS } from '../../errors.js';
import { sendError } from '../errors.js';

/** Path → the methods it answers (HEAD comes with GET). */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  '/v1/formats': ['GET', 'HEAD'],
  '/v1/pixels/:format/*': ['GET', 'HEAD'],
  '/v1/thumbnails/:format/*': ['GET', 'HEAD'],
  '/v1/sources': ['GET', 'HEAD'],
  '/v1/sources/*': ['GET', 'HEAD', 'PUT', 'DELETE'],
  '/healthz': ['GET', 'HEAD'],
  '/readyz': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
};

const METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH'];

export async function notAllowedRoutes(app: FastifyInstance): Promise<void> {
  for (const [url, methods] of Object.entries(ALLOWED)) {
    const allow = methods.join(', ');
    app.route({
      method: METHODS.filter((m) => !methods.includes(m)),
      url,
      schema: { hide: true },
      onRequest(request, reply, done) {
        reply.header('Allow', allow);
        sendError(
          reply,
          'METHOD_NOT_ALLOWED',
          `${ERRORS.METHOD_NOT_ALLOWED.message}: ${request.method}; allowed: ${allow}`,
        );
        done();
      },
      // never reached: onRequest has answered
      handler() {},
    });
  }
}
