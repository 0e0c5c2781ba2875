// Server configuration from environment variables. One prefix (PIXTABLE_*) plus the conventional
// PORT and HOST. Everything is validated once at start: a bad value stops the server with a
// message that names the variable, what was expected and what arrived, instead of surfacing later
// as an odd runtime failure.
import os from 'node:os';
import path from 'node:path';
import {
  DEFAULT_FORMATS,
  ENCODED_TYPES,
  validateFormats,
  type EncodedType,
  type Format,
  type FormatSpec,
} from '../formats.js';
import { invalidParameter, PixtableError } from '../errors.js';
import * as is from '../is.js';
import type { S3SourceOptions, SyncMode } from '../types.js';

export interface SigningKey {
  key: Buffer;
  salt: Buffer;
}

export interface OriginConfig {
  /** Base URL; the source key is appended (already percent-encoded per segment). */
  base: URL;
  /** Host names (exact, or `*.suffix`) a fetch may go to; the base host is always allowed. */
  allowHosts: string[];
  /** CIDR ranges that are reachable although private/loopback/link-local (explicit opt-in). */
  allowNetworks: string[];
  connectTimeoutMs: number;
  readTimeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
}

export interface ServerConfig {
  host: string;
  port: number;
  storage: string;
  formats: readonly FormatSpec[];
  /** Validated copy of `formats`, so config errors surface before the cache opens. */
  formatList: readonly Format[];
  readOnly: boolean;
  sync: SyncMode;
  maxMappedBytes: number | undefined;
  revalidate: boolean;
  revalidateMs: number | undefined;
  decode: {
    concurrency: number | undefined;
    maxQueue: number | undefined;
    timeoutMs: number | undefined;
    maxInputPixels: number | undefined;
  };
  /**
   * Thumbnail encodes running at once, and waiting beyond that (one more gets 503 QUEUE_FULL).
   * Encodes run on libuv's thread pool like file operations do; bounding them keeps a burst of
   * thumbnail misses from taking every pool thread (see src/cli/threadpool.ts).
   */
  encode: { concurrency: number; maxQueue: number };
  /**
   * /readyz reports not ready when the storage volume has fewer free bytes than this (liveness
   * stays up). 0 turns the check off. Default max(512 MiB, 4 × maxUploadBytes).
   */
  minFreeBytes: number;
  /** Open tables on a network, FUSE or removable file system (SIGBUS risk). Default false. */
  allowNetworkFileSystem: boolean;
  /** Body cap for PUT /v1/sources (also the engine's maxInputBytes). */
  maxUploadBytes: number;
  /**
   * Uploads received at once; one more is refused with 503 UPLOADS_BUSY before its body is read.
   * Each holds a file descriptor and a temp file, not its body. Default 8, range 1..1024.
   */
  maxConcurrentUploads: number;
  /** Byte bound of the encoded-thumbnail LRU. */
  thumbCacheBytes: number;
  thumbQuality: number | undefined;
  /** Server preference among types the client accepts equally. */
  thumbTypes: readonly EncodedType[];
  /**
   * Sizes a thumbnail variant may have, in device pixels, ascending (PIXTABLE_VARIANT_WIDTHS): a
   * requested width or height is rounded up to the next, beyond the last it is refused.
   */
  variantWidths: readonly number[];
  cacheControl: string;
  /** Empty: signing off. Several entries: any of them verifies (key rotation); the first signs. */
  signingKeys: readonly SigningKey[];
  origin: OriginConfig | undefined;
  /** Sources in an S3-compatible bucket (PIXTABLE_S3_*); undefined: storage/sources/. */
  s3: S3SourceOptions | undefined;
  /** Time for a whole request (headers + body) to arrive. */
  requestTimeoutMs: number;
  /** Time for the request headers to arrive. */
  headersTimeoutMs: number;
  /** Socket inactivity (covers clients that stop reading a response). */
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** ms given to in-flight requests on SIGTERM before connections are cut. */
  shutdownTimeoutMs: number;
  logLevel: string;
  /** Log one line per completed request (off keeps the hot path lean under load tests). */
  logRequests: boolean;
  /**
   * Answer cache hits from the socket before Node's HTTP server (src/http/lane/); off sends every
   * request through Node's parser (a switch for diagnosing a client or proxy interaction).
   */
  fastLane: boolean;
  corsOrigin: string | undefined;
  /**
   * Serving processes of `pixtable serve` (src/serve/): 1 = one process that decodes and serves;
   * N ≥ 2 = one writer process plus N workers sharing the listening port. Default: the CPUs
   * available to the process (os.availableParallelism()), at most 64. Range 1..64.
   */
  workers: number;
  /**
   * How `--workers N` spreads new connections over the workers (src/serve/distribution.ts):
   * `reuseport` (a socket per worker, SO_REUSEPORT: the kernel hashes each connection to one;
   * Node ≥ 22.12 only), `shared` (one socket all workers accept on; whoever wakes first takes
   * what is waiting), `round-robin` (the supervisor accepts and hands each connection on).
   * Default `auto`: `reuseport` where the runtime has it, else `shared`.
   */
  distribution: Distribution;
  /** PIXTABLE_PEERS, PIXTABLE_PEERS_TIMEOUT_MS: purge fan-out; no URLs = off (the default). */
  peers: PeerConfig;
}

