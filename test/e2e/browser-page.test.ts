// The web page in a real browser (Debian's Chromium driven by playwright-core): the gallery shows
// every stored image through /v1/thumbnails, and the viewer paints entries from raw pixel
// rectangles onto a canvas whose pixels, read back with getImageData, equal the table's pixels —
// for rgba8 and for the formats the page must convert (bgra8-premultiplied, gray8, rgb565).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import type { Browser, Page } from 'playwright-core';
import { ImageCache, type FormatSpec } from '../../src/index.js';
import { buildApp } from '../../src/http/app.js';
import { defaultConfig } from '../../src/config/env.js';
import { rmrf, tempDir } from './cli-fixtures.js';
import { requireComponent } from '../helpers/requires.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = requireComponent(
  'Chromium',
  fs.existsSync(CHROMIUM),
  `${CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it when it can)`,
);

const ARTIFACTS = path.resolve(process.cwd(), 'test-artifacts');

const FORMATS: FormatSpec[] = [
  { name: 'thumb-256', width: 256, height: 256, fit: 'cover', family: 'web' },
  { name: 'preview-1024', width: 1024, height: 1024, fit: 'inside', family: 'web' },
  { name: 'bgra-300', width: 300, height: 200, fit: 'cover', pixelFormat: 'bgra8-premultiplied' },
  { name: 'gray-240', width: 240, height: 240, fit: 'inside', pixelFormat: 'gray8', rowAlignment: 64 },
  { name: 'r565-200', width: 200, height: 150, fit: 'cover', pixelFormat: 'rgb565' },
];

