// Bounded decode concurrency with a bounded wait queue that fails fast when full, so a burst of
// misses becomes quick 503s instead of an unbounded backlog of buffered source images.
import { PixtableError } from '../errors.js';

export class DecodeQueue {
  readonly concurrency: number;
  readonly maxQueue: number;
  running = 0;
  private readonly waiting: (() => void)[] = [];

  /** `doing`: what the refusal says is running ("decoding", "encoding"). */
  constructor(
    concurrency: number,
    maxQueue: number,
    private readonly doing = 'decoding',
  ) {
    this.concurrency = concurrency;
    this.maxQueue = maxQueue;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueue) {
        throw new PixtableError(
          'QUEUE_FULL',
          `${this.running} ${this.doing}, ${this.waiting.length} waiting`,
          {
            details: { retryAfter: 1 },
          },
        );
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
