// The web page in a real browser (Debian's Chromium driven by playwright-core): the gallery shows
// every stored image through /v1/thumbnails, and the viewer paints entries from raw pixel
// rectangles onto a canvas whose pixels, read back with getImageData, equal the table's pixels —
// for rgba8 and for the formats the page must convert (bgra8-premultiplied, gray8, rgb565).
// On a 1280 px screen the gallery has the page's width, thumbnails load lazily, the viewer opens
// inside the window wherever the page is scrolled, uploads report one line per file (failures
// first) and never replace an existing key unasked, sources can be deleted, and the page has an
// icon.
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
import { sourceTypes } from '../../src/native/sharp.js';
import { rmrf, tempDir } from './cli-fixtures.js';
import { requireComponent } from '../helpers/requires.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = requireComponent(
  'Chromium',
  fs.existsSync(CHROMIUM),
  `${CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it when it can)`,
);

const ARTIFACTS = path.resolve(process.cwd(), 'test-artifacts');
/** The screen of the report: a 1280 px laptop. */
const VIEWPORT = { width: 1280, height: 800 };

/** The element's box in the window's coordinates. */
async function box(page: Page, selector: string) {
  return page.$eval(selector, (e) => {
    const r = e.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width };
  });
}

async function assertInWindow(page: Page, selector: string): Promise<void> {
  const b = await box(page, selector);
  assert.ok(
    b.left >= 0 && b.top >= 0 && b.right <= VIEWPORT.width && b.bottom <= VIEWPORT.height,
    `${selector} lies inside the ${VIEWPORT.width}×${VIEWPORT.height} window: ${JSON.stringify(b)}`,
  );
}

/** Opens `key` in the viewer from its thumbnail (closing a viewer already open first). */
async function openFromGallery(page: Page, key: string): Promise<void> {
  await closeViewer(page);
  await page.click(`#gallery figure[data-key="${key}"] img`);
  await page.waitForSelector('#viewer-dialog[open]');
}

/** Chooses one file in "Add images"; returns the report's lines as [outcome, key]. */
async function uploadOne(page: Page, name: string, buffer: Buffer, nth: number): Promise<string[][]> {
  await page.setInputFiles('#upload', [{ name, mimeType: 'image/png', buffer }]);
  await page.waitForSelector(`body[data-uploaded="${nth}"]`, { timeout: 30_000 });
  return page.$$eval('#upload-list li', (l) =>
    l.map((li) => [li.className, (li as HTMLElement).dataset.key ?? '']),
  );
}

