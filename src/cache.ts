// ImageCache: the library API. Decode once (miss path, libvips threads), serve many (hit path:
// a Map lookup, a stat, offset arithmetic and a Buffer view into the mapping).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { PixtableError, invalidParameter } from './errors.js';
import { DEFAULT_FORMATS, validateFormats, type Format, type PixelFormat } from './formats.js';
import type {
  CacheStats,
  EntryInfo,
  EntryRef,
  FormatStats,
  ImageView,
  Logger,
  OpenOptions,
  PutResult,
  SyncMode,
  VerifyProblem,
} from './types.js';
import { Table, trailerNames, type ChunkCache } from './engine/table.js';
import { IndexLog, OP_DEL, OP_SET, type IndexRecord } from './engine/index-log.js';
import { SlotBook, LIVE } from './engine/slots.js';
import { DecodeQueue } from './engine/queue.js';
import { listKeys, resolveExisting, resolveForWrite, validateKey } from './engine/sources.js';
import { convertInPlace } from './engine/pixels.js';
import {
  decodeImage,
  probeImage,
  type DecodeLayout,
  type DecodedImage,
  type DecodeTarget,
} from './native/sharp.js';
import { native } from './native/addon.js';

const LAYOUT: Record<PixelFormat, DecodeLayout> = {
  rgba8: 'rgba',
  'rgba8-premultiplied': 'rgba',
  'bgra8-premultiplied': 'rgba',
  rgbx8: 'rgbx',
  rgb8: 'rgb',
  gray8: 'gray',
  rgb565: 'rgb',
};

interface Counters {
  hits: number;
  misses: number;
  decodes: number;
  dropped: number;
  evictions: number;
}

interface Group {
  id: string;
  members: FormatState[];
  targets: DecodeTarget[];
  shared: boolean;
}

interface FormatState {
  no: number;
  format: Format;
  table: Table;
  log: IndexLog | null;
  book: SlotBook;
  group: Group;
  lockFd: number;
  nextGen: number;
  counters: Counters;
  indexDiscardedBytes: number;
  /** the latest HotRef handed out per slot (every other one handed out is dead) */
  refs: (HotRef | undefined)[];
}

interface Source {
  /** real path the bytes were read from; decoders read it again (page cache) */
  path: string;
  bytes: Buffer;
  fp: Buffer;
  mtimeMs: number;
  size: number;
  ino: number;
}

interface Resolved {
  storage: string;
  formats: Format[];
  readOnly: boolean;
  sync: SyncMode;
  syncIntervalMs: number;
  chunkBytes: number;
  maxMappedBytes: number;
  lockTimeoutMs: number;
  revalidate: boolean;
  revalidateMs: number;
  preallocate: boolean;
  maxInputPixels: number;
  maxInputBytes: number;
  concurrency: number;
  maxQueue: number;
  timeoutMs: number;
  logger: Logger;
  onDecode: ((ms: number, formats: readonly string[]) => void) | undefined;
  now: () => number;
}

function num(name: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidParameter('INVALID_OPTION', name, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidParameter('INVALID_OPTION', name, 'a boolean', v);
  return v;
}

const consoleLogger: Logger = {
  warn: (msg, fields) =>
    process.emitWarning(`${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}`, 'PixtableWarning'),
};

/** Validates options once; nothing downstream re-checks them. */
function resolveOptions(o: OpenOptions): Resolved {
  if (typeof o !== 'object' || o === null)
    throw invalidParameter('INVALID_OPTION', 'options', 'an object', o);
  const storage = o.storage ?? process.env.PIXTABLE_STORAGE ?? './storage';
  if (typeof storage !== 'string' || storage === '') {
    throw invalidParameter('INVALID_OPTION', 'storage', 'a directory path', storage);
  }
  const sync = o.sync ?? 'batch';
  if (sync !== 'none' && sync !== 'batch' && sync !== 'always') {
    throw invalidParameter('INVALID_OPTION', 'sync', '"none", "batch" or "always"', sync);
  }
  const chunkBytes = num('chunkBytes', o.chunkBytes, 4 << 20, 64 << 10, 256 << 20);
  const d = o.decode ?? {};
  return {
    storage: path.resolve(storage),
    formats: validateFormats(o.formats ?? DEFAULT_FORMATS),
    readOnly: bool('readOnly', o.readOnly, false),
    sync,
    syncIntervalMs: num('syncIntervalMs', o.syncIntervalMs, 1000, 10, 60_000),
    chunkBytes,
    maxMappedBytes: num('maxMappedBytes', o.maxMappedBytes, 512 << 20, chunkBytes, Number.MAX_SAFE_INTEGER),
    lockTimeoutMs: num('lockTimeoutMs', o.lockTimeoutMs, 0, 0, 600_000),
    revalidate: bool('revalidate', o.revalidate, true),
    revalidateMs: num('revalidateMs', o.revalidateMs, 1000, 0, 3_600_000),
    preallocate: bool('preallocate', o.preallocate, true),
    maxInputPixels: num('decode.maxInputPixels', d.maxInputPixels, 50_000_000, 1, 2 ** 40),
    maxInputBytes: num('decode.maxInputBytes', d.maxInputBytes, 50 << 20, 1, 2 ** 31 - 1),
    concurrency: num('decode.concurrency', d.concurrency, os.availableParallelism(), 1, 64),
    maxQueue: num('decode.maxQueue', d.maxQueue, 64, 0, 100_000),
    timeoutMs: num('decode.timeoutMs', d.timeoutMs, 30_000, 1000, 600_000),
    logger: o.logger ?? consoleLogger,
    onDecode: o.onDecode,
    now: o.now ?? (() => performance.now()),
  };
}

const RACY_MS = 2000;
/** An upload temp file older than this is abandoned even if its pid is alive again (pid reuse). */
const STALE_UPLOAD_MS = 60 * 60 * 1000;

/**
 * Removes upload temp files (`sources/.tmp/<pid>-<ms>-<rand>`) left by writers that died mid-put:
 * those whose process is gone, or that are older than an hour. A live writer of other formats may
 * share sources/, so a recent file of a running process is left alone.
 */
async function removeStaleUploads(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    const [pidText, msText] = name.split('-');
    const pid = Number(pidText);
    const born = Number(msText);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive || !Number.isFinite(born) || now - born > STALE_UPLOAD_MS) {
      await fs.promises.rm(path.join(dir, name), { force: true });
    }
  }
}

