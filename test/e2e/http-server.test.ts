import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { makeImage } from '../http/helpers.js';
import { start, request, rawExchange, pinned, until } from '../http/net-helpers.js';
import { signUrl } from '../../src/http/sign.js';

type Server = Awaited<ReturnType<typeof start>>;
let s: Server;
const FORMATS = [
  { name: 'small', width: 64, height: 64 },
  // 16 MiB entries: far more than loopback socket buffers hold, so a paused client really
  // leaves the response mid-flight
  { name: 'huge', width: 2048, height: 2048 },
];

before(async () => {
  s = await start({ formats: FORMATS });
  const put = await request(s.url, '/v1/sources/cat.png', { method: 'PUT', body: await makeImage('png') });
  assert.equal(put.status, 201);
});
after(() => s.done());

test('encoded traversal in the raw request target is refused with 400 INVALID_KEY', async () => {
  for (const p of [
    '/v1/pixels/small/%2e%2e/%2e%2e/etc/passwd',
    '/v1/pixels/small/%2E%2E/cat.png',
    '/v1/pixels/small/../../etc/passwd',
    '/v1/pixels/small/x/..%2f..%2fcat.png',
    '/v1/pixels/small/.%2e/sources/cat.png',
    '/v1/thumbnails/small/%2e%2e/x.png',
    '/v1/sources/%2e%2e/evil.png',
  ]) {
    const r = await request(
      s.url,
      p,
      p.startsWith('/v1/sources') ? { method: 'PUT', body: Buffer.from('x') } : {},
    );
    assert.equal(r.status, 400, p);
    assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'INVALID_KEY', p);
  }
  // and the server carries on
  assert.equal((await request(s.url, '/v1/pixels/small/cat.png')).status, 200);
});

test('Range, 304 and HEAD over a real socket', async () => {
  const full = await request(s.url, '/v1/pixels/small/cat.png');
  assert.equal(full.body.length, 64 * 64 * 4);
  const r = await request(s.url, '/v1/pixels/small/cat.png', { headers: { range: 'bytes=1000-1999' } });
  assert.equal(r.status, 206);
  assert.equal(r.headers['content-range'], `bytes 1000-1999/${full.body.length}`);
  assert.ok(r.body.equals(full.body.subarray(1000, 2000)));
  const nm = await request(s.url, '/v1/pixels/small/cat.png', {
    headers: { 'if-none-match': String(full.headers.etag) },
  });
  assert.equal(nm.status, 304);
  assert.equal(nm.body.length, 0);
  const head = await request(s.url, '/v1/pixels/small/cat.png', { method: 'HEAD' });
  assert.equal(head.headers['content-length'], String(full.body.length));
  assert.equal(head.body.length, 0);
  assert.equal(pinned(s), 0);
});

test('aborted downloads release their pins', async () => {
  const u = new URL(s.url);
  // warm the entry so the aborts below are hits
  await request(s.url, '/v1/pixels/huge/cat.png', { method: 'HEAD' });
  const sockets: http.ClientRequest[] = [];
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = http.get(
        { host: u.hostname, port: u.port, path: '/v1/pixels/huge/cat.png', agent: false },
        (res) => {
          assert.equal(res.headers['content-length'], String(2048 * 2048 * 4));
          res.pause(); // stop reading: the server's write stays in flight
          resolve();
        },
      );
      req.on('error', reject);
      sockets.push(req);
    });
  }
  await new Promise((r) => setTimeout(r, 100));
  // (stats count pinned entries, not pins: three responses of one entry show as 1)
  assert.equal(pinned(s), 1, 'in-flight responses pin their entry');
  sockets[0]!.destroy();
  sockets[1]!.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(pinned(s), 1, 'still pinned by the third response');
  sockets[2]!.destroy();
  await until(() => pinned(s) === 0);
  // rect responses too
  await new Promise<void>((resolve) => {
    const req = http.get(
      { host: u.hostname, port: u.port, path: '/v1/pixels/huge/cat.png?rect=0,0,2048,2000', agent: false },
      (res) => {
        res.pause();
        setTimeout(() => {
          assert.equal(pinned(s), 1);
          req.destroy();
          resolve();
        }, 100);
      },
    );
  });
  await until(() => pinned(s) === 0);
});

test('completed keep-alive responses release their pins', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(s.url);
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      http
        .get(
          { host: u.hostname, port: u.port, path: '/v1/pixels/small/cat.png?rect=0,0,8,8', agent },
          (res) => {
            res.resume();
            res.on('end', resolve);
          },
        )
        .on('error', reject);
    });
  }
  await until(() => pinned(s) === 0);
  agent.destroy();
});

test('concurrent misses of one key decode once', async () => {
  await request(s.url, '/v1/sources/many.png', { method: 'PUT', body: await makeImage('png', 300, 200, 5) });
  // PUT already decoded every format; delete the entries only, by replacing nothing... use a new file instead
  const before = s.cache.stats().formats.find((f) => f.format === 'small')!.decodes;
  const { default: fs } = await import('node:fs/promises');
  const { default: path } = await import('node:path');
  await fs.writeFile(path.join(s.cache.sourcesDir, 'fresh.png'), await makeImage('png', 300, 200, 9));
  const rs = await Promise.all(Array.from({ length: 8 }, () => request(s.url, '/v1/pixels/small/fresh.png')));
  assert.deepEqual(
    rs.map((r) => r.status),
    Array(8).fill(200),
  );
  assert.ok(rs.every((r) => r.body.equals(rs[0]!.body)));
  const after = s.cache.stats().formats.find((f) => f.format === 'small')!.decodes;
  assert.equal(after - before, 1);
});

