// Formats: named, fixed geometries. Validated once here; everything downstream trusts them.
import { PixtableError } from './errors.js';
import * as is from './is.js';

export const PIXEL_FORMATS = [
  'rgba8',
  'rgba8-premultiplied',
  'bgra8-premultiplied',
  'rgbx8',
  'rgb8',
  'gray8',
  'rgb565',
] as const;
export type PixelFormat = (typeof PIXEL_FORMATS)[number];
export type Fit = 'cover' | 'inside';
/**
 * Which part of the source a `cover` format keeps when it crops: `centre` the middle, `attention`
 * the region libvips finds most salient (skin tones, saturation, luminance edges), `entropy` the
 * region with the most detail. sharp's strategies, named as sharp names them.
 */
export const POSITIONS = ['centre', 'attention', 'entropy'] as const;
export type Position = (typeof POSITIONS)[number];

/**
 * Image types an entry can be encoded to (thumbnails over HTTP, `pixtable export`, the encoder in
 * src/native/sharp.ts). One list, so the server's PIXTABLE_THUMB_TYPES, content negotiation and
 * the encoder cannot disagree about what exists.
 */
export const ENCODED_TYPES = ['webp', 'avif', 'png', 'jpeg'] as const;
export type EncodedType = (typeof ENCODED_TYPES)[number];

/** Bytes per pixel of each pixel format. */
export const BYTES_PER_PIXEL: Readonly<Record<PixelFormat, number>> = {
  rgba8: 4,
  'rgba8-premultiplied': 4,
  'bgra8-premultiplied': 4,
  rgbx8: 4,
  rgb8: 3,
  gray8: 1,
  rgb565: 2,
};

/** What a user writes (config file, `ImageCache.open({ formats })`). */
export interface FormatSpec {
  /** Table name; `[a-z0-9][a-z0-9._-]{0,63}`. Used in URLs and file names. */
  name: string;
  /** Box width in pixels, 1..16384. */
  width: number;
  /** Box height in pixels, 1..16384. */
  height: number;
  /** `cover` (default): exactly width×height, centre crop. `inside`: aspect kept, real size ≤ box. */
  fit?: Fit;
  /** Default `rgba8`. */
  pixelFormat?: PixelFormat;
  /** Bytes each row is padded to; a power of two, 1..4096. Default 64 (256 suits GPU upload pitch). */
  rowAlignment?: number;
  /** Hard limit on entries in the table, 1..16,777,216. Default 10,000. */
  maxCount?: number;
  /**
   * Limit on the table's entry bytes, in bytes (an entry reserves its full box however small the
   * image: stride × height + 64, rounded up to the page size). At least one entry, at most 2^53−1.
   * Default: none (only `maxCount` bounds the table). With both, the smaller capacity applies.
   */
  maxBytes?: number;
  /** Formats sharing a family are produced from one decode of the source. Default: none. */
  family?: string;
  /** `inside` only: scale small sources up to the box. Default false (cover always fills the box). */
  enlarge?: boolean;
  /**
   * `cover` only: which part of the source the crop keeps (POSITIONS). Default `centre`. Part of
   * the table's geometry: changing it rebuilds the table, as changing the size does.
   */
  position?: Position;
}

/** A validated format with its derived geometry. Immutable. */
export interface Format {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  readonly fit: Fit;
  readonly pixelFormat: PixelFormat;
  readonly rowAlignment: number;
  /**
   * The entry limit in effect: the spec's `maxCount`, or fewer when `maxBytes` holds fewer entries
   * (ImageCache.open works that out, since an entry's size depends on the page size).
   */
  readonly maxCount: number;
  /** The spec's `maxBytes`, undefined when unbounded by bytes. */
  readonly maxBytes: number | undefined;
  readonly family: string | undefined;
  readonly enlarge: boolean;
  /** the crop strategy; always `centre` for `inside` formats, which never crop */
  readonly position: Position;
  readonly bytesPerPixel: number;
  /** Bytes per row: width × bytesPerPixel rounded up to rowAlignment. */
  readonly stride: number;
  /** stride × height: the pixel area of one entry. */
  readonly pixelBytes: number;
}

// One family: a source is decoded once (shrink-on-load to ≥1024 px) and all three are cut from that.
export const DEFAULT_FORMATS: readonly FormatSpec[] = [
  {
    name: 'thumb-64',
    width: 64,
    height: 64,
    fit: 'cover',
    pixelFormat: 'rgba8',
    rowAlignment: 64,
    family: 'default',
  },
  {
    name: 'thumb-256',
    width: 256,
    height: 256,
    fit: 'cover',
    pixelFormat: 'rgba8',
    rowAlignment: 64,
    family: 'default',
  },
  {
    name: 'preview-1024',
    width: 1024,
    height: 1024,
    fit: 'inside',
    pixelFormat: 'rgba8',
    rowAlignment: 64,
    family: 'default',
  },
];

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const MAX_SIDE = 16384;
const MAX_ENTRY_PIXEL_BYTES = 256 * 1024 * 1024;

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

