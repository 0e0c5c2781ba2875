// Public types of the library API. The HTTP server, CLI and users all program against these.
import type { FormatSpec, PixelFormat } from './formats.js';

export type SyncMode = 'none' | 'batch' | 'always';

export interface Logger {
  warn(msg: string, fields?: Record<string, unknown>): void;
  info?(msg: string, fields?: Record<string, unknown>): void;
}

export interface DecodeLimits {
  /** Largest source accepted, width × height from the header, checked before decoding. Default 50,000,000 px. */
  maxInputPixels?: number;
  /** Largest source file in bytes. Default 52,428,800 (50 MiB). Range 1..2^31-1. */
  maxInputBytes?: number;
  /** Decodes running at once (each in libvips threads). Default os.availableParallelism(). Range 1..64. */
  concurrency?: number;
  /** Decodes waiting beyond `concurrency`; one more fails fast with QUEUE_FULL. Default 64. Range 0..100,000. */
  maxQueue?: number;
  /** Time one decode may take, in ms, before DECODE_TIMEOUT. Default 30,000. Range 1,000..600,000. */
  timeoutMs?: number;
}

/**
 * Sources in an S3-compatible bucket (AWS S3, MinIO, Ceph, s3rver…) instead of `storage/sources/`;
 * tables stay in `storage/tables/`. Credentials come from the AWS SDK's default chain
 * (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE` and the shared
 * `~/.aws/credentials` and `config` files, then container or instance roles). An entry's source
 * fingerprint is the object's VersionId when the bucket sends one, else its ETag; a hit is
 * confirmed with one HEAD at most once per `revalidateMs`. `@aws-sdk/client-s3` is loaded only
 * when this is set.
 */
export interface S3SourceOptions {
  /** Bucket name. Required. */
  bucket: string;
  /** Endpoint URL (`http://127.0.0.1:9000`). Default: AWS's endpoint for `region`. */
  endpoint?: string;
  /** Region the requests are signed for. Default `us-east-1`. */
  region?: string;
  /**
   * Prepended to every key (`photos/` stores `cat.jpg` as `photos/cat.jpg`); a `/` is added when
   * missing. Default '' (keys are object names). At most 512 bytes.
   */
  prefix?: string;
  /** Path-style URLs (`endpoint/bucket/key`). Default true when `endpoint` is set, false for AWS. */
  forcePathStyle?: boolean;
  /**
   * Deadline of one store operation in ms — connection, retries and the whole body — before
   * SOURCE_STORE_TIMEOUT. Default 10,000. Range 100..600,000.
   */
  timeoutMs?: number;
  /** Attempts per request (the SDK retries 5xx, throttling and resets). Default 3. Range 1..10. */
  maxAttempts?: number;
}

