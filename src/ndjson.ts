/**
 * A JSON form for keys and values that keeps every type the value codec keeps, for the
 * command line and export/import. JSON has no bigint, bytes, typed arrays, Date, Map, Set,
 * RegExp, Error, undefined, NaN, ±Infinity or -0, so those travel as tag objects:
 *
 * | value | tagged form |
 * |---|---|
 * | bigint | `{"$bigint":"-12"}` (decimal) |
 * | Uint8Array | `{"$bytes":"<base64>"}` |
 * | other typed arrays | `{"$typed":"Float64Array","$bytes":"<base64 of the elements, little-endian>"}` |
 * | Date | `{"$date":"<ISO 8601>"}`; an invalid Date is `{"$date":null}` |
 * | Map / Set | `{"$map":[[k,v],…]}` / `{"$set":[…]}` |
 * | RegExp | `{"$regexp":"<source>","$flags":"<flags>"}` |
 * | Error | `{"$error":"<message>"}` (the codec keeps only the message) |
 * | undefined (inside a value) | `{"$undefined":true}` |
 * | NaN, Infinity, -Infinity, -0 | `{"$f64":"NaN"}`, `{"$f64":"Infinity"}`, … `{"$f64":"-0"}` |
 * | a plain object with a key starting with "$" | `{"$object":{…}}`: its keys are taken literally |
 *
 * The rule that keeps this unambiguous: an object with any key starting with "$" is a tag
 * and must be exactly one of the forms above; {@link fromTagged} refuses anything else with
 * `INVALID_ARGUMENT` naming where it was, so a typo never becomes data silently. That is
 * why {@link toTagged} wraps every user object with such a key in `$object`.
 *
 * Objects are built with own properties only (`__proto__` included, as JSON.parse does):
 * assigning `o["__proto__"] = x` would set the prototype instead and lose the data.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { shortPath, VALUE_DEPTH_MAX } from "./codec.ts";

type TypedArrayCtor = {
  new (buffer: ArrayBuffer): ArrayBufferView & { readonly length: number };
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
};

/**
 * Typed arrays other than Uint8Array, by name. Float16Array only where the runtime has it.
 * Uint8Array (and Node's Buffer, a subclass the codec decodes bytes to) is `$bytes` alone.
 */
const TYPED: ReadonlyMap<string, TypedArrayCtor> = new Map(
  [
    Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array,
    (globalThis as unknown as { Float16Array?: TypedArrayCtor }).Float16Array,
  ].filter((c): c is TypedArrayCtor => typeof c === "function").map((c) => [c.name, c] as const),
);

