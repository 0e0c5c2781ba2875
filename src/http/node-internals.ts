// Every place pixtable relies on Node.js internals that its documentation does not promise: the
// fast lane (lane/) stands between the TCP socket and Node's HTTP server, and the graceful close
// (drain.ts) must know whether Node still has a response on a socket. Each internal sits behind one
// small function here, and test/unit/node-internals.test.ts checks each against the running Node
// with a real server, failing with the internal's name and the Node version when a release changes
// it. Checked on Node 20 and 24 (.ci/node24). Nothing else in src/ touches these.
import type http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Whether Node's HTTP server has a response bound to `socket`: `socket._httpMessage`, set when a
 * ServerResponse is assigned to its socket and cleared after its 'finish' (when the socket has
 * taken its last byte). Node's own notion of idle ends earlier, at res.end(), while megabytes may
 * still be queued for a slow reader; graceful close needs the later point.
 */
export function responseInFlight(socket: Duplex): boolean {
  return (socket as Duplex & { _httpMessage?: unknown })._httpMessage != null;
}

interface SocketHandle {
  fd?: number;
  writeQueueSize?: number;
  useUserBuffer?: (buf: Uint8Array) => void;
}

/**
 * Makes every later read of `socket` land in `buffer` and go to `onRead(nread, buffer)`, as
 * net.Socket's documented `onread` option does for sockets a client creates (Node has no such
 * option for the sockets a server accepts): `socket[kBuffer]`, `socket[kBufferCb]` (own symbols
 * of every net.Socket, found by description) and `_handle.useUserBuffer()`, which is what the
 * constructor does with `onread`. Each read then skips the stream: no Readable.push, 'data'
 * event or nextTick, and no buffer allocated for it. The bytes are valid only during the call;
 * `pause()`/`resume()` stop and start reading, 'end', 'timeout' and errors are as before, and an
 * HTTP parser that consumes the handle (Node's server) reads it directly. `buffer` may be shared
 * by any number of sockets (reads run one at a time on the event loop). Returns false, changing
 * nothing, when this Node lacks any of it.
 */
export function readInto(
  socket: net.Socket,
  buffer: Buffer,
  onRead: (nread: number, buf: Buffer) => void,
): boolean {
  const h = (socket as net.Socket & { _handle?: SocketHandle | null })._handle;
  if (h == null || typeof h.useUserBuffer !== 'function') return false;
  const own = Object.getOwnPropertySymbols(socket);
  const kBuffer = own.find((x) => x.description === 'kBuffer');
  const kBufferCb = own.find((x) => x.description === 'kBufferCb');
  if (kBuffer === undefined || kBufferCb === undefined) return false;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (slots[kBuffer] !== null || slots[kBufferCb] !== null) return false; // already someone's
  // Both halves or neither: with only the symbols set, Node would hand `buffer` to onRead while
  // the bytes went to a buffer of its own; with only the handle's, it would wrap a missing one.
  slots[kBuffer] = buffer;
  slots[kBufferCb] = (nread: number, buf: Buffer): boolean => {
    onRead(nread, buf);
    return true; // (false would pause)
  };
  try {
    h.useUserBuffer(buffer);
  } catch {
    slots[kBuffer] = null;
    slots[kBufferCb] = null;
    return false;
  }
  return true;
}

/**
 * The file descriptor of `socket` when bytes written to it directly would come right after
 * everything Node wrote: its handle is open (`socket._handle`, TCPWrap, whose `fd` is the socket's
 * on Unix) and nothing is waiting, neither in the stream (writableLength, cork) nor in libuv's
 * queue (`_handle.writeQueueSize`, what Node's own bufferSize reads). Otherwise -1. Read it just
 * before each write: once the socket is destroyed its handle is gone, and the descriptor number
 * may already belong to another connection.
 */
