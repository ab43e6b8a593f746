/**
 * CRC32C (Castagnoli), the checksum on every log record, frontier read and table block.
 * Pure TypeScript: slicing-by-16 over one precomputed table, built at module load.
 *
 * - Inputs of 512 bytes and more (table blocks, catch-up reads) are read 4 bytes at a time
 *   through an Int32Array view of their aligned middle (on little-endian hosts, i.e. every
 *   host Node, Deno and Bun run on); the bytes before the first 4-byte boundary and after
 *   the last 16-byte step go bytewise. Creating the view costs more than it saves below a
 *   few hundred bytes (on Bun up to ~500).
 * - Inputs of 32 to 511 bytes are read byte by byte, 16 bytes per step.
 * - Shorter ones (frame length fields, small frames) stay in crc32c() itself, small enough
 *   to inline: 8-byte steps, one 4-byte step, then at most 3 single bytes.
 * - The lookups of a step are XORed as independent groups of four, not as one chain: the
 *   JITs do not reassociate XOR, and the shorter dependency chain is worth ~1.5x.
 *
 * scripts/bench/crc32c.mjs measures it: about 1.6 GB/s on Node 20 and 2.2-2.5 GB/s on
 * Deno 2.9 and Bun 1.4 for 4 KiB blocks, against 0.8-1.3 GB/s for the slicing-by-8 loop it
 * replaced; no input size got slower.
 *
 * @module
 */
const POLY = 0x82f63b78;

/**
 * T[k * 256 + b] is the CRC of byte b followed by k zero bytes: table k of slicing-by-16,
 * all 16 in one Int32Array (16 KiB) so a step indexes one array with constant offsets.
 */
const TABLE = new Int32Array(16 * 256);
const T = TABLE;
for (let b = 0; b < 256; b++) {
  let c = b;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[b] = c;
}
for (let b = 0; b < 256; b++) {
  let c = T[b]!;
  for (let k = 1; k < 16; k++) {
    c = (c >>> 8) ^ T[c & 0xff]!;
    T[k * 256 + b] = c;
  }
}

/** Int32Array elements are little-endian here (they are on every platform we run on). */
const LITTLE_ENDIAN = new Uint8Array(new Int32Array([1]).buffer)[0] === 1;

/** From this length on, reading words through a view beats reading bytes on all three runtimes. */
const WORDS_FROM = 512;

/**
 * CRC32C of `data`, continuing from `crc` (0 to start): `crc32c(b, crc32c(a))` is the
 * CRC32C of `a` followed by `b`.
 *
 * @example
 * ```ts
 * crc32c(new TextEncoder().encode("123456789")); // 0xe3069283
 * ```
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const T = TABLE; // a local: a module binding is checked for initialization on every load
  const n = data.length;
  if (n >= 32) return ~(n >= WORDS_FROM && LITTLE_ENDIAN ? crcWords(data, ~crc) : crcBytes(data, ~crc)) >>> 0;
  let c = ~crc;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c = (T[0x700 | (a & 0xff)]! ^ T[0x600 | ((a >>> 8) & 0xff)]! ^ T[0x500 | ((a >>> 16) & 0xff)]! ^ T[0x400 | (a >>> 24)]!) ^
      (T[0x300 | data[i + 4]!]! ^ T[0x200 | data[i + 5]!]! ^ T[0x100 | data[i + 6]!]! ^ T[data[i + 7]!]!);
  }
  if (i + 4 <= n) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c = (T[0x300 | (a & 0xff)]! ^ T[0x200 | ((a >>> 8) & 0xff)]!) ^ (T[0x100 | ((a >>> 16) & 0xff)]! ^ T[a >>> 24]!);
    i += 4;
  }
  for (; i < n; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Inputs of 32 bytes to WORDS_FROM: bytes read one by one, 16 per step. */
function crcBytes(data: Uint8Array, c: number): number {
  const T = TABLE; // a local: a module binding is checked for initialization on every load
  const n = data.length;
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c = (T[0xf00 | (a & 0xff)]! ^ T[0xe00 | ((a >>> 8) & 0xff)]! ^ T[0xd00 | ((a >>> 16) & 0xff)]! ^ T[0xc00 | (a >>> 24)]!) ^
      (T[0xb00 | data[i + 4]!]! ^ T[0xa00 | data[i + 5]!]! ^ T[0x900 | data[i + 6]!]! ^ T[0x800 | data[i + 7]!]!) ^
      (T[0x700 | data[i + 8]!]! ^ T[0x600 | data[i + 9]!]! ^ T[0x500 | data[i + 10]!]! ^ T[0x400 | data[i + 11]!]!) ^
      (T[0x300 | data[i + 12]!]! ^ T[0x200 | data[i + 13]!]! ^ T[0x100 | data[i + 14]!]! ^ T[data[i + 15]!]!);
  }
  if (i + 8 <= n) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c = (T[0x700 | (a & 0xff)]! ^ T[0x600 | ((a >>> 8) & 0xff)]! ^ T[0x500 | ((a >>> 16) & 0xff)]! ^ T[0x400 | (a >>> 24)]!) ^
      (T[0x300 | data[i + 4]!]! ^ T[0x200 | data[i + 5]!]! ^ T[0x100 | data[i + 6]!]! ^ T[data[i + 7]!]!);
    i += 8;
  }
  for (; i < n; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** The long-input path: `c` is the running (inverted) register; returns it, still inverted. */
function crcWords(data: Uint8Array, c: number): number {
  const T = TABLE; // a local: a module binding is checked for initialization on every load
  const n = data.length;
  const at = data.byteOffset;
  let i = 0;
  for (; ((at + i) & 3) !== 0; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  const words = ((n - i) >>> 4) << 2;
  const w = new Int32Array(data.buffer, at + i, words);
  for (let j = 0; j < words; j += 4) {
    const a = c ^ w[j]!;
    const b = w[j + 1]!, d = w[j + 2]!, e = w[j + 3]!;
    c = (T[0xf00 | (a & 0xff)]! ^ T[0xe00 | ((a >>> 8) & 0xff)]! ^ T[0xd00 | ((a >>> 16) & 0xff)]! ^ T[0xc00 | (a >>> 24)]!) ^
      (T[0xb00 | (b & 0xff)]! ^ T[0xa00 | ((b >>> 8) & 0xff)]! ^ T[0x900 | ((b >>> 16) & 0xff)]! ^ T[0x800 | (b >>> 24)]!) ^
      (T[0x700 | (d & 0xff)]! ^ T[0x600 | ((d >>> 8) & 0xff)]! ^ T[0x500 | ((d >>> 16) & 0xff)]! ^ T[0x400 | (d >>> 24)]!) ^
      (T[0x300 | (e & 0xff)]! ^ T[0x200 | ((e >>> 8) & 0xff)]! ^ T[0x100 | ((e >>> 16) & 0xff)]! ^ T[e >>> 24]!);
  }
  for (i += words << 2; i < n; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}
