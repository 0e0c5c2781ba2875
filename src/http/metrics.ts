// Prometheus metrics. The request path only bumps plain integers in a Map (no label hashing or
// object allocation per request); prom-client reads them, and the engine's stats(), at scrape time.
// Under `serve --workers N` every process keeps its own registry and the supervisor sums them
// (prom-client's AggregatorRegistry over the cluster's IPC), so /metrics on any worker reports the
// whole server; a few series carry the process's role and worker number.
import client from 'prom-client';
import type { PixelCache } from './cache-api.js';
import type { ThumbCache } from './thumbcache.js';

export class Metrics {
  readonly registry = new client.Registry();
  private readonly requests = new Map<string, number>();
  private readonly decodeHistogram: client.Histogram;
  private cache: PixelCache | undefined;
  private thumbs: ThumbCache | undefined;
  private lane: LaneCounts | undefined;

  /** Set in a process of `serve --workers N`: /metrics then asks the supervisor for the sum. */
  private clusterText: (() => Promise<string>) | undefined;

  /** `proc`: this process's place in `serve --workers N` (labels of its own series). */
  constructor(proc?: { role: string; worker: string }) {
    // the default metrics are already named process_* / nodejs_*: the prefix is only ours
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pixtable_' });
    // prom-client calls collect() with `this` bound to the metric, so the instance is captured here.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new client.Counter({
      name: 'pixtable_http_requests_total',
      help: 'HTTP requests by route template, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [this.registry],
      collect() {
        self.flushRoutes();
        this.reset();
        for (const [k, n] of self.requests) {
          const [route = '', method = '', status = ''] = k.split('\u0000');
          this.inc({ route, method, status }, n);
        }
      },
    });
    this.decodeHistogram = new client.Histogram({
      name: 'pixtable_decode_duration_seconds',
      help: 'Time to decode one source into the formats it was decoded for',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    const perFormat = (
      name: string,
      help: string,
      pick: (f: ReturnType<PixelCache['stats']>['formats'][number]) => number,
      counter: boolean,
      // what every process of a cluster reads from the same shared table is not summed
      aggregator: client.Aggregator = 'sum',
    ) => {
      const opts = {
        name,
        help,
        aggregator,
        labelNames: ['format'] as const,
        registers: [this.registry],
        collect(this: client.Gauge<'format'> | client.Counter<'format'>) {
          const c = self.cache;
          if (!c) return;
          this.reset();
          for (const f of c.stats().formats) {
            if (this instanceof client.Gauge) this.set({ format: f.format }, pick(f));
            else this.inc({ format: f.format }, pick(f));
          }
        },
      };
      if (counter) new client.Counter(opts as client.CounterConfiguration<'format'>);
      else new client.Gauge(opts as client.GaugeConfiguration<'format'>);
    };
    perFormat('pixtable_cache_hits_total', 'Entry lookups answered from a table', (f) => f.hits, true);
    perFormat('pixtable_cache_misses_total', 'Entry lookups that needed a decode', (f) => f.misses, true);
    perFormat('pixtable_decodes_total', 'Decodes that stored an entry', (f) => f.decodes, true);
    perFormat(
      'pixtable_entries_dropped_total',
      'Entries dropped for a CRC or fingerprint mismatch',
      (f) => f.dropped,
      true,
    );
    perFormat('pixtable_evictions_total', 'Entries evicted to make room', (f) => f.evictions, true);
    perFormat('pixtable_entries', 'Entries stored per format', (f) => f.entries, false, 'max');
    perFormat(
      'pixtable_pinned_entries',
      'Entries pinned by readers (responses in flight, open views)',
      (f) => f.pinned,
      false,
    );
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new client.Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    gauge(
      'pixtable_mapped_bytes',
      'Bytes of table files currently mapped',
      () => self.cache?.stats().mappedBytes,
    );
    gauge(
      'pixtable_decode_queue_depth',
      'Decodes waiting for a slot',
      () => self.cache?.stats().decodeQueue.queued,
    );
    gauge('pixtable_decodes_running', 'Decodes running now', () => self.cache?.stats().decodeQueue.running);
    gauge(
      'pixtable_encoded_cache_bytes',
      'Bytes held by the encoded-thumbnail cache',
      () => self.thumbs?.bytes,
    );
    gauge(
      'pixtable_encoded_cache_entries',
      'Encodings held by the encoded-thumbnail cache',
      () => self.thumbs?.size,
    );
    const total = (name: string, help: string, read: () => number | undefined) =>
      new client.Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const v = read();
          if (v === undefined) return;
          this.reset();
          this.inc(v);
        },
      });
    total(
      'pixtable_http_lane_responses_total',
      'Responses the fast lane wrote straight to the socket (also counted in pixtable_http_requests_total)',
      () => self.lane?.responses(),
    );
    total(
      'pixtable_http_lane_delegated_total',
      'Requests the fast lane passed to Node’s HTTP server one at a time, keeping the connection',
      () => self.lane?.delegated(),
    );
    total(
      'pixtable_http_lane_handovers_total',
      'Connections the fast lane left to Node’s HTTP server for good (bodies, HTTP/1.0, split heads…)',
      () => self.lane?.handovers(),
    );
    if (proc) this.processSeries(proc);
  }

  /** The series that tell the processes of `serve --workers N` apart. */
  private processSeries(p: { role: string; worker: string }): void {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new client.Gauge({
      name: 'pixtable_server_process_info',
      help: 'One series per process of the server: its role (writer, worker) and worker number',
      labelNames: ['role', 'worker', 'pid'],
      registers: [this.registry],
      collect() {
        this.set({ ...p, pid: String(globalThis.process.pid) }, 1);
      },
    });
    new client.Counter({
      name: 'pixtable_server_responses_total',
      help: 'HTTP responses per process (how connections spread over the workers)',
      labelNames: ['role', 'worker'],
      registers: [this.registry],
      collect() {
        self.flushRoutes();
        let n = 0;
        for (const v of self.requests.values()) n += v;
        this.reset();
        this.inc(p, n);
      },
    });
  }

  /** In a process of `serve --workers N`: /metrics is `fetch`, the supervisor's sum of all. */
  reportToCluster(fetch: () => Promise<string>): void {
    this.clusterText = fetch;
  }

  /** This process's metrics in the form the supervisor sums (prom-client's JSON). */
  json(): Promise<unknown[]> {
    return this.registry.getMetricsAsJSON();
  }

  /** Where the fast lane's counts are read at scrape time (src/http/lane/index.ts). */
  attachLane(lane: LaneCounts): void {
    this.lane = lane;
  }

  attach(cache: PixelCache, thumbs: ThumbCache): void {
    this.cache = cache;
    this.thumbs = thumbs;
  }

  /** For OpenOptions.onDecode. */
  readonly onDecode = (ms: number): void => {
    this.decodeHistogram.observe(ms / 1000);
  };

  countRequest(route: string, method: string, status: number): void {
    const k = `${route}\u0000${method}\u0000${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  /** A counter bound to one route: the hot path's increment is one typed-array add. */
  route(route: string): RouteCounter {
    return this.bind(
      new RouteCounter(route, (method, status, n) => {
        const k = `${route}\u0000${method}\u0000${status}`;
        this.requests.set(k, (this.requests.get(k) ?? 0) + n);
      }),
    );
  }

  /** Folds route counters into the request totals (called at scrape time). */
  private readonly routeCounters: RouteCounter[] = [];
  bind(c: RouteCounter): RouteCounter {
    this.routeCounters.push(c);
    return c;
  }
  flushRoutes(): void {
    for (const c of this.routeCounters) c.flush();
  }

  text(): Promise<string> {
    return this.clusterText ? this.clusterText() : this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The supervisor's side: sums the processes' metrics (prom-client's AggregatorRegistry.aggregate,
 * by each metric's aggregator) with its own series about restarts and the writer. It collects
 * them itself, from the processes that are up, rather than through prom-client's cluster
 * protocol, which waits 5 s for a process still starting and then fails the whole scrape.
 */
export class SupervisorMetrics {
  private readonly own = new client.Registry();
  private readonly restarts: client.Counter<'role'>;
  private readonly writerUp: client.Gauge;

  constructor() {
    this.restarts = new client.Counter({
      name: 'pixtable_server_restarts_total',
      help: 'Processes the supervisor started again after they died, by role',
      labelNames: ['role'],
      registers: [this.own],
    });
    this.writerUp = new client.Gauge({
      name: 'pixtable_server_writer_up',
      help: '1 while the writer process is up (misses and writes are answered), else 0',
      registers: [this.own],
    });
  }

  restarted(role: string): void {
    this.restarts.inc({ role });
  }

  writer(up: boolean): void {
    this.writerUp.set(up ? 1 : 0);
  }

  /** `parts`: every process's json(). */
  async text(parts: unknown[][]): Promise<string> {
    const all = [...parts, await this.own.getMetricsAsJSON()] as Parameters<
      typeof client.AggregatorRegistry.aggregate
    >[0];
    return client.AggregatorRegistry.aggregate(all).metrics();
  }
}

export interface LaneCounts {
  responses(): number;
  delegated(): number;
  handovers(): number;
}

export class RouteCounter {
  // One slot per status code, GET then HEAD: an increment is an indexed add, no lookup.
  private readonly counts = new Float64Array(1200);
  constructor(
    readonly route: string,
    private readonly sink: (method: string, status: number, n: number) => void,
  ) {}

  /** `status` is an HTTP status code (100–599). */
  inc(isHead: boolean, status: number): void {
    const i = isHead ? status + 600 : status;
    this.counts[i] = this.counts[i]! + 1;
  }

  flush(): void {
    const c = this.counts;
    for (let i = 100; i < 1200; i++) {
      const n = c[i]!;
      if (n === 0) continue;
      c[i] = 0;
      if (i < 600) this.sink('GET', i, n);
      else this.sink('HEAD', i - 600, n);
    }
  }
}
