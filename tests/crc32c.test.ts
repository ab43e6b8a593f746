/**
 * crc32c(): the published check values, and agreement with a bit-at-a-time reference at
 * every length 0..1100 and every alignment, across each path (short, bytewise slicing,
 * word view), for continuations, and for 1 MiB inputs.
 *
 * Replay a failure with TXTDB_SEED=<seed printed in the failure>.
 */
import { assert, envVar, runtime, test } from "./harness.ts";
import { crc32c } from "txtdb/internal";

const R = `[${runtime}]`;
const SEED = Number(envVar("TXTDB_SEED") ?? Math.floor(Math.random() * 2 ** 31));

/** The definition: one bit at a time, reflected, polynomial 0x82F63B78. */
function reference(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) {
    c ^= data[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

/** Seeded xorshift bytes. */
function randomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed | 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

const hex = (n: number) => "0x" + n.toString(16).padStart(8, "0");

test(`${R} crc32c: RFC 3720 (iSCSI) test vectors and the "123456789" check value`, () => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  const descending = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
  const cases: [string, Uint8Array, number][] = [
    ["32 zero bytes", new Uint8Array(32), 0x8a9136aa],
    ["32 0xFF bytes", new Uint8Array(32).fill(0xff), 0x62a8ab43],
    ["0..31 ascending", ascending, 0x46dd794e],
    ["31..0 descending", descending, 0x113fdb5c],
    ["123456789", new TextEncoder().encode("123456789"), 0xe3069283],
    ["empty", new Uint8Array(0), 0],
  ];
  for (const [name, bytes, expected] of cases) {
    assert.equal(hex(crc32c(bytes)), hex(expected), name);
    assert.equal(hex(reference(bytes)), hex(expected), `reference: ${name}`);
  }
  // The iSCSI SCSI Read(10) command PDU from RFC 3720 B.4.
  const pdu = Uint8Array.from([
    0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  ]);
  assert.equal(hex(crc32c(pdu)), hex(0xd9963a56), "RFC 3720 B.4 read PDU");
});

test(`${R} crc32c: every length 0..1100 at every alignment 0..7 matches the reference (seed ${SEED})`, () => {
  const pool = randomBytes(1200 + 8, SEED);
  for (let length = 0; length <= 1100; length++) {
    for (let offset = 0; offset < 8; offset++) {
      const bytes = pool.subarray(offset, offset + length);
      const expected = reference(bytes);
      const actual = crc32c(bytes);
      if (actual !== expected) {
        assert.fail(`length ${length} at offset ${offset}: ${hex(actual)}, expected ${hex(expected)} (TXTDB_SEED=${SEED})`);
      }
    }
  }
});

test(`${R} crc32c: subarrays of a larger buffer, fresh buffers, and all-0xFF / all-zero inputs`, () => {
  const pool = randomBytes(4096 + 64, SEED ^ 0x5bd1e995);
  for (const length of [4, 20, 31, 32, 33, 200, 511, 512, 513, 4092, 4096]) {
    for (let offset = 0; offset < 16; offset++) {
      const view = pool.subarray(offset, offset + length);
      const copy = view.slice();
      const expected = reference(view);
      assert.equal(crc32c(view), expected, `subarray length ${length} offset ${offset} (TXTDB_SEED=${SEED})`);
      assert.equal(crc32c(copy), expected, `copy length ${length} (TXTDB_SEED=${SEED})`);
    }
    assert.equal(crc32c(new Uint8Array(length).fill(0xff)), reference(new Uint8Array(length).fill(0xff)), `0xFF × ${length}`);
    assert.equal(crc32c(new Uint8Array(length)), reference(new Uint8Array(length)), `0 × ${length}`);
  }
  // A view over a buffer whose byte length is not a multiple of 4.
  const odd = randomBytes(1027, SEED ^ 0x1234567);
  for (let offset = 0; offset < 4; offset++) {
    const bytes = new Uint8Array(odd.buffer, offset, odd.length - offset);
    assert.equal(crc32c(bytes), reference(bytes), `odd-length buffer from ${offset}`);
  }
});

test(`${R} crc32c: continuing from a previous value equals checksumming the concatenation`, () => {
  const all = randomBytes(1500, SEED ^ 0x27d4eb2d);
  for (const total of [0, 5, 40, 300, 700, 1500]) {
    const whole = all.subarray(0, total);
    const expected = reference(whole);
    for (let split = 0; split <= total; split += split < 40 ? 1 : 37) {
      const first = crc32c(whole.subarray(0, split));
      assert.equal(crc32c(whole.subarray(split), first), expected, `total ${total} split ${split} (TXTDB_SEED=${SEED})`);
    }
    assert.equal(reference(whole.subarray(7), reference(whole.subarray(0, 7))), expected, "reference continues too");
  }
  // The frame checksum in record.ts: crc32c(body, crc32c(length field)).
  const frame = randomBytes(4 + 120, SEED ^ 0x9e3779b9);
  assert.equal(crc32c(frame.subarray(4), crc32c(frame.subarray(0, 4))), reference(frame));
});

test(`${R} crc32c: 1 MiB inputs at offsets 0..3 match the reference`, () => {
  const size = 1 << 20;
  const pool = randomBytes(size + 4, SEED ^ 0x68e31da4);
  for (let offset = 0; offset < 4; offset++) {
    const bytes = pool.subarray(offset, offset + size);
    assert.equal(hex(crc32c(bytes)), hex(reference(bytes)), `1 MiB at offset ${offset} (TXTDB_SEED=${SEED})`);
  }
  assert.equal(hex(crc32c(new Uint8Array(size))), hex(reference(new Uint8Array(size))), "1 MiB of zeros");
});
