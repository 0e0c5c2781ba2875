// The fast lane: cache hits answered straight from the TCP socket, before Node's HTTP server.
//
// Node's http.Server costs more per request than nginx spends on a whole 16 KiB exchange: llhttp's
// callbacks, an IncomingMessage, a ServerResponse, header validation and the 'finish' bookkeeping
// run for every request whatever the handler does (measured with `npm run bench:http`, docs/http.md).
// A remembered hit needs none of it: its status line and headers are bytes prepared once, its body
// is a slice of the mapping. So each new connection starts here. The lane reads whole requests out
// of a socket chunk, and answers those `handle` accepts with one corked write (prepared head, Date
// and Connection lines, body).
//
// Anything else is given, with the bytes not yet answered, to Node's own connection handler, which
// then owns the connection for the rest of its life: a request split over two reads, a body
// (Content-Length other than 0, Transfer-Encoding), HTTP/1.0, Upgrade/Expect, a missing or repeated
// Host, any byte outside the grammar below, a head beyond maxHeaderBytes, and every request `handle`
// declines (misses, errors, ranges). Node's parser and timeouts (headers, request, keep-alive) then
// apply exactly as without the lane, so the lane never holds a partial request, never reads a body
// and never has to produce an error itself. The grammar is deliberately narrower than RFC 9112:
// whatever the lane answers, llhttp would parse the same way; whatever is doubtful goes to llhttp.
import type http from 'node:http';
import type net from 'node:net';

/** One parsed request, valid until the next is parsed (the lane is synchronous; no per-request object). */
export interface LaneRequest {
  isHead: boolean;
  /** The raw request target as sent (starts with '/'). */
  target: string;
  range: boolean;
  /** Repeated headers joined with ", " as Node joins them. */
  accept: string | undefined;
  ifNoneMatch: string | undefined;
  /** X-Request-Id, read only when LaneOptions.requestIds is set. */
  requestId: string | undefined;
  /** `Connection: close`: the lane closes the connection after this response. */
  close: boolean;
  /** Offset just past this request's head in the chunk. */
  end: number;
}

export interface LaneOut {
  /**
   * Writes one response: `head` (from rawHead()), the Date and Connection lines, then `body` if
   * given. Returns true when the socket kept part of it queued, i.e. the body's memory is still
   * read after this call returns (the caller pins it and releases it in afterFlush()).
   */
  send(head: Buffer, body: Buffer | undefined): boolean;
  /** Calls fn once everything queued so far was written to the kernel, or the connection closed. */
  afterFlush(fn: () => void): void;
}

export interface LaneOptions {
  /**
   * Answers `req` through `out` and returns true, or returns false without writing anything: the
   * request and the rest of the connection then go to Node's HTTP server.
   */
  handle(req: LaneRequest, out: LaneOut): boolean;
  /** False while the server drains or is not ready: new requests go to Node (Connection: close, 503s). */
  open(): boolean;
  /** An idle keep-alive connection is closed after this (ms); Node's keepAliveTimeout. */
  keepAliveTimeoutMs: number;
  /** A connection with a response still queued is closed after this long without progress (ms). */
  idleTimeoutMs: number;
  /** Heads longer than this (bytes) go to Node, which answers 431; Node's maxHeaderSize. */
  maxHeaderBytes: number;
  /** Read X-Request-Id (only request logging uses it). */
  requestIds: boolean;
  /**
   * A throw from `handle` (a bug): the connection is destroyed, since part of a response may
   * already be written, and the error reported here instead of taking the process down.
   */
  onError(e: unknown): void;
}

/** `HTTP/1.1 <status>` and the given header list as bytes, without the closing blank line. */
export function rawHead(status: 200 | 304, headers: readonly string[]): Buffer {
  let s = status === 200 ? 'HTTP/1.1 200 OK\r\n' : 'HTTP/1.1 304 Not Modified\r\n';
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(s, 'latin1');
}

/**
 * Takes over `server`'s connections: they start in the lane and move to Node's connection handler
 * (the one http.Server installed) at their first request the lane does not answer. Call right after
 * creating the server, before it listens.
 */
export function installLane(server: http.Server, opts: LaneOptions): LaneStats {
  const node = server.listeners('connection')[0] as ((socket: net.Socket) => void) | undefined;
  if (node === undefined) throw new Error('installLane: the server has no connection handler');
  server.removeListener('connection', node);
  const tails = new Tails(opts.keepAliveTimeoutMs);
  const stats: LaneStats = { handovers: 0 };
  server.prependListener('connection', (socket: net.Socket) => {
    new Conn(socket, server, node, opts, tails, stats);
  });
  return stats;
}

export interface LaneStats {
  /** Connections given to Node's handler so far. */
  handovers: number;
}

const EMPTY = Buffer.alloc(0);

