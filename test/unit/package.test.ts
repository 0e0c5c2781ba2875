// Users write `import { ImageCache } from 'pixtable'`: the package's exports map must resolve to
// the built library and its type declarations; `require('pixtable')` must work too, the Node
// versions in `engines` must be the tested ones, and installing must print no warnings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import semver from 'semver';

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

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  engines: { node: string };
};

/** Every package.json under node_modules, nested and scoped ones included. */
function installedPackages(dir: string, out: { name: string; file: string }[] = []) {
  if (!fs.existsSync(dir)) return out;
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    const at = path.join(dir, name);
    if (name.startsWith('@')) {
      installedPackages(at, out);
      continue;
    }
    const file = path.join(at, 'package.json');
    if (!fs.existsSync(file)) continue;
    out.push({ name, file });
    installedPackages(path.join(at, 'node_modules'), out);
  }
  return out;
}

test('engines names the tested Node versions (20 and 24), and this Node is one of them', () => {
  // .ci/run tests on the machine's Node 20 and on Node 24 (.ci/node24); claim no more than that
  assert.equal(pkg.engines.node, '^20.19.0 || ^24.0.0');
  assert.ok(semver.satisfies(process.version, pkg.engines.node), process.version);
});

test("every installed package's engines.node admits every Node version we claim (no EBADENGINE)", () => {
  const packages = installedPackages(path.join(root, 'node_modules'));
  assert.ok(packages.length > 100, `found ${packages.length} packages`);
  const refusing: string[] = [];
  for (const { file } of packages) {
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      name?: string;
      version?: string;
      engines?: { node?: unknown };
    };
    const wanted = p.engines?.node;
    if (typeof wanted !== 'string') continue;
    if (semver.validRange(wanted) === null || !semver.subset(pkg.engines.node, wanted)) {
      refusing.push(`${p.name}@${p.version} wants node ${wanted} (${path.relative(root, file)})`);
    }
  }
  assert.deepEqual(refusing, [], 'override or pin these to versions that run on every claimed Node');
});

test('npm in the project prints no config warnings (no unknown project config in .npmrc)', () => {
  const r = spawnSync('npm', ['config', 'list'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Unknown (project|user|env|cli) config/);
  assert.doesNotMatch(r.stderr, /npm warn/i);
});

test("require('pixtable') loads the ESM entry (require(esm), Node >= 20.19) without warnings", () => {
  const code =
    "const p = require('pixtable');" +
    "if (typeof p.ImageCache?.open !== 'function' || typeof p.PixtableError !== 'function') process.exit(3);" +
    "console.log(Object.keys(p).join(','));";
  // -e with cwd at the package root: require resolves 'pixtable' by self-reference, through the
  // exports map a consumer's require() would use
  const r = spawnSync(process.execPath, ['--input-type=commonjs', '-e', code], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\bImageCache\b/);
  assert.equal(r.stderr, '', 'no ExperimentalWarning or other noise');
});
