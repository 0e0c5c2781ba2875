// Thumbnail encoding goes through src/native/sharp.ts (the only module allowed to import sharp).
// Loaded lazily so that a broken sharp install shows up as a failing /healthz and 5xx on
// thumbnails rather than a server that cannot start to serve raw pixels.
import type { EncodedType, PixelFormat } from '../formats.js';

export interface EncodableView {
  readonly pixels: Buffer;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly pixelFormat: PixelFormat;
}

export type EncodeFn = (
  view: EncodableView,
  type: EncodedType,
  quality: number | undefined,
) => Promise<Buffer>;

type SharpModule = typeof import('../native/sharp.js');
let loading: Promise<SharpModule> | undefined;

export function loadSharp(): Promise<SharpModule> {
  loading ??= import('../native/sharp.js');
  return loading;
}

export const sharpEncode: EncodeFn = async (v, type, quality) => {
  const m = await loadSharp();
  return m.encodeImage(
    v.pixels,
    v.width,
    v.height,
    v.stride,
    v.pixelFormat,
    type,
    quality === undefined ? {} : { quality },
  );
};