class Conn implements LaneOut {
  private closing = false;
  private paused = false;
  /** false once the connection was handed over or is closing: its timeouts are not ours then. */
  private mine = true;
  /** afterFlush() callbacks of the chunk being answered; one marker write covers them all. */
  private waiters: (() => void)[] = [];
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onTimeout = (): void => {
    this.socket.destroy();
  };
  private readonly onEnd = (): void => {
    this.socket.end();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly server: http.Server,
    private readonly node: (socket: net.Socket) => void,
    private readonly opts: LaneOptions,
    private readonly tails: Tails,
    private readonly stats: LaneStats,
  ) {
    socket.setTimeout(opts.keepAliveTimeoutMs);
    socket.on('data', this.onData);
    socket.on('timeout', this.onTimeout);
    socket.on('end', this.onEnd);
    socket.on('error', noop); // ECONNRESET and the like: the socket closes, queued writes fail
  }

  private read(chunk: Buffer): void {
    const opts = this.opts;
    const socket = this.socket;
    // Not GET or HEAD (an upload, say): no need to turn the chunk into a string to find that out.
    if (chunk[0] !== 0x47 && chunk[0] !== 0x48) {
      this.handover(chunk);
      return;
    }
    // Requests arriving while earlier answers are still queued: the client pipelines faster than
    // it reads. Reading stops after this chunk until the queue is written, so queued responses
    // (and the pins behind them) stay bounded by one chunk's worth.
    const pipelining = socket.writableLength !== 0;
    const s = chunk.toString('latin1'); // one char per byte: string offsets are byte offsets
    let pos = 0;
    while (pos < s.length) {
      const r = opts.open() ? parseRequest(s, pos, opts.maxHeaderBytes, opts.requestIds) : undefined;
      let answered = false;
      if (r !== undefined) {
        this.closing = r.close;
        try {
          answered = opts.handle(r, this);
        } catch (e) {
          socket.destroy();
          opts.onError(e);
          return;
        }
      }
      if (r === undefined || !answered) {
        this.handover(pos === 0 ? chunk : chunk.subarray(pos));
        return;
      }
      pos = r.end;
      if (r.close) {
        this.mine = false;
        socket.removeListener('data', this.onData);
        if (socket.writableLength !== 0) {
          socket.setTimeout(opts.idleTimeoutMs);
          this.flushLater(); // before end(): a write after it would fail at once
        }
        socket.end();
        return;
      }
    }
    if (socket.writableLength === 0) return;
    // A response is still queued: the client has idleTimeoutMs to make progress reading it, and
    // keepAliveTimeoutMs again once it is written (as Node's server does).
    socket.setTimeout(opts.idleTimeoutMs);
    if (pipelining) {
      this.paused = true;
      socket.pause();
    }
    this.flushLater();
  }

  /** One marker write behind everything queued now: it runs the waiters when all of it is written. */
  private flushLater(): void {
    const waiters = this.waiters;
    this.waiters = [];
    // Writes complete in order: an empty write's callback runs once everything before it was
    // written, and also (with an error) when the socket is destroyed first.
    this.socket.write(EMPTY, () => {
      for (const fn of waiters) fn();
      const socket = this.socket;
      if (socket.writableLength !== 0 || socket.destroyed) return;
      if (!this.mine) return;
      socket.setTimeout(this.opts.keepAliveTimeoutMs);
      if (this.paused) {
        this.paused = false;
        socket.resume();
      }
    });
  }

  send(head: Buffer, body: Buffer | undefined): boolean {
    const socket = this.socket;
    socket.cork();
    socket.write(head);
    socket.write(this.closing ? this.tails.close() : this.tails.keepAlive());
    if (body !== undefined) socket.write(body);
    socket.uncork();
    return socket.writableLength !== 0;
  }

  afterFlush(fn: () => void): void {
    if (this.socket.writableLength === 0) fn();
    else this.waiters.push(fn);
  }

  /** Gives the connection to Node's HTTP server, `rest` being the bytes not answered yet. */
  private handover(rest: Buffer): void {
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('error', noop);
    if (this.waiters.length !== 0) this.flushLater();
    this.mine = false;
    this.paused = false;
    this.stats.handovers++;
    // Node's handler sets its own socket timeout and listeners, and starts its parser reading the
    // socket; the bytes already read are handed to that parser through its 'data' listener first,
    // before any later read can reach it.
    this.node.call(this.server, socket);
    socket.emit('data', rest);
  }
}

function noop(): void {}

