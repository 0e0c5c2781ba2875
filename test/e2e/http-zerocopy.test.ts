// Proves at the system-call boundary that raw pixel bodies leave from the table mapping itself.
//
// strace prints writev's iovecs as their *contents* (`iov_base="..."`), never their addresses —
// with -e raw=writev it shows only the address of the iovec array — so the probe is gdb, also
// ptrace-based: a breakpoint on libc's writev/write/sendmsg in the server process prints every
// iovec's base address and length (the fast lane sends a hit with one sendmsg of its own when
// nothing is queued on the socket; Node's stream uses writev), and the test checks the body
// iovecs against the table file's mapping in /proc/PID/maps. A whole entry must leave as one iovec of the entry size; a rectangle as one
// writev whose row iovecs all point into the mapping (no concatenated copy anywhere).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeImage } from '../http/helpers.js';
import { spawnServer, request, rawExchange } from '../http/net-helpers.js';
import { requireComponentIn } from '../helpers/requires.js';

const REGS: Partial<Record<string, [string, string, string]>> = {
  x64: ['$rdi', '$rsi', '$rdx'],
  arm64: ['$x0', '$x1', '$x2'],
};

function gdbScript([fd, buf, n]: [string, string, string]): string {
  return `set pagination off
set confirm off
handle SIGPIPE nostop noprint pass
handle SIGUSR1 nostop noprint pass
handle SIGUSR2 nostop noprint pass
handle SIGTERM nostop noprint pass
break writev
commands
silent
printf "WRITEV %d %d\\n", ${fd}, ${n}
set $i = 0
while $i < ${n}
printf "IOV %lu %lu\\n", *(unsigned long *)(${buf} + 16 * $i), *(unsigned long *)(${buf} + 16 * $i + 8)
set $i = $i + 1
end
continue
end
break sendmsg
commands
silent
set $v = *(unsigned long *)(${buf} + 16)
set $k = *(unsigned long *)(${buf} + 24)
printf "SENDMSG %d %lu\\n", ${fd}, $k
set $i = 0
while $i < $k
printf "IOV %lu %lu\\n", *(unsigned long *)($v + 16 * $i), *(unsigned long *)($v + 16 * $i + 8)
set $i = $i + 1
end
continue
end
break write
commands
silent
printf "WRITE %d %lu %lu\\n", ${fd}, ${buf}, ${n}
continue
end
printf "ATTACHED\\n"
continue
`;
}

interface Call {
  kind: 'writev' | 'write' | 'sendmsg';
  fd: number;
  iovs: { base: bigint; len: number }[];
}

function parseCalls(out: string): Call[] {
  const calls: Call[] = [];
  for (const line of out.split('\n')) {
    let m = /^(WRITEV|SENDMSG) (\d+) (\d+)$/.exec(line);
    if (m) {
      calls.push({ kind: m[1] === 'WRITEV' ? 'writev' : 'sendmsg', fd: Number(m[2]), iovs: [] });
      continue;
    }
    m = /^IOV (\d+) (\d+)$/.exec(line);
    if (m) {
      calls.at(-1)?.iovs.push({ base: BigInt(m[1]!), len: Number(m[2]) });
      continue;
    }
    m = /^WRITE (\d+) (\d+) (\d+)$/.exec(line);
    if (m)
      calls.push({ kind: 'write', fd: Number(m[1]), iovs: [{ base: BigInt(m[2]!), len: Number(m[3]) }] });
  }
  return calls;
}

async function tableMappings(pid: number, tablesDir: string): Promise<[bigint, bigint][]> {
  const maps = await fs.readFile(`/proc/${pid}/maps`, 'utf8');
  const out: [bigint, bigint][] = [];
  for (const line of maps.split('\n')) {
    const parts = line.trim().split(/\s+/);
    const file = parts[5];
    if (!file || !file.startsWith(tablesDir) || !file.endsWith('.tbl')) continue;
    const [a, b] = parts[0]!.split('-');
    out.push([BigInt(`0x${a}`), BigInt(`0x${b}`)]);
  }
  return out;
}

const inside = (maps: [bigint, bigint][], base: bigint, len: number) =>
  maps.some(([a, b]) => base >= a && base + BigInt(len) <= b);

