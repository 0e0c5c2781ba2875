// The one translation from a ServerConfig to ImageCache.open options, shared by the server
// (src/http/server.ts) and the CLI (src/cli/common.ts), so a setting added to the configuration
// reaches the engine the same way whichever process opens the storage.
import type { ServerConfig } from './env.js';
import type { DecodeLimits, OpenOptions } from '../types.js';

/**
 * What the opener adds to, or overrides in, the configuration: its logger and metrics hook, a
 * subset of the formats, a read-only open, how long to wait for the writer lock, its own decode
 * concurrency. Undefined values leave the configuration's.
 */
export type OpenExtras = Omit<OpenOptions, 'decode'> & { decode?: DecodeLimits };

export function openOptions(config: ServerConfig, extras: OpenExtras = {}): OpenOptions {
  const { decode, ...rest } = extras;
  return {
    ...withoutUndefined({
      storage: config.storage,
      formats: config.formats,
      readOnly: config.readOnly,
      sync: config.sync,
      revalidate: config.revalidate,
      revalidateMs: config.revalidateMs,
      maxMappedBytes: config.maxMappedBytes,
      allowNetworkFileSystem: config.allowNetworkFileSystem,
      s3: config.s3,
    }),
    ...withoutUndefined(rest),
    decode: {
      // The upload cap is also the largest source the engine reads: one limit, two places.
      maxInputBytes: config.maxUploadBytes,
      ...withoutUndefined(config.decode),
      ...withoutUndefined(decode ?? {}),
    },
  };
}

// An unset setting must not override the engine's default or the configuration's value.
function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
