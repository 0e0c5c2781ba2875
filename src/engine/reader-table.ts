// The reader table: pins that cross processes (LMDB's reader table is the model). One small mapped
// file per table, `tables/<format>.readers`, shared by the writer and every read-only process:
//
//   header page   magic "PXRD", version, capacity, records, record bytes
//   recycle marks one u32 per slot, written by the writer only
//   records       one per reading ImageCache: a claim byte (locked, see below), the pid, then one
//                 u32 per slot: 1 while this reader holds any pin on the slot, else 0
//
// A reading cache claims a record by taking an open-file-description lock on its first byte; the
// kernel drops that lock when the process dies (a closing cache drops it itself), so a SIGKILLed reader's
// pins stop counting at once, without any cleanup by anyone: the writer ignores records whose
// claim byte is not locked. A record's words are written only by its owner (it zeroes them when
// it claims the record), the marks only by the writer; so no word has two writers.
//
// The ordering that makes a pin safe (both sides sequentially consistent, with full fences, in
// the native addon):
//   reader:  publish pin (word := 1)  → read the slot's mark and the entry's trailer generation;
//            if marked or the generation changed, withdraw the pin: the entry is not this one.
//   writer:  mark the slot  → scan every record's word for the slot; if a live reader publishes a
//            pin, unmark and leave the slot alone; else overwrite it, unmarking only after the
//            new entry and its index record are complete.
// Either the writer's scan sees the reader's pin, or the reader's check sees the writer's mark
// (or the new generation): never neither.
import fs from 'node:fs';
import { PixtableError } from '../errors.js';
import { alignUp } from '../formats.js';
import { native } from '../native/addon.js';
import { mapRange, PAGE_SIZE } from '../native/mmap.js';

const MAGIC = 0x44525850; // "PXRD"
const VERSION = 1;
const HEADER_BYTES = PAGE_SIZE;
const RECORD_HEAD = 64; // claim byte at 0, pid at 4
/** At most this many reading caches at once per table (LMDB's default maxreaders is 126). */
const MAX_RECORDS = 128;
/** Bound on all records' bytes, so the table stays well inside one mapping (< 2^31). */
const RECORDS_BYTES_MAX = 1 << 30;

export interface ReaderGeometry {
  capacity: number;
  records: number;
  recordBytes: number;
  marksAt: number;
  recordsAt: number;
  size: number;
}

export function readerGeometry(capacity: number): ReaderGeometry {
  const recordBytes = alignUp(RECORD_HEAD + capacity * 4, PAGE_SIZE);
  const records = Math.max(1, Math.min(MAX_RECORDS, Math.floor(RECORDS_BYTES_MAX / recordBytes)));
  const marksAt = HEADER_BYTES;
  const recordsAt = marksAt + alignUp(capacity * 4, PAGE_SIZE);
  return { capacity, records, recordBytes, marksAt, recordsAt, size: recordsAt + records * recordBytes };
}

function header(g: ReaderGeometry): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(VERSION, 4);
  h.writeUInt32LE(g.capacity, 8);
  h.writeUInt32LE(g.records, 12);
  h.writeUInt32LE(g.recordBytes, 16);
  return h;
}

function matches(fd: number, g: ReaderGeometry): boolean {
  const want = header(g);
  const got = Buffer.alloc(20);
  return (
    fs.readSync(fd, got, 0, 20, 0) === 20 &&
    got.equals(want.subarray(0, 20)) &&
    fs.fstatSync(fd).size >= g.size
  );
}

