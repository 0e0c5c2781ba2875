// The CLI beside another process that holds the writer lock (a server, a library user):
// writing commands refuse with one line naming the holder and what to do (exit 4) and change
// nothing; read-only commands keep working.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { rmrf, runCli, startChild, stopChild, tempDir, writeImages } from './cli-fixtures.js';

const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));

describe('pixtable CLI while another process holds the writer lock', () => {
  let root: string;
  let storage: string;
  let keys: string[];
  let holder: ChildProcess | undefined;

  before(async () => {
    root = tempDir();
    storage = path.join(root, 'storage');
    keys = await writeImages(path.join(root, 'in'), 3);
    const r = await runCli(['import', path.join(root, 'in'), '--storage', storage]);
    assert.equal(r.code, 0, r.stderr);
    await writeImages(path.join(root, 'more'), 1);
  });
  after(async () => {
    if (holder) await stopChild(holder, 'SIGKILL');
    rmrf(root);
  });

  it('writers get exit 4 and one line naming the holder; readers work meanwhile', async () => {
    const script = `
      import { ImageCache } from ${JSON.stringify(INDEX)};
      const cache = await ImageCache.open({ storage: ${JSON.stringify(storage)} });
      console.log('holding ' + process.pid);
      process.on('SIGTERM', async () => { await cache.close(); process.exit(0); });
      setInterval(() => {}, 1000);`;
    const started = await startChild(['--input-type=module', '-e', script], /holding (\d+)/, { node: true });
    holder = started.child;
    const pid = started.match[1]!;

    for (const args of [
      ['import', path.join(root, 'more'), '--prefix', 'more'],
      ['compact'],
      ['verify', '--repair'],
    ]) {
      const r = await runCli([...args, '--storage', storage]);
      assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        new RegExp(`^pixtable ${args[0]}: .*needs the writer lock on .*, but process ${pid} holds it`),
      );
      assert.match(lines[0]!, /stop that process|--wait/);
    }
    // Nothing was written: the refused import left no source behind.
    assert.ok(!fs.existsSync(path.join(storage, 'sources', 'more')));

    const stats = await runCli(['stats', '--json', '--storage', storage]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.equal((JSON.parse(stats.stdout) as { sources: number }).sources, 3);
    const verify = await runCli(['verify', '--storage', storage]);
    assert.equal(verify.code, 0, verify.stderr);
    const out = path.join(root, 'x.raw');
    const exp = await runCli(['export', 'thumb-64', keys[0]!, '-o', out, '--storage', storage]);
    assert.equal(exp.code, 0, exp.stderr);
    assert.equal(fs.statSync(out).size, 64 * 64 * 4);

    // --wait: the import goes through once the holder lets go.
    const waiting = runCli([
      'import',
      path.join(root, 'more'),
      '--prefix',
      'more',
      '--storage',
      storage,
      '--wait',
      '20',
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await stopChild(holder, 'SIGTERM'), 0);
    holder = undefined;
    const done = await waiting;
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /^imported 1, unchanged 0, failed 0 /m);
  });

  it('pixtable serve holds the lock: a second server and an import say so; stats --server reads its counters', async () => {
    const server = await startChild(
      ['serve', '--port', '0', '--storage', storage, '--no-log-requests'],
      /"url":"(http:\/\/[^"]+)"/,
    );
    holder = server.child;
    const url = server.match[1]!;
    try {
      const res = await fetch(`${url}/v1/pixels/thumb-64/${keys[1]!}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();

      const second = await runCli(['serve', '--port', '0', '--storage', storage]);
      assert.equal(second.code, 4, second.stderr);
      assert.match(
        second.stderr,
        /^pixtable serve: storage .* is locked by process \d+ \(another server\?\); .*--read-only/,
      );

      const imp = await runCli(['import', path.join(root, 'more'), '--prefix', 'new', '--storage', storage]);
      assert.equal(imp.code, 4);
      assert.match(imp.stderr, /curl -T FILE http:\/\/HOST:PORT\/v1\/sources\/KEY/);

      const stats = await runCli(['stats', '--json', '--server', url, '--storage', storage]);
      assert.equal(stats.code, 0, stats.stderr);
      const s = JSON.parse(stats.stdout) as {
        server: { reachable: boolean };
        formats: { format: string; hits: number | null; misses: number | null }[];
      };
      assert.equal(s.server.reachable, true);
      const t64 = s.formats.find((f) => f.format === 'thumb-64')!;
      assert.equal(t64.hits, 1);
      assert.equal(t64.misses, 0);

      const down = await runCli(['stats', '--server', 'http://127.0.0.1:9', '--storage', storage]);
      assert.equal(down.code, 0);
      assert.match(down.stderr, /^pixtable: warning: server http:\/\/127\.0\.0\.1:9 not reachable/);
    } finally {
      assert.equal(await stopChild(server.child, 'SIGTERM'), 0);
      holder = undefined;
    }
  });
});
