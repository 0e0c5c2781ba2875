// Graceful close for an http.Server that does not cut responses short.
//
// Node's server.close() first calls closeIdleConnections(), and Node counts a connection as idle
// as soon as the request is parsed and res.end() was called — even while megabytes of that
// response still sit in the socket's write queue because the client reads slowly. Those
// downloads were destroyed mid-body on SIGTERM. Here close() only stops the listener; a
// connection is closed once it has no response attached and nothing left to write, checked
// until none remain (the caller's grace period may still cut the rest with closeAllConnections()).
import type http from 'node:http';
import type net from 'node:net';
import { replaceConnectionClosing, responseInFlight, stopListening } from './node-internals.js';

export interface Drain {
  /** true once close() was called: responses then carry `Connection: close`. */
  readonly draining: boolean;
}

export interface DrainOptions {
  /**
   * True while something other than Node's HTTP server still owes this socket a response, so that
   * it is not closed as idle: the fast lane's laneBusy (a request it passed to Node is in progress
   * through its stand-in socket, on which Node's response is bound instead).
   */
  busy?(socket: net.Socket): boolean;
}

export function makeDrainable(server: http.Server, opts: DrainOptions = {}): Drain {
  const sockets = new Set<net.Socket>();
  const state = { draining: false };
  const busy = opts.busy ?? (() => false);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  // writableLength is what userspace still has to send.
  const idle = (s: net.Socket) => !responseInFlight(s) && s.writableLength === 0 && !busy(s);
  const reap = () => {
    for (const s of sockets) if (idle(s)) s.destroy();
  };
  replaceConnectionClosing(server, {
    closeIdleConnections: reap,
    // Node's own version only knows connections its HTTP parser holds; those still in the fast
    // lane are not among them.
    closeAllConnections() {
      for (const s of sockets) s.destroy();
    },
    close(cb) {
      state.draining = true;
      stopListening(server, cb);
      reap();
      const timer = setInterval(() => {
        reap();
        if (sockets.size === 0) clearInterval(timer);
      }, 20);
      timer.unref();
    },
  });
  return state;
}
