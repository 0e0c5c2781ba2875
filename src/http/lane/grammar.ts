// The fast lane's request grammar: which bytes the lane reads as a request, and what it takes from
// them. Pure: no sockets, no state beyond the one result object.
//
// Deliberately narrower than RFC 9112: whatever the lane reads as a request, llhttp reads the same
// way; whatever is doubtful (a head split over two reads, a body, HTTP/1.0, Upgrade/Expect, a
// missing or repeated Host, a repeated Content-Length, any byte outside the grammar below, a head
// beyond maxHeaderBytes) is refused here and goes to Node's parser (test/unit/http-lane.test.ts
// checks this against Node).
//
// request-line = ("GET" / "HEAD") SP target SP "HTTP/1.1" CRLF, target = "/" *(%x21-7E)
// header-line  = token ":" *(SP / HTAB) *(HTAB / %x20-7E / %x80-FF) CRLF   (no obs-fold)

/** One parsed request, valid until the next is parsed (the lane is synchronous; no per-request object). */
export interface LaneRequest {
  isHead: boolean;
  /** The raw request target as sent (starts with '/'). */
  target: string;
  range: boolean;
  /** Repeated headers joined with ", " as Node joins them. */
  accept: string | undefined;
  ifNoneMatch: string | undefined;
  /** X-Request-Id, read only when LaneOptions.requestIds is set. */
  requestId: string | undefined;
  /** `Connection: close`: the lane closes the connection after this response. */
  close: boolean;
  /** Offset just past this request's head in the chunk. */
  end: number;
  /**
   * Set by `handle` when it declines: what it learned (a parsed target, say), handed with the
   * request to Node's server so that nothing is parsed or looked up twice (see `declinedNote`).
   */
  note: unknown;
}

const req: LaneRequest = {
  isHead: false,
  target: '',
  range: false,
  accept: undefined,
  ifNoneMatch: undefined,
  requestId: undefined,
  close: false,
  end: 0,
  note: undefined,
};

/** RFC 9110 tchar. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;

/**
 * Parses the request starting at `start`. Undefined when there is no complete head in `s`, or it is
 * anything the lane leaves to Node (see the file comment). The result is one shared object.
 */
export function parseRequest(
  s: string,
  start: number,
  maxHead: number,
  requestIds: boolean,
): LaneRequest | undefined {
  const blank = s.indexOf('\r\n\r\n', start);
  if (blank < 0 || blank - start > maxHead) return undefined;
  let p: number;
  if (s.startsWith('GET /', start)) {
    req.isHead = false;
    p = start + 4;
  } else if (s.startsWith('HEAD /', start)) {
    req.isHead = true;
    p = start + 5;
  } else return undefined;
  const sp = s.indexOf(' ', p);
  if (sp < 0 || sp > blank) return undefined;
  for (let i = p + 1; i < sp; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return undefined;
  }
  if (!s.startsWith('HTTP/1.1\r\n', sp + 1)) return undefined;
  req.target = s.slice(p, sp);
  req.range = false;
  req.accept = undefined;
  req.ifNoneMatch = undefined;
  req.requestId = undefined;
  req.close = false;
  req.note = undefined;
  let hosts = 0;
  let lengths = 0;
  p = sp + 11;
  while (p < blank + 2) {
    const eol = s.indexOf('\r\n', p); // ≤ blank: the head ends with CRLF CRLF
    let q = p;
    while (q < eol) {
      const c = s.charCodeAt(q);
      if (c >= 128 || TCHAR[c] !== 1) break;
      q++;
    }
    if (q === p || q === eol || s.charCodeAt(q) !== 0x3a /* : */) return undefined;
    const nameEnd = q;
    q++;
    while (q < eol && (s.charCodeAt(q) === 0x20 || s.charCodeAt(q) === 0x09)) q++;
    const vStart = q;
    let vEnd = q;
    let tab = false;
    for (; q < eol; q++) {
      const c = s.charCodeAt(q);
      if (c < 0x20 ? c !== 0x09 : c === 0x7f) return undefined; // CTLs, lone CR or LF included
      if (c === 0x09) tab = true;
      else if (c !== 0x20) vEnd = q + 1;
    }
    switch (nameEnd - p) {
      case 4:
        if (is(s, p, 'host')) hosts++;
        break;
      case 5:
        if (is(s, p, 'range')) req.range = true;
        break;
      case 6:
        if (is(s, p, 'accept')) req.accept = join(req.accept, s.slice(vStart, vEnd));
        else if (is(s, p, 'expect')) return undefined;
        break;
      case 7:
        if (is(s, p, 'upgrade')) return undefined;
        break;
      case 10:
        // llhttp matches Connection's tokens without trimming a tab ("close\t" keeps the
        // connection alive there), so a tab leaves the value to Node
        if (is(s, p, 'connection')) {
          if (tab) return undefined;
          const v = s.slice(vStart, vEnd).toLowerCase();
          if (v === 'close') req.close = true;
          else if (v !== 'keep-alive') return undefined;
        }
        break;
      case 12:
        if (requestIds && is(s, p, 'x-request-id')) req.requestId = s.slice(vStart, vEnd);
        break;
      case 13:
        if (is(s, p, 'if-none-match')) req.ifNoneMatch = join(req.ifNoneMatch, s.slice(vStart, vEnd));
        break;
      case 14:
        // Only one `Content-Length: 0`: llhttp refuses a repeated one (even "0" twice), a list and
        // a trailing tab ("0\t") with 400.
        if (
          is(s, p, 'content-length') &&
          (++lengths > 1 || tab || vEnd - vStart !== 1 || s.charCodeAt(vStart) !== 0x30)
        )
          return undefined;
        break;
      case 17:
        if (is(s, p, 'transfer-encoding')) return undefined;
        break;
    }
    p = eol + 2;
  }
  if (hosts !== 1) return undefined;
  req.end = blank + 4;
  return req;
}

/** Case-insensitive match of `lower` (lower-case letters and '-') at s[at…]; lengths already equal. */
function is(s: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((s.charCodeAt(at + i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function join(a: string | undefined, b: string): string {
  return a === undefined ? b : `${a}, ${b}`;
}
