// Sources in an S3-compatible bucket, against a real S3-protocol server (s3rver on loopback): a
// miss reads the object and decodes once, uploads and deletes through pixtable reach the bucket,
// and an object replaced in the bucket behind pixtable's back is re-decoded once `revalidateMs`
// has passed — not before. Bad store responses are in s3-bad-responses.test.ts.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ImageCache } from '../../src/cache.js';
import type { OpenOptions, S3SourceOptions } from '../../src/types.js';
import { fixture, makeImage, errorOf, TEST_FORMATS } from '../http/helpers.js';
import { requireComponent } from '../helpers/requires.js';
import { loadS3rver, pixelsOf, startS3rver, type TestBucket } from '../helpers/s3.js';
import { solidPng } from '../helpers/fixtures.js';
import { cleanEnv, startChild, stopChild } from './cli-fixtures.js';
import { request } from '../http/net-helpers.js';

const skip = requireComponent(
  's3rver',
  loadS3rver() !== undefined,
  'npm install (s3rver is a devDependency)',
);

let s3: TestBucket;
const dirs: string[] = [];

async function tmpStorage(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-s3-'));
  dirs.push(d);
  return d;
}

function s3Options(extra: Partial<S3SourceOptions> = {}): S3SourceOptions {
  return { bucket: s3.bucket, endpoint: s3.endpoint, prefix: 'srcs', timeoutMs: 5000, ...extra };
}

async function open(storage: string, extra: Partial<OpenOptions> = {}): Promise<ImageCache> {
  return ImageCache.open({ storage, formats: TEST_FORMATS, s3: s3Options(), ...extra });
}

const decodes = (cache: ImageCache): number => cache.stats().formats[0]!.decodes;

after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

test('@aws-sdk/client-s3 is loaded only when a bucket is configured', async () => {
  // A resolve hook in a fresh process refuses the SDK: a local open must never ask for it, and an
  // open with a bucket must (which also proves the hook sees the import).
  const hooks = `export async function resolve(spec, ctx, next) {
    if (spec.includes('@aws-sdk/client-s3')) throw new Error('client-s3 was loaded');
    return next(spec, ctx);
  }`;
  const storage = await tmpStorage();
  const cacheModule = new URL('../../src/cache.js', import.meta.url).href;
  const program = `
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
    const { ImageCache } = await import(${JSON.stringify(cacheModule)});
    const formats = [{ name: 'f', width: 8, height: 8 }];
    const local = await ImageCache.open({ storage: ${JSON.stringify(storage + '/a')}, formats });
    await local.close();
    console.log('local open: ok');
    try {
      await ImageCache.open({ storage: ${JSON.stringify(storage + '/b')}, formats, s3: { bucket: 'abc', endpoint: 'http://127.0.0.1:9' } });
    } catch (e) {
      console.log('s3 open: ' + e.message);
    }`;
  const r = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', program], {
    env: cleanEnv(),
    timeout: 60_000,
  });
  assert.match(r.stdout, /local open: ok\ns3 open: client-s3 was loaded/, r.stdout + r.stderr);
});

