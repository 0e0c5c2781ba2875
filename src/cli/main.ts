#!/usr/bin/env node
// The `pixtable` command. Every failure ends as one line on stderr (cause; what to do) and a
// documented exit code (docs/cli.md); PIXTABLE_DEBUG=1 adds the stack.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EXIT, describeError, exitCodeFor, processIo, usage, type Io } from './common.js';
import { importCommand } from './import.js';
import { compactCommand, statsCommand, verifyCommand } from './ops.js';
import { exportCommand } from './export.js';
import { serveCommand } from './serve.js';
import { signCommand } from './sign.js';
import { followParent, rerunWithPool, wantedPoolSize } from './threadpool.js';

export const MAIN_HELP = `Usage: pixtable <command> [options]

A decoded-image cache: images decoded once into memory-mapped bitmap tables.

Commands:
  serve                          start the HTTP server (and the web page at /)
  import <dir|file>...           decode images into every format (progress, summary)
  stats                          entries, capacity and disk use per format
  verify                         check every entry's CRC and fingerprints; list damage
  compact                        rewrite the index logs with only live records
  export <format> <key> -o FILE  write an entry as .png/.webp/.jpg/.avif or raw rows
  sign <path-and-query>          a signed URL for the server's PIXTABLE_KEY (method, expiry, body)

Run pixtable <command> --help for its options. Common options: --storage DIR (env
PIXTABLE_STORAGE, default ./storage) and --config FILE (env PIXTABLE_CONFIG, a JSON file with a
"formats" array). Read-only commands (stats, verify, export of cached entries) work while a server
runs on the same storage; commands that write need its writer lock and say so when they cannot
get it.

Exit status: 0 ok; 1 problems found (failed imports, damaged entries); 2 usage; 3 configuration;
4 storage locked by another process; 5 not found; 6 file system; 70 internal error;
75 temporarily unavailable (retry); 130 interrupted.`;

type Command = (args: string[], io: Io) => Promise<number | 'running'>;

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  import: importCommand,
  stats: statsCommand,
  verify: verifyCommand,
  compact: compactCommand,
  export: exportCommand,
  sign: signCommand,
};

function version(): string {
  try {
    const pkg = JSON.parse(
      fs.readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8'),
    ) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs one command line; resolves to the exit code, or 'running' for a server left listening. */
export async function main(argv: string[], io: Io = processIo()): Promise<number | 'running'> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === 'help' && rest[0] && COMMANDS[rest[0]]) return main([rest[0], '--help'], io);
    io.out(`${MAIN_HELP}\n`);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === '--version' || name === '-V') {
    io.out(`pixtable ${version()}\n`);
    return EXIT.OK;
  }
  const command = COMMANDS[name];
  try {
    if (!command) {
      throw usage(
        name.startsWith('-')
          ? `options go after the command: pixtable <command> ${name}`
          : `unknown command ${JSON.stringify(name)} (commands: ${Object.keys(COMMANDS).join(', ')})`,
      );
    }
    return await command(rest, io);
  } catch (e) {
    io.err(`${describeError(e, command ? name : '')}\n`);
    if (io.env.PIXTABLE_DEBUG && e instanceof Error && e.stack) io.err(`${e.stack}\n`);
    return exitCodeFor(e);
  }
}

// Run when executed (bin, `node dist/src/cli/main.js`), not when imported by tests.
const entry = process.argv[1] ? fs.realpathSync(process.argv[1]) : '';
// `serve` sizes libuv's thread pool by running itself again (src/cli/threadpool.ts says why).
const pool =
  entry === fileURLToPath(import.meta.url) ? wantedPoolSize(process.argv.slice(2), process.env) : undefined;
if (pool !== undefined) rerunWithPool(pool);
else if (entry === fileURLToPath(import.meta.url)) {
  followParent();
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== 'running') process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${describeError(e, '')}\n`);
      process.exitCode = EXIT.INTERNAL;
    },
  );
}
