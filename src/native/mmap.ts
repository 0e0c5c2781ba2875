// The one module that calls mmap-io. mmap-io reads sizes and offsets as 32-bit ints: an offset of
// 2 GiB fails and 4 GiB silently maps offset 0; sizes above 2 GiB fail or map 4 KiB. Every mapping
// therefore satisfies offset + size < 2^31, enforced here, and callers split large tables into
// segment files. There is no munmap: a mapping is released when its last Buffer view is collected.
import { createRequire } from 'node:module';
import type MmapIoModule from 'mmap-io';

// mmap-io is CommonJS whose typings declare an ES default export that does not exist at run time.
const mmapio = createRequire(import.meta.url)('mmap-io') as typeof MmapIoModule.default;

export const PAGE_SIZE: number = mmapio.PAGESIZE;
/** Exclusive bound on offset + size of any one mapping. */
export const MAP_LIMIT = 2 ** 31;

/**
 * Maps [offset, offset+size) of fd, shared with every other process mapping the file.
 * The caller guarantees the file is at least offset+size long (reading past EOF is SIGBUS).
 */
export function mapRange(fd: number, offset: number, size: number, writable: boolean): Buffer {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(size) ||
    offset < 0 ||
    size <= 0 ||
    offset % PAGE_SIZE !== 0 ||
    offset + size >= MAP_LIMIT
  ) {
    throw new RangeError(`mapRange: offset ${offset} + size ${size} must be page-aligned and below 2^31`);
  }
  const prot = writable ? mmapio.PROT_READ | mmapio.PROT_WRITE : mmapio.PROT_READ;
  return mmapio.map(size, prot as 1 | 3, mmapio.MAP_SHARED, fd, offset, mmapio.MADV_RANDOM);
}

/** msync of a byte range of a mapping; the range is widened to whole pages. */
export function flushRange(map: Buffer, offset: number, length: number): void {
  const start = offset - (offset % PAGE_SIZE);
  const end = Math.min(map.length, offset + length);
  if (end <= start) return;
  mmapio.sync(map, start, end - start, true, false);
}
