/**
 * What a value can be (issue 9, item 12): everything accepted comes back as it was stored
 * (through memory, the log, a checkpoint and a reopen), everything else fails with
 * INVALID_VALUE naming where in the value the problem is, and decoding never touches a
 * prototype, even from hostile bytes.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { decodeValue, encodeValue } from "txtdb/internal";
import { foldIntoCheckpoint } from "./valuehelpers.ts";

const R = `[${runtime}]`;

const invalidValue = (path: RegExp) => (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_VALUE" && path.test(e.message);

function protoKeyed(inner: unknown): Record<string, unknown> {
  const o: Record<string, unknown> = { before: 1 };
  Object.defineProperty(o, "__proto__", { value: inner, writable: true, enumerable: true, configurable: true });
  o.after = 2;
  return o;
}

/** Values that must come back exactly (deepStrictEqual tells -0 from 0 and own keys from inherited ones). */
const ROUND_TRIPS: [string, unknown][] = [
  ["-0", -0],
  ["-0 nested in objects, arrays and Map values", { a: -0, b: [0, -0], m: new Map<unknown, unknown>([["z", -0]]) }],
  ["NaN, Infinity, -Infinity", [NaN, Infinity, -Infinity]],
  ["numbers past 2^53 and tiny ones", [2 ** 60, -(2 ** 60), 1e300, 5e-324, Number.MAX_SAFE_INTEGER]],
  ["dates with milliseconds, before 1970 and at the end of time", [new Date(1_700_000_000_123), new Date(-1), new Date(8.64e15)]],
  ["Map keys of every kind", new Map<unknown, unknown>([[{ a: 1 }, 1], [[1, 2], 2], [new Uint8Array([1]), 3], [NaN, 4], [1n, 5], [new Date(5), 6], [null, 7], [undefined, 8], ["__proto__", 9]])],
  ["Set members of every kind", new Set<unknown>([{ a: 1 }, NaN, 0, [1], "x", 2n, new Date(3)])],
  ["an own __proto__ key", JSON.parse('{"__proto__": {"polluted": 1}, "a": 2}')],
  ["own __proto__ keys nested in arrays, Maps and Sets", [protoKeyed(-0), new Map([["k", protoKeyed([1])]]), new Set([protoKeyed(null)])]],
  ["a key named __proto_ (what cbor-x renames __proto__ to)", { __proto_: 1 }],
  ["undefined inside objects and arrays", { a: undefined, b: [undefined, 1] }],
  ["RegExp", /a+b/giu],
  ["-0 inside a Float64Array", new Float64Array([-0, 0.5])],
  ["a Proxy of an object and of an array, as what their traps show", { p: new Proxy({ a: 1 }, {}), q: new Proxy([1, 2], {}) }],
];

test(`${R} values round-trip exactly through memory, the log, a checkpoint and a reopen (-0, NaN, Date(NaN), Map keys, Set members, __proto__ keys)`, async () => {
  const dir = tempDir("rt");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  for (const [name, v] of ROUND_TRIPS) await db.set("ns", name, v);
  // Apart: node:assert (Node 20) finds two invalid Dates unequal, and its reporter cannot print them.
  await db.set("ns", "Date(NaN)", { d: new Date(NaN) });
  const verify = async (where: string, get: (k: string) => Promise<unknown>) => {
    for (const [name, v] of ROUND_TRIPS) assert.deepStrictEqual(await get(name), v, `${where}: ${name}`);
    assert.ok(Object.is(await get("-0"), -0), `${where}: -0 is -0`);
    const { d } = (await get("Date(NaN)")) as { d: unknown };
    assert.ok(d instanceof Date && Number.isNaN(d.getTime()), `${where}: Date(NaN) comes back as an invalid Date`);
    const proto = (await get("an own __proto__ key")) as Record<string, unknown>;
    assert.ok(Object.hasOwn(proto, "__proto__"), `${where}: __proto__ is an own property`);
    assert.deepStrictEqual(Object.keys(proto), ["__proto__", "a"]);
    assert.equal(Object.getPrototypeOf(proto), Object.prototype, `${where}: the prototype is untouched`);
    assert.equal((proto as { polluted?: unknown }).polluted, undefined);
    assert.equal(({} as { polluted?: unknown }).polluted, undefined, `${where}: Object.prototype is clean`);
  };
  await verify("in memory", (k) => db.get("ns", k));
  await db.close();
  const again = await open(dir, { segmentBytes: 512, autoCompactBytes: 0 });
  await verify("from the log", (k) => again.get("ns", k));
  await foldIntoCheckpoint(again);
  await again.close();
  const third = await open(dir);
  await verify("from a checkpoint", (k) => third.get("ns", k));
  assert.equal((await third.check()).ok, true);
  await third.close();
});

