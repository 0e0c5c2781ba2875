// Source keys from request paths. The router would hand us a decoded wildcard; we decode the raw
// path ourselves, segment by segment, so that an encoded "/" (%2F) cannot merge segments, "%2e%2e"
// is seen as ".." and refused here, and malformed escapes are a clear 400 — before the engine's
// own containment checks (which stay the authority on escaping the sources root).
import { PixtableError } from '../errors.js';
import { MAX_KEY_BYTES, MAX_SEGMENT_BYTES } from '../engine/sources.js';

function invalid(detail: string): PixtableError {
  return new PixtableError('INVALID_KEY', detail);
}

/**
 * @param rawPath the request target's path part after the route prefix (no leading "/"),
 *   still percent-encoded, without the query string.
 */
// The common case: plain segments of RFC 3986 path characters without escapes, none "." or "..".
// Such a key decodes to itself, so the per-segment decoding below is skipped on the hot path.
const PLAIN_KEY =
  /^(?!\.\.?(?:\/|$))[A-Za-z0-9!$&'()*+,;=:@._~-]+(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9!$&'()*+,;=:@._~-]+)*$/;

export function decodeKey(rawPath: string): string {
  // A plain key is ASCII: characters are bytes, so a short one has no segment over the limit.
  if (
    rawPath.length <= MAX_KEY_BYTES &&
    PLAIN_KEY.test(rawPath) &&
    (rawPath.length <= MAX_SEGMENT_BYTES || segmentsFit(rawPath))
  )
    return rawPath;
  if (rawPath === '') throw invalid('the key is empty');
  const segments = rawPath.split('/');
  const out: string[] = [];
  for (const raw of segments) {
    if (raw === '') throw invalid('the key has an empty path segment (leading, trailing or doubled "/")');
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      throw invalid(`malformed percent-encoding in ${JSON.stringify(raw.slice(0, 64))}`);
    }
    if (seg === '.' || seg === '..') throw invalid('"." and ".." segments are not allowed');
    if (seg.includes('/') || seg.includes('\\'))
      throw invalid('an encoded "/" or "\\" inside a segment is not allowed');
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(seg))
      throw invalid('control characters (including NUL) are not allowed');
    out.push(seg);
  }
  const key = out.join('/');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw invalid(`the key is longer than ${MAX_KEY_BYTES} bytes`);
  if (out.some((seg) => Buffer.byteLength(seg) > MAX_SEGMENT_BYTES))
    throw invalid(`a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
  return key;
}

function segmentsFit(plain: string): boolean {
  for (let from = 0; from < plain.length;) {
    let end = plain.indexOf('/', from);
    if (end < 0) end = plain.length;
    if (end - from > MAX_SEGMENT_BYTES) return false;
    from = end + 1;
  }
  return true;
}

/** Splits a raw request target into the encoded path after `prefix` and the query string. */
export function keyFromUrl(rawUrl: string, prefixLength: number): string {
  const q = rawUrl.indexOf('?');
  return decodeKey(q < 0 ? rawUrl.slice(prefixLength) : rawUrl.slice(prefixLength, q));
}

/** Percent-encodes a key for use in a URL path (each segment separately; "/" kept). */
export function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
