// The index: key → slot, persisted MMKV-style as an append-only log of CRC-protected records in
// its own mapped file. Replay stops at the first bad record and zeroes the tail; compaction writes
// a fresh file, syncs it and renames it over the old one, so a crash at any point leaves either
// the old or the new log whole. The file grows by doubling.
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { mapRange, flushRange, PAGE_SIZE } from '../native/mmap.js';
import { native } from '../native/addon.js';
import { PixtableError, storageFullOr } from '../errors.js';

const INDEX_MAGIC = 0x58495850; // "PXIX"
const INDEX_VERSION = 1;
const RECORD_HEAD = 8; // u32 payload length, u32 crc32(payload)
const PAYLOAD_FIXED = 12; // u8 op, u8 0, u16 key length, u32 slot, u32 generation
const INITIAL_BYTES = 64 * 1024;
const MAX_BYTES = 1 << 30;
const MAX_KEY_BYTES = 4096;

export const OP_SET = 1;
export const OP_DEL = 2;

export interface IndexRecord {
  op: number;
  key: string;
  slot: number;
  generation: number;
}

export interface LiveRecord {
  key: string;
  slot: number;
  generation: number;
}

export interface IndexOpenResult {
  log: IndexLog;
  records: IndexRecord[];
  /** the log was missing, foreign or belonged to another table: it was started afresh */
  reset: boolean;
  /** bytes of a torn or corrupt tail that replay discarded */
  discardedBytes: number;
  /** why an existing file could not be replayed whole (started afresh, or truncated) */
  problem?: string;
}

/** Reads records from `pos` until the end marker or the first bad record (whose tail a writer zeroes). */
function scan(
  map: Buffer,
  pos: number,
  writable: boolean,
): { records: IndexRecord[]; end: number; discardedBytes: number } {
  const size = map.length;
  const records: IndexRecord[] = [];
  let discardedBytes = 0;
  for (;;) {
    if (pos + RECORD_HEAD > size) break;
    const len = map.readUInt32LE(pos);
    if (len === 0) break;
    const p = pos + RECORD_HEAD;
    const ok =
      len >= PAYLOAD_FIXED &&
      p + len <= size &&
      map.readUInt16LE(p + 2) === len - PAYLOAD_FIXED &&
      map.readUInt32LE(pos + 4) === crc32(map.subarray(p, p + len));
    if (!ok) {
      // A torn append (the writer died mid-record) or damage: everything from here on is dropped.
      let last = size;
      while (last > pos && map[last - 1] === 0) last--;
      discardedBytes = last - pos;
      if (writable) map.fill(0, pos);
      break;
    }
    records.push({
      op: map[p]!,
      slot: map.readUInt32LE(p + 4),
      generation: map.readUInt32LE(p + 8),
      key: map.toString('utf8', p + PAYLOAD_FIXED, p + len),
    });
    pos = p + len;
  }
  return { records, end: pos, discardedBytes };
}

function recordBytes(keyLen: number): number {
  return RECORD_HEAD + PAYLOAD_FIXED + keyLen;
}

export class IndexLog {
  readonly path: string;
  private fd: number;
  private map: Buffer;
  private end: number;
  private readonly writable: boolean;
  private readonly preallocate: boolean;
  private tableId: Buffer;
  private dirty = false;

  private constructor(
    file: string,
    fd: number,
    map: Buffer,
    end: number,
    writable: boolean,
    preallocate: boolean,
    tableId: Buffer,
  ) {
    this.path = file;
    this.fd = fd;
    this.map = map;
    this.end = end;
    this.writable = writable;
    this.preallocate = preallocate;
    this.tableId = tableId;
  }

  /** Bytes used by records (for stats and compaction decisions). */
  get usedBytes(): number {
    return this.end - PAGE_SIZE;
  }

  get capacityBytes(): number {
    return this.map.length - PAGE_SIZE;
  }

