// Fetching sources from an HTTP origin (PIXTABLE_ORIGIN) on a cache miss, defended against SSRF:
// - only http/https, only the origin's host and PIXTABLE_ORIGIN_ALLOW_HOSTS, at every redirect hop;
// - every address a name resolves to must be public unicast (loopback, private, link-local,
//   unique-local, CGNAT, multicast ... refused; an IPv6 form that carries an IPv4 address is
//   judged by that address) unless inside PIXTABLE_ORIGIN_ALLOW_NETWORKS; the socket then
//   connects to exactly the addresses we checked (our own `lookup`), so DNS cannot answer
//   differently between check and connect (rebinding);
// - connect and read timeouts, a byte cap enforced while streaming, a bounded redirect chain.
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { PixtableError } from '../errors.js';
import type { OriginConfig } from '../config/env.js';
import { encodeKey } from './keys.js';

type Addr = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * `address` parsed, IPv6 in the form WHATWG URL (and so the fetch) gives it: ipaddr.js reads the
 * IPv4-compatible `::127.0.0.1` as the mapped `::ffff:127.0.0.1`, which is another address.
 */
function parseAddress(address: string): Addr | undefined {
  try {
    if (!address.includes(':')) return ipaddr.IPv4.parse(address);
    return ipaddr.IPv6.parse(new URL(`http://[${address}]/`).hostname.slice(1, -1));
  } catch {
    return undefined;
  }
}

function v4(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/**
 * The IPv4 addresses a packet to this IPv6 address ends up at, for the forms that carry one:
 * IPv4-compatible `::a.b.c.d` and mapped `::ffff:a.b.c.d` (RFC 4291), translated
 * `::ffff:0:a.b.c.d` (RFC 6145), NAT64 `64:ff9b::/96` (RFC 6052), 6to4 `2002:AABB:CCDD::/48`
 * (RFC 3056), and Teredo `2001:0:S:S:flags:port:C:C` (RFC 4380): its server S and its client,
 * the last 32 bits XOR 0xffffffff. Undefined for other addresses, and for `::` and `::1`, which
 * are IPv6's own unspecified and loopback addresses.
 */
export function embeddedIPv4(a: ipaddr.IPv6): ipaddr.IPv4[] | undefined {
  const w = a.parts as [number, number, number, number, number, number, number, number];
  const zero = (from: number, to: number) => w.slice(from, to).every((x) => x === 0);
  if (zero(0, 5)) {
    if (w[5] === 0xffff) return [v4(w[6], w[7])];
    if (w[5] === 0) return w[6] === 0 && w[7] <= 1 ? undefined : [v4(w[6], w[7])];
  }
  if (zero(0, 4) && w[4] === 0xffff && w[5] === 0) return [v4(w[6], w[7])];
  if (w[0] === 0x64 && w[1] === 0xff9b && zero(2, 6)) return [v4(w[6], w[7])];
  if (w[0] === 0x2002) return [v4(w[1], w[2])];
  if (w[0] === 0x2001 && w[1] === 0) return [v4(w[2], w[3]), v4(w[6] ^ 0xffff, w[7] ^ 0xffff)];
  return undefined;
}

function inNetworks(a: Addr, allowNetworks: readonly string[]): boolean {
  for (const cidr of allowNetworks) {
    try {
      const [net, bits] = ipaddr.parseCIDR(cidr);
      if (net.kind() === a.kind() && a.match([net, bits] as [Addr, number])) return true;
    } catch {
      // validated at config time; an unparsable entry allows nothing
    }
  }
  return false;
}

/**
 * Whether a fetch may connect to `address` under `allowNetworks` (CIDR strings). An IPv6 address
 * that carries IPv4 addresses (embeddedIPv4) is judged by them: every one must be allowed.
 */
export function isAddressAllowed(address: string, allowNetworks: readonly string[]): boolean {
  const parsed = parseAddress(address);
  if (parsed === undefined) return false;
  if (inNetworks(parsed, allowNetworks)) return true;
  const inner = parsed.kind() === 'ipv6' ? embeddedIPv4(parsed as ipaddr.IPv6) : undefined;
  // 'unicast' is ipaddr.js' name for "in no special-purpose range": public addresses only.
  if (inner === undefined) return parsed.range() === 'unicast';
  return inner.every((a) => inNetworks(a, allowNetworks) || a.range() === 'unicast');
}

function hostAllowed(host: string, o: OriginConfig): boolean {
  const h = host.toLowerCase();
  if (h === o.base.hostname.toLowerCase()) return true;
  return o.allowHosts.some((p) =>
    p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p,
  );
}

interface Resolved {
  address: string;
  family: number;
}

async function resolve(hostname: string, o: OriginConfig): Promise<Resolved[]> {
  const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  let addrs: Resolved[];
  if (ipaddr.isValid(bare)) {
    addrs = [{ address: bare, family: bare.includes(':') ? 6 : 4 }];
  } else {
    try {
      addrs = await dns.promises.lookup(bare, { all: true, verbatim: true });
    } catch (e) {
      throw new PixtableError('ORIGIN_FAILED', `cannot resolve ${bare}`, { cause: e });
    }
  }
  // Refuse when ANY address is blocked: a name that mixes public and private answers is not trusted.
  for (const a of addrs) {
    if (!isAddressAllowed(a.address, o.allowNetworks)) {
      throw new PixtableError(
        'ORIGIN_FORBIDDEN',
        `${bare} resolves to ${a.address}, which is not a public address`,
      );
    }
  }
  if (addrs.length === 0) throw new PixtableError('ORIGIN_FAILED', `${bare} has no addresses`);
  return addrs;
}

function pinnedLookup(addrs: Resolved[]): LookupFunction {
  return ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    if (opts?.all) cb(null, addrs);
    else cb(null, addrs[0]?.address, addrs[0]?.family);
  }) as unknown as LookupFunction;
}

