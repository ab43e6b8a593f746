/**
 * The bytes a value is stored as do not change: values written by earlier releases must read
 * back byte for byte, and one store is shared by builds that must agree (the npm build beside
 * the JSR source, an old process beside a new one). Each value below is encoded and compared
 * with the bytes txtdb 0.1.0 (cbor-x 1.6.9 from npm) stored for it, and decoded from those
 * bytes. A change to the codec or to the CBOR library that moves a byte fails here, naming
 * the value.
 */
import { assert, runtime, test } from "./harness.ts";
import { decodeInternal, decodeValue, encodeInternal, encodeValue } from "txtdb/internal";

const R = `[${runtime}]`;
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const bytes = (h: string) => new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));

/** [what, value, the bytes 0.1.0 stored for it, in hex]. */
const STORED: [string, unknown, string][] = [
  ["an object (a cbor-x record)", { name: "alice", balance: 100, tags: ["a", "b"], active: true }, "d9dfff8619e00084646e616d656762616c616e636564746167736661637469766565616c69636518648261616162f5"],
  ["two objects of one shape (the record definition once)", [{ a: 1, b: "x" }, { a: 2, b: "y" }], "82d9dfff8419e0008261616162016178d9e00082026179"],
  ["nested objects, null and undefined members", { o: { p: { q: null } }, u: undefined }, "d9dfff8419e00082616f6175d9dfff8319e001816170d9dfff8319e002816171f6f7"],
  ["integers, floats, -0, NaN, Infinity", [0, 1, -1, 255, 65536, 2 ** 53, 1.5, -0, NaN, Infinity, -Infinity, 0.1], "8c00012018ff1a00010000fb4340000000000000fb3ff8000000000000d9b878f6fb7ff8000000000000fb7ff0000000000000fbfff0000000000000fb3fb999999999999a"],
  ["bigints", [1n, -1n, 2n ** 64n, -(2n ** 70n)], "841b00000000000000013b0000000000000000c249010000000000000000c3493fffffffffffffffff"],
  ["strings: empty, ASCII, non-ASCII, long", ["", "hello", "é🙂", "x".repeat(300)], "84606568656c6c6f66c3a9f09f998279012c" + "78".repeat(300)],
  ["booleans and null", [true, false, null], "83f5f4f6"],
  ["a Date", new Date(1_700_000_000_123), "c1fb41d954fc4007df3b"],
  ["a Map with non-string keys", new Map([[1, "a"], ["k", { z: 1 }]]), "a2016161616bd9dfff8319e00081617a01"],
  ["a Set", new Set([1, "two", 3n]), "d9010283016374776f1b0000000000000003"],
  ["Uint8Array and Float64Array", [new Uint8Array([1, 2, 3]), new Float64Array([0.5, -0])], "82d84043010203d85650000000000000e03f0000000000000080"],
  ["an own __proto__ key", JSON.parse('{"__proto__": {"polluted": 1}, "a": 2}'), "d9b87984695f5f70726f746f5f5fd9dfff8319e0008168706f6c6c7574656401616102"],
  ["a RegExp", /a+b/gi, "d81b836652656745787063612b62626769"],
];

for (const [what, value, stored] of STORED) {
  test(`${R} a value is stored as 0.1.0 stored it, and 0.1.0's bytes read back: ${what}`, () => {
    assert.equal(hex(encodeValue(value)), stored, `the bytes of ${what} changed`);
    assert.deepStrictEqual(decodeValue(bytes(stored)), value);
  });
}

test(`${R} log records are encoded as 0.1.0 encoded them`, () => {
  const record = { tsn: 5, ns: "accounts", ops: [[1, "k", new Uint8Array([9])]] };
  const stored = "d9dfff8519e000836374736e626e73636f707305686163636f756e7473818301616bd8404109";
  assert.equal(hex(encodeInternal(record)), stored);
  assert.deepStrictEqual(decodeInternal(bytes(stored)), record);
});
