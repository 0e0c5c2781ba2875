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
// A request of that grammar the lane does not answer (a miss, a Range, a rectangle, /metrics, any
// error) is passed to Node's server on its own: through a Session, a Duplex standing in for the
// socket, with reading paused until Node's response is written; then the lane goes on with the
// connection. A request outside the grammar leaves the connection to Node for good, with the bytes
// not yet answered: a head split over two reads, a body (Content-Length other than 0,
// Transfer-Encoding), HTTP/1.0, Upgrade/Expect, a missing or repeated Host, any byte outside the
// grammar below, a head beyond maxHeaderBytes. Node's own handler then takes the socket itself (or,
// when a Session already exists, every later byte goes through it). Either way Node's parser,
// limits and timeouts apply as without the lane: the lane never holds a partial request, never
// reads a body and never produces an error itself. The grammar is deliberately narrower than
// RFC 9112: whatever the lane reads as a request, llhttp reads the same way; whatever is doubtful
// goes to llhttp.
import type http from 'node:http';
import type net from 'node:net';
import { Duplex } from 'node:stream';

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
  /**
   * Set by `handle` when it declines: what it learned (a parsed target, say), handed with the
   * request to Node's server so that nothing is parsed or looked up twice (see `declinedNote`).
   */
  note: unknown;
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
   * request then goes to Node's HTTP server, and the lane takes the next one once it is answered.
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

/**
 * Takes over `server`'s connections: they start in the lane, which passes the requests it does not
 * answer to Node's connection handler (the one http.Server installed) one at a time, or leaves the
 * connection to it (see the file comment). Call right after creating the server, before it listens.
 */
export function installLane(server: http.Server, opts: LaneOptions): LaneStats {
  const node = server.listeners('connection')[0] as ((socket: net.Socket) => void) | undefined;
  if (node === undefined) throw new Error('installLane: the server has no connection handler');
  server.removeListener('connection', node);
  const tails = new Tails(opts.keepAliveTimeoutMs);
  const stats: LaneStats = { delegated: 0, handovers: 0 };
  server.prependListener('connection', (socket: net.Socket) => {
    conns.set(socket, new Conn(socket, server, node, opts, tails, stats));
  });
  // A delegated request's response: when it is done (written, or the connection gone), the lane
  // goes on with the connection's next request.
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const s = req.socket;
    if (s instanceof Session) {
      res.once('close', s.conn.nodeDone);
      const c = s.conn;
      // Only the request the lane delegated carries a note; one Node parsed after a handover not.
      if (c.noteWaiting) {
        c.noteWaiting = false;
        notes.set(req, c.note);
        c.note = undefined;
      }
    }
  });
  return stats;
}

const notes = new WeakMap<http.IncomingMessage, unknown>();

/**
 * What `handle` left in `LaneRequest.note` when it declined this request, which the lane then
 * passed to Node's server; undefined for requests that did not come through the lane.
 */
export function declinedNote(req: http.IncomingMessage): unknown {
  return notes.get(req);
}

/** Whether `req` was parsed by the lane and declined by `handle` (so `handle` saw it already). */
export function declinedByLane(req: http.IncomingMessage): boolean {
  return notes.has(req);
}

export interface LaneStats {
  /** Requests the lane passed to Node's HTTP server one at a time, keeping the connection. */
  delegated: number;
  /** Connections given to Node's handler for good (see the file comment). */
  handovers: number;
}

const conns = new WeakMap<net.Socket, Conn>();

/**
 * True while Node's server is working on a request the lane passed it on this socket, or still
 * writing its response (for graceful shutdown, which must not close such a connection as idle).
 */
export function laneBusy(socket: net.Socket): boolean {
  return conns.get(socket)?.busy() ?? false;
}

const EMPTY = Buffer.alloc(0);

