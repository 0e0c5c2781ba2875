// The fast lane (src/http/lane/) over real sockets: what it answers itself, what it hands to
// Node's HTTP server and that the handover loses no byte, keeps the order of pipelined responses
// and leaves Node's limits in force; timeouts, pins and shutdown of connections still in the lane.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeImage } from '../http/helpers.js';
import { start, request, pinned, until } from '../http/net-helpers.js';

type Server = Awaited<ReturnType<typeof start>>;
const FORMATS = [
  { name: 'small', width: 64, height: 64 },
  { name: 'huge', width: 2048, height: 2048 },
];
let s: Server;
let pixels: Buffer;
let thumbWebp: Buffer;

before(async () => {
  s = await start({ formats: FORMATS });
  const put = await request(s.url, '/v1/sources/a.png', {
    method: 'PUT',
    body: await makeImage('png', 120, 80, 7),
  });
  assert.ok(put.status === 201 || put.status === 200);
  // misses, answered (and decoded, encoded) by the route; later requests are hits
  pixels = (await request(s.url, '/v1/pixels/small/a.png')).body;
  thumbWebp = (await request(s.url, '/v1/thumbnails/small/a.png?type=webp')).body;
  assert.equal(pixels.length, 64 * 64 * 4);
});
after(() => s.done());

