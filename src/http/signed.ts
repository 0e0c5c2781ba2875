// Signed URLs on the routes that need them (pixels, thumbnails, sources): an onRequest hook that
// verifies the raw request target for the request's method (sign.ts), and for a PUT whose signed
// URL names a `sha256`, a preParsing hook that lets the body through only if it has that digest.
// A target the shortcut parsed has been verified there already, for this very URL (as GET); it is
// not verified twice unless its exp passed in between.
import { createHash } from 'node:crypto';
import { Transform, pipeline, type TransformCallback } from 'node:stream';
import type { FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify';
import { PixtableError } from '../errors.js';
import type { SigningKey } from '../config/env.js';
import { signedParams, verifyUrl } from './sign.js';
import { targetOf } from './target.js';

type OnRequest = (request: FastifyRequest, reply: FastifyReply, done: (e?: Error) => void) => void;
type PreParsing = preParsingHookHandler;

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** Route options adding the checks when the server signs (`keys` not empty); none otherwise. */
export function signatureCheck(keys: readonly SigningKey[]): {
  onRequest?: OnRequest;
  preParsing?: PreParsing;
} {
  if (keys.length === 0) return {};
  return {
    onRequest(request, _reply, done) {
      const req = request.raw;
      const t = targetOf(req);
      if (t !== undefined && t.signedUntil >= Date.now()) {
        done();
        return;
      }
      try {
        verifyUrl(req.method ?? '', req.url ?? '', keys, Date.now());
        done();
      } catch (e) {
        done(e as Error);
      }
    },
    preParsing(request, _reply, payload, done) {
      // onRequest verified the URL, `sha256` included: it is the signer's word on the body
      const digests = request.raw.method === 'PUT' ? signedParams(request.raw.url ?? '', 'sha256') : [];
      if (digests.length === 0) {
        done(null, payload);
        return;
      }
      const bad = digests.find((d) => !SHA256_HEX.test(d));
      if (bad !== undefined) {
        done(
          new PixtableError('INVALID_PARAMETER', `sha256 must be 64 hex digits, got ${JSON.stringify(bad)}`),
        );
        return;
      }
      // pipeline: a body cut short (the client went away) fails the check's stream too
      done(null, pipeline(payload, new DigestCheck(digests.map((d) => d.toLowerCase())), noop));
    },
  };
}

/**
 * Passes a body through unchanged, hashing it, and fails at its end (before the route sees the
 * end of the body, so nothing is stored) when its SHA-256 is not every one of `expected`.
 */
class DigestCheck extends Transform {
  private readonly hash = createHash('sha256');
  constructor(private readonly expected: string[]) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const got = this.hash.digest('hex');
    if (this.expected.every((d) => d === got)) cb();
    else cb(new PixtableError('CONTENT_DIGEST_MISMATCH', `the body's SHA-256 is ${got}`));
  }
}

function noop(): void {}
