// The one module that loads the project's own N-API addon (native/pixtable_native.c).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeAddon {
  /** flock(LOCK_NB): true when taken, false when another open file description holds it. */
  tryLock(fd: number, exclusive: boolean): boolean;
  unlock(fd: number): void;
  /** posix_fallocate: reserve blocks and grow the file to at least offset+length. Throws with code ENOSPC etc. */
  preallocate(fd: number, offset: number, length: number): void;
  /** F_OFD_SETLK write lock on one byte: true when this file description holds it, false when another does. */
  lockByte(fd: number, offset: number): boolean;
  /** Drops this file description's lock on one byte (closing the fd does not while the file is mapped). */
  unlockByte(fd: number, offset: number): void;
  /** F_OFD_GETLK: whether another file description holds a lock on that byte. */
  byteLocked(fd: number, offset: number): boolean;
  /** Sequentially consistent store of the u32 at `offset` (4-aligned) of a mapping, then a full fence. */
  atomicStore(buf: Buffer, offset: number, value: number): void;
  /** After a full fence, a sequentially consistent load of the u32 at `offset` (4-aligned) of a mapping. */
  atomicLoad(buf: Buffer, offset: number): number;
  /**
   * The key map's lookup (src/engine/key-map.ts): the slot whose live record holds exactly `key`,
   * or -1, its generation in the first u32 of `out`. `geometry`: u32 capacity, bucket mask, then
   * the byte offsets of the generation, key offset, key length and bucket arrays and of the key
   * area, and the key area's size.
   */
  keyFind(map: Buffer, geometry: Buffer, key: string, out: Buffer): number;
  /** After a full fence, the first i < count whose u32 at offset + i × stride is non-zero, or -1. */
  firstNonZero(buf: Buffer, offset: number, stride: number, count: number): number;
  /**
   * One non-blocking sendmsg(MSG_NOSIGNAL) of `a`, `b` and `c`, in that order, on socket `fd`: the bytes the kernel took (it copies them), 0 when it took none (EAGAIN),
   * or -errno (EPIPE, ECONNRESET…). Only for a socket nothing else has writes queued on.
   */
  sendParts(fd: number, a: Buffer, b: Buffer, c: Buffer): number;
}

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  // dist/src/native/addon.js and src/native/addon.ts both sit three levels below the package root.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.resolve(here, '../../../native/build/Release/pixtable_native.node'),
    path.resolve(here, '../../native/build/Release/pixtable_native.node'),
  ];
  const errors: string[] = [];
  for (const file of candidates) {
    try {
      return require(file) as NativeAddon;
    } catch (e) {
      errors.push(`${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    'pixtable: the native addon is not built. Run `npm rebuild pixtable` (or `npm ci` in the repo), ' +
      'which needs python3, make and a C compiler.\n' +
      errors.join('\n'),
  );
}

export const native: NativeAddon = load();
