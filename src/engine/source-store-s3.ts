// Sources in an S3-compatible bucket (OpenOptions.s3, PIXTABLE_S3_*), on the boundary module
// src/native/s3.ts. A miss downloads the object, size-capped and under the deadline, to a temp
// file in `sources/.tmp/` that the decoder opens and that goes after the decode; an upload is
// staged and decoded as on disk, then put in the bucket; the source fingerprint is the object's
// VersionId or ETag, never a hash of the bytes (so a HEAD revalidates a hit without reading it).
import fs from 'node:fs';
import { PixtableError, invalidParameter } from '../errors.js';
import * as is from '../is.js';
import type { Logger } from '../types.js';
import { openBucket, type Bucket, type BucketSettings, type ObjectInfo } from '../native/s3.js';
import type { Revalidator } from './revalidate.js';
import { LIVE, type SlotBook } from './slots.js';
import { fingerprint, type Source, type SourceFile } from './source-bytes.js';
import type { FetchedSource, SourceStore } from './source-store.js';
import { uploadsTmpDir } from './layout.js';
import { validateKey } from './sources.js';
import { stageUpload, tempPath } from './uploads.js';

const C = 'INVALID_OPTION';
const MAX_PREFIX_BYTES = 512;

/** `OpenOptions.s3` validated, defaults applied (documented in S3SourceOptions). */
export function resolveS3Options(v: unknown): BucketSettings {
  const o = is.object('s3', v, C);
  is.knownKeys(
    's3',
    o,
    ['bucket', 'endpoint', 'region', 'prefix', 'forcePathStyle', 'timeoutMs', 'maxAttempts'],
    C,
  );
  const bucket = is.matching('s3.bucket', o.bucket, /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, C);
  let endpoint: string | undefined;
  if (o.endpoint !== undefined) {
    const text = is.nonEmptyString('s3.endpoint', o.endpoint, C, 'an http:// or https:// URL');
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      throw invalidParameter(C, 's3.endpoint', 'an http:// or https:// URL', o.endpoint);
    endpoint = text;
  }
  let prefix = o.prefix === undefined ? '' : is.matching('s3.prefix', o.prefix, /^[^\\/][^\\]*$|^$/, C);
  if (Buffer.byteLength(prefix) > MAX_PREFIX_BYTES)
    throw invalidParameter(C, 's3.prefix', `at most ${MAX_PREFIX_BYTES} bytes`, prefix);
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  return {
    bucket,
    endpoint,
    prefix,
    region:
      o.region === undefined
        ? 'us-east-1'
        : is.matching('s3.region', o.region, /^[a-z0-9][a-z0-9-]{0,62}$/, C),
    forcePathStyle: is.optionalBool('s3.forcePathStyle', o.forcePathStyle, endpoint !== undefined, C),
    timeoutMs:
      o.timeoutMs === undefined ? 10_000 : is.intInRange('s3.timeoutMs', o.timeoutMs, 100, 600_000, C),
    maxAttempts: o.maxAttempts === undefined ? 3 : is.intInRange('s3.maxAttempts', o.maxAttempts, 1, 10, C),
  };
}

/** An object's source fingerprint: its version when the bucket keeps versions, else its ETag. */
export function objectFingerprint(o: ObjectInfo): Buffer {
  return fingerprint(o.versionId !== undefined ? `version:${o.versionId}` : `etag:${o.etag}`);
}

function sourceOfObject(path: string, o: ObjectInfo): Source {
  return { path, fp: objectFingerprint(o), mtimeMs: o.lastModified, size: o.size, ino: 0 };
}

/** Opens the bucket (loading the SDK) and returns the store over it. */
export async function openS3SourceStore(
  settings: BucketSettings,
  sourcesRoot: string,
  o: { revalidateMs: number; now: () => number; logger: Logger; maxInputBytes: number },
): Promise<SourceStore> {
  return new S3SourceStore(await openBucket(settings), sourcesRoot, o);
}

class S3SourceStore implements SourceStore {
  readonly revalidator: Revalidator;
  /** an original served back is bounded like a source read for decoding */
  private readonly maxBytes: number;

  constructor(
    private readonly bucket: Bucket,
    private readonly root: string,
    o: { revalidateMs: number; now: () => number; logger: Logger; maxInputBytes: number },
  ) {
    this.maxBytes = o.maxInputBytes;
    this.revalidator = new EtagRevalidator(bucket, o.revalidateMs, o.now, o.logger);
  }

