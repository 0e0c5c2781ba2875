import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ThumbCache,
  deriveEtag,
  encodedThumb,
  etagMatches,
  type EncodedThumb,
} from '../../src/http/thumbcache.js';

const thumb = (n: number): EncodedThumb => encodedThumb(Buffer.alloc(n), '"e"', 'image/webp', 'no-cache');

test('concurrent misses of one key encode once; the result is cached', async () => {
  const c = new ThumbCache(1 << 20);
  let calls = 0;
  const encode = async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 10));
    return thumb(100);
  };
  const all = await Promise.all([
    c.getOrEncode('k', encode),
    c.getOrEncode('k', encode),
    c.getOrEncode('k', encode),
  ]);
  assert.equal(calls, 1);
  assert.ok(all[0] === all[1] && all[1] === all[2]);
  assert.equal(c.get('k'), all[0]);
  await c.getOrEncode('k', encode);
  assert.equal(calls, 1);
});

test('bounded by bytes: old encodings are evicted', async () => {
  const c = new ThumbCache(10_000);
  for (let i = 0; i < 10; i++) await c.getOrEncode(`k${i}`, async () => thumb(3000));
  assert.ok(c.bytes <= 10_000, `bytes ${c.bytes}`);
  assert.equal(c.get('k0'), undefined);
  assert.ok(c.get('k9'));
});

test('a failed encode is not cached and is retried', async () => {
  const c = new ThumbCache(1 << 20);
  await assert.rejects(
    c.getOrEncode('k', async () => Promise.reject(new Error('boom'))),
    /boom/,
  );
  assert.equal((await c.getOrEncode('k', async () => thumb(1))).body.length, 1);
});

test('size 0 disables caching', async () => {
  const c = new ThumbCache(0);
  let calls = 0;
  await c.getOrEncode('k', async () => (calls++, thumb(1)));
  await c.getOrEncode('k', async () => (calls++, thumb(1)));
  assert.equal(calls, 2);
});

test('etags: derived per type, matched weakly, with lists and *', () => {
  assert.equal(deriveEtag('"abc-thumb-1"', 'webp'), '"abc-thumb-1-webp"');
  assert.equal(deriveEtag('W/"x"', 'png'), 'W/"x-png"');
  assert.equal(deriveEtag('bare', 'png'), '"bare-png"');
  assert.ok(etagMatches('"a"', '"a"'));
  assert.ok(etagMatches('"x", "a"', '"a"'));
  assert.ok(etagMatches('W/"a"', '"a"'));
  assert.ok(etagMatches('*', '"a"'));
  assert.ok(!etagMatches('"b"', '"a"'));
  assert.ok(!etagMatches(undefined, '"a"'));
});
