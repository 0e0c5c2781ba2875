// Every path of a storage directory, named once. The engine and the CLI (which inspects storage
// without opening it: stats of a locked store, compact's before/after sizes, export's
// "is anything cached") both go through here, so the layout in docs/ARCHITECTURE.md
// ("Storage layout") has exactly one spelling in code.
import path from 'node:path';

/** `storage/sources/`: source images, one file per key. */
export function sourcesDir(storage: string): string {
  return path.join(storage, 'sources');
}

/**
 * `storage/sources/<key>`: the source file of a validated key (validateKey), as named; symlinks
 * inside sources/ are resolved and confined by src/engine/sources.ts, not here.
 */
export function sourceFile(sourcesRoot: string, key: string): string {
  return path.join(sourcesRoot, key);
}

/** `storage/sources/.tmp/`: uploads being written and decoded, renamed over the source after. */
export function uploadsTmpDir(sourcesRoot: string): string {
  return path.join(sourcesRoot, '.tmp');
}

/** `storage/tables/`: every format's table, index and writer lock (node-local, never shared). */
export function tablesDir(storage: string): string {
  return path.join(storage, 'tables');
}

/** `storage/tables/<format>/`: the format's segments and index log. */
export function tableDir(tables: string, format: string): string {
  return path.join(tables, format);
}

/** `storage/tables/<format>.lock`: the writer's flock, holding its pid. */
export function lockFile(tables: string, format: string): string {
  return path.join(tables, `${format}.lock`);
}

/** `storage/tables/<format>.readers`: the format's reader table (pins of every reading process). */
export function readersFile(tables: string, format: string): string {
  return path.join(tables, `${format}.readers`);
}

/**
 * `storage/tables/<format>.keys`: the format's key map (key → slot, mapped by every process),
 * beside the table directory, not in it: a writer that rebuilds the table must still find the
 * old map to retire it.
 */
export function keysFile(tables: string, format: string): string {
  return path.join(tables, `${format}.keys`);
}

/** `storage/tables/<format>/index.log`: the format's key → slot log. */
export function indexFile(table: string): string {
  return path.join(table, 'index.log');
}

/** `storage/tables/<format>/seg-00000.tbl` …: the format's segments of at most 1 GiB. */
export function segmentFile(table: string, segment: number): string {
  return path.join(table, `seg-${String(segment).padStart(5, '0')}.tbl`);
}

/**
 * `storage/tables/<format>.place`: placeholders (ThumbHash, dominant colour) of the format's
 * entries, one fixed record per slot, beside the table directory like the key map.
 */
export function placeholdersFile(tables: string, format: string): string {
  return path.join(tables, `${format}.place`);
}
