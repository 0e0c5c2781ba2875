// Bad answers from the source store give the documented codes, and nothing stored is lost: a
// small real HTTP server speaks just enough S3 (path-style GetObject/HeadObject) to answer each
// key the way a broken or hostile store would — 403, 404, silence, a stall mid-body, a body cut
// off, a Content-Length the body does not reach — beside one good object whose entry must stay
// cached and served throughout. Wrong credentials against the real s3rver are tested too.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageCache } from '../../src/cache.js';
import { buildApp } from '../../src/http/app.js';
import { defaultConfig } from '../../src/config/env.js';
import type { S3SourceOptions } from '../../src/types.js';
import { makeImage, errorOf, TEST_FORMATS } from '../http/helpers.js';
import { requireComponent } from '../helpers/requires.js';
import { loadS3rver, pixelsOf, startS3rver, useS3rverCredentials } from '../helpers/s3.js';

const BUCKET = 'bad-store';
const TIMEOUT_MS = 600;
const REVALIDATE_MS = 300;

let good: Buffer;
let server: http.Server;
let endpoint: string;
/** every connection, so the stalled ones can be cut at the end */
const sockets = new Set<net.Socket>();
/** false: every request is refused with 403 (the store's credentials revoked, say) */
let goodAnswers = true;
let goodGets = 0;
const dirs: string[] = [];

function s3Error(res: http.ServerResponse, status: number, code: string, head: boolean): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message><RequestId>1</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

function objectHeaders(length: number): http.OutgoingHttpHeaders {
  return {
    'content-type': 'image/png',
    'content-length': length,
    etag: '"0123456789abcdef0123456789abcdef"',
    'last-modified': new Date(0).toUTCString(),
  };
}

function answer(req: http.IncomingMessage, res: http.ServerResponse): void {
  const head = req.method === 'HEAD';
  const key = decodeURIComponent((req.url ?? '').split('?')[0]!.slice(`/${BUCKET}/`.length));
  if (!goodAnswers) return s3Error(res, 403, 'AccessDenied', head);
  switch (key) {
    case 'good.png':
      if (!head) goodGets++;
      res.writeHead(200, objectHeaders(good.length));
      res.end(head ? undefined : good);
      return;
    case 'denied.png':
      return s3Error(res, 403, 'AccessDenied', head);
    case 'missing.png':
      return s3Error(res, 404, 'NoSuchKey', head);
    case 'silent.png':
      return; // accepted, never answered
    case 'stall.png':
      res.writeHead(200, objectHeaders(good.length));
      res.write(good.subarray(0, good.length >> 1)); // half, then nothing
      return;
    case 'cut.png':
      res.writeHead(200, objectHeaders(good.length));
      res.write(good.subarray(0, good.length >> 1), () => res.socket?.destroy());
      return;
    case 'short.png':
      // announces 100 bytes more than it sends, then ends the connection cleanly
      res.writeHead(200, { ...objectHeaders(good.length + 100), connection: 'close' });
      res.write(good, () => res.socket?.end());
      return;
    default:
      return s3Error(res, 500, 'InternalError', head);
  }
}

function store(extra: Partial<S3SourceOptions> = {}): S3SourceOptions {
  return { bucket: BUCKET, endpoint, timeoutMs: TIMEOUT_MS, ...extra };
}

async function storage(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-s3bad-'));
  dirs.push(d);
  return d;
}

