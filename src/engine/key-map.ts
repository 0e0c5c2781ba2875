// The key map: key → slot in a mapped file every process reads (`tables/<format>.keys`), so that a
// read-only process looks keys up in shared page-cache pages instead of replaying the index log
// into a heap Map of its own (LMDB keeps its tree in the map for the same reason). It is derived
// data: the index log stays the crash-safe truth, and the writer rebuilds this file from the log
// every time it opens, so a torn or stale file is never trusted across a writer's restart.
//
//   header page  magic "PXKM", version, capacity, buckets, key area bytes, table id, CRC;
//                then two words the writer updates: retired (1 once replaced) and the live count
//   columns      per slot, each its own page-aligned array: generation u32 (0 = no entry),
//                state u8 (1 = live), key offset u32 and key length u32 into the key area
//   buckets      open addressing, linear probing, a power of two ≥ 2 × capacity: 0 empty,
//                0xffffffff a tombstone, else slot + 1
//   key area     the keys' UTF-8 bytes, appended, never rewritten in place
//
// One writer (the table's lock holder). Its order, every step a sequentially consistent store
// with a full fence (the native addon): a record is invalidated (generation := 0), filled, then
// published (generation := g); only then does a bucket point at it. Key bytes are immutable once
// written, so a reader brackets its exact key compare between two loads of the record's
// generation (a seqlock on the generation, which the writer never reuses for a slot): equal and
// non-zero means the bytes it compared are that generation's key. Hash collisions only cost a
// compare: a slot is returned only for a byte-for-byte equal key.
//
// When the key area or the buckets (tombstones) run out, and at every writer open, the writer
// writes a fresh file, and renames it over the path only after it has marked the file it replaces
// `retired`. A reader that sees its map retired reopens the path; until it finds a new one it
// goes on with the retired map, which is frozen and consistent (entries recycled since are caught
// by the trailer generation check every read-only hit makes).
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { PixtableError, storageFullOr } from '../errors.js';
import { alignUp } from '../formats.js';
import { native } from '../native/addon.js';
import { mapRange, MAP_LIMIT, PAGE_SIZE } from '../native/mmap.js';

const MAGIC = 0x4d4b5850; // "PXKM"
const VERSION = 1;
const H_CAPACITY = 8;
const H_BUCKETS = 12;
const H_KEY_BYTES = 16;
const H_TABLE_ID = 20;
const H_CRC = 28;
const H_RETIRED = 32;
const H_LIVE = 36;
const EMPTY = 0;
const TOMBSTONE = 0xffffffff;
/** the index log's limit; longer keys are never stored, so never found */
const MAX_KEY_BYTES = 4096;
/** key area of a new file: room for keys of this many bytes per slot on average (grows by doubling) */
const KEY_BYTES_PER_SLOT = 48;
const MIN_KEY_AREA = 256 * 1024;
/** rebuild once live + tombstone buckets pass this share of all buckets (probes stay short) */
const MAX_LOAD = 0.75;

export interface KeyRecord {
  key: string;
  slot: number;
  generation: number;
}

export interface KeyGeometry {
  capacity: number;
  buckets: number;
  keyBytes: number;
  genAt: number;
  stateAt: number;
  offAt: number;
  lenAt: number;
  bucketsAt: number;
  keysAt: number;
  size: number;
}

