// Responsive variants of thumbnails (`?w=`, `?h=`, `?dpr=`, Client Hints): an encoding of another
// size cut from decoded pixels already in the tables, never from the source while one is there.
// This module decides what a variant is — its box in device pixels (snapped to the configured
// sizes, so one key has a bounded number of them), which cached entry of the key's family is its
// master, its exact output size — and how it is named in the encoded LRU. The route
// (routes/thumbnails.ts) and the hit shortcut (shortcut.ts) both ask it, so both name a variant
// the same way; the pixels come from the master through the engine's unpack and sharp's resize.
import { PixtableError } from '../errors.js';
import type { EncodedType, Format } from '../formats.js';
import { toEncodable } from '../engine/pixels.js';
import { loadSharp, type EncodableView } from './encode.js';

/** Device pixel ratios `dpr` may name (`Sec-CH-DPR` is rounded up to one of them). */
export const DPRS: readonly number[] = [1, 2, 3];

/** The largest `w` or `h` a request may name (before `dpr`), as for a format's box. */
const MAX_SIDE = 16384;

/** What the query asked: CSS pixels with `dpr`, or `auto` (a Client Hint decides). */
export interface VariantAsk {
  readonly w: number | 'auto' | undefined;
  readonly h: number | undefined;
  readonly dpr: number | 'auto' | undefined;
}

/** The variant's box in device pixels (either side may be open), and the hints that set it. */
export interface Box {
  readonly width: number | undefined;
  readonly height: number | undefined;
  /** Request headers the box depends on, for `Vary` ('' when none). */
  readonly hints: string;
}

/** The Client Hints a thumbnail response asks for (`Accept-CH`). */
export const ACCEPT_CH = 'Sec-CH-DPR, Sec-CH-Width';

function bad(detail: string): PixtableError {
  return new PixtableError('INVALID_VARIANT', detail);
}

function one(name: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw bad(`${name} is given more than once`);
  return v;
}

function side(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = /^[1-9]\d{0,4}$/.test(text) ? Number(text) : NaN;
  if (!(n <= MAX_SIDE))
    throw bad(`${name} must be an integer 1..${MAX_SIDE}, got ${JSON.stringify(text.slice(0, 32))}`);
  return n;
}

/**
 * The variant a thumbnail query asks for, or undefined for the format's own size. `query` is
 * fastify's parsed query (a repeated parameter is an array). Throws INVALID_VARIANT.
 */
export function variantAsk(query: Readonly<Record<string, unknown>>): VariantAsk | undefined {
  const wText = one('w', query.w);
  const hText = one('h', query.h);
  const dprText = one('dpr', query.dpr);
  if (wText === undefined && hText === undefined && dprText === undefined) return undefined;
  const w = wText === 'auto' ? 'auto' : side('w', wText);
  const h = side('h', hText);
  let dpr: number | 'auto' | undefined;
  if (dprText !== undefined) {
    dpr = dprText === 'auto' ? 'auto' : DPRS.find((d) => String(d) === dprText);
    if (dpr === undefined)
      throw bad(`dpr must be one of ${DPRS.join(', ')} or auto, got ${JSON.stringify(dprText.slice(0, 32))}`);
  }
  if (w === undefined && h === undefined) throw bad('dpr needs w or h');
  if (w === 'auto' && (h !== undefined || dpr !== undefined))
    throw bad('w=auto takes the width from Sec-CH-Width, which counts device pixels: no h or dpr with it');
  return { w, h, dpr };
}

/** The first allowed size ≥ `n`, or undefined beyond the last. */
function snapUp(n: number, sizes: readonly number[]): number | undefined {
  return sizes.find((s) => s >= n);
}

/** A structured-field integer or decimal hint (`2`, `2.625`), or undefined when absent or malformed. */
function hintNumber(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  return /^\d{1,9}(?:\.\d{1,3})?$/.test(t) && Number(t) > 0 ? Number(t) : undefined;
}

/**
 * The box `ask` means, in device pixels, with the allowed `sizes` (ascending). `w=auto` reads
 * `Sec-CH-Width` (already device pixels; beyond the largest size it is the largest, and without it
 * the format's own size is served), `dpr=auto` reads `Sec-CH-DPR` (rounded up to a DPR of DPRS,
 * 1 without it). Hints are advice, so a malformed one counts as absent; query values are not:
 * beyond the largest size is VARIANT_TOO_LARGE.
 */
export function deviceBox(
  ask: VariantAsk,
  headers: { readonly dpr: string | undefined; readonly width: string | undefined },
  sizes: readonly number[],
): Box {
  if (ask.w === 'auto') {
    const hinted = hintNumber(headers.width);
    const width =
      hinted === undefined ? undefined : (snapUp(Math.ceil(hinted), sizes) ?? sizes[sizes.length - 1]);
    return { width, height: undefined, hints: 'Sec-CH-Width' };
  }
  let dpr = 1;
  if (ask.dpr === 'auto') {
    const hinted = hintNumber(headers.dpr);
    if (hinted !== undefined) dpr = DPRS.find((d) => d >= hinted) ?? DPRS[DPRS.length - 1]!;
  } else if (ask.dpr !== undefined) dpr = ask.dpr;
  const snap = (name: string, css: number | undefined): number | undefined => {
    if (css === undefined) return undefined;
    const s = snapUp(css * dpr, sizes);
    if (s === undefined)
      throw new PixtableError(
        'VARIANT_TOO_LARGE',
        `${name} ${css} at dpr ${dpr} is ${css * dpr} device pixels, the largest variant size is ${sizes[sizes.length - 1]}`,
      );
    return s;
  };
  return {
    width: snap('w', ask.w),
    height: snap('h', ask.h),
    hints: ask.dpr === 'auto' ? 'Sec-CH-DPR' : '',
  };
}

