// `Expect: 100-continue` on pipelined connections, over real sockets, with the fast lane on and
// off (docs/http.md, "Expect: 100-continue"). Node 20's automatic `100 Continue` for a request
// pipelined behind an unfinished response was written between that request's response head and
// its body; here every byte the server sends is parsed strictly, response by response, and
// compared with what each response must be.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeImage } from '../http/helpers.js';
import { start, request } from '../http/net-helpers.js';

type Server = Awaited<ReturnType<typeof start>>;
// `huge` makes every upload's decode take a while: what is pipelined behind it waits
const FORMATS = [
  { name: 'small', width: 64, height: 64 },
  { name: 'huge', width: 2048, height: 2048 },
];
const servers: Record<'lane' | 'node', Server> = {} as Record<'lane' | 'node', Server>;
let pixels: Buffer;
let upload: Buffer;

before(async () => {
  upload = await makeImage('png', 120, 80, 7);
  for (const [name, fastLane] of [
    ['lane', true],
    ['node', false],
  ] as const) {
    const s = await start({ formats: FORMATS, fastLane });
    assert.equal((await request(s.url, '/v1/sources/a.png', { method: 'PUT', body: upload })).status, 201);
    pixels = (await request(s.url, '/v1/pixels/small/a.png')).body; // now a hit
    servers[name] = s;
  }
  assert.equal(pixels.length, 64 * 64 * 4);
});
after(async () => {
  for (const s of Object.values(servers)) await s.done();
});

