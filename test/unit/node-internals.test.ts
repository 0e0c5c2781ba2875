// The Node.js internals the server relies on (src/http/node-internals.ts), each checked against the
// running Node with a real http.Server on 127.0.0.1. A failure names the internal and the Node
// version: a release changed something the fast lane or graceful close depends on. `npm test` runs
// this on the project's Node; .ci/node24 runs it on Node 24.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  closeAfterResponse,
  handOver,
  idleSocketFd,
  readInto,
  replaceConnectionClosing,
  responseInFlight,
  stopListening,
  takeConnectionHandler,
  whenResponseHasSocket,
} from '../../src/http/node-internals.js';
import { installLane } from '../../src/http/lane/index.js';
import { native } from '../../src/native/addon.js';

const NODE = `Node ${process.version}`;
const GET = (p: string, extra = '') => `GET ${p} HTTP/1.1\r\nHost: h\r\n${extra}\r\n`;

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

function shut(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw client: everything received, as latin1. */
class Raw {
  readonly sock: net.Socket;
  private got = '';
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;
  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('data', (d: Buffer) => {
      this.got += d.toString('latin1');
      this.wake?.();
    });
    this.sock.on('error', () => {});
    this.closed = new Promise((r) => this.sock.on('close', () => r()));
  }
  get text(): string {
    return this.got;
  }
  async until(pred: (text: string) => boolean, what: string, ms = 3000): Promise<string> {
    const end = Date.now() + ms;
    while (!pred(this.got)) {
      if (this.sock.destroyed || Date.now() > end)
        throw new Error(`${what}: not received (${NODE}); got ${JSON.stringify(this.got.slice(0, 300))}`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 20);
      });
    }
    return this.got;
  }
  async closedWithin(ms: number): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)]);
  }
}

