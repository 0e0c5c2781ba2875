// The finding behind the reader table, as a test: a writer recycling slots under a tiny maxCount
// while other processes serve its entries — read-only servers with the lane on and off, fast and
// slow clients, the workers of `serve --workers 2`, and a library reader holding views — must never
// hand out another image's bytes.
// Before cross-process pins, a read-only server sent another image's pixels under the requested
// image's ETag in about one 4 MiB response in four. Every source is one solid colour, so a body is
// checked exactly: every byte is its key's colour.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { ImageCache, PixtableError, type FormatSpec } from '../../src/index.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';
import { Child } from '../helpers/cache-child.js';
import { spawnServer } from '../http/net-helpers.js';
import { startChild } from './cli-fixtures.js';

// Fast clients and the library reader use 256 KiB entries (many checks per second); slow clients
// 4 MiB ones, as in the finding: a body larger than the socket buffers stays queued as slices of
// the mapping while the client dawdles, which is when the writer used to overwrite it.
const FORMATS: FormatSpec[] = [
  { name: 'big', width: 256, height: 256, fit: 'cover', pixelFormat: 'rgba8', maxCount: 4 },
  { name: 'huge', width: 1024, height: 1024, fit: 'cover', pixelFormat: 'rgba8', maxCount: 3 },
];
const KEYS = Array.from({ length: 8 }, (_, i) => `c${i}.png`);
const WANT = 10_000;
/** and at least this many rewrites by the writer meanwhile, each recycling a slot */
const REWRITES = 150;
const LIMIT_MS = 120_000;

interface Tally {
  checked: number;
  wrong: number;
  other: number;
}

/** One client: GETs random keys until `stop()`, checking each 200 body against its key's colour. */
async function client(
  base: string,
  format: string,
  expected: Map<string, Buffer>,
  tally: Tally,
  stop: () => boolean,
  slow: boolean,
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    while (!stop()) {
      const key = KEYS[Math.floor(Math.random() * KEYS.length)]!;
      const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        http
          .get(`${base}/v1/pixels/${format}/${key}`, { agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              if (slow) {
                // a slow reader: the server's write queue, and so its pin, lasts a while
                res.pause();
                setTimeout(() => res.resume(), 10);
              }
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
            res.on('error', reject);
          })
          .on('error', reject);
      });
      if (status === 200) {
        tally.checked++;
        if (!body.equals(expected.get(key)!)) tally.wrong++;
      } else if (status !== 405 && status !== 503) {
        // 405 READ_ONLY: not cached right now; 503: the writer is recycling it. Anything else is wrong.
        tally.other++;
      }
    }
  } finally {
    agent.destroy();
  }
}

/** Each key's expected bytes in `format`, from the writer's own entry: one colour, every pixel. */
async function solidEntries(writer: ImageCache, format: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const key of KEYS) {
    using v = await writer.get(format, key);
    const whole = Buffer.alloc(v.width * v.height * 4);
    for (let p = 0; p < whole.length; p += 4) v.pixels.copy(whole, p, 0, 4);
    assert.ok(v.stride === v.width * 4 && v.pixels.equals(whole), `${format}/${key} decodes to one colour`);
    out.set(key, whole);
  }
  return out;
}