function fingerprint(bytes: Buffer | string): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, 16);
}

/** What views and refs tell about an entry, read once from the slot's bookkeeping. */
class EntryFields implements EntryInfo {
  readonly format: string;
  readonly key: string;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly pixelFormat: PixelFormat;
  readonly bytesPerPixel: number;
  readonly generation: number;
  readonly sourceFingerprint: string;
  readonly etag: string;

  constructor(st: FormatState, slot: number, key: string) {
    const f = st.format;
    this.format = f.name;
    this.key = key;
    this.width = st.book.width[slot]!;
    this.height = st.book.height[slot]!;
    this.stride = f.stride;
    this.pixelFormat = f.pixelFormat;
    this.bytesPerPixel = f.bytesPerPixel;
    this.generation = st.book.generation[slot]!;
    // Strings built once per entry (describe()), shared by every view of it.
    this.sourceFingerprint = st.book.fpHex[slot]!;
    this.etag = st.book.etag[slot]!;
  }
}

class EntryView extends EntryFields implements ImageView {
  readonly pixels: Buffer;
  private readonly book: SlotBook;
  private readonly slot: number;
  private released = false;

  constructor(st: FormatState, slot: number, key: string, pixels: Buffer) {
    super(st, slot, key);
    this.pixels = pixels;
    this.book = st.book;
    this.slot = slot;
    st.book.pin(slot);
  }

