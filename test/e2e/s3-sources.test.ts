// Sources in an S3-compatible bucket, against a real S3-protocol server (s3rver on loopback): a
// miss reads the object and decodes once, uploads and deletes through pixtable reach the bucket,
// and an object replaced in the bucket behind pixtable's back is re-decoded once `revalidateMs`
// has passed — not before. Bad store responses are in s3-bad-responses.test.ts.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageCache } from '../../src/cache.js';
import type { OpenOptions, S3SourceOptions } from '../../src/types.js';
import { fixture, makeImage, errorOf, TEST_FORMATS } from '../http/helpers.js';
import { requireComponent } from '../helpers/requires.js';
import { loadS3rver, startS3rver, type TestBucket } from '../helpers/s3.js';

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

/** The pixels of `key` in the first test format, copied out of the mapping. */
async function pixels(cache: ImageCache, key: string): Promise<Buffer> {
  const v = await cache.get('small', key);
  try {
    return Buffer.from(v.pixels);
  } finally {
    v.release();
  }
}

const decodes = (cache: ImageCache): number => cache.stats().formats[0]!.decodes;

describe('sources in S3 (s3rver)', { skip }, () => {
  before(async () => {
    s3 = await startS3rver();
  });
  after(async () => {
    await s3?.close();
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  test('a miss reads the object from the bucket and decodes it once; a reopened cache does not decode', async () => {
    const png = await makeImage('png', 120, 80, 11);
    await s3.putObject('srcs/photos/cat.png', png);
    const storage = await tmpStorage();
    const cache = await open(storage);
    try {
      const first = await pixels(cache, 'photos/cat.png');
      const again = await pixels(cache, 'photos/cat.png');
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
      assert.ok((await pixels(reopened, 'photos/cat.png')).equals(await pixels(reopened, 'photos/cat.png')));
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
      const a = await pixels(cache, 'swap.png');
      await s3.putObject('srcs/swap.png', await makeImage('png', 120, 80, 32));
      // within the bound: the held entry, no HEAD, no decode
      assert.ok((await pixels(cache, 'swap.png')).equals(a));
      const view = cache.peek('small', 'swap.png');
      assert.ok(view && Buffer.from(view.pixels).equals(a));
      view.release();
      assert.equal(decodes(cache), 1);
      await sleep(bound + 50);
      const b = await pixels(cache, 'swap.png');
      assert.ok(!b.equals(a), 'new pixels after the bound');
      assert.equal(decodes(cache), 2);
      // unchanged past the bound: one HEAD confirms it, no decode
      await sleep(bound + 50);
      assert.ok((await pixels(cache, 'swap.png')).equals(b));
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
      const c = await pixels(cache, 'swap.png');
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
});
