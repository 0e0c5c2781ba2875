// `pixtable serve`: every server setting is an environment variable (src/config/env.ts) and the
// same setting as a flag: PIXTABLE_DECODE_CONCURRENCY=4 ≡ --decode-concurrency 4, PORT ≡ --port.
// Flags are translated to their variables and the one loader validates both, so a value is
// checked, and its error worded, the same way whichever way it arrives.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ENV_VARS, type ServerConfig } from '../config/env.js';
import { isPixtableError } from '../errors.js';
import {
  CliError,
  EXIT,
  describeError,
  exitCodeFor,
  lockHolder,
  resolveConfig,
  usage,
  warn,
  type Io,
} from './common.js';

interface Setting {
  env: string;
  flag: string;
  /** Takes no value: `--read-only` sets "true", `--no-revalidate` sets "false". */
  boolean?: boolean;
  help: string;
}

// Descriptions of the variables the server reads. A variable added to ENV_VARS later still gets
// a flag (derived from its name) before it gets a line here.
const HELP: Record<string, string> = {
  PORT: 'TCP port to listen on (default 8080; 0 picks a free one)',
  HOST: 'address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces)',
  PIXTABLE_STORAGE: 'data directory with sources/ and tables/ (default ./storage)',
  PIXTABLE_FORMATS: 'JSON array of formats (default thumb-64, thumb-256, preview-1024)',
  PIXTABLE_READ_ONLY: 'serve what is cached, decode nothing, take no lock',
  PIXTABLE_SYNC: 'none, batch (default) or always: when writes are flushed to disk',
  PIXTABLE_MAX_MAPPED_BYTES: 'bound on mapped table bytes (default 512 MiB)',
  PIXTABLE_REVALIDATE: 're-check that the source file is unchanged before serving a hit (default true)',
  PIXTABLE_REVALIDATE_MS: 'skip that check for a source confirmed less than this many ms ago (default 1000)',
  PIXTABLE_DECODE_CONCURRENCY: 'decodes at once (default: CPU count)',
  PIXTABLE_DECODE_QUEUE: 'decodes waiting beyond that; more get 503 (default 64)',
  PIXTABLE_DECODE_TIMEOUT_MS: 'time one decode may take (default 30000)',
  PIXTABLE_MAX_INPUT_PIXELS: 'largest source in pixels (default 50000000)',
  PIXTABLE_MAX_UPLOAD_BYTES: 'largest source / upload in bytes (default 52428800)',
  PIXTABLE_ENCODE_CONCURRENCY: 'thumbnail encodes at once (default: half the CPU count, at least 1)',
  PIXTABLE_ENCODE_QUEUE: 'thumbnail encodes waiting beyond that; more get 503 (default 64)',
  PIXTABLE_MIN_FREE_BYTES:
    '/readyz is 503 below this many free bytes on the storage volume (default max(512 MiB, 4 × upload cap); 0 off)',
  PIXTABLE_ALLOW_NETWORK_FS:
    'open tables on a network, FUSE or removable file system (SIGBUS risk; default false)',
  PIXTABLE_MAX_CONCURRENT_UPLOADS: 'uploads received at once; more get 503 (default 8, 1-1024)',
  PIXTABLE_THUMB_CACHE_BYTES: 'bytes of encoded thumbnails kept in memory (default 64 MiB)',
  PIXTABLE_THUMB_QUALITY: 'webp/jpeg/avif quality 1-100',
  PIXTABLE_THUMB_TYPES: 'preferred encodings, comma-separated (default webp,avif)',
  PIXTABLE_VARIANT_WIDTHS:
    'thumbnail variant sizes in device pixels, comma-separated; ?w/?h round up to the next (default 32…3840)',
  PIXTABLE_CACHE_CONTROL: 'Cache-Control of cached content (default "public, max-age=3600")',
  PIXTABLE_KEY: 'hex HMAC key(s) for signed URLs, comma-separated (rotation)',
  PIXTABLE_SALT: 'hex salt(s), one per key',
  PIXTABLE_ORIGIN: 'base URL to fetch missing sources from',
  PIXTABLE_ORIGIN_ALLOW_HOSTS: 'hosts the origin may redirect to (*.suffix allowed)',
  PIXTABLE_ORIGIN_ALLOW_NETWORKS: 'private CIDRs the origin may reach (explicit opt-in)',
  PIXTABLE_ORIGIN_CONNECT_TIMEOUT_MS: 'origin connect timeout (default 5000)',
  PIXTABLE_ORIGIN_READ_TIMEOUT_MS: 'origin read timeout (default 10000)',
  PIXTABLE_ORIGIN_MAX_BYTES: 'origin body cap (default: the upload cap)',
  PIXTABLE_ORIGIN_MAX_REDIRECTS: 'origin redirects followed (default 3)',
  PIXTABLE_REQUEST_TIMEOUT_MS: 'time for a whole request to arrive (default 60000)',
  PIXTABLE_HEADERS_TIMEOUT_MS: 'time for request headers to arrive (default 10000)',
  PIXTABLE_IDLE_TIMEOUT_MS: 'socket inactivity timeout (default 30000)',
  PIXTABLE_KEEP_ALIVE_TIMEOUT_MS: 'keep-alive timeout (default 5000)',
  PIXTABLE_SHUTDOWN_TIMEOUT_MS: 'grace period for in-flight requests on SIGTERM (default 10000)',
  PIXTABLE_LOG_LEVEL: 'fatal, error, warn, info (default), debug, trace or silent',
  PIXTABLE_LOG_REQUESTS: 'one JSON log line per request (default true)',
  PIXTABLE_FAST_LANE: 'answer cache hits from the socket before Node’s HTTP server (default true)',
  PIXTABLE_CORS_ORIGIN: 'Access-Control-Allow-Origin value (default: no CORS headers)',
  PIXTABLE_PEERS:
    'replica base URLs (comma-separated) sent a purge after a PUT or DELETE of a source (default: none)',
  PIXTABLE_PEERS_TIMEOUT_MS: 'bound on each purge call to a peer, ms (default 2000, 1..60000)',
  PIXTABLE_WORKERS:
    'serving processes (default: CPUs); 1 = one process, N ≥ 2 = a writer plus N workers on one port',
  PIXTABLE_DISTRIBUTION:
    'how workers get connections: auto (default: reuseport where Node has it, else shared), reuseport, shared, round-robin',
  PIXTABLE_S3_BUCKET: 'keep sources in this S3-compatible bucket instead of storage/sources/',
  PIXTABLE_S3_ENDPOINT: 'S3-compatible endpoint URL (default: AWS for the region)',
  PIXTABLE_S3_PREFIX: 'prefix of the source objects in the bucket (default none)',
  PIXTABLE_S3_REGION: 'region requests are signed for (default us-east-1)',
  PIXTABLE_S3_FORCE_PATH_STYLE: 'path-style bucket URLs (default true with an endpoint)',
  PIXTABLE_S3_TIMEOUT_MS: 'deadline of one S3 operation, body included (default 10000)',
  PIXTABLE_S3_MAX_ATTEMPTS: 'attempts per S3 request (default 3)',
};