export function idleSocketFd(socket: net.Socket): number {
  if (socket.writableLength !== 0 || socket.writableCorked !== 0) return -1;
  const h = (socket as net.Socket & { _handle?: SocketHandle | null })._handle;
  if (h == null || h.writeQueueSize !== 0) return -1;
  const fd = h.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** What http.Server runs for each new connection: it creates the parser and takes the socket. */
export type ConnectionHandler = (this: http.Server, socket: Duplex) => void;

/**
 * Detaches http.Server's own 'connection' listener and returns it (undefined when the server has
 * none), so that another listener can decide per connection whether and when Node gets it. Node
 * installs it in the http.Server constructor, so on a fresh server it is the first listener; Node
 * documents only that the event may be emitted with any Duplex, and emitting would run our own
 * listener again.
 */
export function takeConnectionHandler(server: http.Server): ConnectionHandler | undefined {
  const first = server.listeners('connection')[0] as ConnectionHandler | undefined;
  if (first !== undefined) server.removeListener('connection', first);
  return first;
}

/**
 * Gives a TCP socket to Node's connection handler with the bytes someone else already read from
 * it. Node's handler feeds its parser from a 'data' listener (socketOnData) even when its parser
 * also consumes the native handle directly, so one emitted 'data' reaches the parser before any
 * later read does.
 */
export function handOver(
  server: http.Server,
  handler: ConnectionHandler,
  socket: net.Socket,
  alreadyRead: Buffer,
): void {
  handler.call(server, socket);
  socket.emit('data', alreadyRead);
}

/**
 * Methods Node's HTTP server calls on its socket beyond what stream.Duplex provides and beyond
 * net.Socket's documented API; a stand-in socket (lane/session.ts) must have them.
 * - `destroySoon()`: after the response that closes the connection (`Connection: close`, an
 *   error), once written (resOnFinish in _http_server).
 * - `_unrefTimer()`: restarts the socket's inactivity timer; Node calls it from onParserExecute,
 *   which runs only for a parser that consumed a native handle (never a stand-in), so it is a
 *   no-op there, kept so that a release calling it on any socket does not throw.
 */
export interface SocketCallsFromNode {
  destroySoon(): void;
  _unrefTimer(): void;
}

/**
 * Stops accepting connections without closing any: net.Server's close(), of which http.Server's
 * close() is an override that first runs closeIdleConnections() and stops the sweep enforcing
 * headersTimeout/requestTimeout, which thus keeps running for the connections that remain. `cb`
 * runs once the last open connection has closed.
 */
export function stopListening(server: http.Server, cb?: (err?: Error) => void): void {
  net.Server.prototype.close.call(server, cb);
}

export interface ConnectionClosing {
  close(cb?: (err?: Error) => void): void;
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

/**
 * Replaces how `server` closes connections, on the instance: Node's closeIdleConnections() takes a
 * connection for idle once res.end() was called (cutting slow downloads short), and it and
 * closeAllConnections() only know the connections Node's parser holds (not those still in the
 * lane). Callers (fastify's close, server.ts, Node's own Symbol.asyncDispose) reach the methods
 * through the instance, so assigning them there is enough.
 */
export function replaceConnectionClosing(server: http.Server, own: ConnectionClosing): void {
  server.closeIdleConnections = own.closeIdleConnections;
  server.closeAllConnections = own.closeAllConnections;
  server.close = function close(cb?: (err?: Error) => void) {
    own.close(cb);
    return server;
  } as typeof server.close;
}

/**
 * Makes Node end the connection after this response (`Connection: close`, then destroySoon()):
 * `res.shouldKeepAlive`, which Node computes from the request and reads when it writes the head.
 * Set it before the head is written.
 */
export function closeAfterResponse(res: http.ServerResponse): void {
  res.shouldKeepAlive = false;
}

/**
 * Runs `fn` once `res` is the response Node writes on its connection: at once when it is, else
 * when Node gives it the socket, after the responses pipelined before it are finished. Until
 * then `response.socket` is null, and ServerResponse emits 'socket' from assignSocket() before
 * it writes what it buffered in the meantime, so what `fn` writes comes first.
 */
export function whenResponseHasSocket(res: http.ServerResponse, fn: () => void): void {
  if (res.socket !== null) fn();
  else res.once('socket', fn);
}
