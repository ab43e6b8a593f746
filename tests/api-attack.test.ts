/**
 * A careless user and an attacker against a directory store, through the public API as
 * API.md documents it: odd values and keys, options of the wrong type, calls at the wrong
 * time. Each test says what the contract promises and what the store did instead.
 */
import { Buffer } from "node:buffer";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

const R = `[${runtime}]`;

test(`${R} a Buffer value reads back as a Uint8Array from every process and every path, never as a Buffer in the writing process only`, async () => {
  const dir = tempDir("api");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "b", Buffer.from("abc"));
  await db.set("ns", "o", { b: Buffer.from("xyz"), m: new Map([["k", Buffer.from("m")]]) });
  const kinds = async (d: typeof db, where: string) => {
    const b = await d.get<Uint8Array>("ns", "b");
    const o = await d.get<{ b: Uint8Array; m: Map<string, Uint8Array> }>("ns", "o");
    const listed = [];
    for await (const e of d.list<unknown>("ns", { prefix: [] })) listed.push(e.value);
    const snap = await d.snapshot();
    const fromSnap = await snap.get<Uint8Array>("ns", "b");
    snap.release();
    for (const [what, v] of [["get", b], ["get (in an object)", o!.b], ["get (in a Map)", o!.m.get("k")], ["list", listed[0]], ["snapshot", fromSnap]] as const) {
      assert.equal((v as object).constructor, Uint8Array, `${where}, ${what}: a Uint8Array, as every other process reads it`);
    }
    assert.deepEqual([...b!], [97, 98, 99]);
    assert.deepEqual([...o!.b], [120, 121, 122]);
  };
  await kinds(db, "the writing process");
  await db.close();
  const again = await open(dir);
  await kinds(again, "reopened");
  await again.close();
});