interface Res {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** A raw keep-alive connection that reads responses in order. */
class Client {
  private buf = Buffer.alloc(0);
  /** Received after `buf`, joined only when a whole response is there (16 MiB bodies arrive in
   * thousands of chunks: joining at every one would copy quadratically and fall behind the server). */
  private parts: Buffer[] = [];
  private size = 0;
  private wake: (() => void) | undefined;
  closed = false;
  readonly sock: net.Socket;
  constructor(url: string) {
    const u = new URL(url);
    this.sock = net.connect(Number(u.port), u.hostname);
    this.sock.on('data', (d: Buffer) => {
      this.parts.push(d);
      this.size += d.length;
      this.wake?.();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    this.sock.on('error', () => {});
  }
  send(s: string | Buffer): void {
    this.sock.write(s);
  }
  async next(isHead = false, ms = 5000): Promise<Res> {
    const end = Date.now() + ms;
    let need = 0; // bytes of the whole response once its head is known
    for (;;) {
      if (this.size >= need && this.parts.length !== 0) {
        this.buf = Buffer.concat([this.buf, ...this.parts]);
        this.parts = [];
      }
      const i = this.buf.indexOf('\r\n\r\n');
      if (i >= 0) {
        const head = this.buf.subarray(0, i).toString('latin1');
        const headers: Record<string, string> = {};
        for (const line of head.split('\r\n').slice(1)) {
          const c = line.indexOf(':');
          headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
        }
        const status = Number(head.slice(9, 12));
        const len = isHead || status === 304 ? 0 : Number(headers['content-length'] ?? 0);
        need = i + 4 + len;
        if (this.buf.length >= need) {
          const body = this.buf.subarray(i + 4, need);
          this.buf = this.buf.subarray(need);
          this.size = this.buf.length;
          return { status, head, headers, body };
        }
      }
      if (this.closed)
        throw new Error(
          `connection closed; ${this.size} bytes unread: ${JSON.stringify(this.buf.subarray(0, 300).toString('latin1'))}`,
        );
      if (Date.now() > end) throw new Error('no complete response in time');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }
  async waitClosed(ms = 5000): Promise<void> {
    await until(() => this.closed, ms);
  }
  get unread(): number {
    return this.size;
  }
  destroy(): void {
    this.sock.destroy();
  }
}

/** Requests the lane passed to Node one at a time, from /metrics' source of truth. */
function laneDelegated(srv: Server): number {
  return srv.app.pixtable.lane?.delegated ?? 0;
}

/** A server with the lane off holding the same a.png as `s`: what Node alone answers. */
async function startLaneOff(): Promise<Server> {
  const t = await start({ formats: FORMATS, fastLane: false });
  const put = await request(t.url, '/v1/sources/a.png', {
    method: 'PUT',
    body: await makeImage('png', 120, 80, 7),
  });
  assert.ok(put.status === 201 || put.status === 200);
  return t;
}

const GET = (p: string, extra = '') => `GET ${p} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;
const lane = () => s.app.pixtable.laneResponses;

test('hits on a keep-alive connection are answered by the lane: same bytes and headers as Node’s path', async () => {
  const c = new Client(s.url);
  try {
    const l0 = lane();
    c.send(GET('/v1/pixels/small/a.png'));
    const r = await c.next();
    c.send(GET('/v1/thumbnails/small/a.png?type=webp'));
    const t = await c.next();
    c.send(GET('/v1/pixels/small/a.png', `If-None-Match: ${r.headers.etag}\r\n`));
    const nm = await c.next();
    c.send(`HEAD /v1/pixels/small/a.png HTTP/1.1\r\nHost: t\r\n\r\n`);
    const hd = await c.next(true);
    assert.equal(lane() - l0, 4, 'all four answered by the lane');
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(pixels));
    assert.equal(t.status, 200);
    assert.ok(t.body.equals(thumbWebp));
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    assert.equal(hd.status, 200);
    assert.equal(hd.headers['content-length'], String(pixels.length));
    assert.equal(c.unread, 0, 'no body after HEAD or 304');
    assert.equal(r.headers.connection, 'keep-alive');
    assert.match(r.headers['keep-alive'] ?? '', /^timeout=\d+$/);
    assert.ok(Math.abs(Date.parse(r.headers.date ?? '') - Date.now()) < 5000, 'a current Date header');
  } finally {
    c.destroy();
  }
});

test('lane and Node answer with the same headers', async () => {
  const t = await startLaneOff();
  try {
    const cases: [string, string, boolean][] = [
      ['pixels', GET('/v1/pixels/small/a.png'), false],
      ['thumbnail', GET('/v1/thumbnails/small/a.png?type=webp'), false],
      ['negotiated thumbnail', GET('/v1/thumbnails/small/a.png', 'Accept: image/webp\r\n'), false],
      ['HEAD', 'HEAD /v1/pixels/small/a.png HTTP/1.1\r\nHost: t\r\n\r\n', true],
    ];
    for (const [what, req, isHead] of cases) {
      const heads: string[] = [];
      for (const srv of [s, t]) {
        const c = new Client(srv.url);
        try {
          c.send(req); // the first may be a miss (routed); the second is a hit on either server
          await c.next(isHead);
          c.send(req);
          const r = await c.next(isHead);
          heads.push(r.head.replace(/\r\nDate: [^\r]*/, '').replace(/"[0-9a-f]{32}/g, '"<fp>'));
        } finally {
          c.destroy();
        }
      }
      assert.equal(heads[0], heads[1], what);
    }
    assert.equal(t.app.pixtable.laneResponses, 0);
  } finally {
    await t.done();
  }
});

test('pipelined requests: answered in order; what the lane declines is Node’s, one request at a time', async () => {
  const c = new Client(s.url);
  try {
    const l0 = lane();
    c.send(
      GET('/v1/pixels/small/a.png') +
        GET('/v1/pixels/small/missing.png') + // 404 from the route: the connection goes to Node
        GET('/v1/pixels/small/a.png', 'Range: bytes=0-9\r\n') +
        GET('/v1/pixels/small/a.png'),
    );
    const r1 = await c.next();
    const r2 = await c.next();
    const r3 = await c.next();
    const r4 = await c.next();
    assert.equal(r1.status, 200);
    assert.ok(r1.body.equals(pixels));
    assert.equal(r2.status, 404);
    assert.equal(
      (JSON.parse(r2.body.toString()) as { error: { code: string } }).error.code,
      'SOURCE_NOT_FOUND',
    );
    assert.equal(r3.status, 206);
    assert.ok(r3.body.equals(pixels.subarray(0, 10)));
    assert.equal(r4.status, 200);
    assert.ok(r4.body.equals(pixels));
    assert.equal(lane() - l0, 2, 'the first and the last were the lane’s; Node answered the two between');
  } finally {
    c.destroy();
  }
});

test('a request split over two reads, HTTP/1.0, and a GET with a body go to Node intact', async () => {
  const l0 = lane();
  // split: the lane never waits for the rest of a head
  const a = new Client(s.url);
  a.send('GET /v1/pixels/small/a.png HTTP/1.1\r\nHo');
  await new Promise((r) => setTimeout(r, 50));
  a.send('st: t\r\n\r\n');
  const split = await a.next();
  assert.equal(split.status, 200);
  assert.ok(split.body.equals(pixels));
  a.destroy();
  // HTTP/1.0: Node answers and closes
  const b = new Client(s.url);
  b.send('GET /v1/pixels/small/a.png HTTP/1.0\r\nHost: t\r\n\r\n');
  const old = await b.next();
  assert.equal(old.status, 200);
  assert.ok(old.body.equals(pixels));
  await b.waitClosed();
  // a body on a GET: Node reads it as the body, so "hello" is not taken for a request
  const c = new Client(s.url);
  c.send(`${GET('/v1/pixels/small/a.png', 'Content-Length: 5\r\n')}hello${GET('/v1/pixels/small/a.png')}`);
  const withBody = await c.next();
  const after = await c.next();
  assert.equal(withBody.status, 200);
  assert.equal(after.status, 200);
  assert.ok(after.body.equals(pixels));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(c.unread, 0, 'exactly two responses');
  c.destroy();
  assert.equal(lane(), l0, 'none of these was answered by the lane');
});

test('Node’s errors stay Node’s: missing Host is 400, an oversized head 431', async () => {
  const a = new Client(s.url);
  a.send('GET /v1/pixels/small/a.png HTTP/1.1\r\n\r\n');
  assert.equal((await a.next()).status, 400);
  a.destroy();
  const b = new Client(s.url);
  b.send(GET('/v1/pixels/small/a.png', `X-Pad: ${'p'.repeat(20_000)}\r\n`));
  assert.equal((await b.next()).status, 431);
  b.destroy();
});

test('Connection: close is answered, then the connection is closed', async () => {
  const c = new Client(s.url);
  const l0 = lane();
  c.send(GET('/v1/pixels/small/a.png', 'Connection: close\r\n') + GET('/v1/pixels/small/a.png'));
  const r = await c.next();
  assert.equal(r.status, 200);
  assert.equal(r.headers.connection, 'close');
  assert.ok(r.body.equals(pixels));
  await c.waitClosed();
  assert.equal(c.unread, 0, 'nothing after the close');
  assert.equal(lane() - l0, 1);
});

test('an idle keep-alive connection in the lane is closed after the keep-alive timeout', async () => {
  const t = await start({ formats: FORMATS, keepAliveTimeoutMs: 200 });
  try {
    const put = await request(t.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
    assert.ok(put.status === 201 || put.status === 200);
    await request(t.url, '/v1/pixels/small/a.png');
    const c = new Client(t.url);
    const l0 = t.app.pixtable.laneResponses;
    c.send(GET('/v1/pixels/small/a.png'));
    const r = await c.next();
    assert.equal(r.headers['keep-alive'], 'timeout=0');
    assert.equal(t.app.pixtable.laneResponses - l0, 1);
    const t0 = Date.now();
    await c.waitClosed(3000);
    assert.ok(Date.now() - t0 >= 150, 'kept open while within the timeout');
  } finally {
    await t.done();
  }
});

test('a pipelining client that does not read: reading stops, pins are held, then cut and released', async () => {
  const t = await start({ formats: FORMATS, idleTimeoutMs: 1000 });
  try {
    const put = await request(t.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
    assert.ok(put.status === 201 || put.status === 200);
    await request(t.url, '/v1/pixels/huge/a.png'); // decode: the next ones are hits (16 MiB each)
    const c = new Client(t.url);
    // first one whole 16 MiB answer, read: queued for a while without any pipelining, which must
    // leave the connection's pause bookkeeping as it found it
    c.send(GET('/v1/pixels/huge/a.png'));
    assert.equal((await c.next(false, 20_000)).status, 200);
    await until(() => pinned(t) === 0);
    c.sock.pause();
    const l0 = t.app.pixtable.laneResponses;
    c.send(GET('/v1/pixels/huge/a.png').repeat(20));
    await until(() => pinned(t) === 1);
    // more requests while answers are still queued: this chunk is answered, then reading stops
    c.sock.write(GET('/v1/pixels/huge/a.png').repeat(20));
    await new Promise((r) => setTimeout(r, 100));
    const answered = t.app.pixtable.laneResponses - l0;
    assert.ok(answered >= 20 && answered <= 40, `${answered} answered from the first two chunks`);
    c.sock.write(GET('/v1/pixels/huge/a.png').repeat(20));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(t.app.pixtable.laneResponses - l0, answered, 'the third chunk is not read');
    await until(() => pinned(t) === 0, 5000);
    assert.equal(t.app.pixtable.laneResponses - l0, answered, 'nothing more read after the pause');
    c.destroy();
    // the server is fine
    const r = await request(t.url, '/v1/pixels/small/a.png');
    assert.equal(r.status, 200);
  } finally {
    await t.done();
  }
});

test('a slow reader in the lane gets its whole body; the pin is released when it is written', async () => {
  const t = await start({ formats: FORMATS });
  try {
    const put = await request(t.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
    assert.ok(put.status === 201 || put.status === 200);
    const whole = (await request(t.url, '/v1/pixels/huge/a.png')).body;
    const c = new Client(t.url);
    c.sock.pause();
    c.send(GET('/v1/pixels/huge/a.png'));
    await until(() => pinned(t) === 1);
    c.sock.resume();
    const r = await c.next(false, 20_000);
    assert.ok(r.body.equals(whole));
    await until(() => pinned(t) === 0);
    c.send(GET('/v1/pixels/huge/a.png', 'Range: bytes=0-3\r\n'));
    assert.equal((await c.next()).status, 206, 'the connection is still usable');
    c.destroy();
  } finally {
    await t.done();
  }
});

test('shutdown closes idle lane connections and cuts stuck ones after the grace period', async () => {
  const t = await start({ formats: FORMATS, shutdownTimeoutMs: 300 });
  const put = await request(t.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
  assert.ok(put.status === 201 || put.status === 200);
  await request(t.url, '/v1/pixels/huge/a.png');
  const idle = new Client(t.url);
  idle.send(GET('/v1/pixels/small/a.png'));
  await idle.next();
  const stuck = new Client(t.url);
  stuck.sock.pause();
  stuck.send(GET('/v1/pixels/huge/a.png'));
  await until(() => pinned(t) === 1);
  const t0 = Date.now();
  await t.done();
  assert.ok(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0} ms`);
  await idle.waitClosed();
  stuck.sock.resume(); // a paused socket would not notice the reset
  await stuck.waitClosed();
});

test('/metrics counts lane responses, requests passed to Node, and connections left to it', async () => {
  const metric = async (name: string) => {
    const m = (await request(s.url, '/metrics')).body.toString();
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(m)?.[1]);
  };
  const d0 = await metric('pixtable_http_lane_delegated_total');
  const h0 = await metric('pixtable_http_lane_handovers_total');
  const c = new Client(s.url);
  c.send(GET('/v1/pixels/small/a.png') + GET('/v1/pixels/small/a.png', 'Range: bytes=0-0\r\n'));
  assert.equal((await c.next()).status, 200);
  assert.equal((await c.next()).status, 206);
  c.send('GET /v1/pixels/small/a.png HTTP/1.0\r\nHost: t\r\n\r\n'); // outside the grammar: Node's for good
  assert.equal((await c.next()).status, 200);
  c.destroy();
  const lane = await metric('pixtable_http_lane_responses_total');
  assert.equal(lane, s.app.pixtable.laneResponses);
  // the Range request and the three /metrics requests after the first (each is passed to Node,
  // and counted before it reads the counter)
  assert.equal((await metric('pixtable_http_lane_delegated_total')) - d0, 4);
  assert.equal((await metric('pixtable_http_lane_handovers_total')) - h0, 1);
});

