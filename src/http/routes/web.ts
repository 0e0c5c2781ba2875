// The web page (src/web): gallery and raw-pixel viewer at GET /. When its files are not shipped
// (a trimmed install), a small built-in page still tells a person what to do.
import type { FastifyInstance } from 'fastify';
import type { Format } from '../../formats.js';
import { registerWebPage } from '../../web/plugin.js';
import type { RouteContext } from './shared.js';

export async function webRoutes(app: FastifyInstance, { cache }: RouteContext): Promise<void> {
  try {
    await registerWebPage(app, { cache });
  } catch (e) {
    app.log.warn({ err: (e as Error).message }, 'web page files missing; serving the built-in index');
    app.route({
      method: 'GET',
      url: '/',
      schema: { hide: true },
      handler(_request, reply) {
        void reply.type('text/html; charset=utf-8').send(indexPage(cache.formats));
      },
    });
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function indexPage(formats: readonly Format[]): string {
  const rows = formats
    .map(
      (f) =>
        `<tr><td>${escapeHtml(f.name)}</td><td>${f.width}×${f.height}</td><td>${f.fit}</td><td>${f.pixelFormat}</td><td>${f.stride}</td></tr>`,
    )
    .join('');
  return `<!doctype html><meta charset="utf-8"><title>pixtable</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}code{background:#f2f2f2;padding:0 .2em}td,th{padding:.1rem .6rem;text-align:left}</style>
<h1>pixtable</h1>
<p>Decoded-image cache. Upload a source, then ask for pixels or a thumbnail in any format below.</p>
<pre>curl -T cat.jpg http://HOST/v1/sources/photos/cat.jpg
curl -o t.webp -H 'Accept: image/webp' http://HOST/v1/thumbnails/${escapeHtml(formats[0]?.name ?? 'thumb-64')}/photos/cat.jpg
curl -D- -o cat.rgba http://HOST/v1/pixels/${escapeHtml(formats[0]?.name ?? 'thumb-64')}/photos/cat.jpg</pre>
<table><tr><th>format</th><th>box</th><th>fit</th><th>pixels</th><th>stride</th></tr>${rows}</table>
<p>API: <a href="/openapi.json">/openapi.json</a> · <a href="/v1/formats">/v1/formats</a> · <a href="/v1/sources">/v1/sources</a> · <a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p>`;
}
