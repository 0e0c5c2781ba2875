// The one error registry. Every failure a user can see has a stable code, an HTTP status, the
// `pixtable` command's exit code and a public message, plus an optional hint (what a person at
// the command line can do). docs/errors.md documents each code and docs/cli.md each exit code;
// tests keep both in step with this file.
// Library callers get a PixtableError (instanceof-checkable, `code` stable across versions);
// the HTTP layer turns it into `{ "error": { "code", "message" } }` with `status`; the CLI
// prints `code: message; hint` and exits with `exit`.

/**
 * Exit codes of the `pixtable` command. Documented in docs/cli.md; scripts rely on them, so they
 * never change meaning. They live beside the registry because every code must name one.
 */
export const EXIT = {
  OK: 0,
  /** The command ran and found problems: import failures, damaged entries. */
  PROBLEMS: 1,
  /** Bad command line: unknown command or option, missing argument, invalid key. */
  USAGE: 2,
  /** Invalid configuration: config file, PIXTABLE_* variable, format definition. */
  CONFIG: 3,
  /** Another process holds the writer lock on the storage, or the command opened it without. */
  LOCKED: 4,
  /** Something named does not exist: storage, file, format, source, entry. */
  NOT_FOUND: 5,
  /** The file system refused: permissions, read-only volume, disk full. */
  IO: 6,
  /** A bug: please report it (PIXTABLE_DEBUG=1 prints the stack). */
  INTERNAL: 70,
  /**
   * Busy for now (decode queue or table full, a server draining): the same command may succeed
   * when retried. sysexits' EX_TEMPFAIL, which schedulers and mail-style retry loops know.
   */
  TEMPFAIL: 75,
  /** Interrupted by SIGINT/SIGTERM (128 + 2). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface ErrorEntry {
  /** HTTP status of a response carrying this error. */
  readonly status: number;
  /** `pixtable` exit code when a command fails with this error. */
  readonly exit: ExitCode;
  /** Public message: safe to show to anyone, the same in every occurrence. */
  readonly message: string;
  /** What a person at the command line can do about it (printed after the message). */
  readonly hint?: string;
}

const FIX_CONFIG = 'fix the configuration (docs/cli.md lists the settings)';
const REPORT_BUG = 'this is a bug, please report it (PIXTABLE_DEBUG=1 shows the stack)';

