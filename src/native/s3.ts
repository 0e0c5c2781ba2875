// The one module that imports @aws-sdk/client-s3. It speaks to an S3-compatible bucket (AWS, MinIO,
// Ceph, s3rver…) for the source store (src/engine/source-store-s3.ts) and says every failure in the
// project's words: a denied request, a missing object, a deadline passed, a body shorter than
// announced. It imports only the error registry. The SDK is loaded by openBucket() (a dynamic
// import), so a process that keeps its sources on disk never pays for loading it.
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import type * as S3 from '@aws-sdk/client-s3';
import { PixtableError } from '../errors.js';

export interface BucketSettings {
  /** Endpoint URL (`http://127.0.0.1:9000`); undefined: AWS's endpoint for `region`. */
  endpoint: string | undefined;
  bucket: string;
  /** Prepended to every key as is (already ending in `/` when not empty). */
  prefix: string;
  region: string;
  /** `endpoint/bucket/key` rather than `bucket.endpoint/key` (MinIO, s3rver, Ceph need it). */
  forcePathStyle: boolean;
  /** Deadline of one operation, retries and the body included, in ms. */
  timeoutMs: number;
  /** Attempts of one request before its failure counts (the SDK retries 5xx and resets). */
  maxAttempts: number;
}

/** What the bucket says about an object: enough to fingerprint it. */
export interface ObjectInfo {
  /** the ETag as sent, quotes included */
  etag: string;
  /** the version id on a versioned bucket */
  versionId: string | undefined;
  /** bytes */
  size: number;
  /** ms since the epoch; 0 when the store sent none */
  lastModified: number;
}

export interface Bucket {
  /** The object's ETag and size, or undefined when there is none. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /**
   * Streams the object to the new file `file`, at most `maxBytes` (SOURCE_TOO_LARGE beyond).
   * SOURCE_NOT_FOUND, SOURCE_STORE_DENIED, SOURCE_STORE_TIMEOUT, SOURCE_STORE_TRUNCATED (the body
   * ended before its Content-Length), SOURCE_STORE_FAILED.
   */
  download(key: string, file: string, maxBytes: number): Promise<ObjectInfo>;
  /** Uploads the `size`-byte file `file` as one PutObject with its length. */
  upload(key: string, file: string, size: number): Promise<ObjectInfo>;
  remove(key: string): Promise<void>;
  /** Every key under the prefix, the prefix cut off. */
  list(): Promise<string[]>;
  close(): void;
}

type Sdk = typeof S3;

/** Loads the SDK and makes a client; credentials come from the SDK's default chain. */
export async function openBucket(s: BucketSettings): Promise<Bucket> {
  // The SDK warns on every start that its releases after January 2027 need Node 22; package.json
  // pins a release that supports Node 20, so the warning would only be noise in the server's log.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const sdk: Sdk = await import('@aws-sdk/client-s3');
  const client = new sdk.S3Client({
    region: s.region,
    ...(s.endpoint === undefined ? {} : { endpoint: s.endpoint }),
    forcePathStyle: s.forcePathStyle,
    maxAttempts: s.maxAttempts,
    // Checksums only where the API demands them: S3-compatible stores differ in which of the
    // newer checksum headers and trailers they accept, and ETags are what fingerprints use.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: s.timeoutMs, requestTimeout: s.timeoutMs },
  });
  return new SdkBucket(sdk, client, s);
}

class SdkBucket implements Bucket {
  constructor(
    private readonly sdk: Sdk,
    private readonly client: S3.S3Client,
    private readonly s: BucketSettings,
  ) {}

  private name(key: string): string {
    return this.s.prefix + key;
  }

