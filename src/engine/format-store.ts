// One format's storage in this process: its table (segments, chunk mappings), index log, key map,
// slot book, writer lock, generation counter, counters and the refs handed out per slot. Every
// change of a key's binding goes through here. The writer replays the index log into its book
// (`apply`) and mirrors every binding into the key map; a read-only process never replays: it
// looks keys up in the writer's key map (src/engine/key-map.ts) and keeps heap state only for the
// slots it uses.
import path from 'node:path';
import type { Format } from '../formats.js';
import { PixtableError } from '../errors.js';
import type { EntryRef, FormatStats, ImageView, Logger } from '../types.js';
import type { DecodedImage } from '../native/sharp.js';
import { Table, type ChunkCache } from './table.js';
import { IndexLog, OP_DEL, OP_SET, type IndexRecord } from './index-log.js';
import { LIVE, SlotBook, type EntryNames } from './slots.js';
import { indexFile, keysFile } from './layout.js';
import { KeyMap } from './key-map.js';
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

/**
 * How often a reader whose key map was retired (the writer replaced the file) looks for the new
 * one; meanwhile the retired map is frozen and consistent, and trailer checks guard every hit.
 */
const KEYS_RETRY_MS = 5;
/**
 * A reader's ETag and fingerprint strings are cached for this many slots (direct-mapped by slot
 * number, a power of two), not one per entry; a slot whose place another took builds them again.
 */
const NAMES_CACHED = 8192;

