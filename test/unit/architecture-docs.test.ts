// docs/ARCHITECTURE.md's module map is how a newcomer finds their way: every source file under src/
// is in it, and every file it names exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const doc = fs.readFileSync(path.join(repo, 'docs/ARCHITECTURE.md'), 'utf8');

/** The map's rows, each with the directory its section heading names (`src/engine/`, …) or src/. */
function mapRows(): { dir: string; names: string[] }[] {
  const start = doc.indexOf('## Module map');
  const end = doc.indexOf('\n## ', start + 1);
  assert.ok(start >= 0, 'docs/ARCHITECTURE.md has a "## Module map" section');
  let dir = 'src/';
  const rows: { dir: string; names: string[] }[] = [];
  for (const line of doc.slice(start, end < 0 ? undefined : end).split('\n')) {
    if (!line.startsWith('| ')) continue;
    const first = line.split('|')[1]!.trim();
    if (first.startsWith('**')) {
      dir = /`(src\/[^`]*\/)`/.exec(first)?.[1] ?? 'src/';
      continue;
    }
    const names = [...first.matchAll(/`([^`]+\.ts)`/g)].map((m) => m[1]!);
    if (names.length > 0) rows.push({ dir, names });
  }
  return rows;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(repo, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}

test('every file under src/ is in the module map, and the map names only files that exist', () => {
  const named = new Set<string>();
  for (const { dir, names } of mapRows()) {
    for (const n of names) named.add(n.startsWith('src/') ? n : `${dir}${n}`);
  }
  const files = sourceFiles('src');
  const missing = files.filter((f) => !named.has(f));
  assert.deepEqual(missing, [], 'files the module map of docs/ARCHITECTURE.md does not mention');
  const gone = [...named].filter((n) => !fs.existsSync(path.join(repo, n)));
  assert.deepEqual(gone, [], 'files the module map names that do not exist');
  assert.ok(files.length > 50, `found only ${files.length} source files`);
});

test('the architecture notes cite nothing outside the repository', () => {
  assert.doesNotMatch(doc, /\.\.\/shared|\]\(\.\.\/\.\.\//);
});
