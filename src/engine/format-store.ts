// One format's storage in this process: its table (segments, chunk mappings), index log, slot book,
// writer lock, generation counter, counters and the refs handed out per slot. Every change of a
// key's binding goes through here, and index records are applied one way only (`apply`), whether
// they come from open-time replay or from a read-only process polling the writer's appends.
import type { Format } from '../formats.js';
import { PixtableError } from '../errors.js';
import type { EntryRef, FormatStats, ImageView, Logger } from '../types.js';
import type { DecodedImage } from '../native/sharp.js';
import { Table, type ChunkCache } from './table.js';
import { IndexLog, OP_DEL, OP_SET, type IndexRecord } from './index-log.js';
import { LIVE, SlotBook } from './slots.js';
import { indexFile } from './layout.js';
import { fingerprint, type Source } from './source-bytes.js';
import { releaseWriterLock } from './lock.js';
import { ReaderTable } from './reader-table.js';
import { EntryView, RefImpl } from './views.js';
import { toTableLayout } from './decoding.js';
import type { Revalidator } from './revalidate.js';

export interface Counters {
  hits: number;
  misses: number;
  decodes: number;
  dropped: number;
  evictions: number;
}

export interface StoreContext {
  readOnly: boolean;
  preallocate: boolean;
  chunkBytes: number;
  chunks: ChunkCache;
  logger: Logger;
  revalidator: Revalidator;
  /** `sync: 'always'`: every write is flushed before it is acknowledged */
  syncAlways: boolean;
}

/** errno codes of a file this process may not write (a read-only volume, permissions) */
const UNWRITABLE = new Set(['EROFS', 'EACCES', 'EPERM']);

/**
 * A read-only cache on storage it cannot write (a read-only mount beside a writer elsewhere) has
 * no reader record: it still serves, verifying each hit's generation as before the reader table
 * existed, but the writer cannot see its pins. Said once, loudly, at open.
 */
function openReaderOrWarn(file: string, f: Format, logger: Logger): ReaderTable | undefined {
  try {
    return ReaderTable.openReader(file, f.maxCount);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === undefined || !UNWRITABLE.has(code)) throw e;
    logger.warn(
      'reader table not writable: held views of this read-only cache are not protected from the writer recycling their slots',
      {
        format: f.name,
        file,
        error: code,
      },
    );
    return undefined;
  }
}

export class FormatStore {
  readonly table: Table;
  readonly readOnly: boolean;
  book: SlotBook;
  log: IndexLog | null = null;
  readonly counters: Counters = { hits: 0, misses: 0, decodes: 0, dropped: 0, evictions: 0 };
  /** bytes of torn or damaged records the last replay discarded (verify reports them) */
  indexDiscardedBytes = 0;
  /** the latest ref handed out per slot (every other one handed out is dead) */
  private refs: (RefImpl | undefined)[];
  private nextGen = 1;
  private closed = false;
  /** the reader table: writers consult it before overwriting a slot, readers publish their pins */
  private readonly readers: ReaderTable | undefined;
  /** readers: this process's pins per slot (views and pinned refs), published 0 → 1 → 0 */
  private readonly held: Uint32Array | undefined;
  /** writers: may slot `s` be overwritten (no live reader anywhere holds it)? Marks it if so. */
  private readonly writable: ((s: number) => boolean) | undefined;

  /** Opens table and index (the caller holds the writer lock `lockFd`, or -1 read-only). */
  constructor(
    /** index among the cache's stores; also the table's number in the shared chunk LRU */
    readonly no: number,
    readonly format: Format,
    dir: string,
    readersFile: string,
    private readonly lockFd: number,
    private readonly ctx: StoreContext,
  ) {
    this.readOnly = ctx.readOnly;
    this.table = new Table(dir, format, {
      writable: !ctx.readOnly,
      chunkBytes: ctx.chunkBytes,
      preallocate: ctx.preallocate,
      chunks: ctx.chunks,
      tableNo: no,
      warn: (m, fields) => ctx.logger.warn(m, fields),
    });
    this.book = new SlotBook(format.maxCount);
    this.refs = new Array<RefImpl | undefined>(format.maxCount);
    try {
      this.table.open();
      this.loadIndex();
      if (ctx.readOnly) {
        this.readers = openReaderOrWarn(readersFile, format, ctx.logger);
        if (this.readers !== undefined) this.held = new Uint32Array(format.maxCount);
      } else {
        const readers = (this.readers = ReaderTable.openWriter(readersFile, format.maxCount));
        this.writable = (s) => readers.beginRecycle(s);
      }
    } catch (e) {
      this.close(); // releases the lock too: a failed open leaves nothing held
      throw e;
    }
  }

  // ---- the index ------------------------------------------------------------------------------

