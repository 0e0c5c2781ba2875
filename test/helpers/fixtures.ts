// Synthetic fixtures made with sharp, so the suite needs no image files in the repo.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache, type FormatSpec } from '../../src/index.js';

export function tempDir(prefix = 'pixtable-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmrf(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** RGBA gradient with varying alpha: every pixel differs, so misplaced rows or channels show. */
export function gradientRaw(width: number, height: number): Buffer {
  const b = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      b[i] = (x * 255) / Math.max(1, width - 1);
      b[i + 1] = (y * 255) / Math.max(1, height - 1);
      b[i + 2] = ((x + y) * 7) & 255;
      b[i + 3] = 40 + ((x * 3 + y * 5) % 216);
    }
  }
  return b;
}

export async function gradientPng(width: number, height: number): Promise<Buffer> {
  return sharp(gradientRaw(width, height), { raw: { width, height, channels: 4 } })
    .png()
    .toBuffer();
}

export async function solidJpeg(
  width: number,
  height: number,
  rgb: [number, number, number],
): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

export async function solidPng(
  width: number,
  height: number,
  rgb: [number, number, number],
): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

/** Where the shared real-image corpus lives, if this machine has it. */
export function corpusDir(): string | undefined {
  const candidates = [
    process.env.PIXTABLE_CORPUS,
    path.resolve(import.meta.dirname ?? '.', '../../../../shared/corpus'),
    path.resolve(process.cwd(), '../shared/corpus'),
  ];
  for (const c of candidates) if (c && fs.existsSync(path.join(c, 'manifest.json'))) return c;
  return undefined;
}

/** Runs `fn` with a fresh cache in a temporary storage directory, closed and removed afterwards. */
export async function withCache(
  formats: FormatSpec[],
  fn: (cache: ImageCache, dir: string) => Promise<void>,
  extra: Parameters<typeof ImageCache.open>[0] = {},
): Promise<void> {
  const dir = tempDir();
  const cache = await ImageCache.open({ storage: dir, formats, sync: 'none', ...extra });
  try {
    await fn(cache, dir);
  } finally {
    await cache.close();
    rmrf(dir);
  }
}
