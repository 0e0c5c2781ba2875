// Every error the HTTP service answers leaves through here, as `{"error":{"code","message"}}` with
// the registry's status (src/errors.ts): errors thrown by routes, unknown paths, wrong methods, what
// fastify's router and Node's parser refuse before a route exists. One place decides the shape,
// the status, Retry-After on 503s and the reason phrase, so no path can drift from the others.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, PixtableError, bodyTooLargeDetail, isPixtableError, type ErrorCode } from '../errors.js';

const JSON_TYPE = 'application/json; charset=utf-8';

/** `{ "error": { code, message } }` as a pre-serialised string. */
export function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

/** Maps anything thrown to a registry error. Unknown errors become INTERNAL (details only in logs). */
export function toPixtableError(e: unknown): PixtableError {
  if (isPixtableError(e)) return e;
  const fe = e as FastifyError;
  switch (fe?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PixtableError('BODY_TOO_LARGE', fe.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new PixtableError('BAD_REQUEST', fe.message);
    case 'FST_ERR_VALIDATION':
      return new PixtableError('INVALID_PARAMETER', fe.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new PixtableError('UNSUPPORTED_IMAGE', fe.message);
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new PixtableError('REQUEST_TIMEOUT');
  }
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new PixtableError('BAD_REQUEST', fe.message);
  }
  return new PixtableError('INTERNAL', undefined, { cause: e });
}

/**
 * Retry-After in whole seconds: the error's own `retryAfter` detail when it has one (the decode
 * queue knows when to come back), 1 for any other 503, none otherwise.
 */
function retryAfter(status: number, details: PixtableError['details']): string | undefined {
  const seconds = details?.retryAfter;
  if (typeof seconds === 'number') return String(Math.max(1, Math.ceil(seconds)));
  return status === 503 ? '1' : undefined;
}

/**
 * Answers `code` on a fastify reply. `message` defaults to the registry's public message; headers
 * the caller set before (Allow on a 405) stay.
 */
export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string = ERRORS[code].message,
  details?: PixtableError['details'],
): void {
  const status = ERRORS[code].status;
  const after = retryAfter(status, details);
  if (after !== undefined) reply.header('Retry-After', after);
  void reply.code(status).type(JSON_TYPE).send(errorBody(code, message));
}

/** Answers a registry error; an INTERNAL one shows only the generic message (the cause is logged). */
function sendPixtableError(reply: FastifyReply, e: PixtableError): void {
  sendError(reply, e.code, e.code === 'INTERNAL' ? ERRORS.INTERNAL.message : e.message, e.details);
}

/**
 * Answers `code` on a socket no request object exists for yet (Node's parser refused the bytes),
 * then closes it: what follows the bad bytes cannot be trusted to be a request.
 */
export function writeSocketError(
  socket: Socket,
  code: ErrorCode,
  message: string = ERRORS[code].message,
): void {
  if (socket.writable) {
    const status = ERRORS[code].status;
    const body = errorBody(code, message);
    const after = retryAfter(status, undefined);
    socket.write(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n` +
        `Content-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        (after === undefined ? '' : `Retry-After: ${after}\r\n`) +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Answers `code` on a response of Node's server that fastify never saw. */
export function writeResponseError(
  res: http.ServerResponse,
  code: ErrorCode,
  message: string = ERRORS[code].message,
): void {
  const body = errorBody(code, message);
  res.writeHead(ERRORS[code].status, {
    'Content-Type': JSON_TYPE,
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** fastify's error handler: logs what operators must see, then answers in the registry's terms. */
export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const pe =
    (err as FastifyError | null)?.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
      ? bodyTooLarge(request)
      : toPixtableError(err);
  if (pe.code === 'INTERNAL') request.log.error({ err }, 'internal error');
  else if (pe.status >= 500) request.log.warn({ code: pe.code, msg: pe.message }, 'unavailable');
  sendPixtableError(reply, pe);
}

// fastify's "Request body is too large" names neither size nor limit; the request knows both.
function bodyTooLarge(request: FastifyRequest): PixtableError {
  const declared = Number(request.headers['content-length']);
  return new PixtableError(
    'BODY_TOO_LARGE',
    bodyTooLargeDetail(Number.isSafeInteger(declared) ? declared : undefined, request.routeOptions.bodyLimit),
  );
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  sendError(
    reply,
    'ROUTE_NOT_FOUND',
    `${ERRORS.ROUTE_NOT_FOUND.message}: ${request.method} ${request.url.split('?')[0]}`,
  );
}

/** The router rejects malformed percent-encoding before any handler runs. */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: unknown): void {
  const url = request.raw.url ?? '';
  const code: ErrorCode = /^\/v1\/(pixels|thumbnails|sources)\//.test(url) ? 'INVALID_KEY' : 'BAD_REQUEST';
  sendError(reply as FastifyReply, code, `${ERRORS[code].message}: ${error.message}`);
}

/**
 * Errors Node's HTTP parser raises before a request exists: header timeout, oversized headers,
 * malformed requests.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let code: ErrorCode = 'BAD_REQUEST';
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') code = 'REQUEST_TIMEOUT';
  else if (err.code === 'HPE_HEADER_OVERFLOW') code = 'HEADERS_TOO_LARGE';
  writeSocketError(socket, code);
}
