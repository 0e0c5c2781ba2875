// Origin fetches against local servers only. Addresses outside loopback are checked by the pure
// address policy (no connection is ever attempted to them); loopback stands in for "private".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchFromOrigin, isAddressAllowed } from '../../src/http/origin.js';
import { PixtableError } from '../../src/errors.js';
import type { OriginConfig } from '../../src/config/env.js';
import { makeImage } from '../http/helpers.js';
import { start, request } from '../http/net-helpers.js';

let png: Buffer;
let origin: http.Server;
let port: number;
const hits: string[] = [];
let sideHits = 0;
let side: http.Server | undefined; // on 127.0.0.2: must never be contacted

before(async () => {
  png = await makeImage('png', 90, 60, 4);
  origin = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const u = req.url ?? '';
    if (u === '/img/cat.png' || u === '/img/a%20b/c.png') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
      res.end(png);
    } else if (u === '/img/chunked.png') {
      res.writeHead(200, { 'content-type': 'image/png' }); // no length: streamed, capped while reading
      res.write(png.subarray(0, 100));
      res.end(png.subarray(100));
    } else if (u.startsWith('/img/redirect-to/')) {
      res.writeHead(302, { location: decodeURIComponent(u.slice('/img/redirect-to/'.length)) });
      res.end();
    } else if (u === '/img/loop.png') {
      res.writeHead(302, { location: '/img/loop.png' });
      res.end();
    } else if (u === '/img/hang.png') {
      // headers never come
    } else if (u === '/img/boom.png') {
      res.writeHead(500);
      res.end('no');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as AddressInfo).port;
  side = http.createServer((_req, res) => {
    sideHits++;
    res.end('should not be reached');
  });
  await new Promise<void>((r, j) => {
    side!.once('error', () => {
      side = undefined; // 127.0.0.2 not configured here; the address check needs no listener anyway
      r();
    });
    side!.listen(port, '127.0.0.2', () => r());
    void j;
  });
});
after(async () => {
  origin.closeAllConnections();
  await new Promise((r) => origin.close(r));
  if (side) await new Promise((r) => side!.close(r));
});

function cfg(over: Partial<OriginConfig> = {}): OriginConfig {
  return {
    base: new URL(`http://127.0.0.1:${port}/img/`),
    allowHosts: [],
    allowNetworks: ['127.0.0.1/32'],
    connectTimeoutMs: 2000,
    readTimeoutMs: 500,
    maxBytes: 1 << 20,
    maxRedirects: 2,
    ...over,
  };
}

