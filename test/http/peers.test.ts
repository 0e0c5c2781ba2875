// Purge across replicas (src/http/peers.ts): DELETE /v1/entries/<key> drops entries and keeps the
// source; PIXTABLE_PEERS fans a purge out after a source write, bounded, counted, never the
// client's failure, and never undoing the writer's own fresh entries.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { fixture, makeImage, type Fixture } from './helpers.js';
import { loadConfig } from '../../src/config/env.js';
import { PixtableError } from '../../src/errors.js';

async function listen(f: Fixture): Promise<URL> {
  await f.app.listen({ port: 0, host: '127.0.0.1' });
  const a = f.app.server.address() as net.AddressInfo;
  return new URL(`http://127.0.0.1:${a.port}/`);
}

async function purges(f: Fixture): Promise<{ ok: number; failed: number }> {
  const text = (await f.app.inject({ method: 'GET', url: '/metrics' })).body;
  const n = (r: string) =>
    Number(new RegExp(`^pixtable_peer_purges_total\\{result="${r}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { ok: n('ok'), failed: n('failed') };
}

async function until(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

describe('DELETE /v1/entries/<key>', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture();
  });
  after(() => f.close());

  test('drops every format of the key, keeps the source; the next get decodes it again', async () => {
    const put = await f.app.inject({ method: 'PUT', url: '/v1/sources/a/b.png', body: await makeImage() });
    assert.equal(put.statusCode, 201);
    assert.ok(f.cache.has('small', 'a/b.png') && f.cache.has('box', 'a/b.png'));
    const decodes = f.cache.stats().formats[0]!.decodes;
    const r = await f.app.inject({ method: 'DELETE', url: '/v1/entries/a/b.png' });
    assert.equal(r.statusCode, 204);
    assert.ok(!f.cache.has('small', 'a/b.png') && !f.cache.has('box', 'a/b.png'));
    assert.equal((await f.app.inject({ method: 'GET', url: '/v1/sources/a/b.png' })).statusCode, 200);
    assert.equal((await f.app.inject({ method: 'GET', url: '/v1/pixels/small/a/b.png' })).statusCode, 200);
    assert.equal(f.cache.stats().formats[0]!.decodes, decodes + 1);
  });

  test('a key with nothing cached is 204 too; a bad key is a 400 with its code', async () => {
    assert.equal((await f.app.inject({ method: 'DELETE', url: '/v1/entries/never.png' })).statusCode, 204);
    const bad = await f.app.inject({ method: 'DELETE', url: `/v1/entries/${'k'.repeat(1100)}` });
    assert.equal(bad.statusCode, 400);
    assert.match(JSON.parse(bad.body).error.code, /^[A-Z_]+$/);
  });
});

describe('PIXTABLE_PEERS', () => {
  test('is validated: http(s) base URLs only, timeout in range', () => {
    const ok = loadConfig({ PIXTABLE_PEERS: 'http://a:8080/, https://b/px' }).config.peers;
    assert.deepEqual(
      ok.urls.map((u) => u.href),
      ['http://a:8080/', 'https://b/px'],
    );
    assert.equal(ok.timeoutMs, 2000);
    assert.equal(loadConfig({}).config.peers.urls.length, 0);
    for (const env of [
      { PIXTABLE_PEERS: 'a:8080' },
      { PIXTABLE_PEERS: 'ftp://a/' },
      { PIXTABLE_PEERS: 'http://a/?x=1' },
      { PIXTABLE_PEERS: 'http://a/', PIXTABLE_PEERS_TIMEOUT_MS: '0' },
    ]) {
      assert.throws(
        () => loadConfig(env),
        (e: unknown) =>
          e instanceof PixtableError && e.code === 'INVALID_CONFIG' && /PIXTABLE_PEERS/.test(e.message),
      );
    }
  });

  let a: Fixture;
  let b: Fixture;
  let silent: net.Server;
  const held: net.Socket[] = [];
  const TIMEOUT = 400;
  before(async () => {
    b = await fixture();
    const bUrl = await listen(b);
    // accepts and never answers: the purge's bound is all that ends the call
    silent = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const dead = new URL(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port + 0}/`);
    // a port nobody listens on: connection refused
    const refused = await new Promise<number>((r) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => r(port));
      });
    });
    // A's own address is in the list too (one list for every replica): A must ignore it
    const aPort = await new Promise<number>((r) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => r(port));
      });
    });
    a = await fixture({
      config: {
        peers: {
          urls: [bUrl, dead, new URL(`http://127.0.0.1:${refused}/`), new URL(`http://127.0.0.1:${aPort}/`)],
          timeoutMs: TIMEOUT,
        },
      },
    });
    await a.app.listen({ port: aPort, host: '127.0.0.1' });
  });
  after(async () => {
    for (const s of held) s.destroy();
    silent.close();
    await a.close();
    await b.close();
  });

  test('a PUT on one replica drops the key on its peers at once; the client waits for none of them', async () => {
    const v1 = await makeImage('png', 120, 80, 1);
    const v2 = await makeImage('png', 120, 80, 90);
    // B decoded the key earlier (it owned it during a failover)
    assert.equal((await b.app.inject({ method: 'PUT', url: '/v1/sources/k.png', body: v1 })).statusCode, 201);
    assert.ok(b.cache.has('small', 'k.png'));
    const before = await purges(a);

    const t0 = Date.now();
    const put = await a.app.inject({ method: 'PUT', url: '/v1/sources/k.png', body: v2 });
    const took = Date.now() - t0;
    assert.equal(put.statusCode, 201);
    assert.ok(took < TIMEOUT, `the client's PUT took ${took} ms: it waited for a peer`);

    const seen = await until('B dropped k.png', 1000, () => !b.cache.has('small', 'k.png'));
    assert.ok(seen < TIMEOUT, `B saw the purge after ${seen} ms`);
    // the writer's own entries survive the purge it sent itself
    await until('every purge done', TIMEOUT + 1000, async () => {
      const p = await purges(a);
      return p.ok + p.failed - (before.ok + before.failed) === 4;
    });
    assert.ok(a.cache.has('small', 'k.png') && a.cache.has('box', 'k.png'));
    const p = await purges(a);
    // B and A itself answered 204; the silent peer timed out and the refused one failed
    assert.equal(p.ok - before.ok, 2);
    assert.equal(p.failed - before.failed, 2);
    // B's source stays as B had it: the purge drops cached entries only
    assert.equal((await b.app.inject({ method: 'GET', url: '/v1/sources/k.png' })).statusCode, 200);
  });

  test('a DELETE fans out too; a failed PUT or DELETE sends nothing', async () => {
    await b.app.inject({ method: 'PUT', url: '/v1/sources/d.png', body: await makeImage('png', 60, 40, 5) });
    await a.app.inject({ method: 'PUT', url: '/v1/sources/d.png', body: await makeImage('png', 60, 40, 5) });
    await b.app.inject({ method: 'GET', url: '/v1/pixels/small/d.png' });
    assert.ok(b.cache.has('small', 'd.png'));
    await new Promise((r) => setTimeout(r, TIMEOUT + 200)); // the PUT's fan-out is over
    const p0 = await purges(a);
    const missing = await a.app.inject({ method: 'DELETE', url: '/v1/sources/none.png' });
    assert.equal(missing.statusCode, 404);
    const empty = await a.app.inject({ method: 'PUT', url: '/v1/sources/e.png', body: '' });
    assert.equal(empty.statusCode, 400);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await purges(a), p0);

    assert.equal((await a.app.inject({ method: 'DELETE', url: '/v1/sources/d.png' })).statusCode, 204);
    await until('B dropped d.png', TIMEOUT, () => !b.cache.has('small', 'd.png'));
  });
});
