// pixtable web page: a gallery of the sources (through /v1/thumbnails) and a viewer that paints
// an entry onto a <canvas> from raw pixel rectangles (/v1/pixels/...?rect=x,y,w,h), tile by
// tile, converting each tile's pixel format to the straight RGBA that ImageData wants. Every
// request is timed and its bytes counted, so a person sees what the cache serves. No framework.

const $ = (id) => document.getElementById(id);

const state = {
  formats: [],
  keys: [],
  /** bumps whenever the viewer starts over, so tiles of an older run are dropped */
  run: 0,
  requestNo: 0,
};

/** Tiles fetched at once (browsers allow 6 connections per host; leave room for thumbnails). */
const TILE_CONCURRENCY = 4;
const MAX_LOG_ROWS = 300;

const BYTES_PER_PIXEL = {
  rgba8: 4,
  'rgba8-premultiplied': 4,
  'bgra8-premultiplied': 4,
  rgbx8: 4,
  rgb8: 3,
  gray8: 1,
  rgb565: 2,
};

/** Keys are paths: encode each segment, keep the slashes. */
export function keyPath(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function unpremultiply(c, a) {
  return a === 0 ? 0 : Math.min(255, Math.round((c * 255) / a));
}

/**
 * Converts `w`×`h` tightly packed pixels of `pixelFormat` into straight RGBA for ImageData.
 * rgba8 is used as is (no copy).
 */
export function toRGBA(bytes, w, h, pixelFormat) {
  const n = w * h;
  const src = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bpp = BYTES_PER_PIXEL[pixelFormat];
  if (bpp === undefined) throw new Error(`unknown pixel format ${pixelFormat}`);
  if (src.length !== n * bpp) {
    throw new Error(`expected ${n * bpp} bytes for ${w}x${h} ${pixelFormat}, got ${src.length}`);
  }
  if (pixelFormat === 'rgba8') return new Uint8ClampedArray(src.buffer, src.byteOffset, src.length);
  const out = new Uint8ClampedArray(n * 4);
  switch (pixelFormat) {
    case 'rgbx8':
      for (let i = 0; i < n * 4; i += 4) {
        out[i] = src[i];
        out[i + 1] = src[i + 1];
        out[i + 2] = src[i + 2];
        out[i + 3] = 255;
      }
      break;
    case 'rgba8-premultiplied':
    case 'bgra8-premultiplied': {
      const r = pixelFormat === 'bgra8-premultiplied' ? 2 : 0;
      const b = 2 - r;
      for (let i = 0; i < n * 4; i += 4) {
        const a = src[i + 3];
        out[i] = unpremultiply(src[i + r], a);
        out[i + 1] = unpremultiply(src[i + 1], a);
        out[i + 2] = unpremultiply(src[i + b], a);
        out[i + 3] = a;
      }
      break;
    }
    case 'rgb8':
      for (let i = 0, o = 0; i < n * 3; i += 3, o += 4) {
        out[o] = src[i];
        out[o + 1] = src[i + 1];
        out[o + 2] = src[i + 2];
        out[o + 3] = 255;
      }
      break;
    case 'gray8':
      for (let i = 0, o = 0; i < n; i++, o += 4) {
        out[o] = out[o + 1] = out[o + 2] = src[i];
        out[o + 3] = 255;
      }
      break;
    case 'rgb565':
      for (let i = 0, o = 0; i < n * 2; i += 2, o += 4) {
        const v = src[i] | (src[i + 1] << 8);
        const r5 = v >> 11;
        const g6 = (v >> 5) & 63;
        const b5 = v & 31;
        out[o] = (r5 << 3) | (r5 >> 2);
        out[o + 1] = (g6 << 2) | (g6 >> 4);
        out[o + 2] = (b5 << 3) | (b5 >> 2);
        out[o + 3] = 255;
      }
      break;
  }
  return out;
}

/** Rectangles of at most `tile`×`tile` covering w×h, row by row (top first: the image fills down). */
export function tiles(w, h, tile) {
  const out = [];
  for (let y = 0; y < h; y += tile) {
    for (let x = 0; x < w; x += tile) out.push({ x, y, w: Math.min(tile, w - x), h: Math.min(tile, h - y) });
  }
  return out;
}

async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!res.ok) {
    let msg = `${res.status}`;
    try {
      const body = await res.json();
      if (body && body.error) msg = `${body.error.code}: ${body.error.message}`;
    } catch {
      // not JSON
    }
    throw new Error(`GET ${url} failed (${msg})`);
  }
  return res.json();
}