test(`${R} values that cannot round-trip fail with INVALID_VALUE naming the path, and nothing is written`, async () => {
  const db = await open(tempDir("rt"), { namespaces: ["ns"] });
  const sym: Record<string | symbol, unknown> = { a: 1 };
  sym[Symbol("s")] = 2;
  const bad: [unknown, RegExp][] = [
    ["x\ud800y", /value is a string with a lone surrogate/],
    [{ a: [1, "\udc00"] }, /value\.a\[1\] is a string with a lone surrogate/],
    [{ ["k\ud800"]: 1 }, /value has a key with a lone surrogate/],
    [new Map([["\ud800", 1]]), /value<key> is a string with a lone surrogate/],
    [new Set(["ok", "\udfff"]), /value<item> is a string with a lone surrogate/],
    [{ list: [1, , 3] }, /value\.list\[1\] is a hole in a sparse array/],
    [new Array(3), /value\[0\] is a hole/],
    [{ inner: sym }, /value\.inner has symbol keys/],
    [new Error("boom"), /value is an Error/],
    [{ e: new TypeError("t") }, /value\.e is an Error/],
    [new ArrayBuffer(4), /value is an ArrayBuffer/],
    [{ d: new DataView(new ArrayBuffer(2)) }, /value\.d is a DataView/],
  ];
  for (const [v, re] of bad) {
    await assert.rejects(db.set("ns", "k", v), invalidValue(re), String(re));
    await assert.rejects(db.transaction((tx) => tx.set("ns", "k", v)), invalidValue(re), `tx: ${String(re)}`);
  }
  assert.equal(await db.get("ns", "k"), undefined, "nothing was written");
  assert.equal(db.stats().commits, 1, "only the open's namespace creation committed");
  await db.close();
});

test(`${R} boxed primitives, objects whose state is not in their properties, iterables and deep functions or symbols are INVALID_VALUE naming the path; nothing is written`, async () => {
  const db = await open(tempDir("rt"), { namespaces: ["ns"] });
  class Bag {
    *[Symbol.iterator]() {
      yield 1;
    }
  }
  const bad: [unknown, RegExp][] = [
    [new Number(5), /value is a Number object .*valueOf/],
    [{ a: { b: [0, 1, 2, new String("s")] } }, /value\.a\.b\[3\] is a String object/],
    [[new Boolean(false)], /value\[0\] is a Boolean object/],
    [{ n: Object(1n) }, /value\.n is a BigInt object/],
    [new Map([[new Number(1), 1]]), /value<key> is a Number object/],
    [new Set([Object(Symbol("s"))]), /value<item> is a Symbol object/],
    [{ w: new WeakMap() }, /value\.w is an object of class WeakMap/],
    [{ w: new WeakSet() }, /value\.w is an object of class WeakSet/],
    [{ p: Promise.resolve(1) }, /value\.p is an object of class Promise/],
    [new URL("https://example.com/a"), /value is an object of class URL/],
    [{ it: new Bag() }, /value\.it is an iterable Bag/],
    [{ g: (function* () {})() }, /value\.g is an object of class Generator/],
    [{ a: { b: [0, () => 1] } }, /value\.a\.b\[1\] is a function/],
    [{ a: { b: Symbol("deep") } }, /value\.a\.b is a symbol/],
    [new Map([["k", { f() {} }]]), /value\.get\("k"\)\.f is a function/],
  ];
  for (const [v, re] of bad) {
    await assert.rejects(db.set("ns", "k", v), invalidValue(re), String(re));
    assert.throws(() => encodeValue(v), invalidValue(re), `encodeValue: ${String(re)}`);
  }
  assert.equal(await db.get("ns", "k"), undefined, "nothing was written");
  assert.equal(db.stats().commits, 1, "only the open's namespace creation committed");
  await db.close();
});

