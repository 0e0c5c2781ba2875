// A real S3-protocol server for tests and benches: s3rver (a dev dependency) on 127.0.0.1, an
// ephemeral port and a temp directory, with the client the tests use to change the bucket behind
// pixtable's back. Credentials are s3rver's fixed pair, given through the environment as the AWS
// SDK's default chain reads them (what a deployment does).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';

import type { ImageCache } from '../../src/cache.js';

const require = createRequire(import.meta.url);

/** The pixels of `key` in `format` (get(): a miss decodes), copied out of the mapping. */
export async function pixelsOf(cache: ImageCache, key: string, format = 'small'): Promise<Buffer> {
  const v = await cache.get(format, key);
  try {
    return Buffer.from(v.pixels);
  } finally {
    v.release();
  }
}

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverClass = new (o: Record<string, unknown>) => S3rverInstance;

/** s3rver's constructor, or undefined when the package is not installed. */
export function loadS3rver(): S3rverClass | undefined {
  try {
    return require('s3rver') as S3rverClass;
  } catch {
    return undefined;
  }
}

export interface TestBucket {
  endpoint: string;
  bucket: string;
  client: S3Client;
  putObject(key: string, body: Buffer): Promise<string>;
  getObject(key: string): Promise<Buffer | undefined>;
  headObject(key: string): Promise<boolean>;
  deleteObject(key: string): Promise<void>;
  close(): Promise<void>;
}

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** Sets the SDK's default-chain credentials to s3rver's pair (unless a test set others). */
export function useS3rverCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
}

export async function startS3rver(bucket = 'pixtable-test'): Promise<TestBucket> {
  const S3rver = loadS3rver();
  if (S3rver === undefined) throw new Error('s3rver is not installed');
  useS3rverCredentials();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    bucket,
    client,
    async putObject(key, body) {
      const r = await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
      return r.ETag ?? '';
    },
    async getObject(key) {
      try {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return Buffer.from(await r.Body!.transformToByteArray());
      } catch (e) {
        if ((e as { name?: string }).name === 'NoSuchKey') return undefined;
        throw e;
      }
    },
    async headObject(key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return true;
      } catch (e) {
        if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
          return false;
        throw e;
      }
    },
    async deleteObject(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    async close() {
      client.destroy();
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
