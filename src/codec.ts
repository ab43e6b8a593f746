/**
 * Values: CBOR through cbor-x. Objects are encoded as cbor-x records so that they decode
 * back to plain objects while Maps decode back to Maps.
 *
 * What round-trips, and what is refused (INVALID_VALUE, naming the path) because it would
 * come back different:
 *
 * | value                                             | stored as                         |
 * |---------------------------------------------------|-----------------------------------|
 * | objects, arrays, strings, numbers (NaN, ±Infinity) | themselves                        |
 * | bigint, booleans, null, undefined inside a value  | themselves                        |
 * | Date (also an invalid Date), RegExp (source, flags)| themselves                        |
 * | Map (any keys), Set (any members), typed arrays    | themselves; object keys and members come back as equal new objects |
 * | `-0`                                              | a txtdb tag, so it comes back -0  |
 * | an own `__proto__` key                            | a txtdb tag, so it comes back as an own property |
 * | class instances                                   | plain objects of their own enumerable properties |
 * | subclasses of Map                                 | Maps (cbor-x would write an array of entries) |
 * | strings with a lone surrogate (values, keys, Map keys) | refused: UTF-8 cannot hold them |
 * | sparse arrays, objects with symbol keys            | refused: holes and symbols would vanish |
 * | Error, ArrayBuffer, DataView                      | refused: class, or type, would be lost |
 * | boxed primitives, Promise, WeakMap, URL, Blob...  | refused: their state is not in their properties |
 * | other iterable class instances                    | refused: they would come back as arrays |
 * | a value whose getter or Proxy trap throws         | refused, the error as the cause   |
 * | undefined as a whole value, functions, symbols, cycles, nesting > 512 | refused |
 *
 * Reads hand out values nobody else holds: byte strings and typed arrays are decoded into
 * fresh buffers (`copyBuffers`), never views of the index's bytes, so a caller mutating a
 * value it read cannot change the store. Values are encoded when `set()` is called, so a
 * caller mutating a value after `set()` cannot change what is committed either.
 *
 * Decoding never pollutes a prototype, even from a hostile file: cbor-x renames a
 * `__proto__` record key to `__proto_` (our encoder never writes one: it uses the tag
 * below), CBOR maps decode to Maps, and the tag for own `__proto__` keys defines the
 * property instead of assigning it. A value that does not decode is CORRUPTION.
 *
 * cbor-x 1.6.9's two pure-JS modules, encode.js and decode.js, are vendored unchanged in
 * vendor/cbor-x/ (MIT License, kept in each file and beside them): the npm package declares
 * an optional native module (cbor-extract) that txtdb never loads yet every install tried to
 * build, and that Deno, resolving npm packages itself, failed on. tests/values-bytes.test.ts
 * pins the bytes values are stored as.
 *
 * @module
 */
import { addExtension, Encoder } from "./vendor/cbor-x/encode.js";
import * as cborDecode from "./vendor/cbor-x/decode.js";
import { TxtDbError } from "./errors.ts";
import { isWellFormedString } from "./keys.ts";
import { decodeCommon, decodeCommonAt, NOT_COMMON } from "./fastdecode.ts";

const OPTIONS = {
  useRecords: true,
  mapsAsObjects: false,
  tagUint8Array: true,
  structuredClone: false,
  int64AsNumber: false,
  largeBigIntToFloat: false,
} as const;

const encoder = new Encoder(OPTIONS);
/**
 * User values: byte strings and typed arrays are copied out of the input. Without it cbor-x
 * returns views of the bytes the index holds, and `(await db.get(..)).fill(0)` rewrote the
 * stored version (and, after compact(), the file). The copy costs only values that hold
 * bytes; other values decode exactly as before.
 */
const valueDecoder = new cborDecode.Decoder({ ...OPTIONS, copyBuffers: true });
/** Log records and manifests: their byte strings may stay views of the record body. */
const internalDecoder = new cborDecode.Decoder(OPTIONS);

