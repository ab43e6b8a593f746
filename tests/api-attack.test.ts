/**
 * A careless user and an attacker against a directory store, through the public API as
 * API.md documents it: odd values and keys, options of the wrong type, calls at the wrong
 * time. Each test says what the contract promises and what the store did instead.
 */
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import process from "node:process";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";

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

test(`${R} backup() to a URL (s3://, etcd://) fails with INVALID_ARGUMENT and creates nothing, as open() refuses one; it never copies into a directory named "s3:"`, async () => {
  const dir = tempDir("api");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  // A scheme of this run's own: on the previous code the copy landed in `<scheme>:` under the
  // working directory, which the test removes whatever happens.
  for (const scheme of [`s3-${process.pid}`, `etcd-${process.pid}`, `etcd`]) {
    const dest = `${scheme}://bucket-${process.pid}/backups`;
    try {
      const outcome = await db.backup(dest).then(() => "resolved", (e: unknown) => e);
      assert.ok(outcome instanceof TxtDbError && outcome.code === "INVALID_ARGUMENT", `backup("${dest}") must fail with INVALID_ARGUMENT; got ${outcome instanceof Error ? outcome.message : String(outcome)}`);
      assert.match(outcome.message, /URL/);
      assert.equal(fs.existsSync(`${scheme}:`), false, "nothing is created in the working directory");
    } finally {
      fs.rmSync(`${scheme}:/bucket-${process.pid}`, { recursive: true, force: true });
      try {
        fs.rmdirSync(`${scheme}:`);
      } catch {
        // not there, or not ours (not empty)
      }
    }
  }
  await db.close();
});

test(`${R} a path with a NUL character, to open() or backup(), fails with INVALID_ARGUMENT naming it, not IO: no operating system failed, and nothing is created`, async () => {
  const parent = tempDir("api");
  const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => (e instanceof TxtDbError ? e : e));
  const opened = await codeOf(open(`${parent}/store\0x`));
  assert.ok(opened instanceof TxtDbError && opened.code === "INVALID_ARGUMENT", `open() of a path with a NUL: ${opened instanceof Error ? `${(opened as TxtDbError).code}: ${opened.message}` : String(opened)}`);
  assert.match(opened.message, /NUL/);
  const db = await open(`${parent}/store`, { namespaces: ["ns"] });
  const backedUp = await codeOf(db.backup(`${parent}/copy\0x`));
  assert.ok(backedUp instanceof TxtDbError && backedUp.code === "INVALID_ARGUMENT", `backup() to a path with a NUL: ${backedUp instanceof Error ? `${(backedUp as TxtDbError).code}: ${backedUp.message}` : String(backedUp)}`);
  assert.match(backedUp.message, /NUL/);
  await db.close();
  assert.deepEqual(fs.readdirSync(parent), ["store"], "nothing but the store that was opened");
});

test(`${R} sum() of a number after a sum() of a bigint on the same key in one transaction fails with INVALID_VALUE saying the bigint is that earlier sum, not "a stored bigint" of a key that holds nothing`, async () => {
  const dir = tempDir("api");
  const db = await open(dir, { namespaces: ["ns"] });
  const tx = await db.begin();
  tx.sum("ns", "c", 1n);
  assert.throws(() => tx.sum("ns", "c", 1), (e: unknown) => {
    assert.ok(e instanceof TxtDbError && e.code === "INVALID_VALUE", String(e));
    assert.doesNotMatch(e.message, /stored/, `the key stores nothing: ${e.message}`);
    assert.match(e.message, /earlier sum\(\)/);
    assert.match(e.message, /in "ns"/, "names the namespace, as the commit's own message does");
    return true;
  });
  tx.set("ns", "s", "text");
  assert.throws(() => tx.sum("ns", "s", 1), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_VALUE" && !/stored/.test(e.message) && /set it to, a string/.test(e.message));
  // The failed sums changed nothing: the transaction commits the bigint sum and the set.
  await tx.commit();
  assert.equal(await db.get("ns", "c"), 1n);
  assert.equal(await db.get("ns", "s"), "text");
  await db.close();
});

test(`${R} an array where an options object belongs is INVALID_ARGUMENT everywhere, as set() and list() already said: open, begin, transaction, watch, lock, prepare (an empty array passed as "no options", a non-empty one failed on its key "0")`, async () => {
  const dir = tempDir("api-array-options");
  const rejects = async (what: string, call: () => unknown) => {
    let error: unknown;
    try {
      await call();
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof TxtDbError && error.code === "INVALID_ARGUMENT", `${what}([]): ${String(error)}`);
    assert.match(error.message, /options must be an object.*got an array/, what);
  };
  await rejects("open", () => open(dir, [] as never));
  assert.equal(fs.existsSync(dir) && fs.readdirSync(dir).length > 0, false, "open created nothing");
  const db = await open(dir, { namespaces: ["ns"] });
  try {
    await rejects("begin", () => db.begin([] as never));
    await rejects("transaction", () => db.transaction(() => {}, [] as never));
    await rejects("watch", () => db.watch("ns", { prefix: [] }, [] as never).next());
    await rejects("lock", () => db.lock("r", "X", [] as never));
    const tx = await db.begin();
    tx.set("ns", "k", 1);
    await rejects("prepare", () => tx.prepare("t1", [] as never));
    tx.rollback();
    assert.equal(await db.get("ns", "k"), undefined, "nothing written");
  } finally {
    await db.close();
  }
});
