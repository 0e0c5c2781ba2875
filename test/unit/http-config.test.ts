import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig } from '../../src/config/env.js';
import { PixtableError } from '../../src/errors.js';

function fails(env: Record<string, string>, ...parts: (string | RegExp)[]) {
  assert.throws(
    () => loadConfig(env, '/srv'),
    (e: unknown) => {
      assert.ok(e instanceof PixtableError, 'a PixtableError');
      assert.equal(e.code, 'INVALID_CONFIG');
      for (const p of parts) {
        if (typeof p === 'string')
          assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} mentions ${p}`);
        else assert.match(e.message, p);
      }
      return true;
    },
  );
}

test('defaults: localhost:8080, ./storage resolved against cwd, default formats, signing off', () => {
  const { config, warnings } = loadConfig({}, '/srv/app');
  assert.equal(config.port, 8080);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.storage, path.resolve('/srv/app', 'storage'));
  assert.deepEqual(
    config.formatList.map((f) => f.name),
    ['thumb-64', 'thumb-256', 'preview-1024'],
  );
  assert.equal(config.signingKeys.length, 0);
  assert.equal(config.origin, undefined);
  assert.equal(config.maxUploadBytes, 50 * 1024 * 1024);
  assert.deepEqual(warnings, []);
});

test('values are read and converted', () => {
  const { config } = loadConfig(
    {
      PORT: '9000',
      HOST: '0.0.0.0',
      PIXTABLE_STORAGE: '/data',
      PIXTABLE_MAX_UPLOAD_BYTES: '1_048_576',
      PIXTABLE_READ_ONLY: 'yes',
      PIXTABLE_LOG_REQUESTS: 'off',
      PIXTABLE_THUMB_TYPES: 'avif,webp',
      PIXTABLE_DECODE_QUEUE: '0',
      PIXTABLE_FORMATS: '[{"name":"icon","width":32,"height":32,"pixelFormat":"bgra8-premultiplied"}]',
    },
    '/srv',
  );
  assert.equal(config.port, 9000);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.storage, '/data');
  assert.equal(config.maxUploadBytes, 1048576);
  assert.equal(config.readOnly, true);
  assert.equal(config.logRequests, false);
  assert.deepEqual(config.thumbTypes, ['avif', 'webp']);
  assert.equal(config.decode.maxQueue, 0);
  assert.equal(config.formatList[0]?.stride, 128);
});

test('empty variables count as unset', () => {
  assert.equal(loadConfig({ PORT: '', PIXTABLE_KEY: '  ' }).config.port, 8080);
});

test('bad numbers name the variable, the expected range and the value', () => {
  fails({ PORT: 'eighty' }, 'PORT', 'an integer from 0 to 65535', '"eighty"');
  fails({ PORT: '70000' }, 'PORT', '"70000"');
  fails({ PIXTABLE_DECODE_CONCURRENCY: '1.5' }, 'PIXTABLE_DECODE_CONCURRENCY', 'from 1 to 64');
  fails({ PIXTABLE_MAX_UPLOAD_BYTES: '-1' }, 'PIXTABLE_MAX_UPLOAD_BYTES');
  fails({ PIXTABLE_READ_ONLY: 'maybe' }, 'PIXTABLE_READ_ONLY', 'a boolean', '"maybe"');
  fails({ PIXTABLE_SYNC: 'sometimes' }, 'PIXTABLE_SYNC', 'none, batch, always');
  fails({ PIXTABLE_LOG_LEVEL: 'loud' }, 'PIXTABLE_LOG_LEVEL');
  fails({ PIXTABLE_THUMB_TYPES: 'webp,gif' }, 'PIXTABLE_THUMB_TYPES', '"gif"');
  fails(
    { PIXTABLE_HEADERS_TIMEOUT_MS: '5000', PIXTABLE_REQUEST_TIMEOUT_MS: '1000' },
    'PIXTABLE_HEADERS_TIMEOUT_MS',
  );
});

test('formats: JSON errors and format errors are reported under PIXTABLE_FORMATS', () => {
  fails({ PIXTABLE_FORMATS: '[{' }, 'PIXTABLE_FORMATS', 'JSON');
  fails({ PIXTABLE_FORMATS: '[{"name":"x","width":0,"height":1}]' }, 'PIXTABLE_FORMATS', 'width');
  fails({ PIXTABLE_FORMATS: '[]' }, 'PIXTABLE_FORMATS');
});

test('signing: hex keys and salts in pairs, several for rotation', () => {
  const k1 = 'aa'.repeat(32);
  const k2 = 'bb'.repeat(16);
  const { config } = loadConfig({ PIXTABLE_KEY: `${k1},${k2}`, PIXTABLE_SALT: 'cc,dd' });
  assert.equal(config.signingKeys.length, 2);
  assert.equal(config.signingKeys[0]?.key.toString('hex'), k1);
  assert.equal(config.signingKeys[1]?.salt.toString('hex'), 'dd');
  fails({ PIXTABLE_KEY: k1 }, 'PIXTABLE_KEY/PIXTABLE_SALT', '1 key(s) and 0 salt(s)');
  fails({ PIXTABLE_KEY: 'zz'.repeat(16), PIXTABLE_SALT: 'aa' }, 'PIXTABLE_KEY (entry 1)', 'hex');
  fails({ PIXTABLE_KEY: 'aa', PIXTABLE_SALT: 'aa' }, 'PIXTABLE_KEY (entry 1)', 'at least 16 bytes');
});

test('origin: URL, allow-lists and limits are validated', () => {
  const { config } = loadConfig({
    PIXTABLE_ORIGIN: 'https://img.example.com/base',
    PIXTABLE_ORIGIN_ALLOW_HOSTS: 'cdn.example.com, *.example.net',
    PIXTABLE_ORIGIN_ALLOW_NETWORKS: '10.0.0.0/8,fd00::/8',
    PIXTABLE_ORIGIN_MAX_BYTES: '1000',
  });
  assert.equal(config.origin?.base.href, 'https://img.example.com/base/');
  assert.deepEqual(config.origin?.allowHosts, ['cdn.example.com', '*.example.net']);
  assert.deepEqual(config.origin?.allowNetworks, ['10.0.0.0/8', 'fd00::/8']);
  assert.equal(config.origin?.maxBytes, 1000);
  assert.equal(config.origin?.maxRedirects, 3);
  fails({ PIXTABLE_ORIGIN: 'ftp://x/' }, 'PIXTABLE_ORIGIN', 'http://');
  fails({ PIXTABLE_ORIGIN: 'not a url' }, 'PIXTABLE_ORIGIN');
  fails({ PIXTABLE_ORIGIN: 'http://user:pw@x/' }, 'credentials');
  fails(
    { PIXTABLE_ORIGIN: 'http://x/', PIXTABLE_ORIGIN_ALLOW_NETWORKS: '10.0.0.0' },
    'PIXTABLE_ORIGIN_ALLOW_NETWORKS',
    '"10.0.0.0"',
  );
  fails(
    { PIXTABLE_ORIGIN: 'http://x/', PIXTABLE_ORIGIN_ALLOW_NETWORKS: '300.0.0.0/8' },
    'PIXTABLE_ORIGIN_ALLOW_NETWORKS',
  );
  // A tuning variable without the origin is a mistake worth stopping for (the operator expects fetching).
  fails(
    { PIXTABLE_ORIGIN_MAX_BYTES: '10' },
    'PIXTABLE_ORIGIN_MAX_BYTES',
    'only together with PIXTABLE_ORIGIN',
  );
});

test('unknown PIXTABLE_ variables are warned about, not fatal', () => {
  const { warnings } = loadConfig({ PIXTABLE_STORGE: '/x', PIXTABLE_CONFIG: 'f.json', PATH: '/bin' });
  assert.deepEqual(warnings, ['PIXTABLE_STORGE is not a pixtable setting (typo?); it is ignored']);
});
