// A table: the entries of one format, in segment files of at most 1 GiB each (so no mapping ever
// reaches mmap-io's 2^31 offset limit), mapped in chunks of whole entries held in a shared,
// byte-bounded LRU. Entries start on page boundaries: pixel rows, then a 64-byte trailer.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { LRUCache } from 'lru-cache';
import { alignUp, type Format, PIXEL_FORMATS } from '../formats.js';
import { mapRange, PAGE_SIZE } from '../native/mmap.js';
import { native } from '../native/addon.js';
import { PixtableError, storageFullOr } from '../errors.js';
import { segmentFile } from './layout.js';

const TABLE_MAGIC = 0x42545850; // "PXTB"
const ENTRY_MAGIC = 0x4e455850; // "PXEN"
export const LAYOUT_VERSION = 1;
export const TRAILER_BYTES = 64;
const HEADER_FIELDS = 64;
export const SEGMENT_BYTES_MAX = 1 << 30;

// Trailer layout (little-endian), written after the pixels so a torn write is detectable:
//  0 magic u32 | 4 generation u32 | 8 key fingerprint [16] | 24 source fingerprint [16]
// 40 width u32 | 44 height u32 | 48 slot u32 | 52 reserved [8] | 60 crc32 of pixel rows + bytes 0..60
const T_GEN = 4;
const T_KEY = 8;
const T_SRC = 24;
const T_W = 40;
const T_H = 44;
const T_SLOT = 48;
const T_CRC = 60;

export type ChunkCache = LRUCache<number, Buffer>;

const ZERO4 = Buffer.alloc(4);

/** fs.writev until every byte is written (libuv splits beyond IOV_MAX). */
/** Whether the trailer at `t` (offset in `map`) is an entry trailer of `generation`. */
export function trailerNames(map: Buffer, t: number, generation: number): boolean {
  return map.readUInt32LE(t) === ENTRY_MAGIC && map.readUInt32LE(t + T_GEN) === generation;
}

function writeAll(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  return new Promise((resolve, reject) =>
    fs.writev(fd, bufs, pos, (e, written) => {
      if (e) reject(storageFullOr(e, String(fd)));
      else if (written !== total)
        reject(new PixtableError('INTERNAL', `short write: ${written} of ${total} bytes`));
      else resolve();
    }),
  );
}

export interface TableOptions {
  writable: boolean;
  chunkBytes: number;
  preallocate: boolean;
  chunks: ChunkCache;
  /** distinguishes this table's chunks in the shared LRU */
  tableNo: number;
  warn: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface EntryCheck {
  ok: boolean;
  problem?: string;
  width: number;
  height: number;
}

/**
 * The header's fit word: 1 cover (centre crop), 2 inside, 3 and 4 cover with the attention and
 * entropy crops. The crop strategy is geometry (other pixels in every entry), so a changed one
 * fails the header compare and the table is rebuilt; centre keeps 1, so older tables still match.
 */
function fitCode(f: Format): number {
  if (f.fit === 'inside') return 2;
  return f.position === 'attention' ? 3 : f.position === 'entropy' ? 4 : 1;
}

export function entryGeometry(f: Format, chunkBytes: number) {
  const entrySize = alignUp(f.pixelBytes + TRAILER_BYTES, PAGE_SIZE);
  const entriesPerSegment = Math.max(1, Math.floor((SEGMENT_BYTES_MAX - PAGE_SIZE) / entrySize));
  const entriesPerChunk = Math.min(entriesPerSegment, Math.max(1, Math.floor(chunkBytes / entrySize)));
  const chunksPerSegment = Math.ceil(entriesPerSegment / entriesPerChunk);
  return { entrySize, entriesPerSegment, entriesPerChunk, chunksPerSegment };
}

export class Table {
  readonly format: Format;
  readonly dir: string;
  readonly entrySize: number;
  readonly entriesPerSegment: number;
  readonly entriesPerChunk: number;
  readonly chunksPerSegment: number;
  /** random id written into every segment header and the index header: they must agree */
  tableId: Buffer = Buffer.alloc(8);
  /** true when open() found a table it could not use and started a new one */
  rebuilt = false;

