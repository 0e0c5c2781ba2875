// The HTTP error family (src/http/errors.ts) for the one path no inject() test reaches: answers
// written on a bare socket before a request exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { ERRORS, type ErrorCode } from '../../src/errors.js';
import { clientErrorHandler, writeSocketError } from '../../src/http/errors.js';

function fakeSocket(): { socket: Socket; written: string[]; destroyed: () => boolean } {
  const written: string[] = [];
  let destroyed = false;
  const socket = {
    writable: true,
    get destroyed() {
      return destroyed;
    },
    write(s: string) {
      written.push(s);
      return true;
    },
    destroy() {
      destroyed = true;
    },
  } as unknown as Socket;
  return { socket, written, destroyed: () => destroyed };
}

function parse(raw: string): { statusLine: string; headers: Map<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const [statusLine = '', ...lines] = raw.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const l of lines)
    headers.set(l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim());
  return { statusLine, headers, body: raw.slice(end + 4) };
}

test('every registry code written on a socket: its status, Node’s reason phrase, the JSON shape', () => {
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const { socket, written, destroyed } = fakeSocket();
    writeSocketError(socket, code);
    assert.equal(written.length, 1, code);
    const r = parse(written[0]!);
    const status = ERRORS[code].status;
    assert.equal(r.statusLine, `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}`, code);
    assert.deepEqual(JSON.parse(r.body), { error: { code, message: ERRORS[code].message } }, code);
    assert.equal(r.headers.get('content-length'), String(Buffer.byteLength(r.body)), code);
    assert.equal(r.headers.get('connection'), 'close', code);
    assert.equal(r.headers.get('retry-after'), status === 503 ? '1' : undefined, code);
    assert.ok(destroyed(), `${code}: the socket is closed after the answer`);
  }
});

test('Node’s parser errors map to 408, 431 and 400; resets and dead sockets get nothing', () => {
  const cases: [string, number][] = [
    ['ERR_HTTP_REQUEST_TIMEOUT', 408],
    ['HPE_HEADER_OVERFLOW', 431],
    ['HPE_INVALID_METHOD', 400],
  ];
  for (const [errCode, status] of cases) {
    const { socket, written } = fakeSocket();
    clientErrorHandler(Object.assign(new Error(errCode), { code: errCode }), socket);
    assert.match(written[0] ?? '', new RegExp(`^HTTP/1\\.1 ${status} ${http.STATUS_CODES[status]}\\r\\n`));
  }
  const reset = fakeSocket();
  clientErrorHandler(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), reset.socket);
  assert.deepEqual(reset.written, []);
});
