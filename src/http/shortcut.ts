// The hit shortcut: hits of whole entries and of cached thumbnails answered before fastify, with
// no request/reply objects, router, hooks or per-request child logger (at 16 KiB bodies those
// cost more than the response itself). It is reached from the lane (lane/, straight from the
// socket) and from Node's request listener (connections the lane is not reading, or the lane
// off), and answers from what it remembers of URLs answered before (shortcut-memory.ts).
//
// Whatever it does not answer completely (misses, Range on pixels, ?rect, errors, bad keys) goes
// to the fastify routes, which produce the same bytes and every error. What it parsed of such a
// request goes with it (target.ts), so the route neither parses the URL nor checks its signature
// again, and looks the entry up once: with `cache.get()`, which decodes on a miss.
import type http from 'node:http';
import type { ServerConfig } from '../config/env.js';
import type { EntryRef } from '../types.js';
import type { PixelCache } from './cache-api.js';
import type { LaneOut, LaneRequest } from './lane/index.js';
import type { Metrics, RouteCounter } from './metrics.js';
import { chooseType, hasAlpha, type Negotiated } from './negotiate.js';
import type { RawResponses } from './raw-response.js';
import {
  BY_ACCEPT,
  UrlMemory,
  scanHeaders,
  type PixelsMemo,
  type ShortcutHeaders,
  type ThumbMemo,
} from './shortcut-memory.js';
import { verifyUrl } from './sign.js';
import { PIXELS_PREFIX, THUMBS_PREFIX, parseTarget, passTarget, type Target } from './target.js';
import { sendThumb, writeThumb, type EncodedThumb, type ThumbCache } from './thumbcache.js';
import { Families, deviceBox, variantAsk, variantKey } from './variants.js';

/** The query parameters of a variant (variants.ts). */
const VARIANT_PARAMS: ReadonlySet<string> = new Set(['w', 'h', 'dpr']);
/** What the shortcut knows of Client Hints: nothing (requests that ask for them are the route's). */
const NO_HINTS = { dpr: undefined, width: undefined } as const;

function noop(): void {}

/** Memory for remembered URLs: about 16 000 typical targets. */
const MEMORY_BYTES = 4 << 20;

/** A thumbnail memo found current, with the encoding to send. */
interface ThumbHit {
  readonly kind: 'thumbnailHit';
  readonly memo: ThumbMemo;
  readonly thumb: EncodedThumb;
}

/** What looking a URL up gives: an answer, or what was parsed of it for the route. */
type Found = PixelsMemo | ThumbHit | Target | undefined;

export interface ShortcutOptions {
  cache: PixelCache;
  config: Pick<ServerConfig, 'signingKeys' | 'thumbTypes' | 'logRequests' | 'variantWidths'>;
  thumbs: ThumbCache;
  raw: RawResponses;
  metrics: Metrics;
  /** `ready` false once shutdown started: then every request goes to the routes. */
  state: { readonly ready: boolean };
  /** Where request lines go (when config.logRequests). */
  log: { info(fields: object, msg: string): void };
}

export class Shortcut {
  /** Responses the shortcut answered, the lane's included. */
  responses = 0;
  /** Of those, the ones written through the lane. */
  laneResponses = 0;
  private readonly memory = new UrlMemory(MEMORY_BYTES);
  private readonly cache: PixelCache;
  private readonly thumbs: ThumbCache;
  private readonly raw: RawResponses;
  private readonly state: { readonly ready: boolean };
  private readonly log: ShortcutOptions['log'];
  private readonly config: ShortcutOptions['config'];
  private readonly signing: boolean;
  private readonly logRequests: boolean;
  private readonly families: Families;
  private readonly variantSizes: readonly number[];
  private readonly pixelsCounter: RouteCounter;
  private readonly thumbsCounter: RouteCounter;
  /**
   * Whether a remembered pixels ref may answer now. A writer's: current() (nothing else writes
   * the slot before this turn ends). A read-only process's: current() and a cross-process pin
   * (the writer is another process), released by raw-response.ts once the body is written.
   */
  private readonly hold: (ref: EntryRef) => boolean;

  constructor(o: ShortcutOptions) {
    this.cache = o.cache;
    this.thumbs = o.thumbs;
    this.raw = o.raw;
    this.state = o.state;
    this.log = o.log;
    this.config = o.config;
    this.signing = o.config.signingKeys.length > 0;
    this.logRequests = o.config.logRequests;
    this.families = new Families(o.cache.formats);
    this.variantSizes = o.config.variantWidths;
    this.pixelsCounter = o.metrics.route('/v1/pixels/:format/*');
    this.thumbsCounter = o.metrics.route('/v1/thumbnails/:format/*');
    const cache = o.cache;
    this.hold = cache.readOnly
      ? (ref) => cache.current(ref) && cache.pinRef(ref)
      : (ref) => cache.current(ref);
  }