  private readonly o: TableOptions;
  private readonly fds: number[] = [];
  private readonly sizes: number[] = [];
  private readonly keyBase: number;
  private readonly header: Buffer;

  constructor(dir: string, format: Format, o: TableOptions) {
    this.dir = dir;
    this.format = format;
    this.o = o;
    const g = entryGeometry(format, o.chunkBytes);
    this.entrySize = g.entrySize;
    this.entriesPerSegment = g.entriesPerSegment;
    this.entriesPerChunk = g.entriesPerChunk;
    this.chunksPerSegment = g.chunksPerSegment;
    this.keyBase = o.tableNo * 2 ** 36;
    this.header = Buffer.alloc(HEADER_FIELDS);
  }

  private segPath(seg: number): string {
    return segmentFile(this.dir, seg);
  }

  private writeHeaderFields(seg: number): Buffer {
    const h = Buffer.alloc(HEADER_FIELDS);
    const f = this.format;
    h.writeUInt32LE(TABLE_MAGIC, 0);
    h.writeUInt32LE(LAYOUT_VERSION, 4);
    h.writeUInt32LE(seg, 8);
    h.writeUInt32LE(f.width, 12);
    h.writeUInt32LE(f.height, 16);
    h.writeUInt32LE(fitCode(f), 20);
    h.writeUInt32LE(PIXEL_FORMATS.indexOf(f.pixelFormat), 24);
    h.writeUInt32LE(f.rowAlignment, 28);
    h.writeUInt32LE(f.stride, 32);
    h.writeUInt32LE(this.entrySize, 36);
    h.writeUInt32LE(this.entriesPerSegment, 40);
    h.writeUInt32LE(TRAILER_BYTES, 44);
    this.tableId.copy(h, 48);
    h.writeUInt32LE(crc32(h.subarray(0, 60)), 60);
    return h;
  }

  /** Why a segment header is unusable, or undefined when it matches this format exactly. */
  private headerProblem(fd: number, seg: number): string | undefined {
    const size = fs.fstatSync(fd).size;
    if (size < PAGE_SIZE) return `file is ${size} bytes, shorter than its header page`;
    const h = this.header;
    fs.readSync(fd, h, 0, HEADER_FIELDS, 0);
    if (h.readUInt32LE(0) !== TABLE_MAGIC) return 'not a pixtable table (bad magic)';
    if (h.readUInt32LE(60) !== crc32(h.subarray(0, 60))) return 'header CRC mismatch';
    if (h.readUInt32LE(4) !== LAYOUT_VERSION)
      return `layout version ${h.readUInt32LE(4)} is not ${LAYOUT_VERSION}`;
    if (seg === 0) h.copy(this.tableId, 0, 48, 56);
    const expected = this.writeHeaderFields(seg);
    if (!expected.subarray(0, 60).equals(h.subarray(0, 60))) {
      return seg === 0 ? 'geometry differs from the configured format' : 'segment belongs to another table';
    }
    return undefined;
  }

  /**
   * Opens segment 0, validating its header. A writer replaces a table it cannot use (renamed
   * aside and deleted, never truncated in place: other processes may still map it).
   */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    if (this.o.writable) this.removeStaleTemps();
    const p0 = this.segPath(0);
    let fd: number;
    try {
      fd = fs.openSync(p0, this.o.writable ? 'r+' : 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !this.o.writable) {
        if (!this.o.writable) return;
        throw e;
      }
      this.create();
      return;
    }
    const problem = this.headerProblem(fd, 0);
    if (!problem) {
      this.fds[0] = fd;
      this.sizes[0] = fs.fstatSync(fd).size;
      return;
    }
    fs.closeSync(fd);
    if (!this.o.writable) {
      this.o.warn('table unusable; serving it as empty until a writer rebuilds it', {
        table: this.dir,
        problem,
      });
      return;
    }
    this.o.warn('table rebuilt', { table: this.dir, problem });
    const aside = `${this.dir}.stale-${process.pid}-${Date.now()}`;
    fs.renameSync(this.dir, aside);
    fs.rmSync(aside, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    this.create();
    this.rebuilt = true;
  }

