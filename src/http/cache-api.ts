// The part of ImageCache (src/cache.ts) the HTTP layer uses, as a structural type: the server is
// written against the engine's public contract, and tests can drive routes with a stand-in.
import type { Format } from '../formats.js';
import type { CacheStats, EntryRef, ImageInfo, ImageView, PutResult } from '../types.js';
import type { SourceFile } from '../engine/source-bytes.js';
import type { UploadBody } from '../engine/uploads.js';

export interface PixelCache {
  readonly storage: string;
  readonly sourcesDir: string;
  readonly formats: readonly Format[];
  /** Read-only caches pin every raw hit before reading it: the writer is another process. */
  readonly readOnly: boolean;
  format(name: string): Format;
  get(format: string, key: string): Promise<ImageView>;
  peek(format: string, key: string): ImageView | undefined;
  peekRef(format: string, key: string): EntryRef | undefined;
  current(ref: EntryRef): boolean;
  pinRef(ref: EntryRef): boolean;
  unpinRef(ref: EntryRef): void;
  has(format: string, key: string): boolean;
  put(key: string, body: UploadBody): Promise<PutResult>;
  openSource(key: string): Promise<SourceFile>;
  delete(key: string): Promise<boolean>;
  /** Drops `key`'s entries, keeps its source (a peer's purge, src/http/peers.ts). */
  purge(key: string): boolean;
  listSources(): Promise<string[]>;
  /** Whether `key` has a stored source (a file, or an object in the bucket). */
  sourceExists(key: string): Promise<boolean>;
  info(key: string): Promise<ImageInfo>;
  stats(): CacheStats;
  close(): Promise<void>;
}