/** The replicas a purge is sent to after a source write (src/http/peers.ts, docs/deploy.md). */
export interface PeerConfig {
  /** Base URLs (http/https, optional path prefix); the list may include this replica. */
  urls: readonly URL[];
  /** Bound on each purge call, connect to last byte, in ms. Default 2000, range 1..60000. */
  timeoutMs: number;
}

export const DISTRIBUTIONS = ['auto', 'reuseport', 'shared', 'round-robin'] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];

type Env = Readonly<Record<string, string | undefined>>;

/** Every variable this module reads, for docs/config.md and typo warnings. */
export const ENV_VARS = [
  'PORT',
  'HOST',
  'PIXTABLE_STORAGE',
  'PIXTABLE_FORMATS',
  'PIXTABLE_READ_ONLY',
  'PIXTABLE_SYNC',
  'PIXTABLE_MAX_MAPPED_BYTES',
  'PIXTABLE_REVALIDATE',
  'PIXTABLE_REVALIDATE_MS',
  'PIXTABLE_DECODE_CONCURRENCY',
  'PIXTABLE_DECODE_QUEUE',
  'PIXTABLE_DECODE_TIMEOUT_MS',
  'PIXTABLE_MAX_INPUT_PIXELS',
  'PIXTABLE_MAX_UPLOAD_BYTES',
  'PIXTABLE_ENCODE_CONCURRENCY',
  'PIXTABLE_ENCODE_QUEUE',
  'PIXTABLE_MIN_FREE_BYTES',
  'PIXTABLE_ALLOW_NETWORK_FS',
  'PIXTABLE_MAX_CONCURRENT_UPLOADS',
  'PIXTABLE_THUMB_CACHE_BYTES',
  'PIXTABLE_THUMB_QUALITY',
  'PIXTABLE_THUMB_TYPES',
  'PIXTABLE_VARIANT_WIDTHS',
  'PIXTABLE_CACHE_CONTROL',
  'PIXTABLE_KEY',
  'PIXTABLE_SALT',
  'PIXTABLE_ORIGIN',
  'PIXTABLE_ORIGIN_ALLOW_HOSTS',
  'PIXTABLE_ORIGIN_ALLOW_NETWORKS',
  'PIXTABLE_ORIGIN_CONNECT_TIMEOUT_MS',
  'PIXTABLE_ORIGIN_READ_TIMEOUT_MS',
  'PIXTABLE_ORIGIN_MAX_BYTES',
  'PIXTABLE_ORIGIN_MAX_REDIRECTS',
  'PIXTABLE_REQUEST_TIMEOUT_MS',
  'PIXTABLE_HEADERS_TIMEOUT_MS',
  'PIXTABLE_IDLE_TIMEOUT_MS',
  'PIXTABLE_KEEP_ALIVE_TIMEOUT_MS',
  'PIXTABLE_SHUTDOWN_TIMEOUT_MS',
  'PIXTABLE_LOG_LEVEL',
  'PIXTABLE_LOG_REQUESTS',
  'PIXTABLE_FAST_LANE',
  'PIXTABLE_CORS_ORIGIN',
  'PIXTABLE_WORKERS',
  'PIXTABLE_DISTRIBUTION',
  'PIXTABLE_PEERS',
  'PIXTABLE_PEERS_TIMEOUT_MS',
  'PIXTABLE_S3_BUCKET',
  'PIXTABLE_S3_ENDPOINT',
  'PIXTABLE_S3_PREFIX',
  'PIXTABLE_S3_REGION',
  'PIXTABLE_S3_FORCE_PATH_STYLE',
  'PIXTABLE_S3_TIMEOUT_MS',
  'PIXTABLE_S3_MAX_ATTEMPTS',
] as const;

