/**
 * The lock table's pure parts (locktable.ts): the slot format (a torn or foreign slot is
 * refused and the reader falls back to the other), the grant rule and deadlock detection
 * on hand-built tables.
 */
import { assert, runtime, test } from "./harness.ts";
import { blockersOf, CONVERSION, decodeSlot, emptyTable, encodeRecord, encodeRecordOwner, encodeTable, GRANTED, readTableFrom, settle, SLOT_BYTES, VICTIM } from "txtdb/internal";
import type { LockEntry, LockTable } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const R = `[${runtime}]`;
const IS = 0, IX = 1, S = 2, X = 4;

function table(entries: Omit<LockEntry, "sinceWallMs" | "note">[]): LockTable {
  const t = emptyTable();
  for (const e of entries) {
    t.owners.set(e.owner, { id: e.owner, pid: Number.parseInt(e.owner.slice(-4), 16), runtime: "node" });
    t.entries.push({ ...e, sinceWallMs: 0, note: "" });
  }
  t.nextSeq = entries.length + 1;
  return t;
}
const A = "00000000000000a1", B = "00000000000000b2", C = "00000000000000c3";

test(`${R} lock table: an owner's record of its grants decodes as a slot of its own entries, granted; a torn one is refused`, () => {
  const owner = encodeRecordOwner({ id: A, pid: 4242, runtime: "node" });
  const empty = decodeSlot(encodeRecord(3, owner, new Map(), 1_000))!;
  assert.equal(empty.generation, 3);
  assert.deepEqual(empty.entries, []);
  const grants = new Map([[5, { seq: 5, resource: "\x02r\x00", mode: X }], [9, { seq: 9, resource: "\x02s\x00\xff", mode: S }]]);
  const slot = encodeRecord(4, owner, grants, 2_000);
  const back = decodeSlot(slot)!;
  assert.equal(back.generation, 4);
  assert.equal(back.nextSeq, 10);
  assert.deepEqual([...back.owners.values()], [{ id: A, pid: 4242, runtime: "node" }]);
  assert.deepEqual(back.entries, [
    { seq: 5, owner: A, resource: "\x02r\x00", mode: X, flags: GRANTED, sinceWallMs: 2_000, note: "" },
    { seq: 9, owner: A, resource: "\x02s\x00\xff", mode: S, flags: GRANTED, sinceWallMs: 2_000, note: "" },
  ]);
  for (let cut = 0; cut < slot.length; cut += 5) assert.equal(decodeSlot(slot.subarray(0, cut)), undefined, `cut at ${cut}`);
});

test(`${R} lock table: a slot round-trips; a torn slot or garbage is refused and the reader takes the other slot`, () => {
  const t = table([{ seq: 1, owner: A, resource: "\x02r\x00", mode: X, flags: GRANTED }, { seq: 2, owner: B, resource: "\x02r\x00", mode: S, flags: 0 }]);
  t.generation = 7;
  const slot = encodeTable(t);
  const back = decodeSlot(slot)!;
  assert.deepEqual(back.entries, t.entries);
  assert.equal(back.generation, 7);
  assert.deepEqual([...back.owners.keys()], [A, B]);
  for (let cut = 0; cut < slot.length; cut += 7) assert.equal(decodeSlot(slot.subarray(0, cut)), undefined, `cut at ${cut}`);
  const flipped = slot.slice();
  flipped[slot.length - 3]! ^= 1;
  assert.equal(decodeSlot(flipped), undefined, "a flipped bit fails the checksum");

  const world = new SimWorld(1);
  const p = world.process();
  p.mkdir("/d");
  const h = p.open("/d/table", { create: true });
  assert.equal(readTableFrom(h), undefined, "an empty file has no table");
  h.write(slot, (7 % 2) * SLOT_BYTES);
  const next = { ...t, generation: 8, entries: [t.entries[0]!] };
  const torn = encodeTable(next);
  h.write(torn.subarray(0, torn.length - 5), 0); // generation 8 torn in slot 0
  assert.equal(readTableFrom(h)!.generation, 7, "the torn newer slot is skipped");
  h.write(torn, 0);
  assert.equal(readTableFrom(h)!.generation, 8);
  h.close();
});