test('a connection whose request Node is still working on is not closed as idle at shutdown', async () => {
  const t = await start({ formats: FORMATS, shutdownTimeoutMs: 60_000 });
  const put = await request(t.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
  assert.ok(put.status === 201 || put.status === 200);
  assert.equal((await request(t.url, '/v1/pixels/huge/a.png', { method: 'HEAD' })).status, 200);
  const c = new Client(t.url);
  // not encoded yet: the lane passes it to Node, which encodes 2048x2048 AVIF (seconds) before
  // writing anything, so the socket itself looks idle meanwhile
  c.send(GET('/v1/thumbnails/huge/a.png?type=avif'));
  await until(() => laneDelegated(t) === 1);
  const stopped = t.done();
  const r = await c.next(false, 60_000);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'image/avif');
  await stopped;
  await c.waitClosed(); // idle once answered: closed by the drain
});

test('after a request with a body the connection is Node’s for good, and still answers right', async () => {
  const c = new Client(s.url);
  try {
    c.send(GET('/v1/pixels/small/missing.png')); // passed to Node one request
    assert.equal((await c.next()).status, 404);
    const body = await makeImage('png', 90, 60, 11);
    c.send(`PUT /v1/sources/b.png HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n`);
    c.send(body);
    const put = await c.next();
    assert.ok(put.status === 201 || put.status === 200, String(put.status));
    const l0 = lane();
    c.send(GET('/v1/pixels/small/a.png'));
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(pixels));
    assert.equal(lane(), l0, 'forwarded to Node, not the lane’s');
  } finally {
    c.destroy();
  }
});