  private loadIndex(): void {
    const r = IndexLog.open(
      indexFile(this.table.dir),
      this.table.tableId,
      !this.ctx.readOnly,
      this.ctx.preallocate,
    );
    if (!r) return;
    this.log = r.log;
    this.indexDiscardedBytes = r.discardedBytes;
    const name = this.format.name;
    // A rebuilt table already said so; its old index is expected not to match.
    if (r.problem && !this.table.rebuilt) {
      this.ctx.logger.warn(r.reset ? 'index unusable; started afresh' : 'index damaged', {
        format: name,
        problem: r.problem,
      });
    }
    if (r.discardedBytes > 0) {
      this.ctx.logger.warn('index tail discarded (torn or damaged records)', {
        format: name,
        bytes: r.discardedBytes,
      });
    }
    this.apply(r.records);
    // Replay binds in log order, so the slot LRU ends least recently written first, as compaction
    // wrote it; slots replay left unbound are free.
    this.book.rebuildFree();
    let maxGen = 0;
    for (const rec of r.records) if (rec.generation > maxGen) maxGen = rec.generation;
    this.nextGen = maxGen + 1;
  }

  /** Applies index records in order: a SET rebinds its key to its slot, a DEL unbinds the key. */
  private apply(records: readonly IndexRecord[]): void {
    const book = this.book;
    for (const r of records) {
      const prev = book.slotOf.get(r.key);
      if (prev !== undefined) book.unbind(prev);
      if (r.op !== OP_SET || r.slot >= book.capacity) continue;
      if (book.keyOf[r.slot] !== undefined) book.unbind(r.slot);
      book.bind(r.key, r.slot, r.generation);
    }
  }

  /** Read-only: picks up what the writer appended, or replays afresh after it compacted or grew. */
  poll(): void {
    const recs = this.log?.poll();
    if (recs === undefined || recs === null) {
      this.log?.close();
      this.log = null;
      this.book = new SlotBook(this.format.maxCount);
      this.table.close();
      this.table.open();
      this.loadIndex();
      return;
    }
    this.apply(recs);
  }

  private append(op: number, key: string, slot: number): void {
    if (!this.ctx.readOnly && this.log)
      this.log.append(op, key, slot, this.book.generation[slot]!, () => this.book.live());
  }

  // ---- reading --------------------------------------------------------------------------------

  /** Slot of a verified live entry of `key`, or -1. Drops damaged entries. */
  verifiedSlot(key: string): number {
    let book = this.book;
    let s = book.slotOf.get(key);
    if (s === undefined) return -1;
    if (book.verified[s] === 1) {
      // Another process owns writes: the slot may have been recycled since this one verified it.
      if (!this.ctx.readOnly || this.table.trailerMatches(s, book.generation[s]!)) return s;
      this.poll();
      book = this.book;
      s = book.slotOf.get(key);
      if (s === undefined) return -1;
      if (book.verified[s] === 1 && this.table.trailerMatches(s, book.generation[s]!)) return s;
    }
    const check = this.table.checkEntry(s, book.generation[s]!, fingerprint(key));
    if (!check.ok) {
      this.drop(s, key, check.problem ?? 'damaged');
      return -1;
    }
    book.verified[s] = 1;
    book.width[s] = check.width;
    book.height[s] = check.height;
    this.table.readSourceFp(s, book.sourceFp, s * 16);
    this.describe(s);
    return s;
  }

  /**
   * A pinned view of verified slot `s`, marked recently used; undefined when a read-only process
   * finds, once its pin is published, that the writer is recycling the slot (the caller polls).
   */
  view(s: number, key: string): ImageView | undefined {
    if (!this.acquire(s)) return undefined;
    const map = this.table.chunkFor(s)!;
    const off = this.table.offsetInChunk(s);
    this.book.touch(s);
    const pixels = map.subarray(off, off + this.format.stride * this.book.height[s]!);
    return new EntryView(this, this.book, s, key, pixels);
  }

  /**
   * Pins slot `s` in this process and, read-only, in the reader table, so that the writer in
   * another process leaves it alone; then re-checks that it still holds the generation verified.
   * False (nothing pinned) when it does not. One acquire, one release().
   */
  acquire(s: number): boolean {
    const book = this.book;
    const held = this.held;
    if (held !== undefined && (held[s] = held[s]! + 1) === 1) {
      const gen = book.generation[s]!;
      if (!this.readers!.pin(s) || !this.table.trailerMatches(s, gen)) {
        this.release(s, undefined);
        return false;
      }
    }
    book.pin(s);
    return true;
  }

  /** Undoes acquire(s); `book`: the one the pin was taken in (a reader's replay replaces it). */
  release(s: number, book: SlotBook | undefined): void {
    // a reader's replay may have replaced the book since: its pin count starts afresh at 0
    if (book !== undefined && book.pins[s]! > 0) book.unpin(s);
    const held = this.held;
    if (held !== undefined && (held[s] = held[s]! - 1) === 0) this.readers!.unpin(s);
  }

