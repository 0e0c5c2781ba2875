// Shared pieces of the `pixtable` command line: exit codes, the one-line error format, settings
// (flags > environment > config file > defaults, read through the server's own loader so the CLI
// and `pixtable serve` agree on storage and formats) and opening the cache for a command.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ImageCache } from '../cache.js';
import {
  ERRORS,
  EXIT,
  PixtableError,
  errorEntry,
  isPixtableError,
  type ErrorCode,
  type ExitCode,
} from '../errors.js';
import { validateFormats, type FormatSpec } from '../formats.js';
import * as is from '../is.js';
import { loadConfig, type ServerConfig } from '../config/env.js';
import { openOptions } from '../config/open-options.js';
import { lockFile, tablesDir } from '../engine/layout.js';
import type { Logger } from '../types.js';

// The exit codes live beside the error registry (every error code names one); re-exported so the
// commands keep one import for everything the CLI shares.
export { EXIT, type ExitCode };

/** An error the CLI reports as one line: the cause, then what to do. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function usage(message: string, command?: string): CliError {
  return new CliError(EXIT.USAGE, message, `see pixtable ${command ? `${command} ` : ''}--help`);
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** stderr is a terminal (progress bars redraw in place) */
  isTTY: boolean;
  columns: number;
}

export function processIo(): Io {
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stderr.isTTY),
    columns: process.stderr.columns || 80,
  };
}

/** The exit code for anything thrown by a command. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof CliError) return e.exitCode;
  if (isPixtableError(e)) return errorEntry(e.code).exit;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOENT' || errno === 'ENOTDIR') return EXIT.NOT_FOUND;
  if (errno && ['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EIO', 'EISDIR', 'EMFILE'].includes(errno)) {
    return EXIT.IO;
  }
  if ((e as { code?: string } | undefined)?.code?.startsWith('ERR_PARSE_ARGS')) return EXIT.USAGE;
  return EXIT.INTERNAL;
}

const IO_HINTS: Record<string, string> = {
  EACCES: 'check the permissions of the path (in Docker: the volume must be writable by uid 1000, "node")',
  EPERM: 'check the permissions of the path',
  EROFS: 'the volume is mounted read-only; mount it read-write',
  ENOSPC: ERRORS.STORAGE_FULL.hint,
  EDQUOT: 'the disk quota is exhausted; free space or raise the quota',
  EMFILE: 'raise the open-file limit (ulimit -n)',
};

/** One line (no trailing newline) describing `e` for a person: cause, then what to do. */
export function describeError(e: unknown, command: string): string {
  const prefix = `pixtable${command ? ` ${command}` : ''}: `;
  if (e instanceof CliError) return `${prefix}${e.message}${e.hint ? `; ${e.hint}` : ''}`;
  if (isPixtableError(e)) {
    const hint = errorEntry(e.code).hint;
    return `${prefix}${e.code}: ${oneLine(e.message)}${hint ? `; ${hint}` : ''}`;
  }
  const errno = e as NodeJS.ErrnoException | undefined;
  if (errno?.code?.startsWith('ERR_PARSE_ARGS')) {
    return `${prefix}${oneLine(errno.message)}; see pixtable ${command ? `${command} ` : ''}--help`;
  }
  if (errno?.code && errno.syscall) {
    const hint = IO_HINTS[errno.code];
    // Node's messages already start with the code ("EACCES: permission denied, open '/x'").
    const msg = oneLine(errno.message);
    const text = msg.startsWith(`${errno.code}:`) ? msg : `${errno.code}: ${msg}`;
    return `${prefix}${text}${hint ? `; ${hint}` : ''}`;
  }
  const msg = e instanceof Error ? e.message : String(e);
  return `${prefix}internal error: ${oneLine(msg)}; ${ERRORS.INTERNAL.hint}`;
}

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

// ---- settings ----------------------------------------------------------------------------------

export interface GlobalFlags {
  storage?: string | undefined;
  config?: string | undefined;
}

/** Options every command that touches storage accepts. */
const STORAGE_OPTIONS = {
  storage: { type: 'string', short: 's' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/**
 * The start every storage command shares: its own options plus --storage/--config/--help, parsed
 * strictly. Undefined when --help was asked for (the help text is printed).
 */
export function parseCommand<const O extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: O,
  help: string,
  io: Io,
): CommandArgs<O> | undefined {
  const parsed = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { ...STORAGE_OPTIONS, ...options },
  });
  if ((parsed.values as { help?: boolean }).help) {
    io.out(`${help}\n`);
    return undefined;
  }
  return parsed;
}

type CommandArgs<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<
  typeof parseArgs<{
    args: string[];
    strict: true;
    allowPositionals: true;
    options: typeof STORAGE_OPTIONS & O;
  }>
