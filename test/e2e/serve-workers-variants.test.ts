// Variants from `pixtable serve --workers 2`: the workers are read-only caches, so a variant of a
// key nobody decoded goes to the writer for its master (one decode however many ask), is cut by
// the worker from its own mapping, and later variants of any size decode nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { FormatSpec } from '../../src/index.js';
import { patternPng, rmrf, startChild, stopChild, tempDir } from './cli-fixtures.js';
import { request as rawRequest, type RawResponse } from '../http/net-helpers.js';

const FORMATS: FormatSpec[] = [
  { name: 'thumb', width: 64, height: 64, fit: 'cover', family: 'f', maxCount: 64 },
  { name: 'preview', width: 512, height: 512, fit: 'inside', family: 'f', maxCount: 64 },
];

/** One request on a connection of its own, so the kernel may hand it to either worker. */
function get(url: string): Promise<RawResponse> {
  const u = new URL(url);
  return rawRequest(u.origin, u.pathname + u.search);
}

async function counters(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await get(`${url}/metrics`)).body.toString().split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const workerResponses = (m: Map<string, number>): number =>
  [1, 2].reduce(
    (n, w) => n + (m.get(`pixtable_server_responses_total{role="worker",worker="${w}"}`) ?? 0),
    0,
  );

test(
  'serve --workers 2: variants are cut by the workers, from masters the writer decoded once',
  { timeout: 120_000 },
  async () => {
    const storage = tempDir('pixtable-variants-');
    const { child, output, match } = await startChild(
      ['serve', '--workers', '2', '--port', '0', '--storage', storage, '--no-log-requests'],
      /"role":"supervisor","url":"([^"]+)"/,
      { env: { PIXTABLE_FORMATS: JSON.stringify(FORMATS), PIXTABLE_LOG_LEVEL: 'warn' }, timeoutMs: 60_000 },
    );
    const url = match[1]!;
    try {
      fs.mkdirSync(path.join(storage, 'sources'), { recursive: true });
      fs.writeFileSync(path.join(storage, 'sources', 'p.png'), await patternPng(800, 600, 3));
      const before = await counters(url);

      // 8 concurrent first requests for a variant: every one answered, one decode of the family
      const first = await Promise.all(
        Array.from({ length: 8 }, () => get(`${url}/v1/thumbnails/preview/p.png?w=320&type=webp`)),
      );
      for (const r of first) assert.equal(r.status, 200, r.body.toString());
      const m = await sharp(first[0]!.body).metadata();
      assert.deepEqual([m.format, m.width, m.height], ['webp', 320, 240]);
      const afterFirst = await counters(url);
      assert.equal(
        (afterFirst.get('pixtable_decodes_total{format="preview"}') ?? 0) -
          (before.get('pixtable_decodes_total{format="preview"}') ?? 0),
        1,
        'one decode for 8 concurrent variant misses across the workers',
      );

      // other sizes and the repeated one: from the workers' own mappings and LRUs, no decode
      for (const q of ['w=320&type=webp', 'w=128&dpr=2&type=png', 'w=48&type=jpeg', 'h=100&type=webp']) {
        const rs = await Promise.all(
          Array.from({ length: 6 }, () => get(`${url}/v1/thumbnails/preview/p.png?${q}`)),
        );
        for (const r of rs) assert.equal(r.status, 200, `${q}: ${r.body.toString()}`);
        // two workers may each encode it; the bytes are the same
        assert.equal(new Set(rs.map((r) => r.body.toString('hex'))).size, 1, q);
        const c = await get(`${url}/v1/thumbnails/thumb/p.png?${q}`);
        assert.equal(c.status, 200, q);
      }
      const last = await counters(url);
      assert.equal(
        last.get('pixtable_decodes_total{format="preview"}'),
        afterFirst.get('pixtable_decodes_total{format="preview"}'),
        'no decode for variants of cached masters',
      );
      assert.ok(workerResponses(last) - workerResponses(before) >= 8 + 4 * 7, 'the workers answered them');
      assert.equal(await stopChild(child, 'SIGTERM'), 0, output());
    } finally {
      if (child.exitCode === null) await stopChild(child, 'SIGKILL');
      rmrf(storage);
    }
  },
);