  rows(x: number, y: number, w: number, h: number): Buffer[] {
    if (this.released) throw new PixtableError('VIEW_RELEASED');
    if (
      !Number.isInteger(x) ||
      !Number.isInteger(y) ||
      !Number.isInteger(w) ||
      !Number.isInteger(h) ||
      x < 0 ||
      y < 0 ||
      w < 1 ||
      h < 1 ||
      x + w > this.width ||
      y + h > this.height
    ) {
      throw new PixtableError(
        'INVALID_RECT',
        `${x},${y},${w},${h} is not inside ${this.width}x${this.height}`,
      );
    }
    const out = new Array<Buffer>(h);
    const bpp = this.bytesPerPixel;
    for (let r = 0; r < h; r++) {
      const start = (y + r) * this.stride + x * bpp;
      out[r] = this.pixels.subarray(start, start + w * bpp);
    }
    return out;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.book.unpin(this.slot);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

const EMPTY = Buffer.alloc(0);

/** See EntryRef. Fields beyond the interface are the engine's. */
class HotRef extends EntryFields {
  transientPixels: Buffer;
  /** false once the chunk left the mapping LRU or a newer ref of the slot replaced this one */
  live = true;
  readonly st: FormatState;
  readonly slot: number;
  /** the whole chunk mapping (EMPTY once dead: a dead ref must not keep the mapping alive) */
  chunk: Buffer;
  readonly chunkKey: number;
  /** offset of the entry's trailer in `chunk` */
  readonly trailerAt: number;

  constructor(st: FormatState, slot: number, key: string, chunk: Buffer, chunkKey: number, off: number) {
    super(st, slot, key);
    this.transientPixels = chunk.subarray(off, off + st.format.stride * st.book.height[slot]!);
    this.st = st;
    this.slot = slot;
    this.chunk = chunk;
    this.chunkKey = chunkKey;
    this.trailerAt = off + st.format.pixelBytes;
  }

  kill(): void {
    this.live = false;
    this.transientPixels = EMPTY;
    this.chunk = EMPTY;
  }
}

function hotRef(ref: EntryRef): HotRef {
  if ((ref as unknown) instanceof HotRef) return ref as unknown as HotRef;
  throw invalidParameter('INVALID_PARAMETER', 'ref', 'a reference from ImageCache.peekRef()', ref);
}

export class ImageCache {
  readonly storage: string;
  readonly sourcesDir: string;
  readonly tablesDir: string;
  readonly formats: readonly Format[];
  readonly readOnly: boolean;

  private readonly o: Resolved;
  private readonly states: FormatState[] = [];
  private readonly byName = new Map<string, FormatState>();
  private readonly groups: Group[] = [];
  private readonly chunks: ChunkCache;
  private readonly queue: DecodeQueue;
  private readonly inflight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(o: Resolved, sourcesRoot: string) {
    this.o = o;
    this.storage = o.storage;
    this.sourcesDir = sourcesRoot;
    this.tablesDir = path.join(o.storage, 'tables');
    this.formats = o.formats;
    this.readOnly = o.readOnly;
    this.queue = new DecodeQueue(o.concurrency, o.maxQueue);
    this.chunks = new LRUCache<number, Buffer>({
      maxSize: o.maxMappedBytes,
      sizeCalculation: (b) => b.length,
      // A chunk leaving the LRU takes its references' views with it, so that kept references
      // never hold more mappings alive than maxMappedBytes allows.
      dispose: (_map, key) => this.chunkGone(key),
    });
    this.current = this.installCurrent();
  }

  private chunkGone(key: number): void {
    const st = this.states[Math.floor(key / 2 ** 36)];
    if (st === undefined) return;
    const [first, end] = st.table.slotsOfChunk(key);
    const refs = st.refs;
    for (let s = first; s < end; s++) {
      const r = refs[s];
      if (r !== undefined) {
        r.kill();
        refs[s] = undefined;
      }
    }
  }

  /** Opens (creating when writable) the storage and every format's table and index. */
  static async open(options: OpenOptions = {}): Promise<ImageCache> {
    const o = resolveOptions(options);
    const sources = path.join(o.storage, 'sources');
    if (!o.readOnly) {
      await fs.promises.mkdir(sources, { recursive: true });
      await fs.promises.mkdir(path.join(o.storage, 'tables'), { recursive: true });
    }
    let root: string;
    try {
      root = await fs.promises.realpath(sources);
    } catch {
      root = sources;
    }
    const cache = new ImageCache(o, root);
    if (!o.readOnly) await removeStaleUploads(path.join(root, '.tmp'));
    try {
      for (const f of o.formats) await cache.openFormat(f);
    } catch (e) {
      cache.closeStates();
      throw e;
    }
    cache.buildGroups();
    if (!o.readOnly && o.sync === 'batch') {
      cache.timer = setInterval(() => void cache.flushInBackground(), o.syncIntervalMs);
      cache.timer.unref();
    }
    return cache;
  }

  private async lock(f: Format): Promise<number> {
    const file = path.join(this.tablesDir, `${f.name}.lock`);
    const fd = fs.openSync(file, 'a+');
    const deadline = Date.now() + this.o.lockTimeoutMs;
    for (;;) {
      if (native.tryLock(fd, true)) {
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, `${process.pid}\n`);
        return fd;
      }
      if (Date.now() >= deadline) {
        const holder = fs.readFileSync(file, 'utf8').trim();
        fs.closeSync(fd);
        throw new PixtableError(
          'STORAGE_LOCKED',
          `table ${f.name} in ${this.storage} is held by process ${holder || 'unknown'}; stop it, ` +
            'use its HTTP API, or open read-only',
          { details: { retryAfter: 1 } },
        );
      }
      await sleep(50);
    }
  }

  private async openFormat(f: Format): Promise<void> {
    const writable = !this.o.readOnly;
    const lockFd = writable ? await this.lock(f) : -1;
    const st: FormatState = {
      no: this.states.length,
      format: f,
      table: new Table(path.join(this.tablesDir, f.name), f, {
        writable,
        chunkBytes: this.o.chunkBytes,
        preallocate: this.o.preallocate,
        chunks: this.chunks,
        tableNo: this.states.length,
        warn: (m, fields) => this.o.logger.warn(m, fields),
      }),
      log: null,
      book: new SlotBook(f.maxCount),
      group: undefined as unknown as Group,
      lockFd,
      nextGen: 1,
      counters: { hits: 0, misses: 0, decodes: 0, dropped: 0, evictions: 0 },
      indexDiscardedBytes: 0,
      refs: new Array<HotRef | undefined>(f.maxCount),
    };
    this.states.push(st);
    this.byName.set(f.name, st);
    st.table.open();
    this.loadIndex(st);
  }

  private loadIndex(st: FormatState): void {
    const file = path.join(st.table.dir, 'index.log');
    const r = IndexLog.open(file, st.table.tableId, !this.o.readOnly, this.o.preallocate);
    if (!r) return;
    st.log = r.log;
    st.indexDiscardedBytes = r.discardedBytes;
    // A rebuilt table already said so; its old index is expected not to match.
    if (r.problem && !st.table.rebuilt) {
      this.o.logger.warn(r.reset ? 'index unusable; started afresh' : 'index damaged', {
        format: st.format.name,
        problem: r.problem,
      });
    }
    if (r.discardedBytes > 0) {
      this.o.logger.warn('index tail discarded (torn or damaged records)', {
        format: st.format.name,
        bytes: r.discardedBytes,
      });
    }
    this.replay(st, r.records);
  }

  private replay(st: FormatState, records: IndexRecord[]): void {
    const cap = st.book.capacity;
    const bound = new Map<string, { slot: number; gen: number; seq: number }>();
    const owner = new Map<number, string>();
    let maxGen = 0;
    records.forEach((r, seq) => {
      if (r.generation > maxGen) maxGen = r.generation;
      const prev = bound.get(r.key);
      if (prev) owner.delete(prev.slot);
      bound.delete(r.key);
      if (r.op !== OP_SET || r.slot >= cap) return;
      const o = owner.get(r.slot);
      if (o !== undefined) bound.delete(o);
      bound.set(r.key, { slot: r.slot, gen: r.generation, seq });
      owner.set(r.slot, r.key);
    });
    const live = [...bound.entries()].sort((a, b) => a[1].seq - b[1].seq);
    for (const [key, b] of live) st.book.bind(key, b.slot, b.gen);
    st.book.rebuildFree();
    st.nextGen = maxGen + 1;
  }

  private buildGroups(): void {
    const byFamily = new Map<string, FormatState[]>();
    for (const st of this.states) {
      const id = st.format.family ?? `=${st.format.name}`;
      const list = byFamily.get(id) ?? [];
      list.push(st);
      byFamily.set(id, list);
    }
    for (const [id, members] of byFamily) {
      const g: Group = {
        id,
        members,
        shared: members.length > 1,
        targets: members.map((m) => ({
          width: m.format.width,
          height: m.format.height,
          fit: m.format.fit,
          enlarge: m.format.enlarge,
          layout: LAYOUT[m.format.pixelFormat],
        })),
      };
      for (const m of members) m.group = g;
      this.groups.push(g);
    }
  }

  /** The validated format called `name`; throws UNKNOWN_FORMAT. */
  format(name: string): Format {
    return this.state(name).format;
  }

  private state(name: string): FormatState {
    if (this.closed) throw new PixtableError('CACHE_CLOSED');
    const st = this.byName.get(name);
    if (!st) throw new PixtableError('UNKNOWN_FORMAT', JSON.stringify(name));
    return st;
  }

  // ---- hit path ------------------------------------------------------------------------------

  /** Slot of a verified, unpinned-or-pinned live entry of `key`, or -1. Drops damaged entries. */
  private verifiedSlot(st: FormatState, key: string): number {
    let s = st.book.slotOf.get(key);
    if (s === undefined) return -1;
    if (st.book.verified[s] === 1) {
      // Another process owns writes: the slot may have been recycled since this one verified it.
      if (!this.readOnly || st.table.trailerMatches(s, st.book.generation[s]!)) return s;
      this.pollIndex(st);
      s = st.book.slotOf.get(key);
      if (s === undefined) return -1;
      if (st.book.verified[s] === 1 && st.table.trailerMatches(s, st.book.generation[s]!)) return s;
    }
    const check = st.table.checkEntry(s, st.book.generation[s]!, fingerprint(key));
    if (!check.ok) {
      this.drop(st, s, key, check.problem ?? 'damaged');
      return -1;
    }
    st.book.verified[s] = 1;
    st.book.width[s] = check.width;
    st.book.height[s] = check.height;
    st.table.readSourceFp(s, st.book.sourceFp, s * 16);
    this.describe(st, s);
    return s;
  }

  /** Whether the source still has the stat signature last matched to the entry's fingerprint. */
  private statFresh(st: FormatState, s: number, key: string): boolean | 'gone' {
    const now = this.o.now();
    if (now - st.book.checkedAt[s]! < this.o.revalidateMs) return true;
    let stat: fs.Stats;
    try {
      stat = fs.statSync(path.join(this.sourcesDir, key));
    } catch {
      return 'gone';
    }
    const sig = st.book.statSig;
    const i = s * 3;
    if (sig[i] !== stat.mtimeMs || sig[i + 1] !== stat.size || sig[i + 2] !== stat.ino) return false;
    st.book.checkedAt[s] = now;
    return true;
  }

  private view(st: FormatState, s: number, key: string): ImageView {
    const map = st.table.chunkFor(s)!;
    const off = st.table.offsetInChunk(s);
    st.book.touch(s);
    return new EntryView(st, s, key, map.subarray(off, off + st.format.stride * st.book.height[s]!));
  }

  /**
   * Hit-only, synchronous lookup: a pinned view, or undefined when the entry is missing, damaged
   * or (with `revalidate`) its source changed on disk. Never decodes.
   */
  peek(format: string, key: string): ImageView | undefined {
    const st = this.state(format);
    const s = this.hitSlot(st, key);
    return s < 0 ? undefined : this.view(st, s, key);
  }

  /** The slot of a verified hit whose source is unchanged (a hit is counted), or -1. */
  private hitSlot(st: FormatState, key: string): number {
    const s = this.verifiedSlot(st, key);
    if (s < 0) return -1;
    if (this.o.revalidate) {
      const fresh = this.statFresh(st, s, key);
      if (fresh === 'gone' || (fresh === false && !this.sourceUnchangedSync(st, s, key))) return -1;
    }
    st.counters.hits++;
    return s;
  }

  /**
   * peek() for serving loops: an unpinned, reusable EntryRef instead of a pinned view (see
   * EntryRef for its lifetime). Looking the same entry up again returns the same object until the
   * entry is rewritten or its chunk is unmapped. Counts a hit and marks the entry recently used.
   */
  peekRef(format: string, key: string): EntryRef | undefined {
    const st = this.state(format);
    const s = this.hitSlot(st, key);
    if (s < 0) return undefined;
    st.book.touch(s);
    const chunk = st.table.chunkFor(s)!;
    const old = st.refs[s];
    if (old !== undefined) {
      if (old.live && old.chunk === chunk && old.generation === st.book.generation[s])
        return old as unknown as EntryRef;
      old.kill();
    }
    const ref = new HotRef(st, s, key, chunk, st.table.chunkKeyOf(s), st.table.offsetInChunk(s));
    st.refs[s] = ref;
    return ref as unknown as EntryRef;
  }

  /**
   * Whether `ref` still names the entry it was made for, verified, with its source confirmed
   * within `revalidateMs` (and, read-only, its trailer unchanged). True also counts a hit and marks
   * the entry and its mapping recently used, so a served ref is never the LRU's next victim.
   * False means: ask peekRef() (or get()) again — it does the stat or the decode.
   */
  readonly current: (ref: EntryRef) => boolean;

  // Options are read once, here: a hit is a handful of comparisons on typed arrays, no lookups.
  private installCurrent(): (ref: EntryRef) => boolean {
    const chunks = this.chunks;
    const { revalidate, revalidateMs, now } = this.o;
    const readOnly = this.readOnly;
    return (ref) => {
      const r = hotRef(ref);
      const st = r.st;
      const s = r.slot;
      const book = st.book;
      if (!r.live || book.state[s] !== LIVE || book.generation[s] !== r.generation) return false;
      if (revalidate && now() - book.checkedAt[s]! >= revalidateMs) return false;
      if (readOnly && !trailerNames(r.chunk, r.trailerAt, r.generation)) return false;
      chunks.get(r.chunkKey);
      book.touch(s);
      st.counters.hits++;
      return true;
    };
  }

  /** Pins a current ref's slot (as a view does) until unpinRef(); one unpinRef per pinRef. */
  pinRef(ref: EntryRef): void {
    const r = hotRef(ref);
    r.st.book.pin(r.slot);
  }

  unpinRef(ref: EntryRef): void {
    const r = hotRef(ref);
    r.st.book.unpin(r.slot);
  }

  /** Whether a verified entry exists (does not consult the source). */
  has(format: string, key: string): boolean {
    return this.verifiedSlot(this.state(format), key) >= 0;
  }

  /**
   * A pinned zero-copy view of `key` in `format`, decoding the source on a miss. Concurrent misses
   * of one key share one decode. Release the view (or `using`) when done.
   */
  async get(format: string, key: string): Promise<ImageView> {
    const st = this.state(format);
    const s = this.verifiedSlot(st, key);
    if (s >= 0) {
      const fresh = this.o.revalidate ? this.statFresh(st, s, key) : true;
      if (fresh === true || (fresh === false && (await this.sourceUnchanged(st, s, key)))) {
        st.counters.hits++;
        return this.view(st, s, key);
      }
    }
    st.counters.misses++;
    return this.load(st, key);
  }

  /** The stat changed: hash the file and compare with the entry's source fingerprint. */
  private async sourceUnchanged(st: FormatState, s: number, key: string): Promise<boolean> {
    let src: Source;
    try {
      src = await this.readSource(key);
    } catch {
      return false;
    }
    if (st.book.state[s] !== LIVE || st.book.keyOf[s] !== key) return false;
    if (!src.fp.equals(st.book.sourceFp.subarray(s * 16, s * 16 + 16))) return false;
    this.setSig(st, s, src);
    return true;
  }

  private sourceUnchangedSync(st: FormatState, s: number, key: string): boolean {
    const file = path.join(this.sourcesDir, key);
    let bytes: Buffer;
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
      if (stat.size > this.o.maxInputBytes) return false;
      bytes = fs.readFileSync(file);
    } catch {
      return false;
    }
    const fp = fingerprint(bytes);
    if (!fp.equals(st.book.sourceFp.subarray(s * 16, s * 16 + 16))) return false;
    this.setSig(st, s, { path: file, bytes, fp, mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino });
    return true;
  }

