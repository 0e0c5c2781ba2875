// The signature hook (src/http/signed.ts) trusts the shortcut's verification only for the very URL
// the shortcut verified, and only until that verification's exp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PixtableError } from '../../src/errors.js';
import { signatureCheck } from '../../src/http/signed.js';
import { passTarget, type Target } from '../../src/http/target.js';
import type { Format } from '../../src/formats.js';

const KEY = { key: Buffer.alloc(32, 2), salt: Buffer.from('s') };
const FORGED = `/v1/pixels/small/a.png?sig=${'A'.repeat(43)}`;

function run(req: http.IncomingMessage): Error | undefined {
  const hook = signatureCheck([KEY]).onRequest;
  assert.ok(hook, 'a server with keys checks signatures');
  let called = false;
  let result: Error | undefined;
  hook({ raw: req } as FastifyRequest, {} as FastifyReply, (e) => {
    called = true;
    result = e;
  });
  assert.ok(called, 'the hook answers synchronously');
  return result;
}

function requestFor(url: string): http.IncomingMessage {
  const req = new http.IncomingMessage(new net.Socket());
  req.url = url;
  return req;
}

function target(url: string, signedUntil: number): Target {
  return {
    kind: 'target',
    url,
    route: 'pixels',
    formatName: 'small',
    key: 'a.png',
    format: {} as Format,
    signedUntil,
    thumb: undefined,
  };
}

const code = (e: Error | undefined) => (e instanceof PixtableError ? e.code : e);

test('without a target the hook verifies: a forged signature is refused', () => {
  assert.equal(code(run(requestFor(FORGED))), 'SIGNATURE_INVALID');
});

test('a target verified for this URL and not expired is not verified again', () => {
  const req = requestFor(FORGED);
  passTarget(req, target(FORGED, Date.now() + 60_000));
  assert.equal(run(req), undefined);
});

test('a target for another URL, or past its exp, does not stand in for the signature', () => {
  const other = requestFor(FORGED);
  passTarget(other, target('/v1/pixels/small/b.png', Date.now() + 60_000));
  assert.equal(code(run(other)), 'SIGNATURE_INVALID');
  const late = requestFor(FORGED);
  passTarget(late, target(FORGED, Date.now() - 1));
  assert.equal(code(run(late)), 'SIGNATURE_INVALID');
  const unchecked = requestFor(FORGED);
  passTarget(unchecked, target(FORGED, -Infinity));
  assert.equal(code(run(unchecked)), 'SIGNATURE_INVALID');
});

test('a server without keys adds no hook', () => {
  assert.equal(signatureCheck([]).onRequest, undefined);
});
