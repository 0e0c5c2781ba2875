// The fast path's memory of answered URLs. Parsing a request target (prefix, format, percent-
// decoding and checking the key, query parameters), looking the key up and building a view cost
// more than Node's whole HTTP exchange of a 16 KiB body; a hit on a URL answered before is one Map
// lookup by the raw target plus `ImageCache.current(ref)` (typed-array comparisons). Nothing here
// is trusted beyond that check: an entry rewritten, deleted, evicted or unmapped, a source whose
// revalidation is due, an encoding gone from the thumbnail LRU or a signed URL past `exp` all send
// the request back through the full path, which re-parses, re-checks and re-memoises.
import { LRUCache } from 'lru-cache';
import type { EntryRef } from '../types.js';

export interface HotCounter {
  inc(isHead: boolean, status: number): void;
}

/** Everything needed to answer one URL again without parsing it. */
export interface Hot {
  ref: EntryRef;
  /** Thumbnail LRU key (entry ETag + type); undefined for raw pixels. */
  thumbKey: string | undefined;
  /** Raw pixels: the 200 and 304 header lists (thumbnails carry theirs on the encoding). */
  headers: string[];
  notModified: string[];
  /** Raw pixels: the same as status line + header bytes for the fast lane (head-bytes.ts rawHead). */
  head: Buffer;
  head304: Buffer;
  /** Thumbnail chosen from Accept: responses carry `Vary: Accept`. */
  vary: boolean;
  /** `exp` of a signed URL in ms since the epoch; Infinity when unsigned or without exp. */
  expiresAt: number;
  counter: HotCounter;
}

/**
 * Stands in the URL map for thumbnail URLs whose type comes from `Accept`: their answers are
 * stored under `url + "\n" + accept` instead, one per distinct Accept value.
 */
export const BY_ACCEPT: Hot = Object.freeze({
  ref: undefined as unknown as EntryRef,
  thumbKey: undefined,
  headers: [],
  notModified: [],
  head: Buffer.alloc(0),
  head304: Buffer.alloc(0),
  vary: true,
  expiresAt: -Infinity,
  counter: { inc() {} },
}) as Hot;

/**
 * Raw request target → Hot, least recently answered URLs dropped beyond `maxBytes` (an LRU rather
 * than a Map that starts over, so a working set larger than the budget degrades gently instead of
 * thrashing). Counted in bytes, not entries: request targets and Accept values are client-chosen
 * and up to the header size limit long, so a count alone would not bound the memory.
 */
export class HotUrls {
  private readonly lru: LRUCache<string, Hot>;
  constructor(maxBytes: number) {
    this.lru = new LRUCache<string, Hot>({
      maxSize: maxBytes,
      // the key's characters plus the Hot object, its Map slot and LRU bookkeeping
      sizeCalculation: (_hot, url) => url.length + 160,
    });
  }

  get(url: string): Hot | undefined {
    return this.lru.get(url);
  }

  set(url: string, hot: Hot): void {
    this.lru.set(url, hot);
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }
}

/** The request headers the fast path reads (see scanHeaders). */
export interface FastHeaders {
  range: boolean;
  ifNoneMatch: string | undefined;
  accept: string | undefined;
}

const seen: FastHeaders = { range: false, ifNoneMatch: undefined, accept: undefined };

/**
 * Finds Range, If-None-Match and Accept in one pass over `req.rawHeaders`. Reading `req.headers`
 * would make Node build an object of every header (each name lower-cased) on every hit. Repeated
 * headers are joined with ", " as Node joins them. Returns one shared object, valid until the next
 * call (the fast path is synchronous).
 */
export function scanHeaders(raw: readonly string[]): FastHeaders {
  seen.range = false;
  seen.ifNoneMatch = undefined;
  seen.accept = undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    switch (name.length) {
      case 5:
        if (name === 'Range' || name.toLowerCase() === 'range') seen.range = true;
        break;
      case 6:
        if (name === 'Accept' || name.toLowerCase() === 'accept')
          seen.accept = join(seen.accept, raw[i + 1]!);
        break;
      case 13:
        if (name === 'If-None-Match' || name.toLowerCase() === 'if-none-match')
          seen.ifNoneMatch = join(seen.ifNoneMatch, raw[i + 1]!);
        break;
    }
  }
  return seen;
}

function join(a: string | undefined, b: string): string {
  return a === undefined ? b : `${a}, ${b}`;
}
