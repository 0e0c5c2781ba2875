// A miss is parsed once and looked up once before it decodes, over real sockets with the lane on
// and off: the shortcut parses the target and finds no entry, then hands what it parsed to the
// route (target.ts), which neither parses again nor checks for a hit again before cache.get().
// The cache here counts the calls; `format()` is the URL parse's one call into the cache.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ImageCache } from '../../src/cache.js';
import { buildApp } from '../../src/http/app.js';
import type { PixelCache } from '../../src/http/cache-api.js';
import { defaultConfig } from '../../src/config/env.js';
import type { EntryRef } from '../../src/types.js';
import { signUrl } from '../../src/http/sign.js';
import { makeImage, TEST_FORMATS } from '../http/helpers.js';
import { request } from '../http/net-helpers.js';

interface Calls {
  format: number;
  peek: number;
  peekRef: number;
  get: number;
}

/** A real ImageCache behind the PixelCache interface, counting the lookups the server makes. */
class CountingCache implements PixelCache {
  calls: Calls = { format: 0, peek: 0, peekRef: 0, get: 0 };
  readonly current: (ref: EntryRef) => boolean;
  constructor(readonly inner: ImageCache) {
    this.current = (ref) => inner.current(ref);
  }
  reset(): void {
    this.calls = { format: 0, peek: 0, peekRef: 0, get: 0 };
  }
  get storage() {
    return this.inner.storage;
  }
  get sourcesDir() {
    return this.inner.sourcesDir;
  }
  get readOnly() {
    return this.inner.readOnly;
  }
  get formats() {
    return this.inner.formats;
  }
  format(name: string) {
    this.calls.format++;
    return this.inner.format(name);
  }
  get(format: string, key: string) {
    this.calls.get++;
    return this.inner.get(format, key);
  }
  peek(format: string, key: string) {
    this.calls.peek++;
    return this.inner.peek(format, key);
  }
  peekRef(format: string, key: string) {
    this.calls.peekRef++;
    return this.inner.peekRef(format, key);
  }
  pinRef(ref: EntryRef) {
    return this.inner.pinRef(ref);
  }
  unpinRef(ref: EntryRef) {
    this.inner.unpinRef(ref);
  }
  has(format: string, key: string) {
    return this.inner.has(format, key);
  }
  sourceExists(key: string) {
    return this.inner.sourceExists(key);
  }
  info(key: string) {
    return this.inner.info(key);
  }
  put(key: string, bytes: Buffer) {
    return this.inner.put(key, bytes);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  purge(key: string) {
    return this.inner.purge(key);
  }
  openSource(key: string) {
    return this.inner.openSource(key);
  }
  listSources() {
    return this.inner.listSources();
  }
  stats() {
    return this.inner.stats();
  }
  close() {
    return this.inner.close();
  }
}

const KEY = { key: Buffer.alloc(32, 4), salt: Buffer.from('once') };

for (const fastLane of [true, false]) {
  for (const signed of [false, true]) {
    describe(`lane ${fastLane ? 'on' : 'off'}${signed ? ', signed URLs' : ''}`, () => {
      let dir: string;
      let cache: CountingCache;
      let app: FastifyInstance;
      let base: string;
      let n = 0;
      const sign = (p: string) => (signed ? signUrl(p, KEY) : p);

      before(async () => {
        dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-once-'));
        const config = defaultConfig({
          storage: dir,
          formats: TEST_FORMATS,
          logRequests: false,
          fastLane,
          signingKeys: signed ? [KEY] : [],
        });
        cache = new CountingCache(await ImageCache.open({ storage: dir, formats: config.formats }));
        app = await buildApp({ cache, config, logger: false });
        base = await app.listen({ port: 0, host: '127.0.0.1' });
      });
      after(async () => {
        await app.close();
        await cache.close();
        await fs.rm(dir, { recursive: true, force: true });
      });

      /** A source written straight into sources/, so that its first request is a miss. */
      async function freshSource(): Promise<string> {
        const key = `s${n++}.png`;
        await fs.writeFile(path.join(cache.sourcesDir, key), await makeImage('png', 90, 60, n));
        return key;
      }
      const decodes = () => cache.stats().formats.reduce((sum, f) => sum + f.decodes, 0);
      const delegated = () => app.pixtable.lane?.delegated ?? 0;

      /** One request over a fresh connection; returns what it cost in cache calls. */
      async function costOf(p: string, headers: Record<string, string> = {}, status = 200) {
        cache.reset();
        const d0 = delegated();
        const r = await request(base, sign(p), { headers });
        assert.equal(r.status, status, `${p}: ${r.body.toString().slice(0, 200)}`);
        if (fastLane) assert.equal(delegated() - d0, 1, `${p}: the lane passed it on to Node`);
        return cache.calls;
      }

      test('a pixels miss: one parse, one peekRef in the shortcut, one get() in the route', async () => {
        const key = await freshSource();
        const d0 = decodes();
        const calls = await costOf(`/v1/pixels/small/${key}`);
        assert.equal(decodes() - d0, 1, 'it was a miss: decoded');
        assert.deepEqual(calls, { format: 1, peek: 0, peekRef: 1, get: 1 });
      });

      test('thumbnail misses, typed and negotiated: the same', async () => {
        for (const [q, headers] of [
          ['?type=webp', {}],
          ['', { Accept: 'image/webp,*/*;q=0.8' }],
        ] as const) {
          const key = await freshSource();
          const d0 = decodes();
          const calls = await costOf(`/v1/thumbnails/small/${key}${q}`, headers);
          assert.equal(decodes() - d0, 1, `${q}: decoded`);
          assert.deepEqual(calls, { format: 1, peek: 0, peekRef: 1, get: 1 }, q || 'Accept');
        }
      });

      test('a Range or a rect on a miss: parsed once, looked up only by the route’s get()', async () => {
        const a = await freshSource();
        assert.deepEqual(await costOf(`/v1/pixels/small/${a}`, { Range: 'bytes=0-9' }, 206), {
          format: 1,
          peek: 0,
          peekRef: 0,
          get: 1,
        });
        const b = await freshSource();
        assert.deepEqual(await costOf(`/v1/pixels/small/${b}?rect=0,0,4,4`), {
          format: 1,
          peek: 0,
          peekRef: 0,
          get: 1,
        });
      });

      test('then hits: the first one parses and finds the entry, the next ones parse nothing; a Range is routed', async () => {
        const key = await freshSource();
        const p = `/v1/pixels/small/${key}`;
        await costOf(p);
        const before = app.pixtable.shortcutResponses;
        cache.reset();
        assert.equal((await request(base, sign(p))).status, 200);
        assert.deepEqual(cache.calls, { format: 1, peek: 0, peekRef: 1, get: 0 });
        cache.reset();
        assert.equal((await request(base, sign(p))).status, 200);
        assert.deepEqual(cache.calls, { format: 0, peek: 0, peekRef: 0, get: 0 });
        assert.equal(app.pixtable.shortcutResponses - before, 2, 'both answered by the shortcut');
        // a Range on the remembered URL is the route's, from one parse and one get()
        assert.deepEqual(await costOf(p, { Range: 'bytes=0-9' }, 206), {
          format: 1,
          peek: 0,
          peekRef: 0,
          get: 1,
        });
      });

      test('inject() never meets the shortcut: the route parses, and looks up once', async () => {
        const key = await freshSource();
        cache.reset();
        const r = await app.inject(sign(`/v1/pixels/small/${key}`));
        assert.equal(r.statusCode, 200);
        assert.deepEqual(cache.calls, { format: 1, peek: 0, peekRef: 0, get: 1 });
      });
    });
  }
}