/** The lines after a response's own headers: Date (per second, as Node caches it) and Connection. */
class Tails {
  private until = 0;
  private ka = EMPTY;
  private cl = EMPTY;
  private readonly keepAliveLine: string;
  constructor(keepAliveTimeoutMs: number) {
    this.keepAliveLine = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n\r\n`;
  }
  keepAlive(): Buffer {
    if (Date.now() >= this.until) this.refresh();
    return this.ka;
  }
  close(): Buffer {
    if (Date.now() >= this.until) this.refresh();
    return this.cl;
  }
  private refresh(): void {
    const now = Date.now();
    this.until = now - (now % 1000) + 1000;
    const date = `Date: ${new Date(now).toUTCString()}\r\n`;
    this.ka = Buffer.from(date + this.keepAliveLine, 'latin1');
    this.cl = Buffer.from(`${date}Connection: close\r\n\r\n`, 'latin1');
  }
}

// ---------- request grammar ----------
// request-line = ("GET" / "HEAD") SP target SP "HTTP/1.1" CRLF, target = "/" *(%x21-7E)
// header-line  = token ":" *(SP / HTAB) *(HTAB / %x20-7E / %x80-FF) CRLF   (no obs-fold)

const req: LaneRequest = {
  isHead: false,
  target: '',
  range: false,
  accept: undefined,
  ifNoneMatch: undefined,
  requestId: undefined,
  close: false,
  end: 0,
};

/** RFC 9110 tchar. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;

/**
 * Parses the request starting at `start`. Undefined when there is no complete head in `s`, or it is
 * anything the lane leaves to Node (see the file comment). The result is one shared object.
 */
export function parseRequest(
  s: string,
  start: number,
  maxHead: number,
  requestIds: boolean,
): LaneRequest | undefined {
  const blank = s.indexOf('\r\n\r\n', start);
  if (blank < 0 || blank - start > maxHead) return undefined;
  let p: number;
  if (s.startsWith('GET /', start)) {
    req.isHead = false;
    p = start + 4;
  } else if (s.startsWith('HEAD /', start)) {
    req.isHead = true;
    p = start + 5;
  } else return undefined;
  const sp = s.indexOf(' ', p);
  if (sp < 0 || sp > blank) return undefined;
  for (let i = p + 1; i < sp; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return undefined;
  }
  if (!s.startsWith('HTTP/1.1\r\n', sp + 1)) return undefined;
  req.target = s.slice(p, sp);
  req.range = false;
  req.accept = undefined;
  req.ifNoneMatch = undefined;
  req.requestId = undefined;
  req.close = false;
  let hosts = 0;
  p = sp + 11;
  while (p < blank + 2) {
    const eol = s.indexOf('\r\n', p); // ≤ blank: the head ends with CRLF CRLF
    let q = p;
    while (q < eol) {
      const c = s.charCodeAt(q);
      if (c >= 128 || TCHAR[c] !== 1) break;
      q++;
    }
    if (q === p || q === eol || s.charCodeAt(q) !== 0x3a /* : */) return undefined;
    const nameEnd = q;
    q++;
    while (q < eol && (s.charCodeAt(q) === 0x20 || s.charCodeAt(q) === 0x09)) q++;
    const vStart = q;
    let vEnd = q;
    for (; q < eol; q++) {
      const c = s.charCodeAt(q);
      if (c < 0x20 ? c !== 0x09 : c === 0x7f) return undefined; // CTLs, lone CR or LF included
      if (c !== 0x20 && c !== 0x09) vEnd = q + 1;
    }
    switch (nameEnd - p) {
      case 4:
        if (is(s, p, 'host')) hosts++;
        break;
      case 5:
        if (is(s, p, 'range')) req.range = true;
        break;
      case 6:
        if (is(s, p, 'accept')) req.accept = join(req.accept, s.slice(vStart, vEnd));
        else if (is(s, p, 'expect')) return undefined;
        break;
      case 7:
        if (is(s, p, 'upgrade')) return undefined;
        break;
      case 10:
        if (is(s, p, 'connection')) {
          const v = s.slice(vStart, vEnd).toLowerCase();
          if (v === 'close') req.close = true;
          else if (v !== 'keep-alive') return undefined;
        }
        break;
      case 12:
        if (requestIds && is(s, p, 'x-request-id')) req.requestId = s.slice(vStart, vEnd);
        break;
      case 13:
        if (is(s, p, 'if-none-match')) req.ifNoneMatch = join(req.ifNoneMatch, s.slice(vStart, vEnd));
        break;
      case 14:
        if (is(s, p, 'content-length') && (vEnd - vStart !== 1 || s.charCodeAt(vStart) !== 0x30))
          return undefined;
        break;
      case 17:
        if (is(s, p, 'transfer-encoding')) return undefined;
        break;
    }
    p = eol + 2;
  }
  if (hosts !== 1) return undefined;
  req.end = blank + 4;
  return req;
}

/** Case-insensitive match of `lower` (lower-case letters and '-') at s[at…]; lengths already equal. */
function is(s: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((s.charCodeAt(at + i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function join(a: string | undefined, b: string): string {
  return a === undefined ? b : `${a}, ${b}`;
}