  /**
   * A writer killed while creating a segment or compacting the index leaves its temp file behind
   * (`*.tmp-<pid>`, as large as the index). Only the holder of the table's writer lock creates
   * them, and a writer opens only under that lock, so any found now are dead: remove them.
   */
  private removeStaleTemps(): void {
    for (const name of fs.readdirSync(this.dir)) {
      if (/\.tmp-\d+$/.test(name)) fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }

  private create(): void {
    this.tableId = randomBytes(8);
    this.fds[0] = this.createSegment(0);
  }

  private createSegment(seg: number): number {
    const final = this.segPath(seg);
    const tmp = `${final}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w+');
    const page = Buffer.alloc(PAGE_SIZE);
    this.writeHeaderFields(seg).copy(page);
    fs.writeSync(fd, page, 0, PAGE_SIZE, 0);
    fs.fsyncSync(fd);
    fs.renameSync(tmp, final);
    this.sizes[seg] = PAGE_SIZE;
    return fd;
  }

  /** fd of a segment, opening (reader) or creating (writer) it; -1 when it does not exist or is unusable. */
  private segFd(seg: number): number {
    const fd = this.fds[seg];
    if (fd !== undefined && fd >= 0) return fd;
    let opened: number;
    try {
      opened = fs.openSync(this.segPath(seg), this.o.writable ? 'r+' : 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (!this.o.writable) return -1;
      opened = this.createSegment(seg);
      this.fds[seg] = opened;
      return opened;
    }
    const problem = this.headerProblem(opened, seg);
    if (problem) {
      fs.closeSync(opened);
      if (!this.o.writable) return -1;
      this.o.warn('segment replaced', { table: this.dir, segment: seg, problem });
      opened = this.createSegment(seg);
    } else {
      this.sizes[seg] = fs.fstatSync(opened).size;
    }
    this.fds[seg] = opened;
    return opened;
  }

  /** Bytes of file offset where `slot`'s entry starts inside its chunk mapping. */
  offsetInChunk(slot: number): number {
    return ((slot % this.entriesPerSegment) % this.entriesPerChunk) * this.entrySize;
  }

  /**
   * The chunk mapping that holds `slot`, or null when the file does not (yet) reach it. A writer
   * grows (and, by default, preallocates) the segment first: mapped pages always lie inside the file.
   */
  chunkFor(slot: number): Buffer | null {
    const seg = Math.floor(slot / this.entriesPerSegment);
    const c = Math.floor((slot - seg * this.entriesPerSegment) / this.entriesPerChunk);
    const key = this.keyBase + seg * this.chunksPerSegment + c;
    const hit = this.o.chunks.get(key);
    if (hit) return hit;
    const fd = this.segFd(seg);
    if (fd < 0) return null;
    const first = c * this.entriesPerChunk;
    const start = PAGE_SIZE + first * this.entrySize;
    const len = Math.min(this.entriesPerChunk, this.entriesPerSegment - first) * this.entrySize;
    if (!this.ensureSize(seg, fd, start + len)) return null;
    const map = mapRange(fd, start, len, this.o.writable);
    this.o.chunks.set(key, map);
    return map;
  }

  /**
   * Whether segment `seg` is at least `end` bytes long; a writer grows it (preallocating blocks by
   * default, whole chunks at a time) so that later mappings never reach past end of file.
   */
  private ensureSize(seg: number, fd: number, end: number): boolean {
    if ((this.sizes[seg] ?? 0) >= end) return true;
    let size = fs.fstatSync(fd).size;
    if (size < end) {
      if (!this.o.writable) return false;
      try {
        if (this.o.preallocate) native.preallocate(fd, size, end - size);
        else fs.ftruncateSync(fd, end);
      } catch (e) {
        throw storageFullOr(e, this.dir);
      }
      size = end;
    }
    this.sizes[seg] = size;
    return true;
  }

  /** File descriptor and file offset of `slot`'s entry, growing the segment to its whole chunk. */
  private locate(slot: number): { fd: number; pos: number } {
    const seg = Math.floor(slot / this.entriesPerSegment);
    const local = slot - seg * this.entriesPerSegment;
    const fd = this.segFd(seg);
    if (fd < 0) throw new PixtableError('INTERNAL', `segment ${seg} of ${this.dir} cannot be opened`);
    const first = Math.floor(local / this.entriesPerChunk) * this.entriesPerChunk;
    const chunkEnd =
      PAGE_SIZE + Math.min(first + this.entriesPerChunk, this.entriesPerSegment) * this.entrySize;
    this.ensureSize(seg, fd, chunkEnd);
    return { fd, pos: PAGE_SIZE + local * this.entrySize };
  }

  /**
   * Writes an entry with pwrite on the threadpool (the kernel copies into the page cache that the
   * mappings share; the event loop never takes page faults for it): invalidates the old trailer,
   * writes the pixel rows (tightly packed in `tight`, padded to the stride by a gathered write of
   * rows and a shared zero buffer), then the trailer with its CRC last.
   */
  async writeEntry(
    slot: number,
    generation: number,
    keyFp: Buffer,
    sourceFp: Buffer,
    width: number,
    height: number,
    tight: Buffer,
  ): Promise<void> {
    const { fd, pos } = this.locate(slot);
    const f = this.format;
    const t = pos + f.pixelBytes;
    fs.writeSync(fd, ZERO4, 0, 4, t);
    const rowBytes = width * f.bytesPerPixel;
    let crc = 0;
    if (rowBytes === f.stride) {
      const body = tight.subarray(0, rowBytes * height);
      crc = crc32(body);
      await writeAll(fd, [body], pos);
    } else {
      const pad = this.padding(f.stride - rowBytes);
      const iov: Buffer[] = new Array<Buffer>(height * 2);
      for (let y = 0; y < height; y++) {
        const row = tight.subarray(y * rowBytes, (y + 1) * rowBytes);
        iov[y * 2] = row;
        iov[y * 2 + 1] = pad;
        crc = crc32(pad, crc32(row, crc));
      }
      await writeAll(fd, iov, pos);
    }
    const tr = Buffer.alloc(TRAILER_BYTES);
    tr.writeUInt32LE(ENTRY_MAGIC, 0);
    tr.writeUInt32LE(generation, T_GEN);
    keyFp.copy(tr, T_KEY, 0, 16);
    sourceFp.copy(tr, T_SRC, 0, 16);
    tr.writeUInt32LE(width, T_W);
    tr.writeUInt32LE(height, T_H);
    tr.writeUInt32LE(slot, T_SLOT);
    tr.writeUInt32LE(crc32(tr.subarray(0, T_CRC), crc), T_CRC);
    fs.writeSync(fd, tr, 0, TRAILER_BYTES, t);
    this.dirty = true;
  }

  /** pixels written since the last syncFiles() */
  dirty = false;
  private pad: Buffer = Buffer.alloc(0);
  private padding(n: number): Buffer {
    if (this.pad.length < n) this.pad = Buffer.alloc(n);
    return this.pad.subarray(0, n);
  }

  /** Full integrity check of one entry against what the index expects of it. */
  checkEntry(slot: number, generation: number, keyFp: Buffer): EntryCheck {
    const bad = (problem: string): EntryCheck => ({ ok: false, problem, width: 0, height: 0 });
    const map = this.chunkFor(slot);
    if (!map) return bad('entry lies beyond the end of the table file');
    const off = this.offsetInChunk(slot);
    const f = this.format;
    const t = off + f.pixelBytes;
    if (map.readUInt32LE(t) !== ENTRY_MAGIC) return bad('no entry trailer (torn or never written)');
    if (map.readUInt32LE(t + T_GEN) !== generation) return bad('generation differs from the index');
    if (map.readUInt32LE(t + T_SLOT) !== slot) return bad('trailer names another slot');
    if (!keyFp.equals(map.subarray(t + T_KEY, t + T_KEY + 16))) return bad('key fingerprint differs');
    const width = map.readUInt32LE(t + T_W);
    const height = map.readUInt32LE(t + T_H);
    const exact = f.fit === 'cover';
    if (
      width < 1 ||
      height < 1 ||
      width > f.width ||
      height > f.height ||
      (exact && (width !== f.width || height !== f.height))
    ) {
      return bad(`impossible size ${width}x${height}`);
    }
    const crc = crc32(map.subarray(t, t + T_CRC), crc32(map.subarray(off, off + f.stride * height)));
    if (crc !== map.readUInt32LE(t + T_CRC)) return bad('CRC mismatch');
    return { ok: true, width, height };
  }

  /** Cheap re-check for read-only processes: the trailer still names this generation. */
  trailerMatches(slot: number, generation: number): boolean {
    const map = this.chunkFor(slot);
    if (!map) return false;
    return trailerNames(map, this.offsetInChunk(slot) + this.format.pixelBytes, generation);
  }

  /** The chunk LRU key of the mapping chunkFor(slot) returns. */
  chunkKeyOf(slot: number): number {
    const seg = Math.floor(slot / this.entriesPerSegment);
    const c = Math.floor((slot - seg * this.entriesPerSegment) / this.entriesPerChunk);
    return this.keyBase + seg * this.chunksPerSegment + c;
  }

  /** Slots [first, end) that live in the chunk with LRU key `key` (a key of this table). */
  slotsOfChunk(key: number): [first: number, end: number] {
    const rel = key - this.keyBase;
    const seg = Math.floor(rel / this.chunksPerSegment);
    const segFirst = seg * this.entriesPerSegment;
    const first = segFirst + (rel - seg * this.chunksPerSegment) * this.entriesPerChunk;
    return [first, Math.min(first + this.entriesPerChunk, segFirst + this.entriesPerSegment)];
  }

  /** Copies the entry's source fingerprint into `out` (16 bytes at `at`). */
  readSourceFp(slot: number, out: Buffer, at: number): void {
    const map = this.chunkFor(slot);
    if (!map) return;
    const t = this.offsetInChunk(slot) + this.format.pixelBytes;
    map.copy(out, at, t + T_SRC, t + T_SRC + 16);
  }

  /** fdatasync of every open segment on the threadpool: writes back pages dirtied through the mappings. */
  async syncFiles(): Promise<void> {
    this.dirty = false;
    await Promise.all(
      this.fds
        .filter((fd) => fd !== undefined && fd >= 0)
        .map((fd) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())))),
    );
  }

  diskBytes(): number {
    let total = 0;
    for (let seg = 0; seg < this.fds.length; seg++) {
      const fd = this.fds[seg];
      if (fd !== undefined && fd >= 0) total += fs.fstatSync(fd).blocks * 512;
    }
    return total;
  }

  /** Forgets this table's chunks in the shared LRU (views handed out keep their mappings alive). */
  dropChunks(): void {
    const lo = this.keyBase;
    const hi = this.keyBase + 2 ** 36;
    for (const k of [...this.o.chunks.keys()]) if (k >= lo && k < hi) this.o.chunks.delete(k);
  }

  close(): void {
    this.dropChunks();
    for (const fd of this.fds) if (fd !== undefined && fd >= 0) fs.closeSync(fd);
    this.fds.length = 0;
  }
}
