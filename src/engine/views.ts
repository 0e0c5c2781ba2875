// What the engine hands out for an entry: pinned views (ImageView, for `get`/`peek`) and unpinned
// reusable references (EntryRef, for serving loops), both zero-copy slices of a chunk mapping.
// Their lifetimes are in their types (src/types.ts): a view's `pixels` are the entry's until
// release(); a ref's `transientPixels` only within the synchronous turn after current(ref).
import { PixtableError, invalidParameter } from '../errors.js';
import type { Format, PixelFormat } from '../formats.js';
import type { EntryInfo, EntryRef, ImageView } from '../types.js';
import { LIVE, type SlotBook } from './slots.js';
import { trailerNames, type ChunkCache } from './table.js';
import type { FormatStore } from './format-store.js';

const EMPTY = Buffer.alloc(0);

/** What views and refs tell about an entry, read once from the slot's bookkeeping. */
class EntryFields implements EntryInfo {
  readonly format: string;
  readonly key: string;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly pixelFormat: PixelFormat;
  readonly bytesPerPixel: number;
  readonly generation: number;
  readonly sourceFingerprint: string;
  readonly etag: string;

  constructor(store: FormatStore, slot: number, key: string) {
    const f: Format = store.format;
    const book = store.book;
    this.format = f.name;
    this.key = key;
    this.width = book.width[slot]!;
    this.height = book.height[slot]!;
    this.stride = f.stride;
    this.pixelFormat = f.pixelFormat;
    this.bytesPerPixel = f.bytesPerPixel;
    // the generation verified (a reader's mapped generation may already be the writer's next one)
    this.generation = store.generationOf(slot);
    // Strings built once per entry (FormatStore.names), shared by every view of it.
    const names = store.names(slot);
    this.sourceFingerprint = names.fpHex;
    this.etag = names.etag;
  }
}

/**
 * A pinned view (FormatStore.acquire took the pin): the slot is neither recycled nor overwritten,
 * by this process or, through the reader table, by the writer in another, until release().
 */
export class EntryView extends EntryFields implements ImageView {
  readonly pixels: Buffer;
  private released = false;

  constructor(
    private readonly store: FormatStore,
    private readonly book: SlotBook,
    private readonly slot: number,
    key: string,
    pixels: Buffer,
  ) {
    super(store, slot, key);
    this.pixels = pixels;
  }

  rows(x: number, y: number, w: number, h: number): Buffer[] {
    if (this.released) throw new PixtableError('VIEW_RELEASED');
    if (
      !Number.isInteger(x) ||
      !Number.isInteger(y) ||
      !Number.isInteger(w) ||
      !Number.isInteger(h) ||
      x < 0 ||
      y < 0 ||
      w < 1 ||
      h < 1 ||
      x + w > this.width ||
      y + h > this.height
    ) {
      throw new PixtableError(
        'INVALID_RECT',
        `${x},${y},${w},${h} is not inside ${this.width}x${this.height}`,
      );
    }
    const out = new Array<Buffer>(h);
    const bpp = this.bytesPerPixel;
    for (let r = 0; r < h; r++) {
      const start = (y + r) * this.stride + x * bpp;
      out[r] = this.pixels.subarray(start, start + w * bpp);
    }
    return out;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.store.release(this.slot, this.book);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

/** See EntryRef. Fields beyond the interface are the engine's; callers only see the brand. */
export class RefImpl extends EntryFields {
  /** false once the chunk left the mapping LRU or a newer ref of the slot replaced this one */
  live = true;
  transientPixels: Buffer;
  /** the whole chunk mapping (EMPTY once dead: a dead ref must not keep the mapping alive) */
  chunk: Buffer;
  /** offset of the entry's trailer in `chunk` */
  readonly trailerAt: number;

  constructor(
    readonly store: FormatStore,
    readonly slot: number,
    key: string,
    chunk: Buffer,
    readonly chunkKey: number,
    off: number,
  ) {
    const f = store.format;
    super(store, slot, key);
    this.transientPixels = chunk.subarray(off, off + f.stride * store.book.height[slot]!);
    this.chunk = chunk;
    this.trailerAt = off + f.pixelBytes;
  }

  kill(): void {
    this.live = false;
    this.transientPixels = EMPTY;
    this.chunk = EMPTY;
  }

  /** The public face: only this module turns a RefImpl into an EntryRef and back. */
  asRef(): EntryRef {
    return this as unknown as EntryRef;
  }
}

/** The engine's side of a ref handed out by peekRef(); anything else is INVALID_PARAMETER. */
export function refImpl(ref: EntryRef): RefImpl {
  const r = ref as unknown;
  if (r instanceof RefImpl) return r;
  throw invalidParameter('INVALID_PARAMETER', 'ref', 'a reference from ImageCache.peekRef()', ref);
}

/**
 * ImageCache.current, built once with the options read into the closure: a hit is a handful of
 * comparisons on typed arrays, no lookups.
 */
export function makeCurrent(
  chunks: ChunkCache,
  o: { revalidate: boolean; revalidateMs: number; now: () => number; readOnly: boolean },
): (ref: EntryRef) => boolean {
  const { revalidate, revalidateMs, now, readOnly } = o;
  return (ref) => {
    const r = refImpl(ref);
    const s = r.slot;
    const book = r.store.book;
    if (!r.live || book.state[s] !== LIVE || book.generation[s] !== r.generation) return false;
    if (revalidate && now() - book.checkedAt[s]! >= revalidateMs) return false;
    if (readOnly && !trailerNames(r.chunk, r.trailerAt, r.generation)) return false;
    chunks.get(r.chunkKey);
    if (!readOnly) book.touch(s); // a reader's book has no LRU: the writer evicts
    r.store.counters.hits++;
    return true;
  };
}
