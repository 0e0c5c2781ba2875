// Users write `import { ImageCache } from 'pixtable'`: the package's exports map must resolve to
// the built library and its type declarations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

test("import { ImageCache } from 'pixtable' resolves to the built library with types", async () => {
  const name = 'pixtable'; // a variable, so tsc does not resolve it against a dist/ it is building
  const mod = (await import(name)) as Record<string, unknown>;
  assert.equal(typeof mod.ImageCache, 'function');
  assert.equal(typeof (mod.ImageCache as { open?: unknown }).open, 'function');
  assert.equal(typeof mod.PixtableError, 'function');
  assert.ok(Array.isArray(mod.DEFAULT_FORMATS));
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('pixtable/package.json');
  const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as {
    exports: { '.': { types: string; import: string } };
    bin: Record<string, string>;
  };
  const root = path.dirname(pkgPath);
  assert.ok(fs.existsSync(path.join(root, pkg.exports['.'].types)), 'type declarations are built');
  assert.ok(fs.readFileSync(path.join(root, pkg.exports['.'].types), 'utf8').includes('ImageCache'));
  assert.ok(fs.existsSync(path.join(root, pkg.bin.pixtable!)), 'the CLI entry is built');
});
