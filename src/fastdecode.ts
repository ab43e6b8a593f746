/**
 * A fast path for decoding the values most stores hold: plain objects (cbor-x records),
 * arrays, ASCII strings, integers up to 32 bits, doubles, booleans, null and undefined.
 * Anything else — byte strings, maps, tags other than records, non-ASCII text, 64-bit
 * integers, floats written in 16 or 32 bits, indefinite lengths, a malformed byte —
 * makes {@link decodeCommon} give up with {@link NOT_COMMON}, and the caller decodes the
 * whole value with cbor-x, which is the reference: for every input this path accepts it
 * returns exactly what cbor-x (with codec.ts's options) returns.
 *
 * Why: every stored object carries its own record definition (its keys), and cbor-x
 * builds a reader for that definition at each decode (~0.5 µs for a two-field object of
 * 95 bytes, 40 % of a range scan). Here a definition whose bytes match the previous one
 * reuses its keys, and text that is ASCII is made without a TextDecoder call.
 *
 * It never allocates anything a caller could share: each call returns new objects,
 * arrays and strings.
 *
 * @module
 */

/** Returned when the bytes are not in the common subset (or not well formed). */
export const NOT_COMMON: unique symbol = Symbol("not common");

/** cbor-x's tag for a record whose definition comes inline (encode.js RECORD_INLINE_ID). */
const RECORD_INLINE_TAG = 0xdfff;
/** Record ids cbor-x assigns: 0xe000 + slot. */
const RECORD_ID_MIN = 0xe000;
const RECORD_ID_MAX = 0xffff;
const MAX_DEPTH = 600;

let src: Uint8Array = new Uint8Array(0);
let pos = 0;
let end = 0;
let depth = 0;
/**
 * Keys of the records defined so far in this value, by slot (id - 0xe000). Kept across
 * values (a new array per value, grown to the slot, cost a few % of a scan): the slots a
 * value set are listed in `slotsUsed` and cleared before the next one.
 */
const structures: (string[] | undefined)[] = new Array(RECORD_ID_MAX - RECORD_ID_MIN + 1).fill(undefined);
const slotsUsed: number[] = [];
/** src's ArrayBuffer, read once per value and only if a string needs it (a typed array's `buffer` is a runtime call). */
let srcBuffer: ArrayBufferLike | undefined;
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
/** Whether this platform stores doubles little-endian (all of ours do; checked anyway). */
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The last record definitions seen, with their bytes: values of one shape share them. */
const DEFINITIONS_KEPT = 8;
interface Definition {
  bytes: Uint8Array;
  keys: string[];
}
const definitions: (Definition | undefined)[] = new Array(DEFINITIONS_KEPT);
let nextDefinition = 0;
/** The definition a value used last (one of `definitions`). */
let lastDefinition: Definition | undefined;
/** Strict, and keeps a leading U+FEFF as a character, as cbor-x does. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class NotCommon {}
const notCommon = new NotCommon();

/**
 * Decodes `bytes` if the whole value is in the common subset, else returns
 * {@link NOT_COMMON} (never throws for bad input: the caller's full decoder reports it).
 */
export function decodeCommon(bytes: Uint8Array): unknown {
  return decodeCommonAt(bytes, 0, bytes.length);
}

/**
 * {@link decodeCommon} of bytes[start, stop): a value inside a larger buffer (a table
 * block) decodes without a view made for it first.
 */
export function decodeCommonAt(bytes: Uint8Array, start: number, stop: number): unknown {
  src = bytes;
  pos = start;
  end = stop;
  depth = 0;
  while (slotsUsed.length > 0) structures[slotsUsed.pop()!] = undefined;
  try {
    const v = read();
    return pos === end ? v : NOT_COMMON;
  } catch (e) {
    if (e === notCommon) return NOT_COMMON;
    throw e;
  } finally {
    src = EMPTY;
    srcBuffer = undefined;
  }
}
const EMPTY = new Uint8Array(0);

function giveUp(): never {
  throw notCommon;
}

/** The argument of a head whose low five bits are `info` (lengths and integers ≤ 2^32-1). */
function argument(info: number): number {
  if (info < 24) return info;
  if (info === 24) {
    if (pos >= end) giveUp();
    return src[pos++]!;
  }
  if (info === 25) {
    if (pos + 2 > end) giveUp();
    const v = (src[pos]! << 8) | src[pos + 1]!;
    pos += 2;
    return v;
  }
  if (info === 26) {
    if (pos + 4 > end) giveUp();
    const v = ((src[pos]! << 24) >>> 0) + ((src[pos + 1]! << 16) | (src[pos + 2]! << 8) | src[pos + 3]!);
    pos += 4;
    return v;
  }
  return giveUp(); // 64-bit arguments and indefinite lengths: cbor-x's business
}

function read(): unknown {
  if (pos >= end) giveUp();
  const head = src[pos++]!;
  const major = head >> 5;
  const info = head & 0x1f;
  switch (major) {
    case 0:
      return argument(info);
    case 1:
      return -1 - argument(info);
    case 3:
      return readText(argument(info));
    case 4:
      return readArray(argument(info));
    case 6:
      return readTagged(argument(info));
    case 7:
      switch (info) {
        case 20:
          return false;
        case 21:
          return true;
        case 22:
          return null;
        case 23:
          return undefined;
        case 27:
          return readDouble();
      }
      return giveUp();
  }
  return giveUp();
}

