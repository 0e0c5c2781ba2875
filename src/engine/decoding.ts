// The miss path's decode, as one pipeline: formats that share a `family` are one group, decoded
// from one read of the source (libvips cuts every member from one intermediate); each group's
// decodes go through the bounded queue; concurrent misses of one group and key share one decode;
// each decoded image is converted in place to its format's pixel layout before the table writes it.
// `npm run bench` times this same pipeline against the cache's ingest.
import type { Format, PixelFormat } from '../formats.js';
import { decodeImage, type DecodeLayout, type DecodedImage, type DecodeTarget } from '../native/sharp.js';
import { convertInPlace } from './pixels.js';
import { DecodeQueue } from './queue.js';

/** What libvips produces for each pixel format; convertInPlace() makes the rest. */
const LAYOUT: Record<PixelFormat, DecodeLayout> = {
  rgba8: 'rgba',
  'rgba8-premultiplied': 'rgba',
  'bgra8-premultiplied': 'rgba',
  rgbx8: 'rgbx',
  rgb8: 'rgb',
  gray8: 'gray',
  rgb565: 'rgb',
};

/** The decode targets of `formats`, in order. */
export function targetsOf(formats: readonly Format[]): DecodeTarget[] {
  return formats.map((f) => ({
    width: f.width,
    height: f.height,
    fit: f.fit,
    enlarge: f.enlarge,
    position: f.position,
    layout: LAYOUT[f.pixelFormat],
  }));
}

/** `img` in `f`'s layout, tightly packed, converted inside the decoder's buffer (no copy). */
export function toTableLayout(img: DecodedImage, f: Format): Buffer {
  return convertInPlace(img.data, img.width, img.height, f.pixelFormat, f.bytesPerPixel);
}

export interface Group<M extends { readonly format: Format }> {
  /** the family, or `=<name>` for a format of its own */
  id: string;
  members: M[];
  targets: DecodeTarget[];
}

/** Groups `members` by family, in first-seen order. */
export function groupByFamily<M extends { readonly format: Format }>(members: readonly M[]): Group<M>[] {
  const byFamily = new Map<string, M[]>();
  for (const m of members) {
    const id = m.format.family ?? `=${m.format.name}`;
    const list = byFamily.get(id) ?? [];
    list.push(m);
    byFamily.set(id, list);
  }
  return [...byFamily].map(([id, ms]) => ({ id, members: ms, targets: targetsOf(ms.map((m) => m.format)) }));
}

export interface DecoderOptions {
  concurrency: number;
  maxQueue: number;
  maxInputPixels: number;
  timeoutMs: number;
  now: () => number;
  /** after each decode: wall time in ms and the formats produced */
  onDecode: ((ms: number, formats: readonly string[]) => void) | undefined;
}

export class Decoder {
  readonly queue: DecodeQueue;
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(private readonly o: DecoderOptions) {
    this.queue = new DecodeQueue(o.concurrency, o.maxQueue);
  }

  /** Decodes `input` (a file path) to every target of `g`, through the queue (QUEUE_FULL). */
  async images<M extends { readonly format: Format }>(g: Group<M>, input: string): Promise<DecodedImage[]> {
    const t0 = this.o.now();
    const images = await this.queue.run(() =>
      decodeImage(input, g.targets, {
        maxInputPixels: this.o.maxInputPixels,
        timeoutMs: this.o.timeoutMs,
        shared: g.members.length > 1,
      }),
    );
    this.o.onDecode?.(
      this.o.now() - t0,
      g.members.map((m) => m.format.name),
    );
    return images;
  }

  /** Runs `work` for `g` and `key` unless it is running already; then every caller shares it. */
  once<M extends { readonly format: Format }>(
    g: Group<M>,
    key: string,
    work: () => Promise<void>,
  ): Promise<void> {
    const id = `${g.id}\0${key}`;
    const running = this.inflight.get(id);
    if (running) return running;
    const p = work().finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  /** Settles when every decode running now has finished (close). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()]);
  }
}
