// One log line and one metrics count per request fastify answers (the shortcut counts and logs
// its own). fastify's default of two lines per request is switched off in app.ts.
import type { FastifyInstance } from 'fastify';
import type { Metrics } from './metrics.js';

/** Adds the onResponse hook to `app`; call on the root instance before routes are registered. */
export function installRequestLog(app: FastifyInstance, metrics: Metrics, logRequests: boolean): void {
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.countRequest(route, request.method, reply.statusCode);
    if (logRequests) {
      request.log.info(
        {
          method: request.method,
          url: request.url,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
        },
        'request',
      );
    }
    done();
  });
}
