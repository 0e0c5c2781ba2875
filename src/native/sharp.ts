// The one module that imports sharp. Decoding (orientation, ICC → sRGB, first frame, resize,
// channel layout) and thumbnail encoding live here; the rest of the code sees plain buffers.
// A foreign boundary: it speaks libvips' terms (raw RGBA/RGB/gray rows) and knows nothing of
// tables or pixel formats. Converting an entry's layout to raw rows (unpremultiply, BGRA → RGBA,
// RGB565 → RGB) is the engine's job (src/engine/pixels.ts), done by the caller before encoding.
// It imports only the error registry (to translate libvips' failures) and vocabulary types.
import sharp, { type Metadata, type Sharp } from 'sharp';
import { PixtableError, tooManyPixelsDetail } from '../errors.js';
import type { EncodedType, Fit, Position } from '../formats.js';

// Each sharp pipeline holds one libuv pool thread from start to end, the pool Node's file
// operations use too; the decode and encode queues bound how many run at once, and pixtable serve
// sizes the pool to leave threads for file work (src/cli/threadpool.ts). Within one image libvips
// uses one thread: parallelism comes from running several images, which the queues count, so CPU
// use is what the two concurrency settings say (sharp's own default is 1 on glibc without jemalloc
// and the core count elsewhere, which would multiply every image by the cores). AVIF's encoder
// (libaom) starts threads of its own regardless.
sharp.cache(false);
sharp.concurrency(1);

export type DecodeLayout = 'rgba' | 'rgbx' | 'rgb' | 'gray';

export interface DecodeTarget {
  width: number;
  height: number;
  fit: Fit;
  /** scale up sources smaller than the box (always true for cover) */
  enlarge: boolean;
  /** which part a cover crop keeps (sharp's strategies; ignored by inside). Default centre. */
  position?: Position;
  layout: DecodeLayout;
}

export interface DecodedImage {
  /** tightly packed rows of `channels` bytes per pixel */
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}

export interface DecodeOptions {
  maxInputPixels: number;
  timeoutMs: number;
  /** decode the source once into an intermediate and derive every target from it */
  shared: boolean;
}

export interface EncodeOptions {
  quality?: number;
}

/** Rows as libvips reads raw input: 8-bit straight (not premultiplied) RGBA, RGB or gray. */
export interface RawImage {
  data: Buffer;
  /** pixels per row of `data`: more than `width` when padded rows are passed without a copy */
  rowPixels: number;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  /** the fourth channel carries no alpha (padding, as in rgbx): encode without it */
  dropAlpha: boolean;
}

const LAYOUT_CHANNELS: Record<DecodeLayout, number> = { rgba: 4, rgbx: 4, rgb: 3, gray: 1 };

/** An image type sources may be, as files name it and as browsers announce it. */
export interface SourceType {
  /** What people call it: JPEG, PNG, … */
  readonly name: string;
  /** File name extensions, lower case with the dot. */
  readonly extensions: readonly string[];
  /** Media types (for a file input's `accept`). */
  readonly mime: readonly string[];
}

// Every type libvips might load, each with a way to make a tiny sample of it here. A type is
// offered only once its sample decoded on this machine: sharp.format says what libvips was built
// with, not whether a codec is really there (prebuilt sharp lists heif, but only AVIF decodes,
// since HEIC needs an HEVC decoder it does not ship). Types sharp cannot write (BMP, HEIC without
// an HEVC encoder, JPEG 2000 and JPEG XL in prebuilt sharp) yield no sample and are not offered.
const CANDIDATES: readonly { type: SourceType; sample: () => Promise<Buffer> }[] = [
  {
    type: { name: 'JPEG', extensions: ['.jpg', '.jpeg', '.jpe', '.jfif'], mime: ['image/jpeg'] },
    sample: () => tiny().jpeg().toBuffer(),
  },
  {
    type: { name: 'PNG', extensions: ['.png', '.apng'], mime: ['image/png', 'image/apng'] },
    sample: () => tiny().png().toBuffer(),
  },
  {
    type: { name: 'WebP', extensions: ['.webp'], mime: ['image/webp'] },
    sample: () => tiny().webp().toBuffer(),
  },
  {
    type: { name: 'AVIF', extensions: ['.avif'], mime: ['image/avif'] },
    sample: () => tiny().avif({ effort: 0 }).toBuffer(),
  },
  {
    type: { name: 'HEIC', extensions: ['.heic', '.heif'], mime: ['image/heic', 'image/heif'] },
    sample: () => tiny().heif({ compression: 'hevc' }).toBuffer(),
  },
  { type: { name: 'GIF', extensions: ['.gif'], mime: ['image/gif'] }, sample: () => tiny().gif().toBuffer() },
  {
    type: { name: 'TIFF', extensions: ['.tif', '.tiff'], mime: ['image/tiff'] },
    sample: () => tiny().tiff().toBuffer(),
  },
  {
    type: { name: 'SVG', extensions: ['.svg'], mime: ['image/svg+xml'] },
    sample: async () => Buffer.from(SVG_SAMPLE),
  },
  {
    type: { name: 'JPEG 2000', extensions: ['.jp2', '.j2k'], mime: ['image/jp2'] },
    sample: () => tiny().jp2().toBuffer(),
  },
  {
    type: { name: 'JPEG XL', extensions: ['.jxl'], mime: ['image/jxl'] },
    sample: () => tiny().jxl().toBuffer(),
  },
];