/** What a reader's book reads before it has a key map: nothing is live. */
const NO_KEYS = {
  state: new Uint8Array(0),
  generation: new Uint32Array(0),
  liveCount: 0,
  records: () => [],
};

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
  /** the latest ref handed out per slot (every other one handed out is dead); only slots in use */
  private readonly refs = new Map<number, RefImpl>();
  /** the key map: the writer's mirror of its bindings, a reader's index (null: none usable yet) */
  private keys: KeyMap | null = null;
  private readonly keysPath: string;
  /** readers: the generation this process verified per slot (0 = not verified) */
  private verifiedGen: Uint32Array;
  /** readers: when to look for a replacement of a retired (or missing) key map next */
  private keysRetryAt = 0;
  /** readers: the table id of the last key map whose table this one was checked against */
  private keysTableSeen: Buffer | undefined;
  /** readers: recently used slots' strings, with the slot and generation they were built for */
  private readonly recentNames = new Array<(EntryNames & { slot: number; gen: number }) | undefined>(
    NAMES_CACHED,
  );
  /** readers: the last lookup's key and the slot it found at verifiedGen (acquire's fast path) */
  private lastKey: string | undefined;
  private lastSlot = -1;
  /** readers: damaged entries already reported (slot → generation), so each is said once */
  private readonly reported = new Map<number, number>();
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
    this.keysPath = keysFile(path.dirname(dir), format.name);
    this.verifiedGen = new Uint32Array(ctx.readOnly ? format.maxCount : 0);
    this.book = ctx.readOnly ? this.mappedBook() : new SlotBook(format.maxCount);
    try {
      this.table.open();
      if (ctx.readOnly) this.openKeys();
      else this.loadIndex();
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
    // Derived from the log, never trusted from before: whatever the file held (torn by a crash,
    // another table's) is retired and replaced.
    this.keys = KeyMap.build(this.keysPath, this.format.maxCount, this.table.tableId, this.book.live());
  }

  // ---- a reader's key map ---------------------------------------------------------------------

  /** A reader's book over its key map, or over nothing yet (then no slot reads as live). */
  private mappedBook(): SlotBook {
    return new SlotBook(this.format.maxCount, this.keys ?? NO_KEYS);
  }

  /**
   * Readers: opens the key map at its path. One of another table (the writer rebuilt the table)
   * has the table reopened, once per table id seen; if the table still differs, the map is not
   * used and the reader serves nothing of that table.
   */
  private openKeys(): void {
    const fresh = KeyMap.openReader(this.keysPath, this.format.maxCount);
    if (fresh === null) return;
    if (fresh.tableId.equals(this.table.tableId)) {
      this.keys = fresh;
      this.book.attach(fresh);
      return;
    }
    const seen = this.keysTableSeen;
    this.keysTableSeen = fresh.tableId;
    // (the writer rebuilds the table before the map: a map of a new table finds it in place)
    if (seen !== undefined && seen.equals(fresh.tableId)) return;
    this.table.close();
    this.table.open();
    // another table: every slot this process verified, named or reported belongs to the old one
    this.verifiedGen = new Uint32Array(this.format.maxCount);
    this.recentNames.fill(undefined);
    this.reported.clear();
    this.keys = fresh.tableId.equals(this.table.tableId) ? fresh : null;
    this.book = this.mappedBook();
  }

  /** Readers: the key map to look keys up in, after looking for a replacement of a retired one. */
  private readerKeys(): KeyMap | null {
    const k = this.keys;
    if (k !== null && !k.retired) return k;
    const now = performance.now();
    if (now >= this.keysRetryAt) {
      this.keysRetryAt = now + KEYS_RETRY_MS;
      this.openKeys();
    }
    return this.keys;
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

  /**
   * Read-only: the key map shows the writer's entries as they are written; this only looks for a
   * replacement at once (not after the retry interval) when the writer retired the map.
   */
  poll(): void {
    if (!this.ctx.readOnly || (this.keys !== null && !this.keys.retired)) return;
    this.keysRetryAt = 0;
    this.readerKeys();
  }

  private append(op: number, key: string, slot: number): void {
    if (!this.ctx.readOnly && this.log)
      this.log.append(op, key, slot, this.book.generation[slot]!, () => this.book.live());
  }

  // ---- reading --------------------------------------------------------------------------------

  /** Slot of a verified live entry of `key`, or -1. Drops damaged entries. */
  verifiedSlot(key: string): number {
    if (this.ctx.readOnly) return this.readerSlot(key);
    const book = this.book;
    const s = book.slotOf.get(key);
    if (s === undefined) return -1;
    if (book.verified[s] === 1) return s;
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
   * Readers: `key`'s slot from the key map, its trailer checked on every hit (the writer is another
   * process) and its entry verified whole once per generation; heap state only for that slot.
   */
  private readerSlot(key: string): number {
    const keys = this.readerKeys();
    if (keys === null) return -1;
    for (let attempt = 0; attempt < 2; attempt++) {
      const s = keys.find(key);
      if (s < 0) return -1;
      const gen = keys.foundGen;
      if (this.verifiedGen[s] === gen) {
        if (!this.table.trailerMatches(s, gen)) return -1;
        this.lastSlot = s;
        this.lastKey = key;
        return s;
      }
      const check = this.table.checkEntry(s, gen, fingerprint(key));
      if (!check.ok) {
        if (keys.generation[s] !== gen) continue; // recycled while checked: look the key up again
        if (this.readers?.marked(s)) return -1; // being rewritten: gone for now, not damaged
        this.reportDamaged(s, gen, key, check.problem ?? 'damaged');
        return -1;
      }
      const book = this.book;
      book.width[s] = check.width;
      book.height[s] = check.height;
      this.table.readSourceFp(s, book.sourceFp, s * 16);
      book.keyOf[s] = key;
      const sig = book.statSig;
      // written only when set before: a zero page read stays shared, a written one is private
      if (sig[s * 3] !== 0 || sig[s * 3 + 1] !== 0 || sig[s * 3 + 2] !== 0) sig.fill(0, s * 3, s * 3 + 3);
      book.checkedAt[s] = -Infinity;
      this.verifiedGen[s] = gen;
      this.lastSlot = s;
      this.lastKey = key;
      return s;
    }
    return -1;
  }

  /** Readers cannot drop an entry (the writer does, when it meets it): counted and said once. */
  private reportDamaged(s: number, gen: number, key: string, problem: string): void {
    if (this.reported.get(s) === gen) return;
    this.reported.set(s, gen);
    this.counters.dropped++;
    this.ctx.logger.warn('cache entry dropped', { format: this.format.name, key, slot: s, problem });
  }

  /** The generation views and refs of verified slot `s` carry. */
  generationOf(s: number): number {
    return this.ctx.readOnly ? this.verifiedGen[s]! : this.book.generation[s]!;
  }

  /** The ETag and hex fingerprint of verified slot `s`: a writer's per entry, a reader's bounded. */
  names(s: number): EntryNames {
    if (!this.ctx.readOnly) return this.book.names[s]!;
    const gen = this.verifiedGen[s]!;
    const at = s & (NAMES_CACHED - 1);
    const cached = this.recentNames[at];
    if (cached !== undefined && cached.slot === s && cached.gen === gen) return cached;
    const fpHex = this.book.sourceFp.toString('hex', s * 16, s * 16 + 16);
    const named = { slot: s, gen, fpHex, etag: this.etagOf(fpHex, gen) };
    this.recentNames[at] = named;
    return named;
  }

  private etagOf(fpHex: string, gen: number): string {
    return `"${fpHex}-${this.format.name}-${gen}"`;
  }

  /**
   * A pinned view of verified slot `s`, marked recently used; undefined when a read-only process
   * finds, once its pin is published, that the writer is recycling the slot (the caller polls).
   */
  view(s: number, key: string): ImageView | undefined {
    if (!this.acquire(s, key)) return undefined;
    const map = this.table.chunkFor(s)!;
    const off = this.table.offsetInChunk(s);
    if (!this.ctx.readOnly) this.book.touch(s);
    const pixels = map.subarray(off, off + this.format.stride * this.book.height[s]!);
    return new EntryView(this, this.book, s, key, pixels);
  }

  /**
   * Pins slot `s` in this process and, read-only, in the reader table, so that the writer in
   * another process leaves it alone; then re-checks that it still holds the generation this
   * process verified for `key` (once the pin is published the writer cannot start rewriting it;
   * a generation is one slot's one entry, so its key is the one verified). `key`: the key the
   * caller looked up, undefined when it already compared the generation with its own (a ref's).
   * False (nothing pinned) when it does not. One acquire, one release().
   */
  acquire(s: number, key: string | undefined): boolean {
    const book = this.book;
    const held = this.held;
    if (this.ctx.readOnly) {
      if (held !== undefined && (held[s] = held[s]! + 1) === 1 && !this.readers!.pin(s)) {
        this.release(s, undefined);
        return false;
      }
      const gen = this.verifiedGen[s]!;
      const keys = this.keys;
      if (
        keys === null ||
        keys.generationNow(s) !== gen ||
        // (a caller that awaited since its lookup may find the slot verified again, for another key)
        (key !== undefined && !(s === this.lastSlot && key === this.lastKey) && !keys.holds(s, key, gen)) ||
        !this.table.trailerMatches(s, gen)
      ) {
        this.release(s, undefined);
        return false;
      }
    }
    book.pin(s);
    return true;
  }

  /** Undoes acquire(s); `book`: the one the pin was taken in (a reader moving to a rebuilt table replaces it). */
  release(s: number, book: SlotBook | undefined): void {
    // a reader's book replaced since (the table was rebuilt) counts its pins afresh from 0
    if (book !== undefined && book.pins[s]! > 0) book.unpin(s);
    const held = this.held;
    if (held !== undefined && (held[s] = held[s]! - 1) === 0) this.readers!.unpin(s);
  }

  /** Pins a ref's slot as acquire() does, if the ref is still the slot's entry; false when not. */
  acquireRef(r: RefImpl): boolean {
    const book = this.book;
    const s = r.slot;
    if (!r.live || book.state[s] !== LIVE || book.generation[s] !== r.generation) return false;
    if (this.ctx.readOnly && this.verifiedGen[s] !== r.generation) return false;
    return this.acquire(s, undefined);
  }

  /** The ref of verified slot `s`: the same object until the entry is rewritten or unmapped. */
  ref(s: number, key: string): EntryRef {
    if (!this.ctx.readOnly) this.book.touch(s);
    const chunk = this.table.chunkFor(s)!;
    const old = this.refs.get(s);
    if (old !== undefined) {
      if (old.live && old.chunk === chunk && old.generation === this.generationOf(s)) return old.asRef();
      old.kill();
    }
    const ref = new RefImpl(this, s, key, chunk, this.table.chunkKeyOf(s), this.table.offsetInChunk(s));
    this.refs.set(s, ref);
    return ref.asRef();
  }

  /** A chunk left the mapping LRU: the refs into it die, so they hold no mapping alive. */
  chunkGone(chunkKey: number): void {
    const refs = this.refs;
    if (refs.size === 0) return;
    const [first, end] = this.table.slotsOfChunk(chunkKey);
    for (let s = first; s < end; s++) {
      const r = refs.get(s);
      if (r !== undefined) {
        r.kill();
        refs.delete(s);
      }
    }
  }

  /** Whether slot `s` (verified) holds exactly the source `src`. */
  holds(s: number, src: Source): boolean {
    return s >= 0 && src.fp.equals(this.book.sourceFp.subarray(s * 16, s * 16 + 16));
  }

  /** Caches the strings every view of slot `s` shares (its sourceFp must be current). Writers. */
  private describe(s: number): void {
    const fpHex = this.book.sourceFp.toString('hex', s * 16, s * 16 + 16);
    this.book.names[s] = { fpHex, etag: this.etagOf(fpHex, this.book.generation[s]!) };
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
    if (a.evicted !== undefined) {
      this.counters.evictions++;
      this.keys!.remove(a.evicted); // (the slot is marked: no reader pins it meanwhile)
    }
    const slot = a.slot;
    const gen = this.nextGen;
    this.nextGen = gen >= 0xffffffff ? 1 : gen + 1;
    const tight = toTableLayout(img, f);
    try {
      await this.table.writeEntry(slot, gen, fingerprint(key), src.fp, img.width, img.height, tight);
      if (this.ctx.syncAlways) await this.table.syncFiles();
      assertOpen();
      this.log!.append(OP_SET, key, slot, gen, () => book.live());
      // published before the slot is unmarked, so a reader's pin that succeeds finds it complete
      this.keys!.set(key, slot, gen);
    } catch (e) {
      book.release(slot);
      // the key map follows the book: a key unbound above for this write stays unbound
      if (!book.slotOf.has(key)) this.keys!.remove(key);
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
    if (this.ctx.readOnly) return this.reportDamaged(s, this.verifiedGen[s]!, key, problem);
    this.counters.dropped++;
    this.ctx.logger.warn('cache entry dropped', { format: this.format.name, key, slot: s, problem });
    this.unbindKey(key, s);
  }

  /** Removes `key`'s entry (a pinned one is freed when released). True if there was one. */
  remove(key: string): boolean {
    const s = this.book.slotOf.get(key);
    if (s === undefined || this.ctx.readOnly) return false;
    this.unbindKey(key, s);
    return true;
  }

  /** A writer's unbinding of `key` from slot `s`: in the log, the key map and the book. */
  private unbindKey(key: string, s: number): void {
    this.append(OP_DEL, key, s);
    this.keys?.remove(key);
    this.book.unbind(s);
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