async function closeViewer(page: Page): Promise<void> {
  if (await page.$('#viewer-dialog[open]')) {
    await page.click('#viewer-close');
    await page.waitForSelector('#viewer-dialog:not([open])', { state: 'attached' });
  }
}

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
    page = await browser.newPage({ viewport: { width: VIEWPORT.width, height: VIEWPORT.height } });
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
    // The gallery has the window's width, not a column beside an empty viewer.
    const gallery = await box(page, '#gallery-section');
    assert.ok(gallery.width >= 0.9 * VIEWPORT.width, `gallery is ${gallery.width} px of ${VIEWPORT.width}`);
    assert.ok(
      (await page.$$eval('#gallery img', (l) => l.map((i) => (i as HTMLImageElement).loading))).every(
        (l) => l === 'lazy',
      ),
      'thumbnails are lazy-loaded',
    );
  });

  it('shows each image’s ThumbHash placeholder while its thumbnail loads, then the thumbnail', async () => {
    // thumbnails held back until the placeholders are checked: this is what a slow miss looks like
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route('**/v1/thumbnails/**', async (route) => {
      await held;
      await route.continue();
    });
    try {
      await page.goto(`${url}/`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
      await page.waitForFunction(
        (n) => document.querySelectorAll('#gallery img[data-placeholder="thumbhash"]').length === n,
        keys.length,
        { timeout: 20_000 },
      );
      const shown = await page.$$eval('#gallery img', (list) =>
        list.map((i) => ({
          loaded: (i as HTMLImageElement).dataset.loaded ?? null,
          bg: getComputedStyle(i).backgroundImage,
        })),
      );
      for (const [i, s] of shown.entries()) {
        assert.equal(s.loaded, null, `${keys[i]}: the thumbnail is still held back`);
        assert.match(s.bg, /^url\("data:image\/png;base64,/, `${keys[i]}: a rendered ThumbHash is painted`);
      }
      // the painted placeholder is the server's: rendered by thumbhash in the page, its average
      // colour is the one /v1/info's hash carries (thumbHashToAverageRGBA), within 3/255
      const [first] = await page.$$eval('#gallery img', (l) =>
        l.map((i) => getComputedStyle(i).backgroundImage),
      );
      const dataUrl = /^url\("(.*)"\)$/.exec(first!)![1]!;
      const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const mean = [0, 1, 2].map((c) => {
        let sum = 0;
        for (let p = c; p < data.length; p += 3) sum += data[p]!;
        return sum / (info.width * info.height);
      });
      const { thumbHashToAverageRGBA } = await import('thumbhash');
      const infoBody = (await (await fetch(`${url}/v1/info/${keys[0]}`)).json()) as {
        placeholder: { thumbHash: string };
      };
      const avg = thumbHashToAverageRGBA(Buffer.from(infoBody.placeholder.thumbHash, 'base64'));
      [avg.r, avg.g, avg.b].forEach((v, c) =>
        assert.ok(Math.abs(v * 255 - mean[c]!) <= 3, `channel ${c}: ${v * 255} vs ${mean[c]}`),
      );
    } finally {
      release();
    }
    await page.waitForFunction(
      (n) =>
        Array.from(document.querySelectorAll('#gallery img')).filter(
          (i) => (i as HTMLImageElement).dataset.loaded === 'true',
        ).length === n,
      keys.length,
      { timeout: 20_000 },
    );
    await page.unroute('**/v1/thumbnails/**');
    const after = await page.$$eval('#gallery img', (l) => l.map((i) => getComputedStyle(i).backgroundImage));
    for (const bg of after) assert.doesNotMatch(bg, /data:image\/png/, 'loaded, the placeholder is gone');
  });

  it('has an icon, and offers for upload only the types that decode here', async () => {
    const icon = await page.evaluate(async () => {
      const r = await fetch('/favicon.ico');
      return {
        status: r.status,
        type: r.headers.get('content-type'),
        bytes: (await r.arrayBuffer()).byteLength,
      };
    });
    assert.equal(icon.status, 200);
    assert.equal(icon.type, 'image/x-icon');
    assert.ok(icon.bytes > 100);
    assert.equal(await page.getAttribute('link[rel="icon"]', 'href'), '/favicon.ico');
    const accept = ((await page.getAttribute('#upload', 'accept')) ?? '').split(',');
    const offered = (await sourceTypes()).flatMap((t) => [...t.mime, ...t.extensions]);
    assert.deepEqual(accept, offered);
    for (const t of ['.jpg', '.png', '.webp', 'image/jpeg']) assert.ok(accept.includes(t), t);
    for (const t of ['.heic', '.bmp', 'image/*']) assert.ok(!accept.includes(t), `${t} is not offered`);
  });

  it('the viewer paints preview-1024 tile by tile; canvas pixels equal the table and the HTTP raw bytes', async () => {
    const key = 'aurora.png';
    await openFromGallery(page, key);
    assert.equal(
      await page.inputValue('#viewer-format'),
      'preview-1024',
      'viewer default is the largest format',
    );
    await page.waitForSelector('#viewer[data-state="done"]', { timeout: 30_000 });
    await assertInWindow(page, '#viewer-dialog');

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
    await page.click('#viewer-dialog summary');
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
  });

  it('converts bgra8-premultiplied, gray8 and rgb565 tiles to the same pixels the table holds', async () => {
    const key = 'wide/panorama.png';
    for (const format of ['bgra-300', 'gray-240', 'r565-200']) {
      await openFromGallery(page, key);
      await page.selectOption('#tile-size', '64');
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
    await closeViewer(page);
  });

  it('a missing entry shows the error instead of a blank canvas', async () => {
    await page.evaluate(() =>
      (window as unknown as { pixtable: { openViewer(k: string): Promise<void> } }).pixtable.openViewer(
        'no/such.png',
      ),
    );
    await page.waitForSelector('#viewer[data-state="error"]', { timeout: 10_000 });
    assert.match((await page.textContent('#viewer-summary')) ?? '', /^Failed: HEAD .*: 404/);
    // Escape closes the viewer like the Close button.
    await page.keyboard.press('Escape');
    await page.waitForSelector('#viewer-dialog:not([open])', { state: 'attached' });
    assert.equal(await page.getAttribute('#viewer', 'data-state'), 'idle');
  });

  it('"Add images" reports each file on its own line, failures first; the gallery shows the new image', async () => {
    const png = await card(500, 300, 200, 'new');
    await page.setInputFiles('#upload', [
      { name: 'new upload.png', mimeType: 'image/png', buffer: png },
      { name: 'broken.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a jpeg at all') },
    ]);
    await page.waitForSelector('body[data-uploaded="1"]', { timeout: 30_000 });
    const lines = await page.$$eval('#upload-list li', (l) =>
      l.map((li) => ({ outcome: li.className, key: (li as HTMLElement).dataset.key, text: li.textContent })),
    );
    assert.deepEqual(
      lines.map((l) => [l.outcome, l.key]),
      [
        ['failed', 'broken.jpg'],
        ['stored', 'new upload.png'],
      ],
      'one line per file, the failure first',
    );
    assert.match(lines[0]!.text ?? '', /^Failedbroken\.jpg: UNSUPPORTED_IMAGE — .*not one of JPEG, PNG/);
    assert.match(lines[1]!.text ?? '', /^Storednew upload\.png: stored \(500×300, \d+ ms\)$/);
    assert.equal(await page.textContent('#upload-summary'), 'Upload: 1 of 2 stored, 1 failed.');
    assert.equal(await page.textContent('#status'), 'Upload: 1 of 2 stored, 1 failed.');
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
    // docs/screenshot.png: the gallery at full width with the upload report above it
    await page.waitForFunction(
      () =>
        Array.from(document.querySelectorAll<HTMLImageElement>('#gallery img')).every(
          (i) => i.dataset.loaded,
        ),
      undefined,
      { timeout: 15_000 },
    );
    const shot = path.join(ARTIFACTS, 'browser-gallery.png');
    await page.screenshot({ path: shot, fullPage: false });
    assert.ok(fs.statSync(shot).size > 10_000);
    if (process.env.UPDATE_SCREENSHOT)
      fs.copyFileSync(shot, path.resolve(process.cwd(), 'docs/screenshot.png'));
  });

  it('an upload never replaces an existing key unasked; a folder keeps same-named files apart', async () => {
    const before = fs.readFileSync(path.join(cache.sourcesDir, 'field.png'));
    const other = await card(320, 200, 20, 'other field');
    // Same name as an existing source, no folder, "replace existing" not ticked: left alone.
    assert.deepEqual(await uploadOne(page, 'field.png', other, 2), [['skipped', 'field.png']]);
    assert.match(
      (await page.textContent('#upload-list li')) ?? '',
      /exists; tick "replace existing" or choose a folder/,
    );
    assert.equal(
      await page.textContent('#upload-summary'),
      'Upload: 0 of 1 stored, 1 not replaced (already exist).',
    );
    assert.ok(
      fs.readFileSync(path.join(cache.sourcesDir, 'field.png')).equals(before),
      'field.png unchanged',
    );

    // Into a folder: a new key beside the old one.
    await page.fill('#upload-folder', '/uploads/');
    assert.deepEqual(await uploadOne(page, 'field.png', other, 3), [['stored', 'uploads/field.png']]);
    assert.ok(fs.readFileSync(path.join(cache.sourcesDir, 'uploads/field.png')).equals(other));
    assert.ok(
      fs.readFileSync(path.join(cache.sourcesDir, 'field.png')).equals(before),
      'field.png unchanged',
    );

    // Asked to: replaced, and said so.
    await page.fill('#upload-folder', '');
    await page.check('#upload-replace');
    await uploadOne(page, 'field.png', other, 4);
    assert.match(
      (await page.textContent('#upload-list li.stored')) ?? '',
      /^Storedfield\.png: replaced \(320×200/,
    );
    assert.ok(fs.readFileSync(path.join(cache.sourcesDir, 'field.png')).equals(other), 'replaced when asked');
    await page.uncheck('#upload-replace');
  });

  it('a source can be deleted from its thumbnail, after a confirmation', async () => {
    const key = 'uploads/field.png';
    assert.ok(await cache.has('thumb-256', key));
    // Dismissed: nothing happens.
    page.once('dialog', (d) => void d.dismiss());
    await page.click(`#gallery figure[data-key="${key}"] button.delete`);
    assert.ok(fs.existsSync(path.join(cache.sourcesDir, key)), 'kept when the confirmation is dismissed');
    let message = '';
    page.once('dialog', (d) => {
      message = d.message();
      void d.accept();
    });
    await page.click(`#gallery figure[data-key="${key}"] button.delete`);
    await page.waitForSelector('body[data-deleted="1"]', { timeout: 10_000 });
    assert.match(message, /^Delete uploads\/field\.png\?/);
    assert.equal(await page.textContent('#status'), `Deleted ${key}.`);
    assert.equal(await page.$(`#gallery figure[data-key="${key}"]`), null, 'gone from the gallery');
    assert.ok(!fs.existsSync(path.join(cache.sourcesDir, key)), 'source removed');
    assert.equal(await cache.has('thumb-256', key), false, 'entries removed');
    assert.equal(await page.$('#viewer-dialog[open]'), null, 'the delete button does not open the viewer');
  });

  it('with many sources only thumbnails near the window load; the viewer opens in the window at the bottom', async () => {
    // Written straight into sources/ (as `cp` would): nothing is decoded until a thumbnail is asked for.
    const tiny = await sharp({ create: { width: 24, height: 24, channels: 3, background: '#4a7' } })
      .png()
      .toBuffer();
    const many = Array.from({ length: 400 }, (_, i) => `many/${String(i).padStart(3, '0')}.png`);
    fs.mkdirSync(path.join(cache.sourcesDir, 'many'));
    for (const k of many) fs.writeFileSync(path.join(cache.sourcesDir, k), tiny);
    const thumbsBefore = cache.stats().formats.find((f) => f.format === 'thumb-256')!.entries;
    await page.click('#reload');
    await page.waitForFunction(
      (n) => document.querySelectorAll('#gallery figure').length === n,
      keys.length + 401,
      {
        timeout: 15_000,
      },
    );
    await page.waitForTimeout(1500);
    // Requested = loaded or failed: a lazy image not yet near the window fires neither.
    const requested = await page.$$eval(
      '#gallery figure[data-key^="many/"] img',
      (l) => l.filter((i) => (i as HTMLImageElement).dataset.loaded !== undefined).length,
    );
    assert.ok(requested > 0, 'thumbnails in view are fetched');
    assert.ok(
      requested < many.length / 2,
      `${requested} of ${many.length} thumbnails fetched before scrolling`,
    );
    const decoded = cache.stats().formats.find((f) => f.format === 'thumb-256')!.entries - thumbsBefore;
    console.log(`lazy loading: ${requested} of ${many.length} thumbnails requested, ${decoded} decoded`);
    assert.ok(decoded < many.length / 2, `${decoded} decoded before scrolling`);

    // Scrolled to the end, the last thumbnail loads, and its viewer opens inside the window.
    const last = many[many.length - 1]!;
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await page.waitForFunction(
      (k) => {
        const img = document.querySelector<HTMLImageElement>(`#gallery figure[data-key="${k}"] img`);
        return img !== null && img.dataset.loaded === 'true';
      },
      last,
      { timeout: 20_000 },
    );
    assert.ok((await page.evaluate(() => window.scrollY)) > 2 * VIEWPORT.height, 'the page is scrolled down');
    await openFromGallery(page, last);
    await page.waitForSelector('#viewer[data-state="done"]', { timeout: 20_000 });
    await assertInWindow(page, '#viewer-dialog');
    await closeViewer(page);
    await page.evaluate(() => window.scrollTo(0, 0));
  });
});