  private setSig(st: FormatState, s: number, src: Source): void {
    const i = s * 3;
    // File timestamps are coarse (kernel ticks): a file rewritten within the same tick keeps its
    // mtime, and often its size. A signature taken that soon after a write is not trusted (git's
    // "racy" rule); hits hash the file until it is old enough.
    const racy = Date.now() - src.mtimeMs < RACY_MS;
    st.book.statSig[i] = racy ? -1 : src.mtimeMs;
    st.book.statSig[i + 1] = src.size;
    st.book.statSig[i + 2] = src.ino;
    st.book.checkedAt[s] = this.o.now();
  }

  /** Caches the strings every view of slot `s` shares (its sourceFp must be current). */
  private describe(st: FormatState, s: number): void {
    const hex = st.book.sourceFp.toString('hex', s * 16, s * 16 + 16);
    st.book.fpHex[s] = hex;
    st.book.etag[s] = `"${hex}-${st.format.name}-${st.book.generation[s]}"`;
  }

  // ---- miss path -----------------------------------------------------------------------------

  private async load(st: FormatState, key: string): Promise<ImageView> {
    if (this.readOnly) {
      this.pollIndex(st);
      const s = this.verifiedSlot(st, key);
      if (s >= 0) return this.view(st, s, key);
      validateKey(key);
      throw new PixtableError(
        'READ_ONLY',
        `${st.format.name}/${key} is not cached and a read-only cache cannot decode`,
      );
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.decodeGroup(st.group, key);
      const s = this.verifiedSlot(st, key);
      if (s >= 0) return this.view(st, s, key);
    }
    throw new PixtableError(
      'TABLE_FULL',
      `${st.format.name}: entries were recycled before they could be read`,
    );
  }

