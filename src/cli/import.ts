// `pixtable import <dir|files…>`: files become sources under storage/sources/<key> and are
// decoded into every format (of the selected ones) — several at once, up to the decode
// concurrency, so both cores work. Files already inside storage/sources/ are decoded in place;
// files elsewhere are copied in through ImageCache.put, which decodes before it writes anything,
// so a broken file never lands in storage. A source whose bytes and entries are already current
// is "unchanged" and costs one read and hash.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ImageCache } from '../cache.js';
import { PixtableError, isPixtableError } from '../errors.js';
import { validateKey } from '../engine/sources.js';
import { sourceFile } from '../engine/layout.js';
import { sourceTypes } from '../native/sharp.js';
import {
  CliError,
  EXIT,
  STORAGE_HELP,
  cliLogger,
  numberFlag,
  oneLine,
  openCache,
  parseCommand,
  resolveConfig,
  selectFormats,
  usage,
  warn,
  type Io,
} from './common.js';
import { Progress } from './progress.js';

export const IMPORT_HELP = `Usage: pixtable import [options] <dir|file>...

Decodes images into every configured format. Files of a directory become sources under
storage/sources/<path inside the directory>, a file named directly becomes storage/sources/<its name>
(--prefix puts them under a sub-directory). Paths already inside storage/sources/ are decoded in
place. Directories are walked recursively; hidden names are skipped, and so are files whose
extension is not of an image type that decodes on this machine (JPEG, PNG, WebP, AVIF, GIF, TIFF
and SVG with sharp's prebuilt libvips; name a file directly to import it anyway).

Options:
  -f, --format NAME    only these formats (repeat or comma-separate); default all
  -p, --prefix DIR     put the sources under storage/sources/DIR/
  -j, --jobs N         images decoded at once (default: PIXTABLE_DECODE_CONCURRENCY or the CPU count)
      --allow-failures exit 0 even when some files failed
      --wait SECONDS   wait this long for the writer lock (default 0: fail at once)
      --json           print the summary as JSON on stdout
      --progress-interval SECONDS  period of progress lines when stderr is not a terminal (default 2)
${STORAGE_HELP}

Exit status: 0 all imported or unchanged; 1 some failed (unless --allow-failures); 2 usage;
3 configuration; 4 storage locked by another process; 5 a path does not exist; 6 file system.`;

/** Extensions of the image types that decode here (src/native/sharp.ts finds them once). */
async function imageExtensions(): Promise<ReadonlySet<string>> {
  return new Set((await sourceTypes()).flatMap((t) => t.extensions));
}

export interface ImportItem {
  /** The file as named or found (absolute). */
  file: string;
  key: string;
  /** The file already is the source (inside storage/sources/). */
  inPlace: boolean;
}

export interface ImportFailure {
  file: string;
  key: string | null;
  code: string;
  message: string;
}

export interface ImportSummary {
  imported: number;
  unchanged: number;
  failed: number;
  skipped: number;
  files: number;
  seconds: number;
  interrupted: boolean;
  failures: ImportFailure[];
}

