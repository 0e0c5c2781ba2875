// Per-table bookkeeping in typed arrays indexed by slot (no object per entry): ownership, pins,
// generations, verification, real sizes, source fingerprints and an intrusive LRU list.
// A writer's book owns all of it. A read-only process's book is *mapped*: its state and
// generation arrays are the key map's (src/engine/key-map.ts), shared with every process, and the
// rest is allocated zeroed and written only for the slots this process uses (calloc'd pages that
// are never touched take no memory), so opening costs nothing per entry.
export const FREE = 0;
export const LIVE = 1;
/** replaced or deleted while pinned: freed when the last pin goes */
export const ORPHAN = 2;

const NIL = -1;
const always = (): boolean => true;

/** The strings every view of an entry shares, built once per entry (or per use, bounded, read-only). */
export interface EntryNames {
  readonly fpHex: string;
  readonly etag: string;
}

/** What a mapped book reads from the key map. */
export interface MappedSlots {
  readonly state: Uint8Array;
  readonly generation: Uint32Array;
  readonly liveCount: number;
  records(): { key: string; slot: number; generation: number }[];
}

export class SlotBook {
  readonly capacity: number;
  readonly slotOf = new Map<string, number>();
  readonly keyOf: (string | undefined)[];
  /** the key map's, in a mapped book (re-pointed when the writer replaces the file) */
  state: Uint8Array;
  readonly pins: Uint32Array;
  generation: Uint32Array;
  /** 1 once this process checked the entry's CRC and fingerprints */
  readonly verified: Uint8Array;
  readonly width: Uint32Array;
  readonly height: Uint32Array;
  /** 16-byte source fingerprints, slot × 16 */
  readonly sourceFp: Buffer;
  /** last source stat seen to match the fingerprint: mtimeMs, size, ino per slot (0 = unknown) */
  readonly statSig: Float64Array;
  /** when (cache clock, ms) the source was last confirmed unchanged; -Infinity = never */
  readonly checkedAt: Float64Array;
  /** hex source fingerprint and ETag per slot, built once when the entry is verified or written (writers) */
  readonly names: (EntryNames | undefined)[];
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NIL; // least recently used
  private tail = NIL; // most recently used
  private readonly freeStack: Int32Array;
  private freeTop = 0;
  /** free slots another process still held when allocate() last looked (reader table) */
  private readonly held: Int32Array;
  private heldTop = 0;
  /** slots at and above this were never used */
  highWater = 0;
  pinnedCount = 0;
  private mapped: MappedSlots | undefined;

  /**
   * `mapped`: a read-only process's book over the key map. Its LRU, free list and bindings are
   * never used (bind, unbind, allocate and touch are the writer's), and nothing is filled up front:
   * the caller sets a slot's sizes, fingerprint, key and checkedAt when it verifies the slot.
   */
  constructor(capacity: number, mapped?: MappedSlots) {
    this.capacity = capacity;
    // sparse in a mapped book: one element per slot this process used, not per slot
    this.keyOf = mapped ? [] : new Array<string | undefined>(capacity);
    this.state = mapped ? mapped.state : new Uint8Array(capacity);
    this.pins = new Uint32Array(capacity);
    this.generation = mapped ? mapped.generation : new Uint32Array(capacity);
    this.verified = new Uint8Array(mapped ? 0 : capacity);
    this.width = new Uint32Array(capacity);
    this.height = new Uint32Array(capacity);
    this.sourceFp = Buffer.alloc(capacity * 16);
    this.statSig = new Float64Array(capacity * 3);
    this.checkedAt = new Float64Array(capacity);
    if (!mapped) this.checkedAt.fill(-Infinity);
    this.names = mapped ? [] : new Array<EntryNames | undefined>(capacity);
    const lists = mapped ? 0 : capacity;
    this.prev = new Int32Array(lists).fill(NIL);
    this.next = new Int32Array(lists).fill(NIL);
    this.freeStack = new Int32Array(lists);
    this.held = new Int32Array(lists);
    this.mapped = mapped;
  }

  /** A mapped book follows the key map to its new file (the writer replaced it). */
  attach(mapped: MappedSlots): void {
    this.mapped = mapped;
    this.state = mapped.state;
    this.generation = mapped.generation;
  }

  get liveCount(): number {
    return this.mapped ? this.mapped.liveCount : this.slotOf.size;
  }

