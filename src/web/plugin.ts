// Serves the web page (src/web/index.html, app.js, app.css) from a fastify app:
//   GET /            the page (unless the app already has a route there)
//   GET /web/*       its static assets (@fastify/static), /web/ is the page too
//   GET /v1/sources  `{ "keys": [...] }` for the gallery (unless the app already serves it)
// The page itself talks only to the public API (/v1/formats, /v1/sources, /v1/thumbnails,
// /v1/pixels), so it works against any pixtable server that has these routes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

export interface WebPageOptions {
  /** Lists source keys for GET /v1/sources (only used when the app has no such route). */
  cache?: { listSources(): Promise<string[]> };
  /** Directory holding index.html, app.js and app.css. Default: found next to this module. */
  root?: string;
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
  const html = await fs.promises.readFile(path.join(root, 'index.html'));
  await app.register(fastifyStatic, {
    root,
    prefix: '/web/',
    // Another @fastify/static registration (if any) keeps reply.sendFile; we need none.
    decorateReply: false,
    index: ['index.html'],
    // The page is small and changes with the server version: revalidate instead of caching blindly.
    cacheControl: true,
    maxAge: 0,
    allowedPath: (pathName) => /^\/?(index\.html|app\.js|app\.css)?$/.test(pathName),
    schemaHide: true,
  });
  if (!app.hasRoute({ method: 'GET', url: '/' })) {
    app.route({
      method: 'GET',
      url: '/',
      schema: { hide: true },
      handler(_request, reply) {
        void reply.type('text/html; charset=utf-8').header('Cache-Control', 'no-cache').send(html);
      },
    });
  }
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