function toKey(rel: string): string {
  return rel.split(path.sep).join('/');
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

/**
 * Expands the command-line paths into import items. Directory walks skip hidden names and
 * non-image extensions (counted in `skipped`); missing paths throw NOT_FOUND before anything runs.
 */
export async function collectItems(
  inputs: readonly string[],
  opts: { cwd: string; sourcesDir: string; prefix: string | undefined },
): Promise<{ items: ImportItem[]; skipped: number; failures: ImportFailure[] }> {
  const items: ImportItem[] = [];
  const failures: ImportFailure[] = [];
  let skipped = 0;
  let sourcesReal: string;
  try {
    sourcesReal = await fs.promises.realpath(opts.sourcesDir);
  } catch {
    sourcesReal = path.resolve(opts.sourcesDir);
  }
  const prefix = opts.prefix ? opts.prefix.replace(/^\/+|\/+$/g, '') : '';
  const extensions = await imageExtensions();
  const seen = new Map<string, string>();

  const add = (file: string, rel: string, real: string) => {
    const inPlace = isInside(sourcesReal, real) && real !== sourcesReal;
    const key = inPlace ? toKey(path.relative(sourcesReal, real)) : toKey(prefix ? `${prefix}/${rel}` : rel);
    try {
      validateKey(key);
    } catch (e) {
      failures.push({
        file,
        key,
        code: 'INVALID_KEY',
        message: isPixtableError(e) ? e.message : String(e),
      });
      return;
    }
    const other = seen.get(key);
    if (other !== undefined) {
      failures.push({
        file,
        key,
        code: 'DUPLICATE_KEY',
        message: `${file} and ${other} would both become source "${key}"`,
      });
      return;
    }
    seen.set(key, file);
    items.push({ file, key, inPlace });
  };

  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await fs.promises.readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const file = path.join(dir, e.name);
      const r = rel ? path.join(rel, e.name) : e.name;
      // Symlinked directories are not followed (no loops); symlinked files are.
      if (e.isDirectory()) await walk(file, r);
      else if (e.isFile() || e.isSymbolicLink()) {
        let st: fs.Stats;
        try {
          st = await fs.promises.stat(file);
        } catch {
          skipped++;
          continue;
        }
        if (!st.isFile() || !extensions.has(path.extname(e.name).toLowerCase())) {
          skipped++;
          continue;
        }
        add(file, r, await fs.promises.realpath(file));
      }
    }
  };

  for (const input of inputs) {
    const abs = path.resolve(opts.cwd, input);
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(abs);
    } catch {
      throw new CliError(EXIT.NOT_FOUND, `${input} does not exist`, 'name existing files or directories');
    }
    const real = await fs.promises.realpath(abs);
    if (st.isDirectory()) {
      if (real === sourcesReal || isInside(sourcesReal, real)) {
        // Re-ingesting (part of) the sources directory: keys are the paths inside it.
        await walk(real, path.relative(sourcesReal, real));
      } else {
        await walk(abs, '');
      }
    } else if (st.isFile()) {
      add(abs, path.basename(abs), real);
    } else {
      throw new CliError(EXIT.USAGE, `${input} is neither a file nor a directory`);
    }
  }
  return { items, skipped, failures };
}

async function sameBytes(file: string, bytes: Buffer): Promise<boolean> {
  try {
    const st = await fs.promises.stat(file);
    if (!st.isFile() || st.size !== bytes.length) return false;
    return (await fs.promises.readFile(file)).equals(bytes);
  } catch {
    return false;
  }
}

/** Imports one item; resolves to its status, rejects with the reason it failed. */
export async function importOne(
  cache: ImageCache,
  item: ImportItem,
  maxBytes: number,
): Promise<'imported' | 'unchanged'> {
  if (item.inPlace) return (await cache.ingest(item.key)).status;
  const st = await fs.promises.stat(item.file);
  if (st.size > maxBytes) {
    // Checked before reading, so a huge stray file costs nothing.
    throw new PixtableError('SOURCE_TOO_LARGE', `${st.size} bytes, the limit is ${maxBytes}`);
  }
  const bytes = await fs.promises.readFile(item.file);
  if (await sameBytes(sourceFile(cache.sourcesDir, item.key), bytes)) {
    return (await cache.ingest(item.key)).status;
  }
  await cache.put(item.key, bytes);
  return 'imported';
}

function failureOf(item: ImportItem, e: unknown): ImportFailure {
  if (isPixtableError(e))
    return { file: item.file, key: item.key, code: e.code, message: oneLine(e.message) };
  const err = e as NodeJS.ErrnoException;
  return {
    file: item.file,
    key: item.key,
    code: err?.code ?? 'ERROR',
    message: oneLine(err instanceof Error ? err.message : String(e)),
  };
}

