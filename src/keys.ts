/**
 * Order-preserving key encoding.
 *
 * A key is one part or a tuple of parts; `"a"` and `["a"]` are the same key. Each part is
 * encoded as a type tag followed by a self-delimiting body, and a tuple is its parts'
 * encodings concatenated, so byte order of encodings equals key order:
 *
 * | tag  | type       | body                                                             |
 * |------|------------|------------------------------------------------------------------|
 * | 0x01 | Uint8Array | bytes, 0x00 escaped as 0x00 0xFF, ended by 0x00                   |
 * | 0x02 | string     | UTF-8, escaped and ended as above (orders by code point)          |
 * | 0x03 | number     | float64 big-endian, sign bit flipped (negatives: all bits flipped)|
 * | 0x04 | bigint     | length header then big-endian magnitude (negatives: inverted)     |
 * | 0x05 | boolean    | 0x00 false, 0x01 true                                             |
 *
 * Because every part starts with a tag in 0x01..0x05, the keys that extend a tuple prefix
 * P are exactly those in [enc(P) 0x01, enc(P) 0xFF).
 *
 * Encoded keys are held as "binary strings" (one char per byte, 0..255): JavaScript
 * compares such strings by code unit, which is byte order, and they are cheap Map keys.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";

/** One element of a key. */
export type KeyPart = string | number | bigint | boolean | Uint8Array;
/** A key: one part, or a tuple of parts. */
export type Key = KeyPart | readonly KeyPart[];

const TAG_BYTES = 0x01;
const TAG_STRING = 0x02;
const TAG_NUMBER = 0x03;
const TAG_BIGINT = 0x04;
const TAG_BOOLEAN = 0x05;
/** The first byte after every possible extension of a prefix. */
export const PREFIX_END = "\xff";
/** Largest magnitude of a bigint key part, in bytes (the length header has room for 126). */
const BIGINT_BYTES_MAX = 126;
/**
 * The smallest magnitude too large for a key. Comparing against it first costs O(1) for
 * any bigint much larger (engines compare lengths first), so a huge bigint is refused
 * before any work proportional to its size.
 */
const BIGINT_MAGNITUDE_LIMIT = 1n << BigInt(8 * BIGINT_BYTES_MAX);

const utf8 = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const nativeIsWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;

/**
 * True when `s` has no lone surrogate, so it survives UTF-8 encoding unchanged. Keys,
 * namespace names and stored strings are UTF-8 on disk: a lone surrogate would come back
 * as U+FFFD, and two processes could disagree on what a name or key is. Uses the engine's
 * `String.prototype.isWellFormed` where present (Node 20+, Deno, Bun), else a regex.
 *
 * @example
 * ```ts
 * isWellFormedString("a😀"); // true
 * isWellFormedString("a\uD800"); // false
 * ```
 */
export const isWellFormedString: (s: string) => boolean = nativeIsWellFormed
  ? (s) => nativeIsWellFormed.call(s)
  : (s) => !LONE_SURROGATE.test(s);

const nativeToWellFormed = (String.prototype as { toWellFormed?: (this: string) => string }).toWellFormed;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, "g");

/**
 * `s` with every lone surrogate replaced by U+FFFD: text UTF-8 can store, for what is only
 * shown or kept as a diagnostic (an error's message, a participant's name).
 */
export const toWellFormedString: (s: string) => string = nativeToWellFormed
  ? (s) => nativeToWellFormed.call(s)
  : (s) => s.replace(LONE_SURROGATES, "\ufffd");
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const f64 = new DataView(new ArrayBuffer(8));
const f64Array = new Float64Array(1);
const f64Bytes = new Uint8Array(f64Array.buffer);
/** Where byte j of a big-endian double goes in f64Bytes (the host's byte order). */
const F64_BYTE: readonly number[] = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? [7, 6, 5, 4, 3, 2, 1, 0] : [0, 1, 2, 3, 4, 5, 6, 7];

function invalid(message: string): TxtDbError {
  return new TxtDbError("INVALID_KEY", message);
}

function pushEscaped(out: number[], bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    out.push(b);
    if (b === 0) out.push(0xff);
  }
  out.push(0);
}

/** ASCII without NUL: its UTF-8 bytes are its char codes, so it needs no escaping. */
const PLAIN_ASCII = /^[\x01-\x7f]*$/;

/**
 * Encodes one part straight to a binary string where that is cheap (the common string
 * and number keys), else through bytes.
 */
