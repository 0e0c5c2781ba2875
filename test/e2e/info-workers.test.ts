// GET /v1/info through `pixtable serve --workers 2`: each worker answers from its own read-only
// cache, with the placeholder the writer stored at the upload — the same answer as the library's
// cache.info() on that storage, whichever worker the kernel hands the connection to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageCache, type FormatSpec } from '../../src/index.js';
import { gradientPng, rmrf, tempDir } from '../helpers/fixtures.js';
import { startChild, stopChild } from './cli-fixtures.js';
import { request as rawRequest } from '../http/net-helpers.js';

const FORMATS: FormatSpec[] = [
  { name: 'small', width: 24, height: 24, fit: 'cover', family: 'f', maxCount: 16 },
  { name: 'big', width: 96, height: 96, fit: 'inside', family: 'f', maxCount: 16 },
];

/** One request on a connection of its own, so that the kernel may hand it to either worker. */
async function get(origin: string, target: string, method = 'GET', body?: Buffer) {
  return rawRequest(origin, target, {
    method,
    headers: body ? { 'content-type': 'image/png' } : {},
    ...(body ? { body } : {}),
  });
}

async function workerResponses(origin: string): Promise<number[]> {
  const text = (await get(origin, '/metrics')).body.toString();
  return [1, 2].map((w) => {
    const m = new RegExp(
      `^pixtable_server_responses_total\\{role="worker",worker="${w}"\\} (\\S+)$`,
      'm',
    ).exec(text);
    return Number(m?.[1] ?? 0);
  });
}

test(
  '--workers 2: /v1/info from either worker equals cache.info, placeholder included',
  { timeout: 120_000 },
  async () => {
    const storage = tempDir('pixtable-info-workers-');
    const { child, match } = await startChild(
      ['serve', '--workers', '2', '--port', '0', '--storage', storage, '--no-log-requests'],
      /"role":"supervisor","url":"([^"]+)"/,
      { env: { PIXTABLE_FORMATS: JSON.stringify(FORMATS), PIXTABLE_LOG_LEVEL: 'warn' }, timeoutMs: 60_000 },
    );
    const origin = new URL(match[1]!).origin;
    try {
      const put = await get(origin, '/v1/sources/g.png', 'PUT', await gradientPng(120, 90));
      assert.ok(put.status === 200 || put.status === 201, `${put.status} ${put.body.toString()}`);

      const lib = await ImageCache.open({ storage, formats: FORMATS, readOnly: true, logger: { warn() {} } });
      let expected: unknown;
      try {
        expected = await lib.info('g.png');
      } finally {
        await lib.close();
      }
      assert.ok(
        (expected as { placeholder?: unknown }).placeholder,
        'the writer stored a placeholder at the upload',
      );

      // bursts of fresh connections until both workers answered some (the kernel may give a short
      // burst to one worker only); every answer is the library's
      let both = false;
      for (let burst = 0; burst < 10 && !both; burst++) {
        const before = await workerResponses(origin);
        const answers = await Promise.all(Array.from({ length: 16 }, () => get(origin, '/v1/info/g.png')));
        const after = await workerResponses(origin);
        for (const r of answers) {
          assert.equal(r.status, 200, r.body.toString());
          assert.deepEqual(JSON.parse(r.body.toString()), expected);
        }
        // the scrape itself counts one response on whichever worker took it
        both = after[0]! - before[0]! >= 2 && after[1]! - before[1]! >= 2;
      }
      assert.ok(both, 'no burst reached both workers');
      const missing = await get(origin, '/v1/info/none.png');
      assert.equal(missing.status, 404);
      assert.equal(JSON.parse(missing.body.toString()).error.code, 'SOURCE_NOT_FOUND');
    } finally {
      await stopChild(child);
      rmrf(storage);
    }
  },
);