export interface OpenOptions {
  /** Data directory holding `sources/` and `tables/`. Default `$PIXTABLE_STORAGE` or `./storage`. */
  storage?: string;
  /** Formats to serve. Default: thumb-64, thumb-256 (cover) and preview-1024 (inside), all rgba8. */
  formats?: readonly FormatSpec[];
  /** Open without the writer lock: no decodes, no writes; many read-only opens may share storage. Default false. */
  readOnly?: boolean;
  /**
   * Durability of writes. `always`: a call that stored an entry returns after pixels and index
   * record are flushed (msync). `batch` (default): flushed every `syncIntervalMs`. `none`: the OS decides.
   * A killed process never loses or corrupts acknowledged data in any mode; a power loss may lose
   * unflushed entries (they are re-decoded), never serve torn ones (CRC).
   */
  sync?: SyncMode;
  /** `batch` flush period in ms. Default 1000. Range 10..60,000. */
  syncIntervalMs?: number;
  /** Target bytes per mapped chunk (whole entries, at least one). Default 4 MiB. Range 64 KiB..256 MiB. */
  chunkBytes?: number;
  /** Bound on mapped chunk bytes held by the chunk LRU across all tables. Default 512 MiB. Min one chunk. */
  maxMappedBytes?: number;
  /** ms to wait for the writer lock held by another process; 0 fails at once. Default 0. Range 0..600,000. */
  lockTimeoutMs?: number;
  /**
   * Re-check that the source file is unchanged (stat; hash when the stat differs) before serving a
   * hit, so an image replaced on disk is decoded again. Default true. Changes made through this
   * cache (`put`, `delete`) take effect at once whatever this says.
   */
  revalidate?: boolean;
  /**
   * With `revalidate`: serve a hit without a stat when its source was confirmed unchanged less than
   * this many ms ago (like nginx's open_file_cache_valid). Default 1000. Range 0 (stat every
   * hit)..3,600,000.
   */
  revalidateMs?: number;
  /** Reserve disk blocks before mapping new chunks (posix_fallocate) so a full disk is ENOSPC, not SIGBUS. Default true. */
  preallocate?: boolean;
  /**
   * Open tables on a network (NFS, SMB/CIFS…), FUSE or removable-media file system. Default
   * false: open fails with UNSAFE_FILESYSTEM, because touching a mapped page after such a mount
   * went away kills the process with SIGBUS. Env `PIXTABLE_ALLOW_NETWORK_FS` for the server and CLI.
   */
  allowNetworkFileSystem?: boolean;
  /**
   * Keep sources in an S3-compatible bucket (see S3SourceOptions). Default undefined: sources are
   * files under `storage/sources/`. With a bucket, `peek()`/`peekRef()` (synchronous, so they
   * cannot wait for a HEAD) return undefined for an entry whose revalidation is due and start the
   * HEAD in the background: the next lookup after it confirmed the object hits again, and `get()`
   * does the HEAD itself. A HEAD that fails (store down, denied, timeout) serves the held entry and
   * tries again after `revalidateMs`; only a 404 or another ETag makes the entry go.
   */
  s3?: S3SourceOptions;
  decode?: DecodeLimits;
  logger?: Logger;
  /** Called after each decode with its wall time in ms and the formats it produced (metrics). */
  onDecode?: (ms: number, formats: readonly string[]) => void;
  /** Injected clock (ms, monotonic enough for durations). Default performance.now. */
  now?: () => number;
}

/**
 * A zero-copy view of one decoded entry.
 *
 * Lifetime: `pixels` and every buffer from `rows()` point into the table's memory mapping. While
 * the view is not released it **pins** the entry: the slot is never recycled or overwritten, and
 * the mapping stays alive even if its chunk leaves the chunk LRU. After `release()` (or the end
 * of a `using` block) the buffers still point at mapped memory (they keep the mapping alive and
 * never fault), but the slot may be reused for another image at any time: copy what you need to
 * keep first. Treat the buffers as read-only; writing into them corrupts the cache entry.
 *
 * Pins cross processes. In a `readOnly` cache (another process or worker thread beside the
 * writer) a view's pin is published in the table's reader table before the view is handed out,
 * and the writer never overwrites a slot a live reader holds: the view's bytes stay its entry's
 * until release(), wherever the writer is. A reader that dies drops its pins with it.
 */
export interface ImageView extends EntryInfo, Disposable {
  /**
   * stride × height bytes of the mapping; row r starts at r × stride; bytes past
   * width × bytesPerPixel are zero padding. The entry's for as long as the view is not released.
   */
  readonly pixels: Buffer;
  /**
   * Row slices covering the rectangle; each is `w × bytesPerPixel` bytes, no copy.
   * Throws PixtableError INVALID_RECT when the rectangle is empty or leaves the image.
   */
  rows(x: number, y: number, w: number, h: number): Buffer[];
  /** Unpins the entry. Idempotent. */
  release(): void;
}

declare const entryRefBrand: unique symbol;

/**
 * An unpinned, reusable reference to one decoded entry, for loops that serve the same entries
 * over and over (pixtable's HTTP hit shortcut; a renderer drawing the same tiles every frame). Get
 * one with `ImageCache.peekRef()`, keep it, and before each use ask `ImageCache.current(ref)`:
 * that costs a few typed-array reads instead of a key lookup and a view allocation. Only
 * `peekRef()` makes them (the brand keeps an `ImageView` from type-checking as one).
 */
export interface EntryRef extends EntryInfo {
  readonly [entryRefBrand]: true;
  /**
   * stride × height bytes of the mapping, **not pinned**: they are the entry's exactly while
   * `current(ref)` has returned true and control has not gone back to the event loop (only then
   * can this process rewrite the slot). To read them later — an asynchronous write, a worker —
   * pin first with `pinRef(ref)` and call `unpinRef(ref)` once when done. A reference that is no
   * longer current stays harmless: these become an empty Buffer once its chunk leaves the mapping
   * LRU, so old references never hold mappings alive. In a `readOnly` cache the writer is another
   * process that does not wait for this one's event loop: there, read them only between a true
   * `pinRef(ref)` and its `unpinRef(ref)`.
   */
  readonly transientPixels: Buffer;
}

