import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { parseRect } from '../../src/http/rect.js';
import { parseRange } from '../../src/http/range.js';
import { decodeKey, encodeKey, keyFromUrl } from '../../src/http/keys.js';
import { chooseType } from '../../src/http/negotiate.js';
import { scanHeaders } from '../../src/http/shortcut-memory.js';
import { PixtableError } from '../../src/errors.js';

function code(fn: () => unknown, c: string, msg?: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PixtableError);
    assert.equal(e.code, c);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

test('rect: valid rectangles inside the image', () => {
  assert.deepEqual(parseRect('0,0,64,64', 64, 64), { x: 0, y: 0, w: 64, h: 64 });
  assert.deepEqual(parseRect('10,20,5,1', 64, 64), { x: 10, y: 20, w: 5, h: 1 });
});

test('rect: malformed, empty and out-of-bounds are INVALID_RECT with the reason', () => {
  for (const bad of [
    '',
    '1,2,3',
    '1,2,3,4,5',
    '-1,0,1,1',
    '1e1,0,1,1',
    ' 1,0,1,1',
    '0x1,0,1,1',
    'a,b,c,d',
    '1.5,0,1,1',
  ]) {
    code(() => parseRect(bad, 64, 64), 'INVALID_RECT', /four non-negative integers/);
  }
  code(() => parseRect('0,0,0,5', 64, 64), 'INVALID_RECT', /empty/);
  code(() => parseRect('60,0,5,1', 64, 64), 'INVALID_RECT', /leaves the 64x64 image/);
  code(() => parseRect('0,64,1,1', 64, 64), 'INVALID_RECT', /leaves/);
});

test('range: single ranges, suffix, open-ended, clamped', () => {
  assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=900-', 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=-100', 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=-5000', 1000), { start: 0, end: 999 });
  assert.deepEqual(parseRange('bytes=990-5000', 1000), { start: 990, end: 999 });
  assert.deepEqual(parseRange(' bytes = 5-5', 1000), { start: 5, end: 5 });
});

test('range: ignored when absent, multiple, foreign unit or invalid; 416 when outside', () => {
  assert.equal(parseRange(undefined, 10), undefined);
  assert.equal(parseRange('bytes=0-1,5-6', 10), undefined);
  assert.equal(parseRange('items=0-1', 10), undefined);
  assert.equal(parseRange('bytes=5-1', 10), undefined);
  assert.equal(parseRange('bytes=a-b', 10), undefined);
  assert.equal(parseRange('bytes=-', 10), undefined);
  assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable');
});

test('keys: decoded per segment; traversal, encoded slashes, NUL and empty segments refused', () => {
  assert.equal(decodeKey('photos/cat.jpg'), 'photos/cat.jpg');
  assert.equal(decodeKey('a%20b/c%C3%A9.png'), 'a b/cé.png');
  assert.equal(decodeKey('..a/b..'), '..a/b..');
  for (const bad of [
    '../etc/passwd',
    'a/../../b',
    '%2e%2e/secret',
    '%2E%2E/secret',
    '.%2e/x',
    'a/%2e',
    'a%2f..%2fb',
    'a%5cb',
    'a%00b',
    'a%0ab',
    '/etc/passwd',
    'a//b',
    'a/',
    '',
    '%zz',
    '%',
  ]) {
    code(() => decodeKey(bad), 'INVALID_KEY');
  }
  code(() => decodeKey('a'.repeat(1025)), 'INVALID_KEY', /longer than 1024/);
  assert.equal(keyFromUrl('/v1/sources/a%20b/c.jpg?x=1', '/v1/sources/'.length), 'a b/c.jpg');
  assert.equal(encodeKey('a b/c?d#.jpg'), 'a%20b/c%3Fd%23.jpg');
  assert.equal(decodeKey(encodeKey('dir/ü ?#%.png')), 'dir/ü ?#%.png');
});

