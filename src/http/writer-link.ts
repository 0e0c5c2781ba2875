// A worker's line to the writer process of `pixtable serve --workers N` (src/serve/): HTTP over
// the writer's Unix socket, kept alive. Misses become one `load` call (the writer decodes once,
// however many workers ask, then the worker serves the entry from its own mapping); uploads and
// deletes are streamed through unchanged, so the writer's answer — status, headers, error body —
// is the client's answer. The writer being down is one error, WRITER_UNAVAILABLE (503).
import http from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PixtableError, errorFromWire } from '../errors.js';

/** Path of the writer's internal route; it listens on a socket only its supervisor's workers know. */
export const LOAD_PATH = '/_pixtable/load';

// Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's.
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

function endToEnd(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  return out;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE']);

export interface WriterLinkOptions {
  socketPath: string;
  /** Bound on one call, ms: a decode or an upload (PIXTABLE_REQUEST_TIMEOUT_MS). */
  timeoutMs: number;
  /**
   * Resolves once every worker has applied the writer's latest records (the supervisor's
   * barrier): a write answered through one worker is then visible through all of them.
   */
  sync(): Promise<void>;
}

export class WriterLink {
  /** Whether the writer is up, as the supervisor last said (and as the last call found). */
  up = true;
  private readonly agent: http.Agent;

  constructor(private readonly o: WriterLinkOptions) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  }

  private unavailable(cause?: unknown): PixtableError {
    return new PixtableError('WRITER_UNAVAILABLE', undefined, cause ? { cause } : undefined);
  }

  private request(opts: http.RequestOptions): http.ClientRequest {
    return http.request({
      ...opts,
      agent: this.agent,
      socketPath: this.o.socketPath,
      timeout: this.o.timeoutMs,
    });
  }

  private failed(e: unknown): PixtableError {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && UNREACHABLE.has(code)) this.up = false;
    return this.unavailable(e);
  }

  /** The writer's error answer as a PixtableError (same code, message and Retry-After). */
  private static async fromResponse(res: http.IncomingMessage): Promise<PixtableError> {
    let text = '';
    for await (const chunk of res) text += String(chunk);
    const after = Number(res.headers['retry-after']);
    const details = Number.isFinite(after) ? { retryAfter: after } : undefined;
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      return errorFromWire(body.error?.code, body.error?.message, details);
    } catch {
      return errorFromWire('INTERNAL', `writer answered ${res.statusCode ?? '?'}`, details);
    }
  }

  /** Has the writer store `key` in `format` (decoding it, or fetching it from the origin). */
  load(format: string, key: string): Promise<void> {
    if (!this.up) return Promise.reject(this.unavailable());
    const body = JSON.stringify({ format, key });
    return new Promise<void>((resolve, reject) => {
      const req = this.request({
        method: 'POST',
        path: LOAD_PATH,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.on('response', (res) => {
        if (res.statusCode === 204) {
          res.resume();
          resolve();
        } else WriterLink.fromResponse(res).then(reject, reject);
      });
      req.on('timeout', () => req.destroy(new PixtableError('DECODE_TIMEOUT', `${format}/${key}`)));
      req.on('error', (e) => reject(e instanceof PixtableError ? e : this.failed(e)));
      req.end(body);
    });
  }

  /**
   * Streams `request` (an upload, a delete) to the writer and its answer back through `reply`.
   * A successful write is synced to every worker before the client hears of it.
   */
  forward(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!this.up) return Promise.reject(this.unavailable());
    return new Promise<void>((resolve, reject) => {
      const raw = request.raw;
      const up = this.request({
        method: raw.method,
        path: raw.url,
        headers: endToEnd(raw.headers),
      });
      up.on('response', (res) => {
        const status = res.statusCode ?? 502;
        const answer = () => {
          void reply.code(status).headers(endToEnd(res.headers)).send(res);
          resolve();
        };
        if (status >= 400) answer();
        else this.o.sync().then(answer, reject);
      });
      up.on('timeout', () => up.destroy(new PixtableError('REQUEST_TIMEOUT')));
      up.on('error', (e) => {
        if (reply.sent) return;
        reject(e instanceof PixtableError ? e : this.failed(e));
      });
      raw.pipe(up);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
