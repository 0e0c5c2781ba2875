// Uploads, deletes and originals under attack (issue 12 items 1, 3-7, 22): streamed bodies and
// their limits, concurrent deletes, symlinks inside and pointing out of sources/, over-long
// segments, a full disk, and GET of the original bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fixture, makeImage, errorOf, type Fixture } from './helpers.js';
import { signUrl } from '../../src/http/sign.js';

const LIMIT = 200_000;
let f: Fixture;
before(async () => {
  f = await fixture({
    config: { maxUploadBytes: LIMIT, maxConcurrentUploads: 2 },
    open: { decode: { maxInputBytes: LIMIT, maxInputPixels: 1_000_000 } },
  });
});
after(() => f.close());

const tmpDir = () => path.join(f.cache.sourcesDir, '.tmp');
async function tempFiles(): Promise<string[]> {
  return fs.readdir(tmpDir()).catch(() => []);
}

/** What a client streaming a body sends instead of Content-Length (inject() adds neither). */
const CHUNKED = { 'transfer-encoding': 'chunked' };

/** A body that arrives in `pieces` chunks, without Content-Length (chunked, as a proxy streams it). */
function chunked(bytes: Buffer, pieces = 8): Readable {
  const step = Math.ceil(bytes.length / pieces);
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += step) parts.push(bytes.subarray(i, i + step));
  return Readable.from(parts);
}

test('a streamed upload without Content-Length is stored whole, fingerprinted as it streamed', async () => {
  const img = await makeImage('png', 200, 150, 3);
  const r = await f.app.inject({
    method: 'PUT',
    url: '/v1/sources/stream/one.png',
    payload: chunked(img),
    headers: CHUNKED,
  });
  assert.equal(r.statusCode, 201, r.body);
  assert.ok((await fs.readFile(path.join(f.cache.sourcesDir, 'stream/one.png'))).equals(img));
  const { createHash } = await import('node:crypto');
  const fp = createHash('sha256').update(img).digest().subarray(0, 16).toString('hex');
  assert.equal((r.json() as { sourceFingerprint: string }).sourceFingerprint, fp);
  assert.equal((await f.app.inject('/v1/pixels/small/stream/one.png')).statusCode, 200);
  assert.deepEqual(await tempFiles(), []);
});

test('a streamed body over PIXTABLE_MAX_UPLOAD_BYTES is cut with 413, its temp file removed, nothing replaced', async () => {
  const good = await makeImage('png');
  await f.app.inject({ method: 'PUT', url: '/v1/sources/stream/keep.png', payload: good });
  // a valid image start, then more bytes than the limit allows, without a Content-Length
  const big = Buffer.concat([good, Buffer.alloc(LIMIT, 7)]);
  const r = await f.app.inject({
    method: 'PUT',
    url: '/v1/sources/stream/keep.png',
    payload: chunked(big, 20),
    headers: CHUNKED,
  });
  assert.equal(r.statusCode, 413, r.body);
  assert.equal(errorOf(r.body).code, 'BODY_TOO_LARGE');
  assert.match(errorOf(r.body).message, /PIXTABLE_MAX_UPLOAD_BYTES/);
  assert.ok((await fs.readFile(path.join(f.cache.sourcesDir, 'stream/keep.png'))).equals(good));
  assert.deepEqual(await tempFiles(), []);
  // declared too large: refused before a byte is read
  const d = await f.app.inject({ method: 'PUT', url: '/v1/sources/stream/keep.png', payload: big });
  assert.equal(d.statusCode, 413);
  assert.equal(errorOf(d.body).code, 'BODY_TOO_LARGE');
});

