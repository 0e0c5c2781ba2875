// pixtable behind a real nginx reverse proxy, the usual deployment. With keep-alive upstream
// connections (proxy_http_version 1.1, Connection cleared) hits are answered by the fast lane;
// nginx's default HTTP/1.0 upstream requests are Node's. Either way the bytes and statuses are the
// ones pixtable gives directly. Skips with the reason when nginx is not installed, fails under CI=true
// (.ci/run installs it).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeImage } from '../http/helpers.js';
import { start, request } from '../http/net-helpers.js';
import { requireComponent } from '../helpers/requires.js';
import { freePort } from '../helpers/ports.js';

const hasNginx = spawnSync('nginx', ['-v']).error === undefined;
const skip = requireComponent(
  'nginx',
  hasNginx,
  'not installed (apt-get install nginx; .ci/run installs it when it can)',
);

describe('behind nginx', { skip }, () => {
  let s: Awaited<ReturnType<typeof start>>;
  let nginx: ChildProcess | undefined;
  let dir = '';
  let proxy = '';
  let direct: Buffer;

  before(async () => {
    s = await start({ formats: [{ name: 'small', width: 64, height: 64 }] });
    const put = await request(s.url, '/v1/sources/a.png', {
      method: 'PUT',
      body: await makeImage('png', 120, 80, 3),
    });
    assert.ok(put.status === 201 || put.status === 200);
    direct = (await request(s.url, '/v1/pixels/small/a.png')).body; // the miss, decoded
    await request(s.url, '/v1/thumbnails/small/a.png?type=webp'); // encoded once

    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-proxy-'));
    fs.mkdirSync(path.join(dir, 'logs'));
    const port = await freePort();
    const upstream = new URL(s.url).host;
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream pixtable { server ${upstream}; keepalive 4; }
  server {
    listen 127.0.0.1:${port};
    location /h10/ { proxy_pass http://${upstream}/; }
    location / {
      proxy_pass http://pixtable;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
    );
    nginx = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
    proxy = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      // through the HTTP/1.0 location: not one of the pooled upstream connections
      const ok = await fetch(`${proxy}/h10/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline)
        throw new Error(
          `nginx did not come up: ${fs.readFileSync(path.join(dir, 'logs/error.log'), 'utf8')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    nginx?.kill('SIGTERM');
    await s.done();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('keep-alive upstream: hits through the lane, with the bytes pixtable gives directly', async () => {
    const l0 = s.app.pixtable.laneResponses;
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${proxy}/v1/pixels/small/a.png`);
      assert.equal(r.status, 200);
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(direct));
      assert.equal(r.headers.get('x-image-width'), '64');
    }
    const t = await fetch(`${proxy}/v1/thumbnails/small/a.png`, { headers: { Accept: 'image/webp' } });
    assert.equal(t.status, 200);
    assert.equal(t.headers.get('content-type'), 'image/webp');
    assert.equal(t.headers.get('vary'), 'Accept');
    const etag = t.headers.get('etag') ?? '';
    await t.arrayBuffer();
    const nm = await fetch(`${proxy}/v1/thumbnails/small/a.png`, {
      headers: { Accept: 'image/webp', 'If-None-Match': etag },
    });
    assert.equal(nm.status, 304);
    assert.equal(s.app.pixtable.laneResponses - l0, 7, 'all seven answered by the lane');
  });

  test('requests the lane passes to Node on a pooled connection, then hits on it again', async () => {
    const range = await fetch(`${proxy}/v1/pixels/small/a.png`, { headers: { Range: 'bytes=4-11' } });
    assert.equal(range.status, 206);
    assert.ok(Buffer.from(await range.arrayBuffer()).equals(direct.subarray(4, 12)));
    const missing = await fetch(`${proxy}/v1/pixels/small/nope.png`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'SOURCE_NOT_FOUND');
    const l0 = s.app.pixtable.laneResponses;
    const f0 = s.app.pixtable.shortcutResponses;
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${proxy}/v1/pixels/small/a.png`);
      assert.equal(r.status, 200);
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(direct));
    }
    // nginx reuses its pooled connection: the lane passed the Range and the miss to Node's server
    // one request each and keeps answering the hits on it
    assert.equal(s.app.pixtable.laneResponses - l0, 3);
    assert.equal(s.app.pixtable.shortcutResponses - f0, 3);
  });

  test('nginx’s default HTTP/1.0 upstream requests are answered by Node’s server, same bytes', async () => {
    const l0 = s.app.pixtable.laneResponses;
    const r = await fetch(`${proxy}/h10/v1/pixels/small/a.png`);
    assert.equal(r.status, 200);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(direct));
    assert.equal(s.app.pixtable.laneResponses, l0);
  });
});
