/** The tagged JSON of export/import (src/ndjson.ts), on every runtime: what round-trips and what is refused. */
import { assert, runtime, test } from "./harness.ts";
import { fromTagged, toTagged, TxtDbError } from "txtdb/internal";

const R = `[${runtime}]`;
/** Through text, as export then import do it. */
const roundTrip = (v: unknown) => fromTagged(JSON.parse(JSON.stringify(toTagged(v))));
const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;

test(`${R} toTagged/fromTagged: an invalid Date round-trips as {"$date":null}`, () => {
  assert.deepEqual(toTagged({ d: new Date(NaN) }), { d: { $date: null } });
  const back = roundTrip([new Date(NaN), new Date(0)]) as Date[];
  assert.ok(back[0] instanceof Date && Number.isNaN(back[0].getTime()));
  assert.equal(back[1]!.toISOString(), "1970-01-01T00:00:00.000Z");
});

test(`${R} toTagged/fromTagged: typed arrays keep their type and contents; -0, NaN and ±Infinity survive`, () => {
  const values: ArrayBufferView[] = [
    new Float64Array([1.5, -0, NaN, Infinity]), new Float32Array([0.25]), new Int32Array([-1, 2 ** 31 - 1]),
    new Uint16Array([65535, 1]), new Int16Array([-2]), new Int8Array([-128]), new Uint8ClampedArray([255]),
    new Uint32Array([2 ** 32 - 1]), new BigInt64Array([-(2n ** 63n), 5n]), new BigUint64Array([2n ** 64n - 1n]),
    new Uint8Array([0, 1, 255]), new Float64Array([9, 8, 7]).subarray(1), new Int32Array(0),
  ];
  for (const v of values) {
    const back = roundTrip(v) as ArrayBufferView;
    assert.equal(back.constructor.name, v.constructor.name);
    assert.deepEqual(back, v);
  }
  assert.deepEqual(toTagged(new Int32Array([1])), { $typed: "Int32Array", $bytes: "AQAAAA==" });
  assert.deepEqual(toTagged(new Uint8Array([1, 2, 3])), { $bytes: "AQID" }, "bytes keep their short form");
  const nums = roundTrip([-0, NaN, Infinity, -Infinity, 0, 1.5]) as number[];
  assert.ok(Object.is(nums[0], -0) && Number.isNaN(nums[1]) && nums[2] === Infinity && nums[3] === -Infinity && Object.is(nums[4], 0));
  const re = roundTrip(/a.b/gi) as RegExp;
  assert.ok(re instanceof RegExp && re.source === "a.b" && re.flags === "gi");
});

test(`${R} fromTagged: malformed or unknown tags fail with INVALID_ARGUMENT naming where`, () => {
  const bad: [string, RegExp][] = [
    ['{"$bigint":"zz"}', /value: "\$bigint" must be a string of decimal digits; got "zz"/],
    ['{"$bigint":5}', /\$bigint/],
    ['{"$bytes":5}', /"\$bytes" must be a base64 string; got 5/],
    ['{"$bytes":"a b"}', /base64/],
    ['{"$typed":"Nope","$bytes":""}', /"\$typed" must name a typed array/],
    ['{"$typed":"Float64Array","$bytes":"AQID"}', /3 bytes are not a whole number of Float64Array elements/],
    ['{"$date":"yesterday"}', /\$date/],
    ['{"$map":[[1]]}', /\[key, value\] pair/],
    ['{"$set":{}}', /\$set/],
    ['{"$f64":"1e999"}', /\$f64/],
    ['{"$undefined":1}', /\$undefined/],
    ['{"$regexp":"(","$flags":""}', /regular expression/],
    ['{"a":[1,{"$tag":1}]}', /value\.a\[1\]: \{"\$tag":1\} is not a known tag/],
    ['{"$bigint":"1","x":2}', /not a known tag/],
    ['{"$object":[]}', /\$object/],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => fromTagged(JSON.parse(text)), (e: unknown) => code("INVALID_ARGUMENT")(e) && message.test((e as Error).message), text);
  }
});

