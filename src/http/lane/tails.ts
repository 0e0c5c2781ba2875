// The lines the lane writes after a response's own prepared headers.

/** The lines after a response's own headers: Date (per second, as Node caches it) and Connection. */
export class Tails {
  private until = 0;
  private ka = Buffer.alloc(0);
  private cl = Buffer.alloc(0);
  private readonly keepAliveLine: string;
  constructor(keepAliveTimeoutMs: number) {
    this.keepAliveLine = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n\r\n`;
  }
  keepAlive(): Buffer {
    if (Date.now() >= this.until) this.refresh();
    return this.ka;
  }
  close(): Buffer {
    if (Date.now() >= this.until) this.refresh();
    return this.cl;
  }
  private refresh(): void {
    const now = Date.now();
    this.until = now - (now % 1000) + 1000;
    const date = `Date: ${new Date(now).toUTCString()}\r\n`;
    this.ka = Buffer.from(date + this.keepAliveLine, 'latin1');
    this.cl = Buffer.from(`${date}Connection: close\r\n\r\n`, 'latin1');
  }
}
