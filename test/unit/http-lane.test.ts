// The fast lane's request grammar (src/http/lane/grammar.ts). It may be narrower than Node's parser but
// never different: whatever the lane answers itself, llhttp must parse as the same request, or a
// proxy and pixtable could disagree about where one request ends (request smuggling). Checked here
// against Node's own parser on hand-picked cases and on seeded random mutations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { installLane, parseRequest } from '../../src/http/lane/index.js';
import { rawHead } from '../../src/http/head-bytes.js';

const MAX = 16 * 1024;
const parse = (s: string, requestIds = false) => {
  const r = parseRequest(s, 0, MAX, requestIds);
  return r && { ...r };
};

test('accepts GET and HEAD with Host, reading Accept, If-None-Match, Range and Connection', () => {
  const s =
    'GET /v1/pixels/f/a.png?type=webp HTTP/1.1\r\nhost: x\r\nACCEPT: image/avif\r\nAccept:  image/webp \r\n' +
    'If-None-Match: "a"\r\nif-none-match: W/"b"\r\nrange: bytes=0-1\r\nConnection: Keep-Alive\r\n' +
    'Content-Length: 0\r\nX-Request-Id: r1\r\n\r\nGET /next';
  const r = parse(s);
  assert.ok(r);
  assert.equal(r.isHead, false);
  assert.equal(r.target, '/v1/pixels/f/a.png?type=webp');
  assert.equal(r.accept, 'image/avif, image/webp');
  assert.equal(r.ifNoneMatch, '"a", W/"b"');
  assert.equal(r.range, true);
  assert.equal(r.close, false);
  assert.equal(r.requestId, undefined, 'X-Request-Id is read only when asked for');
  assert.equal(r.end, s.indexOf('GET /next'), 'end is just past the blank line');
  const head = 'HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Request-Id: abc\r\n\r\n';
  const h = parse(head, true);
  assert.ok(h);
  assert.equal(h.isHead, true);
  assert.equal(h.close, true);
  assert.equal(h.requestId, 'abc');
  assert.equal(h.end, head.length, 'end is just past the blank line');
  assert.equal(h.range, false);
  assert.equal(h.accept, undefined);
});

test('a second request in the same chunk is parsed from where the first ended', () => {
  const one = 'GET /a HTTP/1.1\r\nHost: h\r\n\r\n';
  const s = `${one}HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n`;
  const first = parseRequest(s, 0, MAX, false);
  assert.equal(first?.end, one.length);
  const second = parseRequest(s, one.length, MAX, false);
  assert.equal(second?.target, '/b');
  assert.equal(second?.isHead, true);
  assert.equal(second?.end, s.length);
});

test('everything outside the narrow grammar is left to Node', () => {
  const ok = 'GET /a HTTP/1.1\r\nHost: h\r\n\r\n';
  assert.ok(parse(ok));
  const refused: Record<string, string> = {
    'incomplete head': 'GET /a HTTP/1.1\r\nHost: h\r\n',
    POST: 'POST /a HTTP/1.1\r\nHost: h\r\n\r\n',
    'lower-case method': 'get /a HTTP/1.1\r\nHost: h\r\n\r\n',
    'HTTP/1.0': 'GET /a HTTP/1.0\r\nHost: h\r\n\r\n',
    'HTTP/2 preface': 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    'absolute-form target': 'GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n',
    'asterisk target': 'GET * HTTP/1.1\r\nHost: h\r\n\r\n',
    'two spaces': 'GET  /a HTTP/1.1\r\nHost: h\r\n\r\n',
    'tab in target': 'GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n',
    'non-ASCII target': 'GET /\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n',
    'no Host': 'GET /a HTTP/1.1\r\nAccept: */*\r\n\r\n',
    'two Hosts': 'GET /a HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n',
    'a body by length': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello',
    'Content-Length 00': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n',
    'a chunked body': 'GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    Expect: 'GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n',
    Upgrade: 'GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'Connection with a list': 'GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, TE\r\n\r\n',
    'space before colon': 'GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n',
    'obs-fold': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept: a\r\n b\r\n\r\n',
    'no colon': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept\r\n\r\n',
    'empty name': 'GET /a HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n',
    'bare LF in a value': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept: a\nb\r\n\r\n',
    'bare CR in a value': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept: a\rb\r\n\r\n',
    'NUL in a value': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept: a\u0000b\r\n\r\n',
    'DEL in a value': 'GET /a HTTP/1.1\r\nHost: h\r\nAccept: a\u007fb\r\n\r\n',
    'non-token name': 'GET /a HTTP/1.1\r\nHost: h\r\nAc(cept: a\r\n\r\n',
    'LF-only line ends': 'GET /a HTTP/1.1\nHost: h\n\n',
    'Content-Length 0 twice': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n',
    'Content-Length 0 twice, apart, other case':
      'GET /a HTTP/1.1\r\ncontent-length: 0\r\nHost: h\r\nCONTENT-LENGTH:0\r\n\r\n',
    'Content-Length 0 then 5': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n',
    'Content-Length list': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0, 0\r\n\r\n',
    'Content-Length with a trailing tab': 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\t\r\n\r\n',
    'Content-Length and Transfer-Encoding':
      'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'Transfer-Encoding twice':
      'GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    'Connection: close with a trailing tab': 'GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\t\r\n\r\n',
  };
  for (const [why, s] of Object.entries(refused)) assert.equal(parse(s), undefined, why);
  // a head beyond the size limit: Node answers 431 for it
  const big = `GET /a HTTP/1.1\r\nHost: h\r\nX-Pad: ${'p'.repeat(MAX)}\r\n\r\n`;
  assert.equal(parse(big), undefined, 'head larger than maxHeaderBytes');
});

