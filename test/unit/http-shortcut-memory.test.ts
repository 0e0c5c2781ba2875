// The hit shortcut's URL memory is bounded in bytes (clients choose target and Accept lengths) and
// drops the least recently answered URL first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UrlMemory, type Remembered } from '../../src/http/shortcut-memory.js';

const memo = (n: number) => ({ expiresAt: n }) as unknown as Remembered;

test('long client-chosen targets cannot grow the memory past its byte budget', () => {
  const h = new UrlMemory(10_000);
  const long = (i: number) => `/v1/pixels/f/k.png?exp=${String(i).padStart(1000, '0')}`;
  for (let i = 0; i < 100; i++) h.set(long(i), memo(i));
  assert.ok(h.bytes <= 10_000, `${h.bytes} bytes`);
  assert.ok(h.size < 10, `${h.size} URLs`);
  assert.equal(h.get(long(99))?.expiresAt, 99, 'the newest is kept');
  assert.equal(h.get(long(0)), undefined, 'the oldest went first');
});

test('a URL answered again stays while colder ones go', () => {
  const h = new UrlMemory(1_000);
  const urls = Array.from({ length: 10 }, (_, i) => `/v1/pixels/f/${i}.png`);
  for (const [i, u] of urls.entries()) h.set(u, memo(i));
  const fits = h.size;
  assert.ok(fits >= 3 && fits < 10, `${fits} short URLs in 1000 bytes`);
  const warmUrl = urls[9 - fits + 1]!; // the oldest one still held
  assert.ok(h.get(warmUrl));
  h.set('/v1/pixels/f/new.png', memo(-1));
  assert.ok(h.get(warmUrl), 'recently answered: kept');
  assert.equal(h.get(urls[9 - fits + 2]!), undefined, 'the coldest went instead');
});
