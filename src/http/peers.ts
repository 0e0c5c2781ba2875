// Purge across a cluster of replicas (docs/deploy.md, "Purge across the cluster"). nginx sends
// every request for a key to its owner, but after a failover another replica may still hold
// entries of that key decoded while the owner was down. Revalidation bounds how long those are
// served (revalidateMs); this module makes a replacement or delete reach them at once:
// - `DELETE /v1/entries/<key>` drops a key's entries in every format and keeps its source, so
//   the next request decodes the source as it is now (in the shared bucket);
// - with PIXTABLE_PEERS set, after a successful PUT or DELETE of /v1/sources/<key> the process
//   that wrote it sends that purge to every peer. It runs after the client has its answer, each
//   call bounded by PIXTABLE_PEERS_TIMEOUT_MS; a failure is logged and counted
//   (pixtable_peer_purges_total{result="failed"}), never the client's error: revalidation still
//   bounds what that peer serves.
import { randomUUID } from 'node:crypto';
import client from 'prom-client';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PixtableError } from '../errors.js';
import { encodeKey, keyFromUrl } from './keys.js';
import { signUrl } from './sign.js';
import type { PeerConfig } from '../config/env.js';
import type { RouteContext } from './routes/shared.js';

export const ENTRIES_PREFIX = '/v1/entries/';
const SOURCES_PREFIX = '/v1/sources/';

/**
 * Names the sender of a purge. The peer list is usually the same for every replica (one
 * ConfigMap), so it includes the sender; a purge that comes back to the server that wrote the key
 * would drop the entries the write just made, and is ignored. One id per app: under
 * `serve --workers N` the writer's app both sends and (a worker forwards every DELETE) receives.
 */
export const PURGE_FROM_HEADER = 'x-pixtable-purge-from';

type Outcome = 'ok' | 'failed';

/** The fan-out: one bounded DELETE per peer, never awaited by the client's request. */
export class PeerPurge {
  private readonly counter: client.Counter<'result'>;
  /** Calls still running (tests and shutdown wait for them). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly peers: PeerConfig,
    private readonly self: string,
    private readonly sign: ((pathAndQuery: string) => string) | undefined,
    registry: client.Registry,
    private readonly log: (msg: string) => void,
  ) {
    this.counter = new client.Counter({
      name: 'pixtable_peer_purges_total',
      help: 'Purges sent to peers (PIXTABLE_PEERS) after a PUT or DELETE, by result',
      labelNames: ['result'],
      registers: [registry],
    });
    // both series exist from the start, so an alert on "failed" sees 0 rather than nothing
    this.counter.inc({ result: 'ok' }, 0);
    this.counter.inc({ result: 'failed' }, 0);
  }

  /** Sends the purge of `key` to every peer; resolves when all have answered or timed out. */
  purge(key: string): Promise<void> {
    const target = `${ENTRIES_PREFIX}${encodeKey(key)}`;
    const p = Promise.all(this.peers.urls.map((u) => this.one(u, target))).then(() => undefined);
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  /** Resolves when every purge sent so far is done. */
  async settled(): Promise<void> {
    await Promise.all([...this.running]);
  }

  private async one(base: URL, target: string): Promise<void> {
    const prefix = base.pathname.replace(/\/+$/, '');
    const pathAndQuery = this.sign ? this.sign(`${prefix}${target}`) : `${prefix}${target}`;
    const url = new URL(pathAndQuery, base);
    let outcome: Outcome = 'failed';
    let why = '';
    try {
      const res = await fetch(url, {
        method: 'DELETE',
        headers: { [PURGE_FROM_HEADER]: this.self },
        signal: AbortSignal.timeout(this.peers.timeoutMs),
      });
      await res.arrayBuffer();
      if (res.status === 204) outcome = 'ok';
      else why = `HTTP ${res.status}`;
    } catch (e) {
      why = (e as Error).name === 'TimeoutError' ? `no answer in ${this.peers.timeoutMs} ms` : String(e);
    }
    this.counter.inc({ result: outcome });
    if (outcome === 'failed')
      this.log(`purge of ${target} on peer ${base.origin}${base.pathname} failed: ${why}`);
  }
}

function sourceWrite(request: FastifyRequest, reply: FastifyReply): string | undefined {
  const m = request.method;
  if (m !== 'PUT' && m !== 'DELETE') return undefined;
  const url = request.raw.url ?? '';
  if (!url.startsWith(SOURCES_PREFIX)) return undefined;
  const s = reply.statusCode;
  if (s !== 200 && s !== 201 && s !== 204) return undefined;
  try {
    return keyFromUrl(url, SOURCES_PREFIX.length);
  } catch {
    return undefined;
  }
}

/**
 * The purge route, and (with peers configured, in the process that writes) the fan-out after a
 * source write. Registered by app.ts like the other route plugins, but not encapsulated
 * (skip-override, what fastify-plugin sets): its onResponse hook must see the sources routes.
 */
export async function peerRoutes(
  app: FastifyInstance,
  { cache, config, signed, metrics }: RouteContext,
): Promise<void> {
  const self = randomUUID();
  app.route({
    method: 'DELETE',
    url: `${ENTRIES_PREFIX}*`,
    schema: {
      summary: "Drops a key's cached entries in every format; its source stays",
      description:
        'What a replica sends its peers after a PUT or DELETE of the key (PIXTABLE_PEERS, docs/deploy.md). Always 204: nothing cached is not an error.',
      tags: ['sources'],
      response: { 204: { type: 'null', description: 'Dropped, or nothing was cached' } },
    },
    ...signed,
    handler(request, reply) {
      const key = keyFromUrl(request.raw.url ?? '', ENTRIES_PREFIX.length);
      if (cache.readOnly) throw new PixtableError('READ_ONLY', 'purges go to the process that writes');
      if (request.headers[PURGE_FROM_HEADER] !== self) cache.purge(key);
      return reply.code(204).send();
    },
  });

  if (config.peers.urls.length === 0 || cache.readOnly) return;
  const signer = config.signingKeys[0];
  const fanout = new PeerPurge(
    config.peers,
    self,
    signer ? (p) => signUrl(p, signer, 'DELETE') : undefined,
    metrics.registry,
    (msg) => app.log.warn(msg),
  );
  app.addHook('onResponse', (request, reply, done) => {
    const key = sourceWrite(request, reply);
    if (key !== undefined) void fanout.purge(key);
    done();
  });
  app.addHook('onClose', async () => {
    await fanout.settled();
  });
}
(peerRoutes as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