  /** Downloads `key` to a fresh temp file; the file is removed when the download fails. */
  private async download(key: string, maxBytes: number): Promise<{ file: string; info: ObjectInfo }> {
    validateKey(key);
    const file = tempPath(this.root);
    try {
      await fs.promises.mkdir(uploadsTmpDir(this.root), { recursive: true });
      return { file, info: await this.bucket.download(key, file, maxBytes) };
    } catch (e) {
      await fs.promises.rm(file, { force: true });
      throw e;
    }
  }

  async fetch(key: string, maxBytes: number): Promise<FetchedSource> {
    const { file, info } = await this.download(key, maxBytes);
    return { src: sourceOfObject(file, info), done: () => fs.promises.rm(file, { force: true }) };
  }

  readonly upload: SourceStore['upload'] = async (key, body, maxBytes, check) => {
    validateKey(key);
    const { result, committed } = await stageUpload(this.root, body, maxBytes, check, async (tmp, stat) =>
      sourceOfObject('', await this.bucket.upload(key, tmp, stat.size)),
    );
    return { result, src: committed };
  };

  async remove(key: string): Promise<boolean> {
    validateKey(key);
    // DeleteObject answers 204 for a missing object too: the HEAD says whether there was one.
    if ((await this.bucket.head(key)) === undefined) return false;
    await this.bucket.remove(key);
    return true;
  }

  async list(): Promise<string[]> {
    const keys = await this.bucket.list();
    // Objects whose names are no valid key (written by others) cannot be asked for: not listed.
    return keys
      .filter((k) => {
        try {
          validateKey(k);
          return true;
        } catch {
          return false;
        }
      })
      .sort();
  }

  async exists(key: string): Promise<boolean> {
    validateKey(key);
    return (await this.bucket.head(key)) !== undefined;
  }

  async open(key: string): Promise<SourceFile> {
    // The route reads ranges and sniffs the head: it gets a file, unlinked at once, so nothing is
    // left behind whoever closes the handle.
    const { file, info } = await this.download(key, this.maxBytes);
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(file, 'r');
    } finally {
      await fs.promises.rm(file, { force: true });
    }
    return {
      handle,
      size: info.size,
      mtimeMs: info.lastModified,
      fingerprint: objectFingerprint(info).toString('hex'),
    };
  }

  close(): void {
    this.bucket.close();
  }
}

/**
 * Hits confirm the object's fingerprint with one HEAD at most once per `revalidateMs`. A failed
 * HEAD (store down, denied, timeout) keeps the entry served and re-checked after `revalidateMs`:
 * a store outage must not turn every cached image into an error. A 404 or another ETag is a miss.
 */
class EtagRevalidator implements Revalidator {
  /** keys whose background HEAD (confirmSync) is running */
  private readonly checking = new Set<string>();

  constructor(
    private readonly bucket: Bucket,
    private readonly revalidateMs: number,
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {}

  fresh(book: SlotBook, s: number): boolean {
    return this.now() - book.checkedAt[s]! < this.revalidateMs;
  }

  confirmSync(book: SlotBook, s: number, key: string): boolean {
    // A HEAD cannot be waited for here: it runs in the background and this lookup is a miss.
    if (!this.checking.has(key)) {
      this.checking.add(key);
      void this.confirmAsync(book, s, key)
        .catch(() => false) // a failure here only means the next lookup asks again
        .finally(() => this.checking.delete(key));
    }
    return false;
  }

  async confirmAsync(book: SlotBook, s: number, key: string): Promise<boolean> {
    let head: ObjectInfo | undefined;
    try {
      head = await this.bucket.head(key);
    } catch (e) {
      if (book.state[s] !== LIVE || book.keyOf[s] !== key) return false;
      this.logger.warn('source store revalidation failed; serving the cached entry', {
        key,
        error: e instanceof PixtableError ? e.message : String(e),
      });
      book.checkedAt[s] = this.now();
      return true;
    }
    if (head === undefined || book.state[s] !== LIVE || book.keyOf[s] !== key) return false;
    if (!objectFingerprint(head).equals(book.sourceFp.subarray(s * 16, s * 16 + 16))) return false;
    book.checkedAt[s] = this.now();
    return true;
  }

  sign(book: SlotBook, s: number): void {
    book.checkedAt[s] = this.now();
  }
}
