// One lane connection, from the first byte until the lane is done with it.
//
// The lane reads whole requests out of a socket chunk and answers those `handle` accepts with one
// corked write. A request of the grammar it does not answer goes to Node's server on its own,
// through a Session, with reading paused until Node's response is written; then the lane goes on.
// A request outside the grammar leaves the connection to Node for good, with the bytes not yet
// answered: Node's own handler takes the socket itself, or, when a Session already exists, every
// later byte goes through it. Either way Node's parser, limits and timeouts apply as without the
// lane: it never holds a partial request, never reads a body and never produces an error itself.
import type http from 'node:http';
import type net from 'node:net';
import { native } from '../../native/addon.js';
import {
  handOver,
  idleSocketFd,
  readInto,
  responseInFlight,
  type ConnectionHandler,
} from '../node-internals.js';
import { parseRequest } from './grammar.js';
import { Session, type SessionOwner } from './session.js';
import type { Tails } from './tails.js';
import type { LaneOptions, LaneOut, LaneStats } from './index.js';

const EMPTY = Buffer.alloc(0);
/**
 * Where every lane connection's reads land (readInto): one buffer for the process, since reads
 * run one at a time, and a read is answered or copied before the next. 64 KiB as Node reads.
 */
const READS = Buffer.allocUnsafe(64 * 1024);

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

/** By real socket, while the lane has a say in it (not after Node's handler took the socket). */
const conns = new WeakMap<net.Socket, Conn>();

export function laneConn(socket: net.Socket): Conn | undefined {
  return conns.get(socket);
}

/** The connection a request Node's server parsed came through, when it came through a Session. */
export function sessionConn(socket: unknown): Conn | undefined {
  // every Session is created by a Conn for itself (ensureSession)
  return socket instanceof Session ? (socket.conn as Conn) : undefined;
}

export class Conn implements LaneOut, SessionOwner {
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
  /** A read into READS: valid during this call only (read() copies what it keeps). */
  private readonly onRead = (nread: number, buf: Buffer): void => {
    // Gone: the lane has left; bytes that still come this way (Node's parser no longer consuming
    // the handle) are the socket's 'data', as without readInto
    if (this.state === State.Gone) this.socket.emit('data', Buffer.from(buf.subarray(0, nread)));
    else this.read(buf.subarray(0, nread));
  };
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
    private readonly node: ConnectionHandler,
    private readonly opts: LaneOptions,
    private readonly tails: Tails,
    private readonly stats: LaneStats,
  ) {
    conns.set(socket, this);
    socket.setTimeout(opts.keepAliveTimeoutMs);
    // Reads straight into READS, past the Readable stream (its push, 'data' event, nextTick and
    // a fresh 64 KiB allocation per read cost more than parsing the request); 'data' where this
    // Node has no way to.
    if (!readInto(socket, READS, this.onRead)) socket.on('data', this.onData);
    socket.on('timeout', this.onTimeout);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', noop); // ECONNRESET and the like: the socket closes, queued writes fail
  }

  /** Node's server is working on a request of this connection, or still writing its response. */
  busy(): boolean {
    const s = this.session;
    return (
      this.state === State.Delegated ||
      (this.state === State.Forwarding && s !== undefined && (responseInFlight(s) || s.writableLength !== 0))
    );
  }

  /** `chunk` may be READS (valid during this call only): whatever is kept is copied first. */
  private read(chunk: Buffer): void {
    if (this.state !== State.Lane) {
      if (this.state === State.Forwarding) this.forward(Buffer.from(chunk));
      else if (this.state === State.Delegated)
        this.pending = this.pending === undefined ? Buffer.from(chunk) : Buffer.concat([this.pending, chunk]);
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
        this.delegate(
          Buffer.from(chunk.subarray(pos, r.end)),
          r.end < s.length ? Buffer.from(chunk.subarray(r.end)) : undefined,
        );
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
    const tail = this.closing ? this.tails.close() : this.tails.keepAlive();
    // Usually nothing is queued and the kernel takes the whole response at once: then one
    // sendmsg does what Node's stream would do with the same single writev, without its
    // per-write bookkeeping (cork, three buffered writes, a WriteWrap, the after-write tick;
    // bench:http's CPU accounting shows the saving). Whatever the kernel does not take (a
    // full socket buffer, an error) goes to the stream after it, so order and error handling
    // stay Node's.
    const fd = idleSocketFd(socket);
    let skip = 0;
    if (fd >= 0) {
      const took = native.sendParts(fd, head, tail, body ?? EMPTY);
      if (took === head.length + tail.length + (body === undefined ? 0 : body.length)) return false;
      if (took > 0) skip = took;
    }
    socket.cork();
    skip = writeFrom(socket, head, skip);
    skip = writeFrom(socket, tail, skip);
    if (body !== undefined) writeFrom(socket, body, skip);
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
  private leave(borrowed: Buffer): void {
    const rest = Buffer.from(borrowed);
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
    // Node's handler sets its own socket timeout and listeners and reads the socket from now on;
    // the bytes already read reach its parser first.
    handOver(this.server, this.node, socket, rest);
  }

  private forward(chunk: Buffer): void {
    // Node's server pauses its socket when responses pile up: honour that with the real one.
    if (!this.ensureSession().push(chunk) && !this.forwardHeld) {
      this.forwardHeld = true;
      this.hold();
    }
  }

  readWanted(): void {
    if (!this.forwardHeld) return;
    this.forwardHeld = false;
    this.release();
  }

  private ensureSession(): Session {
    if (this.session === undefined) {
      this.session = new Session(this);
      this.node.call(this.server, this.session);
    }
    return this.session;
  }
}

function noop(): void {}

/** Writes what is left of `part` after `skip` bytes sent already; returns what is left to skip. */
function writeFrom(socket: net.Socket, part: Buffer, skip: number): number {
  if (skip >= part.length) return skip - part.length;
  socket.write(skip === 0 ? part : part.subarray(skip));
  return 0;
}
