import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ERRORS, EXIT } from '../../src/errors.js';

// Run from dist/test/unit; docs/ is in the repository root.
const doc = fs.readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const cliDoc = fs.readFileSync(new URL('../../../docs/cli.md', import.meta.url), 'utf8');

test('docs/errors.md documents every error code with its status and exit code', () => {
  const missing: string[] = [];
  for (const [code, { status, exit }] of Object.entries(ERRORS)) {
    // a table row: | `CODE` | status | exit | ...
    const row = new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*${status}\\s*\\|\\s*${exit}\\s*\\|`, 'm');
    if (!row.test(doc)) missing.push(`${code} (${status}, exit ${exit})`);
  }
  assert.deepEqual(missing, [], 'add a row "| `CODE` | status | exit | when | what to do |" for each');
});

test('docs/errors.md lists no code that does not exist', () => {
  const listed = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
  const unknown = listed.filter((c) => !(c! in ERRORS));
  assert.deepEqual(unknown, []);
});

test('docs/cli.md explains every exit code, and only those', () => {
  const section = cliDoc.slice(cliDoc.indexOf('## Exit status'));
  const listed = [...section.matchAll(/^\|\s*(\d+)\s*\|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(
    listed.sort((a, b) => a - b),
    Object.values(EXIT).sort((a, b) => a - b),
  );
});