test('rawHead renders the status line and headers as Node would', () => {
  assert.equal(
    rawHead(200, ['Content-Type', 'image/webp', 'Content-Length', '12']).toString('latin1'),
    'HTTP/1.1 200 OK\r\nContent-Type: image/webp\r\nContent-Length: 12\r\n',
  );
  assert.equal(
    rawHead(304, ['ETag', '"e"']).toString('latin1'),
    'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n',
  );
});

// ---------- differential: Node's parser as the reference ----------

interface NodeView {
  method: string;
  url: string;
  accept: string | null;
  ifNoneMatch: string | null;
  range: boolean;
  /** Whether Node keeps the connection open after this request (llhttp's reading of Connection). */
  keepAlive: boolean;
}

let server: http.Server;
let port = 0;
before(async () => {
  server = http.createServer((req, res) => {
    const v: NodeView = {
      method: req.method ?? '',
      url: req.url ?? '',
      accept: req.headers.accept ?? null,
      ifNoneMatch: req.headers['if-none-match'] ?? null,
      range: req.headers.range !== undefined,
      keepAlive: res.shouldKeepAlive, // read before the Connection header below changes it
    };
    // in a header, so HEAD responses carry it too; base64 keeps latin1 header values intact
    res.setHeader('X-View', Buffer.from(JSON.stringify(v)).toString('base64'));
    res.setHeader('Connection', 'close');
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

/** What Node's HTTP server makes of the first request in `bytes`: its view, or the status it refused it with. */
function nodeParse(bytes: Buffer): Promise<NodeView | number> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(bytes));
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', reject);
    c.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      if (status !== 200) return resolve(status);
      const view = /\r\nX-View: ([A-Za-z0-9+/=]+)\r\n/.exec(text)?.[1] ?? '';
      resolve(JSON.parse(Buffer.from(view, 'base64').toString()) as NodeView);
    });
    setTimeout(() => c.destroy(), 2000).unref();
  });
}

async function agrees(s: string): Promise<void> {
  const lane = parse(s);
  if (lane === undefined) return; // Node's to decide
  const node = await nodeParse(Buffer.from(s, 'latin1'));
  assert.notEqual(
    typeof node,
    'number',
    `the lane accepted what Node refuses (${String(node)}): ${JSON.stringify(s)}`,
  );
  assert.deepEqual(
    node,
    {
      method: lane.isHead ? 'HEAD' : 'GET',
      url: lane.target,
      accept: lane.accept ?? null,
      ifNoneMatch: lane.ifNoneMatch ?? null,
      range: lane.range,
      keepAlive: !lane.close,
    },
    JSON.stringify(s),
  );
}

test('every request the lane accepts, Node parses the same way (hand-picked)', async () => {
  for (const s of [
    'GET /a HTTP/1.1\r\nHost: h\r\n\r\n',
    'HEAD /a?b=c&d=%2e%2e HTTP/1.1\r\nhost:h\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: h\r\nAccept: image/webp,*/*;q=0.8\r\naccept: image/avif\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: h\r\nIf-None-Match:\t"x" \t\r\nIF-NONE-MATCH: W/"y"\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: h\r\nX-Obs: caf\u00e9\r\nContent-Length: 0\r\n\r\n',
    "GET /~!$&'()*+,;=:@[] HTTP/1.1\r\nHost: h\r\n\r\n",
  ]) {
    assert.ok(parse(s), JSON.stringify(s));
    await agrees(s);
  }
});

