// Keys name files under storage/sources/. Every key is checked here before it touches the file
// system: nothing may escape the sources root, whether by `..`, absolute paths, NUL bytes,
// symlinks pointing out, or a sibling directory whose name merely starts with the root's name.
// Containment is decided before anything is created or removed, and a key under a link that
// leads out gets the same answer whether the file behind it exists or not (no existence probe).
import fs from 'node:fs';
import path from 'node:path';
import { PixtableError, invalidParameter, storageFullOr } from '../errors.js';

/** Longest key, in UTF-8 bytes (the HTTP layer counts the same way: src/http/keys.ts). */
export const MAX_KEY_BYTES = 1024;
/**
 * Longest path segment, in UTF-8 bytes: NAME_MAX of Linux file systems (ext4, xfs, tmpfs). A longer
 * name can never exist, so it is a bad key (INVALID_KEY), not a file-system failure.
 */
export const MAX_SEGMENT_BYTES = 255;
// Control characters and backslashes never appear in a key: they are path tricks on some systems.
// eslint-disable-next-line no-control-regex
const BAD_CHARS = /[\u0000-\u001f\u007f\\]/;

/** Syntactic check; returns the key unchanged. Throws INVALID_KEY naming the rule broken. */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw invalidParameter('INVALID_KEY', 'key', `a path of 1 to ${MAX_KEY_BYTES} bytes`, key);
  }
  if (BAD_CHARS.test(key))
    throw invalidParameter('INVALID_KEY', 'key', 'free of control characters and backslashes', key);
  if (key.startsWith('/')) throw invalidParameter('INVALID_KEY', 'key', 'a relative path', key);
  for (const seg of key.split('/')) {
    if (seg === '') throw invalidParameter('INVALID_KEY', 'key', 'a path without empty segments', key);
    // Rejects "." and ".." and hidden names (temporary uploads live in dot-directories).
    if (seg.startsWith('.'))
      throw invalidParameter('INVALID_KEY', 'key', 'segments that do not start with "."', key);
    if (seg.length > MAX_SEGMENT_BYTES / 3 && Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) {
      throw invalidParameter('INVALID_KEY', 'key', `segments of at most ${MAX_SEGMENT_BYTES} bytes`, key);
    }
  }
  return key;
}

function inside(root: string, p: string): boolean {
  return p.startsWith(root + path.sep);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

const outside = (): PixtableError =>
  new PixtableError('INVALID_KEY', 'key resolves outside the sources root');

/**
 * The deepest existing part of `p` (a path under `root`) as a real path, and the names below it
 * that do not exist yet. INVALID_KEY when that real path, or a dangling link just below it, lies
 * outside `root` — decided the same way whether `p` itself exists.
 */
async function confine(root: string, p: string): Promise<{ real: string; missing: string[] }> {
  const missing: string[] = [];
  let at = p;
  for (;;) {
    let real: string;
    try {
      real = await fs.promises.realpath(at);
    } catch (e) {
      const code = errno(e);
      if (code === 'ELOOP') throw new PixtableError('INVALID_KEY', 'key resolves through a symlink loop');
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      if (at === root) throw new PixtableError('SOURCE_NOT_FOUND', 'the sources directory does not exist');
      missing.unshift(path.basename(at));
      at = path.dirname(at);
      continue;
    }
    if (real !== root && !inside(root, real)) throw outside();
    const first = missing[0];
    if (first !== undefined) await refuseLinkOut(root, real, first);
    return { real, missing };
  }
}

/** A dangling link `dir/name` whose target lies outside `root` is refused like a live one. */
async function refuseLinkOut(root: string, dir: string, name: string): Promise<void> {
  let target: string;
  try {
    target = await fs.promises.readlink(path.join(dir, name));
  } catch {
    return; // not a link (or not there at all)
  }
  const resolved = path.resolve(dir, target);
  if (resolved !== root && !inside(root, resolved)) throw outside();
}

/** `root/key` with the key validated and lexically inside the root. */
function joinKey(root: string, key: string): string {
  validateKey(key);
  const joined = path.join(root, key);
  if (!inside(root, joined)) throw new PixtableError('INVALID_KEY', 'key escapes the sources root');
  return joined;
}

/**
 * The real path of an existing source, proven to lie inside `root` (itself a real path).
 * Throws INVALID_KEY or SOURCE_NOT_FOUND.
 */
export async function resolveExisting(root: string, key: string): Promise<string> {
  const { real, missing } = await confine(root, joinKey(root, key));
  if (missing.length > 0) throw new PixtableError('SOURCE_NOT_FOUND', key);
  return real;
}

/**
 * Where a new source for `key` would be written, proven to lie inside `root` before anything is
 * created: the missing parent directories are made only when the upload is committed
 * (makeParent). Throws INVALID_KEY.
 */
export async function resolveForWrite(root: string, key: string): Promise<string> {
  const joined = joinKey(root, key);
  const { real, missing } = await confine(root, path.dirname(joined));
  if (!(await fs.promises.stat(real)).isDirectory())
    throw new PixtableError('INVALID_KEY', 'a segment of the key names a file, not a directory');
  const target = path.join(real, ...missing, path.basename(joined));
  if (missing.length === 0) {
    let st: fs.Stats | undefined;
    try {
      st = await fs.promises.lstat(target);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
    }
    if (st !== undefined && (st.isSymbolicLink() || st.isDirectory()))
      throw new PixtableError('INVALID_KEY', 'key names a link or directory');
  }
  return target;
}

/**
 * Creates the parent directories of `target` (from resolveForWrite) and proves again that they
 * are inside `root`, in case a link appeared in between. STORAGE_FULL, INVALID_KEY.
 */
export async function makeParent(root: string, target: string): Promise<void> {
  const dir = path.dirname(target);
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    throw storageFullOr(e, 'creating the directories of an upload');
  }
  const realDir = await fs.promises.realpath(dir);
  if (realDir !== root && !inside(root, realDir)) throw outside();
}

/**
 * Removes the file system name `key` — a file, or a link itself, never what a link points to.
 * False when there is no such name (also when a concurrent delete removed it first).
 */
export async function removeName(root: string, key: string): Promise<boolean> {
  const joined = joinKey(root, key);
  const { real, missing } = await confine(root, path.dirname(joined));
  if (missing.length > 0) return false;
  const name = path.join(real, path.basename(joined));
  try {
    if ((await fs.promises.lstat(name)).isDirectory()) return false;
    await fs.promises.unlink(name);
    return true;
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return false;
    throw e;
  }
}

/** Every key under `root` (files only, hidden names skipped), sorted. */
export async function listKeys(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const key = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), key);
      else if (e.isFile()) out.push(key);
    }
  };
  await walk(root, '');
  return out.sort();
}
