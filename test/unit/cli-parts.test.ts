// The CLI's pure parts: settings precedence, flag ↔ variable mapping, exit codes and one-line
// errors, progress text, metrics parsing, import key mapping.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ENV_VARS } from '../../src/config/env.js';
import { ERRORS, PixtableError, type ErrorCode } from '../../src/errors.js';
import {
  CliError,
  EXIT,
  describeError,
  exitCodeFor,
  readConfigFile,
  resolveConfig,
} from '../../src/cli/common.js';
import { Progress, eta, formatBar, formatLine, rate } from '../../src/cli/progress.js';
import { flagName, serveEnv, serveHelp } from '../../src/cli/serve.js';
import { parseMetrics } from '../../src/cli/ops.js';
import { exportType } from '../../src/cli/export.js';
import { collectItems } from '../../src/cli/import.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-cli-unit-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const fmt = (name: string, width = 32) => ({ name, width, height: width });

describe('settings: flags > environment > config file > defaults', () => {
  it('defaults: ./storage and the three built-in formats', () => {
    const { config } = resolveConfig({}, { env: {}, cwd: dir });
    assert.equal(config.storage, path.join(dir, 'storage'));
    assert.deepEqual(
      config.formats.map((f) => f.name),
      ['thumb-64', 'thumb-256', 'preview-1024'],
    );
  });

  it('formats: --config beats PIXTABLE_FORMATS, which beats PIXTABLE_CONFIG', () => {
    const fileA = path.join(dir, 'a.json');
    const fileB = path.join(dir, 'b.json');
    fs.writeFileSync(fileA, JSON.stringify({ formats: [fmt('from-flag')] }));
    fs.writeFileSync(fileB, JSON.stringify({ formats: [fmt('from-env-file')] }));
    const inline = JSON.stringify([fmt('from-env-inline')]);
    const names = (flags: { config?: string }, env: Record<string, string>) =>
      resolveConfig(flags, { env, cwd: dir }).config.formats.map((f) => f.name);
    assert.deepEqual(names({ config: fileA }, { PIXTABLE_FORMATS: inline, PIXTABLE_CONFIG: fileB }), [
      'from-flag',
    ]);
    assert.deepEqual(names({}, { PIXTABLE_FORMATS: inline, PIXTABLE_CONFIG: fileB }), ['from-env-inline']);
    assert.deepEqual(names({}, { PIXTABLE_CONFIG: fileB }), ['from-env-file']);
    // A bare array is a formats list too.
    fs.writeFileSync(fileB, JSON.stringify([fmt('bare')]));
    assert.deepEqual(names({}, { PIXTABLE_CONFIG: fileB }), ['bare']);
  });

  it('storage: --storage beats PIXTABLE_STORAGE, which beats the file (relative to the file)', () => {
    const file = path.join(dir, 'sub', 'c.json');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ storage: 'data' }));
    const storage = (flags: { storage?: string }, env: Record<string, string>) =>
      resolveConfig({ ...flags, config: file }, { env, cwd: dir }).config.storage;
    assert.equal(storage({}, {}), path.join(dir, 'sub', 'data'));
    assert.equal(storage({}, { PIXTABLE_STORAGE: '/env/store' }), '/env/store');
    assert.equal(storage({ storage: 'flag' }, { PIXTABLE_STORAGE: '/env/store' }), path.join(dir, 'flag'));
  });

  it('config file errors name the file and the problem; exit 3 (5 when missing)', () => {
    const bad = path.join(dir, 'bad.json');
    const cases: [string, RegExp, number][] = [
      ['{"formats": [', /is not valid JSON/, EXIT.CONFIG],
      ['{"formats": [], "port": 1}', /unknown setting "port"/, EXIT.CONFIG],
      [
        '{"formats": [{"name": "x", "width": 0, "height": 1}]}',
        /format x\.width must be an integer from 1/,
        EXIT.CONFIG,
      ],
      ['"just a string"', /must hold a JSON object/, EXIT.CONFIG],
    ];
    for (const [text, re, code] of cases) {
      fs.writeFileSync(bad, text);
      assert.throws(
        () => readConfigFile(bad),
        (e: unknown) => e instanceof CliError && e.exitCode === code && re.test(e.message),
        text,
      );
    }
    assert.throws(
      () => readConfigFile(path.join(dir, 'missing.json')),
      (e: unknown) => e instanceof CliError && e.exitCode === EXIT.NOT_FOUND,
    );
  });
});

