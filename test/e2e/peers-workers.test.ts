// PIXTABLE_PEERS under `pixtable serve --workers 2`: an upload or delete through a worker is done
// by the writer, and the purge goes out once per peer (from the writer, never also from the worker
// that forwarded it); a purge sent to this server reaches the writer through a worker and drops the
// entries every worker serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { solidPng, rmrf, tempDir } from '../helpers/fixtures.js';
import { startChild, stopChild } from './cli-fixtures.js';

test('serve --workers 2 with PIXTABLE_PEERS: one purge per peer per write; a purge received drops the entries', async () => {
  const seen: { method: string; url: string }[] = [];
  const peer = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '' });
    res.writeHead(204).end();
  });
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
  const peerUrl = `http://127.0.0.1:${(peer.address() as net.AddressInfo).port}`;
  const storage = tempDir('pixtable-peers-workers-');
  const { child, output, match } = await startChild(
    ['serve', '--workers', '2', '--port', '0', '--storage', storage, '--no-log-requests'],
    /"role":"supervisor","url":"([^"]+)"/,
    {
      env: {
        PIXTABLE_FORMATS: JSON.stringify([{ name: 'small', width: 32, height: 32 }]),
        PIXTABLE_LOG_LEVEL: 'warn',
        PIXTABLE_PEERS: peerUrl,
      },
      timeoutMs: 60_000,
    },
  );
  const url = match[1]!;
  try {
    // new connections each time, so the kernel hands them to either worker
    const ask = (p: string, init: RequestInit = {}) =>
      fetch(`${url}${p}`, { ...init, headers: { connection: 'close', ...init.headers } });
    for (let i = 0; i < 4; i++) {
      const put = await ask(`/v1/sources/p${i}.png`, {
        method: 'PUT',
        body: new Uint8Array(await solidPng(40, 30, [i * 50, 0, 0])),
      });
      assert.equal(put.status, 201, output());
    }
    const del = await ask('/v1/sources/p3.png', { method: 'DELETE' });
    assert.equal(del.status, 204);
    const deadline = Date.now() + 5000;
    while (seen.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300)); // a doubled fan-out would arrive by now
    assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`).sort(), [
      'DELETE /v1/entries/p0.png',
      'DELETE /v1/entries/p1.png',
      'DELETE /v1/entries/p2.png',
      'DELETE /v1/entries/p3.png',
      'DELETE /v1/entries/p3.png',
    ]);

    // a peer's purge: the writer drops the entry, both workers see it gone (the next GET decodes)
    const decodes = async () =>
      Number(
        /^pixtable_decodes_total\{format="small"\} (\d+)/m.exec(await (await ask('/metrics')).text())?.[1],
      );
    assert.equal((await ask('/v1/pixels/small/p0.png')).status, 200);
    const before = await decodes();
    assert.equal((await ask('/v1/entries/p0.png', { method: 'DELETE' })).status, 204);
    assert.equal((await ask('/v1/pixels/small/p0.png')).status, 200);
    assert.equal(await decodes(), before + 1);
    assert.equal((await ask('/v1/sources/p0.png')).status, 200, 'the source stays');
  } finally {
    await stopChild(child);
    peer.close();
    rmrf(storage);
  }
});
