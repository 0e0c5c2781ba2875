// /readyz reports a nearly full storage volume while /healthz (liveness) stays up: a real tmpfs
// of 8 MiB as the storage, filled until about 320 KiB are left.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ImageCache } from '../../src/cache.js';
import { buildApp } from '../../src/http/app.js';
import { defaultConfig } from '../../src/config/env.js';
import { diskReadiness } from '../../src/http/routes/operations.js';
import { mountTmpfs, tmpfsUnavailable, type Tmpfs } from '../helpers/tmpfs.js';
import { TEST_FORMATS } from './helpers.js';

const skip = tmpfsUnavailable();
let disk: Tmpfs;
let cache: ImageCache;
let app: FastifyInstance;

before(async () => {
  if (skip) return;
  disk = mountTmpfs('8m');
  const config = defaultConfig({ storage: disk.dir, formats: TEST_FORMATS, logRequests: false });
  assert.equal(config.minFreeBytes, 512 * 1024 * 1024, 'the documented default');
  cache = await ImageCache.open({ storage: disk.dir, formats: TEST_FORMATS, preallocate: false });
  app = await buildApp({ cache, config: { ...config, minFreeBytes: 1024 * 1024 }, logger: false });
  await app.ready();
});

after(async () => {
  if (skip) return;
  await app?.close();
  await cache?.close();
  disk.unmount();
});

function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

test('/readyz: 200 with room, 503 "not ready" with 320 KiB left; /healthz stays 200', { skip }, async () => {
  const before = await app.inject('/readyz');
  assert.equal(before.statusCode, 200, before.body);
  const ok = before.json() as { status: string; checks: Record<string, string> };
  assert.equal(ok.status, 'ready');
  assert.match(ok.checks.disk ?? '', /^ok \(\d+\.\d MiB free of 8\.0 MiB\)$/);

  const filler = path.join(disk.dir, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(freeBytes(disk.dir) - 320 * 1024));
  assert.ok(freeBytes(disk.dir) <= 320 * 1024);

  const low = await app.inject('/readyz');
  assert.equal(low.statusCode, 503, low.body);
  const j = low.json() as { status: string; checks: Record<string, string> };
  assert.equal(j.status, 'not ready');
  assert.match(
    j.checks.disk ?? '',
    /^low: 0\.3 MiB free of 8\.0 MiB, below PIXTABLE_MIN_FREE_BYTES \(1048576\)$/,
  );

  const live = await app.inject('/healthz');
  assert.equal(live.statusCode, 200, live.body);

  fs.rmSync(filler);
  assert.equal((await app.inject('/readyz')).statusCode, 200);
});

test(
  'diskReadiness is callable on its own; 0 turns it off; a missing volume fails it',
  { skip },
  async () => {
    assert.deepEqual(await diskReadiness(disk.dir, 0), {
      ok: true,
      detail: 'not checked (PIXTABLE_MIN_FREE_BYTES=0)',
    });
    assert.equal((await diskReadiness(disk.dir, 64 * 1024 * 1024)).ok, false);
    assert.equal((await diskReadiness(disk.dir, 1024)).ok, true);
    const gone = await diskReadiness(path.join(disk.dir, 'no', 'such'), 1024);
    assert.equal(gone.ok, false);
    assert.match(gone.detail, /^failed: ENOENT/);
  },
);
