// Encoded thumbnails, kept in a byte-bounded LRU so a hot thumbnail is encoded once. Keys include
// the entry's ETag (which changes whenever the entry is rewritten), so a replaced source can never
// be answered with the old encoding; stale encodings just age out. Concurrent requests for one
// missing encoding share a single encode.
import { LRUCache } from 'lru-cache';
import type http from 'node:http';
import { rawHead } from './head-bytes.js';
import type { LaneOut } from './lane/index.js';
import { ACCEPT_CH } from './variants.js';

export interface EncodedThumb {
  body: Buffer;
  /** Strong validator of this encoding. */
  etag: string;
  contentType: string;
  /** Pre-rendered Content-Length value (no number→string per hit). */
  length: string;
  /** Header lists built once per encoding, so a hit writes one prepared array. */
  headers: ThumbHeaders;
  /** The same four as status line + header bytes, for the fast lane. */
  raw: RawThumbHeads;
}

export interface RawThumbHeads {
  ok: Buffer;
  okVary: Buffer;
  notModified: Buffer;
  notModifiedVary: Buffer;
}

export interface ThumbHeaders {
  ok: string[];
  /** the same with `Vary: Accept`, for types chosen from the Accept header */
  okVary: string[];
  notModified: string[];
  notModifiedVary: string[];
}

/**
 * An encoding with its response headers (`extra`: headers every response carries, e.g. CORS;
 * `hints`: the Client Hints a variant was chosen by, which `Vary` names beside Accept).
 */
export function encodedThumb(
  body: Buffer,
  etag: string,
  contentType: string,
  cacheControl: string,
  extra: readonly string[] = [],
  hints = '',
): EncodedThumb {
  const length = String(body.length);
  // Accept-CH: a browser that honours it sends Sec-CH-DPR / Sec-CH-Width for ?dpr=auto, ?w=auto
  const validators = ['ETag', etag, 'Cache-Control', cacheControl, 'Accept-CH', ACCEPT_CH, ...extra];
  const plain = hints === '' ? validators : [...validators, 'Vary', hints];
  const vary = [...validators, 'Vary', hints === '' ? 'Accept' : `Accept, ${hints}`];
  const ok = ['Content-Type', contentType, 'Content-Length', length];
  const headers: ThumbHeaders = {
    ok: [...ok, ...plain],
    okVary: [...ok, ...vary],
    notModified: plain,
    notModifiedVary: vary,
  };
  return {
    body,
    etag,
    contentType,
    length,
    headers,
    raw: {
      ok: rawHead(200, headers.ok),
      okVary: rawHead(200, headers.okVary),
      notModified: rawHead(304, headers.notModified),
      notModifiedVary: rawHead(304, headers.notModifiedVary),
    },
  };
}

export class ThumbCache {
  private readonly lru: LRUCache<string, EncodedThumb> | undefined;
  private readonly pending = new Map<string, Promise<EncodedThumb>>();

  constructor(maxBytes: number) {
    // 0 disables caching (every request encodes), useful to measure the encoder.
    this.lru =
      maxBytes > 0
        ? new LRUCache<string, EncodedThumb>({
            maxSize: maxBytes,
            sizeCalculation: (v) => Math.max(1, v.body.length + 512),
          })
        : undefined;
  }

  get(key: string): EncodedThumb | undefined {
    return this.lru?.get(key);
  }

  /** Returns the cached encoding or runs `encode` once for all concurrent callers. */
  async getOrEncode(key: string, encode: () => Promise<EncodedThumb>): Promise<EncodedThumb> {
    const hit = this.lru?.get(key);
    if (hit) return hit;
    let p = this.pending.get(key);
    if (!p) {
      p = encode().then(
        (v) => {
          this.pending.delete(key);
          this.lru?.set(key, v);
          return v;
        },
        (e: unknown) => {
          this.pending.delete(key);
          throw e;
        },
      );
      this.pending.set(key, p);
    }
    return p;
  }

  get bytes(): number {
    return this.lru?.calculatedSize ?? 0;
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }

  clear(): void {
    this.lru?.clear();
  }
}

/** Derives a per-type validator from an entry ETag (quoted or not, weak or strong). */
export function deriveEtag(entryEtag: string, suffix: string): string {
  const weak = entryEtag.startsWith('W/');
  const bare = (weak ? entryEtag.slice(2) : entryEtag).replace(/^"|"$/g, '');
  return `${weak ? 'W/' : ''}"${bare}-${suffix}"`;
}

/** RFC 9110 If-None-Match: weak comparison; `*` matches anything. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  if (ifNoneMatch === etag) return true; // the common case: the client echoes our header
  const opaque = etag.startsWith('W/') ? etag.slice(2) : etag;
  for (const raw of ifNoneMatch.split(',')) {
    const t = raw.trim();
    if (t === '*') return true;
    if ((t.startsWith('W/') ? t.slice(2) : t) === opaque) return true;
  }
  return false;
}

/**
 * An encoded thumbnail, or its 304, on Node's response (the route's and the shortcut's answer
 * alike); `vary`: the type came from Accept. Returns the status.
 */
export function writeThumb(
  res: http.ServerResponse,
  t: EncodedThumb,
  vary: boolean,
  ifNoneMatch: string | undefined,
): 200 | 304 {
  const h = t.headers;
  if (etagMatches(ifNoneMatch, t.etag)) {
    res.writeHead(304, vary ? h.notModifiedVary : h.notModified);
    res.end();
    return 304;
  }
  res.writeHead(200, vary ? h.okVary : h.ok);
  res.end(t.body);
  return 200;
}

/** writeThumb() through the lane, with the encoding's prepared head bytes. */
export function sendThumb(
  out: LaneOut,
  t: EncodedThumb,
  vary: boolean,
  isHead: boolean,
  ifNoneMatch: string | undefined,
): 200 | 304 {
  const r = t.raw;
  if (etagMatches(ifNoneMatch, t.etag)) {
    out.send(vary ? r.notModifiedVary : r.notModified, undefined);
    return 304;
  }
  // the encoding is a JS Buffer the queued write keeps alive: nothing to pin
  out.send(vary ? r.okVary : r.ok, isHead ? undefined : t.body);
  return 200;
}
