// The messages the supervisor of `pixtable serve --workers N` and its processes exchange over
// Node's IPC channel. Every one carries `pixtable` (its kind) so that they never mix with
// prom-client's own cluster messages on the same channel.

/** A process (writer or worker) → the supervisor. */
export type ChildMessage =
  /** Listening: the writer on its socket, a worker on the shared port (`url`). */
  | { pixtable: 'ready'; url: string }
  /** A worker asks for the whole server's metrics (request `id`). */
  | { pixtable: 'metrics'; id: number }
  /** A worker forwarded a write: every worker must apply the writer's records before it answers. */
  | { pixtable: 'sync'; id: number }
  /** A worker applied the writer's records, as `refresh` `id` asked. */
  | { pixtable: 'refreshed'; id: number }
  /** This process's metrics (prom-client's JSON form), as `registry` `id` asked. */
  | { pixtable: 'registry'; id: number; metrics: unknown[] };

/** The supervisor → a process. */
export type SupervisorMessage =
  /** Whether the writer is up: workers answer misses and writes with 503 while it is not. */
  | { pixtable: 'writer'; up: boolean }
  | { pixtable: 'metrics'; id: number; text?: string; error?: string }
  /** Send this process's metrics (`registry`). */
  | { pixtable: 'registry'; id: number }
  /** Apply what the writer appended to its indexes, then answer `refreshed`. */
  | { pixtable: 'refresh'; id: number }
  | { pixtable: 'synced'; id: number }
  /** Stop accepting, finish what is in flight, close the cache, exit 0. */
  | { pixtable: 'drain' };

export function isPixtableMessage<T extends { pixtable: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { pixtable?: unknown }).pixtable === 'string';
}

/** Roles a process started by the supervisor plays (PIXTABLE_SERVE_ROLE). */
export type Role = 'writer' | 'worker';
