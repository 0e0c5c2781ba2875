// `?rect=x,y,w,h` parsing. Strict: four non-negative decimal integers, nothing else, so
// "1e3", "0x10", " 5" or "-0" never silently mean something the client did not write.
import { PixtableError } from '../errors.js';

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

const RECT_RE = /^(\d{1,5}),(\d{1,5}),(\d{1,5}),(\d{1,5})$/;

/** Parses and bounds-checks a rectangle against an image of `width`×`height`. */
export function parseRect(value: string, width: number, height: number): Rect {
  const m = RECT_RE.exec(value);
  if (!m) {
    throw new PixtableError(
      'INVALID_RECT',
      `rect must be four non-negative integers "x,y,w,h", got ${JSON.stringify(value.slice(0, 64))}`,
    );
  }
  const x = Number(m[1]);
  const y = Number(m[2]);
  const w = Number(m[3]);
  const h = Number(m[4]);
  if (w === 0 || h === 0)
    throw new PixtableError('INVALID_RECT', `rect ${value} is empty (w and h must be at least 1)`);
  if (x + w > width || y + h > height) {
    throw new PixtableError('INVALID_RECT', `rect ${value} leaves the ${width}x${height} image`);
  }
  return { x, y, w, h };
}
