// The SSRF guard's address policy (src/http/origin.ts) for IPv6 addresses that carry an IPv4
// address: each is judged by the IPv4 address a packet to it reaches, never by the IPv6 range
// alone (`::7f00:1` is 127.0.0.1 written as IPv4-compatible IPv6, and ipaddr.js calls it unicast).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ipaddr from 'ipaddr.js';
import { embeddedIPv4, isAddressAllowed } from '../../src/http/origin.js';

/** Teredo (RFC 4380): server in bits 32–63, the client's address XOR 0xffffffff in the last 32. */
function teredo(server: string, client: string): string {
  const s = ipaddr.IPv4.parse(server).toByteArray();
  const c = ipaddr.IPv4.parse(client)
    .toByteArray()
    .map((b) => b ^ 0xff);
  const h = (a: number, b: number) => ((a << 8) | b).toString(16);
  return `2001:0:${h(s[0]!, s[1]!)}:${h(s[2]!, s[3]!)}:8000:63bf:${h(c[0]!, c[1]!)}:${h(c[2]!, c[3]!)}`;
}

/** Every IPv6 form that embeds `v4`, as a resolver or a URL may spell it. */
function forms(v4: string): Record<string, string> {
  const [a, b, c, d] = ipaddr.IPv4.parse(v4).toByteArray() as [number, number, number, number];
  const hi = ((a << 8) | b).toString(16);
  const lo = ((c << 8) | d).toString(16);
  return {
    'IPv4-compatible, hex': `::${hi}:${lo}`,
    'IPv4-compatible, dotted': `::${v4}`,
    'IPv4-compatible, long form': `0:0:0:0:0:0:${hi}:${lo}`,
    'IPv4-mapped, dotted': `::ffff:${v4}`,
    'IPv4-mapped, hex': `::ffff:${hi}:${lo}`,
    'IPv4-translated (RFC 6145)': `::ffff:0:${hi}:${lo}`,
    'NAT64 (64:ff9b::/96)': `64:ff9b::${hi}:${lo}`,
    'NAT64, dotted': `64:ff9b::${v4}`,
    '6to4 (2002::/16)': `2002:${hi}:${lo}::1`,
    'Teredo client': teredo('65.54.227.120', v4),
  };
}

test('embeddedIPv4 finds the IPv4 address of each form, and nothing in other IPv6 addresses', () => {
  for (const [what, a] of Object.entries(forms('127.0.0.1'))) {
    const inner = embeddedIPv4(ipaddr.IPv6.parse(new URL(`http://[${a}]/`).hostname.slice(1, -1)));
    assert.ok(inner, what);
    assert.equal(inner.at(-1)!.toString(), '127.0.0.1', what);
  }
  assert.deepEqual(
    embeddedIPv4(ipaddr.IPv6.parse(teredo('10.0.0.1', '8.8.8.8')))?.map(String),
    ['10.0.0.1', '8.8.8.8'],
    'Teredo: server and client',
  );
  for (const a of ['::', '::1', '2001:4860:4860::8888', 'fe80::1', '64:ff9b:1::1', '2001:db8::1'])
    assert.equal(embeddedIPv4(ipaddr.IPv6.parse(a)), undefined, a);
});

test('an IPv6 form of a blocked IPv4 address is blocked, whichever form', () => {
  for (const v4 of ['127.0.0.1', '10.1.2.3', '192.168.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0']) {
    assert.equal(isAddressAllowed(v4, []), false, v4);
    for (const [what, a] of Object.entries(forms(v4)))
      assert.equal(isAddressAllowed(a, []), false, `${what} ${a}`);
  }
  assert.equal(isAddressAllowed('::7f00:1', []), false, 'the finding: 127.0.0.1 as IPv4-compatible IPv6');
  // a Teredo address is refused when either of its IPv4 addresses is
  assert.equal(isAddressAllowed(teredo('10.0.0.1', '8.8.8.8'), []), false, 'private Teredo server');
  // IPv6's own special addresses in ::/96 stay what they are
  assert.equal(isAddressAllowed('::', []), false);
  assert.equal(isAddressAllowed('::1', []), false);
});

test('an IPv6 form of a public IPv4 address is judged public; allowNetworks apply to the embedded address', () => {
  for (const [what, a] of Object.entries(forms('8.8.8.8')))
    assert.equal(isAddressAllowed(a, []), true, `${what} ${a}`);
  for (const [what, a] of Object.entries(forms('10.9.8.7'))) {
    assert.equal(isAddressAllowed(a, ['10.0.0.0/8']), true, `${what} ${a}`);
    assert.equal(isAddressAllowed(a, ['10.0.0.0/16']), false, `${what} ${a}`);
  }
  assert.equal(isAddressAllowed('64:ff9b::a00:1', ['64:ff9b::/96']), true, 'an allowed IPv6 network as such');
  // local-use NAT64 (RFC 8215) has no fixed place for the IPv4 address: special, refused
  assert.equal(isAddressAllowed('64:ff9b:1::808:808', []), false);
  assert.equal(isAddressAllowed('2001:4860:4860::8888', []), true);
  assert.equal(isAddressAllowed('not an address', []), false);
  assert.equal(isAddressAllowed('fe80::1%eth0', []), false);
});
