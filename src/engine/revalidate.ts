// Source revalidation: is the source an entry was decoded from still the same? The `Revalidator`
// interface is what the hit paths call; each source store brings its own (src/engine/source-store*.ts).
// For a directory, `StatRevalidator`: a `stat` at most once per `revalidateMs` per entry (nginx's
// open_file_cache_valid); when its signature (mtime, size, inode) changed, the file is hashed and
// compared with the entry's source fingerprint, so a touch without a change costs one hash, not a
// decode.
import fs from 'node:fs';
import path from 'node:path';
import { LIVE, type SlotBook } from './slots.js';
import { readSource, readSourceSync, type Source } from './source-bytes.js';

/**
 * File timestamps are coarse (kernel ticks): a file rewritten within the same tick keeps its
 * mtime, and often its size. A signature taken this soon after a write is not trusted (git's
 * "racy" rule); hits hash the file until it is old enough.
 */
const RACY_MS = 2000;

/** Whether a hit's source is unchanged; called by ImageCache's hit paths, only with `revalidate` on. */
export interface Revalidator {
  /** True: confirmed within `revalidateMs` (or still matching); false: confirm it; 'gone': a miss. */
  fresh(book: SlotBook, s: number, key: string): boolean | 'gone';
  /** The synchronous path's confirmation (peek, peekRef); false is a miss. */
  confirmSync(book: SlotBook, s: number, key: string): boolean;
  /** get()'s confirmation; false makes get() decode the source again. */
  confirmAsync(book: SlotBook, s: number, key: string): Promise<boolean>;
  /** Records that slot `s` holds `src`, confirmed now. */
  sign(book: SlotBook, s: number, src: Source): void;
}

export class StatRevalidator implements Revalidator {
  constructor(
    private readonly root: string,
    private readonly revalidateMs: number,
    private readonly maxBytes: number,
    private readonly now: () => number,
  ) {}

  /** Whether the source still has the stat signature last matched to slot `s`'s fingerprint. */
  fresh(book: SlotBook, s: number, key: string): boolean | 'gone' {
    const now = this.now();
    if (now - book.checkedAt[s]! < this.revalidateMs) return true;
    let stat: fs.Stats;
    try {
      stat = fs.statSync(path.join(this.root, key));
    } catch {
      return 'gone';
    }
    const sig = book.statSig;
    const i = s * 3;
    if (sig[i] !== stat.mtimeMs || sig[i + 1] !== stat.size || sig[i + 2] !== stat.ino) return false;
    book.checkedAt[s] = now;
    return true;
  }

  /** The stat changed: hash the file (synchronously, for peek) and compare. */
  confirmSync(book: SlotBook, s: number, key: string): boolean {
    return this.confirm(book, s, key, readSourceSync(this.root, key, this.maxBytes));
  }

  /** The stat changed: hash the file (off the event loop's disk wait, for get) and compare. */
  async confirmAsync(book: SlotBook, s: number, key: string): Promise<boolean> {
    const src = await readSource(this.root, key, this.maxBytes).catch(() => undefined);
    return this.confirm(book, s, key, src);
  }

  /** True when `src` is still the bytes slot `s` (still `key`'s) was decoded from; re-signs it. */
  private confirm(book: SlotBook, s: number, key: string, src: Source | undefined): boolean {
    if (src === undefined || book.state[s] !== LIVE || book.keyOf[s] !== key) return false;
    if (!src.fp.equals(book.sourceFp.subarray(s * 16, s * 16 + 16))) return false;
    this.sign(book, s, src);
    return true;
  }

  /** Records `src`'s stat signature as matching slot `s` (confirmed now). */
  sign(book: SlotBook, s: number, src: Source): void {
    const i = s * 3;
    book.statSig[i] = Date.now() - src.mtimeMs < RACY_MS ? -1 : src.mtimeMs;
    book.statSig[i + 1] = src.size;
    book.statSig[i + 2] = src.ino;
    book.checkedAt[s] = this.now();
  }
}
