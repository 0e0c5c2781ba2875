// Signed URLs on the routes that need them (pixels, thumbnails, sources): an onRequest hook that
// verifies the raw request target (sign.ts). A target the shortcut parsed has been verified there
// already, for this very URL; it is not verified twice unless its exp passed in between.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SigningKey } from '../config/env.js';
import { verifyUrl } from './sign.js';
import { targetOf } from './target.js';

type OnRequest = (request: FastifyRequest, reply: FastifyReply, done: (e?: Error) => void) => void;

/** Route options adding the check when the server signs (`keys` not empty); none otherwise. */
export function signatureCheck(keys: readonly SigningKey[]): { onRequest?: OnRequest } {
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
        verifyUrl(req.url ?? '', keys, Date.now());
        done();
      } catch (e) {
        done(e as Error);
      }
    },
  };
}
