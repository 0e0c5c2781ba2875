// Errors that say what is wrong (issue 12, item 21): the method, not the body, on a route that
// does not take it; a 12-bit JPEG is unsupported, not corrupt; limits name the size, the limit and
// the setting; libvips' own phrasing stays inside the sharp boundary; an unknown format lists the
// configured ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, makeImage, errorOf, type Fixture } from './helpers.js';

/** A JPEG marker segment: FF, marker, big-endian length (itself included), body. */
function segment(marker: number, body: number[]): Buffer {
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([head, Buffer.from(body)]);
}

/** A Huffman table holding one code, of length 1, for `symbol`. */
function oneCodeTable(classAndId: number, symbol: number): number[] {
  const counts = new Array<number>(16).fill(0);
  counts[0] = 1;
  return [classAndId, ...counts, symbol];
}

/**
 * A real 12-bit JPEG, built byte by byte (no tool here writes one: Debian's cjpeg has no
 * -precision 12): extended sequential (SOF1) with 12-bit samples, 8×8, one gray component, one
 * block whose DC difference is 512 (category 10) and whose AC part is end-of-block, i.e. a flat
 * gray of 2048 + 512·16/8 = 3072 out of 4095. libjpeg-turbo's djpeg reads its header and stops at
 * the precision, as libvips does.
 */
export function twelveBitJpeg(): Buffer {
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    segment(0xdb, [0x00, ...new Array<number>(64).fill(16)]),
    segment(0xc1, [12, 0, 8, 0, 8, 1, 1, 0x11, 0]),
    segment(0xc4, oneCodeTable(0x00, 10)),
    segment(0xc4, oneCodeTable(0x10, 0x00)),
    segment(0xda, [1, 1, 0x00, 0, 63, 0]),
    // DC code 0, the ten bits 1000000000, EOB code 0, then 1-bits to the byte boundary
    Buffer.from([0x40, 0x0f]),
    Buffer.from([0xff, 0xd9]),
  ]);
}

async function put(f: Fixture, key: string, body: Buffer) {
  const r = await f.app.inject({
    method: 'PUT',
    url: `/v1/sources/${key}`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: body,
  });
  return { status: r.statusCode, ...errorOf(r.body) };
}

test('a wrong method is 405 whatever body and Content-Type come with it', async () => {
  const f = await fixture();
  try {
    const png = await makeImage('png');
    for (const [method, url, allow] of [
      ['POST', '/v1/pixels/small/a.png', 'GET, HEAD'],
      ['PUT', '/v1/pixels/small/a.png', 'GET, HEAD'],
      ['PATCH', '/v1/thumbnails/small/a.png', 'GET, HEAD'],
      ['POST', '/v1/sources/a.png', 'GET, HEAD, PUT, DELETE'],
      ['POST', '/v1/formats', 'GET, HEAD'],
    ] as const) {
      for (const type of ['image/png', 'application/json', 'text/plain']) {
        const r = await f.app.inject({ method, url, headers: { 'content-type': type }, payload: png });
        assert.equal(r.statusCode, 405, `${method} ${url} with ${type}: ${r.body}`);
        assert.equal(errorOf(r.body).code, 'METHOD_NOT_ALLOWED');
        assert.equal(r.headers.allow, allow);
      }
    }
  } finally {
    await f.close();
  }
});

test('a 12-bit JPEG is an unsupported variant, not a corrupt image', async () => {
  const f = await fixture();
  try {
    const e = await put(f, 'deep.jpg', twelveBitJpeg());
    assert.equal(e.status, 415);
    assert.equal(e.code, 'UNSUPPORTED_IMAGE_VARIANT');
    assert.match(e.message, /12-bit JPEG/);
    assert.doesNotMatch(e.message, /corrupt|truncated|Vips/i);
  } finally {
    await f.close();
  }
});

test('TOO_MANY_PIXELS gives the image size, the limit and the setting', async () => {
  const f = await fixture({ open: { decode: { maxInputPixels: 5000 } } });
  try {
    const e = await put(f, 'big.png', await makeImage('png', 100, 80));
    assert.equal(e.status, 422);
    assert.equal(e.code, 'TOO_MANY_PIXELS');
    assert.match(e.message, /100×80 = 8,000 pixels/);
    assert.match(e.message, /limit is 5,000/);
    assert.match(e.message, /PIXTABLE_MAX_INPUT_PIXELS/);
    assert.match(e.message, /decode\.maxInputPixels/);
  } finally {
    await f.close();
  }
});

test('BODY_TOO_LARGE gives the body size, the limit and the setting', async () => {
  const f = await fixture({ config: { maxUploadBytes: 1000 } });
  try {
    const body = await makeImage('png', 100, 80);
    const e = await put(f, 'big.png', body);
    assert.equal(e.status, 413);
    assert.equal(e.code, 'BODY_TOO_LARGE');
    assert.match(e.message, new RegExp(`${body.length.toLocaleString('en-US')} bytes`));
    assert.match(e.message, /limit of 1,000 bytes/);
    assert.match(e.message, /PIXTABLE_MAX_UPLOAD_BYTES/);
  } finally {
    await f.close();
  }
});

test("libvips' phrasing does not reach clients; unknown bytes list the types that decode", async () => {
  const f = await fixture();
  try {
    const png = await makeImage('png', 30, 20);
    const jpeg = await makeImage('jpeg', 30, 20);
    // a PNG signature and IHDR start followed by junk: sharp says "Input buffer has corrupt header:"
    const header = await put(f, 'h.png', Buffer.concat([png.subarray(0, 16), Buffer.alloc(30, 7)]));
    // half a JPEG: sharp says "Input file has corrupt header: VipsJpeg: premature end …" × 5
    const half = await put(f, 'half.jpg', jpeg.subarray(0, jpeg.length >> 1));
    for (const e of [header, half]) {
      assert.equal(e.status, 422);
      assert.equal(e.code, 'CORRUPT_IMAGE');
      assert.doesNotMatch(e.message, /corrupt header|Input (buffer|file)|failOn|Vips|:\s*$/i, e.message);
    }
    assert.match(header.message, /header cannot be read/);
    assert.match(half.message, /premature end of JPEG image/);
    assert.equal(half.message.match(/premature end/g)?.length, 1, `said once: ${half.message}`);

    const text = await put(f, 'notes.png', Buffer.from('just some text, not an image'));
    assert.equal(text.status, 415);
    assert.equal(text.code, 'UNSUPPORTED_IMAGE');
    assert.match(text.message, /JPEG, PNG, WebP/);
    assert.doesNotMatch(text.message, /Input (buffer|file)/);
  } finally {
    await f.close();
  }
});

test('UNKNOWN_FORMAT lists the configured formats', async () => {
  const f = await fixture();
  try {
    const r = await f.app.inject('/v1/pixels/thumb-999/a.png');
    assert.equal(r.statusCode, 404);
    const e = errorOf(r.body);
    assert.equal(e.code, 'UNKNOWN_FORMAT');
    assert.match(e.message, /"thumb-999"; configured: small, box$/);
  } finally {
    await f.close();
  }
});