test('negotiation: explicit type wins and is validated', () => {
  assert.deepEqual(chooseType('webp', 'image/png', ['webp', 'avif'], true), {
    type: 'webp',
    negotiated: false,
  });
  assert.deepEqual(chooseType('jpg', undefined, ['webp'], true), { type: 'jpeg', negotiated: false });
  code(() => chooseType('gif', undefined, ['webp'], true), 'INVALID_PARAMETER', /webp, avif, png, jpeg/);
});

test('negotiation: modern types only when named; safe fallback otherwise', () => {
  const prefs = ['webp', 'avif'] as const;
  assert.equal(chooseType(undefined, 'image/avif,image/webp,*/*;q=0.8', prefs, true).type, 'webp');
  assert.equal(chooseType(undefined, 'image/avif,image/webp,*/*;q=0.8', ['avif', 'webp'], true).type, 'avif');
  assert.equal(chooseType(undefined, 'image/webp;q=0.5,image/avif', prefs, true).type, 'avif');
  assert.equal(chooseType(undefined, '*/*', prefs, true).type, 'png');
  assert.equal(chooseType(undefined, '*/*', prefs, false).type, 'jpeg');
  assert.equal(chooseType(undefined, undefined, prefs, false).type, 'jpeg');
  assert.equal(chooseType(undefined, 'image/*', prefs, true).type, 'png');
  assert.equal(chooseType(undefined, 'image/jpeg', prefs, true).type, 'jpeg');
  assert.equal(chooseType(undefined, 'image/png;q=0, image/*;q=0.5', prefs, true).type, 'jpeg');
  assert.equal(chooseType(undefined, 'image/webp;q=0, */*', prefs, true).type, 'png');
  assert.equal(chooseType(undefined, 'image/webp', prefs, true).negotiated, true);
  code(() => chooseType(undefined, 'image/gif', prefs, true), 'NOT_ACCEPTABLE');
  code(() => chooseType(undefined, 'text/html, image/*;q=0', prefs, true), 'NOT_ACCEPTABLE');
});

test('keys: the plain-key shortcut agrees with full decoding', () => {
  for (const k of ['a', 'a/b/c.jpg', 'x..y/z', '...', 'a/.../b', "it's (1)+[x]", 'a@b:c;d=e,f!g$h&i*~_-']) {
    assert.equal(decodeKey(k), k);
  }
  for (const bad of ['.', '..', 'a/.', 'a/..', './a', '../a', 'a/./b'])
    code(() => decodeKey(bad), 'INVALID_KEY');
  code(() => decodeKey('a'.repeat(1100)), 'INVALID_KEY');
});

test('scanHeaders finds Range, If-None-Match and Accept in any case, joining repeats as Node does', async () => {
  const none = scanHeaders(['Host', 'x', 'Cache-Control', 'no-cache', 'Accept-Language', 'de']);
  assert.deepEqual({ ...none }, { range: false, ifNoneMatch: undefined, accept: undefined });
  // Node's parser and its own req.headers as the reference
  const seen = await new Promise<{ scanned: object; node: http.IncomingHttpHeaders }>((resolve) => {
    const server = http.createServer((req, res) => {
      resolve({ scanned: { ...scanHeaders(req.rawHeaders) }, node: req.headers });
      res.end();
      server.close();
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const c = net.connect(port, '127.0.0.1', () =>
        c.write(
          'GET / HTTP/1.1\r\nhost: x\r\nRANGE: bytes=0-1\r\nif-none-match: "a"\r\nACCEPT: image/webp\r\n' +
            'If-None-Match: W/"b"\r\nAccept: */*\r\nConnection: close\r\n\r\n',
        ),
      );
      c.on('data', () => {});
      c.on('error', () => {});
    });
  });
  assert.deepEqual(seen.scanned, { range: true, ifNoneMatch: '"a", W/"b"', accept: 'image/webp, */*' });
  assert.equal(seen.node['if-none-match'], '"a", W/"b"');
  assert.equal(seen.node.accept, 'image/webp, */*');
  assert.equal(seen.node.range, 'bytes=0-1');
});