/** Variables other parts of pixtable read (CLI, engine); not typos. */
// PIXTABLE_SERVE_*: set by `pixtable serve --workers N` for the processes it starts (src/serve/);
// PIXTABLE_THREADPOOL_CHILD: set by serve on the process it restarts (src/cli/threadpool.ts).
const OTHER_KNOWN = new Set<string>([
  'PIXTABLE_CONFIG',
  'PIXTABLE_DEBUG',
  'PIXTABLE_SERVE_PORT',
  'PIXTABLE_SERVE_ROLE',
  'PIXTABLE_SERVE_SOCKET',
  'PIXTABLE_SERVE_WORKER',
  'PIXTABLE_THREADPOOL_CHILD',
]);

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const SYNC_MODES = ['none', 'batch', 'always'] as const satisfies readonly SyncMode[];

const C = 'INVALID_CONFIG';

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  // An empty variable (`FOO=`) means "unset": docker-compose and shells produce it easily.
  if (v === undefined || v.trim() === '') return undefined;
  return v.trim();
}

function int(env: Env, name: string, min: number, max: number): number | undefined;
function int(env: Env, name: string, min: number, max: number, dflt: number): number;
function int(env: Env, name: string, min: number, max: number, dflt?: number): number | undefined {
  const v = str(env, name);
  return v === undefined ? dflt : is.intText(name, v, min, max, C);
}

function bool(env: Env, name: string, dflt: boolean): boolean {
  const v = str(env, name);
  return v === undefined ? dflt : is.boolText(name, v, C);
}

