// `pixtable stats`, `verify` and `compact`. stats and verify open the storage read-only (no
// lock), so they run beside a server; verify --repair and compact need the writer lock.
import fs from 'node:fs';
import path from 'node:path';
import type { Format } from '../formats.js';
import type { VerifyProblem } from '../types.js';
import * as is from '../is.js';
import { indexFile, tableDir, tablesDir } from '../engine/layout.js';
import {
  CliError,
  EXIT,
  FLAG_CODE,
  STORAGE_HELP,
  bytes,
  checkFlag,
  cliLogger,
  noPositionals,
  numberFlag,
  oneLine,
  openCache,
  parseCommand,
  resolveConfig,
  table,
  warn,
  type Io,
} from './common.js';

// ---- stats -------------------------------------------------------------------------------------

export const STATS_HELP = `Usage: pixtable stats [options]

Per format: entries, capacity (entries, and bytes once full: every entry reserves its format's
whole box, however small the image), bytes per entry and bytes on disk now; with --server, the running server's hits, misses
and mapped bytes (from its /metrics). Opens the storage read-only: works beside a running server.

Options:
      --server URL     also read counters from this running server (e.g. http://127.0.0.1:8080)
      --json           print JSON on stdout
${STORAGE_HELP}

Exit status: 0 ok; 3 configuration; 5 storage has no tables.`;

export interface FormatRow {
  format: string;
  width: number;
  height: number;
  fit: string;
  pixelFormat: string;
  stride: number;
  entries: number;
  /** Entries the table may hold (maxCount, or fewer under maxBytes). */
  capacity: number;
  /** Bytes each entry reserves on disk (the format's full box, page-aligned). */
  entryBytes: number;
  /** capacity × entryBytes: the table's size once full. */
  capacityBytes: number;
  /** The format's byte bound, null when it has none. */
  maxBytes: number | null;
  /** Allocated bytes of the table's files now. */
  diskBytes: number;
  /** From the server, when reachable: null otherwise. */
  hits: number | null;
  misses: number | null;
  mappedBytes: number | null;
}

export interface StatsReport {
  storage: string;
  sources: number;
  formats: FormatRow[];
  server: { url: string; reachable: boolean; error?: string; mappedBytes?: number | null } | null;
}

/** Samples of a Prometheus text exposition: metric name → [labels, value][]. */
export function parseMetrics(text: string): Map<string, { labels: Record<string, string>; value: number }[]> {
  const out = new Map<string, { labels: Record<string, string>; value: number }[]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = Number(m[3]);
    const list = out.get(m[1]!) ?? [];
    list.push({ labels, value });
    out.set(m[1]!, list);
  }
  return out;
}

async function fetchMetrics(url: string): Promise<string> {
  const u = new URL('/metrics', url.endsWith('/') ? url : `${url}/`);
  const res = await fetch(u, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`GET ${u.href} answered ${res.status}`);
  return res.text();
}