describe('bad source-store responses', () => {
  before(async () => {
    useS3rverCredentials();
    good = await makeImage('png', 120, 80, 41);
    server = http.createServer(answer);
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  test('each failure has its code; the cached entry stays served, undecoded; no temp file is left', async () => {
    goodAnswers = true;
    const dir = await storage();
    const cache = await ImageCache.open({ storage: dir, formats: TEST_FORMATS, s3: store() });
    try {
      const held = await pixelsOf(cache, 'good.png');
      const cases: [string, string][] = [
        ['denied.png', 'SOURCE_STORE_DENIED'],
        ['missing.png', 'SOURCE_NOT_FOUND'],
        ['silent.png', 'SOURCE_STORE_TIMEOUT'],
        ['stall.png', 'SOURCE_STORE_TIMEOUT'],
        ['cut.png', 'SOURCE_STORE_TRUNCATED'],
        ['short.png', 'SOURCE_STORE_TRUNCATED'],
        ['boom.png', 'SOURCE_STORE_FAILED'],
      ];
      for (const [key, code] of cases) {
        const t0 = performance.now();
        await assert.rejects(cache.get('small', key), { code }, key);
        // a timeout is the deadline, not the SDK's retries times the deadline
        assert.ok(performance.now() - t0 < TIMEOUT_MS * 3, `${key} took ${performance.now() - t0} ms`);
        assert.equal(cache.has('small', key), false);
        assert.ok((await pixelsOf(cache, 'good.png')).equals(held), `good.png served after ${key}`);
      }
      assert.equal(cache.stats().formats[0]!.decodes, 1, 'no failure decoded anything, good.png once');
      assert.equal(goodGets, 1);
      assert.deepEqual(await fs.readdir(path.join(dir, 'sources', '.tmp')), [], 'every download removed');

      // over HTTP: the registry's statuses, never a 500
      const app = await buildApp({
        cache,
        config: defaultConfig({ storage: dir, formats: TEST_FORMATS, logRequests: false }),
        logger: false,
      });
      try {
        for (const [key, code, status] of [
          ['denied.png', 'SOURCE_STORE_DENIED', 502],
          ['silent.png', 'SOURCE_STORE_TIMEOUT', 504],
          ['cut.png', 'SOURCE_STORE_TRUNCATED', 502],
          ['short.png', 'SOURCE_STORE_TRUNCATED', 502],
          ['missing.png', 'SOURCE_NOT_FOUND', 404],
        ] as const) {
          const r = await app.inject({ method: 'GET', url: `/v1/pixels/small/${key}` });
          assert.equal(r.statusCode, status, `${key}: ${r.body}`);
          assert.equal(errorOf(r.body).code, code);
        }
        const r = await app.inject({ method: 'GET', url: '/v1/pixels/small/good.png' });
        assert.equal(r.statusCode, 200);
        assert.ok(r.rawPayload.equals(held));
      } finally {
        await app.close();
      }
    } finally {
      await cache.close();
    }
  });

  test('a store that refuses every request: held entries are served past revalidateMs, misses are 502', async () => {
    goodAnswers = true;
    const dir = await storage();
    const cache = await ImageCache.open({
      storage: dir,
      formats: TEST_FORMATS,
      s3: store(),
      revalidateMs: REVALIDATE_MS,
      logger: { warn() {} },
    });
    try {
      const held = await pixelsOf(cache, 'good.png');
      const decodes = cache.stats().formats[0]!.decodes;
      goodAnswers = false;
      await sleep(REVALIDATE_MS + 50);
      assert.ok((await pixelsOf(cache, 'good.png')).equals(held), 'the failed HEAD serves the entry');
      await assert.rejects(cache.get('small', 'other.png'), { code: 'SOURCE_STORE_DENIED' });
      await assert.rejects(cache.put('up.png', good), { code: 'SOURCE_STORE_DENIED' });
      assert.equal(cache.has('small', 'up.png'), false, 'a refused upload stores no entry');
      assert.equal(
        cache.stats().formats[0]!.decodes,
        decodes + 1,
        'only the upload decoded (and was not stored)',
      );
      assert.ok((await pixelsOf(cache, 'good.png')).equals(held));
    } finally {
      goodAnswers = true;
      await cache.close();
    }
  });
});

const skip = requireComponent(
  's3rver',
  loadS3rver() !== undefined,
  'npm install (s3rver is a devDependency)',
);

describe('wrong credentials against s3rver', { skip }, () => {
  test('403 from the real store is SOURCE_STORE_DENIED; the entries decoded before stay served', async () => {
    const s3 = await startS3rver('creds-test');
    const dir = await storage();
    const png = await makeImage('png', 120, 80, 51);
    await s3.putObject('kept.png', png);
    await s3.putObject('later.png', png);
    const options = { bucket: s3.bucket, endpoint: s3.endpoint, timeoutMs: 5000 };
    try {
      const first = await ImageCache.open({ storage: dir, formats: TEST_FORMATS, s3: options });
      const held = await pixelsOf(first, 'kept.png');
      await first.close();
      // an access key the store does not know (InvalidAccessKeyId, 403)
      process.env.AWS_ACCESS_KEY_ID = 'NOT-A-KEY';
      const wrong = await ImageCache.open({
        storage: dir,
        formats: TEST_FORMATS,
        s3: options,
        logger: { warn() {} },
      });
      try {
        await assert.rejects(wrong.get('small', 'later.png'), { code: 'SOURCE_STORE_DENIED' });
        assert.ok((await pixelsOf(wrong, 'kept.png')).equals(held), 'served from the table');
        assert.equal(wrong.stats().formats[0]!.decodes, 0);
        await assert.rejects(wrong.delete('kept.png'), { code: 'SOURCE_STORE_DENIED' });
        assert.ok(wrong.has('small', 'kept.png'), 'a refused delete removes no entry');
      } finally {
        await wrong.close();
      }
      assert.equal(await s3.headObject('kept.png'), true, 'nothing was deleted in the bucket');
    } finally {
      useS3rverCredentials();
      await s3.close();
    }
  });
});
