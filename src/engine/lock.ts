// The writer lock of one table: flock(LOCK_EX|LOCK_NB) on `tables/<format>.lock`, which holds the
// writer's pid so a refused opener can name it. The kernel drops the lock when the process dies,
// so a SIGKILLed writer never leaves a stale lock behind.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PixtableError } from '../errors.js';
import { native } from '../native/addon.js';

// flock locks belong to open file descriptions, so a second writable open in this process is
// refused like another process's, and the pid in the file is our own. These are the lock files
// this thread holds (by real path), so the refusal can say that the holder is this process: the
// pid alone cannot tell, since two containers sharing a volume may both be pid 1.
const heldHere = new Map<number, string>();

/** Takes the lock, retrying every 50 ms for up to `timeoutMs`; returns the held fd. STORAGE_LOCKED. */
export async function acquireWriterLock(file: string, what: string, timeoutMs: number): Promise<number> {
  const fd = fs.openSync(file, 'a+');
  const real = fs.realpathSync(file);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (native.tryLock(fd, true)) {
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`);
      heldHere.set(fd, real);
      return fd;
    }
    if (Date.now() >= deadline) {
      const holder = fs.readFileSync(file, 'utf8').trim();
      fs.closeSync(fd);
      throw new PixtableError(
        'STORAGE_LOCKED',
        refusal(what, holder, [...heldHere.values()].includes(real)),
        {
          details: { retryAfter: 1 },
        },
      );
    }
    await sleep(50);
  }
}

function refusal(what: string, holder: string, mine: boolean): string {
  if (mine) {
    return (
      `${what} is already open for writing in this process (pid ${process.pid}): ` +
      'close that ImageCache first, or share it'
    );
  }
  if (holder === String(process.pid)) {
    // Another thread of this process, or a namesake pid in another pid namespace.
    return (
      `${what} is held by pid ${holder}, which is this process's own pid: another thread of this ` +
      'process (a worker) or a process in another container holds it; close it, or open read-only'
    );
  }
  return `${what} is held by process ${holder || 'unknown'}; stop it, use its HTTP API, or open read-only`;
}

export function releaseWriterLock(fd: number): void {
  heldHere.delete(fd);
  native.unlock(fd);
  fs.closeSync(fd);
}