const SVG_SAMPLE =
  '<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"><rect width="2" height="2" fill="red"/></svg>';

function tiny(): Sharp {
  return sharp({ create: { width: 2, height: 2, channels: 3, background: '#c03' } });
}

async function decodes(c: (typeof CANDIDATES)[number]): Promise<boolean> {
  try {
    const { info } = await sharp(await c.sample(), { failOn: 'warning' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    return info.width === 2 && info.height === 2;
  } catch {
    return false;
  }
}

let sourceTypesFound: Promise<readonly SourceType[]> | undefined;
let sourceTypesKnown: readonly SourceType[] | undefined;

/**
 * The image types that decode here, found once per process by decoding a sample of each (40–70
 * ms measured on a loaded 2-core machine, in parallel with whatever else starts). The one list `pixtable import`, the web page and error messages offer.
 */
export function sourceTypes(): Promise<readonly SourceType[]> {
  sourceTypesFound ??= Promise.all(CANDIDATES.map(decodes)).then((ok) => {
    sourceTypesKnown = Object.freeze(CANDIDATES.filter((_, i) => ok[i]).map((c) => c.type));
    return sourceTypesKnown;
  });
  return sourceTypesFound;
}

/** "JPEG, PNG, WebP …" for messages. */
async function typeNames(): Promise<string> {
  return (await sourceTypes()).map((t) => t.name).join(', ');
}

// libvips and sharp word their failures for libvips developers: "Input buffer has corrupt
// header:" with nothing after it, "Warning treated as error due to failOn setting", the loader's
// class name before each line, the same lines repeated. Users get what is left, or our words.
const SHARP_WRAPPERS = [
  /^Input (buffer|file) has corrupt header:\s*/i,
  /^Input (buffer|file) contains unsupported image format\s*/i,
  /^Warning treated as error due to failOn setting\s*/i,
];
const LOADER_PREFIX = /^(Vips\w*|vips\w*|gifload\w*|webp|glib|heif\w*|tiff\w*|svgload\w*):\s*/;

/** libvips' own lines of `msg`, wrappers and loader names removed, each once. */
function libvipsLines(msg: string): string[] {
  const out: string[] = [];
  for (let line of msg.split('\n')) {
    for (const w of SHARP_WRAPPERS) line = line.replace(w, '');
    line = line.replace(LOADER_PREFIX, '').trim();
    if (line !== '' && !out.includes(line)) out.push(line);
  }
  return out;
}

/**
 * A sharp/libvips failure as one of our codes with our words. `input` and `maxInputPixels` let a
 * pixel-limit failure say how large the image is; the header is read again for that, without a
 * limit (a header read allocates no pixels).
 */
export async function translateSharpError(
  e: unknown,
  input?: Buffer | string,
  maxInputPixels?: number,
): Promise<PixtableError> {
  if (e instanceof PixtableError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/unsupported image format|not a known file format|bad seek/i.test(msg)) {
    return new PixtableError('UNSUPPORTED_IMAGE', `not one of ${await typeNames()}`, { cause: e });
  }
  const precision = /unsupported JPEG data precision (\d+)/i.exec(msg);
  if (precision) {
    return new PixtableError(
      'UNSUPPORTED_IMAGE_VARIANT',
      `a ${precision[1]}-bit JPEG; JPEGs decode here with 8-bit samples only`,
      { cause: e },
    );
  }
  if (/pixel limit/i.test(msg)) {
    let size: { width: number; height: number } | undefined;
    if (input !== undefined) {
      try {
        const m = await sharp(input, { limitInputPixels: false }).metadata();
        size = { width: m.width, height: m.height };
      } catch {
        size = undefined;
      }
    }
    return new PixtableError('TOO_MANY_PIXELS', tooManyPixelsDetail(size, maxInputPixels), { cause: e });
  }
  if (/timeout/i.test(msg)) {
    return new PixtableError('DECODE_TIMEOUT', undefined, { cause: e });
  }
  const lines = libvipsLines(msg);
  return new PixtableError(
    'CORRUPT_IMAGE',
    lines.length > 0 ? lines.slice(0, 2).join('; ') : 'its header cannot be read',
    { cause: e },
  );
}

function shape(img: Sharp, t: DecodeTarget): Sharp {
  img = img.resize(t.width, t.height, {
    fit: t.fit,
    position: t.position ?? 'centre',
    withoutEnlargement: !t.enlarge,
  });
  switch (t.layout) {
    case 'rgba':
      return img.toColourspace('srgb').ensureAlpha();
    case 'rgbx':
      return img.flatten().toColourspace('srgb').ensureAlpha(1);
    case 'rgb':
      return img.flatten().toColourspace('srgb');
    case 'gray':
      return img.flatten().toColourspace('b-w');
  }
}

async function toRaw(img: Sharp, expectChannels: number): Promise<DecodedImage> {
  const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== expectChannels) {
    throw new PixtableError(
      'INTERNAL',
      `decoder produced ${info.channels} channels, expected ${expectChannels}`,
    );
  }
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** libvips' default rendering density for vector sources, in dots per inch (1 px per pt). */
const VECTOR_DPI = 72;
/** sharp's accepted range for `density`. */
const MAX_DENSITY = 100_000;

/**
 * The density at which to render a vector source (SVG) so that `t` is cut from it without
 * enlarging: vectors rasterised at their intrinsic size and then scaled up come out blurred,
 * where libvips renders them sharp at any scale. Undefined for raster sources, and when the
 * target does not enlarge (a smaller target is cut from the intrinsic rendering as before).
 */
export function vectorDensity(m: Metadata, t: DecodeTarget): number | undefined {
  if (m.format !== 'svg' || !m.width || !m.height) return undefined;
  const sx = t.width / m.width;
  const sy = t.height / m.height;
  const scale = t.fit === 'cover' ? Math.max(sx, sy) : Math.min(sx, sy);
  if (!t.enlarge || scale <= 1) return undefined;
  return Math.min(MAX_DENSITY, (m.density ?? VECTOR_DPI) * scale);
}

function open(input: Buffer | string, o: DecodeOptions, density?: number): Sharp {
  return sharp(input, {
    limitInputPixels: o.maxInputPixels,
    failOn: 'warning',
    pages: 1,
    ...(density === undefined ? {} : { density }),
  })
    .autoOrient()
    .timeout({ seconds: Math.max(1, Math.ceil(o.timeoutMs / 1000)) });
}

/**
 * Decodes `input` (bytes, or a file path: libvips reads some formats, such as its own .v, only
 * from files) once per target (or once in all, with `shared`) into tightly packed 8-bit sRGB.
 * Rejects with UNSUPPORTED_IMAGE, CORRUPT_IMAGE, TOO_MANY_PIXELS or DECODE_TIMEOUT.
 */
export async function decodeImage(
  input: Buffer | string,
  targets: readonly DecodeTarget[],
  o: DecodeOptions,
): Promise<DecodedImage[]> {
  try {
    // a header read: vector sources are rendered per target, each at the density it needs
    const m = await sharp(input, { limitInputPixels: o.maxInputPixels, pages: 1 }).metadata();
    if (!o.shared || targets.length === 1 || m.format === 'svg') {
      return await Promise.all(
        targets.map((t) => toRaw(shape(open(input, o, vectorDensity(m, t)), t), LAYOUT_CHANNELS[t.layout])),
      );
    }
    const maxW = Math.max(...targets.map((t) => t.width));
    const maxH = Math.max(...targets.map((t) => t.height));
    const base = await toRaw(
      open(input, o)
        .resize(maxW, maxH, { fit: 'outside', withoutEnlargement: true })
        .toColourspace('srgb')
        .ensureAlpha(),
      4,
    );
    const raw = { raw: { width: base.width, height: base.height, channels: 4 as const } };
    return await Promise.all(
      targets.map((t) => toRaw(shape(sharp(base.data, raw), t), LAYOUT_CHANNELS[t.layout])),
    );
  } catch (e) {
    throw await translateSharpError(e, input, o.maxInputPixels);
  }
}

/** Header facts, read without decoding pixels. */
export async function probeImage(input: Buffer | string, maxInputPixels: number) {
  try {
    const m = await sharp(input, { limitInputPixels: maxInputPixels, pages: 1 }).metadata();
    return {
      format: m.format,
      width: m.autoOrient?.width ?? m.width,
      height: m.autoOrient?.height ?? m.height,
    };
  } catch (e) {
    throw await translateSharpError(e, input, maxInputPixels);
  }
}

/** Encodes raw rows as an image file (thumbnails, `pixtable export`). */
export async function encodeImage(
  r: RawImage,
  type: EncodedType,
  options: EncodeOptions = {},
): Promise<Buffer> {
  return encodeAs(rawInput(r), type, options);
}

/** How a variant is cut from its master: `cover` crops to the box (centre), `fill` scales to it. */
export interface ResizeTo {
  width: number;
  height: number;
  fit: 'cover' | 'fill';
}

/**
 * Resizes raw rows (a cached entry, unpacked) to `to` and encodes the result: the responsive
 * variants of thumbnails, cut from decoded pixels rather than from the source.
 */
export async function resizeEncodeImage(
  r: RawImage,
  to: ResizeTo,
  type: EncodedType,
  options: EncodeOptions = {},
): Promise<Buffer> {
  const img = rawInput(r);
  if (to.width === r.width && to.height === r.height) return encodeAs(img, type, options);
  // extract() (the row padding) was called first, so libvips crops before it resizes
  return encodeAs(img.resize(to.width, to.height, { fit: to.fit, position: 'centre' }), type, options);
}

function rawInput(r: RawImage): Sharp {
  let img = sharp(r.data, { raw: { width: r.rowPixels, height: r.height, channels: r.channels } });
  if (r.rowPixels !== r.width) img = img.extract({ left: 0, top: 0, width: r.width, height: r.height });
  if (r.dropAlpha) img = img.removeAlpha();
  return img;
}

function encodeAs(img: Sharp, type: EncodedType, options: EncodeOptions): Promise<Buffer> {
  const q = options.quality;
  switch (type) {
    case 'webp':
      return img.webp({ quality: q ?? 80 }).toBuffer();
    case 'avif':
      return img.avif({ quality: q ?? 50, effort: 2 }).toBuffer();
    case 'png':
      return img.png({ compressionLevel: 6 }).toBuffer();
    case 'jpeg':
      return img.jpeg({ quality: q ?? 80, mozjpeg: false }).toBuffer();
  }
}

/** A small straight-RGBA copy of an image. */
export interface SmallImage {
  /** width × height × 4 bytes, tightly packed */
  data: Buffer;
  width: number;
  height: number;
}

/**
 * `r` shrunk to fit `maxSide` × `maxSide` (aspect kept), as straight RGBA, for placeholders:
 * the rows are an entry's already-decoded pixels, so nothing is decoded again.
 */
export async function downsampleRgba(r: RawImage, maxSide: number): Promise<SmallImage> {
  let img = sharp(r.data, { raw: { width: r.rowPixels, height: r.height, channels: r.channels } });
  if (r.rowPixels !== r.width) img = img.extract({ left: 0, top: 0, width: r.width, height: r.height });
  if (r.dropAlpha) img = img.removeAlpha();
  const { data, info } = await img
    .resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true })
    .toColourspace('srgb')
    .ensureAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

export function sharpVersions(): Record<string, string | undefined> {
  return { ...sharp.versions };
}
