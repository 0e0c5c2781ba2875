// The one module that imports thumbhash. A foreign boundary: it turns small straight-RGBA images
// into ThumbHashes and back, and knows nothing of tables, entries or pixel formats.
//
// No BlurHash: a ThumbHash carries what a BlurHash does (a blurred colour layout) and also the
// image's aspect ratio and alpha, in fewer bytes (about 25 against 30 characters), and decodes
// with a 2 KB script in the browser; a second placeholder would double the ingest work and the
// stored record for clients that can all read the first.
import { createRequire } from 'node:module';
import { rgbaToThumbHash, thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';

/** The largest side ThumbHash encodes (its own limit). */
export const THUMBHASH_MAX_SIDE = 100;

/** The ThumbHash of `width` × `height` straight RGBA pixels, each side at most 100. */
export function thumbHashOf(width: number, height: number, rgba: Uint8Array): Uint8Array {
  return rgbaToThumbHash(width, height, rgba);
}

/** A ThumbHash rendered as thumbhash renders it (straight RGBA, at most 32 px a side). */
export function thumbHashImage(hash: Uint8Array): { width: number; height: number; rgba: Uint8Array } {
  const { w, h, rgba } = thumbHashToRGBA(hash);
  return { width: w, height: h, rgba };
}

/** The ThumbHash's average colour, each channel 0..1. */
export function thumbHashAverage(hash: Uint8Array): { r: number; g: number; b: number; a: number } {
  return thumbHashToAverageRGBA(hash);
}

/**
 * The file of thumbhash's own module, which runs in browsers as it is (an ES module without
 * dependencies): the web page serves it to render placeholders with the library that made them.
 */
export function thumbHashBrowserModule(): string {
  return createRequire(import.meta.url).resolve('thumbhash');
}