/** The non-finite numbers and -0, which JSON cannot write. */
const F64 = new Map<string, number>([["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity], ["-0", -0]]);

// Every platform Node, Deno and Bun run on is little-endian; the format says little-endian
// so that a big-endian reader would know to swap, and we refuse to guess on one.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function toBase64(bytes: Uint8Array): string {
  let s = "";
  // Chunks keep String.fromCharCode's argument count far below engines' limits.
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function fromBase64(s: string, path: string): Uint8Array {
  // atob is lenient (whitespace, missing padding) in different ways on each runtime.
  if (!BASE64.test(s)) throw bad(path, `"$bytes" is not padded base64: ${preview(s)}`);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bad(path: string, what: string): TxtDbError {
  return new TxtDbError("INVALID_ARGUMENT", `${path}: ${what}`);
}

/** A short JSON rendering of a bad input for an error message. */
function preview(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

/** Sets an own property, even one named `__proto__` (plain assignment would set the prototype). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * Converts a value to its tagged-JSON form (ready for JSON.stringify).
 *
 * @example
 * ```ts
 * JSON.stringify(toTagged({ n: 1n, d: new Date(NaN) })); // '{"n":{"$bigint":"1"},"d":{"$date":null}}'
 * ```
 */
export function toTagged(v: unknown, path = "value"): unknown {
  switch (typeof v) {
    case "bigint":
      return { $bigint: v.toString() };
    case "undefined":
      return { $undefined: true };
    case "number":
      if (Number.isFinite(v) && !Object.is(v, -0)) return v;
      return { $f64: Object.is(v, -0) ? "-0" : String(v) };
    case "string":
    case "boolean":
      return v;
    case "function":
    case "symbol":
      throw new TxtDbError("INVALID_VALUE", `${path} is a ${typeof v}, which has no tagged JSON form`);
  }
  if (v === null) return null;
  if (v instanceof Uint8Array) return { $bytes: toBase64(v) };
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    const name = v.constructor.name;
    // A subclass of a typed array is exported as its base type (the codec does the same).
    const ctor = TYPED.get(name) ?? [...TYPED.values()].find((c) => v instanceof (c as unknown as typeof Int8Array));
    if (!ctor) throw new TxtDbError("INVALID_VALUE", `${path} is a ${name}, which has no tagged JSON form`);
    if (!LITTLE_ENDIAN) throw new TxtDbError("UNSUPPORTED", "Typed arrays are exported little-endian; this platform is big-endian");
    return { $typed: ctor.name, $bytes: toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  }
  // The codec stores a DataView or ArrayBuffer as bytes; export them the same way.
  if (v instanceof DataView) return { $bytes: toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  if (v instanceof ArrayBuffer) return { $bytes: toBase64(new Uint8Array(v)) };
  if (v instanceof Date) return { $date: Number.isNaN(v.getTime()) ? null : v.toISOString() };
  if (v instanceof Map) return { $map: Array.from(v, ([k, x], i) => [toTagged(k, `${path}<key ${i}>`), toTagged(x, `${path}<value ${i}>`)]) };
  if (v instanceof Set) return { $set: Array.from(v, (x, i) => toTagged(x, `${path}<item ${i}>`)) };
  if (v instanceof RegExp) return { $regexp: v.source, $flags: v.flags };
  if (v instanceof Error) return { $error: v.message };
  // Array.from visits holes as undefined, which JSON would otherwise turn into null.
  if (Array.isArray(v)) return Array.from(v, (x, i) => toTagged(x, `${path}[${i}]`));
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let looksLikeTag = false;
  for (const k of Object.keys(o)) {
    if (k.startsWith("$")) looksLikeTag = true;
    setOwn(out, k, toTagged(o[k], `${path}.${k}`));
  }
  return looksLikeTag ? { $object: out } : out;
}

/** True for the tagged form of a primitive: `{"$bigint": …}`, `{"$f64": …}`, `{"$undefined": true}`. */
function isPrimitiveTag(v: object): boolean {
  if (Array.isArray(v)) return false;
  const keys = Object.keys(v);
  return keys.length === 1 && (keys[0] === "$bigint" || keys[0] === "$f64" || keys[0] === "$undefined");
}

/** Keys of a tag object, sorted, joined: the shape a tag must have exactly. */
function shape(keys: string[]): string {
  return [...keys].sort().join(",");
}

/**
 * Converts tagged JSON (as JSON.parse returns it) back to the value. A malformed tag, an
 * unknown tag, or an object mixing tag keys with others fails with `INVALID_ARGUMENT`
 * naming `path`.
 *
 * @example
 * ```ts
 * fromTagged(JSON.parse('{"$typed":"Int32Array","$bytes":"AQAAAA=="}')); // Int32Array [1]
 * ```
 */
export function fromTagged(v: unknown, path = "value", depth = 0): unknown {
  if (v === null || typeof v !== "object") return v;
  // An object inside 512 others is more than any value may hold (codec.ts counts objects
  // only): refused here, before the recursion below runs out of stack on input nested
  // 5,000 deep. The tags of primitives (a bigint, -0 or NaN, undefined) are leaves, as in
  // the value export wrote them from.
  if (depth >= VALUE_DEPTH_MAX && !isPrimitiveTag(v)) {
    throw new TxtDbError("INVALID_VALUE", `${shortPath(path)} nests deeper than ${VALUE_DEPTH_MAX} levels, the most a value may; store it flatter (e.g. a list of its parts)`, { details: { path } });
  }
  const inner = depth + 1;
  if (Array.isArray(v)) return v.map((x, i) => fromTagged(x, `${path}[${i}]`, inner));
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (!keys.some((k) => k.startsWith("$"))) {
    const out: Record<string, unknown> = {};
    for (const k of keys) setOwn(out, k, fromTagged(o[k], `${path}.${k}`, inner));
    return out;
  }
  const tag = shape(keys);
  const x = o[keys.find((k) => k !== "$bytes" && k !== "$flags") ?? "$bytes"];
  switch (tag) {
    case "$bigint":
      if (typeof x !== "string" || !/^-?[0-9]+$/.test(x)) throw bad(path, `"$bigint" must be a string of decimal digits; got ${preview(x)}`);
      return BigInt(x);
    case "$bytes":
      if (typeof x !== "string") throw bad(path, `"$bytes" must be a base64 string; got ${preview(x)}`);
      return fromBase64(x, path);
    case "$bytes,$typed": {
      const ctor = typeof x === "string" ? TYPED.get(x) : undefined;
      if (!ctor) throw bad(path, `"$typed" must name a typed array (${[...TYPED.keys()].join(", ")}); got ${preview(x)}`);
      if (typeof o.$bytes !== "string") throw bad(path, `"$bytes" must be a base64 string; got ${preview(o.$bytes)}`);
      const bytes = fromBase64(o.$bytes, path);
      if (bytes.length % ctor.BYTES_PER_ELEMENT !== 0) {
        throw bad(path, `${bytes.length} bytes are not a whole number of ${ctor.name} elements (${ctor.BYTES_PER_ELEMENT} bytes each)`);
      }
      if (!LITTLE_ENDIAN) throw new TxtDbError("UNSUPPORTED", "Typed arrays are imported little-endian; this platform is big-endian");
      return new ctor(bytes.buffer as ArrayBuffer);
    }
    case "$date": {
      if (x === null) return new Date(NaN);
      const d = typeof x === "string" ? isoDate(x) : undefined;
      if (!d) throw bad(path, `"$date" must be an ISO 8601 date ("2024-05-01") or date and time with its offset ("2024-05-01T12:00:00.000Z", "...+02:00"), as export writes it, or null for an invalid Date; got ${preview(x)}`);
      return d;
    }
    case "$map": {
      if (!Array.isArray(x)) throw bad(path, `"$map" must be an array of [key, value] pairs; got ${preview(x)}`);
      const m = new Map<unknown, unknown>();
      x.forEach((e, i) => {
        if (!Array.isArray(e) || e.length !== 2) throw bad(`${path}<entry ${i}>`, `a "$map" entry must be a [key, value] pair; got ${preview(e)}`);
        m.set(fromTagged(e[0], `${path}<key ${i}>`, inner), fromTagged(e[1], `${path}<value ${i}>`, inner));
      });
      return m;
    }
    case "$set":
      if (!Array.isArray(x)) throw bad(path, `"$set" must be an array; got ${preview(x)}`);
      return new Set(x.map((e, i) => fromTagged(e, `${path}<item ${i}>`, inner)));
    case "$undefined":
      if (x !== true) throw bad(path, `"$undefined" must be true; got ${preview(x)}`);
      return undefined;
    case "$f64": {
      const n = typeof x === "string" ? F64.get(x) : undefined;
      if (n === undefined) throw bad(path, `"$f64" must be one of ${[...F64.keys()].map((k) => `"${k}"`).join(", ")}; got ${preview(x)}`);
      return n;
    }
    case "$flags,$regexp": {
      if (typeof x !== "string" || typeof o.$flags !== "string") throw bad(path, `"$regexp" and "$flags" must be strings`);
      try {
        return new RegExp(x, o.$flags);
      } catch (e) {
        throw bad(path, `not a valid regular expression: ${(e as Error).message}`);
      }
    }
    case "$error":
      if (typeof x !== "string") throw bad(path, `"$error" must be the message string; got ${preview(x)}`);
      return new Error(x);
    case "$object": {
      if (x === null || typeof x !== "object" || Array.isArray(x)) throw bad(path, `"$object" must be an object; got ${preview(x)}`);
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(x)) setOwn(out, k, fromTagged((x as Record<string, unknown>)[k], `${path}.${k}`, inner));
      return out;
    }
    default:
      throw bad(
        path,
        `${preview(v)} is not a known tag: an object with a key starting with "$" must be exactly one tag ` +
          `($bigint, $bytes, $typed+$bytes, $date, $map, $set, $regexp+$flags, $error, $undefined, $f64); ` +
          `wrap a plain object with such keys as {"$object":{...}}`,
      );
  }
}

/**
 * `text` as a Date if it is an ISO 8601 date, or date and time with an offset (what
 * `toISOString()` writes), naming a real day and time; else undefined. `new Date(text)`
 * alone took any string it could parse: "2020-02-30" became March 1, and strings without an
 * offset ("2020-01-01 10:00", "1") the importing machine's local time.
 */
function isoDate(text: string): Date | undefined {
  const m = /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-](\d{2}):(\d{2})))?$/.exec(text);
  if (!m || m[1] === "-000000") return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const midnight = new Date(0);
  midnight.setUTCFullYear(year, month - 1, day);
  if (month < 1 || month > 12 || midnight.getUTCMonth() !== month - 1 || midnight.getUTCDate() !== day) return undefined;
  if (m[4] !== undefined && (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59)) return undefined;
  if (m[8] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) return undefined;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? undefined : d;
}