test(
  'readers in other processes never see another image: 10,000 bodies and views, 0 wrong',
  {
    timeout: LIMIT_MS + 60_000,
  },
  async () => {
    const storage = tempDir('pixtable-xserve-');
    const writer = await ImageCache.open({ storage, formats: FORMATS, logger: { warn: () => {} } });
    const env = {
      PIXTABLE_STORAGE: storage,
      PIXTABLE_FORMATS: JSON.stringify(FORMATS),
      PIXTABLE_READ_ONLY: 'true',
      PIXTABLE_LOG_LEVEL: 'warn',
    };
    const servers = await Promise.all([
      spawnServer({ ...env }),
      spawnServer({ ...env, PIXTABLE_FAST_LANE: 'false' }),
    ]);
    // and the workers of `pixtable serve --workers 2` (read-only: this test's writer is the library)
    const workers = await startChild(
      ['serve', '--workers', '2', '--port', '0', '--read-only', '--no-log-requests'],
      /"role":"supervisor","url":"([^"]+)"/,
      { env, timeoutMs: 60_000 },
    );
    const urls = [...servers.map((s) => s.url), workers.match[1]!];
    const library = new Child();
    try {
      const sources = await Promise.all(
        KEYS.map((_, i) => solidPng(16, 16, [i * 30, 220 - i * 25, 40 + i * 27])),
      );
      for (const [i, key] of KEYS.entries()) await writer.put(key, sources[i]!);
      const big = await solidEntries(writer, 'big');
      const huge = await solidEntries(writer, 'huge');
      const colours = Object.fromEntries(KEYS.map((k) => [k, big.get(k)!.toString('hex', 0, 4)]));
      assert.equal(new Set(Object.values(colours)).size, KEYS.length, 'every key has its own colour');
      for (const k of KEYS)
        assert.equal(huge.get(k)!.toString('hex', 0, 4), colours[k], `${k}: one colour in both formats`);
      await library.ok({ op: 'open', options: { storage, formats: FORMATS, readOnly: true } });

      const t0 = Date.now();
      const fast: Tally = { checked: 0, wrong: 0, other: 0 };
      const slow: Tally = { checked: 0, wrong: 0, other: 0 };
      const views = { checked: 0, wrong: 0, misses: 0 };
      let puts = 0;
      let full = 0;
      const checked = () => fast.checked + slow.checked + views.checked;
      const stop = () => (checked() >= WANT && puts >= REWRITES) || Date.now() - t0 > LIMIT_MS;
      const writing = (async () => {
        for (let i = 0; !stop(); i++) {
          try {
            await writer.put(KEYS[i % KEYS.length]!, sources[i % KEYS.length]!);
            puts++;
          } catch (e) {
            if (!(e instanceof PixtableError && e.code === 'TABLE_FULL')) throw e;
            full++; // every slot held by a reader somewhere: the writer waits, as it should
            await new Promise((r) => setTimeout(r, 2));
          }
        }
      })();
      const reading = (async () => {
        while (!stop()) {
          const r = await library.ok({
            op: 'check',
            format: 'big',
            colours,
            ms: 1,
            untilMs: Date.now() + 1000,
          });
          views.checked += r.checked as number;
          views.wrong += r.wrong as number;
          views.misses += r.misses as number;
        }
      })();
      const clients = urls.flatMap((url) => [
        ...Array.from({ length: 3 }, () => client(url, 'big', big, fast, stop, false)),
        client(url, 'huge', huge, slow, stop, true),
      ]);
      await Promise.all([writing, reading, ...clients]);
      const ms = Date.now() - t0;
      console.log(
        `# ${fast.checked} 256 KiB bodies (fast clients), ${slow.checked} 4 MiB bodies (slow clients) and ` +
          `${views.checked} held views checked in ${ms} ms while the writer rewrote ${puts} entries ` +
          `(${full} TABLE_FULL); wrong: ${fast.wrong} + ${slow.wrong} bodies, ${views.wrong} views`,
      );
      assert.equal(fast.other + slow.other, 0, 'every response is 200, 405 (not cached) or 503');
      assert.equal(fast.wrong + slow.wrong + views.wrong, 0, "bytes of another key's image were served");
      assert.ok(checked() >= WANT, `only ${checked()} checked in ${ms} ms`);
      assert.ok(puts >= REWRITES, `the writer recycled slots only ${puts} times`);
      assert.ok(
        fast.checked > 1000 && slow.checked > 20 && views.checked > 100,
        'every kind of reader took part',
      );
      const served = (await (await fetch(`${workers.match[1]!}/metrics`)).text())
        .split('\n')
        .filter((l) => l.startsWith('pixtable_server_responses_total{role="worker"'))
        .reduce((n, l) => n + Number(l.split(' ')[1]), 0);
      assert.ok(served > 1000, `the --workers 2 workers answered ${served} of the requests`);
    } finally {
      await library.end();
      workers.child.kill('SIGTERM');
      await new Promise((r) => workers.child.once('exit', r));
      for (const s of servers) {
        s.proc.kill('SIGTERM');
        await s.exited;
      }
      await writer.close();
      rmrf(storage);
    }
  },
);