>;

/** Commands that take no positional arguments refuse the first one. */
export function noPositionals(positionals: string[], command: string): void {
  if (positionals.length) throw usage(`unexpected argument ${JSON.stringify(positionals[0])}`, command);
}

export const STORAGE_HELP = `  -s, --storage DIR    data directory (env PIXTABLE_STORAGE, default ./storage)
  -c, --config FILE    JSON file with a "formats" array (env PIXTABLE_CONFIG; env
                       PIXTABLE_FORMATS holds the same array inline)
  -h, --help           show this help`;

export interface ConfigFile {
  formats?: FormatSpec[];
  storage?: string;
}

/** Reads a config file (`{ "formats": [...], "storage": "dir" }`), validating what it holds. */
export function readConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOENT' ? EXIT.NOT_FOUND : EXIT.CONFIG,
      `config file ${file} cannot be read (${code ?? (e as Error).message})`,
      'pass an existing file with --config or PIXTABLE_CONFIG',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new CliError(
      EXIT.CONFIG,
      `config file ${file} is not valid JSON (${oneLine((e as Error).message)})`,
      'it must be an object like {"formats": [{"name": "thumb-256", "width": 256, "height": 256}]}',
    );
  }
  // A bare array is accepted as the formats list.
  if (Array.isArray(parsed)) parsed = { formats: parsed };
  if (typeof parsed !== 'object' || parsed === null) {
    throw new CliError(EXIT.CONFIG, `config file ${file} must hold a JSON object`, 'see docs/cli.md');
  }
  const obj = parsed as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k !== 'formats' && k !== 'storage') {
      throw new CliError(
        EXIT.CONFIG,
        `config file ${file} has an unknown setting "${k}"`,
        'it may hold "formats" and "storage"; the server reads everything else from PIXTABLE_* variables',
      );
    }
  }
  const out: ConfigFile = {};
  if (obj.formats !== undefined) {
    try {
      validateFormats(obj.formats);
    } catch (e) {
      const msg = isPixtableError(e) ? e.message : String(e);
      throw new CliError(EXIT.CONFIG, `config file ${file}: ${msg}`, 'fix the format definition');
    }
    out.formats = obj.formats as FormatSpec[];
  }
  if (obj.storage !== undefined) {
    let storage: string;
    try {
      storage = is.nonEmptyString('"storage"', obj.storage, 'INVALID_CONFIG', 'a directory path');
    } catch (e) {
      throw new CliError(EXIT.CONFIG, `config file ${file}: ${(e as PixtableError).detail}`);
    }
    out.storage = path.resolve(path.dirname(file), storage);
  }
  return out;
}

/**
 * The effective configuration: command-line flags win over environment variables, which win over
 * the config file, which wins over the built-in defaults. `extraEnv` holds flag values already
 * translated to their variable names (pixtable serve).
 */
export function resolveConfig(
  flags: GlobalFlags,
  io: Pick<Io, 'env' | 'cwd'>,
  extraEnv: Record<string, string> = {},
): { config: ServerConfig; warnings: string[]; configFile: string | undefined } {
  const env: Record<string, string | undefined> = { ...io.env };
  const fileName = flags.config ?? (env.PIXTABLE_CONFIG?.trim() || undefined);
  let file: ConfigFile = {};
  let configFile: string | undefined;
  if (fileName !== undefined) {
    configFile = path.resolve(io.cwd, fileName);
    file = readConfigFile(configFile);
  }
  // --config FILE is a flag: its formats beat PIXTABLE_FORMATS; PIXTABLE_CONFIG is an env var and
  // yields to it.
  if (file.formats && (flags.config !== undefined || !env.PIXTABLE_FORMATS?.trim())) {
    env.PIXTABLE_FORMATS = JSON.stringify(file.formats);
  }
  if (file.storage && !env.PIXTABLE_STORAGE?.trim()) env.PIXTABLE_STORAGE = file.storage;
  if (flags.storage !== undefined) env.PIXTABLE_STORAGE = flags.storage;
  Object.assign(env, extraEnv);
  const { config, warnings } = loadConfig(env, io.cwd);
  return { config, warnings, configFile };
}

export function warn(io: Io, msg: string): void {
  io.err(`pixtable: warning: ${msg}\n`);
}

/** Engine warnings (damaged entries dropped, tables rebuilt) as plain stderr lines. */
export function cliLogger(io: Io, seen?: string[]): Logger {
  return {
    warn(msg, fields) {
      const line = `${msg}${fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : ''}`;
      seen?.push(line);
      warn(io, line);
    },
  };
}

