// The upload protocol: a new source is written to `sources/.tmp/<pid>-<ms>-<rand>`, fsynced,
// decoded from there (libvips reads some formats only from files), and renamed over the source only
// after every format decoded — so a broken upload changes nothing stored. Writers that died
// mid-upload leave temp files; the next writer to open removes those of dead processes.
import fs from 'node:fs';
import path from 'node:path';
import { uploadsTmpDir } from './layout.js';

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
 * Writes `bytes` to a fresh temp file, runs `check(tmpPath)` (the decodes), and only if it
 * resolves renames the file over `target`. On any failure the temp file is removed and the
 * error rethrown: the stored source is untouched. Returns check's result and the file's stat.
 */
export async function stageUpload<T>(
  sourcesRoot: string,
  target: string,
  bytes: Buffer,
  check: (tmpPath: string) => Promise<T>,
): Promise<{ result: T; stat: fs.Stats }> {
  const dir = uploadsTmpDir(sourcesRoot);
  await fs.promises.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  try {
    const fh = await fs.promises.open(tmp, 'wx');
    let stat: fs.Stats;
    try {
      await fh.writeFile(bytes);
      await fh.sync();
      stat = await fh.stat();
    } finally {
      await fh.close();
    }
    const result = await check(tmp);
    await fs.promises.rename(tmp, target);
    return { result, stat };
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}
