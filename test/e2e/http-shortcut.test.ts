// The hit shortcut remembers answered URLs (src/http/shortcut-memory.ts). These tests check, over real sockets,
// that a remembered URL is answered from the remembered entry only while it is still the entry:
// after a rewrite, a delete, a Range request, another Accept or a signed URL's expiry the answer
// is what the full path would give, never the remembered bytes.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeImage } from '../http/helpers.js';
import { start, request, pinned } from '../http/net-helpers.js';
import { signUrl } from '../../src/http/sign.js';

type Server = Awaited<ReturnType<typeof start>>;
const FORMATS = [{ name: 'small', width: 64, height: 64 }];

async function put(srv: Server, key: string, body: Buffer, signed?: (p: string) => string) {
  const p = `/v1/sources/${key}`;
  const r = await request(srv.url, signed ? signed(p) : p, { method: 'PUT', body });
  assert.ok(r.status === 201 || r.status === 200, `PUT ${key}: ${r.status} ${r.body.toString()}`);
}

for (const fastLane of [true, false]) {
  describe(fastLane ? 'fast lane on' : 'fast lane off (PIXTABLE_FAST_LANE=false)', () => {
    let s: Server;
    before(async () => {
      s = await start({ formats: FORMATS, fastLane });
    });
    after(() => s.done());

    /** Hits reach the lane when it is on, and never when it is off. */
    function checkLane(laneBefore: number, hits: number) {
      assert.equal(s.app.pixtable.laneResponses - laneBefore, fastLane ? hits : 0);
    }

    /** The entry's bytes as the library sees them now. */
    async function libraryBytes(key: string): Promise<Buffer> {
      using v = await s.cache.get('small', key);
      return Buffer.from(v.pixels);
    }

    test('repeated hits are answered by the shortcut with the entry’s bytes', async () => {
      await put(s, 'a.png', await makeImage('png', 120, 80, 1));
      const first = await request(s.url, '/v1/pixels/small/a.png'); // a miss: decoded by the route
      assert.equal(first.status, 200);
      const before = s.app.pixtable.shortcutResponses;
      const lane = s.app.pixtable.laneResponses;
      for (let i = 0; i < 3; i++) {
        const r = await request(s.url, '/v1/pixels/small/a.png');
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(first.body));
        assert.equal(r.headers.etag, first.headers.etag);
      }
      assert.equal(s.app.pixtable.shortcutResponses, before + 3);
      checkLane(lane, 3);
      assert.ok(first.body.equals(await libraryBytes('a.png')));
      assert.equal(pinned(s), 0, 'bodies the socket took at once leave nothing pinned');
    });

    test('a remembered URL follows a rewritten source, then a deleted one', async () => {
      await put(s, 'b.png', await makeImage('png', 120, 80, 2));
      await request(s.url, '/v1/pixels/small/b.png');
      const old = await request(s.url, '/v1/pixels/small/b.png');
      await put(s, 'b.png', await makeImage('png', 120, 80, 99));
      const now = await request(s.url, '/v1/pixels/small/b.png');
      assert.equal(now.status, 200);
      assert.notEqual(now.headers.etag, old.headers.etag);
      assert.ok(!now.body.equals(old.body));
      assert.ok(now.body.equals(await libraryBytes('b.png')));
      const again = await request(s.url, '/v1/pixels/small/b.png');
      assert.ok(again.body.equals(now.body));

      assert.equal((await request(s.url, '/v1/sources/b.png', { method: 'DELETE' })).status, 204);
      const gone = await request(s.url, '/v1/pixels/small/b.png');
      assert.equal(gone.status, 404);
      assert.equal(
        (JSON.parse(gone.body.toString()) as { error: { code: string } }).error.code,
        'SOURCE_NOT_FOUND',
      );
    });

    test('Range, If-None-Match and HEAD on a remembered URL', async () => {
      await put(s, 'c.png', await makeImage('png', 120, 80, 3));
      await request(s.url, '/v1/pixels/small/c.png');
      const full = await request(s.url, '/v1/pixels/small/c.png');
      const range = await request(s.url, '/v1/pixels/small/c.png', { headers: { Range: 'bytes=10-19' } });
      assert.equal(range.status, 206);
      assert.ok(range.body.equals(full.body.subarray(10, 20)));
      const before = s.app.pixtable.shortcutResponses;
      const lane = s.app.pixtable.laneResponses;
      const nm = await request(s.url, '/v1/pixels/small/c.png', {
        headers: { 'If-None-Match': `"nope", ${String(full.headers.etag)}` },
      });
      assert.equal(nm.status, 304);
      assert.equal(nm.headers.etag, full.headers.etag);
      const other = await request(s.url, '/v1/pixels/small/c.png', {
        headers: { 'if-none-match': '"nope"' },
      });
      assert.equal(other.status, 200);
      const head = await request(s.url, '/v1/pixels/small/c.png', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(full.body.length));
      assert.equal(head.body.length, 0);
      assert.equal(s.app.pixtable.shortcutResponses, before + 3);
      checkLane(lane, 3);
    });

    test('one thumbnail URL, two Accept headers: each gets its own type', async () => {
      await put(s, 'd.png', await makeImage('png', 120, 80, 4));
      const url = '/v1/thumbnails/small/d.png';
      for (let round = 0; round < 3; round++) {
        for (const [accept, type] of [
          ['image/webp,*/*;q=0.8', 'image/webp'],
          ['image/png', 'image/png'],
        ] as const) {
          const r = await request(s.url, url, { headers: { Accept: accept } });
          assert.equal(r.status, 200, `${accept} round ${round}`);
          assert.equal(r.headers['content-type'], type, `${accept} round ${round}`);
          assert.equal(r.headers.vary, 'Accept');
        }
      }
      const typed = await request(s.url, `${url}?type=jpeg`, { headers: { Accept: 'image/webp' } });
      assert.equal(typed.headers['content-type'], 'image/jpeg');
      assert.equal(typed.headers.vary, undefined);
    });

    test('a remembered signed URL stops working when it expires', async () => {
      const key = { key: Buffer.alloc(32, 5), salt: Buffer.from('salt') };
      // revalidation far away, so that only the expiry can end the remembered answer
      const t = await start({ formats: FORMATS, signingKeys: [key], revalidateMs: 600_000, fastLane });
      try {
        await put(t, 'e.png', await makeImage('png'), (p) => signUrl(p, key, 'PUT'));
        const exp = Math.ceil(Date.now() / 1000) + 1;
        const url = signUrl(`/v1/pixels/small/e.png?exp=${exp}`, key);
        assert.equal((await request(t.url, url)).status, 200);
        const before = t.app.pixtable.shortcutResponses;
        assert.equal((await request(t.url, url)).status, 200);
        assert.equal(t.app.pixtable.shortcutResponses, before + 1, 'remembered');
        await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
        const late = await request(t.url, url);
        assert.equal(late.status, 403);
        assert.equal(
          (JSON.parse(late.body.toString()) as { error: { code: string } }).error.code,
          'SIGNATURE_EXPIRED',
        );
      } finally {
        await t.done();
      }
    });
  });
}
