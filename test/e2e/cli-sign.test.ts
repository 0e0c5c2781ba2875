// `pixtable sign` (src/cli/sign.ts) as a user runs it: the printed URL, used against a real server
// with the same PIXTABLE_KEY/PIXTABLE_SALT, does what it was signed for and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli-fixtures.js';
import { makeImage } from '../http/helpers.js';
import { start, request } from '../http/net-helpers.js';

const KEY_HEX = '11'.repeat(32);
const SALT_HEX = 'a1b2';
const env = { PIXTABLE_KEY: KEY_HEX, PIXTABLE_SALT: SALT_HEX };

test('pixtable sign: a PUT URL bound to a file uploads that file only; GET and DELETE URLs', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-sign-'));
  const s = await start({
    formats: [{ name: 'small', width: 16, height: 16 }],
    signingKeys: [{ key: Buffer.from(KEY_HEX, 'hex'), salt: Buffer.from(SALT_HEX, 'hex') }],
  });
  try {
    const img = await makeImage('png', 20, 20, 5);
    await fs.writeFile(path.join(dir, 'a.png'), img);
    const put = await runCli(
      ['sign', '-X', 'PUT', '--body', 'a.png', '--expires', '300', '/v1/sources/x%20y.png'],
      {
        cwd: dir,
        env,
      },
    );
    assert.equal(put.code, 0, put.stderr);
    const putUrl = put.stdout.trim();
    const digest = createHash('sha256').update(img).digest('hex');
    assert.match(
      putUrl,
      new RegExp(`^/v1/sources/x%20y\\.png\\?exp=\\d+&sha256=${digest}&sig=[A-Za-z0-9_-]{43}$`),
    );
    const exp = Number(/exp=(\d+)/.exec(putUrl)?.[1]);
    assert.ok(Math.abs(exp - (Date.now() / 1000 + 300)) < 30, 'exp is 300 s from now');
    const other = await makeImage('png', 20, 20, 6);
    assert.equal((await request(s.url, putUrl, { method: 'PUT', body: other })).status, 403, 'other bytes');
    assert.equal((await request(s.url, putUrl, { method: 'PUT', body: img })).status, 201);
    assert.equal(
      (await request(s.url, putUrl, { method: 'DELETE' })).status,
      403,
      'an upload URL does not delete',
    );

    const get = await runCli(['sign', '--base', s.url, '/v1/pixels/small/x%20y.png'], { env });
    assert.equal(get.code, 0, get.stderr);
    const getUrl = get.stdout.trim();
    assert.ok(getUrl.startsWith(`${s.url}/v1/pixels/small/x%20y.png?sig=`), getUrl);
    const target = getUrl.slice(s.url.length);
    assert.equal((await request(s.url, target)).status, 200);
    assert.equal((await request(s.url, target, { method: 'HEAD' })).status, 200);

    const del = await runCli(['sign', '--method', 'delete', '/v1/sources/x%20y.png'], { env });
    assert.equal((await request(s.url, del.stdout.trim(), { method: 'DELETE' })).status, 204);
  } finally {
    await s.done();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('pixtable sign: usage and configuration errors are one line with their exit codes', async () => {
  const cases: [string[], Record<string, string>, number, RegExp][] = [
    [['sign', '/v1/x'], {}, 3, /PIXTABLE_KEY and PIXTABLE_SALT are not set/],
    [['sign', '/v1/x'], { PIXTABLE_KEY: KEY_HEX }, 3, /PIXTABLE_KEY\/PIXTABLE_SALT/],
    [['sign'], env, 2, /missing/],
    [['sign', 'v1/x'], env, 2, /starting with \//],
    [['sign', '/v1/x?sig=abc'], env, 2, /already carry a sig/],
    [['sign', '-X', 'POST', '/v1/x'], env, 2, /--method must be one of GET, PUT, DELETE/],
    [['sign', '--body', 'f', '/v1/x'], env, 2, /--method PUT/],
    [['sign', '--expires', '0', '/v1/x'], env, 2, /--expires/],
    [['sign', '--base', 'ftp://h', '/v1/x'], env, 2, /--base/],
    [['sign', '-X', 'PUT', '--body', '/nonexistent/file', '/v1/x'], env, 5, /ENOENT/],
  ];
  for (const [args, e, code, msg] of cases) {
    const r = await runCli(args, { env: e });
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, msg, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    assert.equal(r.stdout, '');
  }
});
