// Error codes that need a particular server state: read-only, closed, draining, a full table,
// an encoder failure. Each must come back as the registry's status and JSON shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, addSource, makeImage, errorOf } from './helpers.js';
import { ImageCache } from '../../src/cache.js';
import { buildApp } from '../../src/http/app.js';

test('READ_ONLY: uploads, deletes and misses on a read-only cache are 405', async () => {
  const w = await fixture();
  await addSource(w, 'a.png', await makeImage('png'));
  await addSource(w, 'b.png', await makeImage('png', 50, 40));
  assert.equal((await w.app.inject('/v1/pixels/small/a.png')).statusCode, 200);
  await w.app.close();
  await w.cache.close();
  const cache = await ImageCache.open({ storage: w.dir, formats: w.config.formats, readOnly: true });
  const app = await buildApp({ cache, config: { ...w.config, readOnly: true }, logger: false });
  try {
    assert.equal((await app.inject('/v1/pixels/small/a.png')).statusCode, 200, 'hits are served');
    for (const r of [
      await app.inject({ method: 'PUT', url: '/v1/sources/c.png', payload: await makeImage('png') }),
      await app.inject({ method: 'DELETE', url: '/v1/sources/a.png' }),
      await app.inject('/v1/pixels/small/b.png'),
    ]) {
      assert.equal(r.statusCode, 405);
      assert.equal(errorOf(r.body).code, 'READ_ONLY');
    }
    const h = (await app.inject('/healthz')).json() as { checks: { storage: string } };
    assert.ok(h.checks.storage.length > 0);
  } finally {
    await app.close();
    await cache.close();
    await w.close();
  }
});

test('CACHE_CLOSED: requests after the cache closed are 503 with Retry-After', async () => {
  const f = await fixture();
  await addSource(f, 'a.png', await makeImage('png'));
  await f.cache.close();
  const r = await f.app.inject('/v1/pixels/small/a.png');
  assert.equal(r.statusCode, 503);
  assert.equal(errorOf(r.body).code, 'CACHE_CLOSED');
  assert.ok(r.headers['retry-after']);
  await f.app.close();
});

test('SHUTTING_DOWN: while draining, hits are served but misses and uploads are refused', async () => {
  const f = await fixture();
  try {
    await addSource(f, 'hit.png', await makeImage('png'));
    await addSource(f, 'miss.png', await makeImage('png', 30, 30));
    assert.equal((await f.app.inject('/v1/pixels/small/hit.png')).statusCode, 200);
    f.app.pixtable.ready = false;
    assert.equal((await f.app.inject('/v1/pixels/small/hit.png')).statusCode, 200);
    const miss = await f.app.inject('/v1/pixels/small/miss.png');
    assert.equal(miss.statusCode, 503);
    assert.equal(errorOf(miss.body).code, 'SHUTTING_DOWN');
    const put = await f.app.inject({
      method: 'PUT',
      url: '/v1/sources/x.png',
      payload: await makeImage('png'),
    });
    assert.equal(errorOf(put.body).code, 'SHUTTING_DOWN');
  } finally {
    f.app.pixtable.ready = true;
    await f.close();
  }
});

test('TABLE_FULL: a one-entry table whose entry is pinned cannot take another', async () => {
  const f = await fixture({
    config: { formats: [{ name: 'one', width: 8, height: 8, maxCount: 1 }] },
  });
  try {
    await addSource(f, 'a.png', await makeImage('png'));
    await addSource(f, 'b.png', await makeImage('png', 30, 30));
    const pinnedView = await f.cache.get('one', 'a.png'); // a reader holds the only slot
    const r = await f.app.inject('/v1/pixels/one/b.png');
    pinnedView.release();
    assert.equal(r.statusCode, 503);
    assert.equal(errorOf(r.body).code, 'TABLE_FULL');
    assert.equal((await f.app.inject('/v1/pixels/one/b.png')).statusCode, 200, 'served once the pin is gone');
  } finally {
    await f.close();
  }
});

test('INTERNAL: an unexpected failure is 500 with the generic message only', async () => {
  const f = await fixture({
    encode: async () => {
      throw new Error('secret internal detail /etc/something');
    },
  });
  try {
    await addSource(f, 'a.png', await makeImage('png'));
    const r = await f.app.inject('/v1/thumbnails/small/a.png?type=png');
    assert.equal(r.statusCode, 500);
    assert.deepEqual(JSON.parse(r.body), { error: { code: 'INTERNAL', message: 'Internal error' } });
    assert.equal(f.cache.stats().formats.find((s) => s.format === 'small')?.pinned, 0);
    assert.equal((await f.app.inject('/v1/pixels/small/a.png')).statusCode, 200, 'still serving');
  } finally {
    await f.close();
  }
});
