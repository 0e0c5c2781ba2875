// The source-store seam: where source images live. ImageCache (src/cache.ts) is written against
// `SourceStore` and installs one implementation at open — the local directory `storage/sources/`
// (here, the default) or an S3-compatible bucket (source-store-s3.ts) — so no call branches on
// which. A store reads a source to a file the decoder can open, commits uploads, removes, lists,
// opens originals for download, and brings the revalidator that fits its fingerprints.
import fs from 'node:fs';
import { PixtableError } from '../errors.js';
import { StatRevalidator, type Revalidator } from './revalidate.js';
import { hashFile, openSource, readSource, sourceOf, type Source, type SourceFile } from './source-bytes.js';
import { listKeys, removeName, resolveForWrite } from './sources.js';
import { renameInto, stageUpload, type UploadBody } from './uploads.js';

/** A source read for decoding: `src.path` is readable until `done()`. */
export interface FetchedSource {
  src: Source;
  done(): Promise<void>;
}

/**
 * The fingerprint an entry of `key` was confirmed against for a file with exactly this stat
 * (a directory store's shortcut past hashing a hot original); undefined: compute it.
 */
export type ConfirmedFingerprint = (key: string, stat: fs.Stats) => Buffer | undefined;

export interface SourceStore {
  /** How hits confirm their source against this store. */
  readonly revalidator: Revalidator;
  /** The source of `key`, at most `maxBytes`. SOURCE_NOT_FOUND, EMPTY_SOURCE, SOURCE_TOO_LARGE, INVALID_KEY. */
  fetch(key: string, maxBytes: number): Promise<FetchedSource>;
  /**
   * Streams `body` to a temp file, runs `check` on it (the decodes), and only then makes it the
   * source of `key`; nothing stored changes when either fails. Returns check's result and the
   * new source.
   */
  upload<T>(
    key: string,
    body: UploadBody,
    maxBytes: number,
    check: (tmpPath: string) => Promise<T>,
  ): Promise<{ result: T; src: Source }>;
  /** Removes the source of `key`; false when there was none. */
  remove(key: string): Promise<boolean>;
  /** Every key, sorted. */
  list(): Promise<string[]>;
  /** Whether `key` has a source. */
  exists(key: string): Promise<boolean>;
  /** The original of `key`, open for reading; the caller closes the handle. */
  open(key: string, confirmed: ConfirmedFingerprint): Promise<SourceFile>;
  close(): void;
}

/** `storage/sources/`: keys are file names under `root` (a real path), confined by sources.ts. */
export class LocalSourceStore implements SourceStore {
  readonly revalidator: Revalidator;

  constructor(
    private readonly root: string,
    revalidateMs: number,
    maxBytes: number,
    now: () => number,
  ) {
    this.revalidator = new StatRevalidator(root, revalidateMs, maxBytes, now);
  }

  async fetch(key: string, maxBytes: number): Promise<FetchedSource> {
    // decoders read the file in place (page cache): nothing to clean up
    return { src: await readSource(this.root, key, maxBytes), done: async () => {} };
  }

  readonly upload: SourceStore['upload'] = async (key, body, maxBytes, check) => {
    const target = await resolveForWrite(this.root, key);
    const { result, committed } = await stageUpload(
      this.root,
      body,
      maxBytes,
      check,
      async (tmp, stat, fp) => {
        await renameInto(this.root, tmp, target);
        return sourceOf(target, fp, stat);
      },
    );
    return { result, src: committed };
  };

  remove(key: string): Promise<boolean> {
    // The name itself goes (a link, never its target).
    return removeName(this.root, key);
  }

  list(): Promise<string[]> {
    return listKeys(this.root);
  }

  async exists(key: string): Promise<boolean> {
    try {
      const { handle, stat } = await openSource(this.root, key);
      await handle.close();
      return stat.isFile();
    } catch (e) {
      if (e instanceof PixtableError && e.code === 'SOURCE_NOT_FOUND') return false;
      throw e;
    }
  }

  async open(key: string, confirmed: ConfirmedFingerprint): Promise<SourceFile> {
    const { handle, stat } = await openSource(this.root, key);
    try {
      const fp = confirmed(key, stat) ?? (await hashFile(handle, stat.size));
      return { handle, size: stat.size, mtimeMs: stat.mtimeMs, fingerprint: fp.toString('hex') };
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  close(): void {}
}
