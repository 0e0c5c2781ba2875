// What operators and clients ask about the service itself: /healthz, /readyz, /metrics,
// /openapi.json and the configured formats (/v1/formats).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { describeFormat } from '../../formats.js';
import { loadSharp } from '../encode.js';
import * as schemas from '../schemas.js';
import type { RouteContext } from './shared.js';

/** One readiness condition: whether it holds, and what /readyz says about it. */
export interface ReadyCheck {
  ok: boolean;
  detail: string;
}

const MiB = 1024 * 1024;

/**
 * Free bytes on the storage's volume against `minFreeBytes` (0: always ok). Low disk is a
 * readiness failure, not a liveness one: the process is healthy and serves hits; it just should
 * not be sent the uploads and misses that would end in 507 STORAGE_FULL.
 */
export async function diskReadiness(storage: string, minFreeBytes: number): Promise<ReadyCheck> {
  if (minFreeBytes === 0) return { ok: true, detail: 'not checked (PIXTABLE_MIN_FREE_BYTES=0)' };
  try {
    const s = await fs.statfs(storage);
    // bavail, not bfree: the blocks reserved for root are no use to a server running as a user
    const free = s.bavail * s.bsize;
    const text = `${(free / MiB).toFixed(1)} MiB free of ${((s.blocks * s.bsize) / MiB).toFixed(1)} MiB`;
    return free < minFreeBytes
      ? { ok: false, detail: `low: ${text}, below PIXTABLE_MIN_FREE_BYTES (${minFreeBytes})` }
      : { ok: true, detail: `ok (${text})` };
  } catch (e) {
    return { ok: false, detail: `failed: ${(e as Error).message}` };
  }
}

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
    async handler(_request, reply) {
      if (!state.ready) {
        return reply.code(503).header('Retry-After', '1').send({ status: 'shutting down' });
      }
      const checks: Record<string, ReadyCheck> = {
        disk: await diskReadiness(cache.storage, config.minFreeBytes),
      };
      for (const [name, check] of Object.entries(readiness)) {
        const why = check();
        checks[name] = why === undefined ? { ok: true, detail: 'ok' } : { ok: false, detail: why };
      }
      const ok = Object.values(checks).every((c) => c.ok);
      const detail = Object.fromEntries(Object.entries(checks).map(([k, c]) => [k, c.detail]));
      if (!ok) void reply.header('Retry-After', '1');
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks: detail });
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
