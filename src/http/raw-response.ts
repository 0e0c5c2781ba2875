// Raw pixel responses, for the pixels route and the hit shortcut alike: the header list every raw
// response carries, the validators of a 304, Range and ?rect, and how the body reaches the socket.
//
// Zero copy is the point of this module. A whole entry is one writeHead and one end(slice of the
// mapping); a rectangle is one synchronous write(row) per row, which Node corks for the tick so the
// rows leave as one gathered writev of mapping slices. Nothing is concatenated, and nothing is
// allocated per row beyond a subarray. An entry's header lists depend only on its ETag, so they are
// built once per ETag and reused (Node only reads them).
import type http from 'node:http';
import { LRUCache } from 'lru-cache';
import { PixtableError } from '../errors.js';
import type { EntryInfo, EntryRef, ImageView } from '../types.js';
import { rawHead } from './head-bytes.js';
import type { LaneOut } from './lane/index.js';
import { parseRange, type ByteRange } from './range.js';
import { parseRect } from './rect.js';
import { etagMatches } from './thumbcache.js';

/** A whole entry's response heads: for Node's writeHead, and as bytes for the lane. */
export interface WholeHeads {
  readonly headers: string[];
  readonly notModified: string[];
  readonly head: Buffer;
  readonly head304: Buffer;
}

/** Pinning a ref's slot while a write reads it (the cache's pinRef/unpinRef). */
export interface Pins {
  /** Read-only: every raw hit arrives pinned (the shortcut's hold), see RawResponses. */
  readonly readOnly: boolean;
  pinRef(ref: EntryRef): boolean;
  unpinRef(ref: EntryRef): void;
}

const kRef = Symbol('pixtable.ref');

/** Whether part of a 200's body from the mapping is still queued on the socket after end(). */
function bodyQueued(res: http.ServerResponse, status: 200 | 304, isHead: boolean): boolean {
  const socket = res.socket;
  return status === 200 && !isHead && (socket === null || socket.writableLength !== 0);
}
type PinnedResponse = http.ServerResponse & { [kRef]?: EntryRef };

export class RawResponses {
  private readonly wholeByEtag = new LRUCache<string, WholeHeads>({ max: 4096 });
  // One shared 'close' listener with the ref stashed on the response: no closure per pinned hit.
  private readonly unpinOnClose: (this: PinnedResponse) => void;

  constructor(
    private readonly cacheControl: string,
    /** Headers every response carries (CORS). */
    private readonly extra: readonly string[],
    private readonly pins: Pins,
  ) {
    // Decided once: a read-only process's hits arrive pinned, a writer's only pin queued writes.
    this.writeHit = pins.readOnly ? this.writeHitPinned.bind(this) : this.writeHitUnpinned.bind(this);
    this.sendHit = pins.readOnly ? this.sendHitPinned.bind(this) : this.sendHitUnpinned.bind(this);
    this.unpinOnClose = function (this: PinnedResponse): void {
      const ref = this[kRef];
      if (ref === undefined) return;
      this[kRef] = undefined;
      pins.unpinRef(ref);
    };
  }

  /** The headers of every raw response: whole entry, rectangle or range. */
  headers(
    length: string,
    etag: string,
    width: string,
    height: string,
    stride: string,
    pixelFormat: string,
  ): string[] {
    return [
      'Content-Type',
      'application/octet-stream',
      'Content-Length',
      length,
      'ETag',
      etag,
      'Cache-Control',
      this.cacheControl,
      'Accept-Ranges',
      'bytes',
      'X-Image-Width',
      width,
      'X-Image-Height',
      height,
      'X-Row-Stride',
      stride,
      'X-Pixel-Format',
      pixelFormat,
      ...this.extra,
    ];
  }

  /** The headers of a 304: validators only, as RFC 9110 §15.4.5 asks. */
  notModified(etag: string): string[] {
    return ['ETag', etag, 'Cache-Control', this.cacheControl, ...this.extra];
  }

