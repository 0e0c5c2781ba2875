// The upload protocol: a new source is streamed to `sources/.tmp/<pid>-<ms>-<rand>` (hashed as it
// goes, so the fingerprint needs no second read), fsynced,
// decoded from there (libvips reads some formats only from files), and committed (renamed over the
// source, or put in the bucket) only after every format decoded, so a broken upload changes
// nothing stored. Writers that died mid-upload leave temp files; the next writer to open removes
// those of dead processes.
import fs from 'node:fs';
import path from 'node:path';
import { PixtableError, invalidParameter, storageFullOr } from '../errors.js';
import { uploadsTmpDir } from './layout.js';
import { fingerprintOf, sourceHash } from './source-bytes.js';
import { makeParent } from './sources.js';

/** An upload temp file older than this is abandoned even if its pid is alive again (pid reuse). */
const STALE_UPLOAD_MS = 60 * 60 * 1000;

/**
 * Removes upload temp files left by writers that died mid-put: those whose process is gone, or
 * that are older than an hour. A live writer of other formats may share sources/, so a recent
 * file of a running process is left alone.
 */
export async function removeStaleUploads(sourcesRoot: string): Promise<void> {
  const dir = uploadsTmpDir(sourcesRoot);
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    const [pidText, msText] = name.split('-');
    const pid = Number(pidText);
    const born = Number(msText);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive || !Number.isFinite(born) || now - born > STALE_UPLOAD_MS) {
      await fs.promises.rm(path.join(dir, name), { force: true });
    }
  }
}

/**
 * What an upload's bytes may be: one buffer, or chunks as they arrive (a `Readable` such as an
 * HTTP request, any async iterable of Buffer/Uint8Array). Chunks are written as they come, so an
 * upload holds one chunk in memory, not the file.
 */
export type UploadBody = Uint8Array | AsyncIterable<Uint8Array>;

/** A fresh temp file name in `sources/.tmp/` (`<pid>-<ms>-<random>`, what removeStaleUploads reads). */
export function tempPath(sourcesRoot: string): string {
  const name = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  return path.join(uploadsTmpDir(sourcesRoot), name);
}

/**
 * Writes `body` to a fresh temp file while hashing it, runs `check(tmpPath)` (the decodes), and
 * only if it resolves runs `commit` — the source store's step that makes the file the source
 * (a rename over the target, an upload to a bucket). On any failure the temp file is removed and
 * the error rethrown: the stored source is untouched.
 * EMPTY_SOURCE, SOURCE_TOO_LARGE (more than `maxBytes`, found while streaming), STORAGE_FULL.
 * Returns check's and commit's results.
 */
export async function stageUpload<T, C>(
  sourcesRoot: string,
  body: UploadBody,
  maxBytes: number,
  check: (tmpPath: string) => Promise<T>,
  commit: (tmpPath: string, stat: fs.Stats, fp: Buffer) => Promise<C>,
): Promise<{ result: T; committed: C }> {
  const dir = uploadsTmpDir(sourcesRoot);
  const tmp = tempPath(sourcesRoot);
  try {
    const { stat, fp } = await writeTemp(dir, tmp, body, maxBytes);
    const result = await check(tmp);
    return { result, committed: await commit(tmp, stat, fp) };
  } finally {
    // gone already when commit renamed it
    await fs.promises.rm(tmp, { force: true });
  }
}

/** The local store's commit: the directories made (and proven inside the root), then the rename. */
export async function renameInto(sourcesRoot: string, tmp: string, target: string): Promise<void> {
  await makeParent(sourcesRoot, target);
  await fs.promises.rename(tmp, target);
}

async function writeTemp(
  dir: string,
  tmp: string,
  body: UploadBody,
  maxBytes: number,
): Promise<{ stat: fs.Stats; fp: Buffer }> {
  const hash = sourceHash();
  let fh: fs.promises.FileHandle | undefined;
  try {
    await fs.promises.mkdir(dir, { recursive: true });
    fh = await fs.promises.open(tmp, 'wx');
    let size = 0;
    // One chunk at a time: the next is pulled only when this one is on disk (backpressure).
    for await (const chunk of body instanceof Uint8Array ? [body] : body) {
      if (!(chunk instanceof Uint8Array))
        throw invalidParameter('INVALID_OPTION', 'body chunk', 'a Buffer or Uint8Array', chunk);
      size += chunk.length;
      if (size > maxBytes) {
        throw new PixtableError('SOURCE_TOO_LARGE', `more than ${maxBytes} bytes (decode.maxInputBytes)`);
      }
      hash.update(chunk);
      for (let at = 0; at < chunk.length;) {
        at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
      }
    }
    if (size === 0) throw new PixtableError('EMPTY_SOURCE');
    await fh.sync();
    return { stat: await fh.stat(), fp: fingerprintOf(hash) };
  } catch (e) {
    throw storageFullOr(e, 'writing the upload temp file');
  } finally {
    await fh?.close();
  }
}
