import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ENV_VARS } from '../../src/config/env.js';
import { serveSettings } from '../../src/cli/serve.js';

const doc = fs.readFileSync(new URL('../../../docs/config.md', import.meta.url), 'utf8');

test('docs/config.md has a row for every variable the server reads, and no unknown ones', () => {
  const rows = new Set([...doc.matchAll(/^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|/gm)].map((m) => m[1]));
  assert.deepEqual(
    ENV_VARS.filter((v) => !rows.has(v)),
    [],
  );
  assert.deepEqual(
    [...rows].filter((v) => !(ENV_VARS as readonly string[]).includes(v!)),
    [],
  );
});

test('`pixtable serve --help` describes every variable itself, not by a pointer to the docs', () => {
  const vague = serveSettings()
    .filter((s) => s.help === 'see docs/config.md')
    .map((s) => s.env);
  assert.deepEqual(vague, []);
});
