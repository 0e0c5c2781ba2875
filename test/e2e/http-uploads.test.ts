// Streamed uploads over real sockets: the refusals (413, 503) reach a client that is still
// sending, and a client that goes away mid-body leaves no temp file and no upload slot taken.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { makeImage } from '../http/helpers.js';
import { start, until } from '../http/net-helpers.js';

type Server = Awaited<ReturnType<typeof start>>;
let s: Server;
const LIMIT = 1 << 20;
before(async () => {
  s = await start({
    formats: [{ name: 'small', width: 32, height: 32 }],
    maxUploadBytes: LIMIT,
    maxConcurrentUploads: 1,
  });
});
after(() => s.done());

const tmpFiles = () => {
  try {
    return fs.readdirSync(path.join(s.cache.sourcesDir, '.tmp'));
  } catch {
    return [];
  }
};

interface Put {
  req: http.ClientRequest;
  done: Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>;
}

/** A PUT whose body the caller writes (chunked unless `headers` declare a length). */
function put(key: string, headers: Record<string, string | number> = {}): Put {
  const u = new URL(s.url);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: `/v1/sources/${key}`,
    method: 'PUT',
    agent: false,
    headers,
  });
  const done = new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on('error', reject);
    },
  );
  return { req, done };
}

/** Writes `n` chunks of `chunk`, honouring backpressure, then ends (unless told not to). */
async function send(req: http.ClientRequest, chunk: Buffer, n: number, end = true): Promise<void> {
  for (let i = 0; i < n && !req.destroyed; i++) {
    if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
  }
  if (end) req.end();
}

const code = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;

test('a body over the limit gets 413 while the client is still sending, declared or chunked', async () => {
  const declared = put('big.png', { 'content-length': 5 * LIMIT });
  void send(declared.req, Buffer.alloc(64 << 10, 1), 80).catch(() => undefined);
  const d = await declared.done;
  assert.equal(d.status, 413);
  assert.equal(code(d.body), 'BODY_TOO_LARGE');

  const chunked = put('big.png');
  void send(chunked.req, Buffer.alloc(64 << 10, 2), 80).catch(() => undefined);
  const c = await chunked.done;
  assert.equal(c.status, 413);
  assert.equal(code(c.body), 'BODY_TOO_LARGE');
  await until(() => tmpFiles().length === 0);
  assert.ok(!fs.existsSync(path.join(s.cache.sourcesDir, 'big.png')));
});

test('one upload too many gets 503 UPLOADS_BUSY with Retry-After; a client gone mid-body frees its slot and temp file', async () => {
  const img = await makeImage('png');
  const first = put('slow.png');
  first.req.on('error', () => undefined);
  first.done.catch(() => undefined);
  await send(first.req, img.subarray(0, 1000), 1, false);
  await until(() => tmpFiles().length === 1);

  const second = put('other.png', { 'content-length': img.length });
  second.req.end(img);
  const r = await second.done;
  assert.equal(r.status, 503);
  assert.equal(code(r.body), 'UPLOADS_BUSY');
  assert.equal(r.headers['retry-after'], '1');

  first.req.destroy(); // the client goes away with its body half sent
  await until(() => tmpFiles().length === 0);
  assert.ok(!fs.existsSync(path.join(s.cache.sourcesDir, 'slow.png')));
  const third = put('other.png', { 'content-length': img.length });
  third.req.end(img);
  assert.equal((await third.done).status, 201);
});
