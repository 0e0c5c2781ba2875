// ImageCache: the library API, a façade. It validates options once (engine/options.ts), routes each
// call by format to that format's FormatStore and by key to its decode group, and adds what spans
// formats: the shared chunk LRU, decode groups and their queue, uploads, delete and maintenance.
// A hit is a Map lookup, at most one stat per revalidateMs, offset arithmetic and a Buffer view.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { PixtableError, invalidParameter } from './errors.js';
import type { Format } from './formats.js';
import type {
  CacheStats,
  EntryRef,
  FormatDiskUse,
  FormatStats,
  ImageInfo,
  ImageView,
  OpenOptions,
  PutResult,
  VerifyProblem,
} from './types.js';
import { entryGeometry, type ChunkCache } from './engine/table.js';
import { resolveOptions, type Resolved } from './engine/options.js';
import { checkTablesFileSystem } from './engine/filesystem.js';
import {
  indexFile,
  keysFile,
  lockFile,
  placeholdersFile,
  readersFile,
  sourcesDir,
  tableDir,
  tablesDir,
} from './engine/layout.js';
import { acquireWriterLock } from './engine/lock.js';
import { FormatStore } from './engine/format-store.js';
import { Decoder, groupByFamily, targetsOf, type Group } from './engine/decoding.js';
import type { Revalidator } from './engine/revalidate.js';
import { fingerprint, type Source, type SourceFile } from './engine/source-bytes.js';
import { LocalSourceStore, type SourceStore } from './engine/source-store.js';
import { openS3SourceStore, resolveS3Options } from './engine/source-store-s3.js';
import { removeStaleUploads, type UploadBody } from './engine/uploads.js';
import { validateKey } from './engine/sources.js';
import { makeCurrent, refImpl } from './engine/views.js';
import { compactStores, flushStores, verifyStores } from './engine/maintenance.js';
import { probeImage } from './native/sharp.js';
import { PlaceholderFile, type StoredPlaceholder } from './engine/placeholder-file.js';
import { computePlaceholder, placeholderOfRows, publicPlaceholder } from './engine/placeholder.js';
import type { DecodedImage } from './native/sharp.js';

/** Chunk-LRU keys are `tableNo × 2^36 + chunkNo` (Table.chunkKeyOf). */
const TABLE_KEY_SPAN = 2 ** 36;

export class ImageCache {
  readonly storage: string;
  readonly sourcesDir: string;
  readonly tablesDir: string;
  readonly formats: readonly Format[];
  readonly readOnly: boolean;

  private readonly o: Resolved;
  private readonly stores: FormatStore[] = [];
  private readonly byName = new Map<string, FormatStore>();
  private groups: Group<FormatStore>[] = [];
  /** each store's decode group, by store number */
  private groupOf: Group<FormatStore>[] = [];
  /** each group's placeholder file, kept by its smallest member (by that member's store number) */
  private readonly placeholders = new Map<number, PlaceholderFile>();
  /** the groups by their smallest format's pixels, fewest first: where info() looks for one */
  private byArea: Group<FormatStore>[] = [];
  private readonly chunks: ChunkCache;
  private readonly decoder: Decoder;
  /** where sources live (a directory or a bucket), installed at open */
  private readonly sources: SourceStore;
  private readonly revalidator: Revalidator;
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  private closed = false;

  private constructor(o: Resolved, sourcesRoot: string, sources: SourceStore) {
    this.o = o;
    this.storage = o.storage;
    this.sourcesDir = sourcesRoot;
    this.tablesDir = tablesDir(o.storage);
    this.formats = o.formats;
    this.readOnly = o.readOnly;
    this.decoder = new Decoder(o);
    this.sources = sources;
    this.revalidator = sources.revalidator;
    this.chunks = new LRUCache<number, Buffer>({
      maxSize: o.maxMappedBytes,
      sizeCalculation: (b) => b.length,
      // A chunk leaving the LRU takes its references' views with it, so that kept references
      // never hold more mappings alive than maxMappedBytes allows.
      dispose: (_map, key) => this.stores[Math.floor(key / TABLE_KEY_SPAN)]?.chunkGone(key),
    });
    this.current = makeCurrent(this.chunks, o);
  }

