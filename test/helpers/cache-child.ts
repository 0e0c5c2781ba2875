// The test side of test/fixtures/cache-child.ts: another process holding (or trying to hold) an
// ImageCache, driven by one JSON command per line.
import assert from 'node:assert/strict';
import readline from 'node:readline';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('../fixtures/cache-child.js', import.meta.url));

export interface Reply {
  ok: boolean;
  code?: string;
  message?: string;
  [k: string]: unknown;
}

/** Another process holding (or trying to hold) an ImageCache, driven by JSON commands. */
export class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private stderr = '';

  constructor() {
    this.proc = spawn(process.execPath, [CHILD], { stdio: 'pipe' });
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      this.pending.shift()?.resolve(JSON.parse(line) as Reply);
    });
    this.proc.on('exit', (code, signal) => {
      for (const p of this.pending.splice(0)) {
        p.reject(new Error(`child exited (${code ?? signal}): ${this.stderr}`));
      }
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  send(cmd: Record<string, unknown>): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    });
  }

  async ok(cmd: Record<string, unknown>): Promise<Reply> {
    const r = await this.send(cmd);
    assert.ok(r.ok, `child ${String(cmd.op)} failed: ${r.code} ${r.message}`);
    return r;
  }

  async end(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin.end();
    await exited;
  }
}
