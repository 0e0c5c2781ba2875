// /v1/sources: uploads (PUT), deletes (DELETE) and the list of keys (GET).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { PixtableError } from '../../errors.js';
import { keyFromUrl } from '../keys.js';
import * as schemas from '../schemas.js';
import { noValidation, type RouteContext } from './shared.js';

const SOURCES_PREFIX = '/v1/sources/';

export async function sourceRoutes(
  app: FastifyInstance,
  { cache, config, state, signed }: RouteContext,
): Promise<void> {
  await app.register(async (uploads) => {
    // Uploads are opaque bytes whatever Content-Type says; the engine decides what they are.
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser(
      '*',
      { parseAs: 'buffer', bodyLimit: config.maxUploadBytes },
      (_req, body, done) => {
        done(null, body);
      },
    );
    uploads.route({
      method: 'PUT',
      url: '/v1/sources/*',
      schema: schemas.putSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', SOURCES_PREFIX.length);
        const body = request.body;
        if (!Buffer.isBuffer(body) || body.length === 0) throw new PixtableError('EMPTY_SOURCE');
        if (!state.ready) throw new PixtableError('SHUTTING_DOWN', 'uploads are refused while draining');
        let existed = false;
        try {
          existed = (await fs.stat(path.join(cache.sourcesDir, key))).isFile();
        } catch {
          existed = false;
        }
        const result = await cache.put(key, body);
        return reply.code(existed ? 200 : 201).send(result);
      },
    });
    uploads.route({
      method: 'DELETE',
      url: '/v1/sources/*',
      schema: schemas.deleteSource,
      ...noValidation,
      ...signed,
      async handler(request, reply) {
        const key = keyFromUrl(request.raw.url ?? '', SOURCES_PREFIX.length);
        if (!(await cache.delete(key))) throw new PixtableError('SOURCE_NOT_FOUND', key);
        return reply.code(204).send();
      },
    });
  });

  app.route({
    method: 'GET',
    url: '/v1/sources',
    schema: schemas.listSources,
    ...signed,
    async handler() {
      return { keys: await cache.listSources() };
    },
  });
}
