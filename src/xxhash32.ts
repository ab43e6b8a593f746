/**
 * xxHash32 (seed 0 by default): the checksum of every region of a table file (table.ts).
 *
 * Why not CRC32C, which the log uses: a table block is checksummed every time it enters
 * the process (a cache miss), so the checksum is on the path of every cold point read.
 * Measured on 4 KiB here, crc32c.ts (slicing-by-16 in JS) takes ~3–7 µs, as much as the
 * rest of the read; xxHash32 takes ~1.2–1.5 µs (four independent multiply lanes, which JS
 * engines run well). It detects random corruption as well as a 32-bit CRC does (a flipped
 * or torn region passes with probability 2^-32); it lacks CRC's guarantee for every burst
 * shorter than 32 bits, which matters for links with burst errors, not for files whose
 * blocks are checked whole. It is the checksum of LZ4 frames (and, in its 64-bit form, of
 * zstd frames).
 *
 * The code follows the reference specification (https://github.com/Cyan4973/xxHash,
 * doc/xxhash_spec.md); tests check it against the reference vectors.
 *
 * @module
 */

const LITTLE_ENDIAN = new Uint8Array(new Int32Array([1]).buffer)[0] === 1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/**
 * xxHash32 of `data` (its first `n` bytes) with `seed`, as an unsigned 32-bit number. The primes are locals and
 * the lane sums are left to `rotl`'s shifts to wrap (ToInt32 is exact mod 2^32): with the
 * primes as module constants and an explicit `| 0` per sum, this ran 3.6× slower on Node.
 */
export function xxhash32(data: Uint8Array, seed = 0, n = data.length): number {
  const P1 = 0x9e3779b1 | 0, P2 = 0x85ebca77 | 0, P3 = 0xc2b2ae3d | 0, P4 = 0x27d4eb2f | 0, P5 = 0x165667b1 | 0;
  let i = 0;
  let h: number;
  if (n >= 16) {
    let v1 = (seed + P1 + P2) | 0, v2 = (seed + P2) | 0, v3 = seed | 0, v4 = (seed - P1) | 0;
    const words = (n >>> 4) << 2;
    if (LITTLE_ENDIAN && (data.byteOffset & 3) === 0) {
      // Aligned: read the lanes as 32-bit words (the common case: blocks sit in their own buffers).
      const w = new Int32Array(data.buffer, data.byteOffset, words);
      for (let j = 0; j < words; j += 4) {
        v1 = Math.imul(rotl(v1 + Math.imul(w[j]!, P2), 13), P1);
        v2 = Math.imul(rotl(v2 + Math.imul(w[j + 1]!, P2), 13), P1);
        v3 = Math.imul(rotl(v3 + Math.imul(w[j + 2]!, P2), 13), P1);
        v4 = Math.imul(rotl(v4 + Math.imul(w[j + 3]!, P2), 13), P1);
      }
    } else {
      for (let j = 0; j < words << 2; j += 16) {
        v1 = Math.imul(rotl(v1 + Math.imul(data[j]! | (data[j + 1]! << 8) | (data[j + 2]! << 16) | (data[j + 3]! << 24), P2), 13), P1);
        v2 = Math.imul(rotl(v2 + Math.imul(data[j + 4]! | (data[j + 5]! << 8) | (data[j + 6]! << 16) | (data[j + 7]! << 24), P2), 13), P1);
        v3 = Math.imul(rotl(v3 + Math.imul(data[j + 8]! | (data[j + 9]! << 8) | (data[j + 10]! << 16) | (data[j + 11]! << 24), P2), 13), P1);
        v4 = Math.imul(rotl(v4 + Math.imul(data[j + 12]! | (data[j + 13]! << 8) | (data[j + 14]! << 16) | (data[j + 15]! << 24), P2), 13), P1);
      }
    }
    i = words << 2;
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
  } else {
    h = seed + P5;
  }
  h = (h + n) | 0;
  for (; i + 4 <= n; i += 4) h = Math.imul(rotl(h + Math.imul(data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24), P3), 17), P4);
  for (; i < n; i++) h = Math.imul(rotl(h + Math.imul(data[i]!, P5), 11), P1);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

// Every path above runs once at load, on inputs too short to trigger on-stack replacement.
// Why: the first 4 KiB block a process hashes makes V8 compile the lane loop on the stack
// (OSR) before the code after the loop ever ran, so that code has no type feedback; V8
// (Node 20) kept reusing that OSR code and leaving it at the first statement after the loop,
// over a thousand times in a 120k-read run (`node --trace-deopt`), each a deoptimization.
for (const n of [0, 3, 7, 16, 21, 35]) {
  const bytes = new Uint8Array(n + 1);
  xxhash32(bytes.subarray(0, n));
  xxhash32(bytes.subarray(1), 0, n);
}