export async function importCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseCommand(
    args,
    {
      format: { type: 'string', short: 'f', multiple: true },
      prefix: { type: 'string', short: 'p' },
      jobs: { type: 'string', short: 'j' },
      'allow-failures': { type: 'boolean' },
      wait: { type: 'string' },
      json: { type: 'boolean' },
      'progress-interval': { type: 'string' },
    },
    IMPORT_HELP,
    io,
  );
  if (parsed === undefined) return EXIT.OK;
  const { values, positionals } = parsed;
  if (positionals.length === 0) throw usage('name at least one directory or file to import', 'import');
  const jobsFlag = numberFlag(values.jobs, 'jobs', 'import', { min: 1, max: 64, integer: true });
  const wait = numberFlag(values.wait, 'wait', 'import', { max: 600 });
  const interval = numberFlag(values['progress-interval'], 'progress-interval', 'import', {
    min: 0.1,
    max: 3600,
  });
  const { config, warnings } = resolveConfig(values, io);
  for (const w of warnings) warn(io, w);
  const jobs = jobsFlag ?? config.decode.concurrency ?? os.availableParallelism();
  // One more worker than decode slots keeps a file read in flight while the others decode.
  const workers = jobs + 1;
  const formatCount = selectFormats(config, values.format).length;

  const cache = await openCache(
    config,
    {
      readOnly: false,
      formats: values.format,
      waitSeconds: wait,
      concurrency: jobs,
      // Room for every decode the workers can have waiting (one per family of each image in
      // flight). PIXTABLE_DECODE_QUEUE sheds a server's excess requests; applied here it would
      // fail the import's own files with QUEUE_FULL (with 0, one file in every jobs + 1).
      maxQueue: Math.min(100_000, workers * formatCount),
      logger: cliLogger(io),
      lockHint:
        'stop that process, retry with --wait SECONDS, or upload through the running server instead (curl -T FILE http://HOST:PORT/v1/sources/KEY)',
    },
    'import',
  );
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(EXIT.INTERRUPTED);
    interrupted = true;
    io.err(
      '\npixtable import: interrupted; finishing the images in progress (press Ctrl-C again to quit now)\n',
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let summary: ImportSummary;
  try {
    const collected = await collectItems(positionals, {
      cwd: io.cwd,
      sourcesDir: cache.sourcesDir,
      prefix: values.prefix,
    });
    const { items } = collected;
    const failures = [...collected.failures];
    const progress = new Progress(items.length + collected.failures.length, {
      label: 'import',
      tty: io.isTTY,
      columns: io.columns,
      write: io.err,
      ...(interval !== undefined ? { lineIntervalMs: interval * 1000 } : {}),
    });
    for (let i = 0; i < collected.failures.length; i++) progress.tick(true);
    let imported = 0;
    let unchanged = 0;
    let next = 0;
    const worker = async () => {
      while (!interrupted && next < items.length) {
        const item = items[next++]!;
        try {
          const status = await importOne(cache, item, config.maxUploadBytes);
          if (status === 'imported') imported++;
          else unchanged++;
          progress.tick(false);
        } catch (e) {
          if (isPixtableError(e) && (e.code === 'STORAGE_FULL' || e.code === 'CACHE_CLOSED')) throw e;
          failures.push(failureOf(item, e));
          progress.tick(true);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(workers, Math.max(1, items.length)) }, worker));
    progress.finish();
    summary = {
      imported,
      unchanged,
      failed: failures.length,
      skipped: collected.skipped,
      files: items.length + collected.failures.length,
      seconds: progress.elapsedMs / 1000,
      interrupted,
      failures,
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cache.close();
  }
  printSummary(io, summary, Boolean(values.json));
  if (summary.interrupted) return EXIT.INTERRUPTED;
  if (summary.failed > 0 && !values['allow-failures']) return EXIT.PROBLEMS;
  return EXIT.OK;
}

function printSummary(io: Io, s: ImportSummary, json: boolean): void {
  if (json) {
    io.out(`${JSON.stringify(s, null, 2)}\n`);
    return;
  }
  const r = s.seconds > 0 ? (s.imported + s.unchanged + s.failed) / s.seconds : 0;
  io.out(
    `imported ${s.imported}, unchanged ${s.unchanged}, failed ${s.failed}` +
      `${s.skipped ? `, skipped ${s.skipped} non-image file${s.skipped === 1 ? '' : 's'}` : ''}` +
      ` (${s.seconds.toFixed(1)} s, ${r.toFixed(1)} images/s)${s.interrupted ? ' — interrupted' : ''}\n`,
  );
  for (const f of s.failures) io.out(`failed ${f.file}: ${f.code}: ${f.message}\n`);
}
