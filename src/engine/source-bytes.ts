// Reading a source image's bytes and fingerprint. Entries record the SHA-256 prefix of the bytes
// they were decoded from; revalidation compares it, and uploads record it.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { PixtableError } from '../errors.js';
import { resolveExisting } from './sources.js';

export interface Source {
  /** real path the bytes were read from; decoders read it again (page cache) */
  path: string;
  bytes: Buffer;
  fp: Buffer;
  mtimeMs: number;
  size: number;
  ino: number;
}

/** 16-byte SHA-256 prefix: of source bytes (source fingerprint) or of a key (key fingerprint). */
export function fingerprint(bytes: Buffer | string): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, 16);
}

export function sourceOf(file: string, bytes: Buffer, stat: fs.Stats): Source {
  return { path: file, bytes, fp: fingerprint(bytes), mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino };
}

/** The source of `key`, read whole. SOURCE_NOT_FOUND, EMPTY_SOURCE, SOURCE_TOO_LARGE, INVALID_KEY. */
export async function readSource(root: string, key: string, maxBytes: number): Promise<Source> {
  const file = await resolveExisting(root, key);
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new PixtableError('SOURCE_NOT_FOUND', key);
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PixtableError('SOURCE_NOT_FOUND', `${key} is not a file`);
    if (st.size === 0) throw new PixtableError('EMPTY_SOURCE', key);
    if (st.size > maxBytes) {
      throw new PixtableError('SOURCE_TOO_LARGE', `${key} is ${st.size} bytes, the limit is ${maxBytes}`);
    }
    const bytes = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const { bytesRead } = await fh.read(bytes, got, st.size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return sourceOf(file, got === st.size ? bytes : bytes.subarray(0, got), st);
  } finally {
    await fh.close();
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
    return sourceOf(file, fs.readFileSync(file), stat);
  } catch {
    return undefined;
  }
}
