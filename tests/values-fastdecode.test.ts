/**
 * The fast path for common values (src/fastdecode.ts) agrees with cbor-x, the reference
 * decoder, on every value it accepts: values of every kind txtdb stores, and bytes mutated
 * at random (as a damaged or hostile file would hold them), where it must either give up
 * or return exactly what cbor-x returns.
 */
import { assert, runtime, test } from "./harness.ts";
import { decodeCommon, decodeValue, decodeValueWithCborX, encodeValue, NOT_COMMON } from "txtdb/internal";

const R = `[${runtime}]`;

/** Same structure, same key order, same prototypes, Object.is on leaves. */
function same(a: unknown, b: unknown, path = "$"): string | undefined {
  if (typeof a !== typeof b) return `${path}: ${typeof a} vs ${typeof b}`;
  if (a === null || b === null || typeof a !== "object") return Object.is(a, b) ? undefined : `${path}: ${String(a)} vs ${String(b)}`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: prototypes differ`;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return `${path}: length ${a.length} vs ${bb.length}`;
    for (let i = 0; i < a.length; i++) {
      if ((i in a) !== (i in bb)) return `${path}[${i}]: hole`;
      const d = same(a[i], bb[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (Object.getPrototypeOf(a) !== Object.prototype) {
    // Not on the fast path: compare through cbor-x's own encoding of it.
    return same(encodeValue(a).join(), encodeValue(b).join(), path);
  }
  const ka = Reflect.ownKeys(a as object), kb = Reflect.ownKeys(b as object);
  if (ka.join("\u0000") !== kb.join("\u0000")) return `${path}: keys ${ka.join(",")} vs ${kb.join(",")}`;
  for (const k of ka) {
    const d = same((a as Record<string | symbol, unknown>)[k], (b as Record<string | symbol, unknown>)[k], `${path}.${String(k)}`);
    if (d) return d;
  }
  return undefined;
}

/** A deterministic generator (xorshift), so a failure names a seed that reproduces it. */
function rng(seed: number) {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const STRINGS = ["", "a", "abc", "hello wor", "x".repeat(15), "x".repeat(16), "y".repeat(100), "é", "café au lait, s'il vous plaît", "🙂", "\uFEFFbom", "\uFEFF", "日本語のテキスト", "__proto__", "constructor", "0", "1", "length", "a\u0000b"];

function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 6 : 10));
  switch (pick) {
    case 0: return Math.floor(r() * 2 ** (1 + Math.floor(r() * 40))) * (r() < 0.3 ? -1 : 1);
    case 1: return STRINGS[Math.floor(r() * STRINGS.length)]! + (r() < 0.5 ? String(Math.floor(r() * 1000)) : "");
    case 2: return [true, false, null, undefined, 0, -0, NaN, Infinity, -Infinity, 1.5, 0.1, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 53][Math.floor(r() * 15)];
    case 3: return r() * 1e6 - 5e5;
    case 4: return [1n, -5n, 2n ** 70n, new Date(1_700_000_000_000 + Math.floor(r() * 1e9)), new Uint8Array([1, 2, 3])][Math.floor(r() * 5)];
    case 5: return "s".repeat(Math.floor(r() * 300));
    case 6:
    case 7: {
      const n = Math.floor(r() * 5);
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) o[["a", "b", "name", "id", "é", "k" + Math.floor(r() * 3), "__proto__x", "1"][Math.floor(r() * 8)]!] = randomValue(r, depth + 1);
      return o;
    }
    case 8: return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1));
    default: {
      // Several objects of one shape (record references), or a Map.
      if (r() < 0.3) return new Map<unknown, unknown>([["a", 1], [2, { z: 1 }]]);
      return Array.from({ length: 1 + Math.floor(r() * 4) }, (_, i) => ({ id: i, name: "n" + i, nested: { id: i } }));
    }
  }
}

test(`${R} fast path: values of every kind decode as cbor-x decodes them`, () => {
  let fast = 0;
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed);
    const v = randomValue(r, 0);
    if (v === undefined) continue;
    const bytes = encodeValue(v);
    const ref = decodeValueWithCborX(bytes);
    const got = decodeCommon(bytes);
    if (got === NOT_COMMON) continue;
    fast++;
    const d = same(got, ref);
    assert.equal(d, undefined, `seed ${seed}: ${d}`);
    assert.equal(same(decodeValue(bytes), ref), undefined, `seed ${seed} through decodeValue`);
  }
  // The path must actually serve most of these values (plain objects, arrays, text, numbers).
  assert.ok(fast > 1500, `only ${fast} of 3000 values took the fast path`);
});

test(`${R} fast path: common shapes take it (so reads get faster), uncommon ones do not`, () => {
  for (const v of [{ s: "v1-" + "x".repeat(77), n: 1 }, [1, "a", null], { a: { b: { c: [1.5, true] } } }, "x".repeat(1000), "日本語のテキストです", 2 ** 32 - 1, -1, [{ a: 1 }, { a: 2 }], {}]) {
    assert.notEqual(decodeCommon(encodeValue(v)), NOT_COMMON, JSON.stringify(v));
  }
  for (const v of [1n, new Date(0), new Map<unknown, unknown>([[1, 2]]), new Uint8Array(2), -0, JSON.parse('{"__proto__": 1}'), "é", new Set([1])]) {
    assert.equal(decodeCommon(encodeValue(v)), NOT_COMMON, String(v));
  }
});

test(`${R} fast path: mutated bytes give up or decode exactly as cbor-x does`, () => {
  const base = [
    { name: "alice", balance: 100, tags: ["a", "b"], active: true, nested: { x: 1.25, y: [null, undefined] } },
    [{ a: 1, b: "x" }, { a: 2, b: "y" }, { a: 3, b: "z" }],
    { s: "v1-" + "x".repeat(77), n: 123456 },
    ["café", "x".repeat(20), 4294967295, -4294967296],
  ].map((v) => encodeValue(v));
  let accepted = 0;
  for (let seed = 1; seed <= 4000; seed++) {
    const r = rng(seed);
    const src = base[seed % base.length]!;
    const bytes = new Uint8Array(src);
    const edits = 1 + Math.floor(r() * 3);
    for (let e = 0; e < edits; e++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
    const cut = r() < 0.2 ? bytes.subarray(0, Math.floor(r() * bytes.length)) : bytes;
    const got = decodeCommon(cut);
    if (got === NOT_COMMON) continue;
    accepted++;
    let ref: unknown;
    try {
      ref = decodeValueWithCborX(cut);
    } catch (e) {
      assert.fail(`seed ${seed}: the fast path decoded bytes cbor-x refuses (${(e as Error).message})`);
    }
    const d = same(got, ref);
    assert.equal(d, undefined, `seed ${seed}: ${d}`);
  }
  assert.ok(accepted > 100, `only ${accepted} mutated values decoded at all: the comparison proved little`);
});

test(`${R} fast path: a value read is the reader's own`, () => {
  const bytes = encodeValue({ list: [1, 2], o: { k: "v" } });
  const a = decodeValue(bytes) as { list: number[]; o: { k: string } };
  a.list.push(3);
  a.o.k = "changed";
  assert.deepEqual(decodeValue(bytes), { list: [1, 2], o: { k: "v" } });
});