/**
 * Two CBOR tags of txtdb's own (in the first-come-first-served range, clear of the tags
 * and ranges cbor-x interprets). cbor-x's tag registry belongs to its module, which other
 * code could load too (vendor/cbor-x/), so each decoder below acts only while txtdb decodes
 * a value; anyone else's decoding sees these tags as plain `Tag` objects.
 */
const TAG_NEGATIVE_ZERO = 47224;
const TAG_OWN_ENTRIES = 47225;
/**
 * Whether txtdb is decoding a value right now. Kept on `globalThis` under a registered
 * symbol, not in this module: when two copies of this module share a process (the source
 * beside the npm build, a bundle beside the package), the tag decoders registered last
 * serve both copies, and they must see the flag whichever copy set it.
 */
const DECODING_KEY = Symbol.for("txtdb.codec.decodingValue");
const decoding: { value: boolean } = ((globalThis as Record<symbol, unknown>)[DECODING_KEY] ??= { value: false }) as { value: boolean };
const CborTag = cborDecode.Tag;

/** Stands for -0 while encoding: cbor-x writes -0 as the integer 0. */
class NegativeZero {}
const NEGATIVE_ZERO = new NegativeZero();
/** Stands for an object with an own `__proto__` key while encoding: [key, value, ...]. */
class OwnEntries {
  constructor(readonly flat: unknown[]) {}
}

addExtension({
  Class: NegativeZero,
  tag: TAG_NEGATIVE_ZERO,
  // cbor-x ignores what an extension's encode returns: encode() writes in place.
  encode: (_v: NegativeZero, encode: (data: unknown) => Uint8Array) => encode(null),
  decode: (data: unknown) => (decoding.value ? -0 : new CborTag(data, TAG_NEGATIVE_ZERO)),
});
addExtension({
  Class: OwnEntries,
  tag: TAG_OWN_ENTRIES,
  encode: (v: OwnEntries, encode: (data: unknown) => Uint8Array) => encode(v.flat),
  decode: (data: unknown) => (decoding.value ? objectFromEntries(data) : new CborTag(data, TAG_OWN_ENTRIES)),
});

/** Builds an object from [key, value, ...] with every key an own data property. */
function objectFromEntries(flat: unknown): Record<string, unknown> {
  if (!Array.isArray(flat) || flat.length % 2 !== 0) throw new Error("object entries are not a [key, value, ...] array");
  const out: Record<string, unknown> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i];
    if (typeof k !== "string") throw new Error(`object entry key is a ${typeof k}, not a string`);
    // Assigning "__proto__" would set the prototype; defining it makes an own property.
    if (k === "__proto__") Object.defineProperty(out, k, { value: flat[i + 1], writable: true, enumerable: true, configurable: true });
    else out[k] = flat[i + 1];
  }
  return out;
}

/** How deep a value may nest; deeper values are refused. */
const DEPTH_MAX = 512;
/** The deepest nesting a value may have (import's tagged JSON refuses deeper input at the same depth). */
export const VALUE_DEPTH_MAX = DEPTH_MAX;

/**
 * The objects {@link checkValue} is inside, outermost first, with their paths: a value that
 * holds one of its own ancestors is a cycle, refused naming both places (instead of as
 * "too deep" 512 levels down, with a path of 512 steps). Each encodeValue() call has its
 * own (a getter may store another value while its owner is checked).
 */
let ancestors: object[] = [];
let ancestorPaths: string[] = [];

/** A path short enough for a message: its start and end, the middle elided. */
export function shortPath(path: string): string {
  return path.length <= 160 ? path : `${path.slice(0, 100)}…${path.slice(-50)}`;
}

function refuse(path: string, what: string, cause?: unknown): TxtDbError {
  return new TxtDbError("INVALID_VALUE", `Cannot store the value: ${shortPath(path)} ${what}`, { details: { path }, ...(cause === undefined ? {} : { cause }) });
}

/** INVALID_VALUE for an error thrown while reading the value at `path` (a getter, a Proxy trap). */
function threw(path: string, e: unknown): TxtDbError {
  return refuse(path, `threw while it was read (${e instanceof Error ? e.message : String(e)}); nothing was stored. Store a plain copy of the data instead (e.g. { ...value })`, e);
}