  /** Opens (creating when writable) the storage and every format's table and index. */
  static async open(options: OpenOptions = {}): Promise<ImageCache> {
    const o = resolveOptions(options);
    // validated before anything is created on disk, like every other option
    const s3 = options.s3 === undefined ? undefined : resolveS3Options(options.s3);
    const sources = sourcesDir(o.storage);
    if (!o.readOnly) {
      await fs.promises.mkdir(sources, { recursive: true });
      await fs.promises.mkdir(tablesDir(o.storage), { recursive: true });
    }
    checkTablesFileSystem(tablesDir(o.storage), o.allowNetworkFileSystem);
    let root: string;
    try {
      root = await fs.promises.realpath(sources);
    } catch {
      root = sources;
    }
    // The store is chosen here, once: nothing downstream asks which one it is.
    const store =
      s3 === undefined
        ? new LocalSourceStore(root, o.revalidateMs, o.maxInputBytes, o.now)
        : await openS3SourceStore(s3, root, o);
    const cache = new ImageCache(o, root, store);
    if (!o.readOnly) await removeStaleUploads(root);
    try {
      for (const f of o.formats) await cache.openFormat(f);
    } catch (e) {
      for (const st of cache.stores) st.close();
      store.close();
      throw e;
    }
    cache.groups = groupByFamily(cache.stores);
    for (const g of cache.groups) for (const m of g.members) cache.groupOf[m.no] = g;
    for (const g of cache.groups) cache.openPlaceholders(g);
    cache.byArea = [...cache.groups].sort((a, b) => {
      const fa = cache.smallestOf(a).format;
      const fb = cache.smallestOf(b).format;
      return fa.width * fa.height - fb.width * fb.height;
    });
    if (!o.readOnly && o.sync === 'batch') {
      cache.timer = setInterval(() => void cache.flushInBackground(), o.syncIntervalMs);
      cache.timer.unref();
    }
    return cache;
  }

  private async openFormat(f: Format): Promise<void> {
    const o = this.o;
    const readers = readersFile(this.tablesDir, f.name);
    const lockFd = o.readOnly
      ? -1
      : await acquireWriterLock(
          lockFile(this.tablesDir, f.name),
          `table ${f.name} in ${o.storage}`,
          o.lockTimeoutMs,
        );
    const st = new FormatStore(this.stores.length, f, tableDir(this.tablesDir, f.name), readers, lockFd, {
      readOnly: o.readOnly,
      preallocate: o.preallocate,
      chunkBytes: o.chunkBytes,
      chunks: this.chunks,
      logger: o.logger,
      revalidator: this.revalidator,
      syncAlways: o.sync === 'always',
    });
    this.stores.push(st);
    this.byName.set(f.name, st);
  }

  /** The group's member with the fewest pixels: its entry is where the placeholder comes from. */
  private smallestOf(g: Group<FormatStore>): FormatStore {
    let best = g.members[0]!;
    for (const m of g.members)
      if (m.format.width * m.format.height < best.format.width * best.format.height) best = m;
    return best;
  }

  private openPlaceholders(g: Group<FormatStore>): void {
    const st = this.smallestOf(g);
    const file = new PlaceholderFile(
      placeholdersFile(this.tablesDir, st.format.name),
      () => st.table.tableId,
    );
    if (!this.readOnly) file.openForWriting();
    this.placeholders.set(st.no, file);
  }

  /** The validated format called `name`; throws UNKNOWN_FORMAT. */
  format(name: string): Format {
    return this.store(name).format;
  }

  private store(name: string): FormatStore {
    if (this.closed) throw new PixtableError('CACHE_CLOSED');
    const st = this.byName.get(name);
    if (!st) {
      const names = this.stores.map((x) => x.format.name).join(', ');
      throw new PixtableError('UNKNOWN_FORMAT', `${JSON.stringify(name)}; configured: ${names}`);
    }
    return st;
  }

  // ---- hit path ------------------------------------------------------------------------------

