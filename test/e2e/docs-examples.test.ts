// Every fenced block of README.md and docs/*.md, run as a new user would run it (on Node 20 and,
// through .ci/node24, on Node 24):
// - `ts`: compiled in a fresh project with the config `tsc --init` writes (plus the two lines it
//   suggests "for nodejs") and run; `js`: run as an ES module. Both import 'pixtable' from that
//   project's node_modules, as a dependency is imported.
// - `sh`/`bash`: run by bash -euo pipefail in a fresh directory shaped like a checkout, with
//   `pixtable` on PATH and curl failing on an HTTP error status. A block that needs a server (curl,
//   --server) and does not start one gets one from dist/; a line that starts one (`npm start`,
//   `pixtable serve`) runs in the background until the block ends. The documented addresses
//   (127.0.0.1:8080, localhost:3000) become a free port's.
// - `json`: must parse. `text`: output, trees and formulas, not run. No tag: the test fails, so
//   every new block says what it is.
// What every example assumes is there: cat.jpg (1600x1200) and dog.png in the current directory,
// photos/cat.jpg among the stored sources, ~/photos/2024/{cat,a}.jpg. Files an example writes (-o
// FILE, > FILE) must be what their name says (magic bytes), and a raw file whose line says
// "WxH pixelformat" must be that many bytes; a `// prints: …` comment is the line the example must
// print; a printed /v1/… path is fetched from a server with the example's PIXTABLE_KEY/SALT.
// What cannot run here is listed below with the reason, and the test fails on a stale entry.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { BYTES_PER_PIXEL, type PixelFormat } from '../../src/index.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';

const root = path.resolve(import.meta.dirname, '../../..');
const DOCS = [
  'README.md',
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/** Blocks not run, by file and the start of their first line. Keep it small and say why. */
const NOT_RUNNABLE: { file: string; first: string; why: string }[] = [
  {
    file: 'README.md',
    first: 'npm ci && npm start',
    why: 'a fresh checkout: .ci/run runs `npm ci`; test/e2e/npm-start.test.ts runs and stops `npm start`',
  },
  { file: 'README.md', first: 'npm ci && npm test', why: '.ci/run runs exactly this' },
  {
    file: 'README.md',
    first: 'npm install-scripts approve',
    why: 'belongs in a project that installed pixtable from a registry or tarball (npm 11)',
  },
  {
    file: 'README.md',
    first: 'npm run bench ',
    why: 'benchmarks: minutes of both cores; run by hand, their figures are in the docs',
  },
  {
    file: 'README.md',
    first: 'let ref = cache.peekRef(',
    why: 'a fragment of a render loop: `gl` is the caller’s WebGL context, `key` and `cache` the main example’s',
  },
  { file: 'docs/docker.md', first: 'docker exec pixtable', why: 'needs Docker and a running container' },
  { file: 'docs/docker.md', first: 'docker stop pixtable', why: 'needs Docker and a running container' },
];
/** Lines dropped from blocks that are otherwise run. */
const NOT_RUN_LINES: { pattern: RegExp; why: string }[] = [
  {
    pattern: /^docker (build|run) /,
    why: 'no Docker here: .ci/run builds and health-checks the image (docker-verify); the rest of the block runs against a server from dist/ standing in for the container',
  },
];

interface Block {
  file: string;
  line: number;
  lang: string;
  text: string;
  first: string;
}

function fencedBlocks(file: string): Block[] {
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    out.push({
      file,
      line: i + 1,
      lang: open[2]!,
      text: body.join('\n') + '\n',
      first: body[0]?.trim() ?? '',
    });
    i = j;
  }
  return out;
}

const blocks = DOCS.flatMap(fencedBlocks);
const notRunnable = (b: Block) => NOT_RUNNABLE.find((n) => n.file === b.file && b.first.startsWith(n.first));

// ---- the world the examples assume ----

interface Fixtures {
  catJpg: Buffer;
  dogPng: Buffer;
  aJpg: Buffer;
}
let fixtures: Fixtures;

