// What Node's HTTP server sees of a lane connection once the lane passes it a request.
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { SocketCallsFromNode } from '../node-internals.js';

/** The side of a lane connection a Session works for (connection.ts). */
export interface SessionOwner {
  readonly socket: net.Socket;
  /** Node's read of the Session: more bytes wanted. */
  readWanted(): void;
}

/**
 * A Duplex standing in for the socket. Reads are the bytes the lane pushes; writes go to the real
 * socket (the same Buffers, corked together when Node corks: mapping slices stay uncopied) and
 * complete when the real socket has written them, so Node's 'finish' and the pins it releases on
 * 'close' mean what they mean on a real socket. Timeouts are the real socket's.
 */
export class Session extends Duplex implements SocketCallsFromNode {
  constructor(readonly conn: SessionOwner) {
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
  // net.Socket's documented members that users of req.socket reach (fastify reads the addresses);
  // of these Node's server itself calls only setTimeout (test/unit/node-internals.test.ts)
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
  // Undocumented socket methods Node's HTTP server calls: node-internals.ts (SocketCallsFromNode)
  // says when; test/unit/node-internals.test.ts records every method Node calls on a Session.
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