// `exit` is required, so a new code cannot fall through to "internal error" by accident: each
// says which of the documented exit codes describes it.
export const ERRORS = {
  // configuration and options (library callers, CLI, server start)
  INVALID_CONFIG: {
    status: 500,
    exit: EXIT.CONFIG,
    message: 'The configuration is invalid',
    hint: FIX_CONFIG,
  },
  INVALID_FORMAT: {
    status: 500,
    exit: EXIT.CONFIG,
    message: 'A format definition is invalid',
    hint: FIX_CONFIG,
  },
  INVALID_OPTION: {
    status: 400,
    exit: EXIT.CONFIG,
    message: 'An option has an invalid value',
    hint: FIX_CONFIG,
  },
  // Refused at open, before anything is mapped: a vanished mount would be SIGBUS, not an error.
  UNSAFE_FILESYSTEM: {
    status: 500,
    exit: EXIT.CONFIG,
    message: 'The tables directory is on a network, FUSE or removable file system',
    hint: 'put the storage on a local volume, or accept the risk with PIXTABLE_ALLOW_NETWORK_FS=true (docs/docker.md)',
  },
  // requests
  INVALID_PARAMETER: { status: 400, exit: EXIT.USAGE, message: 'A request parameter is invalid' },
  INVALID_KEY: {
    status: 400,
    exit: EXIT.USAGE,
    message: 'The source key is invalid or escapes the sources root',
  },
  INVALID_RECT: {
    status: 400,
    exit: EXIT.USAGE,
    message: 'The rectangle is malformed or outside the image',
  },
  RANGE_NOT_SATISFIABLE: {
    status: 416,
    exit: EXIT.USAGE,
    message: 'The requested byte range cannot be served',
  },
  UNKNOWN_FORMAT: {
    status: 404,
    exit: EXIT.NOT_FOUND,
    message: 'No format with that name is configured',
    hint: 'pixtable stats lists the configured formats (pass the same --config as the server)',
  },
  SOURCE_NOT_FOUND: {
    status: 404,
    exit: EXIT.NOT_FOUND,
    message: 'No source image exists for that key',
    hint: 'import it first: pixtable import <file>',
  },
  ROUTE_NOT_FOUND: { status: 404, exit: EXIT.NOT_FOUND, message: 'No route matches the request' },
  HEADERS_TOO_LARGE: { status: 431, exit: EXIT.USAGE, message: 'The request headers are too large' },
  BAD_REQUEST: { status: 400, exit: EXIT.USAGE, message: 'The request is malformed' },
  METHOD_NOT_ALLOWED: { status: 405, exit: EXIT.USAGE, message: 'The method is not allowed on this route' },
  NOT_ACCEPTABLE: {
    status: 406,
    exit: EXIT.USAGE,
    message: 'None of the accepted image types can be produced',
  },
  SIGNATURE_REQUIRED: { status: 403, exit: EXIT.USAGE, message: 'This server requires signed URLs' },
  SIGNATURE_INVALID: { status: 403, exit: EXIT.USAGE, message: 'The URL signature does not match' },
  SIGNATURE_EXPIRED: { status: 403, exit: EXIT.USAGE, message: 'The signed URL has expired' },
  CONTENT_DIGEST_MISMATCH: {
    status: 403,
    exit: EXIT.USAGE,
    message: 'The body is not the one the URL was signed for (its SHA-256 differs from sha256=)',
  },
  EXPECTATION_FAILED: {
    status: 417,
    exit: EXIT.USAGE,
    message: 'The server meets no expectation but 100-continue',
  },
  REQUEST_TIMEOUT: { status: 408, exit: EXIT.TEMPFAIL, message: 'The request took too long to arrive' },
  BODY_TOO_LARGE: {
    status: 413,
    exit: EXIT.PROBLEMS,
    message: 'The request body exceeds the configured limit',
  },
  // source images: a broken input is a problem the command found, not a failure of the command
  EMPTY_SOURCE: { status: 400, exit: EXIT.PROBLEMS, message: 'The source image is empty (zero bytes)' },
  SOURCE_TOO_LARGE: { status: 413, exit: EXIT.PROBLEMS, message: 'The source image exceeds the byte limit' },
  UNSUPPORTED_IMAGE: {
    status: 415,
    exit: EXIT.PROBLEMS,
    message: 'The source is not an image type this server decodes',
  },
  // A type that decodes, in a form of it that does not (12-bit JPEG): not corrupt, and not a
  // stranger either, so it is neither CORRUPT_IMAGE nor a plain UNSUPPORTED_IMAGE.
  UNSUPPORTED_IMAGE_VARIANT: {
    status: 415,
    exit: EXIT.PROBLEMS,
    message: 'The source is of a known image type, in a variant this server does not decode',
  },
  CORRUPT_IMAGE: { status: 422, exit: EXIT.PROBLEMS, message: 'The source image is truncated or corrupt' },
  TOO_MANY_PIXELS: {
    status: 422,
    exit: EXIT.PROBLEMS,
    message: 'The source image exceeds the input pixel limit',
  },
  // A source that cannot be decoded within the limit stays undecodable on retry (same limit).
  DECODE_TIMEOUT: { status: 503, exit: EXIT.PROBLEMS, message: 'Decoding the source image took too long' },
  // origin fetches
  ORIGIN_FORBIDDEN: {
    status: 403,
    exit: EXIT.CONFIG,
    message: 'The origin address is not allowed',
    hint: 'fix PIXTABLE_ORIGIN or the PIXTABLE_ORIGIN_ALLOW_* lists (docs/config.md)',
  },
  ORIGIN_FAILED: { status: 502, exit: EXIT.TEMPFAIL, message: 'The origin did not return the source image' },
  ORIGIN_TIMEOUT: { status: 504, exit: EXIT.TEMPFAIL, message: 'The origin did not answer in time' },
  // the S3-compatible source store (PIXTABLE_S3_*): its failures are the store's, never a bug here
  SOURCE_STORE_DENIED: {
    status: 502,
    exit: EXIT.IO,
    message: 'The source store refused the request',
    hint: 'check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket policy',
  },
  SOURCE_STORE_TIMEOUT: {
    status: 504,
    exit: EXIT.TEMPFAIL,
    message: 'The source store did not answer in time',
    hint: 'check PIXTABLE_S3_ENDPOINT is reachable, or raise PIXTABLE_S3_TIMEOUT_MS',
  },
  SOURCE_STORE_TRUNCATED: {
    status: 502,
    exit: EXIT.TEMPFAIL,
    message: 'The source store sent less of the object than it announced',
  },
  SOURCE_STORE_FAILED: {
    status: 502,
    exit: EXIT.TEMPFAIL,
    message: 'The source store failed the request',
    hint: 'check PIXTABLE_S3_ENDPOINT and PIXTABLE_S3_BUCKET (docs/config.md)',
  },
  // capacity and state
  SHUTTING_DOWN: { status: 503, exit: EXIT.TEMPFAIL, message: 'The server is shutting down' },
  QUEUE_FULL: {
    status: 503,
    exit: EXIT.TEMPFAIL,
    message: 'The decode or encode queue is full; retry shortly',
    hint: 'retry, or raise PIXTABLE_DECODE_QUEUE (decodes) or PIXTABLE_ENCODE_QUEUE (thumbnail encodes)',
  },
  UPLOADS_BUSY: {
    status: 503,
    exit: EXIT.TEMPFAIL,
    message: 'Too many uploads are in progress; retry shortly',
    hint: 'retry, or raise PIXTABLE_MAX_CONCURRENT_UPLOADS',
  },
  TABLE_FULL: {
    status: 503,
    exit: EXIT.TEMPFAIL,
    message: 'Every entry of the table is pinned by a reader; retry shortly',
    hint: "retry, or raise the format's maxCount",
  },
  READERS_FULL: {
    status: 503,
    exit: EXIT.TEMPFAIL,
    message: 'Every record of the reader table is held by a live process',
    hint: 'close idle readers of this storage (each open read-only ImageCache holds one record), then retry',
  },
  // A worker of `serve --workers N` hands misses and writes to the writer process; it is restarting.
  WRITER_UNAVAILABLE: {
    status: 503,
    exit: EXIT.TEMPFAIL,
    message: 'The writer process is not available (restarting?); hits are still served',
    hint: 'retry shortly; the supervisor restarts a writer that died (see the server log)',
  },
  STORAGE_LOCKED: {
    status: 503,
    exit: EXIT.LOCKED,
    // not "another process": a second writable open in the same process is refused the same way
    message: 'The writer lock on this storage is already held',
    hint: 'stop the process that holds it, or retry later (commands that write accept --wait SECONDS)',
  },
  STORAGE_FULL: {
    status: 507,
    exit: EXIT.IO,
    message: 'The storage volume is full',
    hint: 'free disk space or move the storage to a larger volume',
  },
  // Writing needs the writer lock, which a read-only open never takes: the lock is the remedy.
  READ_ONLY: {
    status: 405,
    exit: EXIT.LOCKED,
    message: 'The cache was opened read-only',
    hint: 'writing needs the writer lock: stop the process that holds it, or write through it',
  },
  CACHE_CLOSED: { status: 503, exit: EXIT.TEMPFAIL, message: 'The cache is closed' },
  // Using a view after release() is a programming error in the caller.
  VIEW_RELEASED: {
    status: 500,
    exit: EXIT.INTERNAL,
    message: 'The view was used after release()',
    hint: REPORT_BUG,
  },
  INTERNAL: { status: 500, exit: EXIT.INTERNAL, message: 'Internal error', hint: REPORT_BUG },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * `ERRORS[code]` typed as an ErrorEntry: the const entries without a hint do not declare the
 * property, so `ERRORS[code].hint` does not type-check for a code that is not known statically.
 */
export function errorEntry(code: ErrorCode): ErrorEntry {
  return ERRORS[code];
}

export class PixtableError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** This occurrence's facts (what the message adds after the public message), if any. */
  readonly detail: string | undefined;
  /** Extra machine-readable facts (e.g. `retryAfter` seconds), safe to show to clients. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    const entry = ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: options?.cause });
    this.name = 'PixtableError';
    this.code = code;
    this.status = entry.status;
    this.detail = detail || undefined;
    this.details = options?.details;
  }
}

/**
 * The error another pixtable process answered (`{"error":{code,message}}`), raised again here with
 * the same code and message: a worker relays the writer's errors as if it had made them. A code
 * this build does not know (a newer writer) becomes INTERNAL, keeping the message as detail.
 */
export function errorFromWire(
  code: unknown,
  message: unknown,
  details?: Record<string, unknown>,
): PixtableError {
  const known = typeof code === 'string' && Object.hasOwn(ERRORS, code);
  const c = known ? (code as ErrorCode) : 'INTERNAL';
  const text = typeof message === 'string' ? message : '';
  const prefix = `${ERRORS[c].message}: `;
  const detail = text.startsWith(prefix) ? text.slice(prefix.length) : text === ERRORS[c].message ? '' : text;
  return new PixtableError(c, detail || undefined, details ? { details } : undefined);
}

export function isPixtableError(e: unknown): e is PixtableError {
  return e instanceof PixtableError;
}

/** errno codes that mean the volume (or the user's quota on it) has no room left. */
const FULL_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);