describe('pixtable serve flags mirror the environment variables', () => {
  it('every variable has a flag, listed in --help with its variable', () => {
    const help = serveHelp();
    for (const v of ENV_VARS) {
      assert.ok(help.includes(v), `${v} missing from serve --help`);
      const flag = ['PIXTABLE_REVALIDATE', 'PIXTABLE_LOG_REQUESTS', 'PIXTABLE_FAST_LANE'].includes(v)
        ? `no-${flagName(v)}`
        : flagName(v);
      assert.ok(help.includes(`--${flag}`), `--${flag} missing from serve --help`);
    }
    assert.equal(flagName('PIXTABLE_DECODE_CONCURRENCY'), 'decode-concurrency');
    assert.equal(flagName('PORT'), 'port');
  });

  it('flags become variables; booleans take no value', () => {
    const r = serveEnv([
      '-p',
      '9000',
      '--host',
      '0.0.0.0',
      '--decode-concurrency',
      '3',
      '--read-only',
      '--no-revalidate',
      '--thumb-types',
      'png,webp',
      '-s',
      '/data',
    ]);
    assert.deepEqual(r.env, {
      PORT: '9000',
      HOST: '0.0.0.0',
      PIXTABLE_DECODE_CONCURRENCY: '3',
      PIXTABLE_READ_ONLY: 'true',
      PIXTABLE_REVALIDATE: 'false',
      PIXTABLE_THUMB_TYPES: 'png,webp',
    });
    assert.equal(r.storage, '/data');
    const { config } = resolveConfig({ storage: r.storage }, { env: { PORT: '1' }, cwd: dir }, r.env);
    assert.equal(config.port, 9000, 'the flag wins over the variable');
    assert.equal(config.readOnly, true);
    assert.equal(config.revalidate, false);
    assert.deepEqual(config.decode.concurrency, 3);
  });

  it('a bad flag value is reported under its variable name by the shared validator', () => {
    const r = serveEnv(['--decode-concurrency', 'lots']);
    assert.throws(
      () => resolveConfig({}, { env: {}, cwd: dir }, r.env),
      (e: unknown) =>
        e instanceof PixtableError &&
        e.code === 'INVALID_CONFIG' &&
        /PIXTABLE_DECODE_CONCURRENCY must be an integer/.test(e.message),
    );
    assert.throws(() => serveEnv(['--no-such-flag']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
  });
});

describe('errors: one line, a documented exit code', () => {
  it('maps causes to exit codes', () => {
    assert.equal(exitCodeFor(new PixtableError('STORAGE_LOCKED')), EXIT.LOCKED);
    assert.equal(exitCodeFor(new PixtableError('INVALID_CONFIG')), EXIT.CONFIG);
    assert.equal(exitCodeFor(new PixtableError('UNKNOWN_FORMAT')), EXIT.NOT_FOUND);
    assert.equal(exitCodeFor(new PixtableError('INVALID_KEY')), EXIT.USAGE);
    assert.equal(exitCodeFor(new PixtableError('CORRUPT_IMAGE')), EXIT.PROBLEMS);
    assert.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'EACCES', syscall: 'open' })), EXIT.IO);
    assert.equal(
      exitCodeFor(Object.assign(new Error('x'), { code: 'ENOENT', syscall: 'open' })),
      EXIT.NOT_FOUND,
    );
    assert.equal(exitCodeFor(new TypeError('bug')), EXIT.INTERNAL);
  });

  it('keeps the documented exit numbers (scripts rely on them)', () => {
    assert.deepEqual(
      { ...EXIT },
      {
        OK: 0,
        PROBLEMS: 1,
        USAGE: 2,
        CONFIG: 3,
        LOCKED: 4,
        NOT_FOUND: 5,
        IO: 6,
        INTERNAL: 70,
        TEMPFAIL: 75,
        INTERRUPTED: 130,
      },
    );
  });

  it('every error code exits with its registry entry; only bugs exit "internal error"', () => {
    const documented = new Set<number>(Object.values(EXIT));
    const internal: string[] = [];
    for (const code of Object.keys(ERRORS) as ErrorCode[]) {
      const exit = exitCodeFor(new PixtableError(code, 'detail'));
      assert.equal(exit, ERRORS[code].exit, code);
      assert.ok(documented.has(exit), `${code} exits ${exit}, which docs/cli.md does not list`);
      assert.notEqual(exit, EXIT.OK, code);
      if (exit === EXIT.INTERNAL) internal.push(code);
    }
    assert.deepEqual(internal.sort(), ['INTERNAL', 'VIEW_RELEASED']);
  });

  it('busy and read-only states exit with their own codes, not as a bug', () => {
    assert.equal(exitCodeFor(new PixtableError('QUEUE_FULL')), EXIT.TEMPFAIL);
    assert.equal(exitCodeFor(new PixtableError('TABLE_FULL')), EXIT.TEMPFAIL);
    assert.equal(exitCodeFor(new PixtableError('READ_ONLY')), EXIT.LOCKED);
    assert.equal(exitCodeFor(new PixtableError('STORAGE_FULL')), EXIT.IO);
    assert.equal(exitCodeFor(new PixtableError('INVALID_OPTION')), EXIT.CONFIG);
    assert.equal(exitCodeFor(new PixtableError('DECODE_TIMEOUT')), EXIT.PROBLEMS);
  });

  it("the registry's hint follows the message", () => {
    assert.equal(
      describeError(new PixtableError('QUEUE_FULL', '2 decoding, 0 waiting'), 'import'),
      'pixtable import: QUEUE_FULL: The decode or encode queue is full; retry shortly: 2 decoding, 0 waiting; retry, or raise PIXTABLE_DECODE_QUEUE (decodes) or PIXTABLE_ENCODE_QUEUE (thumbnail encodes)',
    );
    assert.equal(
      describeError(new PixtableError('STORAGE_FULL', '/data/tables'), 'import'),
      'pixtable import: STORAGE_FULL: The storage volume is full: /data/tables; free disk space or move the storage to a larger volume',
    );
    assert.equal(
      describeError(new PixtableError('INVALID_CONFIG', 'PORT must be …'), 'serve'),
      'pixtable serve: INVALID_CONFIG: The configuration is invalid: PORT must be …; fix the configuration (docs/cli.md lists the settings)',
    );
    // No hint: the line ends with the message.
    assert.equal(
      describeError(new PixtableError('INVALID_RECT', 'rect 1,2'), 'export'),
      'pixtable export: INVALID_RECT: The rectangle is malformed or outside the image: rect 1,2',
    );
  });

  it('describes each as one line with the cause and what to do', () => {
    const lines = [
      describeError(new CliError(EXIT.USAGE, 'bad thing', 'do this'), 'import'),
      describeError(new PixtableError('SOURCE_NOT_FOUND', 'a.jpg'), 'export'),
      describeError(
        Object.assign(new Error('EACCES: permission denied,\nopen /x'), { code: 'EACCES', syscall: 'open' }),
        'import',
      ),
      describeError(new Error('multi\nline\nbug'), 'stats'),
    ];
    assert.deepEqual(lines.slice(0, 2), [
      'pixtable import: bad thing; do this',
      'pixtable export: SOURCE_NOT_FOUND: No source image exists for that key: a.jpg; import it first: pixtable import <file>',
    ]);
    assert.match(lines[2]!, /^pixtable import: EACCES: permission denied, open \/x; check the permissions/);
    assert.match(lines[3]!, /^pixtable stats: internal error: multi line bug; this is a bug/);
    for (const l of lines) assert.ok(!l.includes('\n'), l);
  });
});