const BOOLEAN_VARS = new Set([
  'PIXTABLE_READ_ONLY',
  'PIXTABLE_ALLOW_NETWORK_FS',
  'PIXTABLE_REVALIDATE',
  'PIXTABLE_LOG_REQUESTS',
  'PIXTABLE_FAST_LANE',
]);
/** Booleans that default to true: their flag is the negation (`--no-revalidate`). */
const DEFAULT_TRUE = new Set(['PIXTABLE_REVALIDATE', 'PIXTABLE_LOG_REQUESTS', 'PIXTABLE_FAST_LANE']);

/** PIXTABLE_DECODE_CONCURRENCY → decode-concurrency, PORT → port. */
export function flagName(env: string): string {
  return env
    .replace(/^PIXTABLE_/, '')
    .toLowerCase()
    .replaceAll('_', '-');
}

export function serveSettings(vars: readonly string[] = ENV_VARS): Setting[] {
  return vars.map((env) => {
    const base = flagName(env);
    const boolean = BOOLEAN_VARS.has(env);
    return {
      env,
      flag: boolean && DEFAULT_TRUE.has(env) ? `no-${base}` : base,
      boolean,
      help: HELP[env] ?? 'see docs/config.md',
    };
  });
}

export function serveHelp(settings: Setting[] = serveSettings()): string {
  const entry = (flag: string, env: string, help: string) =>
    `  ${flag.padEnd(32)} ${env}\n${' '.repeat(6)}${help}`;
  const lines = settings.map((s) => {
    const short = s.flag === 'storage' ? '-s, ' : s.flag === 'port' ? '-p, ' : '';
    const value = s.boolean ? '' : s.flag === 'storage' ? ' DIR' : ' VALUE';
    const env = s.boolean ? `${s.env}=${DEFAULT_TRUE.has(s.env) ? 'false' : 'true'}` : s.env;
    return entry(`${short}--${s.flag}${value}`, env, s.help);
  });
  lines.push(
    entry(
      '-c, --config FILE',
      'PIXTABLE_CONFIG',
      'JSON file with a "formats" array (and optionally "storage")',
    ),
    `  -h, --help\n      show this help`,
  );
  return `Usage: pixtable serve [options]

Starts the HTTP server (GET / is the web page; API under /v1/, /healthz, /readyz, /metrics).
Every option is also an environment variable; a flag wins over its variable. SIGTERM or SIGINT
drains in-flight requests, flushes the index and exits 0.

Options (flag, environment variable, meaning):
${lines.join('\n')}

Exit status: 0 stopped by a signal; 3 configuration; 4 another process holds the storage's
writer lock (another server? use PIXTABLE_READ_ONLY=true for a second, read-only server);
6 file system (storage not writable, port in use).`;
}