  /**
   * Hit-only, synchronous lookup: a pinned view, or undefined when the entry is missing, damaged
   * or (with `revalidate`) its source changed on disk. Never decodes.
   */
  peek(format: string, key: string): ImageView | undefined {
    const st = this.store(format);
    const s = this.hitSlot(st, key);
    return s < 0 ? undefined : st.view(s, key);
  }

  /**
   * peek() for serving loops: an unpinned, reusable EntryRef instead of a pinned view (see
   * EntryRef for its lifetime). Looking the same entry up again returns the same object until the
   * entry is rewritten or its chunk is unmapped. Counts a hit and marks the entry recently used.
   */
  peekRef(format: string, key: string): EntryRef | undefined {
    const st = this.store(format);
    const s = this.hitSlot(st, key);
    return s < 0 ? undefined : st.ref(s, key);
  }

  /** The slot of a verified hit whose source is unchanged (a hit is counted), or -1. */
  private hitSlot(st: FormatStore, key: string): number {
    const s = st.verifiedSlot(key);
    if (s < 0) return -1;
    if (this.o.revalidate) {
      const fresh = this.revalidator.fresh(st.book, s, key);
      if (fresh === 'gone' || (fresh === false && !this.revalidator.confirmSync(st.book, s, key))) return -1;
    }
    st.counters.hits++;
    return s;
  }

  /**
   * Whether `ref` still names the entry it was made for, verified, with its source confirmed
   * within `revalidateMs` (and, read-only, its trailer unchanged). True also counts a hit and marks
   * the entry and its mapping recently used, so a served ref is never the LRU's next victim.
   * False means: ask peekRef() (or get()) again — it does the stat or the decode.
   */
  readonly current: (ref: EntryRef) => boolean;

  /**
   * Pins a ref's slot as a view does — in this process and, read-only, in the reader table, so the
   * writer in another process does not overwrite it — until unpinRef(); one unpinRef per true
   * pinRef. False (nothing pinned) when the ref no longer names its entry: ask peekRef() again.
   * In a read-only cache, pin before reading `transientPixels` at all: the writer is another
   * process and does not wait for this one's event loop.
   */
  pinRef(ref: EntryRef): boolean {
    const r = refImpl(ref);
    return r.store.acquireRef(r);
  }

  unpinRef(ref: EntryRef): void {
    const r = refImpl(ref);
    r.store.release(r.slot, r.store.book);
  }

  /**
   * Read-only caches: look at the writer's latest index state now. Lookups read the writer's key
   * map as it changes, so this matters only right after the writer rebuilt the map (a restart,
   * growth), which a lookup otherwise notices within 5 ms; `serve --workers N` calls it on every
   * worker after each write and after a writer restart. A writable cache is always current.
   */
  refresh(): void {
    this.assertOpen();
    if (!this.readOnly) return;
    for (const st of this.byName.values()) st.poll();
  }

  /** Whether a verified entry exists (does not consult the source). */
  has(format: string, key: string): boolean {
    return this.store(format).verifiedSlot(key) >= 0;
  }

  /**
   * A pinned zero-copy view of `key` in `format`, decoding the source on a miss. Concurrent misses
   * of one key share one decode. Release the view (or `using`) when done.
   */
  async get(format: string, key: string): Promise<ImageView> {
    const st = this.store(format);
    const s = st.verifiedSlot(key);
    let stale: Buffer | undefined;
    if (s >= 0) {
      const fresh = this.o.revalidate ? this.revalidator.fresh(st.book, s, key) : true;
      if (fresh === true || (fresh === false && (await this.revalidator.confirmAsync(st.book, s, key)))) {
        const view = st.view(s, key);
        if (view !== undefined) {
          st.counters.hits++;
          return view;
        }
      } else {
        stale = Buffer.from(st.book.sourceFp.subarray(s * 16, s * 16 + 16));
      }
    }
    st.counters.misses++;
    return this.load(st, key, stale);
  }

  // ---- miss path -----------------------------------------------------------------------------

