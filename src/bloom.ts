/**
 * Bloom filters over (namespace id, key): one per sorted table, so that a point read asks
 * only the tables that may hold the key. With 10 bits per key and 7 probes the expected
 * false-positive rate is (1 − e^(−7/10))^7 ≈ 0.82 %: a read of an absent key touches one
 * table block in ~120 instead of one per table.
 *
 * Encoded filter (inside a table file, see table.ts; the table adds the checksum):
 *
 * ```
 * offset  size  field
 * 0       1     probeCount k (1..30)
 * 1       3     zero (reserved)
 * 4       4     bitCount m, u32 little-endian (a multiple of 8, ≥ 64)
 * 8       m/8   bits: bit i is byte 8 + (i >>> 3), mask 1 << (i & 7)
 * ```
 *
 * Probes use double hashing (Kirsch–Mitzenmacher): bit_i = (h1 + i·h2) mod m, with h1 a
 * MurmurHash3 (x86, 32-bit) of the namespace id and the key's bytes and h2 derived from h1
 * by a second avalanche. Two keys whose h1 collide collide on every probe; that adds at most
 * keys/2^32 to the false-positive rate (2·10⁻⁴ at a million keys), far below the 1 % target.
 *
 * Keys are binary strings (one char per byte, see keys.ts), hashed straight from their char
 * codes: no byte array is made per lookup.
 *
 * @module
 */
import { assert } from "./errors.ts";

/** Bits per key the tables use: ~0.8 % false positives (see the module comment). */
export const BLOOM_BITS_PER_KEY = 10;
/** Most probes a filter may ask for: beyond ~20 the rate no longer improves for sane sizes. */
const PROBES_MAX = 30;
/** Filters are never smaller than this, so that tiny tables do not degenerate. */
const BLOOM_BITS_MIN = 64;
/** Largest filter: m must fit the u32 field and the probe arithmetic (512 MiB of bits). */
const BLOOM_BITS_MAX = 2 ** 32 - 8;
/** Header bytes before the bit array. */
export const BLOOM_HEADER_BYTES = 8;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * MurmurHash3 (x86, 32-bit) of the 4 bytes of `nsId` (little-endian) followed by the bytes
 * of the binary string `key`. Exported for tests and for callers that probe many filters
 * with one key (hash once, then {@link BloomFilter.mayContainHash}).
 *
 * @example
 * ```ts
 * const h = bloomHash(1, "\x02user\x00");
 * filter.mayContainHash(h);
 * ```
 */
export function bloomHash(nsId: number, key: string): number {
  let h = mixBlock(0x9747b28c, nsId | 0);
  const n = key.length;
  const whole = n & ~3;
  let i = 0;
  for (; i < whole; i += 4) {
    h = mixBlock(h, key.charCodeAt(i) | (key.charCodeAt(i + 1) << 8) | (key.charCodeAt(i + 2) << 16) | (key.charCodeAt(i + 3) << 24));
  }
  let k = 0;
  switch (n & 3) {
    case 3:
      k ^= key.charCodeAt(i + 2) << 16;
    // falls through
    case 2:
      k ^= key.charCodeAt(i + 1) << 8;
    // falls through
    case 1:
      k ^= key.charCodeAt(i);
      k = Math.imul(k, C1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, C2);
      h ^= k;
  }
  h ^= n + 4;
  return fmix32(h);
}

/** The probe count that minimises false positives for `bitsPerKey` (k = bits·ln 2), clamped to 1..30. */
export function bloomProbeCount(bitsPerKey: number): number {
  return Math.max(1, Math.min(PROBES_MAX, Math.round(bitsPerKey * Math.LN2)));
}

/**
 * Collects key hashes while a table is written, then lays out the filter. It keeps 4 bytes
 * per distinct key until `finish()` (the key count is not known before the end); tables
 * are bounded in size, so this is too.
 *
 * @example
 * ```ts
 * const b = new BloomBuilder();
 * b.add(bloomHash(1, key));
 * const bytes = b.finish(); // the encoded filter
 * ```
 */
export class BloomBuilder {
  readonly #bitsPerKey: number;
  #hashes = new Uint32Array(1024);
  #count = 0;

  /** `bitsPerKey` from 1 to 64; {@link BLOOM_BITS_PER_KEY} by default. */
  constructor(bitsPerKey = BLOOM_BITS_PER_KEY) {
    assert(Number.isFinite(bitsPerKey) && bitsPerKey >= 1 && bitsPerKey <= 64, `bloom bits per key ${bitsPerKey} outside 1..64`);
    this.#bitsPerKey = bitsPerKey;
  }