const enum State {
  /** The lane reads and answers. */
  Lane,
  /** A request was passed to Node through the Session; the lane waits for its response. */
  Delegated,
  /** For good: every byte goes through the Session to Node's server. */
  Forwarding,
  /** For good: Node's server owns the socket itself; or the connection is closing. */
  Gone,
}

class Conn implements LaneOut {
  private state = State.Lane;
  private closing = false;
  /** Reasons reading is paused (a pipelining client, a delegated request): resume at zero. */
  private holds = 0;
  /** Bytes read while a delegated request was in progress, answered once it is done. */
  private pending: Buffer | undefined;
  /** Forwarding: the Session's buffer is full, reading holds until Node reads from it. */
  private forwardHeld = false;
  private session: Session | undefined;
  /** The declined request's LaneRequest.note, read when Node's server emits it. */
  note: unknown;
  noteWaiting = false;
  /** afterFlush() callbacks of the chunk being answered; one marker write covers them all. */
  private waiters: (() => void)[] = [];
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onTimeout = (): void => {
    // Node manages the socket's timeout while it works on a request: its handler decides
    if (this.session !== undefined && this.state !== State.Lane) this.session.emit('timeout');
    else this.socket.destroy();
  };
  private readonly onEnd = (): void => {
    if (this.session !== undefined && this.state !== State.Lane) this.session.push(null);
    else this.socket.end();
  };
  private readonly onClose = (): void => {
    this.session?.destroy();
  };

  constructor(
    readonly socket: net.Socket,
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
    socket.on('close', this.onClose);
    socket.on('error', noop); // ECONNRESET and the like: the socket closes, queued writes fail
  }

  busy(): boolean {
    const s = this.session;
    return (
      this.state === State.Delegated ||
      (this.state === State.Forwarding &&
        s !== undefined &&
        ((s as Session & { _httpMessage?: unknown })._httpMessage != null || s.writableLength !== 0))
    );
  }