/** How a variant is cut from its master: its exact size, and a crop (cover) or a plain scale. */
export interface Cut {
  readonly width: number;
  readonly height: number;
  readonly fit: 'cover' | 'fill';
}

/** The real size of a cached entry (a view or a ref). */
interface Sized {
  readonly width: number;
  readonly height: number;
}

/**
 * The variant of `f` in `box` cut from `master` (an entry of format `m` with real size `mw`×`mh`),
 * or undefined when that entry is smaller than the variant. A variant is never larger than its
 * format's box, and from the format's own entry never larger than that entry (whose size already
 * says whether the format enlarges): asking for more gives the entry's own size.
 */
export function cutFrom(f: Format, box: Box, m: Format, master: Sized): Cut | undefined {
  const { width: mw, height: mh } = master;
  const own = m === f;
  if (f.fit === 'cover') {
    // the format's crop, scaled: the smallest size of its aspect that covers the box
    const s = Math.min(1, Math.max((box.width ?? 0) / f.width, (box.height ?? 0) / f.height) || 1);
    const width = Math.max(1, Math.round(f.width * s));
    const height = Math.max(1, Math.round(f.height * s));
    if (own) return { width, height, fit: 'cover' };
    // the part of the master the crop takes (a cover master of this aspect: all of it)
    const cw = Math.min(mw, (mh * f.width) / f.height);
    const ch = (cw * f.height) / f.width;
    return cw >= width && ch >= height ? { width, height, fit: 'cover' } : undefined;
  }
  const bw = Math.min(box.width ?? Infinity, f.width);
  const bh = Math.min(box.height ?? Infinity, f.height);
  let s = Math.min(bw / mw, bh / mh);
  if (s > 1) {
    if (!own) return undefined;
    s = 1;
  }
  return { width: Math.max(1, Math.round(mw * s)), height: Math.max(1, Math.round(mh * s)), fit: 'fill' };
}

/** Whether an entry of `m` holds what a variant of `f` needs (the same image, unclipped enough). */
function canMaster(m: Format, f: Format): boolean {
  if (m === f) return true;
  if (m.family === undefined || m.family !== f.family || m.pixelFormat !== f.pixelFormat) return false;
  // an inside entry is the whole image; a cover one only serves a cover format of its aspect
  return m.fit === 'inside' || (f.fit === 'cover' && m.width * f.height === m.height * f.width);
}

/** Each format's possible masters, smallest box first (the format itself before larger ones). */
export class Families {
  private readonly masters = new Map<string, readonly Format[]>();

  constructor(formats: readonly Format[]) {
    for (const f of formats) {
      const list = formats
        .filter((m) => canMaster(m, f))
        .sort((a, b) => a.width * a.height - b.width * b.height || (a === f ? -1 : b === f ? 1 : 0));
      this.masters.set(f.name, list);
    }
  }

  /**
   * The smallest cached entry of `f`'s family the variant can be cut from, and the cut: `look`
   * returns a cached entry (never decoding), `drop` lets go of one that was not chosen. Undefined
   * when none is cached: the caller loads `f`'s own entry (the decode path) and cuts from it.
   */
  pick<E extends Sized>(
    f: Format,
    box: Box,
    look: (format: string) => E | undefined,
    drop: (e: E) => void,
  ): { format: Format; entry: E; cut: Cut } | undefined {
    for (const m of this.masters.get(f.name) ?? [f]) {
      const entry = look(m.name);
      if (entry === undefined) continue;
      const cut = cutFrom(f, box, m, entry);
      if (cut !== undefined) return { format: m, entry, cut };
      drop(entry);
    }
    return undefined;
  }
}

/** What names a variant's encoding in the LRU: the master entry, the type, the cut, the hints. */
export function variantKey(masterEtag: string, type: EncodedType, cut: Cut, hints: string): string {
  return `${masterEtag}\u0000${type}\u0000${cutTag(cut)}\u0000${hints}`;
}

/** The cut as an ETag suffix: `320x240c` (a crop) or `320x213` (a scale). */
export function cutTag(cut: Cut): string {
  return `${cut.width}x${cut.height}${cut.fit === 'cover' ? 'c' : ''}`;
}

/** The master's pixels unpacked (stride, premultiplied or BGRA layouts) and cut, then encoded. */
export async function encodeVariant(
  master: EncodableView,
  cut: Cut,
  type: EncodedType,
  quality: number | undefined,
): Promise<Buffer> {
  const m = await loadSharp();
  const raw = toEncodable(master.pixels, master.width, master.height, master.stride, master.pixelFormat);
  return m.resizeEncodeImage(raw, cut, type, quality === undefined ? {} : { quality });
}
