// PIXTABLE_DISTRIBUTION: which listening mode `--workers N` uses on which runtime, and the port
// claim that keeps a reuseport group to one server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { claimPort, listenMode, runtimeHasReusePort } from '../../src/serve/distribution.js';
import { isPixtableError } from '../../src/errors.js';

test('reusePort is known from the Node versions that have it', () => {
  for (const v of ['20.20.2', '22.11.0', '23.0.0']) assert.equal(runtimeHasReusePort(v), false, v);
  for (const v of ['22.12.0', '23.1.0', '24.11.1', '25.0.0']) assert.equal(runtimeHasReusePort(v), true, v);
});

test('auto is reuseport where the runtime has it, shared where not; reuseport without it is refused', () => {
  assert.equal(listenMode('auto', '24.11.1'), 'reuseport');
  assert.equal(listenMode('auto', '20.20.2'), 'shared');
  assert.equal(listenMode('shared', '24.11.1'), 'shared');
  assert.equal(listenMode('round-robin', '20.20.2'), 'round-robin');
  assert.equal(listenMode('reuseport', '24.11.1'), 'reuseport');
  assert.throws(
    () => listenMode('reuseport', '20.20.2'),
    (e: unknown) =>
      isPixtableError(e) &&
      e.code === 'INVALID_CONFIG' &&
      /needs Node 22\.12 or later \(this is 20\.20\.2\)/.test(e.message),
  );
});

test('claimPort turns port 0 into a free port and refuses a port somebody listens on', async () => {
  const p = await claimPort('127.0.0.1', 0);
  assert.ok(p > 0);
  // free again once claimed: the workers bind it next
  const again = net.createServer().listen(p, '127.0.0.1');
  await new Promise((r) => again.once('listening', r));
  try {
    await assert.rejects(claimPort('127.0.0.1', p), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
  } finally {
    again.close();
  }
});

test('runtimeHasReusePort tells the truth here; claimPort refuses a port a reuseport group holds', async () => {
  const listen = (port: number) =>
    new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen({ port, host: '127.0.0.1', reusePort: true } as net.ListenOptions, () => resolve(s));
    });
  const first = await listen(0);
  const port = (first.address() as net.AddressInfo).port;
  try {
    if (runtimeHasReusePort()) {
      // a second socket joins the group: what every worker does
      const second = await listen(port);
      second.close();
      // and what a second server must not do: the supervisor's claim sees the group
      await assert.rejects(
        claimPort('127.0.0.1', port),
        (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE',
      );
    } else {
      // the option is not there: a second socket on the port fails, so `auto` must not pick it
      await assert.rejects(listen(port), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
    }
  } finally {
    first.close();
  }
});
