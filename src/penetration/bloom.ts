/**
 * Bloom filter arithmetic shared by the in-memory and Redis bitmaps: the shape, and a key's bit positions (double
 * hashing, Kirsch–Mitzenmacher, over two independent 32-bit hashes of the key's characters).
 */

/** Bits of a filter and hashes per key. */
export interface BloomShape {
  readonly bits: number;
  readonly hashes: number;
}

/** Most bits one filter may have: a Redis string holds 2^32 bits (512 MiB). */
const MAX_BLOOM_BITS = 2 ** 32;

/** The optimal shape for `expected` keys at `falsePositiveRate`: m = −n·ln p / ln²2 bits, k = m/n·ln 2 hashes. */
export function bloomShape(expected: number, falsePositiveRate: number): BloomShape {
  const bits = Math.min(MAX_BLOOM_BITS, Math.ceil((-expected * Math.log(falsePositiveRate)) / (Math.LN2 * Math.LN2)));
  // Rounded to whole bytes, so the in-memory bitmap and Redis' (which grows by bytes) have the same length.
  const rounded = Math.max(8, Math.ceil(bits / 8) * 8);
  const hashes = Math.max(1, Math.min(30, Math.round((rounded / expected) * Math.LN2)));
  return { bits: rounded, hashes };
}

/** The false-positive rate of a filter whose `setBits` of `bits` are set: (set / bits)^k. */
export function falsePositiveRateOf(shape: BloomShape, setBits: number): number {
  return (setBits / shape.bits) ** shape.hashes;
}

/** murmur3's 32-bit finalizer: spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The bit positions of `key`, written into `out` (reused: no allocation per check). Two FNV-1a variants with
 * different bases, each finalized; the second made odd so one key's positions never repeat a step.
 */
export function bloomPositions(key: string, shape: BloomShape, out: number[]): number[] {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  const h1 = fmix32(a);
  const h2 = fmix32(b ^ 0x9e3779b9) | 1;
  out.length = shape.hashes;
  // Below 2^37: exact in a double, so the modulo is exact too.
  for (let i = 0; i < shape.hashes; i++) out[i] = (h1 + i * (h2 >>> 0)) % shape.bits;
  return out;
}

/** A Bloom filter's bits in process memory, with a count of the bits set (for its fill ratio). */
export class BloomBits {
  readonly shape: BloomShape;
  readonly #bytes: Uint8Array;
  #setBits = 0;

  constructor(shape: BloomShape) {
    this.shape = shape;
    this.#bytes = new Uint8Array(shape.bits / 8);
  }

  /** Bits set so far. */
  get setBits(): number {
    return this.#setBits;
  }

  /** Bytes of memory the bitmap holds. */
  get bytes(): number {
    return this.#bytes.length;
  }

  set(positions: readonly number[]): void {
    const bytes = this.#bytes;
    for (const position of positions) {
      const index = position >>> 3;
      const mask = 0x80 >>> (position & 7); // bit 0 is the most significant bit of byte 0, as Redis' SETBIT
      if ((bytes[index]! & mask) === 0) {
        bytes[index] = bytes[index]! | mask;
        this.#setBits++;
      }
    }
  }

  has(positions: readonly number[]): boolean {
    const bytes = this.#bytes;
    for (const position of positions) if ((bytes[position >>> 3]! & (0x80 >>> (position & 7))) === 0) return false;
    return true;
  }
}
