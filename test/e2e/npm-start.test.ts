// `npm start` as a new user runs it: SIGTERM or SIGINT sent to npm's own pid (what a terminal's
// Ctrl-C, systemd or a process manager does) must stop the server within the shutdown timeout —
// npm forwards the signal to the shell it ran the script in, so that shell must not stand between
// npm and the server. Afterwards the port is free and the writer lock released: a second
// `npm start` on the same port and storage listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { alive } from '../helpers/processes.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const SHUTDOWN_MS = 2_000;

interface Started {
  npm: ChildProcess;
  serverPid: number;
  port: number;
  exited: Promise<number | string>;
  output: () => string;
}

async function npmStart(storage: string, port: number): Promise<Started> {
  const npm = spawn('npm', ['start'], {
    cwd: root,
    // a clean environment: nothing from the npm that runs this test leaks into the one under test
    env: {
      // the Node running this test runs npm and the server too (.ci/node24 runs it on Node 24)
      PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: process.env.HOME ?? storage,
      PIXTABLE_STORAGE: storage,
      HOST: '127.0.0.1',
      PORT: String(port),
      PIXTABLE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS),
      PIXTABLE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  npm.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((resolve) =>
    npm.on('exit', (code, sig) => resolve(code ?? sig ?? 'unknown')),
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    // the server's own log line names its pid and address
    const m = /"pid":(\d+)[^\n]*"url":"http:\/\/127\.0\.0\.1:(\d+)"[^\n]*pixtable listening/.exec(out);
    if (m) return { npm, serverPid: Number(m[1]), port: Number(m[2]), exited, output: () => out };
    if (npm.exitCode !== null || Date.now() > deadline) {
      npm.kill('SIGKILL');
      throw new Error(`npm start did not listen:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopsWithin(s: Started, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (s.npm.exitCode !== null && !alive(s.serverPid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} to npm start stops the server; the port and the writer lock are free again`, async () => {
    const storage = tempDir('pixtable-npm-start-');
    const started: Started[] = [];
    try {
      const first = await npmStart(storage, 0);
      started.push(first);
      assert.notEqual(first.serverPid, first.npm.pid, 'the server is npm’s child, not npm itself');
      first.npm.kill(signal);
      // the drain takes at most the shutdown timeout; allow npm and Node their exit time on top
      assert.ok(
        await stopsWithin(first, SHUTDOWN_MS + 5_000),
        `after ${signal} to npm (pid ${first.npm.pid}) the server (pid ${first.serverPid}) still runs:\n${first.output()}`,
      );
      assert.equal(await first.exited, 0, first.output());

      // same port, same storage: the port is free and the writer lock was released
      const second = await npmStart(storage, first.port);
      started.push(second);
      assert.equal(second.port, first.port);
      assert.ok(fs.existsSync(path.join(storage, 'tables')));
      second.npm.kill('SIGTERM');
      assert.ok(await stopsWithin(second, SHUTDOWN_MS + 5_000), second.output());
    } finally {
      for (const s of started) {
        // an orphaned server (the bug) must not outlive the test
        if (alive(s.serverPid)) process.kill(s.serverPid, 'SIGKILL');
        if (s.npm.exitCode === null) s.npm.kill('SIGKILL');
      }
      rmrf(storage);
    }
  });
}
