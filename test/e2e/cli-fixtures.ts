// Helpers for the CLI and browser end-to-end tests: temp storage, synthetic images made with
// sharp (no image files in the repo), and running the compiled `pixtable` binary as a child.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

/** dist/src/cli/main.js, next to this compiled file's dist/test/e2e/. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export function tempDir(prefix = 'pixtable-cli-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmrf(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** An opaque image where every pixel differs (misplaced rows, columns or channels show). */
export function patternRaw(width: number, height: number, seed: number): Buffer {
  const b = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      b[i] = (x * 255) / Math.max(1, width - 1);
      b[i + 1] = (y * 255) / Math.max(1, height - 1);
      b[i + 2] = (x * 7 + y * 13 + seed * 50) & 255;
    }
  }
  return b;
}

export async function patternPng(width: number, height: number, seed = 0): Promise<Buffer> {
  return sharp(patternRaw(width, height, seed), { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

export async function patternJpeg(width: number, height: number, seed = 0): Promise<Buffer> {
  return sharp(patternRaw(width, height, seed), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/**
 * Writes `count` valid images (PNG and JPEG, some in a sub-directory) into `dir`; returns their
 * paths relative to `dir` with '/' separators (= the keys `pixtable import dir` gives them).
 */
export async function writeImages(dir: string, count: number, size = { width: 320, height: 240 }) {
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const sub = i % 3 === 2 ? 'nested/' : '';
    const ext = i % 2 === 0 ? 'png' : 'jpg';
    const key = `${sub}img-${i}.${ext}`;
    const bytes =
      ext === 'png'
        ? await patternPng(size.width + i * 8, size.height, i)
        : await patternJpeg(size.width + i * 8, size.height, i);
    fs.mkdirSync(path.dirname(path.join(dir, key)), { recursive: true });
    fs.writeFileSync(path.join(dir, key), bytes);
    keys.push(key);
  }
  return keys.sort();
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** stdout as bytes (binary output such as `export -o -`) */
  stdoutBytes: Buffer;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Environment for children: no PIXTABLE_* or PORT/HOST from the developer's shell leaks in. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('PIXTABLE_') || k === 'PORT' || k === 'HOST') continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs `node dist/src/cli/main.js ...args` to completion. */
export function runCli(args: string[], o: RunOptions = {}): Promise<CliResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: o.cwd ?? process.cwd(),
      env: cleanEnv(o.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout: stdoutBytes.toString('utf8'),
        stdoutBytes,
        stderr,
        ms: performance.now() - t0,
      });
    });
  });
}

/** A child process running until `line` (a regex over its output) appears. */
export function startChild(
  args: string[],
  ready: RegExp,
  o: RunOptions & { node?: boolean } = {},
): Promise<{ child: ChildProcess; output: () => string; match: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, o.node ? args : [CLI, ...args], {
      cwd: o.cwd ?? process.cwd(),
      env: cleanEnv(o.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not print ${ready} within ${o.timeoutMs ?? 30_000} ms; output:\n${out}`));
    }, o.timeoutMs ?? 30_000);
    const onData = (d: string) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, output: () => out, match: m });
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before printing ${ready}; output:\n${out}`));
    });
  });
}

/** Sends `signal` and waits for the exit; resolves to the exit code. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(child.exitCode);
      return;
    }
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}
