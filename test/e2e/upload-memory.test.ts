// Uploads stream to disk (issue 12 item 1): a real server process receives 32 concurrent uploads
// of a 40 MiB image and its resident memory, sampled from /proc/PID/status, must rise by less than
// 150 MiB (buffered bodies raised it by 1.16 GiB). The figures are reported as diagnostics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { spawnServer } from '../http/net-helpers.js';

const UPLOADS = 32;
const TARGET_MIB = 150;
const MiB = 1024 * 1024;

/** A PNG of noise stored uncompressed: a real image of about `bytes` bytes. */
async function bigPng(file: string, bytes: number): Promise<number> {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const raw = randomBytes(side * side * 3);
  await sharp(raw, { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toFile(file);
  return fs.statSync(file).size;
}

/** VmRSS and VmHWM of `pid`, in bytes. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** PUT of `file` streamed from disk (as curl -T does); resolves with the status. */
function upload(base: string, key: string, file: string): Promise<number> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: `/v1/sources/${key}`,
        method: 'PUT',
        agent: false,
        headers: { 'content-type': 'image/png', 'content-length': fs.statSync(file).size },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    fs.createReadStream(file).pipe(req);
  });
}

test(
  `${UPLOADS} concurrent 40 MiB uploads raise the server's RSS by less than ${TARGET_MIB} MiB`,
  { timeout: 240_000 },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-upload-mem-'));
    const file = path.join(dir, 'big.png');
    const size = await bigPng(file, 40 * MiB);
    const child = await spawnServer({
      PIXTABLE_STORAGE: path.join(dir, 'storage'),
      PIXTABLE_FORMATS: JSON.stringify([{ name: 't', width: 64, height: 64 }]),
      PIXTABLE_MAX_CONCURRENT_UPLOADS: String(UPLOADS),
      PIXTABLE_MAX_UPLOAD_BYTES: String(64 * MiB),
      PIXTABLE_DECODE_TIMEOUT_MS: '120000',
      PIXTABLE_REQUEST_TIMEOUT_MS: '180000',
      PIXTABLE_LOG_REQUESTS: 'false',
      PIXTABLE_LOG_LEVEL: 'warn',
    });
    let peak = 0;
    let sampler: NodeJS.Timeout | undefined;
    try {
      // warm-up: one upload of the same image loads the decoder and its allocator arenas
      assert.equal(await upload(child.url, 'warm.png', file), 201, child.output());
      await new Promise((r) => setTimeout(r, 500));
      const base = memory(child.pid);
      peak = base.rss;
      sampler = setInterval(() => {
        peak = Math.max(peak, memory(child.pid).rss);
      }, 20);
      const t0 = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: UPLOADS }, (_, i) => upload(child.url, `many/${i}.png`, file)),
      );
      const seconds = (Date.now() - t0) / 1000;
      clearInterval(sampler);
      sampler = undefined;
      const after = memory(child.pid);
      peak = Math.max(peak, after.rss);
      assert.deepEqual(
        statuses,
        Array(UPLOADS).fill(201),
        `every upload accepted and stored\n${child.output().slice(-2000)}`,
      );
      const rise = (peak - base.rss) / MiB;
      t.diagnostic(
        `${UPLOADS} × ${(size / MiB).toFixed(1)} MiB in ${seconds.toFixed(1)} s: RSS ${(base.rss / MiB).toFixed(0)} MiB before, ` +
          `peak ${(peak / MiB).toFixed(0)} MiB (+${rise.toFixed(0)} MiB), ${(after.rss / MiB).toFixed(0)} MiB after; ` +
          `VmHWM ${(base.hwm / MiB).toFixed(0)} → ${(after.hwm / MiB).toFixed(0)} MiB`,
      );
      assert.ok(rise < TARGET_MIB, `RSS rose by ${rise.toFixed(0)} MiB`);
      assert.ok(
        (after.hwm - base.hwm) / MiB < TARGET_MIB,
        `VmHWM rose by ${((after.hwm - base.hwm) / MiB).toFixed(0)} MiB`,
      );
      assert.deepEqual(fs.readdirSync(path.join(dir, 'storage', 'sources', '.tmp')), []);
    } finally {
      if (sampler) clearInterval(sampler);
      child.proc.kill('SIGTERM');
      await child.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