/** A colourful opaque test card (SVG rendered by libvips): every region distinct. */
function card(width: number, height: number, hue: number, label: string): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs>
      <linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
        <stop offset="0" stop-color="hsl(${hue},80%,55%)"/>
        <stop offset="1" stop-color="hsl(${(hue + 140) % 360},75%,35%)"/>
      </linearGradient>
      <radialGradient id="r" cx="0.7" cy="0.3" r="0.5">
        <stop offset="0" stop-color="hsl(${(hue + 60) % 360},95%,85%)"/>
        <stop offset="1" stop-color="hsl(${(hue + 60) % 360},95%,85%)" stop-opacity="0"/>
      </radialGradient>
    </defs>
    <rect width="100%" height="100%" fill="url(#g)"/>
    <rect width="100%" height="100%" fill="url(#r)"/>
    ${Array.from({ length: 12 }, (_, i) => `<circle cx="${(((i * 97) % 100) / 100) * width}" cy="${(((i * 61) % 100) / 100) * height}" r="${Math.min(width, height) / (6 + (i % 5))}" fill="hsl(${(hue + i * 29) % 360},70%,${40 + (i % 4) * 10}%)" fill-opacity="0.55"/>`).join('')}
    <text x="50%" y="55%" font-family="sans-serif" font-weight="bold" font-size="${Math.round(height / 7)}" text-anchor="middle" fill="white" fill-opacity="0.9">${label}</text>
  </svg>`;
  return sharp(Buffer.from(svg)).flatten({ background: '#000' }).png().toBuffer();
}

/** Straight RGBA of an entry, converted as the page must (exact for opaque images). */
function expectedRGBA(rows: Buffer[], w: number, pixelFormat: string): Buffer {
  const out = Buffer.alloc(w * rows.length * 4);
  rows.forEach((row, y) => {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 4;
      switch (pixelFormat) {
        case 'rgba8':
          row.copy(out, o, x * 4, x * 4 + 4);
          break;
        case 'bgra8-premultiplied': {
          const a = row[x * 4 + 3]!;
          const un = (c: number) => (a === 0 ? 0 : Math.min(255, Math.round((c * 255) / a)));
          out[o] = un(row[x * 4 + 2]!);
          out[o + 1] = un(row[x * 4 + 1]!);
          out[o + 2] = un(row[x * 4]!);
          out[o + 3] = a;
          break;
        }
        case 'gray8':
          out[o] = out[o + 1] = out[o + 2] = row[x]!;
          out[o + 3] = 255;
          break;
        case 'rgb565': {
          const v = row[x * 2]! | (row[x * 2 + 1]! << 8);
          const r = v >> 11;
          const g = (v >> 5) & 63;
          const b = v & 31;
          out[o] = (r << 3) | (r >> 2);
          out[o + 1] = (g << 2) | (g >> 4);
          out[o + 2] = (b << 3) | (b >> 2);
          out[o + 3] = 255;
          break;
        }
        default:
          throw new Error(`no expectation for ${pixelFormat}`);
      }
    }
  });
  return out;
}

/** The canvas's pixels in a rectangle, read back in the page (base64 of getImageData). */
async function canvasPixels(page: Page, x: number, y: number, w: number, h: number): Promise<Buffer> {
  const b64 = await page.evaluate(
    ([x, y, w, h]) => {
      const c = document.getElementById('viewer') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(x!, y!, w!, h!).data;
      let s = '';
      for (let i = 0; i < d.length; i += 0x8000) {
        s += String.fromCharCode(...d.subarray(i, Math.min(d.length, i + 0x8000)));
      }
      return btoa(s);
    },
    [x, y, w, h],
  );
  return Buffer.from(b64, 'base64');
}

describe('web page in Chromium', { skip }, () => {
  let root: string;
  let cache: ImageCache;
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let page: Page;
  const keys = ['aurora.png', 'city/night.png', 'city/noon.png', 'field.png', 'wide/panorama.png'];

  before(async () => {
    root = tempDir('pixtable-browser-');
    const storage = path.join(root, 'storage');
    cache = await ImageCache.open({ storage, formats: FORMATS, sync: 'none' });
    const sizes: [number, number][] = [
      [1600, 1000],
      [900, 1200],
      [1200, 900],
      [640, 480],
      [2400, 800],
    ];
    for (let i = 0; i < keys.length; i++) {
      const [w, h] = sizes[i]!;
      await cache.put(keys[i]!, await card(w, h, i * 67, keys[i]!.replace(/\.png$/, '')));
    }
    app = await buildApp({
      cache,
      config: defaultConfig({ storage, port: 0, logLevel: 'silent', logRequests: false }),
      logger: false,
    });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    await app?.close();
    await cache?.close();
    if (root) rmrf(root);
  });

  it('the gallery shows every stored image through the thumbnail endpoint', async () => {
    const res = await page.goto(`${url}/`);
    assert.equal(res?.status(), 200);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    assert.deepEqual(await page.$$eval('#gallery figure.thumb', (f) => f.map((x) => x.dataset.key)), keys);
    await page.waitForFunction(
      (n) =>
        Array.from(document.querySelectorAll('#gallery img')).filter(
          (i) => (i as HTMLImageElement).dataset.loaded,
        ).length === n,
      keys.length,
      { timeout: 20_000 },
    );
    const imgs = await page.$$eval('#gallery img', (list) =>
      list.map((i) => ({
        loaded: (i as HTMLImageElement).dataset.loaded,
        w: (i as HTMLImageElement).naturalWidth,
        h: (i as HTMLImageElement).naturalHeight,
        src: (i as HTMLImageElement).getAttribute('src'),
      })),
    );
    for (const [i, img] of imgs.entries()) {
      assert.equal(img.loaded, 'true', `${keys[i]} thumbnail did not load`);
      assert.deepEqual([img.w, img.h], [256, 256], 'gallery default is thumb-256 (cover)');
      assert.equal(img.src, `/v1/thumbnails/thumb-256/${keys[i]}`);
    }
    assert.match((await page.textContent('#status')) ?? '', /^5 sources, 5 formats\./);
  });

  it('the viewer paints preview-1024 tile by tile; canvas pixels equal the table and the HTTP raw bytes', async () => {
    const key = 'aurora.png';
    assert.equal(
      await page.inputValue('#viewer-format'),
      'preview-1024',
      'viewer default is the largest format',
    );
    await page.click(`#gallery figure[data-key="${key}"]`);
    await page.waitForSelector('#viewer[data-state="done"]', { timeout: 30_000 });

    const view = await cache.get('preview-1024', key);
    try {
      assert.deepEqual([view.width, view.height], [1024, 640]);
      const size = await page.$eval('#viewer', (c) => [
        (c as HTMLCanvasElement).width,
        (c as HTMLCanvasElement).height,
      ]);
      assert.deepEqual(size, [1024, 640]);
      assert.equal(await page.getAttribute('#viewer', 'data-tiles'), String(8 * 5));
      // The whole canvas, and a rectangle that straddles tile boundaries.
      const all = await canvasPixels(page, 0, 0, 1024, 640);
      assert.ok(
        all.equals(Buffer.concat(view.rows(0, 0, 1024, 640))),
        'canvas differs from the table pixels',
      );
      const [x, y, w, h] = [100, 90, 300, 200];
      const rect = await canvasPixels(page, x, y, w, h);
      const table = Buffer.concat(view.rows(x, y, w, h));
      assert.ok(rect.equals(table), 'canvas rectangle differs from the table pixels');
      const http = Buffer.from(
        await (await fetch(`${url}/v1/pixels/preview-1024/${key}?rect=${x},${y},${w},${h}`)).arrayBuffer(),
      );
      assert.ok(rect.equals(http), 'canvas rectangle differs from the HTTP raw bytes');
    } finally {
      view.release();
    }
    // One HEAD plus one GET per tile, each logged with its time and bytes.
    const rows = await page.$$eval('#requests tbody tr', (trs) =>
      trs.map((tr) => Array.from(tr.children).map((td) => td.textContent ?? '')),
    );
    const gets = rows.filter((r) => r[1]!.startsWith('GET rect='));
    assert.equal(gets.length, 40);
    for (const r of gets) {
      assert.equal(r[2], '200');
      assert.ok(Number(r[3]) >= 0);
      const [, , , tw, th] = /rect=(\d+),(\d+),(\d+),(\d+)/.exec(r[1]!)!.map(Number);
      assert.equal(Number(r[4]), tw! * th! * 4, `bytes of ${r[1]}`);
    }
    assert.equal(rows.filter((r) => r[1]!.startsWith('HEAD ')).length, 1);
    assert.match(
      (await page.textContent('#viewer-summary')) ?? '',
      /^40\/40 tiles, 2\.50 MiB of raw pixels in \d+ ms/,
    );

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'browser-page.png');
    await page.screenshot({ path: shot, fullPage: false });
    assert.ok(fs.statSync(shot).size > 10_000);
    if (process.env.UPDATE_SCREENSHOT)
      fs.copyFileSync(shot, path.resolve(process.cwd(), 'docs/screenshot.png'));
  });

  it('converts bgra8-premultiplied, gray8 and rgb565 tiles to the same pixels the table holds', async () => {
    const key = 'wide/panorama.png';
    for (const format of ['bgra-300', 'gray-240', 'r565-200']) {
      await page.selectOption('#tile-size', '64');
      await page.click(`#gallery figure[data-key="${key}"]`);
      await page.selectOption('#viewer-format', format);
      await page.waitForFunction(
        (f) => {
          const c = document.getElementById('viewer')!;
          return c.dataset.format === f && c.dataset.state === 'done';
        },
        format,
        { timeout: 20_000 },
      );
      const view = await cache.get(format, key);
      try {
        const got = await canvasPixels(page, 0, 0, view.width, view.height);
        const want = expectedRGBA(view.rows(0, 0, view.width, view.height), view.width, view.pixelFormat);
        assert.equal(got.length, want.length, format);
        assert.ok(got.equals(want), `${format}: canvas differs from the converted table pixels`);
      } finally {
        view.release();
      }
    }
    await page.selectOption('#tile-size', '128');
  });

  it('a missing entry shows the error instead of a blank canvas', async () => {
    await page.evaluate(() =>
      (window as unknown as { pixtable: { openViewer(k: string): Promise<void> } }).pixtable.openViewer(
        'no/such.png',
      ),
    );
    await page.waitForSelector('#viewer[data-state="error"]', { timeout: 10_000 });
    assert.match((await page.textContent('#viewer-summary')) ?? '', /^Failed: HEAD .*: 404/);
  });

  it('"Add images" uploads through PUT; the gallery shows the new image and a broken file its error', async () => {
    const png = await card(500, 300, 200, 'new');
    await page.setInputFiles('#upload', [
      { name: 'new upload.png', mimeType: 'image/png', buffer: png },
      { name: 'broken.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a jpeg at all') },
    ]);
    await page.waitForSelector('body[data-uploaded="1"]', { timeout: 30_000 });
    const status = (await page.textContent('#status')) ?? '';
    assert.match(status, /new upload\.png: stored \(500×300, \d+ ms\)/);
    assert.match(status, /broken\.jpg: UNSUPPORTED_IMAGE — /);
    assert.deepEqual(
      await page.$$eval('#gallery figure.thumb', (f) => f.map((x) => x.dataset.key)),
      [...keys, 'new upload.png'].sort(),
    );
    assert.ok(fs.readFileSync(path.join(cache.sourcesDir, 'new upload.png')).equals(png), 'stored as sent');
    assert.ok(!fs.existsSync(path.join(cache.sourcesDir, 'broken.jpg')), 'the broken file was not stored');
    await page.waitForFunction(
      () => {
        const img = document.querySelector<HTMLImageElement>(
          '#gallery figure[data-key="new upload.png"] img',
        );
        return img !== null && img.complete && img.naturalWidth > 0;
      },
      undefined,
      { timeout: 15_000 },
    );
  });
});
