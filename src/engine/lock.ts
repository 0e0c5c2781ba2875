// The writer lock of one table: flock(LOCK_EX|LOCK_NB) on `tables/<format>.lock`, which holds the
// writer's pid so a refused opener can name it. The kernel drops the lock when the process dies,
// so a SIGKILLed writer never leaves a stale lock behind.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PixtableError } from '../errors.js';
import { native } from '../native/addon.js';

/** Takes the lock, retrying every 50 ms for up to `timeoutMs`; returns the held fd. STORAGE_LOCKED. */
export async function acquireWriterLock(file: string, what: string, timeoutMs: number): Promise<number> {
  const fd = fs.openSync(file, 'a+');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (native.tryLock(fd, true)) {
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`);
      return fd;
    }
    if (Date.now() >= deadline) {
      const holder = fs.readFileSync(file, 'utf8').trim();
      fs.closeSync(fd);
      throw new PixtableError(
        'STORAGE_LOCKED',
        `${what} is held by process ${holder || 'unknown'}; stop it, use its HTTP API, or open read-only`,
        { details: { retryAfter: 1 } },
      );
    }
    await sleep(50);
  }
}

export function releaseWriterLock(fd: number): void {
  native.unlock(fd);
  fs.closeSync(fd);
}