  static open(
    file: string,
    tableId: Buffer,
    writable: boolean,
    preallocate: boolean,
  ): IndexOpenResult | null {
    const fresh = (problem?: string): IndexOpenResult => ({
      log: IndexLog.create(file, tableId, INITIAL_BYTES, [], preallocate),
      records: [],
      reset: true,
      discardedBytes: 0,
      ...(problem ? { problem } : {}),
    });
    let fd: number;
    try {
      fd = fs.openSync(file, writable ? 'r+' : 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      return writable ? fresh() : null;
    }
    let size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(24);
    let problem: string | undefined;
    if (size < 24 || fs.readSync(fd, head, 0, 24, 0) !== 24)
      problem = `file is ${size} bytes, shorter than its header`;
    else if (head.readUInt32LE(0) !== INDEX_MAGIC) problem = 'not a pixtable index (bad magic)';
    else if (head.readUInt32LE(4) !== INDEX_VERSION) problem = `index version ${head.readUInt32LE(4)}`;
    else if (head.readUInt32LE(16) !== crc32(head.subarray(0, 16))) problem = 'index header CRC mismatch';
    else if (!head.subarray(8, 16).equals(tableId)) problem = 'index of another table';
    else if (size > MAX_BYTES) problem = `file is ${size} bytes, larger than an index can be`;
    if (!problem && (size < 2 * PAGE_SIZE || size % PAGE_SIZE !== 0)) {
      // Truncated (a copy cut short, a full disk): the whole records before the cut are still good.
      // A writer grows the file back to whole pages; the lost tail reads as zeros, so replay stops
      // at the cut. (Growing is safe while others map it; only shrinking is not.)
      if (!writable) {
        fs.closeSync(fd);
        return null;
      }
      const whole = Math.max(2 * PAGE_SIZE, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE);
      if (preallocate) native.preallocate(fd, size, whole - size);
      else fs.ftruncateSync(fd, whole);
      problem = `file was truncated to ${size} bytes; records after the cut are lost`;
      size = whole;
    } else if (problem) {
      fs.closeSync(fd);
      return writable ? fresh(problem) : null;
    }
    const map = mapRange(fd, 0, size, writable);
    const { records, end: pos, discardedBytes } = scan(map, PAGE_SIZE, writable);
    return {
      log: new IndexLog(file, fd, map, pos, writable, preallocate, tableId),
      records,
      reset: false,
      discardedBytes,
      ...(problem ? { problem } : {}),
    };
  }

  private static create(
    file: string,
    tableId: Buffer,
    bytes: number,
    live: readonly LiveRecord[],
    preallocate: boolean,
  ): IndexLog {
    const size = Math.max(bytes, PAGE_SIZE * 2);
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w+');
    try {
      if (preallocate) native.preallocate(fd, 0, size);
      else fs.ftruncateSync(fd, size);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw storageFullOr(e, file);
    }
    const map = mapRange(fd, 0, size, true);
    map.writeUInt32LE(INDEX_MAGIC, 0);
    map.writeUInt32LE(INDEX_VERSION, 4);
    tableId.copy(map, 8, 0, 8);
    map.writeUInt32LE(crc32(map.subarray(0, 16)), 16);
    const log = new IndexLog(file, fd, map, PAGE_SIZE, true, preallocate, tableId);
    for (const r of live) log.write(OP_SET, r.key, r.slot, r.generation);
    flushRange(map, 0, log.end);
    fs.fsyncSync(fd);
    fs.renameSync(tmp, file);
    return log;
  }

  private write(op: number, key: string, slot: number, generation: number): void {
    const m = this.map;
    const p = this.end + RECORD_HEAD;
    const keyLen = m.write(key, p + PAYLOAD_FIXED, 'utf8');
    m[p] = op;
    m[p + 1] = 0;
    m.writeUInt16LE(keyLen, p + 2);
    m.writeUInt32LE(slot, p + 4);
    m.writeUInt32LE(generation, p + 8);
    const len = PAYLOAD_FIXED + keyLen;
    m.writeUInt32LE(crc32(m.subarray(p, p + len)), this.end + 4);
    // The length goes in last: a writer killed before this leaves a zero length, the end marker.
    m.writeUInt32LE(len, this.end);
    this.end += RECORD_HEAD + len;
    this.dirty = true;
  }

  /**
   * Appends one record. When the file is full it is compacted (if live records need at most half
   * of it) or doubled; `live` supplies the current live set, least recently used first.
   */
  append(op: number, key: string, slot: number, generation: number, live: () => LiveRecord[]): void {
    if (!this.writable) throw new PixtableError('READ_ONLY');
    const need = recordBytes(Buffer.byteLength(key));
    if (need - RECORD_HEAD - PAYLOAD_FIXED > MAX_KEY_BYTES)
      throw new PixtableError('INVALID_KEY', 'key longer than 4096 bytes');
    if (this.end + need > this.map.length) this.makeRoom(need, live());
    this.write(op, key, slot, generation);
  }

  private makeRoom(need: number, live: LiveRecord[]): void {
    const liveBytes = live.reduce((n, r) => n + recordBytes(Buffer.byteLength(r.key)), 0);
    let size = this.map.length;
    while (liveBytes + need > (size - PAGE_SIZE) / 2) size *= 2;
    if (size > MAX_BYTES)
      throw new PixtableError('STORAGE_FULL', `index ${this.path} would exceed ${MAX_BYTES} bytes`);
    this.rewrite(live, size);
  }

  /** Writes the live set into a fresh file of `size` bytes and renames it over the log. */
  rewrite(live: LiveRecord[], size = this.map.length): void {
    const fresh = IndexLog.create(this.path, this.tableId, size, live, this.preallocate);
    fs.closeSync(this.fd);
    this.fd = fresh.fd;
    this.map = fresh.map;
    this.end = fresh.end;
    this.dirty = false;
  }

  /** msync of the used part of the log. */
  flush(): void {
    if (!this.dirty) return;
    flushRange(this.map, 0, this.end);
    this.dirty = false;
  }

  /** Like flush(), but fdatasync on the threadpool, so the event loop never waits for the disk. */
  async flushAsync(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const fd = this.fd;
    await new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
  }

  close(): void {
    if (this.writable) this.flush();
    fs.closeSync(this.fd);
  }
}
