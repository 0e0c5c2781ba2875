// test/helpers/requires.ts decides what a missing real component does to a run: under CI=true it
// fails it, elsewhere it skips with the reason, counted in the summary. Checked by running small
// test files that use the helper in a child `node --test`, with and without CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const helper = pathToFileURL(path.resolve(import.meta.dirname, '../helpers/requires.js')).href;

const SUITE = `
import { describe, it } from 'node:test';
import { requireComponent } from ${JSON.stringify(helper)};
const skip = requireComponent('frobnicator', process.env.FOUND === '1', 'apt-get install frobnicator');
describe('needs the frobnicator', { skip }, () => {
  it('runs', () => console.log('SUITE RAN'));
});
`;
const IN_TEST = `
import { test } from 'node:test';
import { requireComponentIn } from ${JSON.stringify(helper)};
test('needs a widget', (t) => {
  if (!requireComponentIn(t, 'widget', process.env.FOUND === '1', 'no /dev/widget')) return;
  console.log('TEST RAN');
});
`;

function run(source: string, env: Record<string, string>) {
  const dir = tempDir('pixtable-requires-');
  try {
    const file = path.join(dir, 'probe.test.mjs');
    fs.writeFileSync(file, source);
    const base = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], {
      env: { ...base, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)`, 'm').exec(r.stdout)?.[1]);
    return { status: r.status, out: r.stdout, fail: count('fail'), skipped: count('skipped') };
  } finally {
    rmrf(dir);
  }
}

for (const [kind, source, ran] of [
  ['a suite', SUITE, 'SUITE RAN'],
  ['a test', IN_TEST, 'TEST RAN'],
] as const) {
  test(`${kind}: a missing component fails the run under CI=true, naming it and the reason`, () => {
    const r = run(source, { CI: 'true' });
    assert.equal(r.status, 1, r.out);
    assert.equal(r.fail, 1, r.out);
    assert.match(
      r.out,
      /CI=true and (frobnicator|widget) is not available: (apt-get install frobnicator|no \/dev\/widget)/,
    );
    assert.doesNotMatch(r.out, new RegExp(ran));
  });

  test(`${kind}: without CI a missing component skips with the reason, counted as skipped`, () => {
    const r = run(source, {});
    assert.equal(r.status, 0, r.out);
    assert.equal(r.fail, 0, r.out);
    assert.equal(r.skipped, 1, r.out);
    assert.match(r.out, /# SKIP (frobnicator|widget) is not available/);
    assert.doesNotMatch(r.out, new RegExp(ran));
  });

  test(`${kind}: a component that is found runs, with or without CI`, () => {
    const envs: Record<string, string>[] = [{ CI: 'true', FOUND: '1' }, { FOUND: '1' }];
    for (const env of envs) {
      const r = run(source, env);
      assert.equal(r.status, 0, r.out);
      assert.equal(r.skipped, 0, r.out);
      assert.match(r.out, new RegExp(ran));
    }
  });
}
