// Reading a source image's fingerprint. Entries record the SHA-256 prefix of the bytes they were
// decoded from; revalidation compares it, uploads compute it while the body streams to disk, and
// GET /v1/sources uses it as the original's ETag. Files are hashed in fixed-size reads, never held
// whole: decoders read the file themselves (page cache).
import fs from 'node:fs';
import path from 'node:path';
import { createHash, type Hash } from 'node:crypto';
import { PixtableError } from '../errors.js';
import { resolveExisting } from './sources.js';

export interface Source {
  /** real path the bytes were read from; decoders read it again (page cache) */
  path: string;
  fp: Buffer;
  mtimeMs: number;
  size: number;
  ino: number;
}

/** A source opened for reading: the handle stays valid if the file is replaced meanwhile. */
export interface OpenSource {
  handle: fs.promises.FileHandle;
  path: string;
  stat: fs.Stats;
}

/** An original opened for serving (ImageCache.openSource). */
export interface SourceFile {
  /** positioned reads only; the caller closes it */
  handle: fs.promises.FileHandle;
  /** bytes */
  size: number;
  mtimeMs: number;
  /** hex of the 16-byte fingerprint (SHA-256 prefix of the bytes), as in PutResult */
  fingerprint: string;
}

/** Bytes per read while hashing a file: large enough for few syscalls, small enough to not matter. */
const HASH_READ_BYTES = 256 * 1024;

/** The running hash a fingerprint is the prefix of (fed chunk by chunk by streaming uploads). */
export function sourceHash(): Hash {
  return createHash('sha256');
}

/** The 16-byte fingerprint of everything fed to `hash` (sourceHash()). */
export function fingerprintOf(hash: Hash): Buffer {
  return hash.digest().subarray(0, 16);
}

/** 16-byte SHA-256 prefix: of source bytes (source fingerprint) or of a key (key fingerprint). */
export function fingerprint(bytes: Buffer | string): Buffer {
  return fingerprintOf(sourceHash().update(bytes));
}

export function sourceOf(file: string, fp: Buffer, stat: fs.Stats): Source {
  return { path: file, fp, mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino };
}

/** The source file of `key`, open, proven a regular file inside `root`. SOURCE_NOT_FOUND, INVALID_KEY. */
export async function openSource(root: string, key: string): Promise<OpenSource> {
  const file = await resolveExisting(root, key);
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new PixtableError('SOURCE_NOT_FOUND', key);
    throw e;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new PixtableError('SOURCE_NOT_FOUND', `${key} is not a file`);
    return { handle, path: file, stat };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** The fingerprint of the first `size` bytes of an open file, read in HASH_READ_BYTES pieces. */
export async function hashFile(handle: fs.promises.FileHandle, size: number): Promise<Buffer> {
  const hash = sourceHash();
  const buf = Buffer.allocUnsafe(Math.min(HASH_READ_BYTES, Math.max(1, size)));
  let at = 0;
  while (at < size) {
    const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, size - at), at);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    at += bytesRead;
  }
  return fingerprintOf(hash);
}

/** The source of `key`, hashed. SOURCE_NOT_FOUND, EMPTY_SOURCE, SOURCE_TOO_LARGE, INVALID_KEY. */
export async function readSource(root: string, key: string, maxBytes: number): Promise<Source> {
  const { handle, path: file, stat } = await openSource(root, key);
  try {
    if (stat.size === 0) throw new PixtableError('EMPTY_SOURCE', key);
    if (stat.size > maxBytes) {
      throw new PixtableError('SOURCE_TOO_LARGE', `${key} is ${stat.size} bytes, the limit is ${maxBytes}`);
    }
    return sourceOf(file, await hashFile(handle, stat.size), stat);
  } finally {
    await handle.close();
  }
}

/**
 * The synchronous hit path's read (peek(), peekRef()): the source of `key`, or undefined when it
 * cannot be read or is over `maxBytes` — either way the entry cannot be confirmed.
 */
export function readSourceSync(root: string, key: string, maxBytes: number): Source | undefined {
  const file = path.join(root, key);
  try {
    const stat = fs.statSync(file);
    if (stat.size > maxBytes) return undefined;
    return sourceOf(file, fingerprint(fs.readFileSync(file)), stat);
  } catch {
    return undefined;
  }
}
