// Pixel layout conversions. Decoded output from libvips is tightly packed RGBA, RGB or gray; an
// entry wants the format's layout. `convertInPlace` converts inside the decoder's own buffer, and
// the table writes it at the format's stride with one gathered pwritev: the only copy on ingest.
import type { PixelFormat } from '../formats.js';
import type { RawImage } from '../native/sharp.js';

// (c * a + 127) / 255 rounded, computed exactly as ((t + 128) + ((t + 128) >> 8)) >> 8 with t = c*a.
function mul255(c: number, a: number): number {
  const t = c * a + 128;
  return (t + (t >> 8)) >> 8;
}

type Converter = (buf: Buffer, pixels: number) => void;

const premultiply =
  (swapRB: boolean): Converter =>
  (buf, pixels) => {
    for (let i = 0, p = 0; i < pixels; i++, p += 4) {
      const a = buf[p + 3]!;
      const r = mul255(buf[p]!, a);
      const b = mul255(buf[p + 2]!, a);
      buf[p] = swapRB ? b : r;
      buf[p + 1] = mul255(buf[p + 1]!, a);
      buf[p + 2] = swapRB ? r : b;
    }
  };

// Packs RGB (3 B) to RGB565 little-endian (2 B) front to back: each write lands at or before bytes
// already read, so it works in place.
const packRgb565: Converter = (buf, pixels) => {
  for (let i = 0, s = 0, d = 0; i < pixels; i++, s += 3, d += 2) {
    const v = ((buf[s]! >> 3) << 11) | ((buf[s + 1]! >> 2) << 5) | (buf[s + 2]! >> 3);
    buf[d] = v & 0xff;
    buf[d + 1] = v >> 8;
  }
};

const identity: Converter = () => {};

// Chosen once per pixel format, so the loops have no format branches.
const CONVERTERS: Readonly<Record<PixelFormat, Converter>> = {
  rgba8: identity,
  'rgba8-premultiplied': premultiply(false),
  'bgra8-premultiplied': premultiply(true),
  rgbx8: identity,
  rgb8: identity,
  gray8: identity,
  rgb565: packRgb565,
};

/**
 * Converts a tightly packed decoded image (RGBA, RGB or gray as the decode layout of `pf` delivers) to `pf` in
 * place and returns the tightly packed result (width × bytesPerPixel per row). The decoder's own
 * output buffer is reused: conversion adds no copy.
 */
export function convertInPlace(
  decoded: Buffer,
  width: number,
  height: number,
  pf: PixelFormat,
  bytesPerPixel: number,
): Buffer {
  CONVERTERS[pf](decoded, width * height);
  return decoded.subarray(0, width * height * bytesPerPixel);
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
): RawImage {
  const direct = (channels: 1 | 3 | 4, dropAlpha = false): RawImage | undefined =>
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