describe('progress', () => {
  const s = { done: 45, total: 100, failed: 1, elapsedMs: 10_000 };

  it('rate and ETA from the work done so far', () => {
    assert.equal(rate(s), 4.5);
    assert.ok(Math.abs(eta(s) - 55 / 4.5) < 1e-9);
    assert.ok(Number.isNaN(eta({ ...s, done: 0 })));
  });

  it('a bar fitted to the terminal, and plain lines for logs', () => {
    const bar = formatBar(s, 80);
    assert.ok(bar.length <= 80, bar);
    assert.match(bar, /^\[#+\.+\] 45\/100 {2}45% {2}4\.5 img\/s {2}ETA 0:12 {2}1 failed$/);
    assert.equal(formatLine('import', { ...s, failed: 0 }), 'import: 45/100  45%  4.5 img/s  ETA 0:12');
    assert.equal(
      formatLine('import', { done: 0, total: 3, failed: 0, elapsedMs: 0 }),
      'import: 0/3   0%  0.0 img/s  ETA --:--',
    );
  });

  it('prints a line per period when not a terminal, and the final state once', () => {
    let t = 0;
    const out: string[] = [];
    const p = new Progress(10, {
      label: 'import',
      tty: false,
      columns: 80,
      write: (x) => out.push(x),
      lineIntervalMs: 1000,
      now: () => t,
    });
    for (let i = 0; i < 10; i++) {
      t += 300;
      p.tick(i === 4);
    }
    p.finish();
    p.finish();
    // ticks at 300 (first), 1500, 2700 pass the 1 s period; then the final line.
    assert.deepEqual(
      out.map((l) => l.split(':')[1]!.trim().split(' ')[0]),
      ['1/10', '5/10', '9/10', '10/10'],
    );
    assert.ok(out.every((l) => l.endsWith('\n') && !l.includes('\r')));
    assert.match(out.at(-1)!, /10\/10 100% .* 1 failed\n$/);
  });

  it('redraws in place on a terminal and ends the line', () => {
    let t = 0;
    const out: string[] = [];
    const p = new Progress(2, {
      label: 'import',
      tty: true,
      columns: 60,
      write: (x) => out.push(x),
      now: () => t,
    });
    t = 50;
    p.tick(false);
    t = 500;
    p.tick(false);
    p.finish();
    assert.ok(out.slice(0, -1).every((l) => l.startsWith('\r[') && l.endsWith('\u001b[K')));
    assert.equal(out.at(-1), '\n');
  });
});

describe('stats --server: Prometheus text', () => {
  it('parses samples with labels', () => {
    const m = parseMetrics(
      [
        '# HELP pixtable_cache_hits_total Entry lookups answered from a table',
        '# TYPE pixtable_cache_hits_total counter',
        'pixtable_cache_hits_total{format="thumb-64"} 12',
        'pixtable_cache_hits_total{format="we\\"ird"} 3',
        'pixtable_mapped_bytes 4194304',
        '',
      ].join('\n'),
    );
    assert.deepEqual(m.get('pixtable_cache_hits_total'), [
      { labels: { format: 'thumb-64' }, value: 12 },
      { labels: { format: 'we"ird' }, value: 3 },
    ]);
    assert.deepEqual(m.get('pixtable_mapped_bytes'), [{ labels: {}, value: 4194304 }]);
  });
});

describe('export type', () => {
  it('comes from the extension or --type', () => {
    assert.equal(exportType('a.PNG', undefined), 'png');
    assert.equal(exportType('a.jpg', undefined), 'jpeg');
    assert.equal(exportType('a.rgba', undefined), 'raw');
    assert.equal(exportType('-', 'webp'), 'webp');
    assert.equal(exportType('a.png', 'JPG'), 'jpeg');
    assert.throws(
      () => exportType('a.gif', undefined),
      (e: unknown) => e instanceof CliError && e.exitCode === EXIT.USAGE,
    );
    assert.throws(() => exportType('-', undefined), /needs --type/);
    assert.throws(() => exportType('a.png', 'bmp'), /--type must be one of/);
  });
});

describe('import: which files, which keys', () => {
  it('walks directories (images only, no hidden names), honours --prefix, decodes sources in place', async () => {
    const src = path.join(dir, 'walk', 'photos');
    const sources = path.join(dir, 'walk', 'storage', 'sources');
    for (const f of ['a.jpg', 'b/c.PNG', 'b/.secret.png', '.git/x.png', 'notes.txt', 'd.webp']) {
      fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      fs.writeFileSync(path.join(src, f), 'x');
    }
    fs.mkdirSync(path.join(sources, 'old'), { recursive: true });
    fs.writeFileSync(path.join(sources, 'old', 'e.jpg'), 'x');

    const r = await collectItems([src, path.join(sources, 'old', 'e.jpg')], {
      cwd: dir,
      sourcesDir: sources,
      prefix: 'trip/',
    });
    assert.deepEqual(
      r.items.map((i) => [i.key, i.inPlace]),
      [
        ['trip/a.jpg', false],
        ['trip/b/c.PNG', false],
        ['trip/d.webp', false],
        ['old/e.jpg', true],
      ],
    );
    assert.equal(r.skipped, 1, 'notes.txt');
    assert.deepEqual(r.failures, []);

    // Two inputs that would become the same key: the second is a failure, not a silent overwrite.
    const dup = await collectItems([path.join(src, 'a.jpg'), path.join(src, 'a.jpg')], {
      cwd: dir,
      sourcesDir: sources,
      prefix: undefined,
    });
    assert.equal(dup.items.length, 1);
    assert.equal(dup.failures[0]!.code, 'DUPLICATE_KEY');

    await assert.rejects(
      collectItems(['nope'], { cwd: dir, sourcesDir: sources, prefix: undefined }),
      (e: unknown) => e instanceof CliError && e.exitCode === EXIT.NOT_FOUND,
    );
  });
});