/** The layout for `capacity` slots and a key area of (at least) `keyBytes`, within one mapping. */
export function keyGeometry(capacity: number, keyBytes?: number): KeyGeometry {
  let buckets = 16;
  while (buckets < capacity * 2) buckets *= 2;
  const genAt = PAGE_SIZE;
  const stateAt = genAt + alignUp(capacity * 4, PAGE_SIZE);
  const offAt = stateAt + alignUp(capacity, PAGE_SIZE);
  const lenAt = offAt + alignUp(capacity * 4, PAGE_SIZE);
  const bucketsAt = lenAt + alignUp(capacity * 4, PAGE_SIZE);
  const keysAt = bucketsAt + alignUp(buckets * 4, PAGE_SIZE);
  const room = Math.floor((MAP_LIMIT - 1 - keysAt) / PAGE_SIZE) * PAGE_SIZE;
  const want = alignUp(keyBytes ?? Math.max(MIN_KEY_AREA, capacity * KEY_BYTES_PER_SLOT), PAGE_SIZE);
  const kb = Math.min(want, room);
  return {
    capacity,
    buckets,
    keyBytes: kb,
    genAt,
    stateAt,
    offAt,
    lenAt,
    bucketsAt,
    keysAt,
    size: keysAt + kb,
  };
}

