// Serves the web page (src/web/index.html, app.js, app.css, favicon.ico) from a fastify app:
//   GET /            the page (unless the app already has a route there)
//   GET /web/*       its static assets (@fastify/static); /web/ and /web/index.html are the page too
//   GET /favicon.ico the icon (browsers ask for it whatever the page says)
//   GET /web/thumbhash.js  thumbhash's own ES module, which renders the gallery's placeholders
//   GET /v1/sources  `{ "keys": [...] }` for the gallery (unless the app already serves it)
// The page itself talks only to the public API (/v1/formats, /v1/sources, /v1/thumbnails,
// /v1/pixels, /v1/info), so it works against any pixtable server that has these routes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { sourceTypes } from '../native/sharp.js';
import { thumbHashBrowserModule } from '../native/placeholders.js';

export interface WebPageOptions {
  /** Lists source keys for GET /v1/sources (only used when the app has no such route). */
  cache?: { listSources(): Promise<string[]> };
  /** Directory holding index.html, app.js and app.css. Default: found next to this module. */
  root?: string;
}

/**
 * The file input's `accept`: the media types and extensions of what decodes here (one list, from
 * the sharp boundary), so a person is not offered files the server would refuse.
 */
async function acceptList(): Promise<string> {
  return (await sourceTypes()).flatMap((t) => [...t.mime, ...t.extensions]).join(',');
}

/**
 * Where the page's files are. tsc emits only this module (dist/src/web/plugin.js); the static
 * files stay in src/web/, which the package and the Docker image ship beside dist/.
 */
export function webRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [here, path.resolve(here, '../../../src/web')];
  for (const c of candidates) if (fs.existsSync(path.join(c, 'index.html'))) return c;
  throw new Error(`the web page files (index.html, app.js, app.css) are not in ${candidates.join(' or ')}`);
}

export async function registerWebPage(app: FastifyInstance, opts: WebPageOptions = {}): Promise<void> {
  const root = opts.root ?? webRoot();
  const template = await fs.promises.readFile(path.join(root, 'index.html'), 'utf8');
  const html = template.replace('__ACCEPT__', await acceptList());
  const icon = await fs.promises.readFile(path.join(root, 'favicon.ico'));
  const thumbhash = await fs.promises.readFile(thumbHashBrowserModule());
  await app.register(fastifyStatic, {
    root,
    prefix: '/web/',
    // Another @fastify/static registration (if any) keeps reply.sendFile; we need none.
    decorateReply: false,
    // the page itself is served below, with its accept list filled in
    index: false,
    // The page is small and changes with the server version: revalidate instead of caching blindly.
    cacheControl: true,
    maxAge: 0,
    allowedPath: (pathName) => /^\/?(app\.js|app\.css|favicon\.ico)$/.test(pathName),
    schemaHide: true,
  });
  const page = (_request: unknown, reply: FastifyReply) => {
    void reply.type('text/html; charset=utf-8').header('Cache-Control', 'no-cache').send(html);
  };
  for (const url of ['/', '/web/', '/web/index.html']) {
    if (!app.hasRoute({ method: 'GET', url }))
      app.route({ method: 'GET', url, schema: { hide: true }, handler: page });
  }
  if (!app.hasRoute({ method: 'GET', url: '/favicon.ico' })) {
    app.route({
      method: 'GET',
      url: '/favicon.ico',
      schema: { hide: true },
      handler(_request, reply) {
        void reply.type('image/x-icon').header('Cache-Control', 'public, max-age=86400').send(icon);
      },
    });
  }
  app.route({
    method: 'GET',
    url: '/web/thumbhash.js',
    schema: { hide: true },
    handler(_request, reply) {
      void reply.type('text/javascript; charset=utf-8').header('Cache-Control', 'no-cache').send(thumbhash);
    },
  });
  const cache = opts.cache;
  if (cache && !app.hasRoute({ method: 'GET', url: '/v1/sources' })) {
    app.route({
      method: 'GET',
      url: '/v1/sources',
      schema: { hide: true },
      async handler() {
        return { keys: await cache.listSources() };
      },
    });
  }
}