/**
 * Refuses what cannot round-trip. Returns true when the value holds -0, an own `__proto__`
 * key or a Map subclass, which {@link rewrite} must replace before cbor-x sees them (rare,
 * so the common value is encoded as given, with no copy).
 */
function checkValue(v: unknown, depth: number, path: string): boolean {
  switch (typeof v) {
    case "function":
    case "symbol":
      throw refuse(path, `is a ${typeof v}; functions and symbols cannot be stored`);
    case "undefined":
      if (depth === 0) {
        throw new TxtDbError("INVALID_VALUE", "Value is undefined; to remove a key use delete(), or store null");
      }
      return false;
    case "string":
      if (!isWellFormedString(v)) throw refuse(path, "is a string with a lone surrogate, which UTF-8 cannot store; fix the string (e.g. with toWellFormed())");
      return false;
    case "number":
      return v === 0 && 1 / v < 0;
    case "object": {
      if (v === null) return false;
      const back = ancestors.indexOf(v);
      if (back >= 0) throw refuse(path, `is ${ancestorPaths[back]} again, a cycle, which cannot be stored; store a copy without the cycle (e.g. an id in place of the reference)`);
      if (depth >= DEPTH_MAX) throw refuse(path, `nests deeper than ${DEPTH_MAX} levels, the most a value may; store it flatter (e.g. a list of its parts)`);
      ancestors.push(v);
      ancestorPaths.push(path);
      // A getter or a Proxy trap may throw anywhere in here: the caller gets INVALID_VALUE
      // naming where, with the error as its cause, instead of the bare error.
      try {
        return checkObject(v, depth, path);
      } catch (e) {
        throw e instanceof TxtDbError ? e : threw(path, e);
      } finally {
        ancestors.pop();
        ancestorPaths.pop();
      }
    }
    default:
      return false;
  }
}

/** What Object.prototype.toString says `v` is ("Map", "Uint8Array", …): true across realms. */
function classTag(v: object): string {
  return Object.prototype.toString.call(v).slice(8, -1);
}

/** {@link checkValue} of an object (not null). */
function checkObject(v: object, depth: number, path: string): boolean {
  const proto = Object.getPrototypeOf(v);
  // Plain objects, the common value, go straight to their properties.
  if (proto !== Object.prototype && proto !== null) {
    if (Array.isArray(v)) {
      let special = false;
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (x === undefined && !(i in v)) throw refuse(`${path}[${i}]`, "is a hole in a sparse array, which would come back as undefined; fill it (e.g. with null)");
        if (checkValue(x, depth + 1, `${path}[${i}]`)) special = true;
      }
      return special;
    }
    // Made in another realm (node:vm, an iframe), it is no instance of this realm's classes:
    // its class tag says what it is, and rewrite() makes it this realm's (cbor-x knows
    // classes by instanceof, and wrote such a typed array as an array of numbers).
    const foreignTag = v instanceof Object ? undefined : classTag(v);
    if (ArrayBuffer.isView(v)) {
      if (v instanceof DataView || foreignTag === "DataView") throw refuse(path, "is a DataView, which would come back as a Uint8Array; store a Uint8Array of its bytes");
      return foreignTag !== undefined;
    }
    if (v instanceof Date || v instanceof RegExp) return false;
    if (foreignTag === "Date" || foreignTag === "RegExp") return true;
    if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && v instanceof SharedArrayBuffer)) {
      throw refuse(path, "is an ArrayBuffer, which would come back as a Uint8Array; store new Uint8Array(buffer)");
    }
    if (v instanceof Error) throw refuse(path, "is an Error, whose class, stack and properties would be lost; store { name, message } instead");
    if (v instanceof Map || foreignTag === "Map") {
      // cbor-x writes a subclass of Map as an array of its entries: rewrite() makes it a Map.
      let special = foreignTag !== undefined || v.constructor !== Map;
      for (const [k, x] of foreignTag === undefined ? (v as Map<unknown, unknown>) : Map.prototype.entries.call(v)) {
        if (checkValue(k, depth + 1, `${path}<key>`)) special = true;
        if (checkValue(x, depth + 1, `${path}.get(${typeof k === "string" ? JSON.stringify(k) : String(k)})`)) special = true;
      }
      return special;
    }
    if (v instanceof Set || foreignTag === "Set") {
      let special = foreignTag !== undefined;
      for (const x of foreignTag === undefined ? (v as Set<unknown>) : Set.prototype.values.call(v)) if (checkValue(x, depth + 1, `${path}<item>`)) special = true;
      return special;
    }
    checkClassInstance(v, path);
  }
  let special = false;
  const record = v as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (!isWellFormedString(k)) throw refuse(path, `has a key with a lone surrogate (${JSON.stringify(k)}), which UTF-8 cannot store`);
    if (k === "__proto__") special = true;
    let x: unknown;
    try {
      x = record[k];
    } catch (e) {
      throw threw(`${path}.${k}`, e);
    }
    if (checkValue(x, depth + 1, `${path}.${k}`)) special = true;
  }
  if (Object.getOwnPropertySymbols(v).length > 0) throw refuse(path, "has symbol keys, which cannot be stored and would vanish; use string keys");
  return special;
}

