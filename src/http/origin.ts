// Fetching sources from an HTTP origin (PIXTABLE_ORIGIN) on a cache miss, defended against SSRF:
// - only http/https, only the origin's host and PIXTABLE_ORIGIN_ALLOW_HOSTS, at every redirect hop;
// - every address a name resolves to must be public unicast (loopback, private, link-local,
//   unique-local, CGNAT, multicast, IPv4-mapped/translated IPv6 ... refused) unless inside
//   PIXTABLE_ORIGIN_ALLOW_NETWORKS; the socket then connects to exactly the addresses we checked
//   (our own `lookup`), so DNS cannot answer differently between check and connect (rebinding);
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

/** Whether a fetch may connect to `address` under `allowNetworks` (CIDR strings). */
export function isAddressAllowed(address: string, allowNetworks: readonly string[]): boolean {
  let parsed: Addr;
  try {
    // process(): "::ffff:127.0.0.1" becomes the IPv4 address it really is
    parsed = ipaddr.process(address);
  } catch {
    return false;
  }
  for (const cidr of allowNetworks) {
    try {
      const [net, bits] = ipaddr.parseCIDR(cidr);
      if (net.kind() === parsed.kind() && parsed.match([net, bits] as [Addr, number])) return true;
    } catch {
      // validated at config time; an unparsable entry allows nothing
    }
  }
  // 'unicast' is ipaddr.js' name for "in no special-purpose range": public addresses only.
  return parsed.range() === 'unicast';
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