test(`${R} toTagged/fromTagged: a __proto__ key is an own property both ways and no prototype is touched`, () => {
  const parsed = JSON.parse('{"__proto__":{"polluted":1},"a":{"__proto__":[2]}}');
  const back = roundTrip(parsed) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.deepEqual(Object.keys(back), ["__proto__", "a"]);
  assert.deepEqual(Object.getOwnPropertyDescriptor(back, "__proto__")!.value, { polluted: 1 });
  assert.deepEqual(Object.getOwnPropertyDescriptor(back.a, "__proto__")!.value, [2]);
  assert.equal((back as { polluted?: unknown }).polluted, undefined);
  assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  assert.match(JSON.stringify(toTagged(parsed)), /^\{"__proto__":\{"polluted":1\}/);
});

test(`${R} toTagged/fromTagged: user objects whose keys look like tags stay plain objects`, () => {
  const lookalikes = [
    { $bigint: "1" }, { $typed: "Float64Array", $bytes: "AAAAAAAAAAA=" }, { $date: null }, { $f64: "NaN" },
    { $ref: "x", name: "y" }, { $object: { $bigint: "2" } }, { nested: { $set: [1] } },
  ];
  for (const v of lookalikes) assert.deepEqual(roundTrip(v), v, JSON.stringify(v));
  assert.deepEqual(toTagged({ $ref: 1 }), { $object: { $ref: 1 } });
});

test(`${R} fromTagged: "$date" takes an ISO 8601 date, or date and time with its offset, naming a real day; other strings are INVALID_ARGUMENT (they were parsed as anything, shifted and in local time)`, () => {
  const good: [string, string][] = [
    ["2020-01-02T03:04:05.000Z", "2020-01-02T03:04:05.000Z"],
    ["2020-01-02T03:04:05Z", "2020-01-02T03:04:05.000Z"],
    ["2020-01-02T03:04Z", "2020-01-02T03:04:00.000Z"],
    ["2020-01-02T05:04:05.5+02:00", "2020-01-02T03:04:05.500Z"],
    ["2020-02-29", "2020-02-29T00:00:00.000Z"],
    ["+275760-09-13T00:00:00.000Z", "+275760-09-13T00:00:00.000Z"],
    ["-000001-01-01T00:00:00.000Z", "-000001-01-01T00:00:00.000Z"],
  ];
  for (const [text, iso] of good) assert.equal((fromTagged({ $date: text }) as Date).toISOString(), iso, text);
  for (const d of [new Date(0), new Date(-1e15), new Date(8.64e15), new Date(1_700_000_000_123)]) {
    assert.equal((roundTrip(d) as Date).getTime(), d.getTime(), "every Date export writes comes back");
  }
  const bad = ["2020-02-30T00:00:00Z", "2021-02-29", "1", "2020-01-01 10:00", "2020-01-01T10:00:00", "March 7, 2020", "2020-13-01", "2020-01-01T24:00:00Z", "2020-01-01T10:60:00Z", "2020-01-01T10:00:00+25:00", "-000000-01-01T00:00:00Z", " 2020-01-01", ""];
  for (const text of bad) {
    assert.throws(() => fromTagged({ $date: text }), (e: unknown) => code("INVALID_ARGUMENT")(e) && /\$date/.test((e as Error).message), text);
  }
});

test(`${R} fromTagged takes back every value the codec stores at the deepest nesting: a primitive's tag (bigint, -0, NaN, Infinity, undefined) 512 objects down is a leaf, not a 513th level; an object there is refused as the codec refuses it (review helper-73)`, async () => {
  const { encodeValue } = await import("txtdb/internal");
  const bytesHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const nest = (n: number, leaf: unknown, wrap: (x: unknown) => unknown) => {
    let v = leaf;
    for (let i = 0; i < n; i++) v = wrap(v);
    return v;
  };
  const wraps: Record<string, (x: unknown) => unknown> = { array: (x) => [x], object: (x) => ({ x }), map: (x) => new Map([["k", x]]), set: (x) => new Set([x]) };
  for (const [name, leaf] of Object.entries({ bigint: 5n, nan: NaN, negzero: -0, inf: Infinity, undef: undefined, str: "s", nul: null })) {
    for (const [w, wrap] of Object.entries(wraps)) {
      const v = nest(512, leaf, wrap);
      encodeValue(v); // the codec stores it
      const back = fromTagged(JSON.parse(JSON.stringify(toTagged(v))));
      // Compared as encoded bytes: a deep-equality walk of 512 nested Maps or Sets takes
      // exponential time in some runtimes' assert (it hung Bun's).
      assert.equal(bytesHex(encodeValue(back)), bytesHex(encodeValue(v)), `${name} in ${w}s`);
    }
  }
  const tooDeep = nest(512, new Date(0), (x) => [x]);
  assert.throws(() => encodeValue(tooDeep), code("INVALID_VALUE"));
  assert.throws(() => fromTagged(JSON.parse(JSON.stringify(toTagged(tooDeep)))), (e: unknown) => code("INVALID_VALUE")(e) && (e as Error).message.length < 400);
});