  /** Read-only opens pick up what a writer appended, or replay afresh after it compacted. */
  private pollIndex(st: FormatState): void {
    const recs = st.log?.poll();
    if (recs === undefined || recs === null) {
      st.log?.close();
      st.log = null;
      st.book = new SlotBook(st.format.maxCount);
      st.table.close();
      st.table.open();
      this.loadIndex(st);
      return;
    }
    if (recs.length === 0) return;
    for (const r of recs) {
      const prev = st.book.slotOf.get(r.key);
      if (prev !== undefined) st.book.unbind(prev);
      if (r.op !== OP_SET || r.slot >= st.book.capacity) continue;
      const owner = st.book.keyOf[r.slot];
      if (owner !== undefined) st.book.unbind(r.slot);
      st.book.bind(r.key, r.slot, r.generation);
    }
  }

  private decodeGroup(g: Group, key: string): Promise<void> {
    const id = `${g.id}\0${key}`;
    const running = this.inflight.get(id);
    if (running) return running;
    const p = (async () => {
      const src = await this.readSource(key).catch((e: unknown) => {
        if (e instanceof PixtableError && e.code === 'SOURCE_NOT_FOUND') this.purge(key);
        throw e;
      });
      await this.decodeInto(g, key, src);
    })().finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private async readSource(key: string): Promise<Source> {
    const file = await resolveExisting(this.sourcesDir, key);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new PixtableError('SOURCE_NOT_FOUND', key);
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new PixtableError('SOURCE_NOT_FOUND', `${key} is not a file`);
      if (st.size === 0) throw new PixtableError('EMPTY_SOURCE', key);
      if (st.size > this.o.maxInputBytes) {
        throw new PixtableError(
          'SOURCE_TOO_LARGE',
          `${key} is ${st.size} bytes, the limit is ${this.o.maxInputBytes}`,
        );
      }
      const bytes = Buffer.allocUnsafe(st.size);
      let got = 0;
      while (got < st.size) {
        const { bytesRead } = await fh.read(bytes, got, st.size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const data = got === st.size ? bytes : bytes.subarray(0, got);
      return {
        path: file,
        bytes: data,
        fp: fingerprint(data),
        mtimeMs: st.mtimeMs,
        size: st.size,
        ino: st.ino,
      };
    } finally {
      await fh.close();
    }
  }

  private async decodeGroupImages(g: Group, input: string): Promise<DecodedImage[]> {
    const t0 = this.o.now();
    const images = await this.queue.run(() =>
      decodeImage(input, g.targets, {
        maxInputPixels: this.o.maxInputPixels,
        timeoutMs: this.o.timeoutMs,
        shared: g.shared,
      }),
    );
    this.o.onDecode?.(
      this.o.now() - t0,
      g.members.map((m) => m.format.name),
    );
    for (const m of g.members) m.counters.decodes++;
    return images;
  }

  private async decodeInto(g: Group, key: string, src: Source): Promise<void> {
    const images = await this.decodeGroupImages(g, src.path);
    this.assertOpen();
    await Promise.all(g.members.map((st, i) => this.writeDecoded(st, key, images[i]!, src)));
  }

  private assertOpen(): void {
    if (this.closed) throw new PixtableError('CACHE_CLOSED');
  }

  private async writeDecoded(st: FormatState, key: string, img: DecodedImage, src: Source): Promise<void> {
    const book = st.book;
    const f = st.format;
    // An unpinned old entry is unbound first, so its slot can take the new pixels and no reader
    // ever sees a half-written entry; a pinned one stays readable until its last view is released.
    const old = book.slotOf.get(key);
    if (old !== undefined && book.pins[old] === 0) book.unbind(old);
    const a = book.allocate();
    if (a.slot < 0) {
      throw new PixtableError('TABLE_FULL', `${f.name}: all ${book.capacity} entries are pinned`, {
        details: { retryAfter: 1 },
      });
    }
    if (a.evicted !== undefined) st.counters.evictions++;
    const slot = a.slot;
    const gen = st.nextGen;
    st.nextGen = gen >= 0xffffffff ? 1 : gen + 1;
    const tight = convertInPlace(img.data, img.width, img.height, f.pixelFormat, f.bytesPerPixel);
    try {
      await st.table.writeEntry(slot, gen, fingerprint(key), src.fp, img.width, img.height, tight);
      if (this.o.sync === 'always') await st.table.syncFiles();
      this.assertOpen();
      st.log!.append(OP_SET, key, slot, gen, () => book.live());
    } catch (e) {
      book.release(slot);
      throw e;
    }
    const cur = book.slotOf.get(key);
    if (cur !== undefined) book.unbind(cur);
    book.bind(key, slot, gen);
    book.verified[slot] = 1;
    book.width[slot] = img.width;
    book.height[slot] = img.height;
    src.fp.copy(book.sourceFp, slot * 16);
    this.describe(st, slot);
    this.setSig(st, slot, src);
    if (this.o.sync === 'always') st.log!.flush();
  }

  private drop(st: FormatState, s: number, key: string, problem: string): void {
    st.counters.dropped++;
    this.o.logger.warn('cache entry dropped', { format: st.format.name, key, slot: s, problem });
    if (!this.readOnly && st.log) st.log.append(OP_DEL, key, s, st.book.generation[s]!, () => st.book.live());
    st.book.unbind(s);
  }

  /** Removes `key` from every format (pinned entries are freed when released). */
  private purge(key: string): boolean {
    let any = false;
    for (const st of this.states) {
      const s = st.book.slotOf.get(key);
      if (s === undefined) continue;
      any = true;
      if (!this.readOnly && st.log)
        st.log.append(OP_DEL, key, s, st.book.generation[s]!, () => st.book.live());
      st.book.unbind(s);
    }
    return any;
  }

  // ---- writes --------------------------------------------------------------------------------

  private requireWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new PixtableError('READ_ONLY');
  }

  /**
   * Stores `bytes` as the source of `key` and decodes every format. The image is decoded first:
   * a broken upload throws (EMPTY_SOURCE, UNSUPPORTED_IMAGE, CORRUPT_IMAGE, TOO_MANY_PIXELS, …)
   * and nothing already stored changes. The source file is replaced atomically (temp + rename).
   */
  async put(key: string, bytes: Buffer): Promise<PutResult> {
    this.requireWritable();
    validateKey(key);
    if (!Buffer.isBuffer(bytes)) throw invalidParameter('INVALID_OPTION', 'bytes', 'a Buffer', bytes);
    if (bytes.length === 0) throw new PixtableError('EMPTY_SOURCE', key);
    if (bytes.length > this.o.maxInputBytes) {
      throw new PixtableError(
        'SOURCE_TOO_LARGE',
        `${bytes.length} bytes, the limit is ${this.o.maxInputBytes}`,
      );
    }
    const target = await resolveForWrite(this.sourcesDir, key);
    const tmpDir = path.join(this.sourcesDir, '.tmp');
    await fs.promises.mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    let decoded: DecodedImage[][];
    let info: { width?: number | undefined; height?: number | undefined };
    let st: fs.Stats;
    try {
      const fh = await fs.promises.open(tmp, 'wx');
      try {
        await fh.writeFile(bytes);
        await fh.sync();
        st = await fh.stat();
      } finally {
        await fh.close();
      }
      // Decoded from the temp file before anything is replaced: a broken upload changes nothing.
      info = await probeImage(tmp, this.o.maxInputPixels);
      decoded = await Promise.all(this.groups.map((g) => this.decodeGroupImages(g, tmp)));
      await fs.promises.rename(tmp, target);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw e;
    }
    const src: Source = {
      path: target,
      bytes,
      fp: fingerprint(bytes),
      mtimeMs: st.mtimeMs,
      size: st.size,
      ino: st.ino,
    };
    this.assertOpen();
    await Promise.all(
      this.groups.flatMap((g, gi) =>
        g.members.map((m, i) => this.writeDecoded(m, key, decoded[gi]![i]!, src)),
      ),
    );
    return {
      key,
      sourceFingerprint: src.fp.toString('hex'),
      width: info.width ?? 0,
      height: info.height ?? 0,
      formats: this.formats.map((f) => f.name),
    };
  }

  /**
   * Decodes the stored source of `key` into every format unless every entry already holds that
   * exact source (`unchanged`). Used by `pixtable import`.
   */
  async ingest(key: string): Promise<{ key: string; status: 'imported' | 'unchanged' }> {
    this.requireWritable();
    const src = await this.readSource(key);
    let status: 'imported' | 'unchanged' = 'unchanged';
    for (const g of this.groups) {
      const current = g.members.every((st) => {
        const s = this.verifiedSlot(st, key);
        return s >= 0 && src.fp.equals(st.book.sourceFp.subarray(s * 16, s * 16 + 16));
      });
      if (current) {
        for (const st of g.members) this.setSig(st, st.book.slotOf.get(key)!, src);
        continue;
      }
      status = 'imported';
      await this.decodeInto(g, key, src);
    }
    return { key, status };
  }

  /** Deletes the source of `key` and purges its entries in every format. True if anything existed. */
  async delete(key: string): Promise<boolean> {
    this.requireWritable();
    validateKey(key);
    let existed = false;
    try {
      const file = await resolveExisting(this.sourcesDir, key);
      await fs.promises.unlink(file);
      existed = true;
    } catch (e) {
      if (!(e instanceof PixtableError && e.code === 'SOURCE_NOT_FOUND')) throw e;
    }
    if (this.purge(key)) existed = true;
    if (this.o.sync === 'always') for (const st of this.states) st.log?.flush();
    return existed;
  }

  /** Keys of every source file under storage/sources/, sorted. */
  listSources(): Promise<string[]> {
    return listKeys(this.sourcesDir);
  }

  // ---- operations ----------------------------------------------------------------------------

  stats(): CacheStats {
    const perTable = new Map<number, number>();
    for (const [k, b] of this.chunks.entries()) {
      const no = Math.floor(k / 2 ** 36);
      perTable.set(no, (perTable.get(no) ?? 0) + b.length);
    }
    const formats: FormatStats[] = this.states.map((st) => ({
      format: st.format.name,
      entries: st.book.liveCount,
      capacity: st.book.capacity,
      ...st.counters,
      pinned: st.book.pinnedCount,
      mappedBytes: perTable.get(st.no) ?? 0,
      diskBytes: st.table.diskBytes(),
    }));
    return {
      formats,
      mappedBytes: this.chunks.calculatedSize,
      decodeQueue: {
        running: this.queue.running,
        queued: this.queue.queued,
        concurrency: this.queue.concurrency,
        maxQueue: this.queue.maxQueue,
      },
    };
  }

  /**
   * Checks every entry's trailer, CRC and key fingerprint against the index. With `repair`
   * (writable caches only) damaged entries are dropped so the next get re-decodes them.
   */
  async verify(options: { repair?: boolean } = {}): Promise<VerifyProblem[]> {
    this.assertOpen();
    const problems: VerifyProblem[] = [];
    for (const st of this.states) {
      if (st.indexDiscardedBytes > 0) {
        problems.push({
          format: st.format.name,
          key: null,
          slot: null,
          problem: `index: ${st.indexDiscardedBytes} bytes of torn or damaged records discarded`,
        });
      }
      for (const { key, slot, generation } of st.book.live()) {
        const c = st.table.checkEntry(slot, generation, fingerprint(key));
        if (c.ok) continue;
        problems.push({ format: st.format.name, key, slot, problem: c.problem ?? 'damaged' });
        if (options.repair && !this.readOnly) this.drop(st, slot, key, c.problem ?? 'damaged');
      }
      await new Promise((r) => setImmediate(r));
    }
    return problems;
  }

  /** Rewrites every index log with only its live records (crash-safe: temp file + rename). */
  async compact(): Promise<void> {
    this.requireWritable();
    for (const st of this.states) st.log?.rewrite(st.book.live());
  }

  /** Flushes written entries (fdatasync) and index records (msync) to disk. */
  async flush(): Promise<void> {
    for (const st of this.states) {
      if (st.table.dirty) await st.table.syncFiles();
      st.log?.flush();
    }
  }

  private flushing = false;

  /**
   * `batch` mode's periodic flush: fdatasync on the threadpool (the kernel writes back pages dirtied
   * through the mappings), so decodes and hits never wait for the disk.
   */
  private async flushInBackground(): Promise<void> {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    try {
      for (const st of this.states) {
        if (st.table.dirty) await st.table.syncFiles();
        await st.log?.flushAsync();
      }
    } catch (e) {
      this.o.logger.warn('background flush failed', { error: String(e) });
    } finally {
      this.flushing = false;
    }
  }

  private closeStates(): void {
    for (const st of this.states) {
      st.log?.close();
      st.table.close();
      if (st.lockFd >= 0) {
        native.unlock(st.lockFd);
        fs.closeSync(st.lockFd);
      }
    }
  }

  /**
   * Flushes and closes. Views still held stay readable (their mappings live until collected),
   * but the cache no longer tracks them.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.inflight.values()]);
    if (this.timer) clearInterval(this.timer);
    while (this.flushing) await sleep(5);
    if (!this.readOnly) await this.flush();
    this.closed = true;
    this.closeStates();
  }
}