/** The source file of the function `depth` frames above the one creating `stack`. */
function callerFile(stack: string | undefined, depth: number): string {
  const line = (stack ?? '').split('\n')[depth + 1] ?? '';
  return /\(?(node:[\w/]+)/.exec(line)?.[1] ?? line.trim();
}

test('socket._httpMessage: the response Node has bound to a socket, until its last byte is written', async () => {
  const BODY = 32 * 1024 * 1024; // more than loopback buffers take: most of it stays queued
  let socket: Duplex | undefined;
  let response: http.ServerResponse | undefined;
  let ended!: () => void;
  const endCalled = new Promise<void>((r) => (ended = r));
  const atConnect: boolean[] = [];
  const server = http.createServer((req, res) => {
    socket = req.socket;
    response = res;
    res.end(Buffer.alloc(BODY));
    ended();
  });
  server.on('connection', (s: net.Socket) => atConnect.push(responseInFlight(s)));
  const port = await listen(server);
  const c = net.connect(port, '127.0.0.1');
  try {
    c.pause(); // a slow reader
    c.write(GET('/big'));
    await endCalled;
    assert.ok(socket && response);
    const finished = new Promise<void>((r) => response!.once('finish', () => setImmediate(r)));
    assert.deepEqual(atConnect, [false], `socket._httpMessage is set on a new connection (${NODE})`);
    assert.ok(socket.writableLength > 0, 'the body is still queued in the socket (test setup)');
    assert.equal(
      responseInFlight(socket),
      true,
      `socket._httpMessage is not set after res.end() while the body is still queued (${NODE}): ` +
        "graceful close (drain.ts) would cut such downloads, and the lane's busy() take the connection for idle",
    );
    let received = 0;
    c.on('data', (d: Buffer) => (received += d.length));
    c.resume();
    await finished;
    assert.ok(received > 0);
    assert.equal(
      responseInFlight(socket),
      false,
      `socket._httpMessage is still set after the response's 'finish' (${NODE}): ` +
        'a draining server would never close the connection',
    );
  } finally {
    c.destroy();
    await shut(server);
  }
});

test('socket._handle.fd and writeQueueSize: the descriptor is given only while nothing is queued, and bytes sent on it follow Node’s', async () => {
  let serverSide: net.Socket | undefined;
  const server = net.createServer((s) => (serverSide = s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const c = net.connect(port, '127.0.0.1');
  let got = Buffer.alloc(0);
  c.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
  try {
    await new Promise<void>((r) => c.once('connect', r));
    while (serverSide === undefined) await sleep(5);
    const s = serverSide;
    const fd = idleSocketFd(s);
    assert.ok(
      fd >= 0,
      `socket._handle.fd is not a descriptor (${NODE}): the lane's sendParts cannot be used`,
    );
    assert.ok(fs.fstatSync(fd).isSocket(), `socket._handle.fd is not the socket's descriptor (${NODE})`);
    // Node's write first, then ours on the descriptor: the peer reads them in that order
    await new Promise<void>((r) => s.write('node;', () => r()));
    assert.equal(idleSocketFd(s), fd, 'idle again once Node’s write is done');
    assert.equal(native.sendParts(fd, Buffer.from('a'), Buffer.from('b'), Buffer.from('c')), 3);
    assert.equal(native.sendParts(fd, Buffer.from('d'), Buffer.alloc(0), Buffer.alloc(0)), 1);
    while (got.length < 9) await sleep(5);
    assert.equal(got.toString(), 'node;abcd');
    s.cork();
    assert.equal(idleSocketFd(s), -1, 'a corked socket holds writes: not idle');
    s.uncork();
    // a reader that does not read: Node's write stays queued, in the stream or in libuv
    c.pause();
    s.write(Buffer.alloc(32 * 1024 * 1024));
    assert.ok(s.writableLength > 0, 'the write is still queued (test setup)');
    assert.equal(
      idleSocketFd(s),
      -1,
      `a socket with a queued write is idle (${NODE}): lane bytes would overtake it`,
    );
    c.resume();
    await new Promise<void>((r) => s.write(Buffer.alloc(0), () => r()));
    s.destroy();
    assert.equal(
      idleSocketFd(s),
      -1,
      `a destroyed socket still gives a descriptor (${NODE}), which may be reused`,
    );
  } finally {
    c.destroy();
    await new Promise((r) => server.close(r));
  }
});

test("http.Server's own connection handler is the first 'connection' listener of a new server", async () => {
  const server = http.createServer((req, res) => res.end(`node saw ${req.url ?? ''}`));
  const handler = takeConnectionHandler(server);
  assert.ok(
    handler,
    `a new http.Server has no 'connection' listener (${NODE}): installLane cannot take Node's connection handler`,
  );
  assert.equal(server.listenerCount('connection'), 0, 'taking it removes it');
  let pass = false;
  server.on('connection', (s: net.Socket) => {
    if (pass) handler.call(server, s);
    else setTimeout(() => s.destroy(), 300);
  });
  const port = await listen(server);
  try {
    const without = new Raw(port);
    without.sock.write(GET('/a'));
    await without.closed;
    assert.equal(
      without.text,
      '',
      `http.Server answers with its first 'connection' listener removed (${NODE}): it serves connections ` +
        'some other way, and the lane would not see them first',
    );
    pass = true;
    const via = new Raw(port);
    via.sock.write(GET('/b', 'Connection: close\r\n'));
    await via.closed;
    assert.match(
      via.text,
      /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nnode saw \/b$/,
      `the first 'connection' listener of a new http.Server is not Node's connection handler (${NODE})`,
    );
  } finally {
    await shut(server);
  }
});

test("Node's connection handler parses bytes read before it got the socket, emitted as 'data'", async () => {
  const server = http.createServer((req, res) => res.end(`node saw ${req.url ?? ''}`));
  const handler = takeConnectionHandler(server)!;
  // as the lane does: the first read is someone else's, then the socket is Node's
  server.on('connection', (s: net.Socket) =>
    s.once('data', (chunk: Buffer) => handOver(server, handler, s, chunk)),
  );
  const port = await listen(server);
  try {
    const c = new Raw(port);
    c.sock.write(`${GET('/a')}GET /b HTTP/1.1\r\nHo`); // a whole request and half of the next
    await sleep(50);
    c.sock.write('st: h\r\nConnection: close\r\n\r\n'); // read by Node's parser itself
    await c.closed;
    const bodies = [...c.text.matchAll(/\r\n\r\n(node saw \/\w)/g)].map((m) => m[1]);
    assert.deepEqual(
      bodies,
      ['node saw /a', 'node saw /b'],
      `bytes handed to Node's connection handler as an emitted 'data' event were not parsed ahead of ` +
        `its own reads (${NODE}): the lane's handover would lose or reorder requests; got ${JSON.stringify(c.text)}`,
    );
  } finally {
    await shut(server);
  }
});

test('readInto (net.Socket kBuffer/kBufferCb + _handle.useUserBuffer): reads land in one buffer, pause holds them, and Node’s parser still takes the socket over', async () => {
  const server = http.createServer((req, res) => res.end(`node saw ${req.url ?? ''}`));
  const handler = takeConnectionHandler(server)!;
  const shared = Buffer.alloc(64 * 1024);
  const reads: string[] = [];
  let dataEvents = 0;
  let ended = false;
  let socket: net.Socket | undefined;
  server.on('connection', (s: net.Socket) => {
    socket = s;
    s.on('data', () => dataEvents++);
    s.on('end', () => (ended = true));
    const took = readInto(s, shared, (n, buf) => {
      assert.equal(buf, shared, 'the read landed in the buffer given');
      const text = buf.toString('latin1', 0, n);
      reads.push(text);
      // as the lane leaves a connection: the rest is Node's (bytes copied: the buffer is reused)
      if (text.startsWith('GET')) handOver(server, handler, s, Buffer.from(buf.subarray(0, n)));
    });
    assert.equal(
      took,
      true,
      `readInto found no kBuffer/kBufferCb/useUserBuffer on an accepted socket (${NODE})`,
    );
    assert.equal(
      readInto(s, shared, () => {}),
      false,
      'a second readInto on the same socket is refused',
    );
  });
  const port = await listen(server);
  try {
    const c = new Raw(port);
    c.sock.write('hello');
    const until = async (pred: () => boolean, what: string) => {
      for (let i = 0; i < 200 && !pred(); i++) await sleep(10);
      assert.ok(pred(), `${what} (${NODE})`);
    };
    await until(() => reads.length === 1, 'the first read did not reach onRead');
    assert.equal(reads[0], 'hello');
    assert.equal(dataEvents, 0, `a read through readInto also emitted 'data' (${NODE})`);
    socket!.pause();
    c.sock.write('paused');
    await sleep(100);
    assert.equal(reads.length, 1, `pause() did not stop reads into the user buffer (${NODE})`);
    socket!.resume();
    await until(() => reads.length === 2, 'resume() did not start reading again');
    assert.equal(reads[1], 'paused');
    // Node's HTTP handler takes the socket (its parser consumes the handle) and answers both the
    // request handed to it and the next one, which it reads itself
    c.sock.write(GET('/a'));
    await c.until((t) => t.includes('node saw /a'), 'Node answered the handed-over request');
    c.sock.write(GET('/b', 'Connection: close\r\n'));
    await c.closed;
    assert.deepEqual(
      [...c.text.matchAll(/\r\n\r\n(node saw \/\w)/g)].map((m) => m[1]),
      ['node saw /a', 'node saw /b'],
      `Node's HTTP server did not serve a socket reading into a user buffer (${NODE})`,
    );
    assert.equal(reads.length, 3, 'after the handover the parser reads the handle, not onRead');
    const c2 = new Raw(port);
    c2.sock.end('bye');
    await until(() => ended, "the peer's end did not emit 'end' on a readInto socket");
    socket!.destroy(); // never Node's: server.close() would wait for it
  } finally {
    await shut(server);
  }
});

test("Node's HTTP server calls socket._unrefTimer() on the sockets whose handle its parser reads", async () => {
  const proto = net.Socket.prototype as net.Socket & { _unrefTimer?: (this: net.Socket) => void };
  const original = proto._unrefTimer;
  assert.equal(typeof original, 'function', `net.Socket has no _unrefTimer() any more (${NODE})`);
  let fromHttp = 0;
  proto._unrefTimer = function (this: net.Socket) {
    if (callerFile(new Error().stack, 1) === 'node:_http_server') fromHttp++;
    original!.call(this);
  };
  const server = http.createServer((_req, res) => res.end('ok'));
  try {
    const port = await listen(server);
    const c = new Raw(port);
    c.sock.write(GET('/a', 'Connection: close\r\n'));
    await c.closed;
    assert.match(c.text, /\r\n\r\nok$/);
  } finally {
    proto._unrefTimer = original;
    await shut(server);
  }
  assert.ok(
    fromHttp > 0,
    `Node's HTTP server no longer calls socket._unrefTimer() (${NODE}): the Session's no-op _unrefTimer ` +
      '(src/http/lane/session.ts) is dead, or Node now restarts socket timers under a name the Session lacks',
  );
});

// ---------- the lane's stand-in socket, as Node's HTTP server uses it ----------

/** stream.Duplex and EventEmitter, as documented: a Session is a real Duplex. */
const STREAM_API = new Set([
  'addListener',
  'emit',
  'eventNames',
  'getMaxListeners',
  'listenerCount',
  'listeners',
  'off',
  'on',
  'once',
  'prependListener',
  'prependOnceListener',
  'rawListeners',
  'removeAllListeners',
  'removeListener',
  'setMaxListeners',
  'cork',
  'uncork',
  'write',
  'end',
  'destroy',
  'setDefaultEncoding',
  'pause',
  'resume',
  'isPaused',
  'pipe',
  'unpipe',
  'read',
  'unshift',
  'push',
  'setEncoding',
  'wrap',
  'allowHalfOpen',
  'closed',
  'destroyed',
  'errored',
  'readable',
  'readableAborted',
  'readableDidRead',
  'readableEncoding',
  'readableEnded',
  'readableFlowing',
  'readableHighWaterMark',
  'readableLength',
  'readableObjectMode',
  'writable',
  'writableAborted',
  'writableCorked',
  'writableEnded',
  'writableFinished',
  'writableHighWaterMark',
  'writableLength',
  'writableNeedDrain',
  'writableObjectMode',
]);
/** Stream state Node's HTTP code reads on any socket; every Duplex has it. */
const STREAM_STATE = new Set(['_readableState', '_writableState']);
/** Set on its socket by Node's HTTP server itself, and read back (also before being set). */
const SET_BY_NODE = new Set([
  'server',
  'parser',
  '_paused',
  '_httpMessage',
  'on',
  'addListener',
  'prependListener',
  'setEncoding',
]);
/**
 * net.Socket members Node reads that a Session lacks on purpose: without `_handle` Node's parser is
 * fed through 'data' instead of consuming a native handle; `_hadError` unset reads as no error.
 */
const ABSENT_ON_PURPOSE = new Set(['_handle', '_hadError']);

test('Node’s HTTP server uses only known members of the lane’s stand-in socket (Session)', async () => {
  /** `kind name` → the Node modules that used it; kind: fn, prop, or absent (not on a Session). */
  const uses = new Map<string, Set<string>>();
  let own: Set<string> | undefined;
  const traps: ProxyHandler<Duplex> = {
    get(target, key) {
      const v: unknown = Reflect.get(target, key, target);
      if (typeof key === 'string') {
        const from = callerFile(new Error().stack, 1);
        if (from.startsWith('node:_http_')) {
          const kind = !(key in target) ? 'absent' : typeof v === 'function' ? 'fn' : 'prop';
          const k = `${kind} ${key}`;
          uses.set(k, (uses.get(k) ?? new Set()).add(from));
        }
      }
      return v;
    },
  };
  const listening: Record<string, number>[] = [];
  const server = http.createServer((req, res) => {
    const s: Duplex = req.socket;
    if (!(s instanceof net.Socket)) {
      own ??= new Set(Object.getOwnPropertyNames(Object.getPrototypeOf(s) as object));
      listening.push({
        data: s.listenerCount('data'),
        end: s.listenerCount('end'),
        timeout: s.listenerCount('timeout'),
      });
    }
    if (req.url === '/slow') {
      res.write('x'.repeat(100));
      setTimeout(() => res.end('y'), 50);
    } else if (req.url === '/big') res.end(Buffer.alloc(4 * 1024 * 1024, 0x62));
    else if (req.method === 'POST') {
      req.resume();
      req.on('end', () => res.end('posted'));
    } else res.end(`ok ${req.url ?? ''}`);
  });
  // Node's socket timeouts, which the lane relays to Node as the Session's 'timeout'
  server.setTimeout(300);
  server.keepAliveTimeout = 200; // Node adds a second to it
  // Node's handler gets each Session through a recording Proxy; real sockets as they are
  const node = takeConnectionHandler(server)!;
  server.on('connection', function (this: http.Server, s: Duplex) {
    node.call(this, s instanceof net.Socket ? s : new Proxy(s, traps));
  });
  installLane(server, {
    handle: () => false, // every request is passed to Node through a Session
    open: () => true,
    keepAliveTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    maxHeaderBytes: http.maxHeaderSize,
    requestIds: false,
    onError: (e) => assert.fail(String(e)),
  });
  const port = await listen(server);
  const POST = 'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc'; // after it: forwarding
  try {
    // one request at a time, a slow and a large response, then Connection: close
    const a = new Raw(port);
    a.sock.write(GET('/a') + GET('/slow') + GET('/big') + GET('/last', 'Connection: close\r\n'));
    assert.ok(await a.closedWithin(5000), 'closed after Connection: close');
    const order = [
      'ok /a',
      `${'x'.repeat(100)}\r\n`,
      'b'.repeat(4 * 1024 * 1024),
      'Connection: close',
      'ok /last',
    ];
    const at = order.map((part) => a.text.indexOf(part));
    assert.ok(
      at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1]!)),
      `four responses in order: ${JSON.stringify(at)}`,
    );
    assert.ok(a.text.endsWith('ok /last'));
    // forwarded to Node for good after a body; a request Node refuses (400)
    const b = new Raw(port);
    b.sock.write(GET('/a') + POST + GET('/d', 'Connection: close\r\n'));
    assert.ok(await b.closedWithin(5000));
    assert.match(b.text, /ok \/a[\s\S]*posted[\s\S]*ok \/d$/);
    const c = new Raw(port);
    c.sock.write(GET('/a') + POST);
    await c.until((t) => t.endsWith('posted'), 'the upload’s response');
    c.sock.write('GET /\u0001 HTTP/1.1\r\n\r\n');
    assert.ok(await c.closedWithin(5000));
    assert.match(c.text, /posted[\s\S]*HTTP\/1\.1 400 /);
    // a forwarded connection that stalls mid-head: Node's timeout handler closes it
    const d = new Raw(port);
    d.sock.write(`${GET('/a')}${POST}GET /x HTTP/1.1\r\nHo`);
    assert.ok(
      await d.closedWithin(4000),
      `a stalled connection is closed by Node's socket timeout (${NODE})`,
    );
    // the client half-closes while Node is still answering: the lane relays it as the Session's end
    const e = new Raw(port);
    e.sock.write(GET('/slow'));
    await sleep(10);
    e.sock.end();
    assert.ok(await e.closedWithin(3000));
    assert.match(e.text, /^HTTP\/1\.1 200 OK\r\n[^]*x{100}/); // Node ends the connection at the FIN
  } finally {
    await shut(server);
  }
  assert.ok(own, 'requests reached Node through a Session');
  const unknown: string[] = [];
  for (const [k, from] of uses) {
    const [kind, name] = k.split(' ') as [string, string];
    const known =
      kind === 'absent'
        ? ABSENT_ON_PURPOSE.has(name) || SET_BY_NODE.has(name)
        : own.has(name) || STREAM_API.has(name) || STREAM_STATE.has(name) || SET_BY_NODE.has(name);
    if (!known)
      unknown.push(`${name} (${kind === 'absent' ? 'not on a Session' : kind}; ${[...from].join(', ')})`);
  }
  assert.deepEqual(
    unknown,
    [],
    `${NODE}'s HTTP server uses socket members the lane's stand-in socket (src/http/lane/session.ts) does ` +
      'not provide on purpose: see what they do on a net.Socket, give the Session the same, then list them here',
  );
  assert.ok(
    uses.has('fn destroySoon'),
    `${NODE}'s HTTP server no longer calls socket.destroySoon() after a closing response: ` +
      "see what it does instead, and whether the Session's destroySoon (src/http/lane/session.ts) is dead",
  );
  assert.ok(uses.has('fn setTimeout'), `${NODE}'s HTTP server no longer sets its socket's timeout`);
  // the lane relays the real socket's reads, end and timeout to Node as events of the Session
  for (const l of listening)
    for (const [event, n] of Object.entries(l))
      assert.ok(
        n > 0,
        `${NODE}'s HTTP server does not listen to '${event}' on its socket: the lane relays the real ` +
          "socket's data, end and timeout to Node as the Session's events",
      );
});

