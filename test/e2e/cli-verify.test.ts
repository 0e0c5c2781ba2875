// `pixtable verify` and `pixtable compact`: a clean table passes, flipped bytes in a table file
// are found and listed (non-zero exit), --repair drops them, compact keeps only live records.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { rmrf, runCli, tempDir, writeImages } from './cli-fixtures.js';

const PAGE = 4096;

describe('pixtable verify / compact', () => {
  let root: string;
  let storage: string;

  before(async () => {
    root = tempDir();
    storage = path.join(root, 'storage');
    await writeImages(path.join(root, 'in'), 4);
    const r = await runCli(['import', path.join(root, 'in'), '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => rmrf(root));

  it('a clean storage verifies with exit 0', async () => {
    const r = await runCli(['verify', '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `verified 12 entries in ${fs.realpathSync(storage)}: no damage\n`);
  });

  it('flipped bytes in a table are listed per entry and exit 1', async () => {
    // Slot 0 of thumb-256 starts right after the header page; slot 1 one entry further.
    const seg = path.join(storage, 'tables', 'thumb-256', 'seg-00000.tbl');
    const entry = Math.ceil((256 * 256 * 4 + 64) / PAGE) * PAGE;
    const fd = fs.openSync(seg, 'r+');
    for (const off of [PAGE + 1000, PAGE + entry + 77 * 1024]) {
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, off);
      b[0] = b[0]! ^ 0xff;
      fs.writeSync(fd, b, 0, 1, off);
    }
    fs.closeSync(fd);

    const r = await runCli(['verify', '--storage', storage]);
    assert.equal(r.code, 1, r.stderr);
    const damaged = r.stdout.split('\n').filter((l) => l.startsWith('damaged '));
    assert.equal(damaged.length, 2, r.stdout);
    for (const l of damaged) assert.match(l, /^damaged thumb-256 \S+ \(slot [01]\): CRC mismatch$/);
    assert.match(r.stdout, /^2 problems in 12 entries; .*pixtable verify --repair/m);

    const json = await runCli(['verify', '--json', '--storage', storage]);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as {
      checked: number;
      problems: { format: string; key: string; slot: number; problem: string }[];
    };
    assert.equal(report.checked, 12);
    assert.deepEqual(report.problems.map((p) => [p.format, p.slot, p.problem]).sort(), [
      ['thumb-256', 0, 'CRC mismatch'],
      ['thumb-256', 1, 'CRC mismatch'],
    ]);

    // Other formats are untouched.
    const only64 = await runCli(['verify', '--format', 'thumb-64', '--storage', storage]);
    assert.equal(only64.code, 0, only64.stdout);
  });

  it('--repair drops the damaged entries (exit 0); verify is clean again; import re-decodes them', async () => {
    const r = await runCli(['verify', '--repair', '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^repaired: dropped 2 damaged entries/m);
    const again = await runCli(['verify', '--storage', storage]);
    assert.equal(again.code, 0, again.stdout);
    assert.match(again.stdout, /verified 10 entries/);
    const re = await runCli(['import', path.join(storage, 'sources'), '--storage', storage, '--json']);
    assert.equal(re.code, 0, re.stderr);
    assert.equal((JSON.parse(re.stdout) as { imported: number }).imported, 2);
    assert.match((await runCli(['verify', '--storage', storage])).stdout, /verified 12 entries/);
  });

  it('compact rewrites the index logs and keeps every entry', async () => {
    const r = await runCli(['compact', '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^compacted 3 index logs in .*: [\d.]+ KiB -> [\d.]+ KiB$/m);
    const v = await runCli(['verify', '--storage', storage]);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /verified 12 entries/);
  });

  it('read-only commands on a storage without tables say so (exit 5)', async () => {
    const empty = path.join(root, 'empty');
    for (const cmd of ['verify', 'stats']) {
      const r = await runCli([cmd, '--storage', empty]);
      assert.equal(r.code, 5, cmd);
      assert.match(
        r.stderr,
        new RegExp(`^pixtable ${cmd}: storage .*empty holds no tables; import images first`),
      );
    }
  });
});