test('raw pixel bodies are written from the table mapping (gdb probe on writev)', async (t) => {
  const regs = REGS[process.arch];
  const supported = process.platform === 'linux' && regs !== undefined;
  const platform = `${process.platform}/${process.arch}`;
  const why = `the probe reads syscall registers on Linux x64/arm64; this is ${platform}`;
  if (!requireComponentIn(t, 'a Linux x64/arm64 kernel', supported, why) || !regs) return;
  const gdb = spawnSync('gdb', ['--version']);
  assert.equal(gdb.error, undefined, 'gdb is required for this test (Debian: apt-get install -y gdb)');

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-zc-'));
  const server = await spawnServer({
    PIXTABLE_STORAGE: dir,
    PIXTABLE_FORMATS: JSON.stringify([
      { name: 'tile', width: 64, height: 64, pixelFormat: 'rgba8', rowAlignment: 64 },
    ]),
    PIXTABLE_LOG_LEVEL: 'warn',
    PIXTABLE_LOG_REQUESTS: 'false',
  });
  let probe: ReturnType<typeof spawn> | undefined;
  try {
    const put = await request(server.url, '/v1/sources/cat.png', {
      method: 'PUT',
      body: await makeImage('png'),
    });
    assert.equal(put.status, 201);
    assert.equal((await request(server.url, '/v1/pixels/tile/cat.png')).status, 200); // warm

    const scriptFile = path.join(dir, 'probe.gdb');
    await fs.writeFile(scriptFile, gdbScript(regs));
    probe = spawn('gdb', ['-p', String(server.pid), '-batch', '-x', scriptFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let gout = '';
    probe.stdout!.on('data', (c: Buffer) => (gout += c.toString()));
    probe.stderr!.on('data', (c: Buffer) => (gout += c.toString()));
    const probeExit = new Promise<void>((resolve) => probe!.on('exit', () => resolve()));
    const deadline = Date.now() + 30_000;
    while (!gout.includes('ATTACHED')) {
      if (/ptrace: Operation not permitted|Could not attach|not permitted/i.test(gout)) {
        const last = gout.trim().split('\n').pop() ?? '';
        requireComponentIn(t, 'ptrace', false, `the process cannot be probed: ${last}`);
        return;
      }
      if (Date.now() > deadline) throw new Error(`gdb did not attach:\n${gout}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    // a hit through the fast lane (src/http/lane/), and one through Node's HTTP server (the lane
    // leaves HTTP/1.0 to Node): both must write the body from the mapping
    const whole = await request(server.url, '/v1/pixels/tile/cat.png');
    assert.equal(whole.status, 200);
    const entryBytes = Number(whole.headers['content-length']);
    assert.equal(entryBytes, 64 * 256);
    const viaNode = await rawExchange(server.url, 'GET /v1/pixels/tile/cat.png HTTP/1.0\r\nHost: t\r\n\r\n');
    assert.match(viaNode, /^HTTP\/1\.1 200 /);
    assert.equal(viaNode.length - viaNode.indexOf('\r\n\r\n') - 4, entryBytes);
    const rect = await request(server.url, '/v1/pixels/tile/cat.png?rect=3,5,10,20');
    assert.equal(rect.status, 200);
    assert.equal(rect.body.length, 20 * 40);

    const maps = await tableMappings(server.pid, path.join(dir, 'tables'));
    assert.ok(maps.length > 0, 'the table file is mapped');
    await new Promise((r) => setTimeout(r, 200));
    const calls = parseCalls(gout);

    // whole entry: exactly one iovec of the entry size per response, inside the mapping
    const bodyIovs = calls.flatMap((c) => c.iovs.filter((v) => v.len === entryBytes).map((v) => ({ c, v })));
    assert.equal(bodyIovs.length, 2, `two ${entryBytes}-byte iovecs in:\n${gout.slice(0, 3000)}`);
    for (const { v } of bodyIovs)
      assert.ok(inside(maps, v.base, entryBytes), 'the whole-entry iovec points into the table mapping');
    assert.deepEqual(
      bodyIovs.map(({ c }) => c.kind).sort(),
      ['sendmsg', 'writev'],
      'the lane’s hit left with its own sendmsg, Node’s (HTTP/1.0) through its stream’s writev',
    );

    // rect: one writev carries all 20 rows, each a 40-byte slice of the mapping, one stride apart
    const rectCall = calls.find(
      (c) => c.kind === 'writev' && c.iovs.filter((v) => v.len === 40).length === 20,
    );
    assert.ok(rectCall, `a writev with 20 row iovecs in:\n${gout.slice(0, 3000)}`);
    const rows = rectCall.iovs.filter((v) => v.len === 40);
    for (const r of rows)
      assert.ok(inside(maps, r.base, 40), `row iovec 0x${r.base.toString(16)} is in the mapping`);
    for (let i = 1; i < rows.length; i++)
      assert.equal(rows[i]!.base - rows[i - 1]!.base, 256n, 'rows are one stride apart');
    // no other write carried body-sized data (a copy would show up as a heap iovec of that size)
    const copies = calls
      .flatMap((c) => c.iovs)
      .filter((v) => (v.len === entryBytes || v.len === 800) && !inside(maps, v.base, v.len));
    assert.deepEqual(copies, []);

    server.proc.kill('SIGTERM');
    await Promise.race([probeExit, new Promise((r) => setTimeout(r, 10_000))]);
  } finally {
    if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    if (probe && probe.exitCode === null) probe.kill('SIGKILL');
    await server.exited;
    await fs.rm(dir, { recursive: true, force: true });
  }
});