  /** Runs `op` under the deadline; any failure leaves as a PixtableError. */
  private async run<T>(key: string, op: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.s.timeoutMs);
    try {
      return await op(ac.signal);
    } catch (e) {
      throw translateS3Error(e, key, ac.signal.aborted, this.s);
    } finally {
      clearTimeout(timer);
    }
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.run(key, async (abortSignal) => {
      try {
        const r = await this.client.send(
          new this.sdk.HeadObjectCommand({ Bucket: this.s.bucket, Key: this.name(key) }),
          { abortSignal },
        );
        return info(r.ETag, r.VersionId, r.ContentLength, r.LastModified);
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw e;
      }
    });
  }

  download(key: string, file: string, maxBytes: number): Promise<ObjectInfo> {
    return this.run(key, async (abortSignal) => {
      const r = await this.client.send(
        new this.sdk.GetObjectCommand({ Bucket: this.s.bucket, Key: this.name(key) }),
        { abortSignal },
      );
      const body = r.Body as Readable | undefined;
      const declared = r.ContentLength;
      try {
        if (declared !== undefined && declared > maxBytes) {
          throw new PixtableError(
            'SOURCE_TOO_LARGE',
            `${key} is ${declared} bytes, the limit is ${maxBytes}`,
          );
        }
        const size = await toFile(body, file, key, maxBytes, abortSignal);
        if (declared !== undefined && size !== declared) {
          throw new PixtableError(
            'SOURCE_STORE_TRUNCATED',
            `${key}: ${size} bytes arrived, Content-Length said ${declared}`,
          );
        }
        if (size === 0) throw new PixtableError('EMPTY_SOURCE', key);
        return info(r.ETag, r.VersionId, size, r.LastModified);
      } finally {
        body?.destroy();
      }
    });
  }

  upload(key: string, file: string, size: number): Promise<ObjectInfo> {
    return this.run(key, async (abortSignal) => {
      const body = fs.createReadStream(file);
      try {
        const r = await this.client.send(
          new this.sdk.PutObjectCommand({
            Bucket: this.s.bucket,
            Key: this.name(key),
            Body: body,
            ContentLength: size,
          }),
          { abortSignal },
        );
        return info(r.ETag, r.VersionId, size, new Date());
      } finally {
        body.destroy();
      }
    });
  }

  remove(key: string): Promise<void> {
    return this.run(key, async (abortSignal) => {
      await this.client.send(
        new this.sdk.DeleteObjectCommand({ Bucket: this.s.bucket, Key: this.name(key) }),
        {
          abortSignal,
        },
      );
    });
  }

  list(): Promise<string[]> {
    return this.run('(list)', async (abortSignal) => {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const r = await this.client.send(
          new this.sdk.ListObjectsV2Command({
            Bucket: this.s.bucket,
            Prefix: this.s.prefix || undefined,
            ContinuationToken: token,
          }),
          { abortSignal },
        );
        for (const o of r.Contents ?? [])
          if (o.Key !== undefined) out.push(o.Key.slice(this.s.prefix.length));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token !== undefined);
      return out;
    });
  }

  close(): void {
    this.client.destroy();
  }
}

function info(
  etag: string | undefined,
  versionId: string | undefined,
  size: number | undefined,
  lastModified: Date | undefined,
): ObjectInfo {
  // Without an ETag nothing could tell a replaced object from the one decoded: refuse it.
  if (etag === undefined || etag === '') {
    throw new PixtableError('SOURCE_STORE_FAILED', 'the store sent no ETag for the object');
  }
  return { etag, versionId, size: size ?? 0, lastModified: lastModified?.getTime() ?? 0 };
}

/** Writes `body` to `file` chunk by chunk (backpressure), cut at `maxBytes`. Returns the size. */
async function toFile(
  body: Readable | undefined,
  file: string,
  key: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<number> {
  const fh = await fs.promises.open(file, 'wx');
  let size = 0;
  try {
    if (body === undefined) return 0;
    // The deadline also covers a body that stalls after its headers.
    const stop = () => body.destroy(new Error('deadline passed'));
    signal.addEventListener('abort', stop, { once: true });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) {
          throw new PixtableError('SOURCE_TOO_LARGE', `${key} is over the limit of ${maxBytes} bytes`);
        }
        for (let at = 0; at < chunk.length;)
          at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
      }
    } catch (e) {
      if (e instanceof PixtableError || signal.aborted) throw e;
      // The connection broke after the headers: what arrived is part of an object, never the object.
      throw new PixtableError('SOURCE_STORE_TRUNCATED', `${key}: the body broke off after ${size} bytes`, {
        cause: e,
      });
    } finally {
      signal.removeEventListener('abort', stop);
    }
    return size;
  } finally {
    await fh.close();
  }
}

interface SdkFailure {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(e: unknown): number | undefined {
  return (e as SdkFailure | null)?.$metadata?.httpStatusCode;
}

const DENIED_NAMES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'CredentialsProviderError',
  'ExpiredToken',
  'InvalidToken',
]);

const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);

/**
 * An SDK or network failure in the registry's words. Never INTERNAL: whatever the store does, it
 * is the store's failure (5xx family), a missing object (SOURCE_NOT_FOUND) or an oversized one.
 */
export function translateS3Error(
  e: unknown,
  key: string,
  deadlinePassed: boolean,
  s: BucketSettings,
): PixtableError {
  if (e instanceof PixtableError && !deadlinePassed) return e;
  const f = (e ?? {}) as SdkFailure;
  const status = statusOf(e);
  const where = `s3://${s.bucket}/${s.prefix}${key}`;
  const what = [f.name, status].filter((x) => x !== undefined).join(' ');
  if (deadlinePassed || TIMEOUT_NAMES.has(f.name ?? '') || f.code === 'ETIMEDOUT') {
    return new PixtableError(
      'SOURCE_STORE_TIMEOUT',
      `${where}: no complete answer within ${s.timeoutMs} ms`,
      {
        cause: e,
      },
    );
  }
  if (status === 404 && f.name !== 'NoSuchBucket')
    return new PixtableError('SOURCE_NOT_FOUND', key, { cause: e });
  if (status === 401 || status === 403 || DENIED_NAMES.has(f.name ?? '')) {
    return new PixtableError('SOURCE_STORE_DENIED', `${where}: ${what}`, { cause: e });
  }
  return new PixtableError('SOURCE_STORE_FAILED', `${where}: ${what || String(f.message ?? e)}`, {
    cause: e,
  });
}