test('uploads beyond PIXTABLE_MAX_CONCURRENT_UPLOADS get 503 UPLOADS_BUSY with Retry-After', async () => {
  const img = await makeImage('png', 64, 64, 9);
  const slow = [new PassThrough(), new PassThrough()];
  const pending = slow.map((body, i) =>
    f.app.inject({ method: 'PUT', url: `/v1/sources/busy/${i}.png`, payload: body, headers: CHUNKED }),
  );
  for (const s of slow) s.write(img.subarray(0, 100));
  // both are receiving (their temp files exist) before the third arrives
  const until = Date.now() + 5000;
  while ((await tempFiles()).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await tempFiles()).length, 2);
  const third = await f.app.inject({ method: 'PUT', url: '/v1/sources/busy/2.png', payload: img });
  assert.equal(third.statusCode, 503, third.body);
  assert.equal(errorOf(third.body).code, 'UPLOADS_BUSY');
  assert.equal(third.headers['retry-after'], '1');
  for (const s of slow) s.end(img.subarray(100));
  for (const r of await Promise.all(pending)) assert.equal(r.statusCode, 201, r.body);
  // the slots are free again
  const again = await f.app.inject({ method: 'PUT', url: '/v1/sources/busy/2.png', payload: img });
  assert.equal(again.statusCode, 201, again.body);
});

test('the library streams too: put() takes a Readable or an async iterable; anything else is INVALID_OPTION', async () => {
  const img = await makeImage('jpeg', 90, 60, 5);
  const fromFile = path.join(f.dir, 'file.jpg');
  await fs.writeFile(fromFile, img);
  const a = await f.cache.put('lib/readable.jpg', fsSync.createReadStream(fromFile, { highWaterMark: 1024 }));
  assert.equal(a.width, 90);
  async function* gen() {
    for (let i = 0; i < img.length; i += 500) yield img.subarray(i, i + 500);
  }
  const b = await f.cache.put('lib/gen.jpg', gen());
  assert.equal(b.sourceFingerprint, a.sourceFingerprint);
  await assert.rejects(f.cache.put('lib/x.jpg', 'not bytes' as unknown as Buffer), {
    code: 'INVALID_OPTION',
  });
  await assert.rejects(f.cache.put('lib/empty.jpg', Readable.from([])), { code: 'EMPTY_SOURCE' });
  await assert.rejects(f.cache.put('lib/big.jpg', Readable.from([Buffer.alloc(LIMIT), Buffer.alloc(10)])), {
    code: 'SOURCE_TOO_LARGE',
  });
  assert.ok(!fsSync.existsSync(path.join(f.cache.sourcesDir, 'lib/big.jpg')));
  assert.deepEqual(await tempFiles(), []);
});

test('two concurrent DELETEs of one key: 204 and 404 (or 204), never 500', async () => {
  const img = await makeImage('png', 40, 40, 1);
  for (let round = 0; round < 20; round++) {
    const put = await f.app.inject({ method: 'PUT', url: '/v1/sources/race.png', payload: img });
    assert.ok(put.statusCode === 201 || put.statusCode === 200, put.body);
    const rs = await Promise.all([
      f.app.inject({ method: 'DELETE', url: '/v1/sources/race.png' }),
      f.app.inject({ method: 'DELETE', url: '/v1/sources/race.png' }),
    ]);
    const statuses = rs.map((r) => r.statusCode).sort();
    // the loser finds nothing (404) or still purged entries the winner had not reached (204)
    assert.ok(
      statuses[0] === 204 && (statuses[1] === 204 || statuses[1] === 404),
      `round ${round}: ${statuses.join(', ')} ${rs.map((r) => r.body).join(' ')}`,
    );
    assert.ok(!fsSync.existsSync(path.join(f.cache.sourcesDir, 'race.png')));
    assert.ok(!f.cache.has('small', 'race.png'));
  }
});