function list(env: Env, name: string): string[] {
  const v = str(env, name);
  if (v === undefined) return [];
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Sizes thumbnail variants snap up to; a short list bounds the encodings one key can have. */
export const DEFAULT_VARIANT_WIDTHS: readonly number[] = [
  32, 48, 64, 96, 128, 160, 256, 320, 480, 640, 768, 1024, 1280, 1600, 1920, 2560, 3840,
];

function parseVariantWidths(env: Env): readonly number[] {
  const name = 'PIXTABLE_VARIANT_WIDTHS';
  const items = list(env, name);
  if (items.length === 0) return DEFAULT_VARIANT_WIDTHS;
  is.ensure(items.length <= 64, name, 'at most 64 sizes', items.length, C);
  const sizes = [...new Set(items.map((t) => is.intText(name, t, 1, 16384, C)))];
  return sizes.sort((a, b) => a - b);
}

function hexList(env: Env, name: string): Buffer[] {
  return list(env, name).map((h, i) => {
    is.ensure(
      /^(?:[0-9a-fA-F]{2})+$/.test(h),
      `${name} (entry ${i + 1})`,
      'hex-encoded bytes (an even number of 0-9a-f digits)',
      h,
      C,
    );
    return Buffer.from(h, 'hex');
  });
}

function parseFormats(env: Env): { specs: readonly FormatSpec[]; list: Format[] } {
  const v = str(env, 'PIXTABLE_FORMATS');
  if (v === undefined) return { specs: DEFAULT_FORMATS, list: validateFormats(DEFAULT_FORMATS) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw invalidParameter(
      C,
      'PIXTABLE_FORMATS',
      'a JSON array of format objects',
      `unparsable JSON (${(e as Error).message})`,
    );
  }
  try {
    return { specs: parsed as FormatSpec[], list: validateFormats(parsed) };
  } catch (e) {
    const msg = e instanceof PixtableError ? e.message : String(e);
    throw new PixtableError('INVALID_CONFIG', `PIXTABLE_FORMATS: ${msg}`, { cause: e });
  }
}

function parseSigning(env: Env): SigningKey[] {
  const keys = hexList(env, 'PIXTABLE_KEY');
  const salts = hexList(env, 'PIXTABLE_SALT');
  // A key without its salt would silently verify nothing the signer produced.
  is.ensure(
    keys.length === salts.length,
    'PIXTABLE_KEY/PIXTABLE_SALT',
    'the same number of comma-separated hex values (one salt per key)',
    `${keys.length} key(s) and ${salts.length} salt(s)`,
    C,
  );
  keys.forEach((k, i) => {
    is.ensure(
      k.length >= 16,
      `PIXTABLE_KEY (entry ${i + 1})`,
      'at least 16 bytes (32 hex digits)',
      `${k.length} bytes`,
      C,
    );
  });
  return keys.map((key, i) => ({ key, salt: salts[i] as Buffer }));
}

/** A group's tuning variables (`prefix`…) mean nothing without `main`: refused, not ignored. */
function refuseAlone(env: Env, prefix: string, main: string): undefined {
  for (const n of ENV_VARS) {
    if (n !== main && n.startsWith(prefix) && str(env, n) !== undefined) {
      throw invalidParameter(C, n, `set only together with ${main}`, env[n]);
    }
  }
  return undefined;
}

/** PIXTABLE_S3_*: only the bucket turns S3 on; the engine validates the values once more at open. */
function parseS3(env: Env): S3SourceOptions | undefined {
  const bucket = str(env, 'PIXTABLE_S3_BUCKET');
  if (bucket === undefined) return refuseAlone(env, 'PIXTABLE_S3_', 'PIXTABLE_S3_BUCKET');
  is.matching('PIXTABLE_S3_BUCKET', bucket, /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, C);
  const endpoint = str(env, 'PIXTABLE_S3_ENDPOINT');
  if (endpoint !== undefined) is.matching('PIXTABLE_S3_ENDPOINT', endpoint, /^https?:\/\/[^/]/, C);
  const forcePathStyle = str(env, 'PIXTABLE_S3_FORCE_PATH_STYLE');
  const o: S3SourceOptions = {
    bucket,
    endpoint,
    prefix: str(env, 'PIXTABLE_S3_PREFIX'),
    region: str(env, 'PIXTABLE_S3_REGION'),
    forcePathStyle:
      forcePathStyle === undefined
        ? undefined
        : is.boolText('PIXTABLE_S3_FORCE_PATH_STYLE', forcePathStyle, C),
    timeoutMs: int(env, 'PIXTABLE_S3_TIMEOUT_MS', 100, 600_000),
    maxAttempts: int(env, 'PIXTABLE_S3_MAX_ATTEMPTS', 1, 10),
  };
  // unset fields keep the engine's defaults (S3SourceOptions)
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== undefined),
  ) as unknown as S3SourceOptions;
}

function parseOrigin(env: Env, maxUploadBytes: number): OriginConfig | undefined {
  const v = str(env, 'PIXTABLE_ORIGIN');
  if (v === undefined) return refuseAlone(env, 'PIXTABLE_ORIGIN_', 'PIXTABLE_ORIGIN');
  let base: URL | undefined;
  try {
    base = new URL(v);
  } catch {
    base = undefined;
  }
  is.ensure(
    base !== undefined && (base.protocol === 'http:' || base.protocol === 'https:'),
    'PIXTABLE_ORIGIN',
    'an absolute http:// or https:// URL',
    v,
    C,
  );
  is.ensure(
    !(base.username || base.password || base.search || base.hash),
    'PIXTABLE_ORIGIN',
    'a URL without credentials, query or fragment',
    v,
    C,
  );
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const allowHosts = list(env, 'PIXTABLE_ORIGIN_ALLOW_HOSTS').map((h) => h.toLowerCase());
  for (const h of allowHosts) {
    is.ensure(
      /^(\*\.)?[a-z0-9.-]+$|^\[[0-9a-f:.]+\]$/.test(h),
      'PIXTABLE_ORIGIN_ALLOW_HOSTS',
      'comma-separated host names (optionally *.suffix)',
      h,
      C,
    );
  }
  const allowNetworks = list(env, 'PIXTABLE_ORIGIN_ALLOW_NETWORKS');
  for (const c of allowNetworks) {
    is.ensure(
      isCidr(c),
      'PIXTABLE_ORIGIN_ALLOW_NETWORKS',
      'comma-separated CIDR ranges like 10.0.0.0/8',
      c,
      C,
    );
  }
  return {
    base,
    allowHosts,
    allowNetworks,
    connectTimeoutMs: int(env, 'PIXTABLE_ORIGIN_CONNECT_TIMEOUT_MS', 1, 600_000, 5_000),
    readTimeoutMs: int(env, 'PIXTABLE_ORIGIN_READ_TIMEOUT_MS', 1, 600_000, 10_000),
    maxBytes: int(env, 'PIXTABLE_ORIGIN_MAX_BYTES', 1, 2 ** 31 - 1, maxUploadBytes),
    maxRedirects: int(env, 'PIXTABLE_ORIGIN_MAX_REDIRECTS', 0, 10, 3),
  };
}

