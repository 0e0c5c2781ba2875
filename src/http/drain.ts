// Graceful close for an http.Server that does not cut responses short.
//
// Node's server.close() first calls closeIdleConnections(), and Node counts a connection as idle
// as soon as the request is parsed and res.end() was called — even while megabytes of that
// response still sit in the socket's write queue because the client reads slowly. Those
// downloads were destroyed mid-body on SIGTERM. Here close() only stops the listener; a
// connection is closed once it has no response attached and nothing left to write, checked
// until none remain (the caller's grace period may still cut the rest with closeAllConnections()).
import type http from 'node:http';
import net from 'node:net';
import { laneBusy } from './lane.js';

export interface Drain {
  /** true once close() was called: responses then carry `Connection: close`. */
  readonly draining: boolean;
}

export function makeDrainable(server: http.Server): Drain {
  const sockets = new Set<net.Socket>();
  const state = { draining: false };
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  // `_httpMessage` is the response currently bound to the socket (Node sets it for the life of a
  // response and clears it after 'finish'); writableLength is what userspace still has to send.
  // laneBusy: a request the fast lane passed to Node is in progress on the socket (lane.ts).
  const idle = (s: net.Socket) =>
    (s as net.Socket & { _httpMessage?: unknown })._httpMessage == null &&
    s.writableLength === 0 &&
    !laneBusy(s);
  const reap = () => {
    for (const s of sockets) if (idle(s)) s.destroy();
  };
  server.closeIdleConnections = reap;
  // Node's own version only knows connections its HTTP parser holds; those still in the fast lane
  // (lane.ts) are not among them.
  server.closeAllConnections = () => {
    for (const s of sockets) s.destroy();
  };
  server.close = function close(cb?: (err?: Error) => void) {
    state.draining = true;
    net.Server.prototype.close.call(server, cb);
    reap();
    const timer = setInterval(() => {
      reap();
      if (sockets.size === 0) clearInterval(timer);
    }, 20);
    timer.unref();
    return server;
  } as typeof server.close;
  return state;
}
