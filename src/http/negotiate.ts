// Choosing the thumbnail type: explicit `?type=` wins; otherwise the Accept header. WebP/AVIF are
// only sent to clients that name them (a bare `*/*` also comes from clients that cannot decode
// them); everything else gets the safe type for the pixel format (PNG keeps alpha, JPEG is smaller).
import { PixtableError } from '../errors.js';
import type { EncodedType } from '../formats.js';

export const MIME: Readonly<Record<EncodedType, string>> = {
  webp: 'image/webp',
  avif: 'image/avif',
  png: 'image/png',
  jpeg: 'image/jpeg',
};

const BY_MIME = new Map<string, EncodedType>([
  ['image/webp', 'webp'],
  ['image/avif', 'avif'],
  ['image/png', 'png'],
  ['image/jpeg', 'jpeg'],
  ['image/jpg', 'jpeg'],
]);

interface AcceptItem {
  type: string;
  q: number;
  order: number;
}

function parseAccept(accept: string): AcceptItem[] {
  const out: AcceptItem[] = [];
  let order = 0;
  for (const part of accept.split(',')) {
    const [rawType, ...params] = part.split(';');
    const type = (rawType ?? '').trim().toLowerCase();
    if (type === '') continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m && m[1] !== undefined) {
        const v = Number(m[1]);
        q = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
      }
    }
    out.push({ type, q, order: order++ });
  }
  return out;
}

export interface Negotiated {
  type: EncodedType;
  /** true when the Accept header decided (the response must carry `Vary: Accept`). */
  negotiated: boolean;
}

/**
 * @param preferred server preference for modern types the client names (config PIXTABLE_THUMB_TYPES)
 * @param hasAlpha whether the pixel format carries alpha (PNG fallback) or not (JPEG fallback)
 */
export function chooseType(
  typeParam: string | undefined,
  accept: string | undefined,
  preferred: readonly EncodedType[],
  hasAlpha: boolean,
): Negotiated {
  if (typeParam !== undefined) {
    const t = typeParam.toLowerCase() === 'jpg' ? 'jpeg' : typeParam.toLowerCase();
    if (t in MIME) return { type: t as EncodedType, negotiated: false };
    throw new PixtableError(
      'INVALID_PARAMETER',
      `type must be one of webp, avif, png, jpeg, got ${JSON.stringify(typeParam.slice(0, 32))}`,
    );
  }
  const fallback: EncodedType = hasAlpha ? 'png' : 'jpeg';
  if (accept === undefined || accept.trim() === '') return { type: fallback, negotiated: true };
  const items = parseAccept(accept);
  const qOf = (t: EncodedType): number => {
    // most specific match decides (RFC 9110 §12.5.1)
    let best: number | undefined;
    let spec = -1;
    for (const it of items) {
      const s =
        it.type === MIME[t] || (t === 'jpeg' && it.type === 'image/jpg')
          ? 2
          : it.type === 'image/*'
            ? 1
            : it.type === '*/*'
              ? 0
              : -1;
      if (s > spec) {
        spec = s;
        best = it.q;
      }
    }
    return best ?? 0;
  };
  const named = (t: EncodedType): boolean => items.some((it) => BY_MIME.get(it.type) === t && it.q > 0);
  // Candidates: preferred modern types the client names explicitly, then the safe fallbacks.
  const candidates: EncodedType[] = [];
  for (const t of preferred) if (named(t) && !candidates.includes(t)) candidates.push(t);
  for (const t of [fallback, hasAlpha ? 'jpeg' : 'png'] as EncodedType[])
    if (!candidates.includes(t)) candidates.push(t);
  for (const t of ['webp', 'avif'] as EncodedType[])
    if (named(t) && !candidates.includes(t)) candidates.push(t);
  let bestType: EncodedType | undefined;
  let bestQ = 0;
  for (const t of candidates) {
    const q = qOf(t);
    if (q > bestQ) {
      bestQ = q;
      bestType = t;
    }
  }
  if (bestType === undefined) {
    throw new PixtableError(
      'NOT_ACCEPTABLE',
      `Accept ${JSON.stringify(accept.slice(0, 100))} names none of image/webp, image/avif, image/png, image/jpeg`,
    );
  }
  return { type: bestType, negotiated: true };
}

const WITH_ALPHA: ReadonlySet<string> = new Set(['rgba8', 'rgba8-premultiplied', 'bgra8-premultiplied']);

/** Whether chooseType's fallback for `pixelFormat` must keep alpha (PNG) rather than be JPEG. */
export function hasAlpha(pixelFormat: string): boolean {
  return WITH_ALPHA.has(pixelFormat);
}
