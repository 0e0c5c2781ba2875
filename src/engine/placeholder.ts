// A placeholder from straight rows — the decoder's output at ingest, or an entry's pixels
// unpacked (pixels.ts) when a writer redoes a missing one — shrunk
// to ThumbHash's 100 px limit by libvips only when larger (native/sharp.ts; the default
// family's smallest entry, 64 px, is packed here in a few µs instead of a pipeline's thread hops),
// its dominant colour found, hashed (native/placeholders.ts). The entry is the smallest of its
// family, so this is a few thousand pixels of work and never a second decode of the source.
import type { PixelFormat } from '../formats.js';
import type { Placeholder } from '../types.js';
import { downsampleRgba, type RawImage, type SmallImage } from '../native/sharp.js';
import { THUMBHASH_MAX_SIDE, thumbHashOf } from '../native/placeholders.js';
import { toEncodable } from './pixels.js';
import type { StoredPlaceholder } from './placeholder-file.js';

export interface PixelSource {
  readonly pixels: Buffer;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly pixelFormat: PixelFormat;
}

/** `r` (at most `THUMBHASH_MAX_SIDE` a side) as tightly packed straight RGBA. */
function packRgba(r: RawImage): SmallImage {
  const data = Buffer.allocUnsafe(r.width * r.height * 4);
  for (let y = 0, o = 0; y < r.height; y++) {
    for (let x = 0, i = y * r.rowPixels * r.channels; x < r.width; x++, i += r.channels, o += 4) {
      const v = r.data[i]!;
      data[o] = v;
      data[o + 1] = r.channels === 1 ? v : r.data[i + 1]!;
      data[o + 2] = r.channels === 1 ? v : r.data[i + 2]!;
      data[o + 3] = r.channels === 4 && !r.dropAlpha ? r.data[i + 3]! : 255;
    }
  }
  return { data, width: r.width, height: r.height };
}

/**
 * The most common colour: pixels counted in 4096 bins (16 levels per channel, libvips' `dominant`
 * histogram), fully transparent ones left out; the answer is the mean of the fullest bin's pixels
 * (nearer the image's real colour than the bin's centre). All transparent: black.
 */
export function dominantColour(rgba: Uint8Array): { r: number; g: number; b: number } {
  const count = new Uint32Array(4096);
  const sums = new Float64Array(4096 * 3);
  let best = -1;
  for (let i = 0; i + 3 < rgba.length; i += 4) {
    if (rgba[i + 3] === 0) continue;
    const r = rgba[i]!;
    const g = rgba[i + 1]!;
    const b = rgba[i + 2]!;
    const bin = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
    count[bin]!++;
    sums[bin * 3]! += r;
    sums[bin * 3 + 1]! += g;
    sums[bin * 3 + 2]! += b;
    if (best < 0 || count[bin]! > count[best]!) best = bin;
  }
  if (best < 0) return { r: 0, g: 0, b: 0 };
  const n = count[best]!;
  const mean = (c: number) => Math.round(sums[best * 3 + c]! / n);
  return { r: mean(0), g: mean(1), b: mean(2) };
}

/** The placeholder of an entry in the table (a writer's info() redoing a missing one). */
export function computePlaceholder(v: PixelSource): Promise<StoredPlaceholder> {
  return placeholderOfRows(toEncodable(v.pixels, v.width, v.height, v.stride, v.pixelFormat));
}

/**
 * The placeholder of straight rows: at ingest, the decoder's output for the smallest format,
 * before the table converts it in place — so the writer never maps the entry to read it back.
 */
export async function placeholderOfRows(raw: RawImage): Promise<StoredPlaceholder> {
  const small =
    raw.width <= THUMBHASH_MAX_SIDE && raw.height <= THUMBHASH_MAX_SIDE
      ? packRgba(raw)
      : await downsampleRgba(raw, THUMBHASH_MAX_SIDE);
  return {
    thumbHash: Buffer.from(thumbHashOf(small.width, small.height, small.data)),
    dominant: dominantColour(small.data),
  };
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** The public shape: ThumbHash in base64, the colour as CSS writes it. */
export function publicPlaceholder(p: StoredPlaceholder): Placeholder {
  const { r, g, b } = p.dominant;
  return { thumbHash: p.thumbHash.toString('base64'), dominantColor: `#${hex2(r)}${hex2(g)}${hex2(b)}` };
}