export interface OpenRequest {
  readOnly: boolean;
  /** Only these formats (names checked against the configuration). Default all. */
  formats?: readonly string[] | undefined;
  /** Seconds to wait for the writer lock. */
  waitSeconds?: number | undefined;
  concurrency?: number | undefined;
  /** Decodes that may wait beyond `concurrency` (default: the configuration's). */
  maxQueue?: number | undefined;
  logger?: Logger;
  /** What to do when another process holds the lock (defaults to: stop it, or --wait). */
  lockHint?: string;
}

/** Picks the configured formats named in `names` (all when empty); UNKNOWN_FORMAT otherwise. */
export function selectFormats(config: ServerConfig, names: readonly string[] | undefined): FormatSpec[] {
  if (!names || names.length === 0) return [...config.formats];
  const wanted = names
    .flatMap((n) => n.split(','))
    .map((n) => n.trim())
    .filter(Boolean);
  return wanted.map((n) => {
    const f = config.formats.find((x) => x.name === n);
    if (!f) {
      throw new CliError(
        EXIT.NOT_FOUND,
        `no format named "${n}" is configured (configured: ${config.formats.map((x) => x.name).join(', ')})`,
        'pass the same --config or PIXTABLE_FORMATS as the server',
      );
    }
    return f;
  });
}

/** Who holds the writer lock of the storage (the pid written into the lock file), if anyone said. */
export function lockHolder(storage: string, formats: readonly FormatSpec[]): string | undefined {
  for (const f of formats) {
    try {
      const pid = fs.readFileSync(lockFile(tablesDir(storage), f.name), 'utf8').trim();
      if (pid) return pid;
    } catch {
      // no lock file for this format
    }
  }
  return undefined;
}

/**
 * Opens the cache for a command. Read-only opens need no lock and work beside a running server;
 * writable opens turn STORAGE_LOCKED into a line that says who holds the lock and what to do.
 */
export async function openCache(
  config: ServerConfig,
  req: OpenRequest,
  command: string,
): Promise<ImageCache> {
  const formats = selectFormats(config, req.formats);
  if (req.readOnly && !fs.existsSync(tablesDir(config.storage))) {
    throw new CliError(
      EXIT.NOT_FOUND,
      `storage ${config.storage} holds no tables`,
      'import images first (pixtable import <dir>), or point --storage / PIXTABLE_STORAGE at the right directory',
    );
  }
  const options = openOptions(config, {
    formats,
    readOnly: req.readOnly,
    lockTimeoutMs: Math.round((req.waitSeconds ?? 0) * 1000),
    decode: { concurrency: req.concurrency, maxQueue: req.maxQueue },
    logger: req.logger,
  });
  try {
    return await ImageCache.open(options);
  } catch (e) {
    if (isPixtableError(e) && e.code === 'STORAGE_LOCKED') {
      const pid = lockHolder(config.storage, formats);
      throw new CliError(
        EXIT.LOCKED,
        `${command} needs the writer lock on ${config.storage}, but process ${pid ?? '(unknown)'} holds it (a running pixtable server?)`,
        req.lockHint ??
          'stop that process or retry with --wait SECONDS; read-only commands (stats, verify, export of cached entries) work meanwhile',
      );
    }
    throw e;
  }
}

/** A non-negative number flag (`--wait 2.5`), or undefined. */
export function numberFlag(
  value: string | undefined,
  name: string,
  command: string,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return checkFlag(command, () =>
    is.numberText(`--${name}`, value, min, max, FLAG_CODE, { integer: opts.integer ?? false }),
  );
}

/** The code the CLI's is.* checks of flag values throw with; checkFlag turns it into usage. */
export const FLAG_CODE = 'INVALID_OPTION' satisfies ErrorCode;

/**
 * Runs is.* checks of command-line values: a value they refuse is a usage error of `command`
 * (exit 2, "see pixtable <command> --help"), worded by the shared validator.
 */
export function checkFlag<T>(command: string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (isPixtableError(e) && e.code === FLAG_CODE && e.detail !== undefined) throw usage(e.detail, command);
    throw e;
  }
}

export function isPixtable(e: unknown, code: ErrorCode): e is PixtableError {
  return isPixtableError(e) && e.code === code;
}

// ---- formatting --------------------------------------------------------------------------------

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, '0');
  return `${h ? `${h}:` : ''}${mm}:${String(r).padStart(2, '0')}`;
}

/** Left-aligned text table (first column left, the rest right-aligned when numeric). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => {
          const w = widths[i] ?? 0;
          return i > 0 && /^[-\d.,]+( [KMGT]?i?B)?$/.test(c) ? c.padStart(w) : c.padEnd(w);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