// ---------- closing ----------

test("net.Server's close() on an http.Server stops accepting and leaves open connections alone", async () => {
  const server = http.createServer((req, res) => res.end(`ok ${req.url ?? ''}`));
  const port = await listen(server);
  const c = new Raw(port);
  try {
    c.sock.write(GET('/a'));
    await c.until((t) => t.endsWith('ok /a'), 'the first response');
    let closed = false;
    stopListening(server, () => (closed = true));
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    assert.ok(refused, `stopListening() still accepts connections (${NODE})`);
    await sleep(100);
    assert.equal(
      c.sock.destroyed,
      false,
      `net.Server.prototype.close on an http.Server closed an idle keep-alive connection (${NODE}): ` +
        'graceful close (drain.ts) would cut in-flight downloads',
    );
    c.sock.write(GET('/b'));
    await c.until((t) => t.endsWith('ok /b'), 'a later request on the open connection');
    assert.equal(closed, false, 'the close callback waits for the open connection');
    c.sock.destroy();
    const t0 = Date.now();
    while (!closed && Date.now() - t0 < 3000) await sleep(10);
    assert.ok(closed, `stopListening()'s callback did not run once the last connection closed (${NODE})`);
  } finally {
    c.sock.destroy();
  }
});

test("an http.Server's close methods are taken from the instance, also by Node's Symbol.asyncDispose", async () => {
  const server = http.createServer((_req, res) => res.end('ok'));
  const calls: string[] = [];
  replaceConnectionClosing(server, {
    close(cb) {
      calls.push('close');
      stopListening(server, cb);
    },
    closeIdleConnections: () => calls.push('idle'),
    closeAllConnections: () => calls.push('all'),
  });
  const port = await listen(server);
  const c = new Raw(port);
  try {
    c.sock.write(GET('/a'));
    await c.until((t) => t.endsWith('ok'), 'the response');
    const disposed = server[Symbol.asyncDispose]();
    assert.deepEqual(
      calls,
      ['close'],
      `http.Server's Symbol.asyncDispose does not close through server.close (${NODE}): ` +
        'it would bypass graceful close (drain.ts)',
    );
    await sleep(50);
    assert.equal(c.sock.destroyed, false, 'the idle connection is left to the replacement');
    server.closeIdleConnections();
    server.closeAllConnections();
    assert.deepEqual(calls, ['close', 'idle', 'all']);
    c.sock.destroy();
    await disposed;
  } finally {
    c.sock.destroy();
  }
});

