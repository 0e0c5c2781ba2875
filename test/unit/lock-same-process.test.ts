// Opening one storage for writing twice in one process (issue 12, item 21): the refusal says the
// holder is this process, not "another process" that turns out to carry our own pid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { ImageCache } from '../../src/cache.js';
import { PixtableError } from '../../src/errors.js';

test('a second writable open in the same process is told that this process holds the lock', async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-lock-self-'));
  const options = { storage, formats: [{ name: 'small', width: 8, height: 8 }] };
  const first = await ImageCache.open(options);
  try {
    await assert.rejects(ImageCache.open(options), (e: unknown) => {
      assert.ok(e instanceof PixtableError);
      assert.equal(e.code, 'STORAGE_LOCKED');
      assert.match(e.message, /already open for writing in this process/);
      assert.match(e.message, new RegExp(`pid ${process.pid}\\b`));
      assert.doesNotMatch(e.message, /another process/i);
      return true;
    });
    // Closed, the lock is no longer this process's: a new open succeeds.
    await first.close();
    const second = await ImageCache.open(options);
    await second.close();
  } finally {
    await first.close();
    fs.rmSync(storage, { recursive: true, force: true });
  }
});

test('a writer in another thread of this process is told the pid is its own, not "another process"', async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-lock-thread-'));
  const options = { storage, formats: [{ name: 'small', width: 8, height: 8 }] };
  const first = await ImageCache.open(options);
  try {
    // The worker has its own module state: only the pid in the lock file tells it who holds it.
    const cacheModule = new URL('../../src/cache.js', import.meta.url).href;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.cacheModule)
         .then(({ ImageCache }) => ImageCache.open(workerData.options))
         .then(() => parentPort.postMessage({ opened: true }),
               (e) => parentPort.postMessage({ code: e.code, message: e.message }));`,
      { eval: true, workerData: { cacheModule, options } },
    );
    const reply = (await once(worker, 'message'))[0] as { code?: string; message?: string };
    await worker.terminate();
    assert.equal(reply.code, 'STORAGE_LOCKED');
    assert.match(reply.message ?? '', new RegExp(`pid ${process.pid}, which is this process's own pid`));
    assert.match(reply.message ?? '', /another thread of this process/);
  } finally {
    await first.close();
    fs.rmSync(storage, { recursive: true, force: true });
  }
});
