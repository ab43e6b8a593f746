/** Key encoding: order, identity of "a" and ["a"], round trips, and INVALID_KEY. */
import { assert, test } from "./harness.ts";
import { decodeKey, encodeKey, encodePrefix, SeededRandomForKeys } from "./keyhelpers.ts";
import { TxtDbError } from "txtdb";
import { binaryToBytes, decodeKeyBytes, encodedKeyProblem, isWellFormedString } from "txtdb/internal";

const TYPE_RANK = (p: unknown) => (p instanceof Uint8Array ? 0 : typeof p === "string" ? 1 : typeof p === "number" ? 2 : typeof p === "bigint" ? 3 : 4);

function utf8Compare(a: string, b: string): number {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** The reference order of API.md: by type, then value; tuples element by element. */
function refCompare(a: unknown[], b: unknown[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i], y = b[i];
    const r = TYPE_RANK(x) - TYPE_RANK(y);
    if (r !== 0) return r;
    let c = 0;
    if (x instanceof Uint8Array && y instanceof Uint8Array) {
      for (let j = 0; j < Math.min(x.length, y.length) && c === 0; j++) c = x[j]! - y[j]!;
      if (c === 0) c = x.length - y.length;
    } else if (typeof x === "string") c = utf8Compare(x, y as string);
    else if (typeof x === "number") c = x < (y as number) ? -1 : x > (y as number) ? 1 : 0;
    else if (typeof x === "bigint") c = x < (y as bigint) ? -1 : x > (y as bigint) ? 1 : 0;
    else c = Number(x) - Number(y);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

test("keys order by type (Uint8Array < string < number < bigint < boolean), then value", () => {
  const ordered = [new Uint8Array([]), new Uint8Array([0]), new Uint8Array([0, 0]), new Uint8Array([1]), "", "\u0000", "a", "a\u0000", "ab", "b", "é", "😀",
    -Infinity, -1e300, -1, -0.5, 0, 1e-300, 0.5, 1, 2, 1e300, Infinity, -(2n ** 70n), -256n, -255n, -1n, 0n, 1n, 255n, 256n, 2n ** 70n, false, true];
  const enc = ordered.map((k) => encodeKey(k));
  for (let i = 1; i < enc.length; i++) assert.ok(enc[i - 1]! < enc[i]!, `${String(ordered[i - 1])} < ${String(ordered[i])}`);
});

test("\"a\" and [\"a\"] are the same key; -0 and 0 are the same key", () => {
  assert.equal(encodeKey("a"), encodeKey(["a"]));
  assert.equal(encodeKey(-0), encodeKey(0));
  assert.deepEqual(decodeKey(encodeKey(["a"])), "a");
  assert.deepEqual(decodeKey(encodeKey(["a", 1])), ["a", 1]);
});

test("random tuple keys: byte order of encodings equals the reference order, and they round-trip", () => {
  const rnd = new SeededRandomForKeys(12345);
  const keys = Array.from({ length: 3000 }, () => rnd.tuple());
  const byEncoding = keys.map((k) => ({ k, e: encodeKey(k) })).sort((a, b) => (a.e < b.e ? -1 : a.e > b.e ? 1 : 0));
  for (let i = 1; i < byEncoding.length; i++) {
    const c = refCompare(byEncoding[i - 1]!.k, byEncoding[i]!.k);
    assert.ok(c <= 0, `order broken between ${String(byEncoding[i - 1]!.k)} and ${String(byEncoding[i]!.k)}`);
  }
  for (const k of keys.slice(0, 500)) {
    const back = decodeKey(encodeKey(k));
    assert.deepEqual(Array.isArray(back) ? back : [back], k);
  }
});

test("decodeKeyBytes (keys read straight from table blocks) equals decodeKey for every kind of part, inside a larger buffer", () => {
  const rnd = new SeededRandomForKeys(777);
  const keys: unknown[][] = Array.from({ length: 2000 }, () => rnd.tuple());
  // The fast path's own cases and each fallback: escaped NULs, non-ASCII, bytes, bigints, booleans, long ASCII.
  keys.push(["k", 1], ["k", -0.5], ["a\u0000b"], ["é"], [new Uint8Array([0, 255, 1])], [12n, "x"], [true, false], ["x".repeat(40), 3], [""], [1e300, -Infinity]);
  for (const k of keys) {
    const bytes = binaryToBytes(encodeKey(k));
    // Bytes before and after the key, as in a block: they must not be read.
    const buf = new Uint8Array(bytes.length + 9).fill(0xff);
    buf.set(bytes, 4);
    const back = decodeKeyBytes(buf, 4, 4 + bytes.length);
    assert.deepEqual(back, decodeKey(encodeKey(k)), `key ${String(k)}`);
  }
});

test("a tuple prefix's encoding is a byte prefix of every key that extends it", () => {
  const p = encodePrefix(["user", 7]);
  for (const k of [["user", 7, "a"], ["user", 7, 1n], ["user", 7, new Uint8Array([0])]]) assert.ok(encodeKey(k).startsWith(p));
  assert.ok(!encodeKey(["user", 70]).startsWith(p));
  assert.ok(!encodeKey(["user", "7"]).startsWith(p));
});

test("invalid keys fail with INVALID_KEY and a message saying what is wrong", () => {
  const bad: [unknown, RegExp][] = [
    [null, /null/], [undefined, /undefined/], [{}, /object/], [NaN, /NaN/], [[], /empty tuple/],
    [["a", null], /part 1/], ["\ud800", /surrogate/], [Symbol("x"), /symbol/], ["x".repeat(3000), /maxKeyBytes/],
  ];
  for (const [k, re] of bad) {
    assert.throws(() => encodeKey(k, 2048), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_KEY" && re.test(e.message), String(re));
  }
});

test("a huge bigint key part fails with INVALID_KEY before any work proportional to its size (was 8.5 s for 1.6M bits)", () => {
  for (const huge of [2n ** 1_600_000n, -(2n ** 1_600_000n) + 1n]) {
    const t0 = performance.now();
    assert.throws(() => encodeKey(huge), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_KEY" && /more than 126 bytes/.test(e.message));
    // Generous: the size check is O(1); the quadratic encoder took seconds here.
    assert.ok(performance.now() - t0 < 2000, `took ${performance.now() - t0} ms`);
  }
  // The limit is exact: 126 bytes of magnitude are a key, 127 are not.
  const max = 2n ** 1008n - 1n;
  for (const ok of [max, -max, 2n ** 1000n, -(2n ** 1000n), 256n, -256n, 255n, -255n, 1n, -1n, 0n]) {
    assert.equal(decodeKey(encodeKey(ok)), ok);
    assert.equal(encodedKeyProblem(binaryToBytes(encodeKey(ok))), undefined);
  }
  for (const bad of [max + 1n, -(max + 1n)]) assert.throws(() => encodeKey(bad), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_KEY");
  // Same bytes as the byte-at-a-time encoding: big-endian magnitude, negatives inverted.
  assert.deepEqual([...binaryToBytes(encodeKey(0x0102n))], [0x04, 0x82, 0x01, 0x02]);
  assert.deepEqual([...binaryToBytes(encodeKey(-0x0102n))], [0x04, 0x7d, 0xfe, 0xfd]);
  assert.deepEqual([...binaryToBytes(encodeKey(0n))], [0x04, 0x80]);
});

test("string key parts with lone surrogates fail with INVALID_KEY wherever a key is given; isWellFormedString tells them", () => {
  for (const k of ["\ud800", "a\udc00", ["ok", "x\ud83d"], ["\ude00y"]]) {
    assert.throws(() => encodeKey(k), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_KEY" && /lone surrogate/.test(e.message));
  }
  assert.throws(() => encodePrefix(["\ud800"]), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_KEY");
  for (const s of ["", "abc", "é", "😀", "a\u0000b", "\ud83d\ude00"]) assert.equal(isWellFormedString(s), true, JSON.stringify(s));
  for (const s of ["\ud800", "\udc00", "a\ud83d", "\ude00a", "\ud83d\ud83d\ude00x\udc00"]) assert.equal(isWellFormedString(s), false, JSON.stringify(s));
});

test("encodedKeyProblem accepts every key encodeKey writes and names what is wrong with malformed bytes", () => {
  const rnd = new SeededRandomForKeys(777);
  for (let i = 0; i < 2000; i++) {
    const k = rnd.tuple();
    assert.equal(encodedKeyProblem(binaryToBytes(encodeKey(k))), undefined, String(k));
  }
  const bad: [number[], RegExp][] = [
    [[], /empty/],
    [[0x09], /unknown type tag 9/],
    [[0x02, 0x61], /not terminated/],
    [[0x02, 0xc3, 0x00], /not valid UTF-8/],
    [[0x03, 0x80, 0, 0], /cut short/],
    [[0x03, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], /-0/],
    [[0x03, 0xff, 0xf8, 0, 0, 0, 0, 0, 0], /NaN/],
    [[0x04, 0x82, 0x00, 0x01], /leading zero/],
    [[0x04, 0x7f], /negative zero/],
    [[0x04, 0x00], /impossible length/],
    [[0x04, 0x85, 1], /cut short/],
    [[0x05, 0x02], /not 0 or 1/],
    [[0x05], /not 0 or 1/],
  ];
  for (const [bytes, re] of bad) {
    const problem = encodedKeyProblem(new Uint8Array(bytes));
    assert.ok(problem !== undefined && re.test(problem), `${bytes.join(",")}: ${problem}`);
  }
});
