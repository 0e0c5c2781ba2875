// Pixel layout conversions. Decoded output from libvips is tightly packed RGBA, RGB or gray; an
// entry wants the format's layout at the format's stride. `writeEntryPixels` does conversion and
// placement in one pass straight into the mapping: that pass is the only copy on ingest.
import type { PixelFormat } from '../formats.js';

/** Channels libvips must deliver for each pixel format before `writeEntryPixels` runs. */
export const DECODE_CHANNELS: Readonly<Record<PixelFormat, 1 | 3 | 4>> = {
  rgba8: 4,
  'rgba8-premultiplied': 4,
  'bgra8-premultiplied': 4,
  rgbx8: 4,
  rgb8: 3,
  gray8: 1,
  rgb565: 3,
};

type RowWriter = (src: Buffer, s: number, dst: Buffer, d: number, width: number) => void;

const copyRow =
  (bpp: number): RowWriter =>
  (src, s, dst, d, width) => {
    src.copy(dst, d, s, s + width * bpp);
  };

// (c * a + 127) / 255 rounded, computed exactly as ((t + 128) + ((t + 128) >> 8)) >> 8 with t = c*a.
function mul255(c: number, a: number): number {
  const t = c * a + 128;
  return (t + (t >> 8)) >> 8;
}

const premultiplyRow =
  (swapRB: boolean): RowWriter =>
  (src, s, dst, d, width) => {
    const r0 = swapRB ? 2 : 0;
    const b0 = swapRB ? 0 : 2;
    for (let i = 0; i < width; i++, s += 4, d += 4) {
      const a = src[s + 3]!;
      dst[d + r0] = mul255(src[s]!, a);
      dst[d + 1] = mul255(src[s + 1]!, a);
      dst[d + b0] = mul255(src[s + 2]!, a);
      dst[d + 3] = a;
    }
  };

const rgb565Row: RowWriter = (src, s, dst, d, width) => {
  for (let i = 0; i < width; i++, s += 3, d += 2) {
    const v = ((src[s]! >> 3) << 11) | ((src[s + 1]! >> 2) << 5) | (src[s + 2]! >> 3);
    dst[d] = v & 0xff;
    dst[d + 1] = v >> 8;
  }
};

// Chosen once per pixel format, so the per-row loop has no format branches.
const ROW_WRITERS: Readonly<Record<PixelFormat, RowWriter>> = {
  rgba8: copyRow(4),
  'rgba8-premultiplied': premultiplyRow(false),
  'bgra8-premultiplied': premultiplyRow(true),
  rgbx8: copyRow(4),
  rgb8: copyRow(3),
  gray8: copyRow(1),
  rgb565: rgb565Row,
};

/**
 * Writes a tightly packed decoded image (DECODE_CHANNELS[pf] channels) into `dst` at `stride`,
 * converting to `pf`. Row padding is zeroed so entries are byte-for-byte deterministic.
 */
export function writeEntryPixels(
  src: Buffer,
  width: number,
  height: number,
  pf: PixelFormat,
  bytesPerPixel: number,
  dst: Buffer,
  stride: number,
): void {
  const srcStride = width * DECODE_CHANNELS[pf];
  const rowBytes = width * bytesPerPixel;
  const write = ROW_WRITERS[pf];
  if (pf === 'rgba8' && rowBytes === stride) {
    src.copy(dst, 0, 0, srcStride * height);
    return;
  }
  for (let y = 0; y < height; y++) {
    const d = y * stride;
    write(src, y * srcStride, dst, d, width);
    if (rowBytes < stride) dst.fill(0, d + rowBytes, d + stride);
  }
}

/** An image as sharp's raw input wants it. */
export interface EncodableRaw {
  data: Buffer;
  /** width of `data` rows in pixels (may exceed `width` when the stride is reused without a copy) */
  rowPixels: number;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  /** alpha is meaningless (rgbx8): drop it when encoding */
  dropAlpha: boolean;
}

function unpremultiply(c: number, a: number): number {
  return a === 0 ? 0 : Math.min(255, Math.round((c * 255) / a));
}

/**
 * Returns pixels in a layout libvips reads (straight RGBA/RGB/gray). Reuses the entry memory when
 * the layout already fits (rgba8, rgbx8, rgb8/gray8 with whole-pixel strides); otherwise one copy.
 * Used only on the thumbnail-encode path, whose results are cached.
 */
export function toEncodable(
  pixels: Buffer,
  width: number,
  height: number,
  stride: number,
  pf: PixelFormat,
): EncodableRaw {
  const direct = (channels: 1 | 3 | 4, dropAlpha = false): EncodableRaw | undefined =>
    stride % channels === 0
      ? {
          data: pixels.subarray(0, stride * height),
          rowPixels: stride / channels,
          width,
          height,
          channels,
          dropAlpha,
        }
      : undefined;
  switch (pf) {
    case 'rgba8':
      return direct(4)!;
    case 'rgbx8':
      return direct(4, true)!;
    case 'rgb8':
    case 'gray8': {
      const channels = pf === 'rgb8' ? 3 : 1;
      const d = direct(channels);
      if (d) return d;
      const out = Buffer.allocUnsafe(width * height * channels);
      for (let y = 0; y < height; y++)
        pixels.copy(out, y * width * channels, y * stride, y * stride + width * channels);
      return { data: out, rowPixels: width, width, height, channels, dropAlpha: false };
    }
    case 'rgb565': {
      const out = Buffer.allocUnsafe(width * height * 3);
      for (let y = 0, o = 0; y < height; y++) {
        for (let x = 0, s = y * stride; x < width; x++, s += 2, o += 3) {
          const v = pixels[s]! | (pixels[s + 1]! << 8);
          const r = v >> 11;
          const g = (v >> 5) & 63;
          const b = v & 31;
          out[o] = (r << 3) | (r >> 2);
          out[o + 1] = (g << 2) | (g >> 4);
          out[o + 2] = (b << 3) | (b >> 2);
        }
      }
      return { data: out, rowPixels: width, width, height, channels: 3, dropAlpha: false };
    }
    case 'rgba8-premultiplied':
    case 'bgra8-premultiplied': {
      const swap = pf === 'bgra8-premultiplied';
      const out = Buffer.allocUnsafe(width * height * 4);
      for (let y = 0, o = 0; y < height; y++) {
        for (let x = 0, s = y * stride; x < width; x++, s += 4, o += 4) {
          const a = pixels[s + 3]!;
          const c0 = pixels[s]!;
          const c2 = pixels[s + 2]!;
          out[o] = unpremultiply(swap ? c2 : c0, a);
          out[o + 1] = unpremultiply(pixels[s + 1]!, a);
          out[o + 2] = unpremultiply(swap ? c0 : c2, a);
          out[o + 3] = a;
        }
      }
      return { data: out, rowPixels: width, width, height, channels: 4, dropAlpha: false };
    }
  }
}