  private unlink(s: number): void {
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p !== NIL) this.next[p] = n;
    else if (this.head === s) this.head = n;
    if (n !== NIL) this.prev[n] = p;
    else if (this.tail === s) this.tail = p;
    this.prev[s] = NIL;
    this.next[s] = NIL;
  }

  private append(s: number): void {
    this.prev[s] = this.tail;
    this.next[s] = NIL;
    if (this.tail !== NIL) this.next[this.tail] = s;
    else this.head = s;
    this.tail = s;
  }

  /** Marks `s` most recently used. */
  touch(s: number): void {
    if (this.tail === s) return;
    this.unlink(s);
    this.append(s);
  }

  /** Binds `key` to `s` as most recently used. The caller has released any previous slot of `key`. */
  bind(key: string, s: number, generation: number): void {
    this.keyOf[s] = key;
    this.slotOf.set(key, s);
    this.state[s] = LIVE;
    this.generation[s] = generation;
    this.verified[s] = 0;
    this.statSig.fill(0, s * 3, s * 3 + 3);
    this.checkedAt[s] = -Infinity;
    if (s >= this.highWater) this.highWater = s + 1;
    this.unlink(s);
    this.append(s);
  }

  /** Removes `key`'s binding; the slot is freed, or orphaned while pinned. */
  unbind(s: number): void {
    const key = this.keyOf[s];
    if (key !== undefined && this.slotOf.get(key) === s) this.slotOf.delete(key);
    this.keyOf[s] = undefined;
    this.unlink(s);
    this.verified[s] = 0;
    if (this.pins[s]! > 0) this.state[s] = ORPHAN;
    else this.free(s);
  }

  private free(s: number): void {
    this.state[s] = FREE;
    this.freeStack[this.freeTop++] = s;
  }

  pin(s: number): void {
    const n = this.pins[s]!;
    this.pins[s] = n + 1;
    if (n === 0) this.pinnedCount++;
  }

  unpin(s: number): void {
    const n = this.pins[s]! - 1;
    this.pins[s] = n;
    if (n === 0) {
      this.pinnedCount--;
      // (a mapped book's state is the writer's, read-only here: orphans are the writer's business)
      if (this.state[s] === ORPHAN && !this.mapped) this.free(s);
    }
  }

  /**
   * A slot to write into: a free one, a never-used one, or the least recently used unpinned live
   * one (returned in `evicted` so the caller can account for it). -1 when everything is pinned.
   * `writable(s)` is asked last for each candidate: false means another process holds it (the
   * reader table), so it is passed over — a free one is kept aside and offered again next time.
   */
  allocate(writable: (s: number) => boolean = always): { slot: number; evicted: string | undefined } {
    for (let i = 0; i < this.heldTop; i++) {
      const s = this.held[i]!;
      if (this.state[s] !== FREE) {
        this.held[i--] = this.held[--this.heldTop]!; // bound again meanwhile (replay): not ours to keep
      } else if (writable(s)) {
        this.held[i] = this.held[--this.heldTop]!;
        return { slot: s, evicted: undefined };
      }
    }
    while (this.freeTop > 0) {
      const s = this.freeStack[--this.freeTop]!;
      if (this.state[s] !== FREE) continue;
      if (writable(s)) return { slot: s, evicted: undefined };
      this.held[this.heldTop++] = s;
    }
    while (this.highWater < this.capacity) {
      const s = this.highWater++;
      if (writable(s)) return { slot: s, evicted: undefined };
      this.held[this.heldTop++] = s;
    }
    for (let s = this.head; s !== NIL; s = this.next[s]!) {
      if (this.pins[s] === 0 && writable(s)) {
        const key = this.keyOf[s];
        this.unbind(s);
        this.freeTop--; // unbind pushed it on the free stack; hand it out directly
        return { slot: s, evicted: key };
      }
    }
    return { slot: -1, evicted: undefined };
  }

  /** Returns a slot from allocate() that was never bound (its write failed). */
  release(s: number): void {
    if (this.state[s] === FREE) this.free(s);
  }

  /** Rebuilds the free stack after replay: every unused slot below highWater. */
  rebuildFree(): void {
    this.freeTop = 0;
    for (let s = this.highWater - 1; s >= 0; s--)
      if (this.state[s] === FREE) this.freeStack[this.freeTop++] = s;
  }

  /** Live bindings, least recently used first (the order compaction preserves). */
  live(): { key: string; slot: number; generation: number }[] {
    if (this.mapped) return this.mapped.records();
    const out: { key: string; slot: number; generation: number }[] = [];
    for (let s = this.head; s !== NIL; s = this.next[s]!) {
      out.push({ key: this.keyOf[s]!, slot: s, generation: this.generation[s]! });
    }
    return out;
  }
}
