// Shared fixtures for app.inject() tests: a real ImageCache on a temp directory (small formats so
// decodes are quick) and synthetic source images made with sharp, so tests need no corpus.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { ImageCache } from '../../src/cache.js';
import { buildApp } from '../../src/http/app.js';
import { defaultConfig, type ServerConfig } from '../../src/config/env.js';
import type { FormatSpec } from '../../src/formats.js';
import type { EncodeFn } from '../../src/http/encode.js';
import type { OpenOptions } from '../../src/types.js';

export const TEST_FORMATS: FormatSpec[] = [
  { name: 'small', width: 32, height: 32, fit: 'cover', pixelFormat: 'rgba8', rowAlignment: 64 },
  { name: 'box', width: 48, height: 48, fit: 'inside', pixelFormat: 'rgb8', rowAlignment: 16 },
];

/** A 120×80 image with distinct pixels everywhere (so rectangles and ranges are checkable). */
export async function makeImage(
  type: 'jpeg' | 'png' = 'png',
  width = 120,
  height = 80,
  seed = 0,
): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = (x * 2 + seed) & 255;
      raw[i + 1] = (y * 3 + seed) & 255;
      raw[i + 2] = (x * y + seed) & 255;
    }
  }
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  return type === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 95 }).toBuffer();
}

export interface Fixture {
  app: FastifyInstance;
  cache: ImageCache;
  config: ServerConfig;
  dir: string;
  close(): Promise<void>;
}

export async function fixture(
  opts: { config?: Partial<ServerConfig>; open?: Partial<OpenOptions>; encode?: EncodeFn } = {},
): Promise<Fixture> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-http-'));
  const config = defaultConfig({ storage: dir, formats: TEST_FORMATS, logRequests: false, ...opts.config });
  const cache = await ImageCache.open({ storage: dir, formats: config.formats, ...opts.open });
  const app = await buildApp({
    cache,
    config,
    logger: false,
    ...(opts.encode ? { encode: opts.encode } : {}),
  });
  await app.ready();
  return {
    app,
    cache,
    config,
    dir,
    async close() {
      await app.close();
      await cache.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes a source straight into sources/ (as a user would by copying files). */
export async function addSource(f: Fixture, key: string, bytes: Buffer): Promise<void> {
  const file = path.join(f.cache.sourcesDir, key);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, bytes);
}

export function errorOf(body: string): { code: string; message: string } {
  const j = JSON.parse(body) as { error: { code: string; message: string } };
  return j.error;
}