test('a repeated or conflicting Content-Length or Transfer-Encoding on a hit: the same answer as with the lane off', async () => {
  const off = await startLaneOff();
  try {
    const hit = '/v1/pixels/small/a.png';
    for (const srv of [s, off]) assert.equal((await request(srv.url, hit)).status, 200); // remembered
    const cases = [
      'Content-Length: 0\r\nContent-Length: 0\r\n', // the finding: lane 200, lane off 400
      'Content-Length: 0\r\nAccept: */*\r\ncontent-length: 0\r\n',
      'Content-Length: 0\r\nContent-Length: 5\r\n',
      'Content-Length: 0, 0\r\n',
      'Content-Length: 0\r\nTransfer-Encoding: chunked\r\n',
      'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n',
    ];
    for (const extra of cases) {
      const statuses: number[] = [];
      const l0 = lane();
      for (const srv of [s, off]) {
        const c = new Client(srv.url);
        try {
          c.send(GET(hit, extra));
          statuses.push((await c.next()).status);
        } finally {
          c.destroy();
        }
      }
      assert.equal(lane(), l0, `not the lane's: ${JSON.stringify(extra)}`);
      assert.deepEqual(statuses, [400, 400], JSON.stringify(extra));
    }
    // and the accepted forms stay the lane's
    const l0 = lane();
    const c = new Client(s.url);
    try {
      c.send(GET(hit, 'Content-Length: 0\r\n') + GET(hit, 'Content-Length:\t0  \r\n'));
      assert.equal((await c.next()).status, 200);
      assert.equal((await c.next()).status, 200);
    } finally {
      c.destroy();
    }
    assert.equal(lane() - l0, 2);
  } finally {
    await off.done();
  }
});
