import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeImage } from '../http/helpers.js';
import { spawnServer, request } from '../http/net-helpers.js';

test('JSON logs: one line per request with request id, method, url, status and time', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-logs-'));
  const server = await spawnServer({
    PIXTABLE_STORAGE: dir,
    PIXTABLE_FORMATS: JSON.stringify([{ name: 'small', width: 16, height: 16 }]),
    PIXTABLE_LOG_LEVEL: 'info',
  });
  try {
    await request(server.url, '/v1/sources/a.png', { method: 'PUT', body: await makeImage('png') });
    await request(server.url, '/v1/pixels/small/a.png', { headers: { 'x-request-id': 'abc-123' } }); // the shortcut
    await request(server.url, '/v1/pixels/small/a.png?rect=0,0,2,2'); // routed
    await request(server.url, '/nope');
    await new Promise((r) => setTimeout(r, 200));
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const reqs = lines.filter((l) => l.msg === 'request');
    assert.equal(reqs.length, 4, JSON.stringify(reqs));
    for (const l of reqs) {
      assert.ok(l.reqId !== undefined && l.reqId !== '', 'has a request id');
      assert.equal(typeof l.ms, 'number');
      assert.equal(typeof l.time, 'number');
    }
    assert.deepEqual(
      reqs.map((l) => [l.method, l.url, l.status]),
      [
        ['PUT', '/v1/sources/a.png', 201],
        ['GET', '/v1/pixels/small/a.png', 200],
        ['GET', '/v1/pixels/small/a.png?rect=0,0,2,2', 200],
        ['GET', '/nope', 404],
      ],
    );
    assert.equal(reqs[1]!.reqId, 'abc-123');
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
    await fs.rm(dir, { recursive: true, force: true });
  }
});