  /** The heads of `entry` sent whole (`length` bytes), built once per ETag. */
  whole(entry: EntryInfo, length: number): WholeHeads {
    let heads = this.wholeByEtag.get(entry.etag);
    if (heads === undefined) {
      const headers = this.headers(
        String(length),
        entry.etag,
        String(entry.width),
        String(entry.height),
        String(entry.stride),
        entry.pixelFormat,
      );
      const notModified = this.notModified(entry.etag);
      heads = { headers, notModified, head: rawHead(200, headers), head304: rawHead(304, notModified) };
      this.wholeByEtag.set(entry.etag, heads);
    }
    return heads;
  }

  /**
   * A hit from a ref the shortcut just confirmed, on Node's response: 304 when `ifNoneMatch`
   * matches, else the whole entry (headers only for HEAD). Returns the status. In a writer the
   * ref is not pinned (only this process writes the slot, and not before this turn ends); in a
   * read-only process it arrives pinned (the writer is another process) and is released here.
   */
  readonly writeHit: (
    res: http.ServerResponse,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ) => 200 | 304;

  /** writeHit() through the lane: the prepared head bytes written straight to the socket. */
  readonly sendHit: (
    out: LaneOut,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ) => 200 | 304;

  private writeHitUnpinned(
    res: http.ServerResponse,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ): 200 | 304 {
    const status = this.writeWhole(res, heads, ref, isHead, ifNoneMatch);
    // Usually the socket took the whole body synchronously (writev straight from the mapping) and
    // the kernel holds its own copy: nothing to pin. Otherwise the queued write still reads the
    // mapping, so the slot stays pinned until the response closes (finish or abort).
    if (bodyQueued(res, status, isHead)) {
      this.pins.pinRef(ref);
      this.unpinAtClose(res, ref);
    }
    return status;
  }

  private writeHitPinned(
    res: http.ServerResponse,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ): 200 | 304 {
    const status = this.writeWhole(res, heads, ref, isHead, ifNoneMatch);
    if (bodyQueued(res, status, isHead)) this.unpinAtClose(res, ref);
    else this.pins.unpinRef(ref);
    return status;
  }