function setStatus(text) {
  $('status').textContent = text;
}

function fillSelect(select, formats, preferred) {
  select.replaceChildren(
    ...formats.map((f) => {
      const o = document.createElement('option');
      o.value = f.name;
      o.textContent = `${f.name} (${f.width}×${f.height} ${f.fit}, ${f.pixelFormat})`;
      return o;
    }),
  );
  if (preferred) select.value = preferred.name;
}

/** Gallery default: thumb-256 (a built-in format) if configured, else the smallest square-ish
 *  cover format at least 128 px wide, else the largest. */
function galleryDefault(formats) {
  const named = formats.find((f) => f.name === 'thumb-256');
  if (named) return named;
  const area = (f) => f.width * f.height;
  const cover = formats.filter((f) => f.fit === 'cover' && f.width >= 128).sort((a, b) => area(a) - area(b));
  return cover[0] ?? [...formats].sort((a, b) => area(b) - area(a))[0];
}

/** Viewer default: the largest format (where tiling shows). */
function viewerDefault(formats) {
  return [...formats].sort((a, b) => b.width * b.height - a.width * a.height)[0];
}

function resourceTiming(url) {
  const entries = performance.getEntriesByName(url);
  return entries[entries.length - 1];
}

let thumbhash;

// Placeholders only for thumbnails near the window, like the lazy thumbnails themselves: asking
// /v1/info for every key of a long gallery at once would hold the connections the visible
// thumbnails need.
const placeholderWatch = new IntersectionObserver(
  (seen) => {
    for (const e of seen) {
      if (!e.isIntersecting) continue;
      placeholderWatch.unobserve(e.target);
      void showPlaceholder(e.target, e.target.closest('figure').dataset.key);
    }
  },
  { rootMargin: '200px' },
);

/**
 * Paints the key's ThumbHash (from /v1/info, which never decodes) behind its thumbnail until the
 * thumbnail has loaded, rendered by thumbhash's own module the server serves. Nothing when the
 * key has no placeholder yet (not decoded) or the thumbnail came first.
 */
async function showPlaceholder(img, key) {
  try {
    const res = await fetch(`/v1/info/${keyPath(key)}`);
    if (!res.ok) return;
    const { placeholder } = await res.json();
    if (!placeholder || img.dataset.loaded) return;
    thumbhash ??= import('/web/thumbhash.js');
    const { thumbHashToDataURL } = await thumbhash;
    const bytes = Uint8Array.from(atob(placeholder.thumbHash), (c) => c.charCodeAt(0));
    if (img.dataset.loaded) return;
    img.style.background = `${placeholder.dominantColor} center / cover no-repeat url(${thumbHashToDataURL(bytes)})`;
    img.dataset.placeholder = 'thumbhash';
  } catch {
    // a placeholder is a nicety: the thumbnail still loads
  }
}

function renderGallery() {
  const format = $('gallery-format').value;
  const gallery = $('gallery');
  $('source-count').textContent = `(${state.keys.length})`;
  $('gallery-empty').hidden = state.keys.length > 0;
  const selected = $('viewer').dataset.key;
  // the figures are replaced: stop watching the old ones
  placeholderWatch.disconnect();
  gallery.replaceChildren(
    ...state.keys.map((key) => {
      const fig = document.createElement('figure');
      fig.className = 'thumb';
      fig.dataset.key = key;
      fig.tabIndex = 0;
      if (key === selected) fig.classList.add('selected');
      const img = document.createElement('img');
      img.alt = key;
      img.decoding = 'async';
      // Only thumbnails near the window are fetched (each may be a decode on the server).
      img.loading = 'lazy';
      img.width = img.height = 256;
      const cap = document.createElement('figcaption');
      const name = document.createElement('span');
      name.textContent = key;
      const timing = document.createElement('span');
      timing.className = 'timing';
      timing.textContent = 'loading…';
      cap.append(name, timing);
      img.addEventListener('load', () => {
        img.dataset.loaded = 'true';
        // back to the stylesheet's transparency checkerboard
        img.style.background = '';
        const t = resourceTiming(img.src);
        const size = t && t.encodedBodySize ? `, ${formatBytes(t.encodedBodySize)}` : '';
        timing.textContent = `${img.naturalWidth}×${img.naturalHeight}${t ? `, ${t.duration.toFixed(1)} ms` : ''}${size}`;
      });
      img.addEventListener('error', () => {
        img.dataset.loaded = 'error';
        fig.classList.add('failed');
        timing.textContent = 'thumbnail failed (see /v1/thumbnails response)';
      });
      img.src = `/v1/thumbnails/${encodeURIComponent(format)}/${keyPath(key)}`;
      placeholderWatch.observe(img);
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = 'Delete';
      del.setAttribute('aria-label', `Delete ${key}`);
      del.addEventListener('click', (e) => {
        e.stopPropagation();
        deleteSource(key);
      });
      fig.append(img, cap, del);
      const open = () => openViewer(key);
      fig.addEventListener('click', open);
      fig.addEventListener('keydown', (e) => {
        if (e.target !== fig) return;
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          open();
        }
      });
      return fig;
    }),
  );
}

