// OpenOptions validated once, at the edge: everything downstream reads `Resolved` and re-checks
// nothing (sharp's constructor owns its options the same way).
import os from 'node:os';
import path from 'node:path';
import { PixtableError, invalidParameter } from '../errors.js';
import * as is from '../is.js';
import { DEFAULT_FORMATS, validateFormats, type Format } from '../formats.js';
import type { Logger, OpenOptions, SyncMode } from '../types.js';
import { entryGeometry } from './table.js';

export interface Resolved {
  storage: string;
  formats: Format[];
  readOnly: boolean;
  sync: SyncMode;
  syncIntervalMs: number;
  chunkBytes: number;
  maxMappedBytes: number;
  lockTimeoutMs: number;
  revalidate: boolean;
  revalidateMs: number;
  preallocate: boolean;
  allowNetworkFileSystem: boolean;
  maxInputPixels: number;
  maxInputBytes: number;
  concurrency: number;
  maxQueue: number;
  timeoutMs: number;
  logger: Logger;
  onDecode: ((ms: number, formats: readonly string[]) => void) | undefined;
  now: () => number;
}

const num = (name: string, v: unknown, dflt: number, min: number, max: number): number =>
  is.optionalInt(name, v, dflt, min, max, 'INVALID_OPTION');
const bool = (name: string, v: unknown, dflt: boolean): boolean =>
  is.optionalBool(name, v, dflt, 'INVALID_OPTION');

const consoleLogger: Logger = {
  warn: (msg, fields) =>
    process.emitWarning(`${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}`, 'PixtableWarning'),
};

/**
 * `f` with `maxCount` lowered to what `maxBytes` holds. Here rather than in validateFormat: an
 * entry's size is rounded to the page size, which only the engine knows.
 */
function withByteBound(f: Format, chunkBytes: number): Format {
  if (f.maxBytes === undefined) return f;
  const { entrySize } = entryGeometry(f, chunkBytes);
  if (f.maxBytes < entrySize) {
    throw new PixtableError(
      'INVALID_FORMAT',
      `format ${f.name}.maxBytes must hold at least one entry (${entrySize} bytes: stride ${f.stride} × height ${f.height} + trailer, page-aligned), got ${f.maxBytes}`,
    );
  }
  return Object.freeze({ ...f, maxCount: Math.min(f.maxCount, Math.floor(f.maxBytes / entrySize)) });
}

/** Validates options once; nothing downstream re-checks them. Defaults are documented in OpenOptions. */
export function resolveOptions(o: OpenOptions): Resolved {
  if (typeof o !== 'object' || o === null)
    throw invalidParameter('INVALID_OPTION', 'options', 'an object', o);
  const storage = is.nonEmptyString(
    'storage',
    o.storage ?? process.env.PIXTABLE_STORAGE ?? './storage',
    'INVALID_OPTION',
    'a directory path',
  );
  const sync = is.oneOf('sync', o.sync ?? 'batch', ['none', 'batch', 'always'], 'INVALID_OPTION', {
    quoted: true,
  });
  const chunkBytes = num('chunkBytes', o.chunkBytes, 4 << 20, 64 << 10, 256 << 20);
  const d = o.decode ?? {};
  return {
    storage: path.resolve(storage),
    formats: validateFormats(o.formats ?? DEFAULT_FORMATS).map((f) => withByteBound(f, chunkBytes)),
    readOnly: bool('readOnly', o.readOnly, false),
    sync,
    syncIntervalMs: num('syncIntervalMs', o.syncIntervalMs, 1000, 10, 60_000),
    chunkBytes,
    maxMappedBytes: num('maxMappedBytes', o.maxMappedBytes, 512 << 20, chunkBytes, Number.MAX_SAFE_INTEGER),
    lockTimeoutMs: num('lockTimeoutMs', o.lockTimeoutMs, 0, 0, 600_000),
    revalidate: bool('revalidate', o.revalidate, true),
    revalidateMs: num('revalidateMs', o.revalidateMs, 1000, 0, 3_600_000),
    preallocate: bool('preallocate', o.preallocate, true),
    allowNetworkFileSystem: bool('allowNetworkFileSystem', o.allowNetworkFileSystem, false),
    maxInputPixels: num('decode.maxInputPixels', d.maxInputPixels, 50_000_000, 1, 2 ** 40),
    maxInputBytes: num('decode.maxInputBytes', d.maxInputBytes, 50 << 20, 1, 2 ** 31 - 1),
    concurrency: num('decode.concurrency', d.concurrency, os.availableParallelism(), 1, 64),
    maxQueue: num('decode.maxQueue', d.maxQueue, 64, 0, 100_000),
    timeoutMs: num('decode.timeoutMs', d.timeoutMs, 30_000, 1000, 600_000),
    logger: o.logger ?? consoleLogger,
    onDecode: o.onDecode,
    now: o.now ?? (() => performance.now()),
  };
}