/** FNV-1a over bytes [start, start + len) of `b`. */
function hashBytes(b: Buffer, start: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = start, end = start + len; i < end; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

/** The bucket hash of `key` (what two keys share when they collide; for the tests). */
export function keyHash(key: string): number {
  const b = Buffer.from(key);
  return hashBytes(b, 0, b.length);
}

function headerBytes(g: KeyGeometry, tableId: Buffer): Buffer {
  const h = Buffer.alloc(H_CRC + 4);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(VERSION, 4);
  h.writeUInt32LE(g.capacity, H_CAPACITY);
  h.writeUInt32LE(g.buckets, H_BUCKETS);
  h.writeUInt32LE(g.keyBytes, H_KEY_BYTES);
  tableId.copy(h, H_TABLE_ID, 0, 8);
  h.writeUInt32LE(crc32(h.subarray(0, H_CRC)), H_CRC);
  return h;
}

/** Marks the file now at `file` retired, if it is a key map at all (its readers then reopen). */
function retireFileAt(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    const head = Buffer.alloc(4);
    if (fs.fstatSync(fd).size < PAGE_SIZE || fs.readSync(fd, head, 0, 4, 0) !== 4) return;
    if (head.readUInt32LE(0) !== MAGIC) return;
    native.atomicStore(mapRange(fd, 0, PAGE_SIZE, true), H_RETIRED, 1);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A writer killed while writing a key map leaves `<file>.tmp-<pid>` behind. Only the holder of
 * the table's writer lock writes them, and it calls this under that lock: any found are dead.
 */
function removeDeadTemps(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.tmp-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names)
    if (n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
      fs.rmSync(path.join(dir, n), { force: true });
}

export class KeyMap {
  readonly file: string;
  readonly tableId: Buffer;
  readonly writable: boolean;
  /** per slot: the generation of its entry, 0 while there is none (or it is being rewritten) */
  generation!: Uint32Array;
  /** per slot: 1 while it holds a live entry */
  state!: Uint8Array;
  /** the generation of the record the last find() returned */
  foundGen = 0;
  private g!: KeyGeometry;
  private map!: Buffer;
  private keyOff!: Uint32Array;
  private keyLen!: Uint32Array;
  private buckets!: Uint32Array;
  private mask = 0;
  /** what keyFind needs of the layout, and where it leaves the generation it found */
  private readonly geometry = Buffer.alloc(32);
  private readonly found = Buffer.alloc(4);
  /** writer: first free byte of the key area, buckets not empty (live + tombstones), live count */
  private keyEnd = 0;
  private used = 0;
  private live = 0;
  /** writer: bucket where the last probe() that missed would insert */
  private freeAt = -1;
  private readonly scratch = Buffer.alloc(MAX_KEY_BYTES * 2);

  private constructor(file: string, tableId: Buffer, writable: boolean, map: Buffer, g: KeyGeometry) {
    this.file = file;
    this.tableId = Buffer.from(tableId.subarray(0, 8));
    this.writable = writable;
    this.attach(map, g);
  }

  private attach(map: Buffer, g: KeyGeometry): void {
    this.map = map;
    this.g = g;
    const ab = map.buffer;
    const at = map.byteOffset;
    this.generation = new Uint32Array(ab, at + g.genAt, g.capacity);
    this.state = new Uint8Array(ab, at + g.stateAt, g.capacity);
    this.keyOff = new Uint32Array(ab, at + g.offAt, g.capacity);
    this.keyLen = new Uint32Array(ab, at + g.lenAt, g.capacity);
    this.buckets = new Uint32Array(ab, at + g.bucketsAt, g.buckets);
    this.mask = g.buckets - 1;
    const geo = [g.capacity, this.mask, g.genAt, g.offAt, g.lenAt, g.bucketsAt, g.keysAt, g.keyBytes];
    geo.forEach((v, i) => this.geometry.writeUInt32LE(v, i * 4));
  }

  get capacity(): number {
    return this.g.capacity;
  }

  /** Live keys (the writer's count, published in the header). */
  get liveCount(): number {
    return this.map.readUInt32LE(H_LIVE);
  }

  /** True once a writer replaced this file: reopen the path. */
  get retired(): boolean {
    return this.map.readUInt32LE(H_RETIRED) !== 0;
  }

  // ---- opening --------------------------------------------------------------------------------

  /**
   * The writer's map, rebuilt from `records` (the index log's live set): the file at `file` is
   * retired first, then a fresh one is renamed over it. Never trusts what the file held.
   */
  static build(file: string, capacity: number, tableId: Buffer, records: readonly KeyRecord[]): KeyMap {
    removeDeadTemps(file);
    retireFileAt(file);
    return KeyMap.create(file, capacity, tableId, records, undefined);
  }

  private static create(
    file: string,
    capacity: number,
    tableId: Buffer,
    records: readonly KeyRecord[],
    keyBytes: number | undefined,
  ): KeyMap {
    let need = 0;
    for (const r of records) need += Buffer.byteLength(r.key);
    let g = keyGeometry(capacity, keyBytes);
    while (g.keyBytes < need * 2 && g.keyBytes < keyGeometry(capacity, g.keyBytes * 2).keyBytes)
      g = keyGeometry(capacity, g.keyBytes * 2);
    if (g.keyBytes < need)
      throw new PixtableError('STORAGE_FULL', `${file}: keys of ${need} bytes do not fit one mapping`);
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w+');
    let map: Buffer;
    try {
      fs.ftruncateSync(fd, g.size); // sparse: only the pages written take blocks
      map = mapRange(fd, 0, g.size, true);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw storageFullOr(e, file);
    }
    fs.closeSync(fd); // the mapping keeps the file; nothing else needs the descriptor
    headerBytes(g, tableId).copy(map, 0);
    const km = new KeyMap(file, tableId, true, map, g);
    for (const r of records) if (r.slot < capacity && r.generation !== 0) km.set(r.key, r.slot, r.generation);
    fs.renameSync(tmp, file);
    return km;
  }

  /**
   * A reader's map of the file at `file`, or null when there is none usable (missing, foreign,
   * another geometry, retired, shorter than its geometry): the caller looks again later.
   */
  static openReader(file: string, capacity: number): KeyMap | null {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      const head = Buffer.alloc(H_LIVE + 4);
      if (fs.readSync(fd, head, 0, head.length, 0) !== head.length) return null;
      if (head.readUInt32LE(0) !== MAGIC || head.readUInt32LE(4) !== VERSION) return null;
      if (head.readUInt32LE(H_CRC) !== crc32(head.subarray(0, H_CRC))) return null;
      if (head.readUInt32LE(H_CAPACITY) !== capacity || head.readUInt32LE(H_RETIRED) !== 0) return null;
      const g = keyGeometry(capacity, head.readUInt32LE(H_KEY_BYTES));
      if (g.buckets !== head.readUInt32LE(H_BUCKETS) || g.keyBytes !== head.readUInt32LE(H_KEY_BYTES))
        return null;
      if (fs.fstatSync(fd).size < g.size) return null;
      const map = mapRange(fd, 0, g.size, false);
      return new KeyMap(file, head.subarray(H_TABLE_ID, H_TABLE_ID + 8), false, map, g);
    } finally {
      fs.closeSync(fd);
    }
  }

  // ---- reading (every process) -----------------------------------------------------------------

  /** `key`'s UTF-8 bytes into the scratch buffer; -1 when longer than any stored key. */
  private encode(key: string): number {
    const len = this.scratch.write(key);
    return len > MAX_KEY_BYTES ? -1 : len;
  }

  /** Whether record `s` names the `len` scratch bytes (the caller brackets it with generation loads). */
  private holdsScratch(s: number, len: number): boolean {
    if (this.keyLen[s] !== len) return false;
    const at = this.g.keysAt + this.keyOff[s]!;
    if (at + len > this.map.length) return false;
    return this.scratch.compare(this.map, at, at + len, 0, len) === 0;
  }

  /**
   * The slot whose live record holds exactly `key` (its generation in `foundGen`), or -1. Every
   * candidate's key bytes are compared between two sequentially consistent loads of its
   * generation; a record rewritten meanwhile is looked at again. In the native addon, as one call:
   * in JavaScript the hash, the probe and the three atomic loads cost several times more (and the
   * hash must stay the one `hashBytes` computes here for the writer).
   */
  find(key: string): number {
    const s = native.keyFind(this.map, this.geometry, key, this.found);
    this.foundGen = s < 0 ? 0 : this.found.readUInt32LE(0);
    return s;
  }

  /** Whether slot `s`'s record holds exactly `key` at generation `generation` right now. */
  holds(s: number, key: string, generation: number): boolean {
    const len = this.encode(key);
    if (len < 0 || s < 0 || s >= this.g.capacity || generation === 0) return false;
    const at = this.g.genAt + s * 4;
    return (
      native.atomicLoad(this.map, at) === generation &&
      this.holdsScratch(s, len) &&
      native.atomicLoad(this.map, at) === generation
    );
  }

  /** Slot `s`'s generation, a sequentially consistent load (0: no entry). */
  generationNow(s: number): number {
    return native.atomicLoad(this.map, this.g.genAt + s * 4);
  }

  /** The key of slot `s`'s record (whatever its state). */
  private keyAt(s: number): string {
    const at = this.g.keysAt + this.keyOff[s]!;
    return this.map.toString('utf8', at, Math.min(this.map.length, at + this.keyLen[s]!));
  }

  /** Every live record, in bucket order. */
  records(): KeyRecord[] {
    const out: KeyRecord[] = [];
    const b = this.buckets;
    for (let i = 0; i <= this.mask; i++) {
      const v = b[i]!;
      if (v === EMPTY || v === TOMBSTONE || v > this.g.capacity) continue;
      const s = v - 1;
      const generation = this.generation[s]!;
      if (generation === 0 || this.state[s] !== 1) continue;
      out.push({ key: this.keyAt(s), slot: s, generation });
    }
    return out;
  }

  // ---- the writer -----------------------------------------------------------------------------

  /** The bucket holding the `len` scratch bytes, or -1 (then `freeAt` is where to insert). */
  private probe(len: number): number {
    const b = this.buckets;
    this.freeAt = -1;
    let i = hashBytes(this.scratch, 0, len) & this.mask;
    for (let n = 0; n <= this.mask; n++, i = (i + 1) & this.mask) {
      const v = b[i]!;
      if (v === EMPTY) {
        if (this.freeAt < 0) this.freeAt = i;
        return -1;
      }
      if (v === TOMBSTONE) {
        if (this.freeAt < 0) this.freeAt = i;
        continue;
      }
      const s = v - 1;
      if (this.generation[s] !== 0 && this.holdsScratch(s, len)) return i;
    }
    return -1;
  }

  private store(at: number, value: number): void {
    native.atomicStore(this.map, at, value);
  }

  private setLive(n: number): void {
    this.live = n;
    this.store(H_LIVE, n);
  }

  /** Slot `s` holds no entry: readers stop matching it at once. */
  private clearRecord(s: number): void {
    this.store(this.g.genAt + s * 4, 0);
    this.state[s] = 0;
  }

  /** Tombstones bucket `i` (it held slot `s`) and clears the record. */
  private unlink(i: number, s: number): void {
    this.store(this.g.bucketsAt + i * 4, TOMBSTONE);
    this.clearRecord(s);
    this.setLive(this.live - 1);
  }

  /**
   * Binds `key` to `slot` at `generation` (non-zero): the record is invalidated, written and
   * published, then the key's bucket points at it. A record of another key in `slot` loses its
   * bucket first; the key's previous slot, if another, is cleared.
   */
  set(key: string, slot: number, generation: number): void {
    if (!this.writable) throw new PixtableError('READ_ONLY');
    let len = this.encode(key);
    if (len < 0) throw new PixtableError('INVALID_KEY', `key longer than ${MAX_KEY_BYTES} bytes`);
    if (this.keyEnd + len > this.g.keyBytes || this.used + 1 > this.g.buckets * MAX_LOAD) {
      this.rebuild(len);
      len = this.encode(key); // the rebuild used the scratch buffer
    }
    if (this.state[slot] === 1 && this.generation[slot] !== 0 && !this.holdsScratch(slot, len)) {
      this.scratch.write(this.keyAt(slot));
      const other = this.probe(this.keyLen[slot]!);
      if (other >= 0) this.unlink(other, slot);
      else this.clearRecord(slot);
      len = this.encode(key);
    }
    const i = this.probe(len);
    const prev = i >= 0 ? this.buckets[i]! - 1 : -1;
    let off: number;
    if (this.generation[slot] !== 0 && this.holdsScratch(slot, len)) off = this.keyOff[slot]!;
    else if (prev >= 0)
      off = this.keyOff[prev]!; // the same bytes, never rewritten
    else {
      off = this.keyEnd;
      this.scratch.copy(this.map, this.g.keysAt + off, 0, len);
      this.keyEnd += len;
    }
    const genAt = this.g.genAt + slot * 4;
    this.store(genAt, 0);
    this.keyOff[slot] = off;
    this.keyLen[slot] = len;
    this.state[slot] = 1;
    this.store(genAt, generation);
    if (i >= 0) {
      if (prev !== slot) {
        this.store(this.g.bucketsAt + i * 4, slot + 1);
        this.clearRecord(prev);
      }
      return;
    }
    const at = this.freeAt;
    if (this.buckets[at] === EMPTY) this.used++;
    this.store(this.g.bucketsAt + at * 4, slot + 1);
    this.setLive(this.live + 1);
  }

  /** Unbinds `key` (its bucket becomes a tombstone, its record is cleared). True if it was bound. */
  remove(key: string): boolean {
    if (!this.writable) throw new PixtableError('READ_ONLY');
    const len = this.encode(key);
    if (len < 0) return false;
    const i = this.probe(len);
    if (i < 0) return false;
    this.unlink(i, this.buckets[i]! - 1);
    return true;
  }

  /** A fresh file with only the live records (and room for `extra` more key bytes), retiring this one. */
  private rebuild(extra: number): void {
    const live = this.records();
    let need = extra;
    for (const r of live) need += Buffer.byteLength(r.key);
    const keyBytes = Math.max(this.g.keyBytes, need * 2);
    this.store(H_RETIRED, 1);
    const fresh = KeyMap.create(this.file, this.g.capacity, this.tableId, live, keyBytes);
    this.attach(fresh.map, fresh.g);
    this.keyEnd = fresh.keyEnd;
    this.used = fresh.used;
    this.live = fresh.live;
  }

  close(): void {
    // The mapping goes with the last view of it (mmap-io has no munmap); nothing else is held.
  }
}