function logRequest(entry) {
  const tbody = $('requests').tBodies[0];
  const tr = document.createElement('tr');
  const cells = [
    String(++state.requestNo),
    `${entry.method} ${entry.label}`,
    String(entry.status),
    entry.ms.toFixed(1),
    String(entry.bytes),
  ];
  cells.forEach((text, i) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (i >= 3) td.className = 'num';
    tr.append(td);
  });
  tbody.prepend(tr);
  while (tbody.rows.length > MAX_LOG_ROWS) tbody.deleteRow(tbody.rows.length - 1);
}

/** fetch + arrayBuffer, timed end to end (request sent → last byte read). */
async function timedFetch(url, method, label) {
  const t0 = performance.now();
  const res = await fetch(url, { method, cache: 'no-store' });
  const body = method === 'HEAD' ? new ArrayBuffer(0) : await res.arrayBuffer();
  const ms = performance.now() - t0;
  logRequest({ method, label, status: res.status, ms, bytes: body.byteLength });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      const err = JSON.parse(new window.TextDecoder().decode(body));
      if (err && err.error) msg = `${err.error.code}: ${err.error.message}`;
    } catch {
      // not JSON (or HEAD)
    }
    throw new Error(`${method} ${label}: ${msg}`);
  }
  return { res, body, ms };
}

function header(res, name) {
  const v = res.headers.get(name);
  if (v === null) throw new Error(`response has no ${name} header`);
  return v;
}

async function openViewer(key) {
  const run = ++state.run;
  const format = $('viewer-format').value;
  const tile = Number($('tile-size').value);
  const canvas = $('viewer');
  const base = `/v1/pixels/${encodeURIComponent(format)}/${keyPath(key)}`;
  for (const fig of $('gallery').children) fig.classList.toggle('selected', fig.dataset.key === key);
  const dialog = $('viewer-dialog');
  if (!dialog.open) dialog.showModal();
  $('viewer-title').textContent = key;
  canvas.dataset.key = key;
  canvas.dataset.format = format;
  canvas.dataset.state = 'loading';
  delete canvas.dataset.error;
  $('viewer-summary').textContent = '';
  if (location.hash !== `#${format}/${key}`) window.history.replaceState(null, '', `#${format}/${key}`);
  const started = performance.now();
  try {
    // HEAD: the entry's real size and pixel format (inside-fit entries are smaller than the box).
    const head = await timedFetch(base, 'HEAD', `${format}/${key}`);
    if (run !== state.run) return;
    const width = Number(header(head.res, 'X-Image-Width'));
    const height = Number(header(head.res, 'X-Image-Height'));
    const pixelFormat = header(head.res, 'X-Pixel-Format');
    const stride = head.res.headers.get('X-Row-Stride');
    $('viewer-meta').textContent =
      `${format}: ${width}×${height} ${pixelFormat}, row stride ${stride} B; ` +
      `painting ${tile}×${tile} tiles from raw rectangles`;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.clearRect(0, 0, width, height);
    const queue = tiles(width, height, tile);
    canvas.dataset.tiles = String(queue.length);
    let done = 0;
    let bytes = 0;
    let requestMs = 0;
    const summary = (final) => {
      const wall = performance.now() - started;
      $('viewer-summary').textContent =
        `${done}/${queue.length} tiles, ${formatBytes(bytes)} of raw pixels in ${wall.toFixed(0)} ms` +
        ` (${((bytes * 1000) / Math.max(wall, 1) / 1024 / 1024).toFixed(1)} MiB/s; ` +
        `mean ${(requestMs / Math.max(done, 1)).toFixed(1)} ms per request, ${TILE_CONCURRENCY} at once)` +
        (final ? '' : '…');
    };
    let next = 0;
    const worker = async () => {
      while (next < queue.length && run === state.run) {
        const t = queue[next++];
        const rect = `${t.x},${t.y},${t.w},${t.h}`;
        const r = await timedFetch(`${base}?rect=${rect}`, 'GET', `rect=${rect}`);
        if (run !== state.run) return;
        const w = Number(header(r.res, 'X-Image-Width'));
        const h = Number(header(r.res, 'X-Image-Height'));
        const pf = header(r.res, 'X-Pixel-Format');
        const rgba = toRGBA(new Uint8Array(r.body), w, h, pf);
        ctx.putImageData(new ImageData(rgba, w, h), t.x, t.y);
        done++;
        bytes += r.body.byteLength;
        requestMs += r.ms;
        summary(false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(TILE_CONCURRENCY, queue.length) }, worker));
    if (run !== state.run) return;
    summary(true);
    canvas.dataset.state = 'done';
  } catch (e) {
    if (run !== state.run) return;
    canvas.dataset.state = 'error';
    canvas.dataset.error = String(e.message ?? e);
    $('viewer-summary').textContent = `Failed: ${e.message ?? e}`;
  }
}