test('res.shouldKeepAlive = false: Node closes the connection after that response', async () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/close') closeAfterResponse(res);
    res.end(`ok ${req.url ?? ''}`);
  });
  const port = await listen(server);
  const c = new Raw(port);
  try {
    c.sock.write(GET('/keep'));
    await c.until((t) => t.endsWith('ok /keep'), 'the first response');
    assert.match(c.text, /\r\nConnection: keep-alive\r\n/i);
    c.sock.write(GET('/close'));
    assert.ok(
      await c.closedWithin(3000),
      `setting res.shouldKeepAlive = false did not close the connection (${NODE}): draining servers ` +
        'would keep connections open',
    );
    const second = c.text.slice(c.text.indexOf('ok /keep') + 8);
    assert.match(second, /\r\nConnection: close\r\n[\s\S]*ok \/close$/i);
  } finally {
    await shut(server);
  }
});

test("a pipelined response: no socket until the one before it finished, then 'socket' before its buffered bytes", async () => {
  let release: (() => void) | undefined;
  const order: string[] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/first') {
      release = () => res.end('first');
      return;
    }
    order.push(`handler, socket ${res.socket === null ? 'none' : 'bound'}`);
    whenResponseHasSocket(res, () => {
      order.push('fn');
      res.socket!.write('MARK'); // straight to the socket: must precede the head buffered below
    });
    res.writeHead(200, { 'Content-Length': '6' });
    res.end(Buffer.from('second')); // a Buffer: Node buffers the head apart from it
  });
  const port = await listen(server);
  const c = new Raw(port);
  try {
    c.sock.write(GET('/first') + GET('/second'));
    await sleep(100);
    assert.deepEqual(order, ['handler, socket none'], `a queued response has res.socket === null (${NODE})`);
    release!();
    await c.until((t) => t.endsWith('second'), 'both responses');
    assert.deepEqual(order, ['handler, socket none', 'fn']);
    const rest = c.text.slice(c.text.indexOf('first') + 5);
    assert.ok(
      rest.startsWith('MARKHTTP/1.1 200 OK\r\n'),
      `what 'socket' writes comes right after the first response, before the second (${NODE}): ` +
        `the 100 Continue of a pipelined request would be misplaced; got ${JSON.stringify(rest.slice(0, 40))}`,
    );
    // and a response that has its socket runs fn at once
    let now = false;
    const s2 = http.createServer((_req, res) => {
      whenResponseHasSocket(res, () => (now = true));
      assert.ok(now, 'at once when the response is bound');
      res.end('x');
    });
    const p2 = await listen(s2);
    const d = new Raw(p2);
    d.sock.write(GET('/x'));
    await d.until((t) => t.endsWith('x'), 'the response');
    d.sock.destroy();
    await shut(s2);
  } finally {
    c.sock.destroy();
    await shut(server);
  }
});

// ---------- nothing else reaches for them ----------

test('only node-internals.ts names Node internals (and the Session the methods Node calls on it)', () => {
  const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src');
  const INTERNAL = /_httpMessage|listeners\('connection'\)|_unrefTimer|destroySoon|Server\.prototype\./;
  const allowed: Record<string, RegExp> = {
    'http/node-internals.ts': /./,
    // its definitions of the methods Node calls (SocketCallsFromNode)
    'http/lane/session.ts': /^\s*(_unrefTimer|destroySoon)\(\): void \{/,
  };
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const rel = path.relative(src, p).split(path.sep).join('/');
        fs.readFileSync(p, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (INTERNAL.test(line) && !line.trimStart().startsWith('//') && !allowed[rel]?.test(line))
              found.push(`src/${rel}:${i + 1}: ${line.trim()}`);
          });
      }
    }
  };
  walk(src);
  assert.deepEqual(found, [], 'Node internals outside src/http/node-internals.ts');
});