function encodePartFast(part: unknown, index: number): string | undefined {
  if (typeof part === "string") {
    return PLAIN_ASCII.test(part) ? "\x02" + part + "\x00" : undefined;
  }
  if (typeof part === "number") {
    if (Number.isNaN(part)) throw invalid(`Key part ${index} is NaN; use a finite number or ±Infinity`);
    f64.setFloat64(0, part === 0 ? 0 : part); // -0 and 0 are one key
    const b0 = f64.getUint8(0);
    if ((b0 & 0x80) !== 0) {
      return String.fromCharCode(TAG_NUMBER, ~b0 & 0xff, ~f64.getUint8(1) & 0xff, ~f64.getUint8(2) & 0xff, ~f64.getUint8(3) & 0xff,
        ~f64.getUint8(4) & 0xff, ~f64.getUint8(5) & 0xff, ~f64.getUint8(6) & 0xff, ~f64.getUint8(7) & 0xff);
    }
    return String.fromCharCode(TAG_NUMBER, b0 ^ 0x80, f64.getUint8(1), f64.getUint8(2), f64.getUint8(3),
      f64.getUint8(4), f64.getUint8(5), f64.getUint8(6), f64.getUint8(7));
  }
  return undefined;
}

function encodePart(out: number[], part: unknown, index: number): void {
  switch (typeof part) {
    case "string": {
      out.push(TAG_STRING);
      if (!isWellFormedString(part)) throw invalid(`Key part ${index} is a string with a lone surrogate; keys must be valid Unicode`);
      pushEscaped(out, utf8.encode(part));
      return;
    }
    case "bigint": {
      const negative = part < 0n;
      const magnitude = negative ? -part : part;
      if (magnitude >= BIGINT_MAGNITUDE_LIMIT) {
        throw invalid(`Key part ${index} is a bigint of more than ${BIGINT_BYTES_MAX} bytes; the limit is ${BIGINT_BYTES_MAX} bytes (about 10^303)`);
      }
      // Hex digits give the bytes in one linear pass (shifting the bigint 8 bits at a time
      // and unshifting into an array was quadratic).
      let hex = magnitude === 0n ? "" : magnitude.toString(16);
      if (hex.length % 2 === 1) hex = "0" + hex;
      const length = hex.length / 2;
      out.push(TAG_BIGINT, negative ? 0x7f - length : 0x80 + length);
      for (let i = 0; i < hex.length; i += 2) {
        const b = parseInt(hex.slice(i, i + 2), 16);
        out.push(negative ? ~b & 0xff : b);
      }
      return;
    }
    case "boolean":
      out.push(TAG_BOOLEAN, part ? 1 : 0);
      return;
    default:
      // A Uint8Array of another realm (node:vm, an iframe) is no instance of this one's.
      if (part instanceof Uint8Array || (ArrayBuffer.isView(part) && Object.prototype.toString.call(part) === "[object Uint8Array]")) {
        out.push(TAG_BYTES);
        pushEscaped(out, part as Uint8Array);
        return;
      }
      throw invalid(
        `Key part ${index} is ${part === null ? "null" : typeof part}; key parts must be string, number, bigint, boolean or Uint8Array`,
      );
  }
}

/**
 * Encodes a key as a binary string, checking its type and size.
 *
 * @example
 * ```ts
 * encodeKey(["user", 1]) < encodeKey(["user", 2]); // true
 * ```
 */
export function encodeKey(key: unknown, maxBytes = Infinity): string {
  let s: string;
  if (Array.isArray(key)) {
    if (key.length === 0) throw invalid("Key is an empty tuple; give at least one part");
    s = "";
    for (let i = 0; i < key.length; i++) s += encodePartFast(key[i], i) ?? encodeSlow(key[i], i);
  } else {
    s = encodePartFast(key, 0) ?? encodeSlow(key, 0);
  }
  if (s.length > maxBytes) {
    throw invalid(`Key is ${s.length} bytes encoded; the limit (maxKeyBytes) is ${maxBytes} bytes`);
  }
  return s;
}

function encodeSlow(part: unknown, index: number): string {
  const out: number[] = [];
  encodePart(out, part, index);
  return bytesToBinary(out);
}

/** Encodes a prefix for `list({ prefix })`: an empty tuple selects everything. */
export function encodePrefix(prefix: unknown, maxBytes = Infinity): string {
  if (Array.isArray(prefix) && prefix.length === 0) return "";
  return encodeKey(prefix, maxBytes);
}

function readEscaped(s: string, at: number): [Uint8Array, number] {
  const out: number[] = [];
  let i = at;
  for (;;) {
    if (i >= s.length) throw invalid("Encoded key ends inside a byte string");
    const c = s.charCodeAt(i);
    if (c === 0) {
      if (s.charCodeAt(i + 1) === 0xff) {
        out.push(0);
        i += 2;
        continue;
      }
      return [Uint8Array.from(out), i + 1];
    }
    out.push(c);
    i++;
  }
}