test(`${R} a getter or Proxy trap that throws while a value is encoded is INVALID_VALUE naming where, the error as its cause; nothing is written`, async () => {
  const db = await open(tempDir("rt"), { namespaces: ["ns"] });
  const boom = new Error("boom");
  const cases: [unknown, RegExp][] = [
    [{ get a() { throw boom; } }, /value\.a threw while it was read \(boom\)/],
    [{ x: [1, { get a() { throw boom; } }] }, /value\.x\[1\]\.a threw/],
    [{ p: new Proxy({}, { ownKeys() { throw boom; } }) }, /value\.p threw/],
    [new Proxy([1], { get() { throw boom; } }), /value threw/],
  ];
  for (const [v, re] of cases) {
    const check = (e: unknown) => invalidValue(re)(e) && (e as Error).cause === boom;
    await assert.rejects(db.set("ns", "k", v), check, String(re));
    await assert.rejects(db.transaction((tx) => tx.set("ns", "k", v)), check, `tx: ${String(re)}`);
    await assert.rejects(db.enqueue("q", v), check, `enqueue: ${String(re)}`);
  }
  // A getter that throws only when cbor-x reads it again (after the checks) is INVALID_VALUE too.
  let reads = 0;
  const second = { get a() { if (reads++ > 0) throw boom; return 1; } };
  await assert.rejects(db.set("ns", "k", second), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_VALUE" && (e as Error).cause === boom);
  assert.equal(await db.get("ns", "k"), undefined, "nothing was written");
  // The encoder is not left in a bad state.
  await db.set("ns", "k", { a: 1, b: [2] });
  assert.deepEqual(await db.get("ns", "k"), { a: 1, b: [2] });
  await db.close();
});

test(`${R} class instances keep their own enumerable properties; a subclass of Map comes back as a Map, not an array of entries`, () => {
  class Point {
    #secret = 1;
    constructor(readonly x: number, readonly y: number) {}
    get sum(): number {
      return this.x + this.y + this.#secret;
    }
  }
  assert.deepStrictEqual(decodeValue(encodeValue({ p: new Point(1, 2) })), { p: { x: 1, y: 2 } });
  class Registry extends Map<string, unknown> {}
  for (const inner of [1, -0]) {
    const back = decodeValue(encodeValue({ r: new Registry([["a", inner]]) })) as { r: Map<string, unknown> };
    assert.ok(back.r instanceof Map, `a Map, got ${JSON.stringify(back.r)}`);
    assert.ok(Object.is(back.r.get("a"), inner));
  }
  class List extends Array<number> {}
  assert.deepStrictEqual(decodeValue(encodeValue(List.from([1, 2]))), [1, 2]);
});

// --- hostile bytes: decoding never touches a prototype ---

const utf8 = (s: string) => [...new TextEncoder().encode(s)];
/** A CBOR text string shorter than 24 bytes. */
const text = (s: string) => [0x60 + utf8(s).length, ...utf8(s)];
/** cbor-x's inline record (tag 0xdfff): [id, [keys], ...values]. */
const record = (id: number, keys: string[], values: number[][]) => [0xd9, 0xdf, 0xff, 0x82 + keys.length, 0x19, id >> 8, id & 0xff, 0x80 + keys.length, ...keys.flatMap(text), ...values.flat()];
const pollutedRecord = (id: number) => record(id, ["polluted"], [[0x01]]);
/** txtdb's own-entries tag (47225): [key, value, ...]. */
const ownEntries = (items: number[][]) => [0xd9, 0xb8, 0x79, 0x80 + items.length, ...items.flat()];

function assertClean(what: string): void {
  assert.equal(({} as { polluted?: unknown }).polluted, undefined, `${what}: Object.prototype is clean`);
  assert.equal(Object.hasOwn(Object.prototype, "polluted"), false, what);
  assert.equal(([] as unknown as { polluted?: unknown }).polluted, undefined, what);
}

test(`${R} decoding crafted CBOR never pollutes a prototype (maps, records, legacy records, the own-entries tag, structured-clone refs)`, () => {
  const cases: [string, number[]][] = [
    ["a CBOR map with a __proto__ key", [0xa1, ...text("__proto__"), ...pollutedRecord(0xe000)]],
    ["a cbor-x record with a __proto__ key", record(0xe000, ["__proto__"], [pollutedRecord(0xe001)])],
    ["a legacy cbor-x record (tag 105) with a __proto__ key", [0xd8, 0x69, 0x83, 0x19, 0xe0, 0x00, 0x81, ...text("__proto__"), ...pollutedRecord(0xe001)]],
    ["txtdb's own-entries tag with __proto__", ownEntries([text("__proto__"), pollutedRecord(0xe000)])],
    ["own-entries inside a structured-clone reference", [0xd8, 0x1c, ...ownEntries([text("__proto__"), pollutedRecord(0xe000), text("self"), [0xd8, 0x1d, 0x00]])]],
  ];
  for (const [what, bytes] of cases) {
    let v: unknown;
    try {
      v = decodeValue(new Uint8Array(bytes));
    } catch (e) {
      assert.ok(e instanceof TxtDbError && e.code === "CORRUPTION", `${what}: only CORRUPTION may be thrown, got ${String(e)}`);
    }
    assertClean(what);
    if (v instanceof Map) assert.deepStrictEqual([...v.keys()], ["__proto__"], what);
    else if (v && typeof v === "object" && what !== "own-entries inside a structured-clone reference") {
      assert.equal(Object.getPrototypeOf(v), Object.prototype, `${what}: the value's prototype is Object.prototype`);
    }
  }
  const own = decodeValue(new Uint8Array(cases[3]![1])) as Record<string, unknown>;
  assert.ok(Object.hasOwn(own, "__proto__"));
  assert.deepStrictEqual(Object.keys(own.__proto__ as object), ["polluted"]);
  const renamed = decodeValue(new Uint8Array(cases[1]![1])) as Record<string, unknown>;
  assert.deepStrictEqual(Object.keys(renamed), ["__proto_"], "cbor-x renames a record's __proto__ key; it never assigns it");
});

test(`${R} -0 and __proto__ keys take txtdb's tags only when present: other values encode as before`, () => {
  // A plain object must still encode as a cbor-x record (no rewrite, no copy).
  const plain = encodeValue({ a: 0, b: [1] });
  assert.equal(plain[0], 0xd9, "a record tag");
  assert.deepStrictEqual(decodeValue(plain), { a: 0, b: [1] });
  const neg = encodeValue(-0);
  assert.deepStrictEqual([...neg], [0xd9, 0xb8, 0x78, 0xf6]);
  assert.ok(Object.is(decodeValue(neg), -0));
});

test(`${R} values and key parts made in another realm (node:vm) come back as this realm's: typed arrays, dates, regular expressions, maps and sets keep their class; a DataView or a function inside is INVALID_VALUE`, async () => {
  const vm = await import("node:vm");
  const dir = tempDir("realm");
  const db = await open(dir, { namespaces: ["ns"] });
  try {
    const foreign = vm.runInNewContext("({ u: new Uint8Array([1, 2, 3]), f: new Float64Array([1.5]), b: new BigInt64Array([5n]), m: new Map([[1, new Uint8Array([9])]]), s: new Set(['a']), d: new Date(5), r: /x/gi, a: [new Uint8Array([4])], o: { z: 1 } })");
    assert.equal(foreign.u instanceof Uint8Array, false, "the test's values are of another realm");
    await db.set("ns", "v", foreign);
    for (const read of [await db.get<Record<string, unknown>>("ns", "v"), decodeValue(encodeValue(foreign)) as Record<string, unknown>]) {
      assert.ok(read.u instanceof Uint8Array, "a Uint8Array (it came back as an Array of numbers)");
      assert.deepEqual([...(read.u as Uint8Array)], [1, 2, 3]);
      assert.ok(read.f instanceof Float64Array && read.f[0] === 1.5);
      assert.ok(read.b instanceof BigInt64Array && read.b[0] === 5n);
      assert.ok(read.m instanceof Map && (read.m as Map<number, unknown>).get(1) instanceof Uint8Array);
      assert.ok(read.s instanceof Set && (read.s as Set<string>).has("a"));
      assert.ok(read.d instanceof Date && (read.d as Date).getTime() === 5);
      assert.ok(read.r instanceof RegExp && String(read.r) === "/x/gi");
      assert.ok((read.a as unknown[])[0] instanceof Uint8Array);
      assert.deepEqual(read.o, { z: 1 });
    }
    await assert.rejects(db.set("ns", "dv", vm.runInNewContext("new DataView(new ArrayBuffer(2))")), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_VALUE" && /DataView/.test(e.message));
    await assert.rejects(db.set("ns", "fn", vm.runInNewContext("new Map([[1, () => 1]])")), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_VALUE" && /value\.get\(1\) is a function/.test(e.message));
    assert.equal(await db.get("ns", "dv"), undefined);
    assert.equal(await db.get("ns", "fn"), undefined);
    await db.set("ns", ["k", vm.runInNewContext("new Uint8Array([7, 8])")], "bytes key");
    assert.equal(await db.get("ns", ["k", new Uint8Array([7, 8])]), "bytes key", "a key part of another realm is the same key");
  } finally {
    await db.close();
  }
});
