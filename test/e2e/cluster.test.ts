// A real cluster: Debian's nginx with the shipped deploy/nginx/pixtable.conf in front of three
// `pixtable serve` replicas, each in a network namespace of its own (a veth link to the host,
// test/helpers/netns.ts), storage folders of their own, sources in a real S3-protocol server
// (s3rver) on the host. Where namespaces cannot be made (not root, no iproute2) the replicas run
// on loopback ports instead and the suite says so; under CI=true that is a failure.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import {
  bucketClient,
  NGINX,
  s3rverInstalled,
  startNginx,
  startReplica,
  startS3rver,
  stopChild,
  waitFor,
  writeNginxConfig,
  type ReplicaSpec,
} from '../../deploy/local-cluster/parts.js';
import { requireComponent } from '../helpers/requires.js';
import { makeNamespaces, removeNamespaces, type Namespace } from '../helpers/netns.js';
import { freePort } from '../helpers/ports.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const hasNginx = fs.existsSync(NGINX);
const hasS3rver = s3rverInstalled();
const skip =
  requireComponent('nginx', hasNginx, `${NGINX} not found (apt-get install nginx; .ci/run installs it)`) ||
  requireComponent('s3rver', hasS3rver, 'the s3rver dev dependency is not installed (npm ci)');

/** Namespaces, or why there are none (the loopback fallback). */
let spaces: Namespace[] = [];
let noNamespaces = '';
if (!skip) {
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    spaces = makeNamespaces(3);
  } catch (e) {
    noNamespaces = (e as Error).message;
  }
}
requireComponent(
  'network namespaces',
  skip !== false || noNamespaces === '',
  `cannot make them (${noNamespaces}); the suite runs on loopback ports instead`,
);

const FORMATS = ['thumb-64', 'thumb-256', 'preview-1024'] as const;
const KEYS = Array.from({ length: 20 }, (_, i) => `photos/k${String(i).padStart(2, '0')}.jpg`);
/** PIXTABLE_REVALIDATE_MS of every replica: the staleness bound the bucket test checks. */
const REVALIDATE_MS = 3000;

