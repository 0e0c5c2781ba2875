// Graceful shutdown of a real server process: SIGTERM stops accepting, lets the in-flight response
// finish, closes the cache (index flushed: a restart serves the entry without decoding), exits 0;
// a client that never reads is cut off after PIXTABLE_SHUTDOWN_TIMEOUT_MS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeImage } from '../http/helpers.js';
import { spawnServer, request } from '../http/net-helpers.js';

const FORMATS = JSON.stringify([
  { name: 'small', width: 32, height: 32 },
  { name: 'huge', width: 2048, height: 2048 }, // 16 MiB: stays in flight while the client pauses
]);

function connectRefused(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname);
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

/** Starts a GET of the huge entry and pauses after the headers. */
function pausedDownload(url: string) {
  const u = new URL(url);
  return new Promise<{ res: http.IncomingMessage; req: http.ClientRequest }>((resolve, reject) => {
    const req = http.get(
      { host: u.hostname, port: u.port, path: '/v1/pixels/huge/cat.png', agent: false },
      (res) => {
        res.pause();
        resolve({ res, req });
      },
    );
    req.on('error', reject);
  });
}

test('SIGTERM drains in-flight responses, stops accepting, flushes the index, exits 0', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-stop-'));
  const env = {
    PIXTABLE_STORAGE: dir,
    PIXTABLE_FORMATS: FORMATS,
    PIXTABLE_LOG_LEVEL: 'info',
    PIXTABLE_LOG_REQUESTS: 'false',
  };
  let server = await spawnServer(env);
  try {
    assert.equal(
      (await request(server.url, '/v1/sources/cat.png', { method: 'PUT', body: await makeImage('png') }))
        .status,
      201,
    );
    const { res } = await pausedDownload(server.url);
    assert.equal(res.headers['content-length'], String(2048 * 2048 * 4));
    server.proc.kill('SIGTERM');
    // the listener closes while the response is still in flight
    const t0 = Date.now();
    while (!(await connectRefused(server.url))) {
      assert.ok(Date.now() - t0 < 5000, 'still accepting 5 s after SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(server.proc.exitCode, null, 'the process waits for the in-flight response');
    let received = 0;
    res.on('data', (c: Buffer) => (received += c.length));
    const ended = new Promise<void>((resolve, reject) => {
      res.on('end', resolve);
      res.on('error', reject);
    });
    res.resume();
    await ended;
    assert.equal(received, 2048 * 2048 * 4, 'the whole body arrived');
    assert.equal(await server.exited, 0);
    assert.match(server.output(), /shutting down|draining/i);

    // restart on the same storage: entries come back from the flushed index, no decode
    server = await spawnServer(env);
    const r = await request(server.url, '/v1/pixels/small/cat.png');
    assert.equal(r.status, 200);
    const metrics = (await request(server.url, '/metrics')).body.toString();
    assert.match(metrics, /pixtable_decodes_total\{format="small"\} 0/);
    assert.match(metrics, /pixtable_cache_hits_total\{format="small"\} [1-9]/);
    server.proc.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  } finally {
    if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a client that never reads is cut off after the shutdown grace period', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-stop-'));
  const server = await spawnServer({
    PIXTABLE_STORAGE: dir,
    PIXTABLE_FORMATS: FORMATS,
    PIXTABLE_LOG_LEVEL: 'warn',
    PIXTABLE_SHUTDOWN_TIMEOUT_MS: '300',
  });
  try {
    assert.equal(
      (await request(server.url, '/v1/sources/cat.png', { method: 'PUT', body: await makeImage('png') }))
        .status,
      201,
    );
    const { req } = await pausedDownload(server.url);
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    assert.equal(await server.exited, 0);
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 5000, `exited after ${took} ms`);
    req.destroy();
  } finally {
    if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  }
});
