// `pixtable export <format> <key> -o file`: an entry as an image file (encoded from the cached
// pixels, no decode of the source) or as raw, tightly packed rows. A cached entry is read through
// a read-only open, so this works beside a running server; an entry that is not cached yet is
// decoded through a writable open when the writer lock is free.
import fs from 'node:fs';
import path from 'node:path';
import type { ImageCache } from '../cache.js';
import { PixtableError } from '../errors.js';
import { validateKey } from '../engine/sources.js';
import { sourceFile, sourcesDir, tablesDir } from '../engine/layout.js';
import type { EncodedType } from '../formats.js';
import { sharpEncode } from '../http/encode.js';
import * as is from '../is.js';
import type { ImageView } from '../types.js';
import {
  CliError,
  EXIT,
  FLAG_CODE,
  STORAGE_HELP,
  bytes,
  checkFlag,
  cliLogger,
  isPixtable,
  numberFlag,
  openCache,
  parseCommand,
  resolveConfig,
  usage,
  warn,
  type Io,
} from './common.js';

export const EXPORT_HELP = `Usage: pixtable export [options] <format> <key> -o <file>

Writes the cached entry of <key> (a path under storage/sources/) in <format> to a file. The type
comes from the extension: .png, .webp, .jpg/.jpeg, .avif (encoded from the cached pixels) or .raw
(the pixel rows, tightly packed: width x height x bytes per pixel, in the format's pixel format).
A cached entry is read without the writer lock, so export works beside a running server; an entry
that is not cached is decoded first, which needs the lock.

Options:
  -o, --output FILE    where to write ("-" for stdout, then --type is required)
  -t, --type TYPE      png, webp, jpeg, avif or raw (overrides the extension)
  -q, --quality N      1-100 for webp, jpeg, avif
      --wait SECONDS   wait this long for the writer lock when the entry must be decoded
${STORAGE_HELP}

Exit status: 0 written; 1 the source image is broken; 2 usage; 3 configuration; 4 the entry is not
cached and another process holds the writer lock; 5 no such format, source or storage; 6 file system.`;

export type ExportType = EncodedType | 'raw';

const EXTENSIONS: Record<string, ExportType> = {
  '.png': 'png',
  '.webp': 'webp',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.avif': 'avif',
  '.raw': 'raw',
  '.rgba': 'raw',
  '.bin': 'raw',
};

const TYPES: readonly ExportType[] = ['png', 'webp', 'jpeg', 'avif', 'raw'];

export function exportType(output: string, type: string | undefined): ExportType {
  if (type !== undefined) {
    const t = type.toLowerCase() === 'jpg' ? 'jpeg' : type.toLowerCase();
    // Reports the value as typed (`JPG`, `Bmp`), not as normalised.
    checkFlag('export', () =>
      is.ensure(
        (TYPES as readonly string[]).includes(t),
        '--type',
        `one of ${TYPES.join(', ')}`,
        type,
        FLAG_CODE,
      ),
    );
    return t as ExportType;
  }
  if (output === '-') throw usage('writing to stdout (-o -) needs --type', 'export');
  const t = EXTENSIONS[path.extname(output).toLowerCase()];
  if (!t) {
    throw usage(
      `cannot tell the type of ${JSON.stringify(output)} from its extension (use .png, .webp, .jpg, .avif or .raw, or --type)`,
      'export',
    );
  }
  return t;
}

/** The entry's rows without their padding: exactly width × height × bytesPerPixel bytes. */
export function tightRows(view: ImageView): Buffer {
  const rowBytes = view.width * view.bytesPerPixel;
  if (rowBytes === view.stride) return Buffer.from(view.pixels.subarray(0, rowBytes * view.height));
  const out = Buffer.allocUnsafe(rowBytes * view.height);
  for (let y = 0; y < view.height; y++)
    view.pixels.copy(out, y * rowBytes, y * view.stride, y * view.stride + rowBytes);
  return out;
}

async function render(view: ImageView, type: ExportType, quality: number | undefined): Promise<Buffer> {
  if (type === 'raw') return tightRows(view);
  return sharpEncode(view, type, quality);
}

export async function exportCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseCommand(
    args,
    {
      output: { type: 'string', short: 'o' },
      type: { type: 'string', short: 't' },
      quality: { type: 'string', short: 'q' },
      wait: { type: 'string' },
    },
    EXPORT_HELP,
    io,
  );
  if (parsed === undefined) return EXIT.OK;
  const { values, positionals } = parsed;
  if (positionals.length !== 2) throw usage('expected <format> <key>', 'export');
  const [format, key] = positionals as [string, string];
  validateKey(key);
  if (values.output === undefined) throw usage('-o <file> is required', 'export');
  const output = values.output;
  const type = exportType(output, values.type);
  const quality = numberFlag(values.quality, 'quality', 'export', { min: 1, max: 100, integer: true });
  const wait = numberFlag(values.wait, 'wait', 'export', { max: 600 });
  const { config, warnings } = resolveConfig(values, io);
  for (const w of warnings) warn(io, w);
  if (!config.formats.some((f) => f.name === format)) {
    throw new CliError(
      EXIT.NOT_FOUND,
      `no format named "${format}" is configured (configured: ${config.formats.map((f) => f.name).join(', ')})`,
      'pass the same --config or PIXTABLE_FORMATS as the server',
    );
  }

  const logger = cliLogger(io);
  let data: Buffer;
  let facts: string;
  const readWith = async (cache: ImageCache): Promise<void> => {
    const view = await cache.get(format, key);
    try {
      data = await render(view, type, quality);
      facts = `${view.width}x${view.height} ${view.pixelFormat}`;
    } finally {
      view.release();
    }
  };
  // Read-only first: no lock, so a running server does not get in the way.
  let cached = fs.existsSync(tablesDir(config.storage));
  if (cached) {
    const ro = await openCache(config, { readOnly: true, logger }, 'export');
    try {
      await readWith(ro);
    } catch (e) {
      if (!isPixtable(e, 'READ_ONLY')) throw e;
      cached = false;
    } finally {
      await ro.close();
    }
  }
  if (!cached) {
    if (!fs.existsSync(sourceFile(sourcesDir(config.storage), key))) {
      throw new PixtableError('SOURCE_NOT_FOUND', key);
    }
    let rw: ImageCache;
    try {
      rw = await openCache(config, { readOnly: false, waitSeconds: wait, logger }, 'export');
    } catch (e) {
      if (e instanceof CliError && e.exitCode === EXIT.LOCKED) {
        throw new CliError(
          EXIT.LOCKED,
          `${format}/${key} is not cached yet and decoding it needs the writer lock, which another process holds`,
          `ask the server for it first (GET /v1/pixels/${format}/${key}), then export again; or stop the server`,
        );
      }
      throw e;
    }
    try {
      await readWith(rw);
    } finally {
      await rw.close();
    }
  }
  if (output === '-') {
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(data!, (err) => (err ? reject(err) : resolve())),
    );
    io.err(`${format}/${key}: ${facts!}, ${type}, ${bytes(data!.length)}\n`);
  } else {
    const file = path.resolve(io.cwd, output);
    const tmp = `${file}.tmp-${process.pid}`;
    await fs.promises.writeFile(tmp, data!);
    await fs.promises.rename(tmp, file);
    io.out(`wrote ${output}: ${facts!}, ${type}, ${bytes(data!.length)}\n`);
  }
  return EXIT.OK;
}