test('heads with a repeated or conflicting Content-Length or Transfer-Encoding are Node’s (it refuses them)', async () => {
  // the finding: `Content-Length: 0` twice was answered by the lane (200) and refused by Node (400)
  const refusedByNode = [
    'Content-Length: 0\r\nContent-Length: 0',
    'Content-Length: 0\r\nAccept: x\r\ncontent-length: 0',
    'Content-Length: 0\r\nContent-Length: 0\r\nContent-Length: 0',
    'Content-Length: 0\r\nContent-Length: 5',
    'Content-Length: 0\r\nContent-Length: 00',
    'Content-Length: 0, 0',
    'Content-Length: 0\r\nTransfer-Encoding: chunked',
    'Transfer-Encoding: chunked\r\nContent-Length: 0',
    'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked',
  ];
  for (const h of refusedByNode) {
    const s = `GET /a HTTP/1.1\r\nHost: h\r\n${h}\r\n\r\n`;
    assert.equal(await nodeParse(Buffer.from(s, 'latin1')), 400, `Node refuses ${JSON.stringify(h)}`);
    assert.equal(parse(s), undefined, `the lane leaves ${JSON.stringify(h)} to Node`);
  }
  // every pair of these lines, in both orders: whatever the lane accepts, Node reads the same way
  // (also whether the connection stays open). A tab after the value is left to Node: Node 20
  // refuses "0<TAB>" and keeps "close<TAB>" alive, Node 24 accepts the one and closes on the other.
  const lines = [
    'Content-Length: 0',
    'content-length:0',
    'Content-Length:\t0',
    'Content-Length: 0  ',
    'Content-Length: 0\t',
    'Content-Length: 00',
    'Content-Length: 0,0',
    'Content-Length: +0',
    'Transfer-Encoding: chunked',
    'Transfer-Encoding: identity',
    'Connection: close',
    'Connection: close ',
    'Connection: close\t',
    'Connection: Keep-Alive',
    'Connection: keep-alive\t',
    'Host: h2',
  ];
  let accepted = 0;
  for (const a of lines) {
    for (const b of lines) {
      const s = `GET /a HTTP/1.1\r\nHost: h\r\n${a}\r\n${b}\r\n\r\n`;
      if (parse(s) !== undefined) accepted++;
      await agrees(s);
    }
  }
  assert.ok(accepted >= 10, `only ${accepted} pairs accepted: the comparison is not exercised`);
});

test('every request the lane accepts, Node parses the same way (seeded mutations)', async () => {
  const base =
    'GET /v1/pixels/f/a.png?type=webp HTTP/1.1\r\nHost: h\r\nAccept: image/webp\r\n' +
    'If-None-Match: "e"\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n';
  const bytes = [
    '\0',
    '\t',
    ' ',
    '\r',
    '\n',
    ':',
    '\u007f',
    '\u0080',
    '\u00ff',
    'a',
    '-',
    '/',
    '"',
    ',',
    '\u0001',
    '0',
    'H',
    '#',
    '%',
    '?',
    '\u000b',
    '\u00e9',
  ];
  let seed = 0x9e3779b9;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const N = 400;
  let accepted = 0;
  for (let i = 0; i < N; i++) {
    let s = base;
    for (let m = 1 + rand(2); m > 0; m--) {
      const at = rand(s.length - 4); // keep the final blank line so heads stay complete
      const b = bytes[rand(bytes.length)]!;
      const op = rand(3);
      s =
        op === 0
          ? s.slice(0, at) + b + s.slice(at)
          : op === 1
            ? s.slice(0, at) + s.slice(at + 1)
            : s.slice(0, at) + b + s.slice(at + 1);
    }
    if (parse(s) === undefined) continue;
    accepted++;
    await agrees(s);
  }
  // the mutations must exercise both sides: some accepted (and compared), most refused
  assert.ok(accepted >= 40, `only ${accepted} mutations accepted`);
  assert.ok(accepted < N / 2, `${accepted} of ${N} mutations accepted: the grammar is not being exercised`);
});

test('installLane on a plain server: answers, hands over, and survives a throwing handler', async () => {
  const errors: unknown[] = [];
  const body = Buffer.from('lane body');
  const srv = http.createServer((req, res) => res.end(`node saw ${req.url ?? ''}`));
  installLane(srv, {
    handle(req, out) {
      if (req.target === '/boom') throw new Error('handler bug');
      if (req.target !== '/lane') return false;
      out.send(rawHead(200, ['Content-Length', String(body.length)]), body);
      return true;
    },
    open: () => true,
    keepAliveTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    maxHeaderBytes: MAX,
    requestIds: false,
    onError: (e) => errors.push(e),
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const p = (srv.address() as net.AddressInfo).port;
  const exchange = (send: string) =>
    new Promise<string>((resolve) => {
      const c = net.connect(p, '127.0.0.1', () => c.write(send));
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString('latin1')));
      c.on('close', () => resolve(got));
      c.on('error', () => {});
    });
  try {
    const both = await exchange(
      'GET /lane HTTP/1.1\r\nHost: h\r\n\r\nGET /other HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
    );
    assert.match(
      both,
      /^HTTP\/1\.1 200 OK\r\nContent-Length: 9\r\nDate: [^\r]+\r\nConnection: keep-alive\r\n/,
    );
    assert.ok(both.includes('\r\n\r\nlane body'), 'the lane answered the first');
    assert.ok(both.endsWith('node saw /other'), 'Node answered the second, after the first');
    assert.equal(await exchange('GET /boom HTTP/1.1\r\nHost: h\r\n\r\n'), '', 'cut without a response');
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /handler bug/);
    assert.match(await exchange('GET /lane HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'), /lane body$/);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
