// The shared corpus (../shared/corpus beside the repository) uploaded through PUT: `ok` files serve
// pixels and thumbnails of the right size, `error` files get a 4xx JSON error, and the server is
// alive and answering after all of them. Skipped (with the reason) when the corpus is not there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { start, request } from '../http/net-helpers.js';
import { requireComponentIn } from '../helpers/requires.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const corpus = path.resolve(repo, '../shared/corpus');

interface Entry {
  file: string;
  expect: 'ok' | 'error';
  width: number | null;
  height: number | null;
  orientation: number | null;
}

const BOX = 96;
/** Real size of an `inside` entry: oriented source scaled into the box, never enlarged. */
function insideSize(w: number, h: number): [number, number] {
  const s = Math.min(1, BOX / w, BOX / h);
  return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s))];
}

test('corpus through PUT: ok files serve right-sized pixels and thumbnails, broken ones get 4xx JSON', async (t) => {
  const manifestFile = path.join(corpus, 'manifest.json');
  if (!requireComponentIn(t, 'the image corpus', fs.existsSync(manifestFile), `no ${manifestFile}`)) {
    return;
  }
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Entry[];
  const s = await start({
    formats: [
      { name: 'cover', width: 64, height: 64, fit: 'cover' },
      { name: 'box', width: BOX, height: BOX, fit: 'inside' },
    ],
  });
  const problems: string[] = [];
  let served = 0;
  let refused = 0;
  try {
    for (const e of manifest) {
      const key = `corpus/${encodeURIComponent(e.file)}`;
      const body = fs.readFileSync(path.join(corpus, e.file));
      const put = await request(s.url, `/v1/sources/${key}`, { method: 'PUT', body });
      if (e.expect === 'error') {
        let code = '';
        try {
          code = (JSON.parse(put.body.toString()) as { error: { code: string } }).error.code;
        } catch {
          code = `(not JSON: ${put.body.toString().slice(0, 60)})`;
        }
        if (put.status < 400 || put.status >= 500 || !/^[A-Z_]+$/.test(code)) {
          problems.push(`${e.file}: expected 4xx JSON, got ${put.status} ${code}`);
        } else refused++;
        continue;
      }
      if (put.status !== 201) {
        problems.push(`${e.file}: PUT ${put.status} ${put.body.toString().slice(0, 200)}`);
        continue;
      }
      const cover = await request(s.url, `/v1/pixels/cover/${key}`);
      if (
        cover.status !== 200 ||
        cover.headers['x-image-width'] !== '64' ||
        cover.headers['x-image-height'] !== '64'
      ) {
        problems.push(
          `${e.file}: cover pixels ${cover.status} ${cover.headers['x-image-width']}x${cover.headers['x-image-height']}`,
        );
      }
      const swap = (e.orientation ?? 1) >= 5;
      const [ow, oh] = swap ? [e.height!, e.width!] : [e.width!, e.height!];
      const [ew, eh] = insideSize(ow, oh);
      const box = await request(s.url, `/v1/pixels/box/${key}`);
      const bw = Number(box.headers['x-image-width']);
      const bh = Number(box.headers['x-image-height']);
      // libvips rounds the scaled side its own way: allow one pixel
      if (box.status !== 200 || Math.abs(bw - ew) > 1 || Math.abs(bh - eh) > 1) {
        problems.push(`${e.file}: box pixels ${box.status} ${bw}x${bh}, expected about ${ew}x${eh}`);
      }
      const thumb = await request(s.url, `/v1/thumbnails/box/${key}?type=webp`);
      if (thumb.status !== 200) {
        problems.push(`${e.file}: thumbnail ${thumb.status}`);
      } else {
        const m = await sharp(thumb.body).metadata();
        if (m.format !== 'webp' || m.width !== bw || m.height !== bh) {
          problems.push(`${e.file}: thumbnail ${m.format} ${m.width}x${m.height}, pixels ${bw}x${bh}`);
        } else served++;
      }
    }
    // still alive and serving
    assert.equal((await request(s.url, '/healthz')).status, 200);
    const ok = manifest.find((e) => e.expect === 'ok')!;
    assert.equal(
      (await request(s.url, `/v1/pixels/cover/corpus/${encodeURIComponent(ok.file)}`)).status,
      200,
    );
    assert.equal(
      s.cache.stats().formats.reduce((n, f) => n + f.pinned, 0),
      0,
    );
  } finally {
    await s.done();
  }
  assert.deepEqual(problems, []);
  assert.equal(served, manifest.filter((e) => e.expect === 'ok').length, 'every ok file served');
  assert.equal(refused, manifest.filter((e) => e.expect === 'error').length);
  t.diagnostic(`${served} files served, ${refused} refused with 4xx`);
});
