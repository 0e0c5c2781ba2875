// The fast path's URL memory is bounded in bytes (clients choose target and Accept lengths) and
// drops the least recently answered URL first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HotUrls, type Hot } from '../../src/http/hot.js';

const hot = (n: number) => ({ expiresAt: n }) as unknown as Hot;

test('long client-chosen targets cannot grow the memory past its byte budget', () => {
  const h = new HotUrls(10_000);
  const long = (i: number) => `/v1/pixels/f/k.png?exp=${String(i).padStart(1000, '0')}`;
  for (let i = 0; i < 100; i++) h.set(long(i), hot(i));
  assert.ok(h.bytes <= 10_000, `${h.bytes} bytes`);
  assert.ok(h.size < 10, `${h.size} URLs`);
  assert.equal(h.get(long(99))?.expiresAt, 99, 'the newest is kept');
  assert.equal(h.get(long(0)), undefined, 'the oldest went first');
});

test('a URL answered again stays while colder ones go', () => {
  const h = new HotUrls(1_000);
  const urls = Array.from({ length: 10 }, (_, i) => `/v1/pixels/f/${i}.png`);
  for (const [i, u] of urls.entries()) h.set(u, hot(i));
  const fits = h.size;
  assert.ok(fits >= 3 && fits < 10, `${fits} short URLs in 1000 bytes`);
  const hotUrl = urls[9 - fits + 1]!; // the oldest one still held
  assert.ok(h.get(hotUrl));
  h.set('/v1/pixels/f/new.png', hot(-1));
  assert.ok(h.get(hotUrl), 'recently answered: kept');
  assert.equal(h.get(urls[9 - fits + 2]!), undefined, 'the coldest went instead');
});
