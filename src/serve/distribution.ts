// How `pixtable serve --workers N` spreads connections over its workers (PIXTABLE_DISTRIBUTION).
//
// With one socket that every worker accepts on (`shared`), whichever worker the scheduler wakes
// first takes every connection waiting: on this 2-core machine a client opening 32 connections at
// once gave one worker all of them in a third of one-second slices, and a worker that holds most
// connections is held to its share of a core while the other idles (bench/http.ts prints the
// split). SO_REUSEPORT gives each worker a socket of its own and the kernel hashes every new
// connection to one of them, so the split follows the connection count, whoever is awake.
// Node's `reusePort` listen option (Node ≥ 22.12 and ≥ 23.1) sets it; Node 20 has no way to.
import net from 'node:net';
import type { Distribution } from '../config/env.js';
import { PixtableError } from '../errors.js';

/** What a `Distribution` comes to in the processes: the listening mode they share. */
export type ListenMode = 'reuseport' | 'shared' | 'round-robin';

/** Node ≥ 22.12 (22.x) or ≥ 23.1: `net.Server.listen({ reusePort })` exists. */
export function runtimeHasReusePort(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** `auto` → `reuseport` where the runtime has it, else `shared`; `reuseport` without it is refused. */
export function listenMode(d: Distribution, version: string = process.versions.node): ListenMode {
  const has = runtimeHasReusePort(version);
  if (d === 'auto') return has ? 'reuseport' : 'shared';
  if (d === 'reuseport' && !has) {
    throw new PixtableError(
      'INVALID_CONFIG',
      `PIXTABLE_DISTRIBUTION=reuseport needs Node 22.12 or later (this is ${version}); use auto or shared`,
    );
  }
  return d;
}

/**
 * With reuseport every worker binds the port itself, so the supervisor must make sure nobody
 * else holds it (another server with SO_REUSEPORT of the same user would silently share its
 * traffic) and must turn port 0 into one real port for all of them. A plain bind does both: it
 * fails with EADDRINUSE against any listener, reuseport group or not. Resolves to the port.
 */
export function claimPort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => {
      const addr = probe.address();
      const p = typeof addr === 'object' && addr ? addr.port : port;
      probe.close(() => resolve(p));
    });
  });
}
