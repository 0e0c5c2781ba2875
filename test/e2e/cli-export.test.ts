// `pixtable export`: raw output is exactly the table's pixels (tight rows), encoded output decodes
// back to them (PNG is lossless), and bad requests get one line and their exit code.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache } from '../../src/index.js';
import { rmrf, runCli, tempDir, writeImages } from './cli-fixtures.js';

describe('pixtable export', () => {
  let root: string;
  let storage: string;
  let key: string;
  /** The table's pixels of `key`, tight rows, read through the library (read-only). */
  const tableRows = async (format: string) => {
    const cache = await ImageCache.open({ storage, readOnly: true });
    try {
      const v = await cache.get(format, key);
      try {
        const rows = v.rows(0, 0, v.width, v.height);
        return { width: v.width, height: v.height, pixelFormat: v.pixelFormat, data: Buffer.concat(rows) };
      } finally {
        v.release();
      }
    } finally {
      await cache.close();
    }
  };

  before(async () => {
    root = tempDir();
    storage = path.join(root, 'storage');
    const keys = await writeImages(path.join(root, 'in'), 3, { width: 1200, height: 700 });
    key = keys.find((k) => k.includes('/'))!;
    const r = await runCli(['import', path.join(root, 'in'), '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => rmrf(root));

  it('-o file.raw writes the tightly packed rows of the entry', async () => {
    const out = path.join(root, 'preview.raw');
    const r = await runCli(['export', 'preview-1024', key, '-o', out, '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    const want = await tableRows('preview-1024');
    // `inside` keeps the aspect: (1200 + 16) × 700 scaled into 1024 × 1024.
    assert.equal(want.width, 1024);
    assert.equal(want.height, Math.round((700 * 1024) / 1216));
    assert.equal(
      r.stdout,
      `wrote ${out}: ${want.width}x${want.height} rgba8, raw, ${(want.data.length / 1024 / 1024).toFixed(2)} MiB\n`,
    );
    const got = fs.readFileSync(out);
    assert.equal(got.length, want.width * want.height * 4);
    assert.ok(got.equals(want.data), 'raw export differs from the table pixels');
  });

  it('-o file.png decodes back to the same pixels; .webp and stdout work', async () => {
    const out = path.join(root, 'thumb.png');
    const r = await runCli(['export', 'thumb-256', key, '-o', out, '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    const want = await tableRows('thumb-256');
    const { data, info } = await sharp(out).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 256);
    assert.equal(info.height, 256);
    assert.ok(data.equals(want.data), 'PNG export does not decode to the table pixels');

    const webp = path.join(root, 'thumb.webp');
    const w = await runCli(['export', 'thumb-64', key, '-o', webp, '-q', '90', '--storage', storage]);
    assert.equal(w.code, 0, w.stderr);
    const meta = await sharp(webp).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 64);

    const piped = await runCli(['export', 'thumb-64', key, '-o', '-', '--type', 'raw', '--storage', storage]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(piped.stdoutBytes.equals((await tableRows('thumb-64')).data));
    assert.match(piped.stderr, /^thumb-64\/.+: 64x64 rgba8, raw, 16\.0 KiB$/m);
  });

  it('errors are one line with a documented exit code', async () => {
    const cases: [string[], number, RegExp][] = [
      [['export', 'nope-9', key, '-o', 'x.png'], 5, /no format named "nope-9" is configured/],
      [
        ['export', 'thumb-64', 'missing.png', '-o', 'x.png'],
        5,
        /SOURCE_NOT_FOUND: .*missing\.png; import it first/,
      ],
      [['export', 'thumb-64', key, '-o', 'x.gif'], 2, /cannot tell the type of "x\.gif"/],
      [['export', 'thumb-64', '../etc/passwd', '-o', 'x.png'], 2, /INVALID_KEY/],
      [['export', 'thumb-64', key], 2, /-o <file> is required/],
    ];
    for (const [args, code, re] of cases) {
      const r = await runCli([...args, '--storage', storage], { cwd: root });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^pixtable export: /);
      assert.match(r.stderr, re);
    }
  });
});