  /**
   * Node's request listener's part: answers a hit and returns true, or returns false having
   * written nothing, leaving what it parsed with `req` (passTarget) for the route.
   */
  readonly node = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (!this.state.ready) return false;
    const t0 = this.logRequests ? performance.now() : 0;
    const method = req.method;
    const isHead = method === 'HEAD';
    if (method !== 'GET' && !isHead) return false;
    const url = req.url ?? '';
    const hd = scanHeaders(req.rawHeaders);
    const found = this.find(url, hd);
    if (found === undefined || found.kind === 'target') {
      passTarget(req, found);
      return false;
    }
    const status =
      found.kind === 'pixels'
        ? this.raw.writeHit(res, found.heads, found.ref, isHead, hd.ifNoneMatch)
        : writeThumb(res, found.thumb, found.memo.vary, hd.ifNoneMatch);
    this.done(
      found,
      method,
      url,
      isHead,
      status,
      this.logRequests ? req.headers['x-request-id'] : undefined,
      t0,
    );
    return true;
  };

  /** LaneOptions.handle: the same for a request the lane parsed, written through the lane. */
  readonly lane = (req: LaneRequest, out: LaneOut): boolean => {
    if (!this.state.ready) return false;
    const t0 = this.logRequests ? performance.now() : 0;
    const found = this.find(req.target, req);
    if (found === undefined || found.kind === 'target') {
      req.note = found;
      return false;
    }
    const status =
      found.kind === 'pixels'
        ? this.raw.sendHit(out, found.heads, found.ref, req.isHead, req.ifNoneMatch)
        : sendThumb(out, found.thumb, found.memo.vary, req.isHead, req.ifNoneMatch);
    this.laneResponses++;
    this.done(found, req.isHead ? 'HEAD' : 'GET', req.target, req.isHead, status, req.requestId, t0);
    return true;
  };

  /** The remembered answer to `url` if it is still current, else a fresh look (remember()). */
  private find(url: string, hd: ShortcutHeaders): Found {
    let m = this.memory.get(url);
    if (m === BY_ACCEPT) m = this.memory.get(`${url}\n${hd.accept ?? ''}`);
    if (m === undefined || m.kind === 'byAccept' || (m.expiresAt !== Infinity && m.expiresAt < Date.now()))
      return this.remember(url, hd);
    if (m.kind === 'pixels') {
      // Ranges are the route's: remember() parses for it without looking the entry up.
      return !hd.range && this.hold(m.ref) ? m : this.remember(url, hd);
    }
    const thumb = this.thumbs.get(m.thumbKey);
    if (thumb === undefined || !this.cache.current(m.ref)) return this.remember(url, hd);
    return { kind: 'thumbnailHit', memo: m, thumb };
  }

  /**
   * The full look: parses and checks the URL, finds the entry (and cached encoding) and remembers
   * how to answer it. Returns the parsed target instead when the route must answer; undefined when
   * there is nothing to hand over (not a pixels or thumbnails URL, or an error the route will
   * find again and answer).
   */
  private remember(url: string, hd: ShortcutHeaders): Found {
    const isPixels = url.startsWith(PIXELS_PREFIX);
    if (!isPixels && !url.startsWith(THUMBS_PREFIX)) return undefined;
    // Only requests whose parameters the shortcut fully understands are answered here; for the
    // rest (rect, …) it still parses the path for the route.
    let answerable = !(isPixels && hd.range);
    let typeParam: string | undefined;
    let typeParams = 0;
    // a variant's w, h, dpr as written (variantAsk() takes plain digits only: anything
    // percent-encoded or repeated is the route's, whose query parser decodes it)
    let variantQuery: Record<string, string> | undefined;
    const qi = url.indexOf('?');
    if (qi >= 0) {
      for (const part of url.slice(qi + 1).split('&')) {
        if (part.startsWith('sig=') || part.startsWith('exp=')) continue;
        const eq = part.indexOf('=');
        const name = eq > 0 ? part.slice(0, eq) : '';
        if (!isPixels && name === 'type') {
          typeParam = part.slice(5);
          typeParams++;
        } else if (!isPixels && VARIANT_PARAMS.has(name)) {
          variantQuery ??= {};
          if (name in variantQuery) answerable = false;
          variantQuery[name] = part.slice(eq + 1);
        } else answerable = false;
      }
    }
    let t: Target;
    try {
      const signedUntil = this.signing
        ? verifyUrl('GET', url, this.config.signingKeys, Date.now())
        : -Infinity;
      t = parseTarget(url, isPixels ? 'pixels' : 'thumbnails', this.cache, signedUntil);
    } catch {
      return undefined;
    }
    if (!answerable) return t;
    let choice: Negotiated | undefined;
    if (!isPixels) {
      try {
        choice = chooseType(typeParam, hd.accept, this.config.thumbTypes, hasAlpha(t.format.pixelFormat));
      } catch {
        return t; // NOT_ACCEPTABLE, INVALID_PARAMETER: the route throws them, from this target
      }
      // The route reads ?type through fastify's query parser, which makes two of them an array:
      // the choice made here is the route's only for a single one.
      if (typeParams <= 1) t.thumb = choice;
    }
    if (variantQuery !== undefined && choice !== undefined)
      return this.rememberVariant(t, variantQuery, choice, url, hd);
    let ref: EntryRef | undefined;
    try {
      ref = this.cache.peekRef(t.formatName, t.key);
    } catch {
      return t; // the route's get() meets the same error
    }
    if (ref === undefined) return t; // a miss: the route decodes
    if (choice === undefined) {
      if (this.cache.readOnly && !this.cache.pinRef(ref)) return t; // being recycled: the route looks again
      const m: PixelsMemo = {
        kind: 'pixels',
        ref,
        heads: this.raw.whole(ref, ref.transientPixels.length),
        expiresAt: this.expiresAt(t),
      };
      this.memory.set(url, m);
      return m;
    }
    return this.rememberThumb(t, ref, `${ref.etag}\u0000${choice.type}`, choice, url, hd);
  }

  /**
   * A variant URL whose encoding is cached: remembered like a thumbnail, under its master's ref.
   * Those asking for a Client Hint (`auto`) are the route's: the lane does not read hint headers.
   */
  private rememberVariant(
    t: Target,
    query: Record<string, string>,
    choice: Negotiated,
    url: string,
    hd: ShortcutHeaders,
  ): Found {
    try {
      const ask = variantAsk(query);
      if (ask === undefined || ask.w === 'auto' || ask.dpr === 'auto') return t;
      const box = deviceBox(ask, NO_HINTS, this.variantSizes);
      const picked = this.families.pick(t.format, box, (name) => this.cache.peekRef(name, t.key), noop);
      if (picked === undefined) return t; // the route loads the entry
      return this.rememberThumb(
        t,
        picked.entry,
        variantKey(picked.entry.etag, choice.type, picked.cut, ''),
        choice,
        url,
        hd,
      );
    } catch {
      return t; // INVALID_VARIANT, VARIANT_TOO_LARGE, a bad key: the route throws them
    }
  }

  private expiresAt(t: Target): number {
    return this.signing ? t.signedUntil : Infinity;
  }

  /** Remembers a cached encoding (`thumbKey` in the LRU) of `ref`, or hands `t` to the route. */
  private rememberThumb(
    t: Target,
    ref: EntryRef,
    thumbKey: string,
    choice: Negotiated,
    url: string,
    hd: ShortcutHeaders,
  ): Found {
    const thumb = this.thumbs.get(thumbKey);
    if (thumb === undefined) return t; // not encoded yet: the route encodes
    const expiresAt = this.expiresAt(t);
    const m: ThumbMemo = { kind: 'thumbnail', ref, thumbKey, vary: choice.negotiated, expiresAt };
    if (choice.negotiated) {
      this.memory.set(url, BY_ACCEPT);
      this.memory.set(`${url}\n${hd.accept ?? ''}`, m);
    } else {
      this.memory.set(url, m);
    }
    return { kind: 'thumbnailHit', memo: m, thumb };
  }

  private done(
    found: PixelsMemo | ThumbHit,
    method: string,
    url: string,
    isHead: boolean,
    status: number,
    reqId: unknown,
    t0: number,
  ): void {
    (found.kind === 'pixels' ? this.pixelsCounter : this.thumbsCounter).inc(isHead, status);
    this.responses++;
    if (this.logRequests) {
      this.log.info(
        {
          // f-: answered before fastify, which numbers its own request ids
          reqId: reqId ?? `f-${this.responses}`,
          method,
          url,
          status,
          ms: Math.round((performance.now() - t0) * 10) / 10,
        },
        'request',
      );
    }
  }
}
