// The shared corpus of real images made by others (and deliberately broken ones), when this
// machine has it: every `ok` file yields a correct view, every `error` file a typed 4xx error,
// and the process carries on. Without the corpus the test says so and skips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ImageCache, PixtableError } from '../../src/index.js';
import { corpusDir, rmrf, tempDir } from '../helpers/fixtures.js';
import { requireComponent } from '../helpers/requires.js';

interface Item {
  file: string;
  expect: 'ok' | 'error';
  width: number | null;
  height: number | null;
  orientation: number | null;
}

const dir = corpusDir();

test(
  'real-image corpus',
  {
    skip: requireComponent(
      'the image corpus',
      dir !== undefined,
      'none found (set PIXTABLE_CORPUS or place ../shared/corpus)',
    ),
  },
  async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(dir!, 'manifest.json'), 'utf8')) as Item[];
    const storage = tempDir();
    const cache = await ImageCache.open({
      storage,
      sync: 'none',
      formats: [
        { name: 'cover', width: 64, height: 64, fit: 'cover' },
        { name: 'inside', width: 200, height: 200, fit: 'inside', pixelFormat: 'rgb8', enlarge: true },
      ],
    });
    let ok = 0;
    let errors = 0;
    try {
      for (const item of manifest) {
        const bytes = fs.readFileSync(path.join(dir!, item.file));
        const key = `corpus/${item.file}`;
        if (item.expect === 'error') {
          const err = await cache.put(key, bytes).then(
            () => undefined,
            (e: unknown) => e,
          );
          assert.ok(err instanceof PixtableError, `${item.file}: expected a typed error, got ${String(err)}`);
          assert.ok(err.status >= 400 && err.status < 500, `${item.file}: ${err.code} is not a 4xx`);
          assert.ok(
            !fs.existsSync(path.join(cache.sourcesDir, key)),
            `${item.file}: broken upload was stored`,
          );
          errors++;
          continue;
        }
        await cache.put(key, bytes);
        using cover = await cache.get('cover', key);
        assert.deepEqual([cover.width, cover.height], [64, 64], item.file);
        const ref = await sharp(path.join(dir!, item.file), { pages: 1 })
          .autoOrient()
          .resize(64, 64, { fit: 'cover', position: 'centre' })
          .toColourspace('srgb')
          .ensureAlpha()
          .raw({ depth: 'uchar' })
          .toBuffer();
        for (let y = 0; y < 64; y++) {
          assert.ok(
            cover.pixels
              .subarray(y * cover.stride, y * cover.stride + 256)
              .equals(ref.subarray(y * 256, y * 256 + 256)),
            `${item.file}: row ${y} differs from sharp`,
          );
        }
        using inside = await cache.get('inside', key);
        if (item.width && item.height) {
          const swap = (item.orientation ?? 1) >= 5;
          const [w, h] = swap ? [item.height, item.width] : [item.width, item.height];
          const scale = Math.min(200 / w, 200 / h);
          assert.ok(
            Math.abs(inside.width - w * scale) <= 1 && Math.abs(inside.height - h * scale) <= 1,
            `${item.file}: inside size ${inside.width}x${inside.height} for ${w}x${h}`,
          );
        }
        ok++;
      }
      assert.equal(ok + errors, manifest.length);
      // Still alive and serving after every broken file.
      const first = manifest.find((m) => m.expect === 'ok')!;
      using again = await cache.get('cover', `corpus/${first.file}`);
      assert.equal(again.width, 64);
    } finally {
      await cache.close();
      rmrf(storage);
    }
  },
);