test('DELETE of a key that is a symlink removes the link, never its target', async () => {
  const img = await makeImage('png', 30, 30, 2);
  await f.app.inject({ method: 'PUT', url: '/v1/sources/real.png', payload: img });
  const link = path.join(f.cache.sourcesDir, 'alias.png');
  await fs.symlink(path.join(f.cache.sourcesDir, 'real.png'), link);
  const r = await f.app.inject({ method: 'DELETE', url: '/v1/sources/alias.png' });
  assert.equal(r.statusCode, 204, r.body);
  await assert.rejects(fs.lstat(link), { code: 'ENOENT' });
  assert.ok((await fs.readFile(path.join(f.cache.sourcesDir, 'real.png'))).equals(img));
  assert.equal((await f.app.inject('/v1/pixels/small/real.png')).statusCode, 200);
  // a link pointing out of sources/ is removed as a name too; what it points to stays
  const outsideFile = path.join(f.dir, 'outside-target.png');
  await fs.writeFile(outsideFile, img);
  await fs.symlink(outsideFile, path.join(f.cache.sourcesDir, 'out.png'));
  assert.equal((await f.app.inject({ method: 'DELETE', url: '/v1/sources/out.png' })).statusCode, 204);
  assert.ok((await fs.readFile(outsideFile)).equals(img));
});

test('a symlinked directory out of sources/: PUT creates nothing outside; existing and missing files answer alike', async () => {
  const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-outside-'));
  try {
    await fs.writeFile(path.join(outside, 'secret.png'), await makeImage('png', 20, 20));
    await fs.symlink(outside, path.join(f.cache.sourcesDir, 'escape'));
    const put = await f.app.inject({
      method: 'PUT',
      url: '/v1/sources/escape/deep/er/new.png',
      payload: await makeImage('png'),
    });
    assert.equal(put.statusCode, 400, put.body);
    assert.equal(errorOf(put.body).code, 'INVALID_KEY');
    assert.deepEqual(await fs.readdir(outside), ['secret.png'], 'no directory was created outside');
    // a dangling link out of the root is refused the same way
    await fs.symlink(path.join(outside, 'nowhere'), path.join(f.cache.sourcesDir, 'dangling'));
    for (const route of ['pixels/small', 'thumbnails/small', 'sources']) {
      const answers = [];
      for (const key of ['escape/secret.png', 'escape/missing.png', 'escape/no/such.png', 'dangling/x.png']) {
        const r = await f.app.inject(`/v1/${route}/${key}`);
        answers.push(`${r.statusCode} ${errorOf(r.body).code}`);
      }
      assert.deepEqual(answers, Array(4).fill('400 INVALID_KEY'), route);
    }
    const d = await f.app.inject({ method: 'DELETE', url: '/v1/sources/escape/secret.png' });
    assert.equal(d.statusCode, 400);
    assert.ok(fsSync.existsSync(path.join(outside, 'secret.png')));
    await fs.rm(path.join(f.cache.sourcesDir, 'escape'));
    await fs.rm(path.join(f.cache.sourcesDir, 'dangling'));
  } finally {
    await fs.rm(outside, { recursive: true, force: true });
  }
});

test('a path segment over 255 bytes is 400 INVALID_KEY on every route and in the library', async () => {
  const long = 'a'.repeat(256);
  const longUtf8 = encodeURIComponent('é'.repeat(128)); // 256 bytes, 128 characters
  for (const seg of [long, longUtf8]) {
    for (const [method, url] of [
      ['GET', `/v1/pixels/small/${seg}.png`],
      ['GET', `/v1/thumbnails/small/dir/${seg}`],
      ['GET', `/v1/sources/${seg}`],
      ['PUT', `/v1/sources/${seg}`],
      ['DELETE', `/v1/sources/dir/${seg}`],
    ] as const) {
      const r = await f.app.inject({
        method,
        url,
        ...(method === 'PUT' ? { payload: Buffer.from('x') } : {}),
      });
      assert.equal(r.statusCode, 400, `${method} ${url.slice(0, 40)}: ${r.body}`);
      assert.equal(errorOf(r.body).code, 'INVALID_KEY');
      assert.match(errorOf(r.body).message, /255 bytes/);
    }
  }
  // 255 bytes is a name a file system holds: just not found
  assert.equal((await f.app.inject(`/v1/pixels/small/${'b'.repeat(255)}`)).statusCode, 404);
  await assert.rejects(f.cache.get('small', `x/${long}`), { code: 'INVALID_KEY' });
  await assert.rejects(f.cache.put(long, Buffer.from('x')), { code: 'INVALID_KEY' });
  await assert.rejects(f.cache.delete('é'.repeat(128)), { code: 'INVALID_KEY' });
});