  private writeWhole(
    res: http.ServerResponse,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ): 200 | 304 {
    if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, ref.etag)) {
      res.writeHead(304, heads.notModified);
      res.end();
      return 304;
    }
    res.writeHead(200, heads.headers);
    res.end(isHead ? undefined : ref.transientPixels);
    return 200;
  }

  private unpinAtClose(res: http.ServerResponse, ref: EntryRef): void {
    (res as PinnedResponse)[kRef] = ref;
    res.on('close', this.unpinOnClose);
  }

  private sendHitUnpinned(
    out: LaneOut,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ): 200 | 304 {
    if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, ref.etag)) {
      out.send(heads.head304, undefined);
      return 304;
    }
    if (out.send(heads.head, isHead ? undefined : ref.transientPixels)) {
      // part of the slice is still queued and will be read from the mapping: pin until written
      const pins = this.pins;
      pins.pinRef(ref);
      out.afterFlush(() => pins.unpinRef(ref));
    }
    return 200;
  }

  private sendHitPinned(
    out: LaneOut,
    heads: WholeHeads,
    ref: EntryRef,
    isHead: boolean,
    ifNoneMatch: string | undefined,
  ): 200 | 304 {
    const pins = this.pins;
    if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, ref.etag)) {
      out.send(heads.head304, undefined);
      pins.unpinRef(ref);
      return 304;
    }
    if (out.send(heads.head, isHead ? undefined : ref.transientPixels))
      out.afterFlush(() => pins.unpinRef(ref));
    else pins.unpinRef(ref);
    return 200;
  }

  /**
   * Answers a raw-pixels request from `view` (pinned by the caller): 304, the whole entry, the
   * packed `rect` (?rect=x,y,w,h) and a byte Range over either. Throws a PixtableError before
   * writing anything when the request cannot be served (INVALID_RECT, RANGE_NOT_SATISFIABLE); the
   * view is released either way. `owner.hijack()` runs just before the first write (fastify's
   * reply stops managing the response there).
   */
  send(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    view: ImageView,
    rect: string | undefined,
    owner: { hijack(): unknown },
  ): void {
    const etag = view.etag;
    if (etagMatches(req.headers['if-none-match'], etag)) {
      view.release();
      owner.hijack();
      res.writeHead(304, this.notModified(etag));
      res.end();
      return;
    }
    let body: Body;
    try {
      body = this.body(req, view, rect);
    } catch (e) {
      view.release();
      throw e;
    }
    owner.hijack();
    // The pin lives until the socket is done with the mapping: 'close' follows 'finish' and also
    // fires on abort, so a client that disconnects mid-body releases it too.
    res.once('close', () => view.release());
    const { rows, range } = body;
    if (rows === undefined && range === undefined) {
      res.writeHead(200, this.whole(view, body.size).headers);
      res.end(view.pixels);
      return;
    }
    const headers = this.headers(
      range ? String(range.end - range.start + 1) : String(body.size),
      etag,
      String(body.width),
      String(body.height),
      String(body.stride),
      view.pixelFormat,
    );
    if (range) headers.push('Content-Range', `bytes ${range.start}-${range.end}/${body.size}`);
    res.writeHead(range ? 206 : 200, headers);
    if (rows === undefined) {
      res.end(view.pixels.subarray(range!.start, range!.end + 1));
      return;
    }
    if (!range) {
      for (let i = 0; i < rows.length; i++) res.write(rows[i] as Buffer);
      res.end();
      return;
    }
    // A range over the packed rectangle: the rows it touches, trimmed at both ends (still views).
    const rowBytes = body.stride;
    const first = Math.floor(range.start / rowBytes);
    const last = Math.floor(range.end / rowBytes);
    for (let i = first; i <= last; i++) {
      const row = rows[i] as Buffer;
      const from = i === first ? range.start - i * rowBytes : 0;
      const to = i === last ? range.end - i * rowBytes + 1 : rowBytes;
      res.write(from === 0 && to === rowBytes ? row : row.subarray(from, to));
    }
    res.end();
  }

  /** What the body of a 200/206 is: the whole entry or the rectangle's rows, and the range. */
  private body(req: http.IncomingMessage, view: ImageView, rect: string | undefined): Body {
    let body: Body;
    if (rect !== undefined) {
      const r = parseRect(rect, view.width, view.height);
      const rowBytes = r.w * view.bytesPerPixel;
      body = {
        rows: view.rows(r.x, r.y, r.w, r.h),
        size: rowBytes * r.h,
        width: r.w,
        height: r.h,
        stride: rowBytes,
        range: undefined,
      };
    } else {
      body = {
        rows: undefined,
        size: view.pixels.length,
        width: view.width,
        height: view.height,
        stride: view.stride,
        range: undefined,
      };
    }
    const rangeHeader = req.headers.range;
    if (rangeHeader === undefined) return body;
    const ifRange = req.headers['if-range'];
    if (ifRange !== undefined && ifRange !== view.etag) return body; // changed since: all of it
    const range = parseRange(rangeHeader, body.size);
    if (range === 'unsatisfiable') {
      throw new PixtableError(
        'RANGE_NOT_SATISFIABLE',
        `${rangeHeader} is outside the ${body.size}-byte body`,
        {
          details: { size: body.size },
        },
      );
    }
    body.range = range;
    return body;
  }
}

interface Body {
  /** The rectangle's rows (views of the mapping); undefined for the whole entry. */
  rows: Buffer[] | undefined;
  size: number;
  width: number;
  height: number;
  stride: number;
  range: ByteRange | undefined;
}