  private read(chunk: Buffer): void {
    if (this.state !== State.Lane) {
      if (this.state === State.Forwarding) this.forward(chunk);
      else if (this.state === State.Delegated)
        this.pending = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
      return;
    }
    const opts = this.opts;
    const socket = this.socket;
    // Not GET or HEAD (an upload, say): no need to turn the chunk into a string to find that out.
    if (chunk[0] !== 0x47 && chunk[0] !== 0x48) {
      this.leave(chunk);
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
      if (r === undefined) {
        this.leave(pos === 0 ? chunk : chunk.subarray(pos));
        return;
      }
      this.closing = r.close;
      let answered: boolean;
      try {
        answered = opts.handle(r, this);
      } catch (e) {
        socket.destroy();
        opts.onError(e);
        return;
      }
      if (!answered) {
        this.note = r.note;
        this.noteWaiting = true;
        this.delegate(chunk.subarray(pos, r.end), r.end < s.length ? chunk.subarray(r.end) : undefined);
        return;
      }
      pos = r.end;
      if (r.close) {
        this.state = State.Gone;
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
    if (pipelining) this.hold();
    this.flushLater(pipelining);
  }

  private hold(): void {
    if (this.holds++ === 0) this.socket.pause();
  }

  private release(): void {
    if (--this.holds === 0 && this.state !== State.Gone) this.socket.resume();
  }

  /**
   * One marker write behind everything queued now: when all of it is written it runs the waiters,
   * restores the keep-alive timeout, and releases the pipelining hold `read()` took (`held`).
   */
  private flushLater(held = false): void {
    const waiters = this.waiters;
    this.waiters = [];
    // Writes complete in order: an empty write's callback runs once everything before it was
    // written, and also (with an error) when the socket is destroyed first.
    this.socket.write(EMPTY, () => {
      for (const fn of waiters) fn();
      const socket = this.socket;
      if (socket.destroyed) return;
      if (this.state === State.Lane && socket.writableLength === 0)
        socket.setTimeout(this.opts.keepAliveTimeoutMs);
      if (held) this.release();
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

  /**
   * Passes one whole request the lane parsed but does not answer (a miss, a Range, an error…) to
   * Node's server through the Session, keeping the connection: reading stops, and the lane goes on
   * with `rest` and later bytes once Node's response is done (nodeDone).
   */
  private delegate(request: Buffer, rest: Buffer | undefined): void {
    if (this.waiters.length !== 0) this.flushLater();
    this.state = State.Delegated;
    this.pending = rest;
    this.stats.delegated++;
    this.hold();
    this.ensureSession().push(request);
  }

  readonly nodeDone = (): void => {
    if (this.state !== State.Delegated) return;
    const session = this.session!;
    if (session.writableEnded || session.destroyed || this.socket.destroyed) {
      this.state = State.Gone; // Node ended the connection (Connection: close, an error)
      return;
    }
    this.state = State.Lane;
    const rest = this.pending;
    this.pending = undefined;
    if (rest !== undefined) this.read(rest);
    this.release();
  };

  /** Leaves the connection to Node's server for good, `rest` being the bytes not answered yet. */
  private leave(rest: Buffer): void {
    if (this.waiters.length !== 0) this.flushLater();
    this.stats.handovers++;
    if (this.session !== undefined) {
      // Node already has a connection object for this socket: it gets everything from now on.
      this.state = State.Forwarding;
      this.forward(rest);
      return;
    }
    const socket = this.socket;
    this.state = State.Gone;
    socket.removeListener('data', this.onData);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('close', this.onClose);
    socket.removeListener('error', noop);
    conns.delete(socket);
    // Node's handler sets its own socket timeout and listeners, and starts its parser reading the
    // socket; the bytes already read are handed to that parser through its 'data' listener first,
    // before any later read can reach it.
    this.node.call(this.server, socket);
    socket.emit('data', rest);
  }

  private forward(chunk: Buffer): void {
    // Node's server pauses its socket when responses pile up: honour that with the real one.
    if (!this.ensureSession().push(chunk) && !this.forwardHeld) {
      this.forwardHeld = true;
      this.hold();
    }
  }

  /** Node's read of a paused Session: more bytes wanted. */
  readWanted(): void {
    if (!this.forwardHeld) return;
    this.forwardHeld = false;
    this.release();
  }

  private ensureSession(): Session {
    if (this.session === undefined) {
      this.session = new Session(this);
      this.node.call(this.server, this.session as unknown as net.Socket);
    }
    return this.session;
  }
}

/**
 * What Node's HTTP server sees of a lane connection once the lane passes it a request: a Duplex
 * standing in for the socket. Reads are the bytes the lane pushes; writes go to the real socket
 * (the same Buffers, corked together when Node corks: mapping slices stay uncopied) and complete
 * when the real socket has written them, so Node's 'finish' and the pins it releases on 'close'
 * mean what they mean on a real socket. Timeouts are the real socket's.
 */
class Session extends Duplex {
  constructor(readonly conn: Conn) {
    super({ allowHalfOpen: true });
  }
  override _read(): void {
    this.conn.readWanted();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.conn.socket.write(chunk, cb);
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    const real = this.conn.socket;
    real.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) real.write(chunks[i]!.chunk);
    real.write(chunks[last]!.chunk, cb);
    real.uncork();
  }
  override _final(cb: (e?: Error | null) => void): void {
    // finished once the real socket has written everything and its FIN
    this.conn.socket.end(() => cb());
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.conn.socket.destroy();
    cb(err);
  }
  // the parts of net.Socket Node's server and fastify use
  setTimeout(ms: number): this {
    this.conn.socket.setTimeout(ms);
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  _unrefTimer(): void {}
  destroySoon(): void {
    this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }
  get remoteAddress(): string | undefined {
    return this.conn.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.conn.socket.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.conn.socket.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.conn.socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.conn.socket.localPort;
  }
  address(): ReturnType<net.Socket['address']> {
    return this.conn.socket.address();
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
  note: undefined,
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
  req.note = undefined;
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
