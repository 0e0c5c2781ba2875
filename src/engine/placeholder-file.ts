// The placeholder file of a format (tables/<format>.place): for each slot, one fixed 64-byte
// record with the ThumbHash and dominant colour of the entry in that slot, so any process —
// the writer, a read-only worker of `serve --workers N`, a library reader — finds a key's
// placeholder with two positioned reads once the key map gave it the slot, without replaying
// anything into its heap.
//
// Derived data, trusted only when whole: a record names the table (its header carries the table
// id), the entry's generation and the key's fingerprint, and is CRC-protected, so a record torn
// by a crash (one pwrite cut short), cut off by a truncated file, left by an older entry of the
// slot or by a rebuilt table is never read as a placeholder. The writer computes a missing one
// again from the entry's pixels (never from the source), so nothing here needs a sync.
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = 0x48505850; // "PXPH"
const VERSION = 1;
/** The header page's length; records start after it. */
const HEADER_BYTES = 4096;
const HEADER_FIELDS = 32;
export const RECORD_BYTES = 64;

// record: crc u32 (of bytes 4..63), generation u32, key fingerprint 16 B, hash length u8,
// dominant r g b u8, ThumbHash bytes (at most 36; ThumbHash's own maximum is 25)
const R_GEN = 4;
const R_KEY = 8;
const R_LEN = 24;
const R_RGB = 25;
const R_HASH = 28;
export const MAX_HASH_BYTES = RECORD_BYTES - R_HASH;

export interface StoredPlaceholder {
  /** the ThumbHash's bytes */
  thumbHash: Buffer;
  /** sRGB 0..255 */
  dominant: { r: number; g: number; b: number };
}

function header(tableId: Buffer): Buffer {
  const h = Buffer.alloc(HEADER_FIELDS);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(VERSION, 4);
  h.writeUInt32LE(RECORD_BYTES, 8);
  tableId.copy(h, 12, 0, 8);
  h.writeUInt32LE(crc32(h.subarray(0, 28)), 28);
  return h;
}

export class PlaceholderFile {
  constructor(
    readonly file: string,
    /** the table's id now (a Buffer the table updates in place when a reader reopens it) */
    private readonly tableId: () => Buffer,
  ) {}

  /**
   * Writers, at open: keeps a file made for this very table, else replaces it with an empty one
   * (temp file + rename, so a reader never sees a half-written header).
   */
  openForWriting(): void {
    // a writer killed between writing a fresh file and renaming it left it; this writer holds the
    // format's lock, so no other is writing one now
    const dir = path.dirname(this.file);
    const stale = `${path.basename(this.file)}.tmp-`;
    for (const name of fs.readdirSync(dir))
      if (name.startsWith(stale)) fs.rmSync(path.join(dir, name), { force: true });
    const want = header(this.tableId());
    const have = Buffer.alloc(HEADER_FIELDS);
    try {
      const fd = fs.openSync(this.file, 'r');
      try {
        fs.readSync(fd, have, 0, HEADER_FIELDS, 0);
      } finally {
        fs.closeSync(fd);
      }
      if (have.equals(want)) return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, want, 0, HEADER_FIELDS, 0);
      fs.ftruncateSync(fd, HEADER_BYTES);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
  }

  /** Writers: the placeholder of the entry `generation` of `keyFp` in `slot`, in one pwrite. */
  write(slot: number, generation: number, keyFp: Buffer, p: StoredPlaceholder): void {
    if (p.thumbHash.length === 0 || p.thumbHash.length > MAX_HASH_BYTES) return;
    const r = Buffer.alloc(RECORD_BYTES);
    r.writeUInt32LE(generation, R_GEN);
    keyFp.copy(r, R_KEY, 0, 16);
    r[R_LEN] = p.thumbHash.length;
    r[R_RGB] = p.dominant.r;
    r[R_RGB + 1] = p.dominant.g;
    r[R_RGB + 2] = p.dominant.b;
    p.thumbHash.copy(r, R_HASH);
    r.writeUInt32LE(crc32(r.subarray(4)), 0);
    const fd = fs.openSync(this.file, 'r+');
    try {
      fs.writeSync(fd, r, 0, RECORD_BYTES, HEADER_BYTES + slot * RECORD_BYTES);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The placeholder stored for entry `generation` of `keyFp` in `slot`, or undefined when there is
   * none that whole: no file, another table's file, a record torn, cut off, or another entry's.
   */
  read(slot: number, generation: number, keyFp: Buffer): StoredPlaceholder | undefined {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return undefined;
    }
    try {
      const h = Buffer.alloc(HEADER_FIELDS);
      if (fs.readSync(fd, h, 0, HEADER_FIELDS, 0) !== HEADER_FIELDS) return undefined;
      if (!h.equals(header(this.tableId()))) return undefined;
      const r = Buffer.alloc(RECORD_BYTES);
      if (fs.readSync(fd, r, 0, RECORD_BYTES, HEADER_BYTES + slot * RECORD_BYTES) !== RECORD_BYTES)
        return undefined;
      if (r.readUInt32LE(0) !== crc32(r.subarray(4))) return undefined;
      if (r.readUInt32LE(R_GEN) !== generation || !r.subarray(R_KEY, R_KEY + 16).equals(keyFp))
        return undefined;
      const len = r[R_LEN]!;
      if (len === 0 || len > MAX_HASH_BYTES) return undefined;
      return {
        thumbHash: Buffer.from(r.subarray(R_HASH, R_HASH + len)),
        dominant: { r: r[R_RGB]!, g: r[R_RGB + 1]!, b: r[R_RGB + 2]! },
      };
    } finally {
      fs.closeSync(fd);
    }
  }
}