interface Hop {
  status: number;
  location?: string;
  body?: Buffer;
}

function once(url: URL, addrs: Resolved[], o: OriginConfig, signal: AbortSignal | undefined): Promise<Hop> {
  return new Promise<Hop>((resolvePromise, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    let settled = false;
    const fail = (e: PixtableError) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(readTimer);
      req.destroy();
      reject(e);
    };
    const req = mod.request(url, {
      method: 'GET',
      lookup: pinnedLookup(addrs),
      agent: false,
      headers: { accept: 'image/*', 'user-agent': 'pixtable' },
      signal,
    });
    let readTimer: NodeJS.Timeout | undefined;
    const connectTimer = setTimeout(
      () =>
        fail(
          new PixtableError('ORIGIN_TIMEOUT', `no connection to ${url.host} within ${o.connectTimeoutMs} ms`),
        ),
      o.connectTimeoutMs,
    );
    req.on('socket', (s) => {
      const started = () => {
        clearTimeout(connectTimer);
        readTimer = setTimeout(
          () =>
            fail(
              new PixtableError(
                'ORIGIN_TIMEOUT',
                `${url.host} did not send the image within ${o.readTimeoutMs} ms`,
              ),
            ),
          o.readTimeoutMs,
        );
      };
      if (s.connecting) s.once('connect', started);
      else started();
    });
    req.on('error', (e) => {
      if (signal?.aborted) fail(new PixtableError('ORIGIN_FAILED', 'the fetch was aborted', { cause: e }));
      else fail(new PixtableError('ORIGIN_FAILED', `${url.host}: ${(e as Error).message}`, { cause: e }));
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        settled = true;
        clearTimeout(readTimer);
        req.destroy();
        resolvePromise({ status, location: res.headers.location });
        return;
      }
      if (status !== 200) {
        res.resume();
        settled = true;
        clearTimeout(readTimer);
        req.destroy();
        resolvePromise({ status });
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        fail(
          new PixtableError(
            'SOURCE_TOO_LARGE',
            `the origin declares ${declared} bytes; the cap is ${o.maxBytes}`,
          ),
        );
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (c: Buffer) => {
        total += c.length;
        if (total > o.maxBytes) {
          fail(new PixtableError('SOURCE_TOO_LARGE', `the origin sent more than ${o.maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(readTimer);
        resolvePromise({ status, body: Buffer.concat(chunks, total) });
      });
      res.on('error', (e) =>
        fail(new PixtableError('ORIGIN_FAILED', `${url.host}: ${e.message}`, { cause: e })),
      );
    });
    req.end();
  });
}

/** Fetches the source for `key` from the origin. Rejects with a PixtableError (ORIGIN_*, SOURCE_*). */
export async function fetchFromOrigin(o: OriginConfig, key: string, signal?: AbortSignal): Promise<Buffer> {
  let url = new URL(encodeKey(key), o.base);
  for (let hop = 0; ; hop++) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new PixtableError('ORIGIN_FORBIDDEN', `redirect to a ${url.protocol} URL`);
    }
    if (url.username || url.password)
      throw new PixtableError('ORIGIN_FORBIDDEN', 'URLs with credentials are refused');
    if (!hostAllowed(url.hostname, o)) {
      throw new PixtableError(
        'ORIGIN_FORBIDDEN',
        `host ${url.hostname} is not in PIXTABLE_ORIGIN_ALLOW_HOSTS`,
      );
    }
    const addrs = await resolve(url.hostname, o);
    const r = await once(url, addrs, o, signal);
    if (r.body) {
      if (r.body.length === 0) throw new PixtableError('EMPTY_SOURCE', 'the origin returned an empty body');
      return r.body;
    }
    if (r.location !== undefined) {
      if (hop >= o.maxRedirects)
        throw new PixtableError('ORIGIN_FAILED', `more than ${o.maxRedirects} redirects`);
      try {
        url = new URL(r.location, url);
      } catch {
        throw new PixtableError('ORIGIN_FAILED', 'the origin sent an invalid redirect');
      }
      continue;
    }
    if (r.status === 404 || r.status === 410)
      throw new PixtableError('SOURCE_NOT_FOUND', `the origin answered ${r.status}`);
    throw new PixtableError('ORIGIN_FAILED', `the origin answered ${r.status}`);
  }
}