before(async () => {
  const solid = (width: number, height: number, r: number) =>
    sharp({ create: { width, height, channels: 3, background: { r, g: 120, b: 60 } } });
  fixtures = {
    catJpg: await solid(1600, 1200, 200).jpeg().toBuffer(),
    dogPng: await solid(300, 200, 40).png().toBuffer(),
    aJpg: await solid(640, 480, 90).jpeg().toBuffer(),
  };
});

function write(file: string, bytes: Buffer | string, mode?: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes, mode === undefined ? undefined : { mode });
}

/** The images every example may use, under `dir` (its cwd) and `home`. */
function seed(dir: string, home: string): void {
  write(path.join(dir, 'cat.jpg'), fixtures.catJpg);
  write(path.join(dir, 'dog.png'), fixtures.dogPng);
  write(path.join(dir, 'photos/cat.jpg'), fixtures.catJpg);
  write(path.join(dir, 'storage/sources/photos/cat.jpg'), fixtures.catJpg);
  write(path.join(home, 'photos/2024/cat.jpg'), fixtures.catJpg);
  write(path.join(home, 'photos/2024/a.jpg'), fixtures.aJpg);
}

function baseEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: [path.join(dir, 'bin'), path.dirname(process.execPath), '/usr/bin', '/bin'].join(':'),
    HOME: path.join(dir, 'home'),
    PIXTABLE_LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** `pixtable serve` from dist/ in `dir` (storage ./storage), until stop(). */
async function serverIn(dir: string, port: number, env: Record<string, string> = {}) {
  const proc = spawn(process.execPath, [path.join(root, 'dist/src/cli/main.js'), 'serve'], {
    cwd: dir,
    env: baseEnv(dir, { PORT: String(port), ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`server did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    output: () => out,
    stop: async () => {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---- what an example's output must be ----

const MAGIC: Record<string, (b: Buffer) => boolean> = {
  '.webp': (b) =>
    b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
  '.png': (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  '.jpg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  '.jpeg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  '.avif': (b) => /^ftypavi[fs]$/.test(b.subarray(4, 12).toString('latin1')),
};

/** Files the shell lines write, with what each line says about them. */
function outputsOf(lines: string[]): { file: string; line: string }[] {
  const out: { file: string; line: string }[] = [];
  for (const line of lines) {
    const code = line.replace(/\s+#.*$/, '');
    for (const m of code.matchAll(/(?:-o|(?<![0-9&])>)\s*(['"]?)([^\s'"]+)\1/g)) {
      if (m[2] !== '-' && !m[2]!.startsWith('/dev/')) out.push({ file: m[2]!, line });
    }
  }
  return out;
}

function checkOutputs(dir: string, lines: string[]): void {
  for (const { file, line } of outputsOf(lines)) {
    const at = path.join(dir, file);
    assert.ok(fs.existsSync(at), `${line}\n  did not write ${file}`);
    const bytes = fs.readFileSync(at);
    assert.ok(bytes.length > 0, `${line}\n  wrote an empty ${file}`);
    const ext = path.extname(file).toLowerCase();
    const isType = MAGIC[ext];
    if (isType)
      assert.ok(
        isType(bytes),
        `${line}\n  wrote ${file}, which is not ${ext.slice(1)}: ${bytes.subarray(0, 12).toString('hex')}`,
      );
    const raw = /#.*?\b(\d+)x(\d+) ([a-z0-9-]+)/.exec(line);
    if ((ext === '.raw' || ext === '.rgba') && raw) {
      const bpp = BYTES_PER_PIXEL[raw[3] as PixelFormat];
      assert.ok(bpp, `${line}: unknown pixel format ${raw[3]}`);
      assert.equal(bytes.length, Number(raw[1]) * Number(raw[2]) * bpp, `${line}\n  ${file} size`);
    }
  }
}

// ---- runners ----

// `npm run cluster` serves on PORT too (nginx in front of its replicas), until SIGTERM
const SERVER_START = /^(npm start|npm run cluster|pixtable serve)\b/;

async function runShell(b: Block): Promise<void> {
  const dir = tempDir('pixtable-doc-sh-');
  try {
    const home = path.join(dir, 'home');
    seed(dir, home);
    // a checkout: npm start runs the built server from here, storage is ./storage
    for (const e of ['package.json', 'dist', 'node_modules', 'native', 'src']) {
      fs.symlinkSync(path.join(root, e), path.join(dir, e));
    }
    write(
      path.join(dir, 'bin/pixtable'),
      `#!/bin/sh\nexec "${process.execPath}" "${root}/dist/src/cli/main.js" "$@"\n`,
      0o755,
    );
    // curl exits 0 on a 4xx/5xx; an example that gets an error must fail
    write(path.join(dir, 'bin/curl'), '#!/bin/sh\nexec /usr/bin/curl --fail-with-body "$@"\n', 0o755);

    const port = await freePort();
    const lines = b.text
      .replace(/\\\n\s*/g, ' ') // continuation lines
      .replace(/\b(127\.0\.0\.1|localhost):(8080|3000)\b/g, `127.0.0.1:${port}`)
      .replace(/--port (8080|3000)\b/g, `--port ${port}`)
      .split('\n')
      .filter((l) => l.trim() !== '' && !NOT_RUN_LINES.some((n) => n.pattern.test(l.trim())));
    assert.ok(lines.length > 0, `${b.file}:${b.line}: nothing left to run; list the block in NOT_RUNNABLE`);
    const starts = lines.some((l) => SERVER_START.test(l.trim()));
    const needs = !starts && lines.some((l) => /\bcurl\b|--server\b/.test(l));
    const script = [
      'set -euo pipefail',
      // background servers get SIGTERM at the end and must exit (npm start included)
      'trap \'s=$?; for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null || true; done; wait; exit $s\' EXIT',
      `up() { for _ in $(seq 200); do /usr/bin/curl -fs -o /dev/null http://127.0.0.1:${port}/healthz && return 0; sleep 0.1; done; echo "no server on ${port}" >&2; return 1; }`,
      ...lines.map((l) => (SERVER_START.test(l.trim()) ? `${l.replace(/\s*&?\s*(#.*)?$/, '')} &\nup` : l)),
    ].join('\n');
    const server = needs ? await serverIn(dir, port) : undefined;
    try {
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn('bash', ['-c', script], { cwd: dir, env: baseEnv(dir, { PORT: String(port) }) });
        let out = '';
        p.stdout.on('data', (c: Buffer) => (out += c.toString()));
        p.stderr.on('data', (c: Buffer) => (out += c.toString()));
        const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
        p.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        });
      });
      assert.equal(
        r.code,
        0,
        `${b.file}:${b.line} failed:\n${script}\n---\n${r.out}${server?.output() ?? ''}`,
      );
      checkOutputs(dir, lines);
    } finally {
      await server?.stop();
    }
  } finally {
    rmrf(dir);
  }
}