  /**
   * A miss. `stale`: the source fingerprint of an entry just found out of date — a read-only cache
   * must not hand that entry out again, but wait for the writer to decode the new source.
   */
  private async load(st: FormatStore, key: string, stale?: Buffer): Promise<ImageView> {
    if (this.readOnly) {
      // The writer may be recycling the slot right now (the view's pin then fails): look again.
      for (let attempt = 0; attempt < 3; attempt++) {
        st.poll();
        const s = st.verifiedSlot(key);
        if (s < 0 || stale?.equals(st.book.sourceFp.subarray(s * 16, s * 16 + 16))) break;
        const view = st.view(s, key);
        if (view !== undefined) return view;
      }
      validateKey(key);
      throw new PixtableError(
        'READ_ONLY',
        `${st.format.name}/${key} is not cached and a read-only cache cannot decode`,
      );
    }
    const g = this.groupOf[st.no]!;
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.decoder.once(g, key, () => this.decodeKey(g, key));
      const s = st.verifiedSlot(key);
      const view = s < 0 ? undefined : st.view(s, key);
      if (view !== undefined) return view;
    }
    throw new PixtableError(
      'TABLE_FULL',
      `${st.format.name}: entries were recycled before they could be read`,
    );
  }

  private async decodeKey(g: Group<FormatStore>, key: string): Promise<void> {
    const fetched = await this.fetchSource(key);
    try {
      await this.decodeInto(g, key, fetched.src);
    } finally {
      await fetched.done();
    }
  }

  /** The source of `key` for decoding; when it is gone, so are its entries, in every format. */
  private async fetchSource(key: string) {
    try {
      return await this.sources.fetch(key, this.o.maxInputBytes);
    } catch (e) {
      if (e instanceof PixtableError && e.code === 'SOURCE_NOT_FOUND') this.removeEntries(key);
      throw e;
    }
  }

  private async decodeImages(g: Group<FormatStore>, input: string) {
    const images = await this.decoder.images(g, input);
    for (const m of g.members) m.counters.decodes++;
    return images;
  }

  private async decodeInto(g: Group<FormatStore>, key: string, src: Source): Promise<void> {
    const images = await this.decodeImages(g, src.path);
    this.assertOpen();
    const p = this.wantsPlaceholder(g, key) ? await this.placeholderOfDecoded(g, key, images) : undefined;
    await Promise.all(g.members.map((st, i) => st.write(key, images[i]!, src, this.assertOpen)));
    if (p) this.recordPlaceholder(g, key, p);
  }

  /**
   * The placeholder of `g`'s smallest format from its decoded image, computed before the writes
   * convert the image in place. Derived data: a failure is logged, never the write's.
   */
  private async placeholderOfDecoded(
    g: Group<FormatStore>,
    key: string,
    images: readonly DecodedImage[],
  ): Promise<StoredPlaceholder | undefined> {
    const st = this.smallestOf(g);
    const img = images[g.members.indexOf(st)]!;
    try {
      return await placeholderOfRows({
        data: img.data,
        rowPixels: img.width,
        width: img.width,
        height: img.height,
        channels: img.channels as 1 | 3 | 4,
        // rgbx's fourth byte is padding, not alpha
        dropAlpha: targetsOf([st.format])[0]!.layout === 'rgbx',
      });
    } catch (e) {
      this.o.logger.warn('placeholder not stored', { format: st.format.name, key, error: String(e) });
      return undefined;
    }
  }

  /** Stores `p` for the entry of `key` just written in `g`'s smallest format. */
  private recordPlaceholder(g: Group<FormatStore>, key: string, p: StoredPlaceholder): void {
    const st = this.smallestOf(g);
    const s = st.verifiedSlot(key);
    if (s >= 0) this.placeholders.get(st.no)?.write(s, st.generationOf(s), fingerprint(key), p);
  }

  /**
   * One placeholder per ingest: from the group holding the smallest format of all (the one info()
   * reads first), or from `g` when that group holds no entry of the key (a miss of another
   * group). Others are computed when info() asks a writer for one.
   */
  private wantsPlaceholder(g: Group<FormatStore>, key: string): boolean {
    const primary = this.byArea[0]!;
    return g === primary || this.smallestOf(primary).verifiedSlot(key) < 0;
  }

  /**
   * Computes and stores the placeholder of `key`'s entry in `g`'s smallest format from that
   * entry's pixels (pinned meanwhile): a writer's info() for an entry that has none.
   */
  private async storePlaceholder(g: Group<FormatStore>, key: string): Promise<StoredPlaceholder | undefined> {
    const st = this.smallestOf(g);
    const file = this.placeholders.get(st.no);
    const s = st.verifiedSlot(key);
    const view = file && s >= 0 ? st.view(s, key) : undefined;
    if (!file || !view) return undefined;
    try {
      const p = await computePlaceholder(view);
      file.write(s, view.generation, fingerprint(key), p);
      return p;
    } catch (e) {
      this.o.logger.warn('placeholder not stored', { format: st.format.name, key, error: String(e) });
      return undefined;
    } finally {
      view.release();
    }
  }

  /** The stored placeholder of `key` in `g`, or (writers) one computed now from the cached entry. */
  /**
   * `key`'s verified slot in `st` if it still holds what the source is now (as get() would find
   * it, revalidating when that is on; never decoding), else -1: what info() reports as cached.
   */
  private async currentSlot(st: FormatStore, key: string): Promise<number> {
    const s = st.verifiedSlot(key);
    if (s < 0 || !this.o.revalidate) return s;
    const fresh = this.revalidator.fresh(st.book, s, key);
    if (fresh === true) return s;
    if (fresh === 'gone' || !(await this.revalidator.confirmAsync(st.book, s, key))) return -1;
    return st.verifiedSlot(key) === s ? s : -1;
  }

  private async placeholderOf(g: Group<FormatStore>, key: string): Promise<StoredPlaceholder | undefined> {
    const st = this.smallestOf(g);
    const s = await this.currentSlot(st, key);
    if (s < 0) return undefined;
    const stored = this.placeholders.get(st.no)?.read(s, st.generationOf(s), fingerprint(key));
    if (stored || this.readOnly) return stored;
    return this.storePlaceholder(g, key);
  }

  private readonly assertOpen = (): void => {
    if (this.closed) throw new PixtableError('CACHE_CLOSED');
  };

  /** Removes `key` from every format (pinned entries are freed when released). */
  private removeEntries(key: string): boolean {
    let any = false;
    for (const st of this.stores) if (st.remove(key)) any = true;
    return any;
  }

  // ---- writes --------------------------------------------------------------------------------

  private requireWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new PixtableError('READ_ONLY');
  }

  /**
   * Stores `body` as the source of `key` and decodes every format. `body` is the whole file (a
   * Buffer or Uint8Array) or its bytes as they arrive: a `Readable` (an HTTP request, a file
   * stream) or any async iterable of Buffer/Uint8Array chunks, written to disk chunk by chunk and
   * hashed on the way, so memory per upload stays one chunk whatever the file's size. The image is
   * decoded first: a broken upload throws (EMPTY_SOURCE, SOURCE_TOO_LARGE past
   * `decode.maxInputBytes`, UNSUPPORTED_IMAGE, CORRUPT_IMAGE, TOO_MANY_PIXELS, STORAGE_FULL, …)
   * and nothing already stored changes. The source file is replaced atomically (temp + rename).
   * A stream that fails is rethrown as it failed (a consumed Readable is destroyed).
   */
  async put(key: string, body: UploadBody): Promise<PutResult> {
    this.requireWritable();
    validateKey(key);
    const isBytes = body instanceof Uint8Array;
    if (
      !isBytes &&
      typeof (body as Partial<AsyncIterable<Uint8Array>>)?.[Symbol.asyncIterator] !== 'function'
    ) {
      throw invalidParameter(
        'INVALID_OPTION',
        'body',
        'a Buffer, Uint8Array, Readable or async iterable',
        body,
      );
    }
    if (isBytes && body.length === 0) throw new PixtableError('EMPTY_SOURCE', key);
    if (isBytes && body.length > this.o.maxInputBytes) {
      throw new PixtableError(
        'SOURCE_TOO_LARGE',
        `${body.length} bytes, the limit is ${this.o.maxInputBytes}`,
      );
    }
    const staged = await this.sources.upload(key, body, this.o.maxInputBytes, async (tmp) => {
      const info = await probeImage(tmp, this.o.maxInputPixels);
      const decoded = await Promise.all(this.groups.map((g) => this.decodeImages(g, tmp)));
      return { info, decoded };
    });
    const { info, decoded } = staged.result;
    const src = staged.src;
    this.assertOpen();
    const primary = this.byArea[0]!;
    const p = await this.placeholderOfDecoded(primary, key, decoded[this.groups.indexOf(primary)]!);
    await Promise.all(
      this.groups.flatMap((g, gi) =>
        g.members.map((m, i) => m.write(key, decoded[gi]![i]!, src, this.assertOpen)),
      ),
    );
    if (p) this.recordPlaceholder(primary, key, p);
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
    const { src, done } = await this.fetchSource(key);
    try {
      let status: 'imported' | 'unchanged' = 'unchanged';
      for (const g of this.groups) {
        const slots = g.members.map((st) => st.verifiedSlot(key));
        if (g.members.every((st, i) => st.holds(slots[i]!, src))) {
          g.members.forEach((st, i) => this.revalidator.sign(st.book, slots[i]!, src));
          continue;
        }
        status = 'imported';
        await this.decodeInto(g, key, src);
      }
      return { key, status };
    } finally {
      await done();
    }
  }

  /**
   * Deletes the source file named `key` — a symlink itself, never what it points to — and purges
   * its entries in every format. True if anything existed; false also for the loser of two
   * concurrent deletes of one key.
   */
  async delete(key: string): Promise<boolean> {
    this.requireWritable();
    validateKey(key);
    // A concurrent delete that removed it first makes this one find nothing, not fail.
    let existed = await this.sources.remove(key);
    if (this.removeEntries(key)) existed = true;
    if (this.o.sync === 'always') for (const st of this.stores) st.log?.flush();
    return existed;
  }

  /**
   * Drops the entries of `key` in every format and keeps its source, so the next get decodes the
   * source as it is now: what a replica does when a peer replaced or deleted the key
   * (src/http/peers.ts). True if an entry existed.
   */
  purge(key: string): boolean {
    this.requireWritable();
    validateKey(key);
    const existed = this.removeEntries(key);
    if (this.o.sync === 'always') for (const st of this.stores) st.log?.flush();
    return existed;
  }

  /** Keys of every source (files under storage/sources/, or objects under the bucket's prefix), sorted. */
  listSources(): Promise<string[]> {
    this.assertOpen();
    return this.sources.list();
  }

  /** Whether `key` has a stored source (a file, or an object in the bucket). INVALID_KEY. */
  sourceExists(key: string): Promise<boolean> {
    this.assertOpen();
    return this.sources.exists(key);
  }

  /**
   * The stored source of `key`, open for reading (the original bytes, as uploaded), with its
   * fingerprint: the one its entries record — an entry's when it was confirmed against this very
   * file, else computed by one read of it. The handle keeps reading these bytes even if the key
   * is replaced meanwhile; the caller closes it. SOURCE_NOT_FOUND, INVALID_KEY.
   */
  async openSource(key: string): Promise<SourceFile> {
    this.assertOpen();
    return this.sources.open(key, this.confirmedFingerprint);
  }

  /**
   * The fingerprint an entry of `key` was confirmed against for a file with exactly this stat
   * signature (mtime, size, inode; never a racy one, see Revalidator.sign), so a hot original is
   * not hashed on every download. Undefined: hash it.
   */
  private readonly confirmedFingerprint = (key: string, stat: fs.Stats): Buffer | undefined => {
    for (const st of this.stores) {
      const book = st.book;
      const s = book.slotOf.get(key);
      if (s === undefined) continue;
      const sig = book.statSig;
      if (sig[s * 3] === stat.mtimeMs && sig[s * 3 + 1] === stat.size && sig[s * 3 + 2] === stat.ino)
        return book.sourceFp.subarray(s * 16, s * 16 + 16);
    }
    return undefined;
  };

  /**
   * What is stored for `key`: the source's size and type (from its header), each format's cached
   * entry size (`null` when not cached) and the placeholder. Never decodes: a key nobody asked
   * for yet has every format `null` and no placeholder. SOURCE_NOT_FOUND when there is no source,
   * INVALID_KEY.
   */
  async info(key: string): Promise<ImageInfo> {
    this.assertOpen();
    validateKey(key);
    // through the store it was opened with: a file on disk, or the object fetched from the bucket
    const fetched = await this.sources.fetch(key, this.o.maxInputBytes);
    let header: Awaited<ReturnType<typeof probeImage>>;
    try {
      header = await probeImage(fetched.src.path, this.o.maxInputPixels);
    } finally {
      await fetched.done();
    }
    const formats: ImageInfo['formats'] = {};
    for (const st of this.stores) {
      const s = await this.currentSlot(st, key);
      const view = s < 0 ? undefined : st.view(s, key);
      formats[st.format.name] = view ? { width: view.width, height: view.height } : null;
      view?.release();
    }
    let placeholder: StoredPlaceholder | undefined;
    for (const g of this.byArea) if ((placeholder = await this.placeholderOf(g, key))) break;
    return {
      key,
      source: {
        bytes: fetched.src.size,
        width: header.width ?? 0,
        height: header.height ?? 0,
        type: header.format ?? 'unknown',
      },
      formats,
      ...(placeholder ? { placeholder: publicPlaceholder(placeholder) } : {}),
    };
  }

  // ---- operations ----------------------------------------------------------------------------

  stats(): CacheStats {
    const perTable = new Map<number, number>();
    for (const [k, b] of this.chunks.entries()) {
      const no = Math.floor(k / TABLE_KEY_SPAN);
      perTable.set(no, (perTable.get(no) ?? 0) + b.length);
    }
    const q = this.decoder.queue;
    return {
      formats: this.stores.map((st) => this.withDiskUse(st.stats(perTable.get(st.no) ?? 0), st.format)),
      mappedBytes: this.chunks.calculatedSize,
      decodeQueue: { running: q.running, queued: q.queued, concurrency: q.concurrency, maxQueue: q.maxQueue },
    };
  }

  /**
   * A format's stats with what its table costs: bytes per entry, when full, and now on disk (the
   * store counts its segments; the index log and reader table beside them count too).
   */
  private withDiskUse(s: FormatStats, f: Format): FormatStats & FormatDiskUse {
    const { entrySize } = entryGeometry(f, this.o.chunkBytes);
    let diskBytes = s.diskBytes;
    for (const file of [
      indexFile(tableDir(this.tablesDir, f.name)),
      readersFile(this.tablesDir, f.name),
      keysFile(this.tablesDir, f.name),
      // only the smallest format of a decode group has one (the group's placeholders)
      placeholdersFile(this.tablesDir, f.name),
    ]) {
      try {
        diskBytes += fs.statSync(file).blocks * 512;
      } catch {
        // not there (a read-only open on a read-only volume has no reader table)
      }
    }
    return { ...s, entryBytes: entrySize, capacityBytes: s.capacity * entrySize, diskBytes };
  }

  /**
   * Checks every entry's trailer, CRC and key fingerprint against the index. With `repair`
   * (writable caches only) damaged entries are dropped so the next get re-decodes them.
   */
  async verify(options: { repair?: boolean } = {}): Promise<VerifyProblem[]> {
    this.assertOpen();
    return verifyStores(this.stores, options.repair === true);
  }

  /** Rewrites every index log with only its live records (crash-safe: temp file + rename). */
  async compact(): Promise<void> {
    this.requireWritable();
    compactStores(this.stores);
  }

  /** Flushes written entries (fdatasync) and index records (msync) to disk. */
  async flush(): Promise<void> {
    await flushStores(this.stores, false);
  }

  /**
   * `batch` mode's periodic flush: fdatasync on the threadpool (the kernel writes back pages dirtied
   * through the mappings), so decodes and hits never wait for the disk.
   */
  private async flushInBackground(): Promise<void> {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    try {
      await flushStores(this.stores, true);
    } catch (e) {
      this.o.logger.warn('background flush failed', { error: String(e) });
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Flushes and closes. Views still held stay readable (their mappings live until collected),
   * but the cache no longer tracks them.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.decoder.settled();
    if (this.timer) clearInterval(this.timer);
    while (this.flushing) await sleep(5);
    if (!this.readOnly) await this.flush();
    this.closed = true;
    for (const st of this.stores) st.close();
    this.sources.close();
  }
}