function parsePeers(env: Env): PeerConfig {
  const urls = list(env, 'PIXTABLE_PEERS').map((v) => {
    let u: URL | undefined;
    try {
      u = new URL(v);
    } catch {
      u = undefined;
    }
    is.ensure(
      u !== undefined && (u.protocol === 'http:' || u.protocol === 'https:') && !u.search && !u.hash,
      'PIXTABLE_PEERS',
      'comma-separated http:// or https:// base URLs without query or fragment',
      v,
      C,
    );
    return u;
  });
  const timeoutMs = int(env, 'PIXTABLE_PEERS_TIMEOUT_MS', 1, 60_000, 2_000);
  return { urls, timeoutMs };
}

function isCidr(c: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(c);
  if (!m) return false;
  const [, addr = '', bits = ''] = m;
  const b = Number(bits);
  if (/^\d+\.\d+\.\d+\.\d+$/.test(addr)) {
    return addr.split('.').every((o) => Number(o) <= 255) && b <= 32;
  }
  return /^[0-9a-fA-F:.]+$/.test(addr) && addr.includes(':') && b <= 128;
}

/**
 * Reads the configuration. Throws PixtableError INVALID_CONFIG naming the variable.
 * `warnings` lists PIXTABLE_* variables nobody reads (likely typos) — reported, not fatal, so
 * one deployment file can serve several versions.
 */
