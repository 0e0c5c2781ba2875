// Progress for long commands: a bar redrawn in place on a terminal, plain periodic lines when
// stderr is a file or pipe (CI logs, docker logs), so neither gets escape codes or silence.
import { duration } from './common.js';

export interface ProgressState {
  done: number;
  total: number;
  failed: number;
  elapsedMs: number;
}

/** Items per second so far, or 0 before the first completes. */
export function rate(s: ProgressState): number {
  return s.elapsedMs > 0 && s.done > 0 ? (s.done * 1000) / s.elapsedMs : 0;
}

/** Seconds left at the rate so far; NaN while unknown. */
export function eta(s: ProgressState): number {
  const r = rate(s);
  return r > 0 ? (s.total - s.done) / r : NaN;
}

function counts(s: ProgressState): string {
  const pct = s.total > 0 ? Math.floor((s.done * 100) / s.total) : 100;
  const r = rate(s);
  return (
    `${s.done}/${s.total} ${String(pct).padStart(3)}%  ${r >= 10 ? r.toFixed(0) : r.toFixed(1)} img/s  ` +
    `ETA ${duration(eta(s))}${s.failed ? `  ${s.failed} failed` : ''}`
  );
}

/** `[#########.........] 45/100  45%  12.3 img/s  ETA 0:05  1 failed`, fitted to `columns`. */
export function formatBar(s: ProgressState, columns: number): string {
  const tail = counts(s);
  const barWidth = Math.max(10, Math.min(40, columns - tail.length - 4));
  const filled = s.total > 0 ? Math.round((barWidth * s.done) / s.total) : barWidth;
  return `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${tail}`;
}

/** `import: 45/100  45%  12.3 img/s  ETA 0:05  1 failed` */
export function formatLine(label: string, s: ProgressState): string {
  return `${label}: ${counts(s)}`;
}

export interface ProgressOptions {
  label: string;
  tty: boolean;
  columns: number;
  write: (text: string) => void;
  /** Redraw period on a terminal. Default 100 ms. */
  ttyIntervalMs?: number;
  /** Period of plain lines otherwise. Default 2000 ms. */
  lineIntervalMs?: number;
  now?: () => number;
}

export class Progress {
  private readonly o: Required<ProgressOptions>;
  private readonly start: number;
  private last = -Infinity;
  private state: ProgressState;
  private finished = false;

  constructor(total: number, o: ProgressOptions) {
    this.o = {
      ttyIntervalMs: 100,
      lineIntervalMs: 2000,
      now: () => performance.now(),
      ...o,
    };
    this.start = this.o.now();
    this.state = { done: 0, total, failed: 0, elapsedMs: 0 };
  }

  get elapsedMs(): number {
    return this.o.now() - this.start;
  }

  /** Records one finished item and redraws when the period has passed. */
  tick(failed: boolean): void {
    this.state.done++;
    if (failed) this.state.failed++;
    this.draw(false);
  }

  private draw(force: boolean): void {
    const now = this.o.now();
    const period = this.o.tty ? this.o.ttyIntervalMs : this.o.lineIntervalMs;
    if (!force && now - this.last < period) return;
    this.last = now;
    this.state.elapsedMs = now - this.start;
    if (this.o.tty) this.o.write(`\r${formatBar(this.state, this.o.columns)}\u001b[K`);
    else this.o.write(`${formatLine(this.o.label, this.state)}\n`);
  }

  /** Draws the final state (and ends the terminal line). Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.draw(true);
    if (this.o.tty) this.o.write('\n');
  }
}
