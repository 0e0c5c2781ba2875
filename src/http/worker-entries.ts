// Loading an entry in a worker of `pixtable serve --workers N`: the worker's own read-only cache
// answers hits from its mappings; a miss is handed to the writer (writer-link.ts), which decodes it
// once however many workers ask, and the worker then serves the entry from its own mapping.
import { PixtableError, isPixtableError } from '../errors.js';
import type { ImageView } from '../types.js';
import type { PixelCache } from './cache-api.js';
import type { EntryLoader } from './read-through.js';
import type { WriterLink } from './writer-link.js';

export class WorkerEntries implements EntryLoader {
  constructor(
    private readonly cache: PixelCache,
    private readonly writer: WriterLink,
    private readonly state: { readonly ready: boolean },
  ) {}

  async load(formatName: string, key: string): Promise<ImageView> {
    try {
      // a read-only cache looks at the writer's latest records before it says READ_ONLY
      return await this.cache.get(formatName, key);
    } catch (e) {
      if (!isPixtableError(e) || e.code !== 'READ_ONLY') throw e;
    }
    if (!this.state.ready) throw new PixtableError('SHUTTING_DOWN', 'misses are not decoded while draining');
    await this.writer.load(formatName, key);
    return this.cache.get(formatName, key);
  }
}
