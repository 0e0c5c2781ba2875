export { ImageCache } from './cache.js';
export { PixtableError, ERRORS, isPixtableError, type ErrorCode } from './errors.js';
export {
  DEFAULT_FORMATS,
  PIXEL_FORMATS,
  BYTES_PER_PIXEL,
  validateFormat,
  validateFormats,
  describeFormat,
  type Format,
  type FormatSpec,
  type PixelFormat,
  type Fit,
} from './formats.js';
export type * from './types.js';
export type { UploadBody } from './engine/uploads.js';
export type { SourceFile } from './engine/source-bytes.js';