interface Res {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A raw connection whose received bytes are read as a strict sequence of HTTP/1.1 responses. */
class Conn {
  readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private pos = 0;
  readonly got: Res[] = [];
  constructor(url: string) {
    const u = new URL(url);
    this.sock = net.connect(Number(u.port), u.hostname);
    this.sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    this.sock.on('error', () => {});
  }
  private parse(): void {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n', this.pos);
      if (end < 0) return;
      const head = this.buf.subarray(this.pos, end).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
      assert.ok(m, `a response must start here, got ${JSON.stringify(head.slice(0, 80))}`);
      const status = Number(m[1]);
      const headers: Record<string, string> = {};
      for (const line of head.split('\r\n').slice(1)) {
        const c = line.indexOf(':');
        headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
      }
      const len = status < 200 || status === 204 || status === 304 ? 0 : Number(headers['content-length']);
      assert.ok(Number.isInteger(len), `a Content-Length on ${status}`);
      if (this.buf.length < end + 4 + len) return;
      this.got.push({ status, headers, body: this.buf.subarray(end + 4, end + 4 + len) });
      this.pos = end + 4 + len;
    }
  }
  /** Waits until `n` responses (interim ones included) have arrived. */
  async arrived(n: number, ms = 20_000): Promise<Res[]> {
    const until = Date.now() + ms;
    while (this.got.length < n) {
      if (Date.now() > until || this.sock.destroyed)
        throw new Error(`${this.got.length} of ${n} responses: ${this.got.map((r) => r.status).join(' ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.got;
  }
  /** Waits for `n` responses; then nothing more may follow. */
  async responses(n: number): Promise<Res[]> {
    await this.arrived(n);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(this.got.length, n, 'no further response');
    assert.equal(this.buf.length, this.pos, 'no bytes outside a response');
    return this.got;
  }
  send(b: string | Buffer): void {
    this.sock.write(b);
  }
  destroy(): void {
    this.sock.destroy();
  }
}

const put = (key: string, length: number, extra = '') =>
  `PUT /v1/sources/${key} HTTP/1.1\r\nHost: t\r\nContent-Length: ${length}\r\n${extra}\r\n`;
const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;
const EXPECT = 'Expect: 100-continue\r\n';

/** An upload of `upload` as `key`, then `after` in the same write: what follows waits for its decode. */
const behindUpload = (key: string, after: string) =>
  Buffer.concat([Buffer.from(put(key, upload.length)), upload, Buffer.from(after)]);

async function onConnection(srv: Server, fn: (c: Conn) => Promise<void>): Promise<void> {
  const c = new Conn(srv.url);
  try {
    await fn(c);
  } finally {
    c.destroy();
  }
}

const keyOf = (r: Res | undefined) => (JSON.parse(r!.body.toString()) as { key: string }).key;

for (const name of ['lane', 'node'] as const) {
  test(`${name}: a hit pipelined behind an upload with Expect: 100-continue: the upload's answer, 100, then the whole hit`, () =>
    onConnection(servers[name], async (c) => {
      // the finding: the hit's head, then "HTTP/1.1 100 Continue", then its body
      c.send(behindUpload('p1.png', get('/v1/pixels/small/a.png', EXPECT)));
      const [up, cont, hit] = await c.responses(3);
      assert.equal(up!.status, 201);
      assert.equal(keyOf(up), 'p1.png');
      assert.equal(cont!.status, 100);
      assert.equal(hit!.status, 200);
      assert.ok(hit!.body.equals(pixels), 'the hit’s body is the entry, byte for byte');
    }));

  test(`${name}: an upload with Expect: 100-continue pipelined behind another: 100 when its turn comes, then its answer`, async () => {
    await onConnection(servers[name], async (c) => {
      c.send(behindUpload('p2.png', put('p3.png', upload.length, EXPECT)));
      // a client that waits for the 100 before it sends the body, as curl does
      assert.deepEqual(
        (await c.arrived(2)).map((r) => r.status),
        [201, 100],
        'the first upload answered, then the 100 for the second',
      );
      c.send(upload);
      const all = await c.responses(3);
      assert.equal(all[2]!.status, 201);
      assert.equal(keyOf(all[2]), 'p3.png');
    });
    assert.equal((await request(servers[name].url, '/v1/pixels/small/p3.png')).status, 200);
  });

  test(`${name}: a hit, then an upload with Expect in the same write; and a lone upload with Expect`, async () => {
    await onConnection(servers[name], async (c) => {
      c.send(get('/v1/pixels/small/a.png') + put('p4.png', upload.length, EXPECT));
      await c.arrived(2);
      c.send(upload);
      const [hit, cont, up] = await c.responses(3);
      assert.equal(hit!.status, 200);
      assert.ok(hit!.body.equals(pixels));
      assert.equal(cont!.status, 100);
      assert.equal(up!.status, 201);
    });
    await onConnection(servers[name], async (c) => {
      c.send(put('p5.png', upload.length, EXPECT));
      await c.arrived(1);
      c.send(upload);
      assert.deepEqual(
        (await c.responses(2)).map((r) => r.status),
        [100, 201],
      );
    });
  });

  test(`${name}: a request the lane passes to Node, then an upload with Expect in the same write`, () =>
    onConnection(servers[name], async (c) => {
      // a miss: on the lane's server Node answers it through the stand-in socket, then the
      // upload's head (outside the lane's grammar) leaves the connection to Node
      c.send(get('/v1/pixels/small/missing.png') + put('p7.png', upload.length, EXPECT));
      await c.arrived(2);
      c.send(upload);
      assert.deepEqual(
        (await c.responses(3)).map((r) => r.status),
        [404, 100, 201],
      );
    }));

  test(`${name}: another expectation pipelined behind an upload is refused in order (417 EXPECTATION_FAILED)`, () =>
    onConnection(servers[name], async (c) => {
      c.send(
        behindUpload(
          'p6.png',
          get('/v1/pixels/small/a.png', 'Expect: something-else\r\n') + get('/v1/pixels/small/a.png'),
        ),
      );
      const [up, refused, hit] = await c.responses(3);
      assert.equal(up!.status, 201);
      assert.equal(refused!.status, 417);
      assert.equal(
        (JSON.parse(refused!.body.toString()) as { error: { code: string } }).error.code,
        'EXPECTATION_FAILED',
      );
      assert.equal(hit!.status, 200);
      assert.ok(hit!.body.equals(pixels));
    }));
}