export async function statsCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseCommand(
    args,
    { server: { type: 'string' }, json: { type: 'boolean' } },
    STATS_HELP,
    io,
  );
  if (parsed === undefined) return EXIT.OK;
  const { values, positionals } = parsed;
  noPositionals(positionals, 'stats');
  const server = values.server;
  if (server !== undefined) {
    checkFlag('stats', () =>
      is.ensure(/^https?:\/\/./.test(server), '--server', 'an http:// or https:// URL', server, FLAG_CODE),
    );
  }
  const { config, warnings } = resolveConfig(values, io);
  for (const w of warnings) warn(io, w);
  const cache = await openCache(config, { readOnly: true, logger: cliLogger(io) }, 'stats');
  let report: StatsReport;
  try {
    const s = cache.stats();
    const byName = new Map<string, Format>(cache.formats.map((f) => [f.name, f]));
    report = {
      storage: cache.storage,
      sources: (await cache.listSources()).length,
      formats: s.formats.map((f) => {
        const fmt = byName.get(f.format)!;
        return {
          format: f.format,
          width: fmt.width,
          height: fmt.height,
          fit: fmt.fit,
          pixelFormat: fmt.pixelFormat,
          stride: fmt.stride,
          entries: f.entries,
          capacity: f.capacity,
          entryBytes: f.entryBytes,
          capacityBytes: f.capacityBytes,
          maxBytes: fmt.maxBytes ?? null,
          diskBytes: f.diskBytes,
          hits: null,
          misses: null,
          mappedBytes: null,
        };
      }),
      server: null,
    };
  } finally {
    await cache.close();
  }
  if (values.server !== undefined) {
    try {
      const m = parseMetrics(await fetchMetrics(values.server));
      const per = (name: string, format: string): number | null => {
        const v = m.get(name)?.find((x) => x.labels.format === format);
        return v ? v.value : null;
      };
      for (const row of report.formats) {
        row.hits = per('pixtable_cache_hits_total', row.format);
        row.misses = per('pixtable_cache_misses_total', row.format);
        row.mappedBytes = per('pixtable_mapped_bytes', row.format);
      }
      const total = m.get('pixtable_mapped_bytes')?.find((x) => x.labels.format === undefined);
      report.server = { url: values.server, reachable: true, mappedBytes: total ? total.value : null };
    } catch (e) {
      const msg = oneLine(
        e instanceof Error ? `${e.message}${e.cause ? ` (${String(e.cause)})` : ''}` : String(e),
      );
      report.server = { url: values.server, reachable: false, error: msg };
      warn(io, `server ${values.server} not reachable (${msg}); showing storage figures only`);
    }
  }
  if (values.json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT.OK;
  }
  const live = report.server?.reachable === true;
  const head = ['format', 'geometry', 'entries', 'capacity', 'per entry', 'when full', 'on disk'];
  if (live) head.push('mapped', 'hits', 'misses');
  const rows = [head];
  for (const f of report.formats) {
    const r = [
      f.format,
      `${f.width}x${f.height} ${f.fit} ${f.pixelFormat}`,
      String(f.entries),
      String(f.capacity),
      bytes(f.entryBytes),
      bytes(f.capacityBytes),
      bytes(f.diskBytes),
    ];
    if (live)
      r.push(
        f.mappedBytes === null ? '-' : bytes(f.mappedBytes),
        f.hits === null ? '-' : String(f.hits),
        f.misses === null ? '-' : String(f.misses),
      );
    rows.push(r);
  }
  io.out(`storage ${report.storage}: ${report.sources} source${report.sources === 1 ? '' : 's'}\n`);
  io.out(`${table(rows)}\n`);
  if (live && report.server?.mappedBytes != null) {
    io.out(`server ${report.server.url}: ${bytes(report.server.mappedBytes)} mapped in all\n`);
  }
  return EXIT.OK;
}

// ---- verify ------------------------------------------------------------------------------------

export const VERIFY_HELP = `Usage: pixtable verify [options]

Checks every entry's CRC, trailer and key fingerprint against the index, and the index log itself.
Lists each damaged entry. Read-only (works beside a running server) unless --repair.

Options:
      --repair         drop damaged entries (re-decoded on next request) and rewrite the index
                       logs; needs the writer lock
  -f, --format NAME    only these formats (repeat or comma-separate)
      --wait SECONDS   with --repair: wait this long for the writer lock
      --json           print JSON on stdout
${STORAGE_HELP}

Exit status: 0 no damage (or all of it repaired); 1 damage found; 3 configuration;
4 storage locked (--repair); 5 storage has no tables.`;