/**
 * A typed array, date, regular expression, map or set of another realm as this realm's
 * (shallow: {@link rewrite} goes on into a map's or set's contents); undefined for others.
 */
function ownRealmCopy(v: object): object | undefined {
  const tag = classTag(v);
  if (ArrayBuffer.isView(v)) {
    const Same = (globalThis as unknown as Record<string, new (from: ArrayLike<number> | ArrayLike<bigint>) => ArrayBufferView>)[tag];
    return new Same!(v as unknown as ArrayLike<number>);
  }
  if (tag === "Date") return new Date(Date.prototype.getTime.call(v));
  if (tag === "RegExp") {
    const r = v as RegExp;
    return new RegExp(r.source, r.flags);
  }
  if (tag === "Map") return new Map(Map.prototype.entries.call(v));
  if (tag === "Set") return new Set(Set.prototype.values.call(v));
  return undefined;
}

/**
 * Refuses an instance of a class other than those above whose data would not come back:
 * it is stored as a plain object of its own enumerable properties, which is all the data
 * of an ordinary class's instance, but none of a boxed primitive's (`new Number(5)` was
 * stored as `{}`, `new String("s")` as `["s"]`), a Promise's, a WeakMap's or a host
 * object's (URL, Blob): those keep their state in internal slots, and say what they are
 * through Object.prototype.toString. An iterable would be written as an array of what it
 * yields, its class and properties lost.
 */
function checkClassInstance(v: object, path: string): void {
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  if (tag === "Number" || tag === "String" || tag === "Boolean" || tag === "BigInt" || tag === "Symbol") {
    throw refuse(path, `is a ${tag} object (a boxed primitive, as new Number(5) or Object(5n) make), which would come back as an empty object or array; store the primitive instead (value.valueOf())`);
  }
  if (tag !== "Object") throw refuse(path, `is an object of class ${tag}, whose state would be lost (it is not in its own enumerable properties); store its data as a plain object instead`);
  const it = v as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown };
  if (typeof it[Symbol.iterator] === "function" || typeof it[Symbol.asyncIterator] === "function") {
    throw refuse(path, `is an iterable ${v.constructor?.name ?? "object"}, which would come back as an array of what it yields; store [...value], or a plain object of its data`);
  }
}

/** A copy of a checked value with -0 and own `__proto__` keys replaced by their stand-ins. */
function rewrite(value: unknown): unknown {
  if (typeof value === "number") return value === 0 && 1 / value < 0 ? NEGATIVE_ZERO : value;
  if (typeof value !== "object" || value === null) return value;
  // Another realm's (see checkObject) first made this realm's, then rewritten as such.
  const v = value instanceof Object || Array.isArray(value) ? value : ownRealmCopy(value) ?? value;
  if (ArrayBuffer.isView(v) || v instanceof Date || v instanceof RegExp) return v;
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [rewrite(k), rewrite(x)]));
  if (v instanceof Set) return new Set([...v].map(rewrite));
  if (Array.isArray(v)) return v.map(rewrite);
  const keys = Object.keys(v);
  const record = v as Record<string, unknown>;
  if (keys.includes("__proto__")) {
    const flat: unknown[] = [];
    for (const k of keys) flat.push(k, rewrite(record[k]));
    return new OwnEntries(flat);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = rewrite(record[k]);
  return out;
}

