// The sharp boundary's error mapping and the one list of source types (issue 12, item 21):
// messages of sharp's pipeline never reach users; what `pixtable import` and the web page offer
// is what really decodes here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { PixtableError } from '../../src/errors.js';
import { decodeImage, sourceTypes, translateSharpError } from '../../src/native/sharp.js';
import { collectItems } from '../../src/cli/import.js';

test("sharp's failOn wrapper is dropped; the warning it carries is kept", async () => {
  // sharp's pipeline.cc builds this message when libvips failed on a warning under failOn.
  const e = await translateSharpError(
    new Error(
      'Warning treated as error due to failOn setting\nVipsJpeg: Corrupt JPEG data: 4 extraneous bytes before marker 0xd9',
    ),
  );
  assert.equal(e.code, 'CORRUPT_IMAGE');
  assert.equal(
    e.message,
    'The source image is truncated or corrupt: Corrupt JPEG data: 4 extraneous bytes before marker 0xd9',
  );
  const bare = await translateSharpError(new Error('Warning treated as error due to failOn setting'));
  assert.equal(bare.message, 'The source image is truncated or corrupt: its header cannot be read');
});

/** A 2×2 24-bit BMP: 14-byte file header, 40-byte info header, two rows of 8 bytes (padded). */
function bmp(): Buffer {
  const b = Buffer.alloc(14 + 40 + 16);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(2, 18);
  b.writeInt32LE(2, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  b.writeUInt32LE(16, 34);
  b.fill(0x80, 54);
  return b;
}

test('the source types are those whose sample decodes; BMP and HEIC do not decode here', async () => {
  const types = await sourceTypes();
  const names = types.map((t) => t.name);
  for (const n of ['JPEG', 'PNG', 'WebP', 'GIF', 'TIFF', 'SVG']) assert.ok(names.includes(n), names.join());
  const exts = types.flatMap((t) => t.extensions);
  assert.ok(!exts.includes('.bmp') && !exts.includes('.heic'), exts.join());
  // What the list leaves out really fails: a well-formed BMP is refused by the decoder …
  await assert.rejects(
    decodeImage(bmp(), [{ width: 2, height: 2, fit: 'cover', enlarge: true, layout: 'rgba' }], {
      maxInputPixels: 1e6,
      timeoutMs: 5000,
      shared: false,
    }),
    (e: unknown) => e instanceof PixtableError && e.code === 'UNSUPPORTED_IMAGE',
  );
  // … and this sharp cannot make an HEIC to decode (no HEVC encoder ships with it), though its
  // format table lists heif as an input.
  assert.equal(sharp.format.heif.input.buffer, true);
  if (!names.includes('HEIC')) {
    await assert.rejects(
      sharp({ create: { width: 2, height: 2, channels: 3, background: '#fff' } })
        .heif({ compression: 'hevc' })
        .toBuffer(),
    );
  }
});

test('pixtable import walks only files of types that decode here', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-types-'));
  try {
    for (const n of ['a.jpg', 'b.bmp', 'c.heic', 'd.PNG', 'e.svg', 'f.txt'])
      fs.writeFileSync(path.join(dir, n), 'x');
    const { items, skipped } = await collectItems([dir], {
      cwd: dir,
      sourcesDir: path.join(dir, 'sources'),
      prefix: undefined,
    });
    assert.deepEqual(
      items.map((i) => i.key),
      ['a.jpg', 'd.PNG', 'e.svg'],
    );
    assert.equal(skipped, 3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