  /** Keys added so far. */
  get count(): number {
    return this.#count;
  }

  /** Adds a key by its {@link bloomHash}. Add each distinct key once (duplicates only waste bits). */
  add(hash: number): void {
    if (this.#count === this.#hashes.length) {
      const grown = new Uint32Array(this.#hashes.length * 2);
      grown.set(this.#hashes);
      this.#hashes = grown;
    }
    this.#hashes[this.#count++] = hash;
  }

  /** The encoded filter (header and bits), sized for the keys added. */
  finish(): Uint8Array {
    const wanted = Math.ceil(this.#count * this.#bitsPerKey);
    const bitCount = Math.min(BLOOM_BITS_MAX, Math.max(BLOOM_BITS_MIN, Math.ceil(wanted / 8) * 8));
    const k = bloomProbeCount(this.#bitsPerKey);
    const out = new Uint8Array(BLOOM_HEADER_BYTES + bitCount / 8);
    out[0] = k;
    new DataView(out.buffer).setUint32(4, bitCount, true);
    for (let j = 0; j < this.#count; j++) {
      const h1 = this.#hashes[j]!;
      const h2 = secondHash(h1);
      for (let i = 0; i < k; i++) {
        const bit = ((h1 + Math.imul(i, h2)) >>> 0) % bitCount;
        out[BLOOM_HEADER_BYTES + (bit >>> 3)]! |= 1 << (bit & 7);
      }
    }
    return out;
  }
}

function secondHash(h1: number): number {
  // An odd step, so that the k probes are distinct whenever m is a power of two too.
  return (fmix32((h1 ^ 0x9e3779b9) >>> 0) | 1) >>> 0;
}

/**
 * A filter read back from its encoding. The bytes are kept as given (no copy): the table
 * reader holds the one array it read.
 *
 * @example
 * ```ts
 * const f = BloomFilter.decode(bytes);
 * if (!f.mayContain(nsId, key)) return undefined; // certainly absent
 * ```
 */
export class BloomFilter {
  readonly #bits: Uint8Array;
  readonly #bitCount: number;
  readonly #probes: number;

  private constructor(bits: Uint8Array, bitCount: number, probes: number) {
    this.#bits = bits;
    this.#bitCount = bitCount;
    this.#probes = probes;
  }

  /**
   * Reads an encoded filter; returns a reason string instead when the encoding is not a
   * filter (the table turns it into CORRUPTION with its file and offset).
   */
  static decode(bytes: Uint8Array): BloomFilter | string {
    if (bytes.length < BLOOM_HEADER_BYTES) return `filter of ${bytes.length} bytes is shorter than its ${BLOOM_HEADER_BYTES}-byte header`;
    const k = bytes[0]!;
    if (k < 1 || k > PROBES_MAX) return `filter probe count ${k} is outside 1..${PROBES_MAX}`;
    if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return "filter reserved bytes are not zero";
    const bitCount = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
    if (bitCount < BLOOM_BITS_MIN || bitCount % 8 !== 0 || BLOOM_HEADER_BYTES + bitCount / 8 !== bytes.length) {
      return `filter bit count ${bitCount} does not match its ${bytes.length} bytes`;
    }
    return new BloomFilter(bytes.subarray(BLOOM_HEADER_BYTES), bitCount, k);
  }

  /** Bytes of the bit array (what this filter costs in memory). */
  get bytes(): number {
    return this.#bits.length;
  }

  /** False when (nsId, key) is certainly not in the table; true when it may be. */
  mayContain(nsId: number, key: string): boolean {
    return this.mayContainHash(bloomHash(nsId, key));
  }

  /** {@link mayContain} for a hash already computed with {@link bloomHash}. */
  mayContainHash(h1: number): boolean {
    const h2 = secondHash(h1);
    const m = this.#bitCount;
    const bits = this.#bits;
    for (let i = 0; i < this.#probes; i++) {
      // (x >>> 0) % m as the builder computes it, without `%`: on a uint32 the engines fall
      // back to a floating-point remainder (a library call), which took half of this
      // method. x / m is rounded to the nearest double and x, m < 2^32, so its floor is the
      // exact quotient (the quotient is at least 1/(x + m) > 2^-53 relatively below the
      // next integer); the checks only guard that reasoning.
      const x = (h1 + Math.imul(i, h2)) >>> 0;
      let bit = x - m * Math.floor(x / m);
      if (bit >= m) bit -= m;
      else if (bit < 0) bit += m;
      if ((bits[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
    }
    return true;
  }
}