/**
 * The encoded keys that extend a tuple prefix: [start, end). An empty tuple selects
 * every key.
 */
export function prefixRange(prefix: unknown, maxBytes = Infinity): [string, string] {
  const p = encodePrefix(prefix, maxBytes);
  return [p === "" ? "" : p + "\x01", p + PREFIX_END];
}

/**
 * {@link decodeKey} of a key's bytes b[start, end) (a table block's, past the namespace
 * id), without making the key's binary string first: a list page decodes keys straight
 * from the blocks. ASCII strings, numbers and booleans are read here; a key with any other
 * part (bytes, bigints, text with escapes or beyond ASCII) goes through the string decoder,
 * which is the reference.
 */
export function decodeKeyBytes(b: Uint8Array, start: number, end: number): Key {
  const parts: KeyPart[] = [];
  let i = start;
  while (i < end) {
    const tag = b[i++];
    if (tag === TAG_STRING) {
      let j = i;
      while (j < end && b[j]! > 0 && b[j]! < 0x80) j++;
      // The terminator: a NUL not followed by 0xff (0x00 0xff is an escaped NUL).
      if (j >= end || b[j] !== 0 || b[j + 1] === 0xff) return decodeKey(binaryString(b, start, end));
      parts.push(binaryString(b, i, j));
      i = j + 1;
    } else if (tag === TAG_NUMBER) {
      if (i + 8 > end) return decodeKey(binaryString(b, start, end)); // the reference says what is wrong
      const negative = (b[i]! & 0x80) === 0;
      for (let j = 0; j < 8; j++) {
        const c = b[i + j]!;
        f64Bytes[F64_BYTE[j]!] = negative ? ~c & 0xff : j === 0 ? c ^ 0x80 : c;
      }
      parts.push(f64Array[0]!);
      i += 8;
    } else if (tag === TAG_BOOLEAN && i < end) {
      parts.push(b[i++] === 1);
    } else {
      return decodeKey(binaryString(b, start, end));
    }
  }
  return parts.length === 1 ? parts[0]! : parts;
}

/** A binary string of bytes [start, end) of `b` (one char per byte; for ASCII bytes, their text). */
export function binaryString(b: Uint8Array, start: number, end: number): string {
  const CHUNK = 4096;
  // Short runs (the new bytes of a prefix-compressed key): a loop beats building a view for apply().
  if (end - start <= 12) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  if (end - start <= CHUNK) return String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[]);
  let s = "";
  for (let i = start; i < end; i += CHUNK) s += String.fromCharCode.apply(null, b.subarray(i, Math.min(end, i + CHUNK)) as unknown as number[]);
  return s;
}

/** Decodes a binary-string key back to its parts. */
export function decodeKeyParts(s: string): KeyPart[] {
  const parts: KeyPart[] = [];
  let i = 0;
  while (i < s.length) {
    const tag = s.charCodeAt(i++);
    switch (tag) {
      case TAG_STRING: {
        // Fast path: plain ASCII up to the terminator (a NUL not followed by 0xff).
        let j = i;
        let c = s.charCodeAt(j);
        while (c > 0 && c < 0x80) c = s.charCodeAt(++j);
        if (c === 0 && s.charCodeAt(j + 1) !== 0xff) {
          parts.push(s.slice(i, j));
          i = j + 1;
        } else {
          const [bytes, next] = readEscaped(s, i);
          parts.push(utf8Decoder.decode(bytes));
          i = next;
        }
        break;
      }
      case TAG_BYTES: {
        const [bytes, next] = readEscaped(s, i);
        parts.push(bytes);
        i = next;
        break;
      }
      case TAG_NUMBER: {
        if (i + 8 > s.length) throw invalid(`Encoded key ends inside a number at byte ${i - 1}`);
        const negative = (s.charCodeAt(i) & 0x80) === 0;
        // Big-endian on disk; f64Bytes is the host's order (little-endian on every platform we run on).
        for (let j = 0; j < 8; j++) {
          const b = s.charCodeAt(i + j);
          f64Bytes[F64_BYTE[j]!] = negative ? ~b & 0xff : j === 0 ? b ^ 0x80 : b;
        }
        parts.push(f64Array[0]!);
        i += 8;
        break;
      }
      case TAG_BIGINT: {
        const header = s.charCodeAt(i++);
        const negative = header < 0x80;
        const length = negative ? 0x7f - header : header - 0x80;
        let n = 0n;
        for (let j = 0; j < length; j++) {
          const b = s.charCodeAt(i + j);
          n = (n << 8n) | BigInt(negative ? ~b & 0xff : b);
        }
        parts.push(negative ? -n : n);
        i += length;
        break;
      }
      case TAG_BOOLEAN:
        parts.push(s.charCodeAt(i++) === 1);
        break;
      default:
        throw invalid(`Encoded key has unknown type tag ${tag} at byte ${i - 1}`);
    }
  }
  return parts;
}

