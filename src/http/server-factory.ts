// The HTTP server under fastify (its serverFactory): Node's server with deadlines that mean what
// they say, graceful draining (drain.ts), and the two places a hit is answered before fastify —
// the lane on the socket (lane/) and the shortcut in Node's request listener (shortcut.ts).
import http from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { ServerConfig } from '../config/env.js';
import { PixtableError } from '../errors.js';
import { makeDrainable } from './drain.js';
import { writeResponseError } from './errors.js';
import { declinedByLane, declinedNote, installLane, laneBusy, type LaneStats } from './lane/index.js';
import { closeAfterResponse, whenResponseHasSocket } from './node-internals.js';
import type { Metrics } from './metrics.js';
import type { Shortcut } from './shortcut.js';
import { passTarget, type Target } from './target.js';

export interface ServerFactoryOptions {
  config: ServerConfig;
  shortcut: Shortcut;
  metrics: Metrics;
}

export class ServerFactory {
  /** The lane's connection counts once the server exists; undefined while the lane is off. */
  lane: LaneStats | undefined;

  constructor(private readonly o: ServerFactoryOptions) {}

  /** fastify's serverFactory; `options.logger` is the app's logger. */
  readonly create = (handler: http.RequestListener, options: Record<string, unknown>): http.Server => {
    const { config, shortcut, metrics } = this.o;
    const log = options.logger as FastifyBaseLogger;
    // Our own server so Node checks header/request deadlines often enough for them to mean
    // something (its default sweep runs every 30 s, which would let a 10 s limit last 40 s).
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (drain.draining) closeAfterResponse(res);
      // The shortcut already declined what the lane passed on: only its parse goes further.
      // Everything else meets the shortcut here, before fastify builds request/reply objects
      // and runs its router.
      if (declinedByLane(req)) passTarget(req, declinedNote(req) as Target | undefined);
      else if (shortcut.node(req, res)) return;
      handler(req, res);
    };
    const server = http.createServer(
      {
        requestTimeout: config.requestTimeoutMs,
        headersTimeout: config.headersTimeoutMs,
        keepAliveTimeout: config.keepAliveTimeoutMs,
        connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(config.headersTimeoutMs / 4))),
      },
      onRequest,
    );
    // `Expect: 100-continue` (docs/http.md, "Expect: 100-continue"). Node's own 100 for a request
    // pipelined behind an unfinished response is buffered in that response, whose head Node
    // later puts in front of the buffer (Node 20 and 24): the 100 then lands between head and body and
    // the client reads it as body. Ours is written when the response's turn on the connection
    // comes and before its handler runs, so it precedes every byte of the response.
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) =>
      whenResponseHasSocket(res, () => {
        res.writeContinue();
        onRequest(req, res);
      }),
    );
    // Node's own answer to another expectation is an empty 417; ours is the registry's error.
    server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const e = new PixtableError('EXPECTATION_FAILED', `got Expect: ${req.headers.expect ?? ''}`);
      writeResponseError(res, e.code, e.message);
    });
    const drain = makeDrainable(server, { busy: laneBusy });
    // Socket inactivity: also ends responses to clients that stopped reading (releasing pins).
    server.setTimeout(config.idleTimeoutMs);
    // Hits straight from the socket, before Node's HTTP machinery. Requests the lane does not
    // answer reach the listener above one at a time, or with the connection when they are
    // outside the lane's grammar.
    if (config.fastLane) {
      const lane = installLane(server, {
        handle: shortcut.lane,
        open: () => !drain.draining,
        keepAliveTimeoutMs: config.keepAliveTimeoutMs,
        idleTimeoutMs: config.idleTimeoutMs,
        maxHeaderBytes: http.maxHeaderSize,
        requestIds: config.logRequests,
        onError: (err) => log.error({ err }, 'fast lane: answering a request failed'),
      });
      this.lane = lane;
      metrics.attachLane({
        responses: () => shortcut.laneResponses,
        delegated: () => lane.delegated,
        handovers: () => lane.handovers,
      });
    }
    return server;
  };
}