async function code(p: Promise<unknown>, c: string, msg?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PixtableError, String(e));
    assert.equal(e.code, c, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

test('address policy: only public unicast unless a network is allowed', () => {
  for (const a of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.5.4',
    '192.168.0.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '224.0.0.1',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12::1',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
    '2002:a00:1::',
    'not an address',
  ]) {
    assert.equal(isAddressAllowed(a, []), false, a);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888', '::ffff:8.8.8.8'])
    assert.equal(isAddressAllowed(a, []), true, a);
  assert.equal(isAddressAllowed('10.9.8.7', ['10.0.0.0/8']), true);
  assert.equal(
    isAddressAllowed('::ffff:10.9.8.7', ['10.0.0.0/8']),
    true,
    'mapped form of an allowed address',
  );
  assert.equal(isAddressAllowed('11.0.0.1', ['10.0.0.0/8']), true, 'public stays allowed');
  assert.equal(isAddressAllowed('127.0.0.2', ['127.0.0.1/32']), false);
  assert.equal(isAddressAllowed('fd00::5', ['fd00::/8']), true);
});

test('fetches a key (percent-encoded per segment) when the loopback network is allowed', async () => {
  assert.ok((await fetchFromOrigin(cfg(), 'cat.png')).equals(png));
  assert.ok((await fetchFromOrigin(cfg(), 'a b/c.png')).equals(png));
  assert.ok(hits.includes('/img/a%20b/c.png'));
  assert.ok((await fetchFromOrigin(cfg(), 'chunked.png')).equals(png));
});

test('loopback is refused unless explicitly allowed, before any connection', async () => {
  const n = hits.length;
  await code(fetchFromOrigin(cfg({ allowNetworks: [] }), 'cat.png'), 'ORIGIN_FORBIDDEN', /127\.0\.0\.1/);
  await code(
    fetchFromOrigin(cfg({ allowNetworks: [], base: new URL(`http://localhost:${port}/img/`) }), 'cat.png'),
    'ORIGIN_FORBIDDEN',
  );
  await code(
    fetchFromOrigin(
      cfg({ allowNetworks: [], base: new URL(`http://[::ffff:127.0.0.1]:${port}/img/`) }),
      'cat.png',
    ),
    'ORIGIN_FORBIDDEN',
  );
  assert.equal(hits.length, n, 'no request reached the origin');
});

test('redirects are re-checked: other hosts, blocked addresses, schemes, loops', async () => {
  const via = (target: string) => `redirect-to/${encodeURIComponent(target)}`;
  // same host: followed
  assert.ok((await fetchFromOrigin(cfg(), via(`http://127.0.0.1:${port}/img/cat.png`))).equals(png));
  // a host not on the allow-list
  await code(
    fetchFromOrigin(cfg(), via(`http://localhost:${port}/img/cat.png`)),
    'ORIGIN_FORBIDDEN',
    /ALLOW_HOSTS/,
  );
  // an allowed host name whose address is blocked (127.0.0.2 is outside 127.0.0.1/32)
  await code(
    fetchFromOrigin(cfg({ allowHosts: ['127.0.0.2'] }), via(`http://127.0.0.2:${port}/img/cat.png`)),
    'ORIGIN_FORBIDDEN',
    /127\.0\.0\.2/,
  );
  assert.equal(sideHits, 0, 'the blocked address was never contacted');
  await code(fetchFromOrigin(cfg(), via('file:///etc/passwd')), 'ORIGIN_FORBIDDEN');
  await code(fetchFromOrigin(cfg(), 'loop.png'), 'ORIGIN_FAILED', /redirects/);
});

/** IPv6 forms that carry `v4` (src/http/origin.ts, embeddedIPv4), as URL hosts in brackets. */
function v6Hosts(v4: string): string[] {
  const o = v4.split('.').map(Number) as [number, number, number, number];
  const hi = ((o[0] << 8) | o[1]).toString(16);
  const lo = ((o[2] << 8) | o[3]).toString(16);
  const teredo = `2001:0:4136:e378:8000:63bf:${(0xffff ^ parseInt(hi, 16)).toString(16)}:${(0xffff ^ parseInt(lo, 16)).toString(16)}`;
  return [
    `::${hi}:${lo}`,
    `::ffff:${v4}`,
    `::ffff:0:${hi}:${lo}`,
    `64:ff9b::${v4}`,
    `2002:${hi}:${lo}::`,
    teredo,
  ].map((a) => new URL(`http://[${a}]/`).hostname);
}

test('IPv6 forms of a blocked IPv4 address are refused as the origin and as a redirect target', async () => {
  const n = hits.length;
  // the finding: http://[::7f00:1]/ (127.0.0.1, IPv4-compatible) passed as origin
  for (const host of v6Hosts('127.0.0.1')) {
    await code(
      fetchFromOrigin(cfg({ allowNetworks: [], base: new URL(`http://${host}:${port}/img/`) }), 'cat.png'),
      'ORIGIN_FORBIDDEN',
      /not a public address/,
    );
  }
  assert.equal(hits.length, n, 'no request reached the origin');
  // a redirect from the allowed origin to 127.0.0.2 (outside 127.0.0.1/32) in IPv6 clothing
  for (const host of v6Hosts('127.0.0.2')) {
    await code(
      fetchFromOrigin(
        cfg({ allowHosts: [host] }),
        `redirect-to/${encodeURIComponent(`http://${host}:${port}/img/cat.png`)}`,
      ),
      'ORIGIN_FORBIDDEN',
      /not a public address/,
    );
  }
  assert.equal(sideHits, 0, 'the blocked address was never contacted');
  // through the server: 403, nothing stored
  const srv = await start({
    formats: [{ name: 'small', width: 32, height: 32 }],
    origin: cfg({ allowNetworks: [], base: new URL(`http://[::7f00:1]:${port}/img/`) }),
  });
  try {
    const r = await request(srv.url, '/v1/pixels/small/cat.png');
    assert.equal(r.status, 403);
    assert.equal(
      (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code,
      'ORIGIN_FORBIDDEN',
    );
    assert.deepEqual(await srv.cache.listSources(), []);
  } finally {
    await srv.done();
  }
});

test('status, size and time limits', async () => {
  await code(fetchFromOrigin(cfg(), 'missing.png'), 'SOURCE_NOT_FOUND');
  await code(fetchFromOrigin(cfg(), 'boom.png'), 'ORIGIN_FAILED', /500/);
  await code(fetchFromOrigin(cfg({ maxBytes: 100 }), 'cat.png'), 'SOURCE_TOO_LARGE', /declares/);
  await code(fetchFromOrigin(cfg({ maxBytes: 150 }), 'chunked.png'), 'SOURCE_TOO_LARGE', /more than 150/);
  const t0 = Date.now();
  await code(fetchFromOrigin(cfg({ readTimeoutMs: 300 }), 'hang.png'), 'ORIGIN_TIMEOUT');
  assert.ok(Date.now() - t0 < 2000);
});

test('through the server: a miss fetches once from the origin, stores the source, serves pixels', async () => {
  const s = await start({
    formats: [{ name: 'small', width: 32, height: 32 }],
    origin: cfg(),
  });
  try {
    const n = hits.filter((h) => h === '/img/cat.png').length;
    const rs = await Promise.all([1, 2, 3, 4].map(() => request(s.url, '/v1/pixels/small/cat.png')));
    assert.deepEqual(
      rs.map((r) => r.status),
      [200, 200, 200, 200],
    );
    assert.equal(
      hits.filter((h) => h === '/img/cat.png').length - n,
      1,
      'one origin fetch for concurrent misses',
    );
    assert.deepEqual(await s.cache.listSources(), ['cat.png']);
    const missing = await request(s.url, '/v1/pixels/small/nothing-here.png');
    assert.equal(missing.status, 404);
    assert.equal(
      (JSON.parse(missing.body.toString()) as { error: { code: string } }).error.code,
      'SOURCE_NOT_FOUND',
    );
    const slow = await request(s.url, '/v1/pixels/small/hang.png');
    assert.equal(slow.status, 504);
  } finally {
    await s.done();
  }
});

test('through the server: an origin on a blocked address gives 403 ORIGIN_FORBIDDEN', async () => {
  const s = await start({
    formats: [{ name: 'small', width: 32, height: 32 }],
    origin: cfg({ allowNetworks: [] }),
  });
  try {
    const n = hits.length;
    const r = await request(s.url, '/v1/pixels/small/cat.png');
    assert.equal(r.status, 403);
    assert.equal(
      (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code,
      'ORIGIN_FORBIDDEN',
    );
    assert.equal(hits.length, n);
    assert.deepEqual(await s.cache.listSources(), []);
  } finally {
    await s.done();
  }
});
