// Loading an entry for the routes: the cache's own get() (a hit, or a decode of the local source),
// and on a missing source, when an origin is configured (PIXTABLE_ORIGIN), the source fetched from
// there (origin.ts), stored like an upload, then served.
import { PixtableError, isPixtableError } from '../errors.js';
import type { OriginConfig } from '../config/env.js';
import type { ImageView } from '../types.js';
import type { PixelCache } from './cache-api.js';
import { fetchFromOrigin } from './origin.js';

/** How the routes load an entry: here in one process, or through the writer (worker-entries.ts). */
export interface EntryLoader {
  /** A pinned view of `key` in `formatName`: looked up once, decoded (or fetched) on a miss. */
  load(formatName: string, key: string): Promise<ImageView>;
}

export class ReadThrough implements EntryLoader {
  /** Fetches in flight by key: concurrent misses of one key fetch it once. */
  private readonly fetches = new Map<string, Promise<void>>();

  constructor(
    private readonly cache: PixelCache,
    private readonly origin: OriginConfig | undefined,
    /** `ready` false once shutdown started. */
    private readonly state: { readonly ready: boolean },
  ) {}

  /** A pinned view of `key` in `formatName`: looked up once, decoded (or fetched) on a miss. */
  async load(formatName: string, key: string): Promise<ImageView> {
    const cache = this.cache;
    if (!this.state.ready) {
      // A decode can take seconds; during shutdown only hits are served so draining stays short.
      const hit = cache.peek(formatName, key);
      if (hit !== undefined) return hit;
      throw new PixtableError('SHUTTING_DOWN', 'misses are not decoded while draining');
    }
    try {
      return await cache.get(formatName, key);
    } catch (e) {
      if (!this.origin || !isPixtableError(e) || e.code !== 'SOURCE_NOT_FOUND') throw e;
      await this.fetch(key);
      return cache.get(formatName, key);
    }
  }

  private fetch(key: string): Promise<void> {
    let p = this.fetches.get(key);
    if (!p) {
      const o = this.origin;
      if (!o) throw new PixtableError('SOURCE_NOT_FOUND', key);
      p = (async () => {
        const bytes = await fetchFromOrigin(o, key);
        await this.cache.put(key, bytes);
      })().finally(() => this.fetches.delete(key));
      this.fetches.set(key, p);
    }
    return p;
  }
}
