// A placeholder from an entry's pixels: the entry unpacked to rows libvips reads (pixels.ts),
// shrunk to ThumbHash's 100 px limit and its dominant colour found (native/sharp.ts), hashed
// (native/placeholders.ts). The entry is the smallest of its family, so this is a few thousand
// pixels of work and never a second decode of the source.
import type { PixelFormat } from '../formats.js';
import type { Placeholder } from '../types.js';
import { downsampleRgba } from '../native/sharp.js';
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

export async function computePlaceholder(v: PixelSource): Promise<StoredPlaceholder> {
  const raw = toEncodable(v.pixels, v.width, v.height, v.stride, v.pixelFormat);
  const small = await downsampleRgba(raw, THUMBHASH_MAX_SIDE);
  return {
    thumbHash: Buffer.from(thumbHashOf(small.width, small.height, small.data)),
    dominant: small.dominant,
  };
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** The public shape: ThumbHash in base64, the colour as CSS writes it. */
export function publicPlaceholder(p: StoredPlaceholder): Placeholder {
  const { r, g, b } = p.dominant;
  return { thumbHash: p.thumbHash.toString('base64'), dominantColor: `#${hex2(r)}${hex2(g)}${hex2(b)}` };
}
