import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, addSource, makeImage, errorOf, type Fixture } from './helpers.js';
import { describeFormat, validateFormats } from '../../src/formats.js';
import { TEST_FORMATS } from './helpers.js';

let f: Fixture;
before(async () => {
  f = await fixture();
});
after(() => f.close());

test('GET /v1/formats lists the configured formats with stride', async () => {
  const r = await f.app.inject('/v1/formats');
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers['content-type']), /application\/json/);
  // each format's description, then what its table costs (stats() of the same cache)
  const use = f.cache.stats().formats;
  assert.deepEqual(
    r.json(),
    validateFormats(TEST_FORMATS).map((x, i) => ({
      ...describeFormat(x),
      entryBytes: use[i]!.entryBytes,
      entries: use[i]!.entries,
      capacity: { entries: use[i]!.capacity, bytes: use[i]!.capacityBytes },
      diskBytes: use[i]!.diskBytes,
    })),
  );
  const small = (r.json() as { name: string; stride: number; maxCount: number }[])[0];
  assert.equal(small?.stride, 128);
  assert.equal(small?.maxCount, 10_000);
});

test('/healthz checks sharp and a real write to storage', async () => {
  const r = await f.app.inject('/healthz');
  assert.equal(r.statusCode, 200);
  const j = r.json() as { status: string; checks: Record<string, string> };
  assert.equal(j.status, 'ok');
  assert.match(j.checks.sharp ?? '', /^ok/);
  assert.match(j.checks.storage ?? '', /^ok/);
});

test('/readyz is 200, and 503 with Retry-After once shutdown starts', async () => {
  assert.equal((await f.app.inject('/readyz')).statusCode, 200);
  f.app.pixtable.ready = false;
  try {
    const r = await f.app.inject('/readyz');
    assert.equal(r.statusCode, 503);
    assert.equal(r.headers['retry-after'], '1');
  } finally {
    f.app.pixtable.ready = true;
  }
});

test('/metrics exposes requests, hits/misses, decode histogram, queue, mapped, pinned, encoded bytes', async () => {
  await addSource(f, 'm.png', await makeImage('png'));
  await f.app.inject('/v1/pixels/small/m.png');
  await f.app.inject('/v1/pixels/small/m.png');
  await f.app.inject('/v1/thumbnails/small/m.png?type=png');
  await f.app.inject('/v1/pixels/small/none.png');
  const r = await f.app.inject('/metrics');
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers['content-type']), /text\/plain/);
  const t = r.body;
  assert.match(
    t,
    /pixtable_http_requests_total\{route="\/v1\/pixels\/:format\/\*",method="GET",status="200"\} 2/,
  );
  assert.match(
    t,
    /pixtable_http_requests_total\{route="\/v1\/pixels\/:format\/\*",method="GET",status="404"\} 1/,
  );
  assert.match(t, /pixtable_cache_hits_total\{format="small"\} [1-9]/);
  assert.match(t, /pixtable_cache_misses_total\{format="small"\} [1-9]/);
  assert.match(t, /pixtable_decode_duration_seconds_bucket/);
  assert.match(t, /pixtable_decode_queue_depth 0/);
  assert.match(t, /pixtable_mapped_bytes [1-9]/);
  assert.match(t, /pixtable_pinned_entries\{format="small"\} 0/);
  assert.match(t, /pixtable_encoded_cache_bytes [1-9]/);
});

test('unknown routes are 404 ROUTE_NOT_FOUND; wrong methods 405 with Allow', async () => {
  let r = await f.app.inject('/nope');
  assert.equal(r.statusCode, 404);
  assert.equal(errorOf(r.body).code, 'ROUTE_NOT_FOUND');
  r = await f.app.inject({ method: 'POST', url: '/v1/pixels/small/a.png' });
  assert.equal(r.statusCode, 405);
  assert.equal(r.headers.allow, 'GET, HEAD');
  assert.equal(errorOf(r.body).code, 'METHOD_NOT_ALLOWED');
  // GET of a source is the original's download now (issue 12 item 22); PATCH stays refused
  r = await f.app.inject({ method: 'PATCH', url: '/v1/sources/a.png' });
  assert.equal(r.statusCode, 405);
  assert.equal(r.headers.allow, 'GET, HEAD, PUT, DELETE');
});

test('/openapi.json documents every public route', async () => {
  const r = await f.app.inject('/openapi.json');
  assert.equal(r.statusCode, 200);
  const doc = r.json() as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.match(doc.openapi, /^3\./);
  for (const [p, m] of [
    ['/v1/formats', 'get'],
    ['/v1/pixels/{format}/{*}', 'get'],
    ['/v1/thumbnails/{format}/{*}', 'get'],
    ['/v1/sources/{*}', 'get'],
    ['/v1/sources/{*}', 'put'],
    ['/v1/sources/{*}', 'delete'],
    ['/v1/sources', 'get'],
    ['/healthz', 'get'],
    ['/readyz', 'get'],
  ] as const) {
    assert.ok(doc.paths[p]?.[m], `${m.toUpperCase()} ${p} in ${Object.keys(doc.paths).join(', ')}`);
  }
});

test('GET / is the web page, with its assets under /web/', async () => {
  const r = await f.app.inject('/');
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers['content-type']), /text\/html/);
  assert.match(r.body, /app\.js/);
  const js = await f.app.inject('/web/app.js');
  assert.equal(js.statusCode, 200);
  assert.match(String(js.headers['content-type']), /javascript/);
});

test('decode queue full → 503 QUEUE_FULL with Retry-After', async () => {
  const g = await (
    await import('./helpers.js')
  ).fixture({ open: { decode: { concurrency: 1, maxQueue: 0 } } });
  try {
    for (let i = 0; i < 4; i++) await addSource(g, `q${i}.png`, await makeImage('png', 400, 300, i));
    const rs = await Promise.all([0, 1, 2, 3].map((i) => g.app.inject(`/v1/pixels/small/q${i}.png`)));
    const full = rs.filter((r) => r.statusCode === 503);
    assert.ok(full.length >= 1, rs.map((r) => r.statusCode).join(','));
    assert.equal(errorOf(full[0]!.body).code, 'QUEUE_FULL');
    assert.equal(full[0]!.headers['retry-after'], '1');
    assert.ok(rs.some((r) => r.statusCode === 200));
  } finally {
    await g.close();
  }
});
