// The one error registry. Every failure a user can see has a stable code, an HTTP status and a
// public message; docs/errors.md documents each code (a test keeps the two in step).
// Library callers get a PixtableError (instanceof-checkable, `code` stable across versions);
// the HTTP layer turns it into `{ "error": { "code", "message" } }` with `status`.

export const ERRORS = {
  // configuration and options (library callers, CLI, server start)
  INVALID_CONFIG: { status: 500, message: 'The configuration is invalid' },
  INVALID_FORMAT: { status: 500, message: 'A format definition is invalid' },
  INVALID_OPTION: { status: 400, message: 'An option has an invalid value' },
  // requests
  INVALID_PARAMETER: { status: 400, message: 'A request parameter is invalid' },
  INVALID_KEY: { status: 400, message: 'The source key is invalid or escapes the sources root' },
  INVALID_RECT: { status: 400, message: 'The rectangle is malformed or outside the image' },
  RANGE_NOT_SATISFIABLE: { status: 416, message: 'The requested byte range cannot be served' },
  UNKNOWN_FORMAT: { status: 404, message: 'No format with that name is configured' },
  SOURCE_NOT_FOUND: { status: 404, message: 'No source image exists for that key' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No route matches the request' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large' },
  BAD_REQUEST: { status: 400, message: 'The request is malformed' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'The method is not allowed on this route' },
  NOT_ACCEPTABLE: { status: 406, message: 'None of the accepted image types can be produced' },
  SIGNATURE_REQUIRED: { status: 403, message: 'This server requires signed URLs' },
  SIGNATURE_INVALID: { status: 403, message: 'The URL signature does not match' },
  SIGNATURE_EXPIRED: { status: 403, message: 'The signed URL has expired' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request took too long to arrive' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body exceeds the configured limit' },
  // source images
  EMPTY_SOURCE: { status: 400, message: 'The source image is empty (zero bytes)' },
  SOURCE_TOO_LARGE: { status: 413, message: 'The source image exceeds the byte limit' },
  UNSUPPORTED_IMAGE: { status: 415, message: 'The source is not an image type this server decodes' },
  CORRUPT_IMAGE: { status: 422, message: 'The source image is truncated or corrupt' },
  TOO_MANY_PIXELS: { status: 422, message: 'The source image exceeds the input pixel limit' },
  DECODE_TIMEOUT: { status: 503, message: 'Decoding the source image took too long' },
  // origin fetches
  ORIGIN_FORBIDDEN: { status: 403, message: 'The origin address is not allowed' },
  ORIGIN_FAILED: { status: 502, message: 'The origin did not return the source image' },
  ORIGIN_TIMEOUT: { status: 504, message: 'The origin did not answer in time' },
  // capacity and state
  SHUTTING_DOWN: { status: 503, message: 'The server is shutting down' },
  QUEUE_FULL: { status: 503, message: 'The decode queue is full; retry shortly' },
  TABLE_FULL: { status: 503, message: 'Every entry of the table is pinned by a reader; retry shortly' },
  STORAGE_LOCKED: { status: 503, message: 'Another process holds the writer lock on this storage' },
  STORAGE_FULL: { status: 507, message: 'The storage volume is full' },
  READ_ONLY: { status: 405, message: 'The cache was opened read-only' },
  CACHE_CLOSED: { status: 503, message: 'The cache is closed' },
  VIEW_RELEASED: { status: 500, message: 'The view was used after release()' },
  INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class PixtableError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
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
    this.details = options?.details;
  }
}

export function isPixtableError(e: unknown): e is PixtableError {
  return e instanceof PixtableError;
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
