// Variants over real sockets: a repeated variant hit is answered by the hit shortcut (through the
// lane when it is on) with the route's bytes and headers, and stops being answered from memory once
// the master entry changes; URLs that ask for a Client Hint always reach the route.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { makeImage } from '../http/helpers.js';
import { start, request } from '../http/net-helpers.js';
import type { FormatSpec } from '../../src/formats.js';

type Server = Awaited<ReturnType<typeof start>>;
const FORMATS: FormatSpec[] = [
  { name: 'small', width: 64, height: 64, fit: 'cover', family: 'f' },
  { name: 'big', width: 256, height: 256, fit: 'inside', family: 'f' },
];

async function put(s: Server, key: string, body: Buffer): Promise<void> {
  const r = await request(s.url, `/v1/sources/${key}`, { method: 'PUT', body });
  assert.ok(r.status === 201 || r.status === 200, `PUT ${key}: ${r.status}`);
}

for (const fastLane of [true, false]) {
  describe(fastLane ? 'fast lane on' : 'fast lane off', () => {
    let s: Server;
    before(async () => {
      s = await start({ formats: FORMATS, fastLane });
    });
    after(() => s.done());

    test('a repeated variant hit is the shortcut’s, with the same bytes and headers', async () => {
      await put(s, 'a.png', await makeImage('png', 300, 200, 1));
      const url = '/v1/thumbnails/big/a.png?w=120&type=webp';
      const first = await request(s.url, url); // the route: encodes the variant
      assert.equal(first.status, 200);
      const m = await sharp(first.body).metadata();
      assert.deepEqual([m.width, m.height], [128, 86]);
      const before = s.app.pixtable.shortcutResponses;
      const lane = s.app.pixtable.laneResponses;
      for (let i = 0; i < 3; i++) {
        const r = await request(s.url, url);
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(first.body));
        assert.equal(r.headers.etag, first.headers.etag);
        assert.equal(r.headers['accept-ch'], 'Sec-CH-DPR, Sec-CH-Width');
        assert.equal(r.headers.vary, undefined);
      }
      const nm = await request(s.url, url, { headers: { 'if-none-match': String(first.headers.etag) } });
      assert.equal(nm.status, 304);
      assert.equal(s.app.pixtable.shortcutResponses, before + 4);
      assert.equal(s.app.pixtable.laneResponses - lane, fastLane ? 4 : 0);

      // negotiated: remembered per Accept, with Vary: Accept
      const neg = `/v1/thumbnails/small/a.png?w=32&dpr=2`;
      const webp = { accept: 'image/webp' };
      const a = await request(s.url, neg, { headers: webp });
      const b = await request(s.url, neg, { headers: webp });
      const png = await request(s.url, neg, { headers: { accept: 'image/png' } });
      assert.equal(b.headers['content-type'], 'image/webp');
      assert.equal(b.headers.vary, 'Accept');
      assert.ok(a.body.equals(b.body));
      assert.equal(png.headers['content-type'], 'image/png');
      assert.equal(s.app.pixtable.shortcutResponses, before + 5);
    });

    test('a rewritten source is never answered with the old variant', async () => {
      await put(s, 'b.png', await makeImage('png', 300, 200, 2));
      const url = '/v1/thumbnails/big/b.png?w=64&type=png';
      await request(s.url, url);
      const old = await request(s.url, url);
      await put(s, 'b.png', await makeImage('png', 200, 300, 3));
      const r = await request(s.url, url);
      assert.equal(r.status, 200);
      assert.notEqual(r.headers.etag, old.headers.etag);
      const m = await sharp(r.body).metadata();
      assert.deepEqual([m.width, m.height], [64, 96]); // the new source is portrait
    });

    test('Client Hint URLs are answered by the route, every time, by the hint', async () => {
      await put(s, 'c.png', await makeImage('png', 300, 300, 4));
      const url = '/v1/thumbnails/big/c.png?w=auto&type=png';
      const before = s.app.pixtable.shortcutResponses;
      for (const [hint, side] of [
        ['100', 128],
        ['100', 128],
        ['30', 32],
      ] as const) {
        const r = await request(s.url, url, { headers: { 'sec-ch-width': hint } });
        assert.equal(r.status, 200);
        assert.equal(r.headers.vary, 'Sec-CH-Width');
        const m = await sharp(r.body).metadata();
        assert.equal(m.width, side, hint);
      }
      assert.equal(s.app.pixtable.shortcutResponses, before);
    });
  });
}