describe('sources in S3 (s3rver)', { skip }, () => {
  before(async () => {
    s3 = await startS3rver();
  });
  after(async () => {
    await s3?.close();
  });

  test('a miss reads the object from the bucket and decodes it once; a reopened cache does not decode', async () => {
    const png = await makeImage('png', 120, 80, 11);
    await s3.putObject('srcs/photos/cat.png', png);
    const storage = await tmpStorage();
    const cache = await open(storage);
    try {
      const first = await pixelsOf(cache, 'photos/cat.png');
      const again = await pixelsOf(cache, 'photos/cat.png');
      assert.ok(first.equals(again));
      assert.equal(decodes(cache), 1);
      assert.deepEqual(await cache.listSources(), ['photos/cat.png']);
      // nothing of the object stays on local disk: the download went after the decode
      assert.deepEqual(await fs.readdir(path.join(storage, 'sources', '.tmp')), []);
      await assert.rejects(cache.get('small', 'photos/none.png'), { code: 'SOURCE_NOT_FOUND' });
    } finally {
      await cache.close();
    }
    const reopened = await open(storage);
    try {
      assert.ok(
        (await pixelsOf(reopened, 'photos/cat.png')).equals(await pixelsOf(reopened, 'photos/cat.png')),
      );
      assert.equal(decodes(reopened), 0, 'the table held it: confirmed by a HEAD, not decoded again');
    } finally {
      await reopened.close();
    }
  });

  test('PUT through pixtable lands in the bucket, GET serves it back, DELETE removes it', async () => {
    const f = await fixture({ open: { s3: s3Options() } });
    try {
      const png = await makeImage('png', 100, 70, 21);
      const put = await f.app.inject({ method: 'PUT', url: '/v1/sources/up/new.png', payload: png });
      assert.equal(put.statusCode, 201, put.body);
      assert.ok((await s3.getObject('srcs/up/new.png'))?.equals(png), 'the object holds the uploaded bytes');
      assert.equal(await fs.stat(path.join(f.dir, 'sources', 'up', 'new.png')).catch(() => null), null);
      const again = await f.app.inject({ method: 'PUT', url: '/v1/sources/up/new.png', payload: png });
      assert.equal(again.statusCode, 200, 'a replacement says so');
      const got = await f.app.inject({ method: 'GET', url: '/v1/sources/up/new.png' });
      assert.equal(got.statusCode, 200);
      assert.ok(got.rawPayload.equals(png));
      assert.equal(got.headers['content-type'], 'image/png');
      const raw = await f.app.inject({ method: 'GET', url: '/v1/pixels/small/up/new.png' });
      assert.equal(raw.statusCode, 200);
      assert.equal(f.cache.stats().formats[0]!.decodes, 2, 'decoded by each upload, not by the read');
      const del = await f.app.inject({ method: 'DELETE', url: '/v1/sources/up/new.png' });
      assert.equal(del.statusCode, 204);
      assert.equal(await s3.headObject('srcs/up/new.png'), false);
      const gone = await f.app.inject({ method: 'GET', url: '/v1/pixels/small/up/new.png' });
      assert.equal(gone.statusCode, 404);
      assert.equal(errorOf(gone.body).code, 'SOURCE_NOT_FOUND');
      const twice = await f.app.inject({ method: 'DELETE', url: '/v1/sources/up/new.png' });
      assert.equal(twice.statusCode, 404);
    } finally {
      await f.close();
    }
  });

  test('an object replaced in the bucket directly is served with new pixels after revalidateMs, not before', async () => {
    const bound = 600;
    const cache = await open(await tmpStorage(), { revalidateMs: bound });
    try {
      await s3.putObject('srcs/swap.png', await makeImage('png', 120, 80, 31));
      const a = await pixelsOf(cache, 'swap.png');
      await s3.putObject('srcs/swap.png', await makeImage('png', 120, 80, 32));
      // within the bound: the held entry, no HEAD, no decode
      assert.ok((await pixelsOf(cache, 'swap.png')).equals(a));
      const view = cache.peek('small', 'swap.png');
      assert.ok(view && Buffer.from(view.pixels).equals(a));
      view.release();
      assert.equal(decodes(cache), 1);
      await sleep(bound + 50);
      const b = await pixelsOf(cache, 'swap.png');
      assert.ok(!b.equals(a), 'new pixels after the bound');
      assert.equal(decodes(cache), 2);
      // unchanged past the bound: one HEAD confirms it, no decode
      await sleep(bound + 50);
      assert.ok((await pixelsOf(cache, 'swap.png')).equals(b));
      assert.equal(decodes(cache), 2);
      // peek() cannot wait for a HEAD: past the bound it misses and confirms in the background
      await sleep(bound + 50);
      assert.equal(cache.peek('small', 'swap.png'), undefined);
      let confirmed: ReturnType<ImageCache['peek']>;
      for (let i = 0; i < 100 && (confirmed = cache.peek('small', 'swap.png')) === undefined; i++)
        await sleep(20);
      assert.ok(confirmed, 'the background HEAD confirmed the unchanged object');
      assert.ok(Buffer.from(confirmed.pixels).equals(b));
      confirmed.release();
      // replaced again: peek() never serves the old entry past the bound, get() decodes the new one
      await s3.putObject('srcs/swap.png', await makeImage('png', 120, 80, 33));
      await sleep(bound + 50);
      assert.equal(cache.peek('small', 'swap.png'), undefined);
      await sleep(200);
      assert.equal(cache.peek('small', 'swap.png'), undefined, 'a changed object is not confirmed');
      const c = await pixelsOf(cache, 'swap.png');
      assert.ok(!c.equals(b));
      assert.equal(decodes(cache), 3);
      // deleted in the bucket: the entry goes after the bound
      await s3.deleteObject('srcs/swap.png');
      await sleep(bound + 50);
      await assert.rejects(cache.get('small', 'swap.png'), { code: 'SOURCE_NOT_FOUND' });
      assert.equal(cache.has('small', 'swap.png'), false);
    } finally {
      await cache.close();
    }
  });

  test('`pixtable serve --workers 2` on a bucket: misses, replacements, uploads and deletes through either worker', async () => {
    const storage = await tmpStorage();
    const bound = 500;
    await s3.putObject('w/key.png', await solidPng(40, 40, [200, 10, 10]));
    const { child, match } = await startChild(
      ['serve', '--workers', '2', '--port', '0', '--storage', storage, '--no-log-requests'],
      /"role":"supervisor","url":"([^"]+)"/,
      {
        env: {
          PIXTABLE_FORMATS: JSON.stringify(TEST_FORMATS),
          PIXTABLE_LOG_LEVEL: 'warn',
          PIXTABLE_S3_BUCKET: s3.bucket,
          PIXTABLE_S3_ENDPOINT: s3.endpoint,
          PIXTABLE_S3_PREFIX: 'w',
          PIXTABLE_REVALIDATE_MS: String(bound),
        },
        timeoutMs: 60_000,
      },
    );
    const url = match[1]!;
    // each request on a connection of its own, so the kernel hands them to either worker
    const get = (p: string) => request(url, p, { headers: { connection: 'close' } });
    const colour = (b: Buffer) => b.toString('hex', 0, 4);
    try {
      for (let i = 0; i < 6; i++) {
        const r = await get('/v1/pixels/small/key.png');
        assert.equal(r.status, 200, r.body.toString());
        assert.equal(colour(r.body), 'c80a0aff');
      }
      await s3.putObject('w/key.png', await solidPng(40, 40, [10, 200, 10]));
      await sleep(bound + 100);
      for (let i = 0; i < 6; i++) {
        const r = await get('/v1/pixels/small/key.png');
        assert.equal(colour(r.body), '0ac80aff', `request ${i} after the bound`);
      }
      const png = await solidPng(40, 40, [10, 10, 200]);
      const put = await request(url, '/v1/sources/up.png', { method: 'PUT', body: png });
      assert.equal(put.status, 201, put.body.toString());
      assert.ok((await s3.getObject('w/up.png'))?.equals(png));
      const del = await request(url, '/v1/sources/up.png', { method: 'DELETE' });
      assert.equal(del.status, 204);
      assert.equal(await s3.headObject('w/up.png'), false);
      for (let i = 0; i < 4; i++) assert.equal((await get('/v1/pixels/small/up.png')).status, 404);
    } finally {
      await stopChild(child);
    }
  });
});
