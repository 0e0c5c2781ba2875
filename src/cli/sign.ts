// `pixtable sign <path-and-query>`: a signed request target for the server's own key, so that
// signers need not reimplement the scheme (docs/http.md, "Signed URLs"): the method is part of
// what is signed, `--expires` adds `exp`, `--body FILE` binds an upload to one file's bytes.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SIGNED_METHODS, signUrl } from '../http/sign.js';
import * as is from '../is.js';
import {
  CliError,
  EXIT,
  FLAG_CODE,
  checkFlag,
  numberFlag,
  resolveConfig,
  usage,
  warn,
  type Io,
} from './common.js';

export const SIGN_HELP = `Usage: pixtable sign [options] <path-and-query>

Prints <path-and-query> signed for this server (docs/http.md, "Signed URLs") with the first key
of PIXTABLE_KEY/PIXTABLE_SALT, the server's own variables. Give the path percent-encoded, as it
will be sent: /v1/thumbnails/thumb-256/a%20b.jpg?type=webp. A signature covers the method, the
path and the query; sig is appended last.

Options:
  -X, --method METHOD    GET (default; HEAD is checked as GET), PUT or DELETE
      --expires SECONDS  the URL stops working SECONDS from now (adds exp=; 1 to 315360000)
      --body FILE        PUT only: the URL uploads exactly these bytes (adds sha256=)
      --base URL         print a whole URL, the signed target after URL (http://host:port)
  -h, --help             show this help

Exit status: 0 printed; 2 usage; 3 configuration (PIXTABLE_KEY/PIXTABLE_SALT unset or invalid);
5 the --body file does not exist; 6 it cannot be read.`;

const MAX_EXPIRES_S = 10 * 365 * 86_400;

export async function signCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      method: { type: 'string', short: 'X' },
      expires: { type: 'string' },
      body: { type: 'string' },
      base: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.out(`${SIGN_HELP}\n`);
    return EXIT.OK;
  }
  const [target, extra] = positionals;
  if (target === undefined) throw usage('the path and query to sign are missing', 'sign');
  if (extra !== undefined) throw usage(`unexpected argument ${JSON.stringify(extra)}`, 'sign');
  checkFlag('sign', () =>
    // what the lane and Node read as a target, and nothing a shell or a copy could change
    is.ensure(
      /^\/[\x21-\x7e]*$/.test(target),
      '<path-and-query>',
      'a path starting with /, percent-encoded',
      target,
      FLAG_CODE,
    ),
  );
  if (/[?&]sig=/.test(target)) throw usage('the path and query already carry a sig', 'sign');
  const method = checkFlag('sign', () =>
    is.oneOf(
      '--method',
      (values.method ?? 'GET').toUpperCase(),
      [...SIGNED_METHODS, 'HEAD'] as const,
      FLAG_CODE,
    ),
  );
  const expires = numberFlag(values.expires, 'expires', 'sign', {
    min: 1,
    max: MAX_EXPIRES_S,
    integer: true,
  });
  if (values.body !== undefined && method !== 'PUT')
    throw usage('--body binds an upload: use it with --method PUT', 'sign');
  const base = values.base;
  if (base !== undefined)
    checkFlag('sign', () =>
      is.ensure(
        /^https?:\/\/[^/?#]+\/?$/.test(base),
        '--base',
        'http://host[:port] or https://…',
        base,
        FLAG_CODE,
      ),
    );

  const { config, warnings } = resolveConfig({}, io);
  for (const w of warnings) warn(io, w);
  const key = config.signingKeys[0];
  if (key === undefined)
    throw new CliError(
      EXIT.CONFIG,
      'PIXTABLE_KEY and PIXTABLE_SALT are not set',
      "set them to the server's key and salt (hex) in this command's environment",
    );
  const params: string[] = [];
  if (expires !== undefined) params.push(`exp=${Math.floor(Date.now() / 1000) + expires}`);
  if (values.body !== undefined) params.push(`sha256=${await fileDigest(path.resolve(io.cwd, values.body))}`);
  let signed = target;
  for (const p of params) signed += `${signed.includes('?') ? '&' : '?'}${p}`;
  io.out(`${base === undefined ? '' : base.replace(/\/$/, '')}${signUrl(signed, key, method)}\n`);
  return EXIT.OK;
}

async function fileDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