test('GET /v1/sources/<key>: the original bytes, typed, with ETag, 304, Range and HEAD', async () => {
  const png = await makeImage('png', 100, 70, 4);
  const put = await f.app.inject({ method: 'PUT', url: '/v1/sources/orig/cat.png', payload: png });
  const { sourceFingerprint } = put.json() as { sourceFingerprint: string };
  let r = await f.app.inject('/v1/sources/orig/cat.png');
  assert.equal(r.statusCode, 200);
  assert.ok(r.rawPayload.equals(png));
  assert.equal(r.headers['content-type'], 'image/png');
  assert.equal(r.headers['content-length'], String(png.length));
  assert.equal(r.headers.etag, `"${sourceFingerprint}"`);
  assert.equal(r.headers['accept-ranges'], 'bytes');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  const etag = String(r.headers.etag);

  r = await f.app.inject({ url: '/v1/sources/orig/cat.png', headers: { 'if-none-match': etag } });
  assert.equal(r.statusCode, 304);
  assert.equal(r.rawPayload.length, 0);

  r = await f.app.inject({ url: '/v1/sources/orig/cat.png', headers: { range: 'bytes=10-29' } });
  assert.equal(r.statusCode, 206);
  assert.equal(r.headers['content-range'], `bytes 10-29/${png.length}`);
  assert.ok(r.rawPayload.equals(png.subarray(10, 30)));
  r = await f.app.inject({ url: '/v1/sources/orig/cat.png', headers: { range: 'bytes=-5' } });
  assert.ok(r.rawPayload.equals(png.subarray(png.length - 5)));
  // If-Range with another validator: the whole body
  r = await f.app.inject({
    url: '/v1/sources/orig/cat.png',
    headers: { range: 'bytes=0-1', 'if-range': '"other"' },
  });
  assert.equal(r.statusCode, 200);
  assert.equal(r.rawPayload.length, png.length);
  r = await f.app.inject({ url: '/v1/sources/orig/cat.png', headers: { range: `bytes=${png.length}-` } });
  assert.equal(r.statusCode, 416);
  assert.equal(errorOf(r.body).code, 'RANGE_NOT_SATISFIABLE');
  assert.equal(r.headers.etag, undefined, "an error body carries none of the original's headers");

  r = await f.app.inject({ method: 'HEAD', url: '/v1/sources/orig/cat.png' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['content-length'], String(png.length));
  assert.equal(r.rawPayload.length, 0);

  const jpeg = await makeImage('jpeg');
  await f.app.inject({ method: 'PUT', url: '/v1/sources/orig/cat.png', payload: jpeg });
  r = await f.app.inject('/v1/sources/orig/cat.png');
  assert.equal(r.headers['content-type'], 'image/jpeg', 'typed by its bytes, not its name');
  assert.notEqual(r.headers.etag, etag, 'a replaced source has a new ETag');
  assert.ok(r.rawPayload.equals(jpeg));

  r = await f.app.inject('/v1/sources/orig/none.png');
  assert.equal(r.statusCode, 404);
  assert.equal(errorOf(r.body).code, 'SOURCE_NOT_FOUND');
  r = await f.app.inject({ method: 'POST', url: '/v1/sources/orig/cat.png' });
  assert.equal(r.statusCode, 405);
  assert.equal(r.headers.allow, 'GET, HEAD, PUT, DELETE');
  const doc = (await f.app.inject('/openapi.json')).json() as {
    paths: Record<string, Record<string, unknown>>;
  };
  const route = Object.entries(doc.paths).find(([p]) => p.startsWith('/v1/sources/'))?.[1];
  assert.ok(route?.get, 'GET /v1/sources/{key} is in the OpenAPI document');
});

test('GET /v1/sources/<key> follows the signing rules of the other routes', async () => {
  const k = { key: Buffer.alloc(32, 3), salt: Buffer.from('s') };
  const g = await fixture({ config: { signingKeys: [k] } });
  try {
    const img = await makeImage('png');
    await g.cache.put('cat.png', img);
    let r = await g.app.inject('/v1/sources/cat.png');
    assert.equal(r.statusCode, 403);
    assert.equal(errorOf(r.body).code, 'SIGNATURE_REQUIRED');
    r = await g.app.inject(signUrl('/v1/sources/cat.png', k));
    assert.equal(r.statusCode, 200, r.body);
    assert.ok(r.rawPayload.equals(img));
    r = await g.app.inject(signUrl('/v1/sources/cat.png', k).replace('cat.png', 'dog.png'));
    assert.equal(errorOf(r.body).code, 'SIGNATURE_INVALID');
  } finally {
    await g.close();
  }
});

/** Mounts a 2 MiB tmpfs on `dir`; false when this machine does not allow it. */
function mountSmallTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch (e) {
    if (process.env.CI === 'true') throw new Error(`CI=true but tmpfs cannot be mounted: ${String(e)}`);
    return false;
  }
}