/** Closing stops the tiles still being fetched and forgets the viewer's place in the URL. */
function closeViewer() {
  state.run++;
  const canvas = $('viewer');
  delete canvas.dataset.key;
  canvas.dataset.state = 'idle';
  if (location.hash) window.history.replaceState(null, '', location.pathname + location.search);
  const dialog = $('viewer-dialog');
  if (dialog.open) dialog.close();
}

/** DELETE /v1/sources/<key> (its entries in every format go with it), after asking. */
async function deleteSource(key) {
  if (!window.confirm(`Delete ${key}? Its source file and its entries in every format are removed.`)) return;
  let message;
  try {
    const res = await fetch(`/v1/sources/${keyPath(key)}`, { method: 'DELETE' });
    if (res.ok) message = `Deleted ${key}.`;
    else {
      const body = await res.json().catch(() => ({}));
      message = `Could not delete ${key}: ${body.error?.code ?? res.status} — ${body.error?.message ?? res.statusText}`;
    }
  } catch (e) {
    message = `Could not delete ${key}: ${e.message ?? e}`;
  }
  await load();
  setStatus(message);
  document.body.dataset.deleted = String(Number(document.body.dataset.deleted ?? 0) + 1);
}

async function load() {
  setStatus('Loading formats and sources…');
  try {
    const [formats, sources] = await Promise.all([getJson('/v1/formats'), getJson('/v1/sources')]);
    state.formats = formats;
    state.keys = sources.keys ?? [];
    const g = $('gallery-format');
    const v = $('viewer-format');
    const keepG = formats.find((f) => f.name === g.value);
    const keepV = formats.find((f) => f.name === v.value);
    fillSelect(g, formats, keepG ?? galleryDefault(formats));
    fillSelect(v, formats, keepV ?? viewerDefault(formats));
    renderGallery();
    setStatus(
      `${state.keys.length} source${state.keys.length === 1 ? '' : 's'}, ${formats.length} formats. ` +
        'Click an image to paint it from raw pixel rectangles.',
    );
    document.body.dataset.ready = 'true';
    const m = /^#([^/]+)\/(.+)$/.exec(decodeURIComponent(location.hash));
    if (m && formats.some((f) => f.name === m[1]) && state.keys.includes(m[2])) {
      v.value = m[1];
      openViewer(m[2]);
    }
  } catch (e) {
    setStatus(`Could not load: ${e.message ?? e}`);
    document.body.dataset.ready = 'error';
  }
}

/** The key a file is uploaded as: the folder typed in (slashes trimmed), then its name. */
export function uploadKey(folder, fileName) {
  const dir = folder.trim().replace(/^\/+|\/+$/g, '');
  return dir ? `${dir}/${fileName}` : fileName;
}

