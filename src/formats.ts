// Formats: named, fixed geometries. Validated once here; everything downstream trusts them.
import { invalidParameter, PixtableError } from './errors.js';

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
  /** Formats sharing a family are produced from one decode of the source. Default: none. */
  family?: string;
  /** `inside` only: scale small sources up to the box. Default false (cover always fills the box). */
  enlarge?: boolean;
}

/** A validated format with its derived geometry. Immutable. */
export interface Format {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  readonly fit: Fit;
  readonly pixelFormat: PixelFormat;
  readonly rowAlignment: number;
  readonly maxCount: number;
  readonly family: string | undefined;
  readonly enlarge: boolean;
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

function int(field: string, v: unknown, min: number, max: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidParameter('INVALID_FORMAT', field, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

export function validateFormat(spec: unknown, where = 'format'): Format {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalidParameter('INVALID_FORMAT', where, 'an object', spec);
  }
  const s = spec as Record<string, unknown>;
  const known = new Set([
    'name',
    'width',
    'height',
    'fit',
    'pixelFormat',
    'rowAlignment',
    'maxCount',
    'family',
    'enlarge',
  ]);
  for (const k of Object.keys(s)) {
    if (!known.has(k))
      throw invalidParameter('INVALID_FORMAT', `${where}.${k}`, `one of ${[...known].join(', ')}`, k);
  }
  if (typeof s.name !== 'string' || !NAME_RE.test(s.name)) {
    throw invalidParameter('INVALID_FORMAT', `${where}.name`, `a string matching ${NAME_RE}`, s.name);
  }
  const w = `format ${s.name}`;
  const width = int(`${w}.width`, s.width, 1, MAX_SIDE);
  const height = int(`${w}.height`, s.height, 1, MAX_SIDE);
  const fit = s.fit ?? 'cover';
  if (fit !== 'cover' && fit !== 'inside')
    throw invalidParameter('INVALID_FORMAT', `${w}.fit`, '"cover" or "inside"', fit);
  const pixelFormat = s.pixelFormat ?? 'rgba8';
  if (!(PIXEL_FORMATS as readonly unknown[]).includes(pixelFormat)) {
    throw invalidParameter(
      'INVALID_FORMAT',
      `${w}.pixelFormat`,
      `one of ${PIXEL_FORMATS.join(', ')}`,
      pixelFormat,
    );
  }
  const rowAlignment = int(`${w}.rowAlignment`, s.rowAlignment, 1, 4096, 64);
  if ((rowAlignment & (rowAlignment - 1)) !== 0) {
    throw invalidParameter('INVALID_FORMAT', `${w}.rowAlignment`, 'a power of two', rowAlignment);
  }
  const maxCount = int(`${w}.maxCount`, s.maxCount, 1, 1 << 24, 10_000);
  if (s.family !== undefined && (typeof s.family !== 'string' || !NAME_RE.test(s.family))) {
    throw invalidParameter('INVALID_FORMAT', `${w}.family`, `a string matching ${NAME_RE}`, s.family);
  }
  if (s.enlarge !== undefined && typeof s.enlarge !== 'boolean') {
    throw invalidParameter('INVALID_FORMAT', `${w}.enlarge`, 'a boolean', s.enlarge);
  }
  const bytesPerPixel = BYTES_PER_PIXEL[pixelFormat as PixelFormat];
  const stride = alignUp(width * bytesPerPixel, rowAlignment);
  const pixelBytes = stride * height;
  if (pixelBytes > MAX_ENTRY_PIXEL_BYTES) {
    throw invalidParameter(
      'INVALID_FORMAT',
      `${w} (stride × height)`,
      `at most ${MAX_ENTRY_PIXEL_BYTES} bytes`,
      pixelBytes,
    );
  }
  return Object.freeze({
    name: s.name,
    width,
    height,
    fit,
    pixelFormat: pixelFormat as PixelFormat,
    rowAlignment,
    maxCount,
    family: s.family as string | undefined,
    enlarge: fit === 'cover' ? true : ((s.enlarge as boolean | undefined) ?? false),
    bytesPerPixel,
    stride,
    pixelBytes,
  });
}

export function validateFormats(specs: unknown): Format[] {
  if (!Array.isArray(specs) || specs.length === 0) {
    throw invalidParameter('INVALID_FORMAT', 'formats', 'a non-empty array of format objects', specs);
  }
  const out = specs.map((s, i) => validateFormat(s, `formats[${i}]`));
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
    ...(f.family ? { family: f.family } : {}),
  };
}
