// What a pixels or thumbnails request target names (format, key, the thumbnail type), parsed once
// per request. The hit shortcut parses every such target before the routes see it; when it
// declines (a miss, a Range, ?rect…) it leaves what it parsed with the request, and the route
// starts from that instead of parsing, verifying and looking the format up again.
import type http from 'node:http';
import { PixtableError } from '../errors.js';
import type { Format } from '../formats.js';
import type { PixelCache } from './cache-api.js';
import { keyFromUrl } from './keys.js';
import type { Negotiated } from './negotiate.js';

export const PIXELS_PREFIX = '/v1/pixels/';
export const THUMBS_PREFIX = '/v1/thumbnails/';

export type TargetRoute = 'pixels' | 'thumbnails';

export interface Target {
  readonly kind: 'target';
  /** The raw request target this was parsed from. */
  readonly url: string;
  readonly route: TargetRoute;
  readonly formatName: string;
  readonly key: string;
  readonly format: Format;
  /**
   * Until when (ms since the epoch) the URL's signature was found valid: Infinity for a signature
   * without exp, -Infinity when it was not checked (the server does not sign).
   */
  readonly signedUntil: number;
  /** Thumbnails: the type chosen from ?type and Accept, when the query was plain enough to. */
  thumb: Negotiated | undefined;
}

/** Splits `/<prefix><format>/<key...>` (raw, encoded) into the format name and decoded key. */
export function formatAndKey(rawUrl: string, prefixLength: number): { formatName: string; key: string } {
  const slash = rawUrl.indexOf('/', prefixLength);
  const q = rawUrl.indexOf('?');
  if (slash < 0 || (q >= 0 && slash > q))
    throw new PixtableError('INVALID_KEY', 'the URL has no key after the format');
  let formatName: string;
  try {
    formatName = decodeURIComponent(rawUrl.slice(prefixLength, slash));
  } catch {
    throw new PixtableError('UNKNOWN_FORMAT', 'malformed percent-encoding in the format name');
  }
  return { formatName, key: keyFromUrl(rawUrl, slash + 1) };
}

/** Parses `url` for `route`; throws INVALID_KEY, UNKNOWN_FORMAT (and CACHE_CLOSED). */
export function parseTarget(
  url: string,
  route: TargetRoute,
  cache: PixelCache,
  signedUntil = -Infinity,
): Target {
  const { formatName, key } = formatAndKey(
    url,
    route === 'pixels' ? PIXELS_PREFIX.length : THUMBS_PREFIX.length,
  );
  const format = cache.format(formatName);
  return { kind: 'target', url, route, formatName, key, format, signedUntil, thumb: undefined };
}

// Requests are the keys, so a note lives exactly as long as its request. A WeakMap rather than a
// property: IncomingMessages keep one shape, and Node's own code on them stays monomorphic.
const notes = new WeakMap<http.IncomingMessage, Target>();

/** Leaves `t` with `req` for the route that will answer it. */
export function passTarget(req: http.IncomingMessage, t: Target | undefined): void {
  if (t !== undefined) notes.set(req, t);
}

/** What was parsed of `req` before fastify saw it, if anything (and if it is about this very URL). */
export function targetOf(req: http.IncomingMessage): Target | undefined {
  const t = notes.get(req);
  return t !== undefined && t.url === req.url ? t : undefined;
}

/** What the shortcut parsed of `req` for `route`, or the same parsed now (inject(), lane off…). */
export function targetFor(req: http.IncomingMessage, route: TargetRoute, cache: PixelCache): Target {
  const t = targetOf(req);
  return t !== undefined && t.route === route ? t : parseTarget(req.url ?? '', route, cache);
}