/**
 * Encodes a value, refusing what cannot round-trip, and enforcing `maxBytes`. The bytes
 * are the caller's own: later changes to `value` do not reach them.
 *
 * @example
 * ```ts
 * decodeValue(encodeValue({ a: 1n })); // { a: 1n }
 * ```
 */
export function encodeValue(value: unknown, maxBytes = Infinity): Uint8Array {
  // Empty unless a getter of a value being checked stores another: that one gets its own.
  const outer = ancestors.length === 0 ? undefined : ([ancestors, ancestorPaths] as const);
  if (outer) [ancestors, ancestorPaths] = [[], []];
  let special: boolean;
  try {
    special = checkValue(value, 0, "value");
  } finally {
    if (outer) [ancestors, ancestorPaths] = outer;
  }
  let bytes: Uint8Array;
  try {
    bytes = encoder.encode(special ? rewrite(value) : value) as Uint8Array;
  } catch (e) {
    throw new TxtDbError("INVALID_VALUE", `Value cannot be encoded as CBOR: ${(e as Error).message}`, { cause: e });
  }
  if (bytes.length > maxBytes) {
    throw new TxtDbError("INVALID_VALUE", `Value is ${bytes.length} bytes encoded; the limit (maxValueBytes) is ${maxBytes} bytes`);
  }
  // cbor-x returns a view of its output buffer, which it never writes over again (it moves
  // on, and takes a fresh buffer when full), so the bytes stay ours whatever the caller
  // does next. On Node this slice is Buffer#slice, a view too: a real copy would cost an
  // ArrayBuffer allocation per set() for nothing.
  return bytes.slice();
}

/**
 * Decodes a value written by {@link encodeValue} into a value no one else holds. Bytes
 * that do not decode (a damaged or hostile file) throw CORRUPTION; readers add which key.
 */
export function decodeValue(bytes: Uint8Array): unknown {
  const common = decodeCommon(bytes);
  return common !== NOT_COMMON ? common : decodeValueWithCborX(bytes);
}

/** {@link decodeValue} of bytes[start, stop), without a view unless cbor-x must decode it. */
export function decodeValueAt(bytes: Uint8Array, start: number, stop: number): unknown {
  const common = decodeCommonAt(bytes, start, stop);
  return common !== NOT_COMMON ? common : decodeValueWithCborX(bytes.subarray(start, stop));
}

/**
 * {@link decodeValue} without the fast path of fastdecode.ts: the reference it must agree
 * with (tests/values-fastdecode.test.ts compares them).
 */
export function decodeValueWithCborX(bytes: Uint8Array): unknown {
  decoding.value = true;
  try {
    // cbor-x copies a byte string (a Buffer value is stored as one) with the source's own
    // slice, so it came back as a Buffer where the bytes were a Buffer (a value this
    // process had just written, on Node and Bun) and as a Uint8Array where they were read
    // from a file: one stored value, two types. A plain view makes it a Uint8Array always.
    return valueDecoder.decode(bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new TxtDbError("CORRUPTION", `A stored value cannot be decoded (${(e as Error)?.message ?? String(e)}): the store is damaged. Run \`txtdb check\`; restore from a backup if it persists`, { cause: e });
  } finally {
    decoding.value = false;
  }
}

/** Encodes internal structures (log records, manifest); no user-value checks. */
export function encodeInternal(value: unknown): Uint8Array {
  // cbor-x never writes over bytes it returned, so a view of its buffer is safe here: the
  // body is framed (copied) at once.
  return (encoder.encode(value) as Uint8Array).slice();
}

/** Decodes internal structures. */
export function decodeInternal(bytes: Uint8Array): unknown {
  return internalDecoder.decode(bytes);
}