test(`${R} lock table: settle grants in queue order, keeps FCFS behind incompatible waiters, puts conversions first, and drops dead owners`, () => {
  const t = table([
    { seq: 1, owner: A, resource: "r", mode: S, flags: GRANTED },
    { seq: 2, owner: B, resource: "r", mode: X, flags: 0 },
    { seq: 3, owner: C, resource: "r", mode: IS, flags: 0 }, // compatible with S, not with the earlier X
    { seq: 4, owner: A, resource: "r", mode: X, flags: CONVERSION },
  ]);
  settle(t, 0, () => true);
  assert.deepEqual(t.entries.map((e) => [e.seq, e.flags & GRANTED]), [[1, GRANTED], [2, 0], [3, 0], [4, GRANTED]], "A's conversion goes first; C stays behind B");
  assert.deepEqual(blockersOf(t, t.entries[2]!).map((e) => e.seq), [2, 4]);
  const dead = settle(t, 0, (o) => o !== A);
  assert.deepEqual(dead, [A]);
  assert.deepEqual(t.entries.map((e) => [e.seq, e.flags & GRANTED]), [[2, GRANTED], [3, 0]], "A's entries dropped; B granted, C behind B's X");
});

test(`${R} lock table: a cycle marks exactly the latest-arrived waiting entry as the victim, with the cycle`, () => {
  const t = table([
    { seq: 1, owner: A, resource: "a", mode: X, flags: GRANTED },
    { seq: 2, owner: B, resource: "b", mode: X, flags: GRANTED },
    { seq: 3, owner: C, resource: "c", mode: IX, flags: GRANTED },
    { seq: 4, owner: A, resource: "b", mode: S, flags: 0 },
    { seq: 6, owner: C, resource: "a", mode: IS, flags: 0 },
    { seq: 5, owner: B, resource: "c", mode: S, flags: 0 },
  ]);
  settle(t, 0, () => true);
  const victims = t.entries.filter((e) => e.flags & VICTIM);
  assert.deepEqual(victims.map((e) => e.seq), [6]);
  assert.deepEqual(JSON.parse(victims[0]!.note).map((c: { m: string }) => c.m), ["IS", "S", "S"]);
  assert.ok(t.entries.filter((e) => !(e.flags & (GRANTED | VICTIM))).every((e) => e.seq === 4 || e.seq === 5), "the others still wait");
  settle(t, 0, () => true);
  assert.equal(t.entries.filter((e) => e.flags & VICTIM).length, 1, "settling again finds no new cycle");
  void IS;
});

test(`${R} lock table: a chain of 30,000 owners each waiting for the next (a crafted table) is searched without overflowing the stack, and a cycle at its end is still found`, () => {
  const N = 30_000;
  const owner = (i: number) => i.toString(16).padStart(16, "0");
  const entries: Omit<LockEntry, "sinceWallMs" | "note">[] = [];
  let seq = 1;
  // Owner i holds resource i and waits for resource i+1 (held by owner i+1); the last one
  // waits for resource 0, closing a cycle through all of them.
  for (let i = 0; i < N; i++) entries.push({ seq: seq++, owner: owner(i), resource: `r${i}`, mode: X, flags: GRANTED });
  for (let i = 0; i < N; i++) entries.push({ seq: seq++, owner: owner(i), resource: `r${(i + 1) % N}`, mode: X, flags: 0 });
  const t = table(entries);
  settle(t, 0, () => true);
  const victims = t.entries.filter((e) => e.flags & VICTIM);
  assert.equal(victims.length, 1, "one victim breaks the cycle");
  assert.equal(victims[0]!.seq, seq - 1, "the newest waiting entry is the victim");
});