/** Translates serve's flags into their environment variables. */
export function serveEnv(args: string[], settings: Setting[] = serveSettings()) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    storage: { type: 'string', short: 's' },
    config: { type: 'string', short: 'c' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const s of settings) {
    if (s.flag === 'storage') continue;
    options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
    if (s.flag === 'port') options[s.flag]!.short = 'p';
  }
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options });
  const env: Record<string, string> = {};
  for (const s of settings) {
    if (s.flag === 'storage') continue;
    const v = values[s.flag];
    if (v === undefined) continue;
    if (s.boolean) env[s.env] = DEFAULT_TRUE.has(s.env) ? 'false' : 'true';
    else env[s.env] = String(v);
  }
  return {
    env,
    positionals,
    help: values.help === true,
    storage: values.storage as string | undefined,
    config: values.config as string | undefined,
  };
}

/** A failure to start as the operator should read it: who holds the lock, which port is taken. */
function explainStartError(e: unknown, config: ServerConfig): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (isPixtableError(e) && e.code === 'STORAGE_LOCKED') {
    return new CliError(
      EXIT.LOCKED,
      `storage ${config.storage} is locked by process ${lockHolder(config.storage, config.formats) ?? '(unknown)'} (another server?)`,
      'stop it, point --storage elsewhere, or start this one read-only with --read-only / PIXTABLE_READ_ONLY=true',
    );
  }
  if (code === 'EADDRINUSE') {
    return new CliError(
      EXIT.IO,
      `port ${config.port} on ${config.host} is already in use`,
      'stop the other listener or pick another port with --port / PORT',
    );
  }
  return e;
}

export async function serveCommand(args: string[], io: Io): Promise<number | 'running'> {
  const parsed = serveEnv(args);
  if (parsed.help) {
    io.out(`${serveHelp()}\n`);
    return EXIT.OK;
  }
  if (parsed.positionals.length) {
    throw usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`, 'serve');
  }
  const { config, warnings } = resolveConfig(
    { storage: parsed.storage, config: parsed.config },
    io,
    parsed.env,
  );
  const role = cluster.isWorker ? io.env.PIXTABLE_SERVE_ROLE : undefined;
  if (role === undefined) for (const w of warnings) warn(io, w);
  if (role === undefined && config.workers >= 2) {
    // Loaded here, not at the top: the other commands never pay for it.
    const { superviseServe } = await import('../serve/supervisor.js');
    try {
      return await superviseServe({ config, args });
    } catch (e) {
      throw explainStartError(e, config);
    }
  }
  try {
    if (role === 'writer' || role === 'worker') {
      const { runServeChild } = await import('../serve/child.js');
      await runServeChild(
        // the port the supervisor claimed for all of them (reuseport, port 0)
        { ...config, port: Number(io.env.PIXTABLE_SERVE_PORT ?? config.port) },
        role,
        io.env.PIXTABLE_SERVE_SOCKET ?? '',
        io.env.PIXTABLE_SERVE_WORKER ?? '',
      );
    } else {
      // Loaded here, not at the top: the other commands never pay for fastify.
      const { startServer } = await import('../http/server.js');
      await startServer(config);
    }
  } catch (e) {
    const err = explainStartError(e, config);
    if (role === undefined) throw err;
    // A process of --workers N that cannot start says why and exits with the code (its IPC
    // channel would keep it alive); the supervisor then stops the others with the same code.
    io.err(`${describeError(err, 'serve')}\n`);
    process.exit(exitCodeFor(err));
  }
  return 'running';
}
