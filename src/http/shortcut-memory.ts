// The hit shortcut's memory of answered URLs (shortcut.ts). Parsing a request target (prefix,
// format, percent-decoding and checking the key, query parameters), looking the key up and building
// a view cost more than Node's whole HTTP exchange of a 16 KiB body; a hit on a URL answered before
// is one lookup by the raw target plus `ImageCache.current(ref)` (typed-array comparisons). Nothing
// here is trusted beyond that check: an entry rewritten, deleted, evicted or unmapped, a source
// whose revalidation is due, an encoding gone from the thumbnail LRU or a signed URL past `exp` all
// send the request back through the full parse, which re-checks and remembers again.
import { LRUCache } from 'lru-cache';
import type { EntryRef } from '../types.js';
import type { WholeHeads } from './raw-response.js';

/** How to answer a raw-pixels URL again without parsing it. */
export interface PixelsMemo {
  readonly kind: 'pixels';
  readonly ref: EntryRef;
  readonly heads: WholeHeads;
  /** `exp` of a signed URL in ms since the epoch; Infinity when unsigned or without exp. */
  readonly expiresAt: number;
}

/** How to answer a thumbnail URL again: its encoding is looked up in the thumbnail LRU each time. */
export interface ThumbMemo {
  readonly kind: 'thumbnail';
  readonly ref: EntryRef;
  /** Thumbnail LRU key (entry ETag + type). */
  readonly thumbKey: string;
  /** The type was chosen from `Accept`: responses carry `Vary: Accept`. */
  readonly vary: boolean;
  readonly expiresAt: number;
}

/**
 * Stands in the URL map for thumbnail URLs whose type comes from `Accept`: their memos are stored
 * under `url + "\n" + accept` instead, one per distinct Accept value.
 */
export interface ByAccept {
  readonly kind: 'byAccept';
  readonly expiresAt: number;
}

export type Memo = PixelsMemo | ThumbMemo;
export type Remembered = Memo | ByAccept;

export const BY_ACCEPT: ByAccept = Object.freeze({ kind: 'byAccept', expiresAt: -Infinity });

/**
 * Raw request target → memo, least recently answered URLs dropped beyond `maxBytes` (an LRU rather
 * than a Map that starts over, so a working set larger than the budget degrades gently instead of
 * thrashing). Counted in bytes, not entries: request targets and Accept values are client-chosen
 * and up to the header size limit long, so a count alone would not bound the memory.
 */
export class UrlMemory {
  private readonly lru: LRUCache<string, Remembered>;
  constructor(maxBytes: number) {
    this.lru = new LRUCache<string, Remembered>({
      maxSize: maxBytes,
      // the key's characters plus the memo object, its Map slot and LRU bookkeeping
      sizeCalculation: (_memo, url) => url.length + 160,
    });
  }

  get(url: string): Remembered | undefined {
    return this.lru.get(url);
  }

  set(url: string, memo: Remembered): void {
    this.lru.set(url, memo);
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }
}

/** The request headers the shortcut reads (see scanHeaders). */
export interface ShortcutHeaders {
  range: boolean;
  ifNoneMatch: string | undefined;
  accept: string | undefined;
}

const seen: ShortcutHeaders = { range: false, ifNoneMatch: undefined, accept: undefined };

/**
 * Finds Range, If-None-Match and Accept in one pass over `req.rawHeaders`. Reading `req.headers`
 * would make Node build an object of every header (each name lower-cased) on every hit. Repeated
 * headers are joined with ", " as Node joins them. Returns one shared object, valid until the next
 * call (the shortcut is synchronous).
 */
export function scanHeaders(raw: readonly string[]): ShortcutHeaders {
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