const LIBRARY_PEERS = ['sharp', '@napi-rs/canvas', 'thumbhash'];

/** A project that depends on pixtable: package.json "type": "module", pixtable in node_modules. */
function consumerProject(): string {
  const dir = tempDir('pixtable-doc-lib-');
  seed(dir, path.join(dir, 'home'));
  write(path.join(dir, 'package.json'), JSON.stringify({ name: 'example', type: 'module', private: true }));
  fs.mkdirSync(path.join(dir, 'node_modules/@types'), { recursive: true });
  fs.symlinkSync(root, path.join(dir, 'node_modules/pixtable'));
  fs.symlinkSync(path.join(root, 'node_modules/@types/node'), path.join(dir, 'node_modules/@types/node'));
  // docs/library.md's recipes hand views to these, installed beside pixtable as the page says
  for (const dep of LIBRARY_PEERS) {
    fs.mkdirSync(path.dirname(path.join(dir, 'node_modules', dep)), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules', dep), path.join(dir, 'node_modules', dep));
  }
  return dir;
}

const KEY = '0a1b2c3d4e5f60718293a4b5c6d7e8f9';
const SALT = 'f0e1d2c3b4a59687';

async function runLibrary(b: Block): Promise<void> {
  const dir = consumerProject();
  try {
    const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
    let entry = 'example.mjs';
    if (b.lang === 'ts') {
      // the defaults of the TypeScript a user installs today, and the "for nodejs" lines tsc --init
      // itself suggests (with @types/node installed)
      const init = spawnSync(process.execPath, [tsc, '--init'], { cwd: dir, encoding: 'utf8' });
      assert.equal(init.status, 0, init.stdout + init.stderr);
      fs.renameSync(path.join(dir, 'tsconfig.json'), path.join(dir, 'tsconfig.init.json'));
      write(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: './tsconfig.init.json',
          compilerOptions: { lib: ['esnext'], types: ['node'] },
        }),
      );
      write(path.join(dir, 'example.ts'), b.text);
      const c = spawnSync(process.execPath, [tsc, '-p', dir], { cwd: dir, encoding: 'utf8' });
      assert.equal(
        c.status,
        0,
        `${b.file}:${b.line} does not compile with tsc --init defaults:\n${c.stdout}${c.stderr}`,
      );
      entry = 'example.js';
    } else {
      write(path.join(dir, entry), b.text);
    }
    const env = baseEnv(dir, { PIXTABLE_KEY: KEY, PIXTABLE_SALT: SALT });
    const r = spawnSync(process.execPath, [entry], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${b.file}:${b.line} failed on ${process.version}:\n${r.stdout}${r.stderr}`);
    const printed = r.stdout.split('\n').filter((l) => l !== '');
    const promised = [...b.text.matchAll(/\/\/ prints: (.*)$/gm)].map((m) => m[1]!.trim());
    assert.deepEqual(printed.slice(0, promised.length), promised, `${b.file}:${b.line}: what it prints`);
    const paths = printed.filter((l) => l.startsWith('/v1/'));
    if (paths.length > 0) {
      const server = await serverIn(dir, await freePort(), { PIXTABLE_KEY: KEY, PIXTABLE_SALT: SALT });
      try {
        for (const p of paths) {
          const res = await fetch(server.url + p);
          assert.equal(res.status, 200, `${b.file}:${b.line}: GET ${p}: ${await res.text()}`);
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmrf(dir);
  }
}

// ---- the tests ----

test('every block says what it is, and the lists of what is not run have no stale entries', () => {
  assert.ok(blocks.length >= 20, `found ${blocks.length} blocks`);
  const untagged = blocks.filter((b) => b.lang === '').map((b) => `${b.file}:${b.line}`);
  assert.deepEqual(untagged, [], 'tag each fence: ts, js, sh, json or text');
  const unknown = blocks.filter((b) => !['ts', 'js', 'sh', 'bash', 'json', 'text'].includes(b.lang));
  assert.deepEqual(
    unknown.map((b) => `${b.file}:${b.line} ${b.lang}`),
    [],
  );
  for (const n of NOT_RUNNABLE) {
    const matching = blocks.filter((b) => b.file === n.file && b.first.startsWith(n.first));
    assert.equal(matching.length, 1, `NOT_RUNNABLE ${n.file} "${n.first}" matches ${matching.length} blocks`);
    assert.ok(['ts', 'js', 'sh', 'bash'].includes(matching[0]!.lang), `${n.file} "${n.first}" is not code`);
  }
  for (const n of NOT_RUN_LINES) {
    const used = blocks.some(
      (b) => !notRunnable(b) && b.text.split('\n').some((l) => n.pattern.test(l.trim())),
    );
    assert.ok(used, `NOT_RUN_LINES ${n.pattern} matches no line of a block that runs`);
  }
});

for (const b of blocks) {
  if (b.lang === 'text' || b.lang === '') continue;
  const name = `${b.file}:${b.line} (${b.lang}) ${b.first.slice(0, 60)}`;
  const skip = notRunnable(b);
  if (skip) continue; // listed above, with the reason
  if (b.lang === 'json') {
    test(name, () => assert.doesNotThrow(() => JSON.parse(b.text), `${b.file}:${b.line} is not JSON`));
  } else if (b.lang === 'sh' || b.lang === 'bash') {
    test(name, { timeout: 180_000 }, () => runShell(b));
  } else {
    test(name, { timeout: 180_000 }, () => runLibrary(b));
  }
}