/** Creates the file at `file` unless one exists (link: atomic, never replaces). */
function createIfMissing(file: string, g: ReaderGeometry, replace: boolean): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const fd = fs.openSync(tmp, 'wx');
  try {
    fs.writeSync(fd, header(g), 0, HEADER_BYTES, 0);
    fs.ftruncateSync(fd, g.size); // sparse: pages exist once a reader or the writer touches them
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    if (replace) fs.renameSync(tmp, file);
    else fs.linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

export class ReaderTable {
  private readonly map: Buffer;
  /** this cache's record (readers), or -1 (the writer) */
  private readonly record: number;
  private readonly ownAt: number;
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly g: ReaderGeometry,
    record: number,
  ) {
    this.map = mapRange(fd, 0, g.size, true);
    this.record = record;
    this.ownAt = record < 0 ? -1 : g.recordsAt + record * g.recordBytes + RECORD_HEAD;
  }

  /**
   * The writer's view: it creates the file, or replaces one of another geometry (it holds the
   * table's writer lock, so no other writer races it; a reader of another geometry is
   * misconfigured and refused by its own open).
   */
  static openWriter(file: string, capacity: number): ReaderTable {
    const g = readerGeometry(capacity);
    let fd = openExisting(file);
    if (fd < 0 || !matches(fd, g)) {
      if (fd >= 0) fs.closeSync(fd);
      createIfMissing(file, g, true);
      fd = fs.openSync(file, 'r+');
    }
    return new ReaderTable(fd, g, -1);
  }

  /** A reading cache's view: claims a free record (READERS_FULL when every one is held). */
  static openReader(file: string, capacity: number): ReaderTable {
    const g = readerGeometry(capacity);
    let fd = openExisting(file);
    if (fd < 0) {
      createIfMissing(file, g, false);
      fd = fs.openSync(file, 'r+');
    }
    try {
      if (!matches(fd, g)) {
        throw new PixtableError(
          'INVALID_CONFIG',
          `${file} was made for another table geometry; open the reader with the writer's formats`,
        );
      }
      for (let r = 0; r < g.records; r++) {
        if (native.lockByte(fd, g.recordsAt + r * g.recordBytes)) {
          const t = new ReaderTable(fd, g, r);
          t.claim();
          return t;
        }
      }
      throw new PixtableError(
        'READERS_FULL',
        `all ${g.records} reader records of ${file} are held by live processes`,
      );
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** A claimed record may hold a dead owner's words: cleared before the first pin. */
  private claim(): void {
    const m = this.map;
    const end = this.ownAt + this.g.capacity * 4;
    for (let i = this.ownAt; i < end; i += 4) if (m.readUInt32LE(i) !== 0) m.writeUInt32LE(0, i);
    native.atomicStore(m, this.ownAt - RECORD_HEAD + 4, process.pid);
  }

  // ---- readers --------------------------------------------------------------------------------

  /**
   * Publishes this process's pin on `slot`, then checks the writer is not recycling it. False
   * (pin withdrawn) when it is: the caller must treat the entry as gone. The caller also checks
   * the entry's trailer generation after this returns true.
   */
  pin(slot: number): boolean {
    if (this.closed) return false;
    native.atomicStore(this.map, this.ownAt + slot * 4, 1);
    if (this.map.readUInt32LE(this.g.marksAt + slot * 4) === 0) return true;
    this.unpin(slot);
    return false;
  }

  /** Whether the writer is recycling `slot` right now (a reader's failed check is then no damage). */
  marked(slot: number): boolean {
    return !this.closed && native.atomicLoad(this.map, this.g.marksAt + slot * 4) !== 0;
  }

  unpin(slot: number): void {
    if (this.closed) return;
    native.atomicStore(this.map, this.ownAt + slot * 4, 0);
  }

  // ---- the writer -----------------------------------------------------------------------------

  /**
   * Marks `slot` as being recycled unless a live reader pins it. True: the caller may overwrite
   * it and calls endRecycle() once the new entry is complete (or the write failed). False: some
   * live process holds the slot; it stays unmarked and must not be written.
   */
  beginRecycle(slot: number): boolean {
    const g = this.g;
    const m = this.map;
    native.atomicStore(m, g.marksAt + slot * 4, 1);
    let from = 0;
    while (from < g.records) {
      const at = g.recordsAt + from * g.recordBytes;
      const i = native.firstNonZero(m, at + RECORD_HEAD + slot * 4, g.recordBytes, g.records - from);
      if (i < 0) return true;
      const r = from + i;
      // A word of a record nobody holds is a dead reader's: it does not count.
      if (native.byteLocked(this.fd, g.recordsAt + r * g.recordBytes)) {
        native.atomicStore(m, g.marksAt + slot * 4, 0);
        return false;
      }
      from = r + 1;
    }
    return true;
  }

  endRecycle(slot: number): void {
    if (this.closed) return;
    native.atomicStore(this.map, this.g.marksAt + slot * 4, 0);
  }

  /** Live readers holding `slot`, other than this cache (what the tests check the writer sees). */
  holders(slot: number): number {
    const g = this.g;
    let n = 0;
    for (let r = 0; r < g.records; r++) {
      const at = g.recordsAt + r * g.recordBytes;
      if (
        this.map.readUInt32LE(at + RECORD_HEAD + slot * 4) !== 0 &&
        r !== this.record &&
        native.byteLocked(this.fd, at)
      )
        n++;
    }
    return n;
  }

  /**
   * Drops the claim. The lock is released explicitly: the mapping holds the file description (and
   * so its lock) until it is collected, and a closed cache's words must stop counting now.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.record >= 0) native.unlockByte(this.fd, this.g.recordsAt + this.record * this.g.recordBytes);
    fs.closeSync(this.fd);
  }
}

function openExisting(file: string): number {
  try {
    return fs.openSync(file, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw e;
  }
}
