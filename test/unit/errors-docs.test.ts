import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ERRORS } from '../../src/errors.js';

// Run from dist/test/unit; docs/ is in the repository root.
const doc = fs.readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('docs/errors.md documents every error code with its status', () => {
  const missing: string[] = [];
  for (const [code, { status }] of Object.entries(ERRORS)) {
    // a table row: | `CODE` | status | ...
    const row = new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*${status}\\s*\\|`, 'm');
    if (!row.test(doc)) missing.push(`${code} (${status})`);
  }
  assert.deepEqual(missing, [], 'add a row "| `CODE` | status | when | what to do |" for each');
});

test('docs/errors.md lists no code that does not exist', () => {
  const listed = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
  const unknown = listed.filter((c) => !(c! in ERRORS));
  assert.deepEqual(unknown, []);
});
