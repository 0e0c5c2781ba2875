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
// error) is passed to Node's server on its own; a request outside the grammar leaves the
// connection to Node for good (connection.ts). Whatever the lane reads as a request, llhttp reads
// the same way; whatever is doubtful goes to llhttp (grammar.ts).
//
// This file is the lane's whole public surface: nothing outside lane/ imports the others.
// grammar.ts    the request grammar (parseRequest), pure
// connection.ts one connection's state machine: answer, pass one request to Node, or leave
// session.ts    the Duplex standing in for the socket, which Node's server sees
// tails.ts      the Date and Connection lines after a prepared head
import type http from 'node:http';
import type net from 'node:net';
import { takeConnectionHandler } from '../node-internals.js';
import { Conn, laneConn, sessionConn } from './connection.js';
import { Tails } from './tails.js';
import type { LaneRequest } from './grammar.js';

export { parseRequest, type LaneRequest } from './grammar.js';

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

export interface LaneStats {
  /** Requests the lane passed to Node's HTTP server one at a time, keeping the connection. */
  delegated: number;
  /** Connections given to Node's handler for good (see the file comment). */
  handovers: number;
}

/**
 * Takes over `server`'s connections: they start in the lane, which passes the requests it does not
 * answer to Node's connection handler (the one http.Server installed) one at a time, or leaves the
 * connection to it (see the file comment). Call right after creating the server, before it listens.
 */
export function installLane(server: http.Server, opts: LaneOptions): LaneStats {
  const node = takeConnectionHandler(server);
  if (node === undefined) throw new Error('installLane: the server has no connection handler');
  const tails = new Tails(opts.keepAliveTimeoutMs);
  const stats: LaneStats = { delegated: 0, handovers: 0 };
  server.prependListener('connection', (socket: net.Socket) => {
    new Conn(socket, server, node, opts, tails, stats); // found again by socket: laneBusy()
  });
  // A delegated request's response: when it is done (written, or the connection gone), the lane
  // goes on with the connection's next request.
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const c = sessionConn(req.socket);
    if (c !== undefined) {
      res.once('close', c.nodeDone);
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

/**
 * True while Node's server is working on a request the lane passed it on this socket, or still
 * writing its response (for graceful shutdown, which must not close such a connection as idle).
 */
export function laneBusy(socket: net.Socket): boolean {
  return laneConn(socket)?.busy() ?? false;
}