  /** Pins a ref's slot as acquire() does, if the ref is still the slot's entry; false when not. */
  acquireRef(r: RefImpl): boolean {
    const book = this.book;
    const s = r.slot;
    if (!r.live || book.state[s] !== LIVE || book.generation[s] !== r.generation) return false;
    return this.acquire(s);
  }

  /** The ref of verified slot `s`: the same object until the entry is rewritten or unmapped. */
  ref(s: number, key: string): EntryRef {
    this.book.touch(s);
    const chunk = this.table.chunkFor(s)!;
    const old = this.refs[s];
    if (old !== undefined) {
      if (old.live && old.chunk === chunk && old.generation === this.book.generation[s]) return old.asRef();
      old.kill();
    }
    const ref = new RefImpl(this, s, key, chunk, this.table.chunkKeyOf(s), this.table.offsetInChunk(s));
    this.refs[s] = ref;
    return ref.asRef();
  }

  /** A chunk left the mapping LRU: the refs into it die, so they hold no mapping alive. */
  chunkGone(chunkKey: number): void {
    const [first, end] = this.table.slotsOfChunk(chunkKey);
    const refs = this.refs;
    for (let s = first; s < end; s++) {
      const r = refs[s];
      if (r !== undefined) {
        r.kill();
        refs[s] = undefined;
      }
    }
  }

  /** Whether slot `s` (verified) holds exactly the source `src`. */
  holds(s: number, src: Source): boolean {
    return s >= 0 && src.fp.equals(this.book.sourceFp.subarray(s * 16, s * 16 + 16));
  }

  /** Caches the strings every view of slot `s` shares (its sourceFp must be current). */
  private describe(s: number): void {
    const book = this.book;
    const hex = book.sourceFp.toString('hex', s * 16, s * 16 + 16);
    book.fpHex[s] = hex;
    book.etag[s] = `"${hex}-${this.format.name}-${book.generation[s]}"`;
  }

  // ---- writing --------------------------------------------------------------------------------

  /**
   * Writes a decoded image as `key`'s entry, then binds it. `assertOpen` runs before the index
   * append so a cache closed mid-write records nothing.
   */
  async write(key: string, img: DecodedImage, src: Source, assertOpen: () => void): Promise<void> {
    const book = this.book;
    const f = this.format;
    // An unpinned old entry is unbound first, so its slot can take the new pixels and no reader
    // ever sees a half-written entry; a pinned one stays readable until its last view is released.
    const old = book.slotOf.get(key);
    if (old !== undefined && book.pins[old] === 0) book.unbind(old);
    const a = book.allocate(this.writable);
    if (a.slot < 0) {
      throw new PixtableError('TABLE_FULL', `${f.name}: all ${book.capacity} entries are pinned`, {
        details: { retryAfter: 1 },
      });
    }
    if (a.evicted !== undefined) this.counters.evictions++;
    const slot = a.slot;
    const gen = this.nextGen;
    this.nextGen = gen >= 0xffffffff ? 1 : gen + 1;
    const tight = toTableLayout(img, f);
    try {
      await this.table.writeEntry(slot, gen, fingerprint(key), src.fp, img.width, img.height, tight);
      if (this.ctx.syncAlways) await this.table.syncFiles();
      assertOpen();
      this.log!.append(OP_SET, key, slot, gen, () => book.live());
    } catch (e) {
      book.release(slot);
      throw e;
    } finally {
      // readers may pin the slot again: it holds either the complete new entry or is free
      this.readers?.endRecycle(slot);
    }
    const cur = book.slotOf.get(key);
    if (cur !== undefined) book.unbind(cur);
    book.bind(key, slot, gen);
    book.verified[slot] = 1;
    book.width[slot] = img.width;
    book.height[slot] = img.height;
    src.fp.copy(book.sourceFp, slot * 16);
    this.describe(slot);
    this.ctx.revalidator.sign(book, slot, src);
    if (this.ctx.syncAlways) this.log!.flush();
  }

  /** Drops a damaged entry: counted, logged, a DEL record (writers), unbound. */
  drop(s: number, key: string, problem: string): void {
    this.counters.dropped++;
    this.ctx.logger.warn('cache entry dropped', { format: this.format.name, key, slot: s, problem });
    this.append(OP_DEL, key, s);
    this.book.unbind(s);
  }

  /** Removes `key`'s entry (a pinned one is freed when released). True if there was one. */
  remove(key: string): boolean {
    const s = this.book.slotOf.get(key);
    if (s === undefined) return false;
    this.append(OP_DEL, key, s);
    this.book.unbind(s);
    return true;
  }

  stats(mappedBytes: number): FormatStats {
    return {
      format: this.format.name,
      entries: this.book.liveCount,
      capacity: this.book.capacity,
      ...this.counters,
      pinned: this.book.pinnedCount,
      mappedBytes,
      diskBytes: this.table.diskBytes(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.log?.close();
    this.table.close();
    this.readers?.close();
    if (this.lockFd >= 0) releaseWriterLock(this.lockFd);
  }
}
