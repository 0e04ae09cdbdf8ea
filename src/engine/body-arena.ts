/**
 * Where L1 keeps response bodies: large slabs that bodies are copied into
 * back to back, instead of one small allocation per body.
 *
 * Why: a Buffer of its own costs every cached body an ArrayBuffer object, a
 * native backing store and a malloc chunk, and 100k such chunks interleaved
 * with short-lived request garbage fragment the C heap (measured: ~35 MB of
 * overhead for 100k profiles of 1.4 KB). A slab is one allocation of
 * `slabBytes`, big enough to be mmap'd, so it goes back to the OS in one piece
 * once no body in it is referenced.
 *
 * The cost is fragmentation inside slabs: a body that is replaced or evicted
 * leaves a hole until its whole slab is free. The arena counts live bytes per
 * slab; when holes exceed COMPACT_AT_WASTE (20%) of all slab bytes, the owner
 * runs a compaction that copies the bodies of the emptiest slabs into fresh
 * ones until holes are at most COMPACT_TO_WASTE (5%). Memory for bodies thus
 * stays within ~1.25× the live bytes, and a compaction visits each cached
 * entry once, after at least 15% of the slab bytes were freed: amortized O(1)
 * per replaced body.
 */
export class Slab {
  /** Bytes written so far (bodies are appended). */
  used = 0;
  /** Bytes of bodies still placed here. */
  live = 0;
  /** Marked by a compaction: bodies here are to be moved out. */
  evacuating = false;

  constructor(readonly bytes: Buffer) {}
}

/** A placed body: its slab, and where it starts in it. */
export interface Placement {
  slab: Slab;
  offset: number;
}

export interface BodyArenaOptions {
  /** Size of one slab. Bodies over a quarter of it get a slab of their own. */
  slabBytes: number;
}

/** Fraction of slab bytes that may be holes before compaction is due. */
const COMPACT_AT_WASTE = 0.2;
/** Fraction of holes a compaction brings the arena down to. */
const COMPACT_TO_WASTE = 0.05;

export class BodyArena {
  readonly #slabBytes: number;
  /** Slabs holding at least one live body, plus the one being filled. */
  readonly #slabs = new Set<Slab>();
  #current: Slab | undefined;
  #slabTotal = 0;
  #liveTotal = 0;

  constructor(options: BodyArenaOptions) {
    this.#slabBytes = options.slabBytes;
  }

  /** Copies `body` into the arena. */
  place(body: Uint8Array): Placement {
    const length = body.length;
    let slab: Slab;
    if (length > this.#slabBytes >>> 2) {
      slab = this.#open(length); // a slab of its own; the current one keeps filling
    } else {
      if (this.#current === undefined || this.#current.used + length > this.#current.bytes.length) {
        this.#current = this.#open(this.#slabBytes);
      }
      slab = this.#current;
    }
    const offset = slab.used;
    slab.bytes.set(body, offset);
    slab.used += length;
    slab.live += length;
    this.#liveTotal += length;
    return { slab, offset };
  }

  /** The body of `length` bytes at `offset` in `slab` is no longer cached. */
  release(slab: Slab, length: number): void {
    slab.live -= length;
    this.#liveTotal -= length;
    if (slab.live !== 0) return;
    // An empty slab is freed, even the one being filled (its unused tail would only be a hole).
    if (slab === this.#current) this.#current = undefined;
    this.#drop(slab);
  }

  /** True when holes exceed COMPACT_AT_WASTE of the slab bytes (and more than two slabs' worth). */
  get compactionDue(): boolean {
    const waste = this.#waste();
    return waste > 2 * this.#slabBytes && waste > COMPACT_AT_WASTE * this.#slabTotal;
  }

  /**
   * Marks the emptiest slabs for evacuation, enough of them that moving their
   * live bodies brings the holes down to COMPACT_TO_WASTE. The owner then
   * calls `relocate` for every cached body in an evacuating slab.
   */
  planCompaction(): void {
    const candidates = [...this.#slabs]
      .filter((slab) => slab !== this.#current)
      .sort((a, b) => a.live / a.bytes.length - b.live / b.bytes.length);
    let waste = this.#waste();
    const target = COMPACT_TO_WASTE * this.#slabTotal;
    for (const slab of candidates) {
      if (waste <= target) break;
      slab.evacuating = true;
      // Moving it frees its holes; its live bytes land in fresh slabs without holes.
      waste -= slab.bytes.length - slab.live;
    }
  }

  /** Moves one body out of an evacuating slab; returns its new placement. */
  relocate(from: Placement, length: number): Placement {
    const body = from.slab.bytes.subarray(from.offset, from.offset + length);
    const to = this.place(body);
    this.release(from.slab, length);
    return to;
  }

  /** Bytes of all slabs still holding a body, holes included: what the bodies cost in memory. */
  get slabBytes(): number {
    return this.#slabTotal;
  }

  /** Bytes of the bodies currently placed. */
  get liveBytes(): number {
    return this.#liveTotal;
  }

  #open(size: number): Slab {
    // allocUnsafeSlow: memory of its own, never a slice of Node's shared pool; every byte handed out is written first.
    const slab = new Slab(Buffer.allocUnsafeSlow(size));
    this.#slabs.add(slab);
    this.#slabTotal += size;
    return slab;
  }

  #drop(slab: Slab): void {
    if (!this.#slabs.delete(slab)) return;
    this.#slabTotal -= slab.bytes.length;
  }

  /** Hole bytes: slab bytes that are neither a live body nor the unfilled tail of the current slab. */
  #waste(): number {
    const unusedTail = this.#current === undefined ? 0 : this.#current.bytes.length - this.#current.used;
    return this.#slabTotal - this.#liveTotal - unusedTail;
  }
}
