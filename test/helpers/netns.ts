// Network namespaces for tests that need machines of their own (ip netns and veth pairs from
// iproute2, as root): namespace i gets a veth pair, the host end 10.231.S.1/30 and the
// namespace end 10.231.S.2/30, where S is this run's subnet number, so a replica inside listens
// on an address of its own and the host reaches it, and it the host, across a real link. Each
// namespace's default route is the host, which forwards between them (net.ipv4.ip_forward, set
// for the test's lifetime and restored after), so replicas reach one another (PIXTABLE_PEERS).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
/** ip_forward as it was before the first makeNamespaces, restored by removeNamespaces. */
let forwardBefore: string | undefined;

export interface Namespace {
  name: string;
  /** The host side's address (what a process inside reaches the host by). */
  hostAddress: string;
  /** The namespace side's address (what the host reaches the process inside by). */
  address: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Makes `count` namespaces; on any failure removes what it made and throws with ip's message.
 * Names carry the pid, so parallel runs and a crashed earlier run's leftovers do not collide.
 */
export function makeNamespaces(count: number): Namespace[] {
  const tag = process.pid % 10_000;
  // /30 subnets from the pid: another run's namespaces (another pid) use other addresses
  const base = (tag % 60) * 4;
  const made: Namespace[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `pxc-${tag}-${i}`;
      const host = `pxh${tag}x${i}`;
      const peer = `pxn${tag}x${i}`;
      const third = base + i;
      const ns: Namespace = { name, hostAddress: `10.231.${third}.1`, address: `10.231.${third}.2` };
      ip('netns', 'add', name);
      made.push(ns);
      ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
      ip('link', 'set', peer, 'netns', name);
      ip('addr', 'add', `${ns.hostAddress}/30`, 'dev', host);
      ip('link', 'set', host, 'up');
      ip('netns', 'exec', name, 'ip', 'addr', 'add', `${ns.address}/30`, 'dev', peer);
      ip('netns', 'exec', name, 'ip', 'link', 'set', peer, 'up');
      ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
      ip('netns', 'exec', name, 'ip', 'route', 'add', 'default', 'via', ns.hostAddress);
    }
    forwardBefore ??= fs.readFileSync(IP_FORWARD, 'utf8').trim();
    fs.writeFileSync(IP_FORWARD, '1');
    return made;
  } catch (e) {
    removeNamespaces(made);
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`ip netns: ${err.stderr?.toString().trim() || err.message}`);
  }
}

/** Deletes the namespaces (their veth pairs go with them), restores ip_forward; never throws. */
export function removeNamespaces(list: readonly Namespace[]): void {
  if (forwardBefore !== undefined && list.length > 0) {
    try {
      fs.writeFileSync(IP_FORWARD, forwardBefore);
      forwardBefore = undefined;
    } catch {
      // not ours to fix
    }
  }
  for (const ns of list) {
    try {
      ip('netns', 'del', ns.name);
    } catch {
      // already gone
    }
  }
}
