// `pixtable serve` runs with libuv's pool sized for its image work plus four file threads: the
// command restarts itself with UV_THREADPOOL_SIZE set (too late once Node's loader has used the
// pool). The relaying parent passes SIGTERM on and exits with the server's status, and the server
// does not outlive a parent that was killed.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { poolSizeFor, wantedPoolSize } from '../../src/cli/threadpool.js';
import { rmrf, startChild, stopChild, tempDir } from './cli-fixtures.js';
import { gone } from '../helpers/processes.js';

function environOf(pid: number): Record<string, string> {
  const pairs = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

describe('the pool size serve asks for', () => {
  it('is decode + encode concurrency + 4, from flags or variables; nothing for other commands', () => {
    assert.equal(poolSizeFor(2, 1), 7);
    assert.equal(wantedPoolSize(['serve', '--decode-concurrency', '6', '--encode-concurrency', '3'], {}), 13);
    assert.equal(
      wantedPoolSize(['serve'], { PIXTABLE_DECODE_CONCURRENCY: '5', PIXTABLE_ENCODE_CONCURRENCY: '2' }),
      11,
    );
    const cores = os.availableParallelism();
    assert.equal(wantedPoolSize(['serve'], {}), cores + Math.max(1, Math.floor(cores / 2)) + 4);
    assert.equal(wantedPoolSize(['serve'], { UV_THREADPOOL_SIZE: '9' }), undefined, "the operator's choice");
    assert.equal(wantedPoolSize(['import', 'x'], {}), undefined);
    assert.equal(wantedPoolSize(['serve', '--help'], {}), undefined);
    // main() reports a bad configuration itself, in one process
    assert.equal(wantedPoolSize(['serve'], { PIXTABLE_DECODE_CONCURRENCY: 'lots' }), undefined);
  });
});

describe('pixtable serve', () => {
  let storage = '';
  let child: ChildProcess | undefined;
  afterEach(async () => {
    if (child) await stopChild(child, 'SIGKILL');
    child = undefined;
    rmrf(storage);
  });

  async function serve(): Promise<{ parent: ChildProcess; server: number; url: string }> {
    storage = tempDir();
    const s = await startChild(
      [
        'serve',
        '--port',
        '0',
        '--storage',
        storage,
        '--decode-concurrency',
        '3',
        '--encode-concurrency',
        '2',
      ],
      /"pid":(\d+).*"url":"(http:\/\/[^"]+)"/,
    );
    child = s.child;
    return { parent: s.child, server: Number(s.match[1]), url: s.match[2]! };
  }

  it('serves from a process whose pool has 3 + 2 + 4 threads; SIGTERM to the command stops both with 0', async () => {
    const { parent, server, url } = await serve();
    assert.notEqual(server, parent.pid, 'the server runs in the restarted process');
    assert.equal(environOf(server).UV_THREADPOOL_SIZE, '9');
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
    assert.equal(await stopChild(parent, 'SIGTERM'), 0);
    child = undefined;
    assert.ok(await gone(server, 10_000), 'the server process stopped');
  });

  it('the server stops when the command is killed outright', async () => {
    const { parent, server } = await serve();
    await stopChild(parent, 'SIGKILL');
    child = undefined;
    assert.ok(await gone(server, 15_000), 'the server did not outlive its parent');
  });
});
