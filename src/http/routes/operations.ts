// What operators and clients ask about the service itself: /healthz, /readyz, /metrics,
// /openapi.json and the configured formats (/v1/formats).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { describeFormat } from '../../formats.js';
import { loadSharp } from '../encode.js';
import * as schemas from '../schemas.js';
import type { RouteContext } from './shared.js';

interface Health {
  at: number;
  ok: boolean;
  checks: Record<string, string>;
}

export async function operationRoutes(
  app: FastifyInstance,
  { cache, config, state, metrics, readiness }: RouteContext,
): Promise<void> {
  app.route({
    method: 'GET',
    url: '/v1/formats',
    schema: schemas.formats,
    handler(_request, reply) {
      // Disk use changes with every write, so it is read per request (one fstat per file).
      const use = new Map(cache.stats().formats.map((s) => [s.format, s]));
      const body = cache.formats.map((f) => {
        const s = use.get(f.name)!;
        return {
          ...describeFormat(f),
          entryBytes: s.entryBytes,
          entries: s.entries,
          capacity: { entries: s.capacity, bytes: s.capacityBytes },
          diskBytes: s.diskBytes,
        };
      });
      void reply.type('application/json; charset=utf-8').send(JSON.stringify(body));
    },
  });

  async function checkHealth(): Promise<Omit<Health, 'at'>> {
    const checks: Record<string, string> = {};
    let ok = true;
    try {
      const m = await loadSharp();
      checks.sharp = `ok (libvips ${m.sharpVersions().vips ?? '?'})`;
    } catch (e) {
      ok = false;
      checks.sharp = `failed: ${(e as Error).message}`;
    }
    // Writable = we can create and remove a file, not just that the mode bits say so (a full or
    // read-only-remounted volume passes access(W_OK)).
    const probe = path.join(cache.storage, `.healthz-${process.pid}`);
    try {
      await fs.writeFile(probe, 'ok');
      await fs.rm(probe, { force: true });
      checks.storage = 'ok (writable)';
    } catch (e) {
      if (config.readOnly) checks.storage = 'read-only (as configured)';
      else {
        ok = false;
        checks.storage = `failed: ${(e as Error).message}`;
      }
    }
    return { ok, checks };
  }
  let health: Health | undefined;
  app.route({
    method: 'GET',
    url: '/healthz',
    schema: schemas.health,
    async handler(_request, reply) {
      const now = Date.now();
      // At most one probe per second however often the orchestrator asks.
      if (!health || now - health.at > 1000) health = { at: now, ...(await checkHealth()) };
      return reply
        .code(health.ok ? 200 : 503)
        .send({ status: health.ok ? 'ok' : 'failing', checks: health.checks });
    },
  });

  app.route({
    method: 'GET',
    url: '/readyz',
    schema: schemas.ready,
    handler(_request, reply) {
      if (!state.ready) {
        void reply.code(503).header('Retry-After', '1').send({ status: 'shutting down' });
        return;
      }
      for (const check of readiness) {
        const why = check();
        if (why !== undefined) {
          void reply.code(503).header('Retry-After', '1').send({ status: why });
          return;
        }
      }
      void reply.send({ status: 'ready' });
    },
  });

  app.route({
    method: 'GET',
    url: '/metrics',
    schema: { hide: true },
    async handler(_request, reply) {
      const text = await metrics.text();
      return reply.type(metrics.contentType).send(text);
    },
  });

  app.route({
    method: 'GET',
    url: '/openapi.json',
    schema: { hide: true },
    handler(_request, reply) {
      void reply.send(app.swagger());
    },
  });
}