const FIELDS = [
  'name',
  'width',
  'height',
  'fit',
  'pixelFormat',
  'rowAlignment',
  'maxCount',
  'maxBytes',
  'family',
  'enlarge',
  'position',
] as const satisfies readonly (keyof FormatSpec)[];

const FITS = ['cover', 'inside'] as const satisfies readonly Fit[];

const C = 'INVALID_FORMAT';

export function validateFormat(spec: unknown, where = 'format'): Format {
  const s = is.object(where, spec, C);
  is.knownKeys(where, s, FIELDS, C);
  const name = is.matching(`${where}.name`, s.name, NAME_RE, C);
  const w = `format ${name}`;
  const width = is.intInRange(`${w}.width`, s.width, 1, MAX_SIDE, C);
  const height = is.intInRange(`${w}.height`, s.height, 1, MAX_SIDE, C);
  // `??`: a JSON null asks for the default like an absent field does
  const fit = is.oneOf(`${w}.fit`, s.fit ?? 'cover', FITS, C, { quoted: true });
  const pixelFormat = is.oneOf(`${w}.pixelFormat`, s.pixelFormat ?? 'rgba8', PIXEL_FORMATS, C);
  const rowAlignment = is.powerOfTwo(
    `${w}.rowAlignment`,
    is.optionalInt(`${w}.rowAlignment`, s.rowAlignment, 64, 1, 4096, C),
    C,
  );
  const maxCount = is.optionalInt(`${w}.maxCount`, s.maxCount, 10_000, 1, 1 << 24, C);
  const maxBytes =
    s.maxBytes === undefined || s.maxBytes === null
      ? undefined
      : is.intInRange(`${w}.maxBytes`, s.maxBytes, 1, Number.MAX_SAFE_INTEGER, C);
  const family = s.family === undefined ? undefined : is.matching(`${w}.family`, s.family, NAME_RE, C);
  const enlarge = is.optionalBool(`${w}.enlarge`, s.enlarge, false, C);
  const position = is.oneOf(`${w}.position`, s.position ?? 'centre', POSITIONS, C, { quoted: true });
  // an inside format never crops, so a strategy there would be a setting that does nothing
  is.ensure(
    fit === 'cover' || s.position === undefined || s.position === null,
    `${w}.position`,
    'set only on a "cover" format (an "inside" format keeps the whole image and never crops)',
    s.position,
    C,
  );
  const bytesPerPixel = BYTES_PER_PIXEL[pixelFormat];
  const stride = alignUp(width * bytesPerPixel, rowAlignment);
  const pixelBytes = stride * height;
  is.ensure(
    pixelBytes <= MAX_ENTRY_PIXEL_BYTES,
    `${w} (stride × height)`,
    `at most ${MAX_ENTRY_PIXEL_BYTES} bytes`,
    pixelBytes,
    C,
  );
  return Object.freeze({
    name,
    width,
    height,
    fit,
    pixelFormat,
    rowAlignment,
    maxCount,
    maxBytes,
    family,
    // cover always fills the box, so it scales small sources up whatever `enlarge` says
    enlarge: fit === 'cover' ? true : enlarge,
    position,
    bytesPerPixel,
    stride,
    pixelBytes,
  });
}

export function validateFormats(specs: unknown): Format[] {
  const list = is.nonEmptyArray('formats', specs, C, 'a non-empty array of format objects');
  const out = list.map((s, i) => validateFormat(s, `formats[${i}]`));
  const seen = new Set<string>();
  for (const f of out) {
    if (seen.has(f.name))
      throw new PixtableError('INVALID_FORMAT', `formats: the name "${f.name}" appears twice`);
    seen.add(f.name);
  }
  return out;
}

/** The public description of a format (GET /v1/formats, `pixtable stats`). */
export function describeFormat(f: Format) {
  return {
    name: f.name,
    width: f.width,
    height: f.height,
    fit: f.fit,
    pixelFormat: f.pixelFormat,
    rowAlignment: f.rowAlignment,
    stride: f.stride,
    maxCount: f.maxCount,
    ...(f.maxBytes !== undefined ? { maxBytes: f.maxBytes } : {}),
    ...(f.family ? { family: f.family } : {}),
    ...(f.position !== 'centre' ? { position: f.position } : {}),
  };
}
