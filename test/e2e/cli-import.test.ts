// `pixtable import` and `pixtable stats` as users run them: the compiled CLI as a child process
// against a temp storage.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { StatsReport } from '../../src/cli/ops.js';
import { rmrf, runCli, tempDir, writeImages } from './cli-fixtures.js';

describe('pixtable import', () => {
  let root: string;
  let images: string;
  let storage: string;
  let keys: string[];

  before(async () => {
    root = tempDir();
    images = path.join(root, 'photos');
    storage = path.join(root, 'storage');
    keys = await writeImages(images, 5);
    fs.writeFileSync(
      path.join(images, 'broken.jpg'),
      Buffer.from('this is not a JPEG, only its name says so'),
    );
    fs.writeFileSync(path.join(images, 'notes.txt'), 'not an image: skipped by extension');
    fs.writeFileSync(path.join(images, '.hidden.png'), 'hidden names are skipped');
  });
  after(() => rmrf(root));

  it('imports a directory, reports the broken file with its reason and exits 1', async () => {
    const r = await runCli(['import', images, '--storage', storage, '--progress-interval', '0.1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^imported 5, unchanged 0, failed 1, skipped 1 non-image file \(/m);
    assert.match(r.stdout, /^failed .*broken\.jpg: (UNSUPPORTED_IMAGE|CORRUPT_IMAGE): .+$/m);
    // Not a terminal: plain progress lines, no carriage returns or escape codes.
    assert.match(r.stderr, /^import: 6\/6 100% .* img\/s {2}ETA 0:00 {2}1 failed$/m);
    assert.ok(!r.stderr.includes('\r') && !r.stderr.includes('\u001b'), 'no terminal control codes');
    // Sources land under storage/sources/<path inside the directory>; the broken file does not.
    for (const k of keys) assert.ok(fs.existsSync(path.join(storage, 'sources', k)), k);
    assert.ok(!fs.existsSync(path.join(storage, 'sources', 'broken.jpg')));
  });

  it('stats --json counts one entry per image in every format', async () => {
    const r = await runCli(['stats', '--json', '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as StatsReport;
    assert.equal(s.storage, fs.realpathSync(storage));
    assert.equal(s.sources, 5);
    assert.deepEqual(
      s.formats.map((f) => [f.format, f.entries]),
      [
        ['thumb-64', 5],
        ['thumb-256', 5],
        ['preview-1024', 5],
      ],
    );
    for (const f of s.formats) {
      assert.equal(f.capacity, 10_000);
      assert.ok(f.diskBytes > 0);
      assert.equal(f.capacityBytes, f.capacity * f.entryBytes);
      assert.ok(f.diskBytes >= 5 * f.entryBytes, `${f.format}: five entries' worth on disk`);
      assert.equal(f.maxBytes, null);
      assert.equal(f.hits, null, 'no --server: no hit counters');
    }
    const text = await runCli(['stats', '--storage', storage]);
    assert.equal(text.code, 0);
    // per entry: 256 × 1024 B + trailer, page-aligned; when full: 10,000 of them
    assert.match(
      text.stdout,
      /^thumb-256\s+256x256 cover rgba8\s+5\s+10000\s+260 KiB\s+2\.48 GiB\s+[\d.]+ MiB$/m,
    );
    assert.match(
      text.stdout,
      /^preview-1024\s+1024x1024 inside rgba8\s+5\s+10000\s+4\.00 MiB\s+39\.1 GiB\s+/m,
    );
  });

  it('a second run finds everything unchanged; --allow-failures exits 0; --json is parseable', async () => {
    const r = await runCli(['import', images, '--storage', storage, '--allow-failures', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      imported: number;
      unchanged: number;
      failed: number;
      failures: { file: string; code: string }[];
    };
    assert.equal(s.imported, 0);
    assert.equal(s.unchanged, 5);
    assert.equal(s.failed, 1);
    assert.equal(path.basename(s.failures[0]!.file), 'broken.jpg');
  });

  it('a changed file is re-imported; files inside storage/sources are decoded in place', async () => {
    fs.copyFileSync(path.join(images, keys[1]!), path.join(images, keys[0]!));
    const changed = await runCli(['import', path.join(images, keys[0]!), '--storage', storage]);
    assert.equal(changed.code, 0, changed.stderr);
    // A file named directly becomes storage/sources/<its name>.
    assert.match(changed.stdout, /^imported 1, unchanged 0, failed 0 /m);
    assert.ok(fs.existsSync(path.join(storage, 'sources', path.basename(keys[0]!))));

    // Re-ingest the sources directory itself (e.g. after adding a format): keys stay as they are.
    const inPlace = await runCli(['import', path.join(storage, 'sources'), '--storage', storage, '--json']);
    assert.equal(inPlace.code, 0, inPlace.stderr);
    const s = JSON.parse(inPlace.stdout) as { imported: number; unchanged: number; failed: number };
    assert.equal(s.failed, 0);
    assert.equal(s.imported + s.unchanged, 5);
    const stats = JSON.parse((await runCli(['stats', '--json', '--storage', storage])).stdout) as {
      sources: number;
    };
    assert.equal(stats.sources, 5);
  });

  it('--format limits the tables written; --prefix places the sources', async () => {
    const other = path.join(root, 'other-storage');
    const r = await runCli([
      'import',
      images,
      '--storage',
      other,
      '--format',
      'thumb-64',
      '--prefix',
      'albums/2024',
      '--allow-failures',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(other, 'sources', 'albums/2024', keys[0]!)));
    const s = JSON.parse((await runCli(['stats', '--json', '--storage', other])).stdout) as {
      formats: { format: string; entries: number }[];
    };
    assert.deepEqual(
      s.formats.map((f) => [f.format, f.entries]),
      [
        ['thumb-64', 5],
        ['thumb-256', 0],
        ['preview-1024', 0],
      ],
    );
  });

  it('formats come from --config; a bad config or a missing path is one line with its exit code', async () => {
    const cfg = path.join(root, 'pixtable.json');
    fs.writeFileSync(
      cfg,
      JSON.stringify({ formats: [{ name: 'icon-32', width: 32, height: 32, pixelFormat: 'rgb565' }] }),
    );
    const store = path.join(root, 'cfg-storage');
    const r = await runCli(['import', images, '--config', cfg, '--storage', store, '--allow-failures']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse((await runCli(['stats', '--json', '-c', cfg, '-s', store])).stdout) as {
      formats: { format: string; entries: number; pixelFormat: string }[];
    };
    assert.deepEqual(s.formats, [{ ...s.formats[0], format: 'icon-32', entries: 5, pixelFormat: 'rgb565' }]);

    fs.writeFileSync(cfg, JSON.stringify({ formats: [{ name: 'Bad Name', width: 0, height: 1 }] }));
    const bad = await runCli(['import', images, '--config', cfg, '--storage', store]);
    assert.equal(bad.code, 3);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /^pixtable import: config file .*pixtable\.json: .*name/);

    const missing = await runCli(['import', path.join(root, 'nope'), '--storage', store]);
    assert.equal(missing.code, 5);
    assert.match(missing.stderr, /^pixtable import: .*nope does not exist; /);

    const usage = await runCli(['import', '--frobnicate', images]);
    assert.equal(usage.code, 2);
    assert.match(
      usage.stderr,
      /^pixtable import: Unknown option '--frobnicate'.*; see pixtable import --help$/m,
    );
  });

  it("the server's decode-queue bound does not fail the import's own files", async () => {
    // PIXTABLE_DECODE_QUEUE=0 makes a server refuse a decode at once when every slot is busy; the
    // import keeps one more file in flight than it decodes and must not refuse itself.
    const store = path.join(root, 'queue-storage');
    const r = await runCli(['import', images, '--storage', store, '--jobs', '1', '--json'], {
      env: { PIXTABLE_DECODE_QUEUE: '0' },
    });
    const summary = JSON.parse(r.stdout) as { imported: number; failures: { file: string; code: string }[] };
    assert.deepEqual(
      summary.failures.map((f) => path.basename(f.file)),
      ['broken.jpg'],
      r.stdout,
    );
    assert.equal(summary.imported, 5);
    assert.equal(r.code, 1, 'the broken file still counts');
  });

  it("a setting the engine refuses exits 3 with the registry's hint, as one line", async () => {
    // Above the variable's own minimum, below the engine's (one 4 MiB chunk).
    const r = await runCli(['import', images, '--storage', path.join(root, 'small-map')], {
      env: { PIXTABLE_MAX_MAPPED_BYTES: '65536' },
    });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /^pixtable import: INVALID_OPTION: .*maxMappedBytes must be an integer from \d+ .*got 65536; fix the configuration/,
    );
  });
});
