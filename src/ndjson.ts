/**
 * A JSON form for keys and values that keeps the types CBOR keeps, for the command line
 * and export/import: bigint as {"$bigint":"…"}, bytes as {"$bytes":"<base64>"}, Date as
 * {"$date":"<iso>"}, Map as {"$map":[[k,v],…]}, Set as {"$set":[…]}, undefined as
 * {"$undefined":true}. Plain objects that happen to have one of these keys alone are
 * wrapped as {"$object":{…}} so they round-trip too.
 *
 * @module
 */
const TAGS = ["$bigint", "$bytes", "$date", "$map", "$set", "$undefined", "$object", "$f64"];

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Converts a value to its tagged-JSON form. */
export function toTagged(v: unknown): unknown {
  if (typeof v === "bigint") return { $bigint: v.toString() };
  if (v === undefined) return { $undefined: true };
  if (typeof v === "number" && !Number.isFinite(v)) return { $f64: String(v) };
  if (v instanceof Uint8Array) return { $bytes: toBase64(v) };
  if (v instanceof Date) return { $date: v.toISOString() };
  if (v instanceof Map) return { $map: [...v].map(([k, x]) => [toTagged(k), toTagged(x)]) };
  if (v instanceof Set) return { $set: [...v].map(toTagged) };
  if (Array.isArray(v)) return v.map(toTagged);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = toTagged((v as Record<string, unknown>)[k]);
    const keys = Object.keys(out);
    return keys.length === 1 && TAGS.includes(keys[0]!) ? { $object: out } : out;
  }
  return v;
}

/** Converts tagged JSON back to the value. */
export function fromTagged(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromTagged);
  if (v === null || typeof v !== "object") return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const k = keys[0]!;
    const x = o[k];
    if (k === "$bigint" && typeof x === "string") return BigInt(x);
    if (k === "$bytes" && typeof x === "string") return fromBase64(x);
    if (k === "$date" && typeof x === "string") return new Date(x);
    if (k === "$map" && Array.isArray(x)) return new Map(x.map((e) => [fromTagged((e as unknown[])[0]), fromTagged((e as unknown[])[1])]));
    if (k === "$set" && Array.isArray(x)) return new Set(x.map(fromTagged));
    if (k === "$undefined") return undefined;
    if (k === "$f64" && typeof x === "string") return Number(x);
    if (k === "$object" && x !== null && typeof x === "object") {
      const out: Record<string, unknown> = {};
      for (const [kk, vv] of Object.entries(x)) out[kk] = fromTagged(vv);
      return out;
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = fromTagged(o[k]);
  return out;
}