export async function verifyCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseCommand(
    args,
    {
      repair: { type: 'boolean' },
      format: { type: 'string', short: 'f', multiple: true },
      wait: { type: 'string' },
      json: { type: 'boolean' },
    },
    VERIFY_HELP,
    io,
  );
  if (parsed === undefined) return EXIT.OK;
  const { values, positionals } = parsed;
  noPositionals(positionals, 'verify');
  const wait = numberFlag(values.wait, 'wait', 'verify', { max: 600 });
  const { config, warnings } = resolveConfig(values, io);
  for (const w of warnings) warn(io, w);
  const repair = Boolean(values.repair);
  // Warnings while opening name tables the engine could not use at all (bad header, foreign
  // file): damage that verify() cannot list entry by entry.
  const openWarnings: string[] = [];
  const logger = cliLogger(io, openWarnings);
  const cache = await openCache(
    config,
    { readOnly: !repair, formats: values.format, waitSeconds: wait, logger },
    repair ? 'verify --repair' : 'verify',
  );
  let problems: VerifyProblem[];
  let checked = 0;
  try {
    const tableProblems: VerifyProblem[] = openWarnings
      .filter((w) => /^table (unusable|rebuilt)|^segment replaced/.test(w))
      .map((w) => ({ format: tableOf(w, cache.formats), key: null, slot: null, problem: w }));
    checked = cache.stats().formats.reduce((n, f) => n + f.entries, 0);
    const entryProblems = await cache.verify({ repair });
    problems = [...tableProblems, ...entryProblems];
    if (repair && problems.length) await cache.compact();
  } finally {
    await cache.close();
  }
  if (values.json) {
    io.out(`${JSON.stringify({ storage: config.storage, checked, repaired: repair, problems }, null, 2)}\n`);
  } else {
    for (const p of problems) {
      const where = p.key !== null ? `${p.key}${p.slot !== null ? ` (slot ${p.slot})` : ''}` : '(table)';
      io.out(`damaged ${p.format} ${where}: ${oneLine(p.problem)}\n`);
    }
    if (problems.length === 0) {
      io.out(`verified ${checked} entries in ${config.storage}: no damage\n`);
    } else if (repair) {
      io.out(
        `repaired: dropped ${problems.filter((p) => p.key).length} damaged entr${problems.length === 1 ? 'y' : 'ies'} ` +
          `(re-decoded on next request) and rewrote the index logs\n`,
      );
    } else {
      io.out(
        `${problems.length} problem${problems.length === 1 ? '' : 's'} in ${checked} entries; ` +
          `damaged entries are never served (they are re-decoded on request); ` +
          `pixtable verify --repair drops them now\n`,
      );
    }
  }
  if (problems.length && !repair) return EXIT.PROBLEMS;
  return EXIT.OK;
}

function tableOf(warning: string, formats: readonly Format[]): string {
  for (const f of formats)
    if (warning.includes(`${path.sep}${f.name}"`) || warning.includes(`/${f.name}`)) return f.name;
  return '(unknown)';
}

// ---- compact -----------------------------------------------------------------------------------

export const COMPACT_HELP = `Usage: pixtable compact [options]

Rewrites every format's index log with only its live records (crash-safe: new file, then rename).
Needs the writer lock: stop the server first, or pass --wait.

Options:
      --wait SECONDS   wait this long for the writer lock (default 0: fail at once)
${STORAGE_HELP}

Exit status: 0 done; 3 configuration; 4 storage locked by another process; 6 file system.`;

function indexBytes(tables: string, formats: readonly Format[]): number {
  let n = 0;
  for (const f of formats) {
    try {
      n += fs.statSync(indexFile(tableDir(tables, f.name))).size;
    } catch {
      // no index yet
    }
  }
  return n;
}

export async function compactCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseCommand(args, { wait: { type: 'string' } }, COMPACT_HELP, io);
  if (parsed === undefined) return EXIT.OK;
  const { values, positionals } = parsed;
  noPositionals(positionals, 'compact');
  const wait = numberFlag(values.wait, 'wait', 'compact', { max: 600 });
  const { config, warnings } = resolveConfig(values, io);
  for (const w of warnings) warn(io, w);
  if (!fs.existsSync(tablesDir(config.storage))) {
    throw new CliError(EXIT.NOT_FOUND, `storage ${config.storage} holds no tables`, 'nothing to compact');
  }
  const cache = await openCache(
    config,
    { readOnly: false, waitSeconds: wait, logger: cliLogger(io) },
    'compact',
  );
  let before = 0;
  let after = 0;
  try {
    before = indexBytes(cache.tablesDir, cache.formats);
    await cache.compact();
  } finally {
    await cache.close();
  }
  after = indexBytes(tablesDir(config.storage), config.formatList);
  io.out(
    `compacted ${config.formatList.length} index log${config.formatList.length === 1 ? '' : 's'} in ${config.storage}: ${bytes(before)} -> ${bytes(after)}\n`,
  );
  return EXIT.OK;
}