const OUTCOME_ORDER = { failed: 0, skipped: 1, stored: 2 };

/** One line per file, failures first, then files left alone, then what was stored. */
function showUploadResults(results) {
  const sorted = [...results].sort((a, b) => OUTCOME_ORDER[a.outcome] - OUTCOME_ORDER[b.outcome]);
  $('upload-list').replaceChildren(
    ...sorted.map((r) => {
      const li = document.createElement('li');
      li.className = r.outcome;
      li.dataset.key = r.key;
      const outcome = document.createElement('span');
      outcome.className = 'outcome';
      outcome.textContent = { failed: 'Failed', skipped: 'Not replaced', stored: 'Stored' }[r.outcome];
      li.append(outcome, `${r.key}: ${r.message}`);
      return li;
    }),
  );
  const count = (o) => results.filter((r) => r.outcome === o).length;
  const parts = [`${count('stored')} of ${results.length} stored`];
  if (count('failed')) parts.push(`${count('failed')} failed`);
  if (count('skipped')) parts.push(`${count('skipped')} not replaced (already exist)`);
  const summary = `Upload: ${parts.join(', ')}.`;
  $('upload-summary').textContent = summary;
  $('upload-results').hidden = false;
  $('upload-results').dataset.failed = String(count('failed'));
  return summary;
}

/**
 * Uploads the chosen files with PUT /v1/sources/<folder>/<file name> (the server decodes each
 * before it stores anything). A key that already exists is left alone unless "replace existing"
 * is ticked: two files called IMG_0001.JPG from two cameras must not silently become one.
 */
async function upload(files) {
  const folder = $('upload-folder').value;
  const replace = $('upload-replace').checked;
  const results = [];
  let existing;
  try {
    existing = new Set((await getJson('/v1/sources')).keys ?? []);
  } catch {
    existing = new Set(state.keys);
  }
  for (const file of files) {
    const key = uploadKey(folder, file.name);
    if (existing.has(key) && !replace) {
      results.push({
        key,
        outcome: 'skipped',
        message: 'a source with this key exists; tick "replace existing" or choose a folder',
      });
      continue;
    }
    setStatus(`Uploading ${key}…`);
    const t0 = performance.now();
    try {
      const res = await fetch(`/v1/sources/${keyPath(key)}`, { method: 'PUT', body: file });
      const body = await res.json().catch(() => ({}));
      const ms = (performance.now() - t0).toFixed(0);
      results.push(
        res.ok
          ? {
              key,
              outcome: 'stored',
              message: `${existing.has(key) ? 'replaced' : 'stored'} (${body.width}×${body.height}, ${ms} ms)`,
            }
          : {
              key,
              outcome: 'failed',
              message: `${body.error?.code ?? res.status} — ${body.error?.message ?? res.statusText}`,
            },
      );
      existing.add(key);
    } catch (e) {
      results.push({ key, outcome: 'failed', message: String(e.message ?? e) });
    }
  }
  await load();
  setStatus(showUploadResults(results));
  document.body.dataset.uploaded = String(Number(document.body.dataset.uploaded ?? 0) + 1);
}

function start() {
  $('upload').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    if (files.length) upload(files);
  });
  $('gallery-format').addEventListener('change', renderGallery);
  $('thumb-size').addEventListener('change', (e) => {
    $('gallery').style.setProperty('--thumb', `${e.target.value}px`);
  });
  $('viewer-close').addEventListener('click', closeViewer);
  // Escape closes a modal dialog by itself; the tiles still in flight must stop too.
  $('viewer-dialog').addEventListener('close', closeViewer);
  $('upload-results-close').addEventListener('click', () => {
    $('upload-results').hidden = true;
  });
  $('viewer-format').addEventListener('change', () => {
    const key = $('viewer').dataset.key;
    if (key) openViewer(key);
  });
  $('tile-size').addEventListener('change', () => {
    const key = $('viewer').dataset.key;
    if (key) openViewer(key);
  });
  $('reload').addEventListener('click', load);
  load();
}

if (typeof document !== 'undefined' && document.getElementById('gallery')) start();

if (typeof window !== 'undefined')
  window.pixtable = { state, openViewer, closeViewer, toRGBA, tiles, uploadKey };