test('slow headers get 408 REQUEST_TIMEOUT and the connection is closed', async () => {
  const t = await start({ formats: FORMATS, headersTimeoutMs: 300, requestTimeoutMs: 600 });
  try {
    const t0 = Date.now();
    const out = await rawExchange(t.url, 'GET /v1/formats HTTP/1.1\r\nHost: x\r\n', { keepOpenMs: 5000 });
    assert.match(out, /^HTTP\/1\.1 408/);
    assert.match(out, /"code":"REQUEST_TIMEOUT"/);
    assert.ok(Date.now() - t0 < 3000, `closed after ${Date.now() - t0} ms`);
    // a slow body too
    const out2 = await rawExchange(
      t.url,
      'PUT /v1/sources/a.png HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc',
      {
        keepOpenMs: 5000,
      },
    );
    assert.match(out2, /^HTTP\/1\.1 408/);
    assert.equal((await request(t.url, '/v1/formats')).status, 200);
  } finally {
    await t.done();
  }
});

test('signed URLs over a real socket', async () => {
  const key = { key: Buffer.alloc(32, 3), salt: Buffer.from('salt') };
  const t = await start({ formats: FORMATS, signingKeys: [key] });
  try {
    const up = await request(t.url, signUrl('/v1/sources/a%20b.png', key, 'PUT'), {
      method: 'PUT',
      body: await makeImage('png'),
    });
    assert.equal(up.status, 201);
    assert.equal((await request(t.url, signUrl('/v1/pixels/small/a%20b.png', key))).status, 200);
    assert.equal((await request(t.url, '/v1/pixels/small/a%20b.png')).status, 403);
    const tampered = signUrl('/v1/pixels/small/a%20b.png?rect=0,0,1,1', key).replace(
      'rect=0,0,1,1',
      'rect=0,0,9,9',
    );
    assert.equal((await request(t.url, tampered)).status, 403);
    // the method is signed, on the lane's and the shortcut's path too
    const pixels = '/v1/pixels/small/a%20b.png';
    assert.equal((await request(t.url, signUrl(pixels, key, 'PUT'))).status, 403);
    assert.equal((await request(t.url, signUrl(pixels, key), { method: 'HEAD' })).status, 200);
    const del = await request(t.url, signUrl('/v1/sources/a%20b.png', key, 'PUT'), { method: 'DELETE' });
    assert.equal(del.status, 403);
    assert.equal((await request(t.url, signUrl(pixels, key))).status, 200, 'not deleted');
  } finally {
    await t.done();
  }
});

test('the hit shortcut and the fastify route answer identically (pixels, thumbnails, 304)', async () => {
  const strip = (h: Record<string, unknown>) => {
    const o = { ...h };
    for (const k of ['date', 'connection', 'keep-alive', 'transfer-encoding']) delete o[k];
    return o;
  };
  for (const [p, headers] of [
    ['/v1/pixels/small/cat.png', {}],
    ['/v1/thumbnails/small/cat.png?type=webp', {}],
    ['/v1/thumbnails/small/cat.png', { accept: 'image/webp,*/*' }],
  ] as const) {
    const routed = await s.app.inject({ url: p, headers }); // inject never enters the shortcut
    const before = s.app.pixtable.shortcutResponses;
    const fast = await request(s.url, p, { headers }); // second request: a hit, served by the shortcut
    assert.equal(s.app.pixtable.shortcutResponses, before + 1, `${p} took the shortcut`);
    assert.equal(fast.status, 200, p);
    assert.equal(routed.statusCode, 200, p);
    assert.deepEqual(strip(fast.headers), strip(routed.headers), p);
    assert.ok(fast.body.equals(routed.rawPayload), p);
    const nm = await request(s.url, p, {
      headers: { ...headers, 'if-none-match': String(fast.headers.etag) },
    });
    assert.equal(nm.status, 304, p);
  }
  const m = await request(s.url, '/metrics');
  assert.match(
    m.body.toString(),
    /pixtable_http_requests_total\{route="\/v1\/pixels\/:format\/\*",method="GET",status="304"\} [1-9]/,
  );
  assert.equal(pinned(s), 0);
});

test('oversized headers get 431 HEADERS_TOO_LARGE and malformed requests 400 BAD_REQUEST, as JSON', async () => {
  const big = await rawExchange(
    s.url,
    `GET /v1/formats HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
  );
  assert.match(big, /^HTTP\/1\.1 431/);
  assert.match(big, /"code":"HEADERS_TOO_LARGE"/);
  const bad = await rawExchange(s.url, 'GARBAGE\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400/);
  assert.match(bad, /"code":"BAD_REQUEST"/);
  assert.equal((await request(s.url, '/v1/formats')).status, 200);
});

test('a client that stops reading is cut after the idle timeout and its pin released', async () => {
  const t = await start({ formats: FORMATS, idleTimeoutMs: 300 });
  try {
    await request(t.url, '/v1/sources/cat.png', { method: 'PUT', body: await makeImage('png') });
    const u = new URL(t.url);
    const req = http.get(
      { host: u.hostname, port: u.port, path: '/v1/pixels/huge/cat.png', agent: false },
      (res) => res.pause(),
    );
    req.on('error', () => {}); // the server will cut it
    await until(() => pinned(t) === 1);
    const t0 = Date.now();
    await until(() => pinned(t) === 0, 5000);
    assert.ok(Date.now() - t0 >= 150, 'held while within the timeout');
    req.destroy();
  } finally {
    await t.done();
  }
});