export function loadConfig(
  env: Env = process.env,
  cwd = process.cwd(),
): { config: ServerConfig; warnings: string[] } {
  const maxUploadBytes = int(env, 'PIXTABLE_MAX_UPLOAD_BYTES', 1, 2 ** 31 - 1, 50 * 1024 * 1024);
  const formats = parseFormats(env);
  const sync = is.oneOf('PIXTABLE_SYNC', str(env, 'PIXTABLE_SYNC') ?? 'batch', SYNC_MODES, C);
  const logLevel = is.oneOf(
    'PIXTABLE_LOG_LEVEL',
    (str(env, 'PIXTABLE_LOG_LEVEL') ?? 'info').toLowerCase(),
    LOG_LEVELS,
    C,
  );
  const thumbTypes = list(env, 'PIXTABLE_THUMB_TYPES').map((t) => {
    is.ensure(
      (ENCODED_TYPES as readonly string[]).includes(t),
      'PIXTABLE_THUMB_TYPES',
      `comma-separated values from ${ENCODED_TYPES.join(', ')}`,
      t,
      C,
    );
    return t as EncodedType;
  });
  const host = str(env, 'HOST') ?? '127.0.0.1';
  is.ensure(/^[a-zA-Z0-9.:_-]+$/.test(host), 'HOST', 'a host name or IP address to listen on', host, C);
  const requestTimeoutMs = int(env, 'PIXTABLE_REQUEST_TIMEOUT_MS', 1, 3_600_000, 60_000);
  const headersTimeoutMs = int(
    env,
    'PIXTABLE_HEADERS_TIMEOUT_MS',
    1,
    3_600_000,
    Math.min(10_000, requestTimeoutMs),
  );
  // Node refuses this combination at listen time with a less helpful message.
  is.ensure(
    headersTimeoutMs <= requestTimeoutMs,
    'PIXTABLE_HEADERS_TIMEOUT_MS',
    `at most PIXTABLE_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`,
    headersTimeoutMs,
    C,
  );
  const storage = path.resolve(cwd, str(env, 'PIXTABLE_STORAGE') ?? 'storage');
  const corsOrigin = str(env, 'PIXTABLE_CORS_ORIGIN');

  const config: ServerConfig = {
    host,
    port: int(env, 'PORT', 0, 65535, 8080),
    storage,
    formats: formats.specs,
    formatList: formats.list,
    readOnly: bool(env, 'PIXTABLE_READ_ONLY', false),
    sync,
    maxMappedBytes: int(env, 'PIXTABLE_MAX_MAPPED_BYTES', 65_536, Number.MAX_SAFE_INTEGER),
    revalidate: bool(env, 'PIXTABLE_REVALIDATE', true),
    revalidateMs: int(env, 'PIXTABLE_REVALIDATE_MS', 0, 3_600_000),
    decode: {
      concurrency: int(env, 'PIXTABLE_DECODE_CONCURRENCY', 1, 64),
      maxQueue: int(env, 'PIXTABLE_DECODE_QUEUE', 0, 100_000),
      timeoutMs: int(env, 'PIXTABLE_DECODE_TIMEOUT_MS', 1_000, 600_000),
      maxInputPixels: int(env, 'PIXTABLE_MAX_INPUT_PIXELS', 1, Number.MAX_SAFE_INTEGER),
    },
    encode: {
      // Half the cores: the rest stay for decodes and the event loop (AVIF's encoder adds its own
      // threads on top of the one libuv thread each encode holds).
      concurrency: int(
        env,
        'PIXTABLE_ENCODE_CONCURRENCY',
        1,
        64,
        Math.max(1, Math.floor(os.availableParallelism() / 2)),
      ),
      maxQueue: int(env, 'PIXTABLE_ENCODE_QUEUE', 0, 100_000, 64),
    },
    // Room for a few uploads' temp files at the upload cap and the tables' next chunks, so the
    // balancer moves traffic away before writes start failing with 507.
    minFreeBytes: int(
      env,
      'PIXTABLE_MIN_FREE_BYTES',
      0,
      Number.MAX_SAFE_INTEGER,
      Math.max(512 << 20, 4 * maxUploadBytes),
    ),
    allowNetworkFileSystem: bool(env, 'PIXTABLE_ALLOW_NETWORK_FS', false),
    maxUploadBytes,
    maxConcurrentUploads: int(env, 'PIXTABLE_MAX_CONCURRENT_UPLOADS', 1, 1024, 8),
    thumbCacheBytes: int(env, 'PIXTABLE_THUMB_CACHE_BYTES', 0, Number.MAX_SAFE_INTEGER, 64 * 1024 * 1024),
    thumbQuality: int(env, 'PIXTABLE_THUMB_QUALITY', 1, 100),
    thumbTypes: thumbTypes.length ? thumbTypes : ['webp', 'avif'],
    variantWidths: parseVariantWidths(env),
    cacheControl: str(env, 'PIXTABLE_CACHE_CONTROL') ?? 'public, max-age=3600',
    signingKeys: parseSigning(env),
    origin: parseOrigin(env, maxUploadBytes),
    s3: parseS3(env),
    requestTimeoutMs,
    headersTimeoutMs,
    idleTimeoutMs: int(env, 'PIXTABLE_IDLE_TIMEOUT_MS', 1, 3_600_000, 30_000),
    keepAliveTimeoutMs: int(env, 'PIXTABLE_KEEP_ALIVE_TIMEOUT_MS', 1, 3_600_000, 5_000),
    shutdownTimeoutMs: int(env, 'PIXTABLE_SHUTDOWN_TIMEOUT_MS', 0, 3_600_000, 10_000),
    logLevel,
    logRequests: bool(env, 'PIXTABLE_LOG_REQUESTS', true),
    fastLane: bool(env, 'PIXTABLE_FAST_LANE', true),
    corsOrigin,
    workers: int(env, 'PIXTABLE_WORKERS', 1, 64, Math.min(64, os.availableParallelism())),
    distribution: is.oneOf(
      'PIXTABLE_DISTRIBUTION',
      str(env, 'PIXTABLE_DISTRIBUTION') ?? 'auto',
      DISTRIBUTIONS,
      C,
    ),
    peers: parsePeers(env),
  };
  const known = new Set<string>(ENV_VARS);
  const warnings = Object.keys(env)
    .filter((k) => k.startsWith('PIXTABLE_') && !known.has(k) && !OTHER_KNOWN.has(k))
    .map((k) => `${k} is not a pixtable setting (typo?); it is ignored`);
  return { config, warnings };
}

/** Config for tests and embedding: defaults, then `overrides`. */
export function defaultConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return { ...loadConfig({}).config, ...overrides };
}
