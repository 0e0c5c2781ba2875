// Encoding an entry as an image file: the engine unpacks the entry's pixel format into raw rows
// (src/engine/pixels.ts), then src/native/sharp.ts (the only module allowed to import sharp)
// encodes them. The HTTP thumbnails and `pixtable export` both encode through sharpEncode.
//
// sharp is imported lazily here, but that does not keep a broken sharp install from stopping the
// server: src/cache.ts imports src/native/sharp.ts statically for decoding, so every process that
// opens an ImageCache (pixtable serve, startServer) loads sharp at start and fails there. The lazy
// import only spares callers that encode, or build the app over another PixelCache, without
// importing the engine; /healthz's sharp check goes through loadSharp either way.
import type { EncodedType, PixelFormat } from '../formats.js';
import { toEncodable } from '../engine/pixels.js';

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
  const raw = toEncodable(v.pixels, v.width, v.height, v.stride, v.pixelFormat);
  return m.encodeImage(raw, type, quality === undefined ? {} : { quality });
};