/** Text: short strings made here (cheaper than a decoder call), longer ones by a strict UTF-8 decoder. */
function readText(length: number): string {
  const start = pos;
  const stop = start + length;
  if (stop > end) giveUp();
  pos = stop;
  if (length > 15) {
    try {
      // A plain view: on Node, subarray() of a Buffer builds a Buffer, which costs more.
      return utf8.decode(new Uint8Array((srcBuffer ??= src.buffer), src.byteOffset + start, length));
    } catch {
      return giveUp(); // not UTF-8: cbor-x says what it makes of it
    }
  }
  let s = "";
  let i = start;
  for (; i + 4 <= stop; i += 4) {
    const a = src[i]!, b = src[i + 1]!, c = src[i + 2]!, d = src[i + 3]!;
    if ((a | b | c | d) & 0x80) giveUp();
    s += String.fromCharCode(a, b, c, d);
  }
  for (; i < stop; i++) {
    const a = src[i]!;
    if (a & 0x80) giveUp();
    s += String.fromCharCode(a);
  }
  return s;
}

function readArray(length: number): unknown[] {
  if (length > end - pos) giveUp(); // each element needs a byte at least
  if (++depth > MAX_DEPTH) giveUp();
  const a = new Array(length);
  for (let i = 0; i < length; i++) a[i] = read();
  depth--;
  return a;
}

function readDouble(): number {
  if (pos + 8 > end) giveUp();
  if (littleEndian) for (let i = 0; i < 8; i++) f64Bytes[7 - i] = src[pos + i]!;
  else for (let i = 0; i < 8; i++) f64Bytes[i] = src[pos + i]!;
  pos += 8;
  return f64[0]!;
}

function readTagged(tag: number): Record<string, unknown> {
  if (tag === RECORD_INLINE_TAG) return readInlineRecord();
  if (tag >= RECORD_ID_MIN && tag <= RECORD_ID_MAX) {
    const keys = structures[tag - RECORD_ID_MIN];
    if (keys === undefined) giveUp();
    if (pos >= end || src[pos]! >> 5 !== 4) giveUp();
    const length = argument(src[pos++]! & 0x1f);
    if (length !== keys.length) giveUp();
    return readFields(keys);
  }
  return giveUp();
}

/** tag 0xdfff [id, [keys...], values...]: defines record `id` and reads one. */
function readInlineRecord(): Record<string, unknown> {
  if (pos >= end || src[pos]! >> 5 !== 4) giveUp();
  const length = argument(src[pos++]! & 0x1f);
  if (length < 2) giveUp();
  if (pos >= end) giveUp();
  const idHead = src[pos++]!;
  if (idHead >> 5 !== 0) giveUp();
  const id = argument(idHead & 0x1f);
  if (id < RECORD_ID_MIN || id > RECORD_ID_MAX) giveUp();
  const keys = readDefinition();
  if (keys.length !== length - 2) giveUp();
  structures[id - RECORD_ID_MIN] = keys;
  slotsUsed.push(id - RECORD_ID_MIN);
  return readFields(keys);
}

/** The keys array of a definition: ASCII strings, none "__proto__" (cbor-x renames it). */
function readDefinition(): string[] {
  const start = pos;
  // Values of one shape follow each other (a scan, a page of a list): the definition met
  // last is compared first, byte for byte, without skimming this one's extent first.
  const last = lastDefinition;
  if (last !== undefined) {
    const b = last.bytes;
    const n = b.length;
    if (start + n <= end) {
      let i = 0;
      while (i < n && b[i] === src[start + i]) i++;
      if (i === n) {
        pos = start + n;
        return last.keys;
      }
    }
  }
  if (pos >= end || src[pos]! >> 5 !== 4) giveUp();
  const count = argument(src[pos++]! & 0x1f);
  if (count > end - pos) giveUp();
  // Skim the definition's extent first: its bytes are the cache key.
  const keysStart = pos;
  for (let i = 0; i < count; i++) {
    if (pos >= end || src[pos]! >> 5 !== 3) giveUp();
    const n = argument(src[pos++]! & 0x1f);
    if (n > end - pos) giveUp();
    pos += n;
  }
  const stop = pos;
  const cached = cachedDefinition(start, stop);
  if (cached !== undefined) {
    lastDefinition = cached;
    return cached.keys;
  }
  pos = keysStart;
  const keys: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const k = readText(argument(src[pos++]! & 0x1f));
    if (k === "__proto__") giveUp();
    keys[i] = k;
  }
  // Duplicate keys: cbor-x assigns in order, so the last value wins; plain assignment
  // below does the same, but keep the rare case on the reference path.
  if (new Set(keys).size !== keys.length) giveUp();
  const definition = { bytes: src.slice(start, stop), keys };
  definitions[nextDefinition] = lastDefinition = definition;
  nextDefinition = (nextDefinition + 1) % DEFINITIONS_KEPT;
  return keys;
}

/** The definition seen before with exactly the bytes src[start, stop). */
function cachedDefinition(start: number, stop: number): Definition | undefined {
  const n = stop - start;
  outer: for (const d of definitions) {
    if (d === undefined || d.bytes.length !== n) continue;
    const b = d.bytes;
    for (let i = 0; i < n; i++) if (b[i] !== src[start + i]) continue outer;
    return d;
  }
  return undefined;
}

function readFields(keys: string[]): Record<string, unknown> {
  if (++depth > MAX_DEPTH) giveUp();
  const o: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) o[keys[i]!] = read();
  depth--;
  return o;
}