/**
 * `e` as STORAGE_FULL (naming `where`, keeping `e` as the cause) when the file system said the
 * volume is full; any other error unchanged. The engine's writes, preallocation and file growth
 * map a full disk here, so it reaches every caller as one code (HTTP 507, CLI exit 6).
 */
export function storageFullOr(e: unknown, where: string): unknown {
  const errno = (e as NodeJS.ErrnoException | null | undefined)?.code;
  return errno !== undefined && FULL_ERRNOS.has(errno)
    ? new PixtableError('STORAGE_FULL', where, { cause: e })
    : e;
}

/** 12345678 → "12,345,678": limits and sizes in messages are read by people. */
function grouped(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * TOO_MANY_PIXELS' detail: the image's size when its header could be read, the limit, and the
 * setting that raises it (a server's variable, a library caller's option).
 */
export function tooManyPixelsDetail(
  size: { width: number; height: number } | undefined,
  limit: number | undefined,
): string {
  const parts = [
    size ? `${size.width}×${size.height} = ${grouped(size.width * size.height)} pixels` : undefined,
    limit !== undefined ? `the limit is ${grouped(limit)}` : undefined,
    'raise PIXTABLE_MAX_INPUT_PIXELS (library: decode.maxInputPixels)',
  ];
  return parts.filter((p) => p !== undefined).join('; ');
}

/**
 * BODY_TOO_LARGE's detail: how large the body said it was (Content-Length, when sent), the limit
 * and the setting that raises it.
 */
export function bodyTooLargeDetail(received: number | undefined, limit: number): string {
  const what = received !== undefined ? `${grouped(received)} bytes exceed` : 'the body exceeds';
  return `${what} the limit of ${grouped(limit)} bytes; raise PIXTABLE_MAX_UPLOAD_BYTES`;
}

/** sharp-style message: names the parameter, what was expected and what arrived. */
export function invalidParameter(
  code: ErrorCode,
  name: string,
  expected: string,
  actual: unknown,
): PixtableError {
  return new PixtableError(code, `${name} must be ${expected}, got ${describe(actual)}`);
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return `a ${typeof v}`;
}
