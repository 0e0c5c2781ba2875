// PIXTABLE_S3_* and the library's `s3` option: what turns S3 on, the defaults a user gets, and the
// clear errors for values that could never work (before any request is made).
import { test } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/env.js';
import { openOptions } from '../../src/config/open-options.js';
import { resolveS3Options, objectFingerprint } from '../../src/engine/source-store-s3.js';
import { ImageCache } from '../../src/cache.js';

test('PIXTABLE_S3_* reach ImageCache.open as the s3 option; unset ones keep the defaults', () => {
  const { config } = loadConfig({
    PIXTABLE_S3_BUCKET: 'photos-bucket',
    PIXTABLE_S3_ENDPOINT: 'http://minio:9000',
    PIXTABLE_S3_PREFIX: 'sources',
    PIXTABLE_S3_TIMEOUT_MS: '2500',
    PIXTABLE_S3_FORCE_PATH_STYLE: 'false',
  });
  assert.deepEqual(config.s3, {
    bucket: 'photos-bucket',
    endpoint: 'http://minio:9000',
    prefix: 'sources',
    forcePathStyle: false,
    timeoutMs: 2500,
  });
  assert.deepEqual(openOptions(config).s3, config.s3);
  assert.deepEqual(resolveS3Options(config.s3), {
    bucket: 'photos-bucket',
    endpoint: 'http://minio:9000',
    prefix: 'sources/',
    region: 'us-east-1',
    forcePathStyle: false,
    timeoutMs: 2500,
    maxAttempts: 3,
  });
  assert.equal(loadConfig({}).config.s3, undefined, 'nothing about S3 is needed to start');
});

test('path style is the default with an endpoint (MinIO, s3rver), virtual-hosted without (AWS)', () => {
  assert.equal(resolveS3Options({ bucket: 'abc', endpoint: 'http://127.0.0.1:9000' }).forcePathStyle, true);
  assert.equal(resolveS3Options({ bucket: 'abc' }).forcePathStyle, false);
  assert.equal(resolveS3Options({ bucket: 'abc', prefix: 'a/b/' }).prefix, 'a/b/');
  assert.equal(resolveS3Options({ bucket: 'abc' }).prefix, '');
});

test('bad S3 settings are INVALID_CONFIG naming the variable; tuning without a bucket is refused', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PIXTABLE_S3_PREFIX: 'x' }, /PIXTABLE_S3_PREFIX must be set only together with PIXTABLE_S3_BUCKET/],
    [{ PIXTABLE_S3_BUCKET: 'No_Such' }, /PIXTABLE_S3_BUCKET must be a string matching/],
    [{ PIXTABLE_S3_BUCKET: 'abc', PIXTABLE_S3_ENDPOINT: 'minio:9000' }, /PIXTABLE_S3_ENDPOINT/],
    [
      { PIXTABLE_S3_BUCKET: 'abc', PIXTABLE_S3_TIMEOUT_MS: '5' },
      /PIXTABLE_S3_TIMEOUT_MS must be an integer from 100/,
    ],
    [{ PIXTABLE_S3_BUCKET: 'abc', PIXTABLE_S3_MAX_ATTEMPTS: '0' }, /PIXTABLE_S3_MAX_ATTEMPTS/],
    [{ PIXTABLE_S3_BUCKET: 'abc', PIXTABLE_S3_FORCE_PATH_STYLE: 'maybe' }, /PIXTABLE_S3_FORCE_PATH_STYLE/],
  ];
  for (const [env, message] of bad) {
    assert.throws(() => loadConfig(env), { code: 'INVALID_CONFIG', message }, JSON.stringify(env));
  }
});

test('a bad s3 option fails ImageCache.open with INVALID_OPTION before anything is created', async () => {
  const storage = path.join(os.tmpdir(), `pixtable-s3-config-${process.pid}`);
  for (const s3 of [
    { bucket: 'abc', endpoint: 'ftp://x' },
    { bucket: 'abc', timeoutMs: 50 },
    { bucket: 'abc', prefix: '/abs' },
    { bucket: 'abc', bucketName: 'typo' },
    { endpoint: 'http://127.0.0.1:9' },
  ]) {
    await assert.rejects(
      ImageCache.open({ storage, s3: s3 as never }),
      { code: 'INVALID_OPTION' },
      JSON.stringify(s3),
    );
  }
  assert.equal(fs.existsSync(storage), false);
});

test("an object's fingerprint follows its version when the bucket keeps versions, else its ETag", () => {
  const a = { etag: '"aa"', versionId: undefined, size: 1, lastModified: 0 };
  assert.ok(objectFingerprint(a).equals(objectFingerprint({ ...a, size: 2 })));
  assert.ok(!objectFingerprint(a).equals(objectFingerprint({ ...a, etag: '"bb"' })));
  const v = { ...a, versionId: 'v1' };
  assert.ok(objectFingerprint(v).equals(objectFingerprint({ ...v, etag: '"bb"' })), 'the version decides');
  assert.ok(!objectFingerprint(v).equals(objectFingerprint({ ...v, versionId: 'v2' })));
  assert.equal(objectFingerprint(a).length, 16);
});
