// The one ServerConfig → OpenOptions translation: every setting the engine reads arrives, the
// opener's extras win, and an unset setting leaves the engine's default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultConfig, type ServerConfig } from '../../src/config/env.js';
import { openOptions } from '../../src/config/open-options.js';
import { ImageCache } from '../../src/cache.js';
import type { OpenOptions } from '../../src/types.js';
import type { FormatSpec } from '../../src/formats.js';

const formats: FormatSpec[] = [{ name: 'only-one', width: 8, height: 8 }];

/** A configuration whose engine settings all differ from their defaults (and from each other). */
function engineConfig(): ServerConfig {
  return defaultConfig({
    storage: '/srv/pixtable-test-storage',
    formats,
    readOnly: true,
    sync: 'always',
    maxMappedBytes: 123_456_789,
    revalidate: false,
    revalidateMs: 4321,
    allowNetworkFileSystem: true,
    maxUploadBytes: 7_654_321,
    decode: { concurrency: 3, maxQueue: 17, timeoutMs: 2345, maxInputPixels: 999_999 },
    s3: { bucket: 'test-bucket', endpoint: 'http://127.0.0.1:9', prefix: 'p/', timeoutMs: 1234 },
  });
}

// Where each ServerConfig field goes. A field the engine reads maps to its OpenOptions path; the
// rest are the HTTP layer's. A field added to ServerConfig fails the last test until it is put in
// one of the two lists, so nobody adds an engine setting that the server or CLI then drops.
const TO_ENGINE: Record<string, string> = {
  storage: 'storage',
  formats: 'formats',
  readOnly: 'readOnly',
  sync: 'sync',
  maxMappedBytes: 'maxMappedBytes',
  revalidate: 'revalidate',
  revalidateMs: 'revalidateMs',
  allowNetworkFileSystem: 'allowNetworkFileSystem',
  s3: 's3',
  maxUploadBytes: 'decode.maxInputBytes',
  'decode.concurrency': 'decode.concurrency',
  'decode.maxQueue': 'decode.maxQueue',
  'decode.timeoutMs': 'decode.timeoutMs',
  'decode.maxInputPixels': 'decode.maxInputPixels',
};
const HTTP_ONLY = [
  'host',
  'port',
  // formatList is `formats` validated, for errors before the cache opens; the engine validates
  // `formats` itself.
  'formatList',
  'thumbCacheBytes',
  // the thumbnail encode queue and /readyz's disk threshold are the server's
  'encode',
  'minFreeBytes',
  'thumbQuality',
  'thumbTypes',
  'variantWidths',
  'cacheControl',
  'signingKeys',
  'origin',
  'requestTimeoutMs',
  'headersTimeoutMs',
  'idleTimeoutMs',
  'keepAliveTimeoutMs',
  'shutdownTimeoutMs',
  'logLevel',
  'logRequests',
  'fastLane',
  'corsOrigin',
  // the bound is on the HTTP route that receives bodies; a library caller chooses its own
  'maxConcurrentUploads',
  // how many processes `serve` starts, and how they share the port: a library user's process is its own
  'workers',
  'distribution',
  // the purge fan-out to other replicas happens in the HTTP layer (src/http/peers.ts)
  'peers',
];

function get(o: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
}

test('every engine setting of the configuration reaches OpenOptions', () => {
  const config = engineConfig();
  const options = openOptions(config);
  for (const [from, to] of Object.entries(TO_ENGINE)) {
    const value = get(config, from);
    assert.notEqual(value, undefined, `the test sets ${from}`);
    assert.equal(get(options, to), value, `${from} → ${to}`);
  }
  // Nothing else: no HTTP setting leaks into the engine's options.
  assert.deepEqual(Object.keys(options).sort(), [
    'allowNetworkFileSystem',
    'decode',
    'formats',
    'maxMappedBytes',
    'readOnly',
    'revalidate',
    'revalidateMs',
    's3',
    'storage',
    'sync',
  ]);
});

test('the engine accepts the translated options: they open a cache with the configured formats', async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-open-options-'));
  try {
    const cache = await ImageCache.open(openOptions(defaultConfig({ storage, formats })));
    try {
      assert.deepEqual(
        cache.formats.map((f) => f.name),
        ['only-one'],
      );
      assert.equal(cache.storage, storage);
    } finally {
      await cache.close();
    }
  } finally {
    fs.rmSync(storage, { recursive: true, force: true });
  }
});

test("the opener's extras win; undefined extras keep the configuration's value", () => {
  const logger = { warn() {} };
  const onDecode = () => {};
  const sub: FormatSpec[] = [{ name: 'sub', width: 4, height: 4 }];
  const options: OpenOptions = openOptions(engineConfig(), {
    formats: sub,
    readOnly: false,
    lockTimeoutMs: 2500,
    logger,
    onDecode,
    decode: { concurrency: 9, maxQueue: undefined },
  });
  assert.equal(options.formats, sub);
  assert.equal(options.readOnly, false);
  assert.equal(options.lockTimeoutMs, 2500);
  assert.equal(options.logger, logger);
  assert.equal(options.onDecode, onDecode);
  assert.equal(options.decode?.concurrency, 9);
  assert.equal(options.decode?.maxQueue, 17, 'an undefined extra does not unset the configured value');
  assert.equal(options.sync, 'always');

  const unset = openOptions(defaultConfig(), { logger: undefined });
  assert.ok(!('logger' in unset));
  assert.ok(!('maxMappedBytes' in unset), 'unset: the engine picks its default');
  assert.ok(unset.decode && !('concurrency' in unset.decode));
});

test('every ServerConfig field is either translated or declared HTTP-only', () => {
  const fields = new Set<string>();
  for (const [k, v] of Object.entries(engineConfig())) {
    if (k === 'decode') for (const d of Object.keys(v as object)) fields.add(`decode.${d}`);
    else fields.add(k);
  }
  const classified = new Set([...Object.keys(TO_ENGINE), ...HTTP_ONLY]);
  assert.deepEqual(
    [...fields].filter((f) => !classified.has(f)),
    [],
    'new ServerConfig field: map it in src/config/open-options.ts or list it as HTTP-only here',
  );
  assert.deepEqual(
    [...classified].filter((f) => !fields.has(f)),
    [],
  );
});