/** What an ImageView and an EntryRef tell about their entry (their pixels differ in lifetime). */
export interface EntryInfo {
  readonly format: string;
  readonly key: string;
  /** Real size of this entry (`inside` formats may be smaller than the box). */
  readonly width: number;
  readonly height: number;
  /** Bytes from one row to the next (multiple of the format's rowAlignment). */
  readonly stride: number;
  readonly pixelFormat: PixelFormat;
  readonly bytesPerPixel: number;
  /** Changes whenever the entry is rewritten. */
  readonly generation: number;
  /** Hex fingerprint (SHA-256 prefix) of the source bytes the entry was decoded from. */
  readonly sourceFingerprint: string;
  /** Strong validator derived from source fingerprint, format and generation. */
  readonly etag: string;
}

export interface FormatStats {
  format: string;
  entries: number;
  /** Entries the table may hold: `maxCount`, or fewer when `maxBytes` holds fewer. */
  capacity: number;
  hits: number;
  misses: number;
  decodes: number;
  /** Entries dropped because their CRC or fingerprints did not match. */
  dropped: number;
  evictions: number;
  pinned: number;
  mappedBytes: number;
  /**
   * Bytes the table's files occupy on disk now (allocated blocks, `st_blocks × 512`, of its
   * segments, index log, reader table, key map and, for a decode group's smallest format, the
   * group's placeholders): grows as entries are written, up to about capacityBytes plus those.
   */
  diskBytes: number;
}

/** What a format's table costs on disk (`cache.stats()` adds it to each format's stats). */
export interface FormatDiskUse {
  /**
   * Bytes one entry reserves in the table whatever the image's size: its format's full box
   * (stride × height) plus a 64-byte trailer, rounded up to the page size.
   */
  entryBytes: number;
  /** capacity × entryBytes: what the table's entries take on disk once it is full. */
  capacityBytes: number;
}

export interface CacheStats {
  formats: (FormatStats & FormatDiskUse)[];
  mappedBytes: number;
  decodeQueue: { running: number; queued: number; concurrency: number; maxQueue: number };
}

export interface PutResult {
  key: string;
  sourceFingerprint: string;
  width: number;
  height: number;
  formats: string[];
}

export interface VerifyProblem {
  format: string;
  key: string | null;
  slot: number | null;
  problem: string;
}

/** A placeholder to show while an image loads (`cache.info()`, `GET /v1/info`). */
export interface Placeholder {
  /**
   * The ThumbHash (https://evanw.github.io/thumbhash/) of the smallest cached entry of the key's
   * family, base64: at most 25 bytes (about 34 characters), which thumbhash's `thumbHashToRGBA`
   * renders as a blurred image of at most 32 px a side with the source's aspect ratio and alpha.
   */
  thumbHash: string;
  /**
   * `#rrggbb`, sRGB: the most common colour of that entry (the mean of the fullest of 4096 colour
   * bins, 16 levels a channel; transparent pixels left out), for a flat fill.
   */
  dominantColor: string;
}

/** One format's entry as `cache.info()` reports it. */
export interface FormatEntryInfo {
  /** Real size of the entry in pixels (`inside` formats may be smaller than the box), 1..16384. */
  width: number;
  height: number;
}

/**
 * What `cache.info(key)` (and `GET /v1/info/<key>`) tells about a key. It reads what is stored —
 * the source's header, the cached entries, their placeholder — and never decodes.
 */
export interface ImageInfo {
  key: string;
  source: {
    /** The source file's length in bytes, 1..`decode.maxInputBytes`. */
    bytes: number;
    /** Pixels, as displayed (EXIF orientation applied), from the header; 0 when the header has none. */
    width: number;
    height: number;
    /** The type libvips reads it as: `jpeg`, `png`, `webp`, `gif`, `heif`, `tiff`, `svg`, … */
    type: string;
  };
  /**
   * Every configured format by name: its cached entry's real size, or `null` when the format holds
   * no entry of this key now (info does not decode; `get()` or a thumbnail request does).
   */
  formats: Record<string, FormatEntryInfo | null>;
  /**
   * Computed when the key's family was decoded, from its smallest format's entry; absent while
   * that entry is not cached (or, in a read-only cache, until the writer has stored it).
   */
  placeholder?: Placeholder;
}
