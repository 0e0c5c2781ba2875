// Keys name files under storage/sources/. Every key is checked here before it touches the file
// system: nothing may escape the sources root, whether by `..`, absolute paths, NUL bytes,
// symlinks pointing out, or a sibling directory whose name merely starts with the root's name.
import fs from 'node:fs';
import path from 'node:path';
import { PixtableError, invalidParameter } from '../errors.js';

const MAX_KEY_LENGTH = 1024;
// Control characters and backslashes never appear in a key: they are path tricks on some systems.
// eslint-disable-next-line no-control-regex
const BAD_CHARS = /[\u0000-\u001f\u007f\\]/;

/** Syntactic check; returns the key unchanged. Throws INVALID_KEY naming the rule broken. */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw invalidParameter('INVALID_KEY', 'key', `a path of 1 to ${MAX_KEY_LENGTH} characters`, key);
  }
  if (BAD_CHARS.test(key))
    throw invalidParameter('INVALID_KEY', 'key', 'free of control characters and backslashes', key);
  if (key.startsWith('/')) throw invalidParameter('INVALID_KEY', 'key', 'a relative path', key);
  for (const seg of key.split('/')) {
    if (seg === '') throw invalidParameter('INVALID_KEY', 'key', 'a path without empty segments', key);
    // Rejects "." and ".." and hidden names (temporary uploads live in dot-directories).
    if (seg.startsWith('.'))
      throw invalidParameter('INVALID_KEY', 'key', 'segments that do not start with "."', key);
  }
  return key;
}

function inside(root: string, p: string): boolean {
  return p.startsWith(root + path.sep);
}

/**
 * The real path of an existing source, proven to lie inside `root` (itself a real path).
 * Throws INVALID_KEY or SOURCE_NOT_FOUND.
 */
export async function resolveExisting(root: string, key: string): Promise<string> {
  validateKey(key);
  const joined = path.join(root, key);
  if (!inside(root, joined)) throw new PixtableError('INVALID_KEY', 'key escapes the sources root');
  let real: string;
  try {
    real = await fs.promises.realpath(joined);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new PixtableError('SOURCE_NOT_FOUND', key);
    throw e;
  }
  if (!inside(root, real)) throw new PixtableError('INVALID_KEY', 'key resolves outside the sources root');
  return real;
}

/**
 * Where a new source for `key` would be written, with its parent directories created, proven to
 * lie inside `root`. Throws INVALID_KEY.
 */
export async function resolveForWrite(root: string, key: string): Promise<string> {
  validateKey(key);
  const joined = path.join(root, key);
  if (!inside(root, joined)) throw new PixtableError('INVALID_KEY', 'key escapes the sources root');
  const dir = path.dirname(joined);
  await fs.promises.mkdir(dir, { recursive: true });
  const realDir = await fs.promises.realpath(dir);
  if (realDir !== root && !inside(root, realDir))
    throw new PixtableError('INVALID_KEY', 'key resolves outside the sources root');
  const target = path.join(realDir, path.basename(joined));
  try {
    const st = await fs.promises.lstat(target);
    if (st.isSymbolicLink() || st.isDirectory())
      throw new PixtableError('INVALID_KEY', 'key names a link or directory');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return target;
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
