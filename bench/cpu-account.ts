// Where a benchmark's CPU went: the server's processes, the load generator, and the idle time of
// the machine. On a 2-core machine that the load generator shares with the servers, a throughput
// ratio alone cannot say whether a server costs more per request or simply got less of the CPU
// (another side's idle time, other work on the machine); these counters can, and they do not
// depend on how loaded the machine was the way req/s does.
import fs from 'node:fs';

const TICK_S = 0.01; // USER_HZ is 100 on Linux for every architecture Node supports

/** Processes holding the listening TCP socket of `port` (all workers of a server), and their descendants. */
export function listeners(port: number): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const row of text.split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN
      if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A' && f[9] !== undefined) inodes.add(`socket:[${f[9]}]`);
    }
  }
  const pids: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let link = '';
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (inodes.has(link)) {
        pids.push(Number(pid));
        break;
      }
    }
  }
  // and what they started: the workers of a round-robin server get connections passed to them
  // and never hold the listening socket themselves
  const children = new Map<number, number[]>();
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(afterComm(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(pid)]);
    } catch {
      // gone
    }
  }
  const all = new Set<number>();
  const add = (pid: number) => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const c of children.get(pid) ?? []) add(c);
  };
  pids.forEach(add);
  return [...all];
}

/** The fields of a /proc stat line after the command name (which may itself hold spaces and ")"). */
function afterComm(line: string): string[] {
  return line.slice(line.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU seconds the processes have used so far (a process that is gone counts 0). */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // fields after the command's closing parenthesis: utime is the 12th, stime the 13th
      const f = afterComm(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited
    }
  }
  return ticks * TICK_S;
}

/**
 * Voluntary context switches of every thread of the processes so far: how often they blocked
 * (an event loop waiting in epoll_wait, mostly). A server that sleeps more often per request
 * leaves the CPU idle more often while the next request's wake-up travels.
 */
export function sleeps(pids: readonly number[]): number {
  let n = 0;
  for (const pid of pids) {
    let tasks: string[] = [];
    try {
      tasks = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited
    }
    for (const t of tasks) {
      try {
        const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(
          fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'),
        );
        n += Number(m?.[1] ?? 0);
      } catch {
        // exited
      }
    }
  }
  return n;
}

/** Idle CPU seconds of the whole machine so far (all CPUs; `idle` + `iowait` of /proc/stat). */
export function idleSeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  return (Number(f[4]) + Number(f[5])) * TICK_S;
}

/** CPU seconds a finished child used, from its waiting shell's cutime + cstime (see `measured`). */
export function childCpuFromStat(statLine: string): number {
  const f = afterComm(statLine);
  return (Number(f[13]) + Number(f[14])) * TICK_S;
}

/**
 * Wrap a command so that its CPU time can be read afterwards: `sh` runs it, then prints its own
 * /proc stat line, whose cutime/cstime hold the waited child's CPU. The command's exit status is
 * kept. Returns the argv for spawnSync.
 */
export function measured(cmd: string, args: string[]): [string, string[]] {
  return ['sh', ['-c', '"$@"; s=$?; echo; cat /proc/$$/stat; exit $s', 'sh', cmd, ...args]];
}

export interface Account {
  /** server CPU seconds */
  server: number;
  /** load generator CPU seconds */
  client: number;
  /** idle CPU seconds of the machine */
  idle: number;
  /** wall seconds */
  wall: number;
  requests: number;
  /** the server threads' voluntary context switches (sleeps()) */
  sleeps: number;
}

export const emptyAccount = (): Account => ({
  server: 0,
  client: 0,
  idle: 0,
  wall: 0,
  requests: 0,
  sleeps: 0,
});

export function addAccount(a: Account, b: Account): Account {
  return {
    server: a.server + b.server,
    client: a.client + b.client,
    idle: a.idle + b.idle,
    wall: a.wall + b.wall,
    requests: a.requests + b.requests,
    sleeps: a.sleeps + b.sleeps,
  };
}

/** "server 18.2 µs, wrk 14.1 µs per request, 3 % idle, 4.1 server sleeps per 100 requests" */
export function describe(a: Account, cpus: number): string {
  const per = (s: number) => ((s / Math.max(1, a.requests)) * 1e6).toFixed(1);
  const idlePct = a.wall > 0 ? ((a.idle / (a.wall * cpus)) * 100).toFixed(0) : '?';
  const sleepsPer100 = ((a.sleeps / Math.max(1, a.requests)) * 100).toFixed(1);
  return (
    `server ${per(a.server)} µs, wrk ${per(a.client)} µs per request, ${idlePct} % idle, ` +
    `${sleepsPer100} server sleeps per 100 requests`
  );
}