async function jpeg(r: number, g: number, b: number, seed: number): Promise<Buffer> {
  const w = 640;
  const h = 480;
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    raw[i * 3] = (r + ((i * seed) & 7)) & 255;
    raw[i * 3 + 1] = g;
    raw[i * 3 + 2] = b;
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

interface Replica {
  spec: ReplicaSpec;
  /** Base URL the host reaches it at. */
  url: string;
  /** `host:port` as nginx's upstream names it (what X-Upstream reports). */
  addr: string;
  proc: ChildProcess;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

describe('a cluster of three replicas behind nginx', { skip }, () => {
  const dir = tempDir('pixtable-cluster-test-');
  const replicas: Replica[] = [];
  let nginx: ChildProcess | undefined;
  let s3: Awaited<ReturnType<typeof startS3rver>> | undefined;
  let bucket: ReturnType<typeof bucketClient> | undefined;
  let front = '';
  /** Which replica answered each key (from the X-Upstream header the test's nginx adds). */
  const owner = new Map<string, string>();
  /** Replicas that answered a dead replica's keys during the failover (they hold copies). */
  const standIns = new Set<string>();

  const byAddr = (a: string) => replicas.find((r) => r.addr === a);
  const get = (p: string) => fetch(`${front}${p}`);
  const pixelsOf = async (base: string, key: string) => {
    const r = await fetch(`${base}/v1/pixels/thumb-64/${key}`);
    return {
      status: r.status,
      body: Buffer.from(await r.arrayBuffer()),
      upstream: r.headers.get('x-upstream'),
    };
  };
  const decodes = async (r: Replica) => metric(r.url, 'pixtable_decode_duration_seconds_count');
  const putObject = (key: string, body: Buffer) => bucket!.put(key, body);

  before(async () => {
    if (noNamespaces) console.log(`# no network namespaces (${noNamespaces}): replicas on loopback ports`);
    fs.chmodSync(dir, 0o711);
    const s3Address = spaces.length ? '0.0.0.0' : '127.0.0.1';
    s3 = await startS3rver(s3Address, 0, path.join(dir, 's3'));
    bucket = bucketClient(`http://127.0.0.1:${s3.port}`);

    for (const [i, key] of KEYS.entries()) await putObject(key, await jpeg(40 + i * 9, 100, 200, i + 1));

    const homes = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const ns = spaces[i];
        return ns
          ? { host: ns.address, port: 8080, s3: `http://${ns.hostAddress}:${s3!.port}`, netns: ns.name }
          : { host: '127.0.0.1', port: await freePort(), s3: `http://127.0.0.1:${s3!.port}` };
      }),
    );
    const peers = homes.map((h) => `http://${h.host}:${h.port}`).join(',');
    for (const [i, h] of homes.entries()) {
      const spec: ReplicaSpec = {
        host: h.host,
        port: h.port,
        storage: path.join(dir, `replica-${i + 1}`),
        s3Endpoint: h.s3,
        peers,
        ...(h.netns ? { netns: h.netns } : {}),
        env: { PIXTABLE_REVALIDATE_MS: String(REVALIDATE_MS), PIXTABLE_LOG_LEVEL: 'error' },
      };
      const addr = `${h.host}:${h.port}`;
      replicas.push({ spec, url: `http://${addr}`, addr, proc: startReplica(spec) });
    }
    await Promise.all(replicas.map((r) => waitFor(`${r.url}/readyz`, 60_000)));

    const port = await freePort();
    const conf = writeNginxConfig(
      path.join(dir, 'nginx'),
      `127.0.0.1:${port}`,
      replicas.map((r) => r.addr),
      1,
      // which replica answered, for the test's bookkeeping only (not in the shipped file)
      'add_header X-Upstream $upstream_addr always;',
    );
    nginx = startNginx(conf);
    front = `http://127.0.0.1:${port}`;
    await waitFor(`${front}/v1/formats`, 20_000);
  });

  after(async () => {
    if (nginx) await stopChild(nginx);
    await Promise.all(replicas.map((r) => stopChild(r.proc, 'SIGTERM', 5000)));
    bucket?.client.destroy();
    await s3?.close();
    removeNamespaces(spaces);
    rmrf(dir);
  });

  test('every default format of 20 keys through nginx: each key decoded once in the whole cluster', async () => {
    for (const key of KEYS) {
      const seen = new Set<string>();
      const paths = [
        ...FORMATS.map((f) => `/v1/pixels/${f}/${key}`),
        `/v1/pixels/thumb-256/${key}?rect=0,0,16,16`,
        `/v1/thumbnails/thumb-256/${key}?type=webp`,
        `/v1/thumbnails/preview-1024/${key}?type=png&w=100`,
        `/v1/sources/${key}`,
      ];
      for (const p of paths) {
        const r = await get(p);
        await r.arrayBuffer();
        assert.equal(r.status, 200, p);
        seen.add(r.headers.get('x-upstream') ?? '?');
      }
      // query strings, types, variants and routes never moved the key
      assert.equal(seen.size, 1, `${key} answered by ${[...seen].join(', ')}`);
      owner.set(key, [...seen][0]!);
    }
    const counts = await Promise.all(replicas.map(decodes));
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      KEYS.length,
      `decodes per replica ${counts.join(', ')}`,
    );
    for (const f of FORMATS) {
      const per = await Promise.all(
        replicas.map((r) => metric(r.url, `pixtable_decodes_total\\{format="${f}"\\}`)),
      );
      assert.equal(
        per.reduce((a, b) => a + b, 0),
        KEYS.length,
        `${f}: ${per.join(', ')}`,
      );
    }
    // the ring spread the keys: every replica owns some (deterministic for these keys and addresses)
    for (const r of replicas) assert.ok([...owner.values()].includes(r.addr), `${r.addr} owns no key`);
  });

  test('SIGKILL of one replica under load: its keys move, no 5xx reaches a client; restarted, it serves its old entries without decoding', async (t) => {
    const victim = byAddr(owner.get(KEYS[0]!)!)!;
    const itsKeys = KEYS.filter((k) => owner.get(k) === victim.addr);
    const statuses = new Map<number, number>();
    const movedTo = new Set<string>();
    let stop = false;
    let sent = 0;
    const t0 = Date.now();
    // bounded: at most 4,000 requests and 8 s, 4 at a time
    const client = async (n: number) => {
      for (let i = n; !stop && sent < 4000 && Date.now() - t0 < 8000; i += 4) {
        sent++;
        const key = KEYS[i % KEYS.length]!;
        const r = await get(`/v1/pixels/${FORMATS[i % 3]}/${key}`);
        await r.arrayBuffer();
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (owner.get(key) === victim.addr && Date.now() - t0 > 1000)
          movedTo.add(r.headers.get('x-upstream') ?? '?');
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(client));
    await new Promise((r) => setTimeout(r, 1000));
    victim.proc.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 3000));
    stop = true;
    await load;
    const fivexx = [...statuses].filter(([s]) => s >= 500).reduce((a, [, n]) => a + n, 0);
    // docs/deploy.md: a GET cut by a dead replica is sent once more (proxy_next_upstream error
    // timeout, 2 tries), so none reaches the client
    t.diagnostic(
      `${sent} requests during the kill, statuses ${JSON.stringify([...statuses])}, 5xx: ${fivexx}`,
    );
    assert.equal(fivexx, 0, `statuses ${JSON.stringify([...statuses])}`);
    assert.equal(statuses.get(200), sent);
    const elsewhere = [...movedTo].filter((a) => a !== victim.addr && !a.includes(victim.addr));
    assert.ok(elsewhere.length > 0, `the victim's keys were answered by ${[...movedTo].join(' | ')}`);
    for (const a of elsewhere) standIns.add(a);

    // restarted on the same storage: nginx tries it again after fail_timeout (5 s)
    victim.proc = startReplica(victim.spec);
    await waitFor(`${victim.url}/readyz`, 60_000);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await pixelsOf(front, itsKeys[0]!);
      if (r.upstream === victim.addr) break;
      assert.ok(Date.now() < deadline, `nginx never sent ${itsKeys[0]} back to ${victim.addr}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    for (const key of itsKeys) {
      for (const f of FORMATS) {
        const r = await get(`/v1/pixels/${f}/${key}`);
        await r.arrayBuffer();
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('x-upstream'), victim.addr, key);
      }
    }
    assert.equal(await decodes(victim), 0, 'the restarted replica decoded again');
  });

  test('an object replaced in the bucket is served anew by its owner and by the replica that held it during the failover, within revalidateMs', async (t) => {
    const victimAddr = owner.get(KEYS[0]!)!;
    const key = KEYS.find((k) => owner.get(k) === victimAddr)!;
    const ownerUrl = byAddr(victimAddr)!.url;
    // the replica that answered the key while its owner was dead holds an entry of it
    const holders = replicas.filter((r) => standIns.has(r.addr));
    assert.ok(holders.length > 0, 'no replica stood in for the dead one');
    const before = await Promise.all([ownerUrl, ...holders.map((h) => h.url)].map((u) => pixelsOf(u, key)));
    for (const b of before) assert.equal(b.status, 200);

    await putObject(key, await jpeg(240, 10, 10, 99));
    const t0 = Date.now();
    for (const u of [ownerUrl, ...holders.map((h) => h.url)]) {
      for (;;) {
        const now = await pixelsOf(u, key);
        if (now.status === 200 && !now.body.equals(before[0]!.body)) {
          assert.ok(now.body[0]! > 200, `${u}: new pixels are the new object's red`);
          break;
        }
        assert.ok(
          Date.now() - t0 < REVALIDATE_MS + 2000,
          `${u} still served the old object after ${Date.now() - t0} ms`,
        );
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const took = Date.now() - t0;
    t.diagnostic(
      `new object served by ${1 + holders.length} replicas after ${took} ms (revalidateMs ${REVALIDATE_MS})`,
    );
    // one revalidation per revalidateMs, plus the decode of the new object
    assert.ok(took <= REVALIDATE_MS + 2000, `took ${took} ms`);
  });

  test('purge fan-out: a DELETE through nginx is visible on every replica at once, long before revalidateMs', async (t) => {
    const key = KEYS[1]!;
    // every replica holds an entry of the key (asked directly)
    for (const r of replicas) assert.equal((await pixelsOf(r.url, key)).status, 200);
    const sent = await metric(`http://${owner.get(key)!}`, 'pixtable_peer_purges_total\\{result="ok"\\}');
    const del = await fetch(`${front}/v1/sources/${key}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    const t0 = Date.now();
    for (const r of replicas) {
      for (;;) {
        const now = await pixelsOf(r.url, key);
        if (now.status === 404) break;
        assert.ok(
          Date.now() - t0 < 1000,
          `${r.addr} still answered ${now.status} ${Date.now() - t0} ms after the DELETE`,
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const took = Date.now() - t0;
    t.diagnostic(`the DELETE was visible on all ${replicas.length} replicas after ${took} ms`);
    assert.ok(took < REVALIDATE_MS / 2, `visible after ${took} ms`);
    // the owner sent one purge to each of the three (itself included, which ignores its own)
    assert.equal(
      (await metric(`http://${owner.get(key)!}`, 'pixtable_peer_purges_total\\{result="ok"\\}')) - sent,
      3,
    );
  });
});
