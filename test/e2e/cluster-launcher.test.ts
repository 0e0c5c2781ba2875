// `npm run cluster` (deploy/local-cluster/launcher.ts): one "cluster ready" line once every part
// answers, requests through its nginx reach the replicas, and SIGTERM or Ctrl-C (SIGINT) stops
// every process it started and removes its folder: nothing is left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NGINX, ROOT, s3rverInstalled } from '../../deploy/local-cluster/parts.js';
import { requireComponent } from '../helpers/requires.js';
import { freePort } from '../helpers/ports.js';
import { alive, gone } from '../helpers/processes.js';

const hasS3rver = s3rverInstalled();
const skip =
  requireComponent('nginx', fs.existsSync(NGINX), `${NGINX} not found (apt-get install nginx)`) ||
  requireComponent('s3rver', hasS3rver, 'the s3rver dev dependency is not installed (npm ci)');

/** Every descendant of `pid` (children first found through /proc). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let kids: number[] = [];
    try {
      kids = execFileSync('pgrep', ['-P', String(p)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      kids = [];
    }
    for (const k of kids) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(
    `npm run cluster: ready line, requests through nginx, ${signal} leaves no process or folder`,
    { skip, timeout: 120_000 },
    async () => {
      const port = await freePort();
      const proc = spawn(
        process.execPath,
        [path.join(ROOT, 'dist/deploy/local-cluster/launcher.js'), '--port', String(port)],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
      const deadline = Date.now() + 90_000;
      while (!out.includes('\n')) {
        assert.ok(Date.now() < deadline && proc.exitCode === null, `no ready line; stderr:\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(out, `cluster ready: http://127.0.0.1:${port}\n`);

      const formats = await fetch(`http://127.0.0.1:${port}/v1/formats`);
      assert.equal(formats.status, 200);
      assert.ok(((await formats.json()) as unknown[]).length >= 1);

      const kids = descendants(proc.pid!);
      // three replicas, nginx's master and its worker
      assert.ok(kids.length >= 5, `children: ${kids.join(' ')}`);
      const folder = /-p (\S+)\/nginx /.exec(
        kids.map((k) => fs.readFileSync(`/proc/${k}/cmdline`, 'utf8').replaceAll('\0', ' ')).join('\n'),
      )?.[1];
      assert.ok(folder && fs.existsSync(folder), 'the cluster folder');

      proc.kill(signal);
      assert.equal(await exited, 0, err);
      for (const k of kids) assert.ok(await gone(k, 5000), `pid ${k} outlived the launcher`);
      assert.ok(!alive(proc.pid!));
      assert.ok(!fs.existsSync(folder), `${folder} was left behind`);
      assert.equal(out.split('\n').filter(Boolean).length, 1, out);
    },
  );
}