test('ENOSPC writing the upload temp file is 507 STORAGE_FULL; the temp file goes, later uploads work', async (t) => {
  const g = await fixture({
    config: { maxUploadBytes: 8 << 20 },
    open: { decode: { maxInputBytes: 8 << 20 } },
  });
  // sources/ itself on the small volume, so that temp file and source share it (rename works)
  const tmp = path.join(g.cache.sourcesDir, '.tmp');
  if (!mountSmallTmpfs(g.cache.sourcesDir)) {
    await g.close();
    t.skip('cannot mount a tmpfs here (needs root); CI=true makes this a failure');
    return;
  }
  try {
    const good = await makeImage('png');
    await g.cache.put('full.png', good);
    const big = Buffer.concat([good, Buffer.alloc(3 << 20, 5)]);
    for (const [payload, headers] of [
      [big, {}],
      [chunked(big, 30), CHUNKED],
    ] as const) {
      const r = await g.app.inject({ method: 'PUT', url: '/v1/sources/full.png', payload, headers });
      assert.equal(r.statusCode, 507, r.body);
      assert.equal(errorOf(r.body).code, 'STORAGE_FULL');
      assert.deepEqual(await fs.readdir(tmp), [], 'the partial temp file is removed');
      assert.ok((await fs.readFile(path.join(g.cache.sourcesDir, 'full.png'))).equals(good));
    }
    await assert.rejects(g.cache.put('lib-full.png', big), { code: 'STORAGE_FULL' });
    const ok = await g.app.inject({ method: 'PUT', url: '/v1/sources/after.png', payload: good });
    assert.equal(ok.statusCode, 201, ok.body);
  } finally {
    execFileSync('umount', [g.cache.sourcesDir]);
    await g.close();
  }
});

test("an original's ETag reuses a confirmed entry's fingerprint only for the very same file", async () => {
  const { createHash } = await import('node:crypto');
  const fpOf = (b: Buffer) => `"${createHash('sha256').update(b).digest().subarray(0, 16).toString('hex')}"`;
  const a = await makeImage('png', 50, 50, 11);
  const file = path.join(f.cache.sourcesDir, 'old/a.png');
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, a);
  const past = new Date(Date.now() - 3_600_000);
  await fs.utimes(file, past, past); // old enough for its stat signature to be trusted
  assert.equal((await f.app.inject('/v1/pixels/small/old/a.png')).statusCode, 200);
  let r = await f.app.inject('/v1/sources/old/a.png');
  assert.equal(r.headers.etag, fpOf(a));
  // other bytes of the same size and mtime under a new inode: a new ETag, not the entry's
  const b = Buffer.from(a);
  b[b.length - 20] = b[b.length - 20]! ^ 0xff;
  const tmp = path.join(f.dir, 'b.png');
  await fs.writeFile(tmp, b);
  await fs.utimes(tmp, past, past);
  await fs.rename(tmp, file);
  r = await f.app.inject('/v1/sources/old/a.png');
  assert.equal(r.headers.etag, fpOf(b));
  assert.ok(r.rawPayload.equals(b));
});
