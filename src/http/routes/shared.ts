// What the route plugins are given (app.ts builds it once) and the options several of them share.
import type { ServerConfig } from '../../config/env.js';
import type { PixelCache } from '../cache-api.js';
import type { EncodeFn } from '../encode.js';
import type { Metrics } from '../metrics.js';
import type { RawResponses } from '../raw-response.js';
import type { EntryLoader } from '../read-through.js';
import type { signatureCheck } from '../signed.js';
import type { ThumbCache } from '../thumbcache.js';

export interface RouteContext {
  cache: PixelCache;
  config: ServerConfig;
  /** `ready` false once shutdown started. */
  state: { readonly ready: boolean };
  metrics: Metrics;
  entries: EntryLoader;
  /**
   * Conditions besides shutdown and disk space that make /readyz answer 503, by name: each returns
   * why it is not ready, or undefined (`writer`: a worker of `serve --workers N` whose writer is down).
   */
  readiness: Readonly<Record<string, () => string | undefined>>;
  raw: RawResponses;
  thumbs: ThumbCache;
  encode: EncodeFn;
  /** Headers every pixels and thumbnail response carries (CORS). */
  cors: readonly string[];
  /** Route options of the signed routes (pixels, thumbnails, sources). */
  signed: ReturnType<typeof signatureCheck>;
}

/**
 * Schemas are documentation (OpenAPI) and response serialisation; request parsing on the pixels,
 * thumbnails and sources routes is hand-written (stricter messages, no per-request validator run).
 */
export const noValidation = { validatorCompiler: () => () => true };