/**
 * Why `bytes` is not a key {@link encodeKey} could have written, or undefined when it is.
 * Log records and checkpoints are checked with this as they are read, so a damaged or
 * hostile file is reported as CORRUPTION where it is found instead of failing later reads
 * with INVALID_KEY. Canonical forms are required (no -0 or NaN, no leading zero bytes in a
 * bigint), or one key could be stored under two encodings. Linear in the key's length.
 *
 * @example
 * ```ts
 * encodedKeyProblem(binaryToBytes(encodeKey(["a", 1]))); // undefined
 * encodedKeyProblem(new Uint8Array([9])); // "unknown type tag 9 at byte 0"
 * ```
 */
export function encodedKeyProblem(b: Uint8Array): string | undefined {
  if (b.length === 0) return "the key is empty";
  let i = 0;
  while (i < b.length) {
    const at = i;
    const tag = b[i++]!;
    switch (tag) {
      case TAG_BYTES:
      case TAG_STRING: {
        const start = i;
        let plain = true; // no escape and no byte >= 0x80: nothing more to check
        for (;;) {
          if (i >= b.length) return `the part at byte ${at} is not terminated`;
          const c = b[i]!;
          if (c === 0) {
            if (b[i + 1] === 0xff) {
              plain = false;
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c >= 0x80) plain = false;
          i++;
        }
        if (tag === TAG_STRING && !plain) {
          try {
            utf8Decoder.decode(readEscaped(bytesToBinary(b.subarray(start, i)), 0)[0]);
          } catch {
            return `the string part at byte ${at} is not valid UTF-8`;
          }
        }
        break;
      }
      case TAG_NUMBER: {
        if (i + 8 > b.length) return `the number part at byte ${at} is cut short`;
        const negative = (b[i]! & 0x80) === 0;
        for (let j = 0; j < 8; j++) f64.setUint8(j, negative ? ~b[i + j]! & 0xff : j === 0 ? b[i]! ^ 0x80 : b[i + j]!);
        const n = f64.getFloat64(0);
        if (Number.isNaN(n) || Object.is(n, -0)) return `the number part at byte ${at} is ${Number.isNaN(n) ? "NaN" : "-0"}, which keys never hold`;
        i += 8;
        break;
      }
      case TAG_BIGINT: {
        if (i >= b.length) return `the bigint part at byte ${at} is cut short`;
        const header = b[i++]!;
        const negative = header < 0x80;
        const length = negative ? 0x7f - header : header - 0x80;
        if (length < 0 || length > BIGINT_BYTES_MAX) return `the bigint part at byte ${at} has an impossible length header ${header}`;
        if (i + length > b.length) return `the bigint part at byte ${at} is cut short`;
        if (length > 0 && (negative ? ~b[i]! & 0xff : b[i]!) === 0) return `the bigint part at byte ${at} has a leading zero byte`;
        if (negative && length === 0) return `the bigint part at byte ${at} is a negative zero`;
        i += length;
        break;
      }
      case TAG_BOOLEAN:
        if (i >= b.length || b[i]! > 1) return `the boolean part at byte ${at} is not 0 or 1`;
        i++;
        break;
      default:
        return `unknown type tag ${tag} at byte ${at}`;
    }
  }
  return undefined;
}

/** Decodes a key as users gave it: a one-part tuple comes back as that part. */
export function decodeKey(s: string): Key {
  const parts = decodeKeyParts(s);
  return parts.length === 1 ? parts[0]! : parts;
}

/** True when `a` and `b` hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes (array or Uint8Array) to a binary string. */
export function bytesToBinary(bytes: ArrayLike<number>): string {
  const CHUNK = 8192;
  // Most keys fit one call, made on the bytes themselves: a subarray view per key cost
  // ~40 % of this function for a 40-byte key.
  if (bytes instanceof Uint8Array && bytes.length <= CHUNK) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let s = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    // A Uint8Array view goes to fromCharCode as is: copying it into an Array first cost
    // ~7 µs per 50-byte key (every key of every commit every process applies), 7-10x this.
    const part = bytes instanceof Uint8Array ? bytes.subarray(i, i + CHUNK) : bytes.length <= CHUNK ? bytes : Array.prototype.slice.call(bytes, i, i + CHUNK);
    s += String.fromCharCode.apply(null, part as unknown as number[]);
  }
  return s;
}

/** A binary string to bytes. */
export function binaryToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A printable form of a key for error messages. */
export function describeKey(key: unknown): string {
  try {
    return JSON.stringify(key, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `bytes(${v.length})` : v));
  } catch {
    return String(key);
  }
}
