// One copy of the pixels whatever the number of readers: `npm run bench:sharing` (bench/sharing.ts)
// run small, its smaps figures checked. Backs the table in docs/ARCHITECTURE.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../bench/sharing.js', import.meta.url));

test('N read-only processes mapping the same entries hold one copy: PSS = table / N, nothing private', () => {
  const r = spawnSync(process.execPath, [script], {
    env: { ...process.env, BENCH_ENTRIES: '8' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const rows = new Map<number, string[]>();
  for (const line of r.stdout.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (/^\d+$/.test(cells[1] ?? '')) rows.set(Number(cells[1]), cells.slice(2, 7));
  }
  assert.deepEqual([...rows.keys()], [1, 2, 4], r.stdout);
  const mib = (s: string) => Number(s.replace(' MiB', ''));
  for (const [n, [rss, pss, shared, priv, ratio]] of rows) {
    assert.ok(mib(rss!) >= 8, `${n} readers: every reader has the whole table resident (${rss})`);
    assert.ok(Math.abs(mib(pss!) * n - mib(rss!)) <= 0.2 * n, `${n} readers: PSS ${pss} ≈ ${rss} / ${n}`);
    assert.ok(
      Number(ratio) >= 0.99 && Number(ratio) <= 1.05,
      `${n} readers: PSS × readers / pixels = ${ratio}`,
    );
    if (n > 1) {
      assert.equal(mib(priv!), 0, `${n} readers: no private copy (${priv})`);
      assert.ok(mib(shared!) >= 8, `${n} readers: the pages are shared (${shared})`);
    }
  }
});
