/**
 * Values: CBOR through cbor-x. Objects are encoded as cbor-x records so that they decode
 * back to plain objects while Maps decode back to Maps. Decoding never pollutes a
 * prototype: cbor-x renames a `__proto__` key rather than assigning through it (tested).
 *
 * Only the `cbor-x/encode` and `cbor-x/decode` entries are used: the package's main entry
 * reads an environment variable, which Deno refuses without `--allow-env`.
 *
 * @module
 */
import { Encoder } from "cbor-x/encode";
import { Decoder } from "cbor-x/decode";
import { TxtDbError } from "./errors.ts";

const OPTIONS = {
  useRecords: true,
  mapsAsObjects: false,
  tagUint8Array: true,
  structuredClone: false,
  int64AsNumber: false,
  largeBigIntToFloat: false,
} as const;

// deno-lint-ignore no-explicit-any
const encoder = new Encoder(OPTIONS as any);
// deno-lint-ignore no-explicit-any
const decoder = new Decoder(OPTIONS as any);

/** How deep a value may nest; deeper (or cyclic) values are refused. */
const DEPTH_MAX = 512;

function checkValue(v: unknown, depth: number, path: string): void {
  switch (typeof v) {
    case "function":
    case "symbol":
      throw new TxtDbError("INVALID_VALUE", `Value at ${path} is a ${typeof v}; functions and symbols cannot be stored`);
    case "undefined":
      if (depth === 0) {
        throw new TxtDbError("INVALID_VALUE", "Value is undefined; to remove a key use delete(), or store null");
      }
      return;
    case "object": {
      if (v === null) return;
      if (depth >= DEPTH_MAX) {
        throw new TxtDbError("INVALID_VALUE", `Value nests deeper than ${DEPTH_MAX} levels at ${path} (or is cyclic)`);
      }
      if (ArrayBuffer.isView(v) || v instanceof Date || v instanceof ArrayBuffer) return;
      if (v instanceof Map) {
        for (const [k, x] of v) {
          checkValue(k, depth + 1, `${path}<key>`);
          checkValue(x, depth + 1, `${path}.get(${String(k)})`);
        }
        return;
      }
      if (v instanceof Set) {
        for (const x of v) checkValue(x, depth + 1, `${path}<item>`);
        return;
      }
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) checkValue(v[i], depth + 1, `${path}[${i}]`);
        return;
      }
      for (const k of Object.keys(v)) checkValue((v as Record<string, unknown>)[k], depth + 1, `${path}.${k}`);
      return;
    }
    default:
      return;
  }
}

/**
 * Encodes a value, refusing what cannot round-trip, and enforcing `maxBytes`.
 *
 * @example
 * ```ts
 * decodeValue(encodeValue({ a: 1n })); // { a: 1n }
 * ```
 */
export function encodeValue(value: unknown, maxBytes = Infinity): Uint8Array {
  checkValue(value, 0, "value");
  let bytes: Uint8Array;
  try {
    bytes = encoder.encode(value) as Uint8Array;
  } catch (e) {
    throw new TxtDbError("INVALID_VALUE", `Value cannot be encoded as CBOR: ${(e as Error).message}`, { cause: e });
  }
  if (bytes.length > maxBytes) {
    throw new TxtDbError("INVALID_VALUE", `Value is ${bytes.length} bytes encoded; the limit (maxValueBytes) is ${maxBytes} bytes`);
  }
  // cbor-x reuses its buffer between calls; keep our own copy.
  return bytes.slice();
}

/** Decodes a value written by {@link encodeValue}. */
export function decodeValue(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

/** Encodes internal structures (log records, manifest); no user-value checks. */
export function encodeInternal(value: unknown): Uint8Array {
  return (encoder.encode(value) as Uint8Array).slice();
}

/** Decodes internal structures. */
export function decodeInternal(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
