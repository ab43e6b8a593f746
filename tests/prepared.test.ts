/**
 * Two-phase commit, participant side (src/prepared.ts, src/participant.ts): tx.prepare,
 * commitPrepared, abortPrepared, listPrepared on this runtime's real adapter, with two
 * handles of one store (two open file descriptions: as two processes). Prepared keys block
 * other writers, never readers; decisions are idempotent; prepared transactions survive
 * compaction and reopening; the store moves to format 3 on its first prepare.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";

const R = `[${runtime}]`;
const code = (c: string, check?: (e: TxtDbError) => void) => (e: unknown) => {
  if (!(e instanceof TxtDbError) || e.code !== c) return false;
  check?.(e);
  return true;
};
const preparedBy = (txid: string) => code("CONFLICT", (e) => assert.equal(e.details?.preparedBy, txid));

async function two(opts: Parameters<typeof open>[1] = {}): Promise<{ a: Database; b: Database; dir: string }> {
  const dir = tempDir("prep");
  const a = await open(dir, { namespaces: ["ns", "other"], ...opts });
  const b = await open(dir, opts);
  return { a, b, dir };
}

/** The format in the manifest on disk, as a fresh read-only handle reads it. */
async function manifestFormat(dir: string): Promise<number> {
  const ro = await open(dir, { readOnly: true });
  try {
    return ro.stats().format;
  } finally {
    await ro.close();
  }
}

test(`${R} prepare() hides the writes until commitPrepared() makes them visible at a new version, in every handle`, async () => {
  const { a, b, dir } = await two();
  await a.set("ns", "x", 1);
  assert.equal(await manifestFormat(dir), 2, "a store that never prepared stays at format 2");
  const tx = await a.begin();
  tx.set("ns", "x", 2);
  tx.sum("ns", "n", 5);
  await tx.prepare("t1");
  assert.equal(await manifestFormat(dir), 3, "the first prepare moves the store to format 3");
  assert.equal(a.stats().format, 3);
  assert.equal(await a.get("ns", "x"), 1, "prepared writes are invisible");
  assert.equal(await b.get("ns", "n"), undefined);
  const snap = await b.snapshot();
  const { version } = await b.commitPrepared("t1");
  assert.equal(await a.get("ns", "x"), 2);
  assert.equal(await a.get("ns", "n"), 5);
  assert.equal((await b.getEntry("ns", "x"))!.version, version);
  assert.equal(await snap.get("ns", "x"), 1, "a snapshot taken before the decision never sees it");
  snap.release();
  assert.deepEqual(await a.commitPrepared("t1"), { version }, "a second commit returns the first's version");
  await assert.rejects(a.abortPrepared("t1"), code("NOT_PREPARED", (e) => {
    assert.equal(e.details?.state, "committed");
    assert.equal(e.details?.version, version);
  }));
  assert.deepEqual(await a.listPrepared(), []);
  await a.close();
  await b.close();
});

test(`${R} a prepared transaction blocks every other writer of a key it wrote or read, and of a range it read; readers see the committed version`, async () => {
  const { a, b } = await two();
  for (const k of ["w", "r", "q1", "q5", "free"]) await a.set("ns", k, 0);
  const tx = await a.begin();
  await tx.get("ns", "r");
  for await (const _ of tx.list("ns", { start: "q", end: "r" })) { /* a range read */ }
  tx.set("ns", "w", 1);
  await tx.prepare("t2");
  const blocked: [string, () => Promise<unknown>][] = [
    ["db.set of a written key", () => b.set("ns", "w", 9)],
    ["db.delete of a written key", () => b.delete("ns", "w")],
    ["db.set of a read key", () => b.set("ns", "r", 9)],
    ["an insert into a read range", () => b.set("ns", "q3", 9)],
    ["a sum on a written key", () => b.transaction((t) => t.sum("ns", "w", 1), { maxRetries: 0 })],
    ["a snapshot-isolation write", () => b.transaction((t) => t.set("ns", "w", 3), { isolation: "snapshot", maxRetries: 0 })],
    ["a drop of its namespace", () => b.dropNamespace("ns")],
  ];
  for (const [what, write] of blocked) await assert.rejects(write(), preparedBy("t2"), what);
  assert.equal(await b.get("ns", "w"), 0, "readers are not blocked: they see the committed version");
  const reader = await b.begin();
  assert.equal(await reader.get("ns", "w"), 0);
  assert.deepEqual(await reader.commit(), { version: reader.readVersion }, "a read-only transaction commits");
  await b.set("ns", "free", 1); // keys it did not touch are free
  await b.set("other", "w", 1); // the same key in another namespace too
  await b.abortPrepared("t2");
  await b.abortPrepared("t2"); // idempotent
  assert.equal(await a.get("ns", "w"), 0, "an aborted transaction's writes never appear");
  await b.set("ns", "w", 9);
  await b.set("ns", "q3", 9);
  await assert.rejects(a.commitPrepared("t2"), code("NOT_PREPARED", (e) => assert.equal(e.details?.state, "aborted")));
  await a.close();
  await b.close();
});

test(`${R} prepare() validates like commit(), and against other prepared transactions`, async () => {
  const { a, b } = await two();
  await a.set("ns", "k", 1);
  const stale = await a.begin();
  assert.equal(await stale.get("ns", "k"), 1);
  stale.set("ns", "j", 1);
  await b.set("ns", "k", 2);
  await assert.rejects(stale.prepare("late"), code("CONFLICT"), "a key read changed since readVersion");
  const first = await a.begin();
  first.set("ns", "k", 3);
  await first.prepare("p1");
  const second = await b.begin();
  second.set("ns", "k", 4);
  await assert.rejects(second.prepare("p2"), preparedBy("p1"), "a second prepare of a prepared key");
  const reader = await b.begin();
  await reader.get("ns", "k");
  reader.set("ns", "elsewhere", 1);
  await assert.rejects(reader.prepare("p3"), preparedBy("p1"), "a prepare that read a key another prepared transaction writes");
  const checker = await b.begin();
  checker.check("ns", "k", (await b.getEntry("ns", "k"))!.version);
  await assert.rejects(checker.prepare("p4"), preparedBy("p1"), "a prepare that checks such a key");
  await a.commitPrepared("p1");
  assert.equal(await b.get("ns", "k"), 3);
  await a.close();
  await b.close();
});

test(`${R} sums in a prepared transaction are computed at prepare time, and the key stays frozen until the decision`, async () => {
  const { a, b } = await two();
  await a.set("ns", "acct", 100);
  const tx = await a.begin();
  tx.sum("ns", "acct", -30);
  await tx.prepare("s1");
  await assert.rejects(b.transaction((t) => t.sum("ns", "acct", 1), { maxRetries: 0 }), preparedBy("s1"));
  await b.commitPrepared("s1");
  assert.equal(await a.get("ns", "acct"), 70);
  await a.close();
  await b.close();
});

test(`${R} an unknown txid: commitPrepared fails with NOT_PREPARED, abortPrepared is recorded and refuses a later prepare`, async () => {
  const { a, b } = await two();
  await assert.rejects(a.commitPrepared("nobody"), code("NOT_PREPARED", (e) => assert.equal(e.details?.state, "unknown")));
  await a.abortPrepared("fenced");
  const tx = await b.begin();
  tx.set("ns", "k", 1);
  await assert.rejects(tx.prepare("fenced"), code("INVALID_ARGUMENT", (e) => assert.equal(e.details?.state, "aborted")));
  assert.equal(await a.get("ns", "k"), undefined);
  const again = await b.begin();
  again.set("ns", "k", 1);
  await again.prepare("dup");
  const dup = await a.begin();
  dup.set("ns", "other-key", 1);
  await assert.rejects(dup.prepare("dup"), code("INVALID_ARGUMENT", (e) => assert.equal(e.details?.state, "prepared")), "a txid already prepared");
  await a.abortPrepared("dup");
  await a.close();
  await b.close();
});

test(`${R} bad arguments to the participant protocol fail with INVALID_ARGUMENT or READ_ONLY, and nothing is written`, async () => {
  const { a, b, dir } = await two();
  const bad: unknown[] = [undefined, null, "", 42, {}, "x".repeat(201), "\ud800"];
  for (const txid of bad) {
    const tx = await a.begin();
    tx.set("ns", "k", 1);
    await assert.rejects(tx.prepare(txid as string), code("INVALID_ARGUMENT"), `txid ${String(txid).slice(0, 20)}`);
    await assert.rejects(a.commitPrepared(txid as string), code("INVALID_ARGUMENT"));
    await assert.rejects(a.abortPrepared(txid as string), code("INVALID_ARGUMENT"));
  }
  const withOptions = await a.begin();
  withOptions.set("ns", "k", 1);
  await assert.rejects(withOptions.prepare("o", { inDoubtTimeoutMs: -1 }), code("INVALID_ARGUMENT"));
  const withCoordinator = await a.begin();
  withCoordinator.set("ns", "k", 1);
  await assert.rejects(withCoordinator.prepare("o", { coordinator: { path: "", id: "x", lease: "y" } }), code("INVALID_ARGUMENT"));
  const done = await a.begin();
  done.set("ns", "k", 1);
  await done.prepare("once");
  await assert.rejects(done.commit(), code("INVALID_ARGUMENT"), "a prepared transaction cannot also commit");
  await assert.rejects(done.prepare("twice"), code("INVALID_ARGUMENT"));
  await a.abortPrepared("once");
  assert.equal(await b.get("ns", "k"), undefined, "nothing of the refused calls was written");
  const ro = await open(dir, { readOnly: true });
  const rtx = await ro.begin();
  await assert.rejects(rtx.prepare("ro"), code("READ_ONLY"));
  await assert.rejects(ro.commitPrepared("x"), code("READ_ONLY"));
  await assert.rejects(ro.abortPrepared("x"), code("READ_ONLY"));
  assert.deepEqual(await ro.listPrepared(), []);
  await ro.close();
  await a.close();
  await assert.rejects(a.commitPrepared("x"), code("CLOSED"));
  await assert.rejects(a.listPrepared(), code("CLOSED"));
  await b.close();
});

test(`${R} listPrepared() and stats() show undecided prepared transactions from every handle`, async () => {
  const { a, b } = await two();
  const tx = await a.begin();
  tx.set("ns", ["order", 42], { item: "x" });
  tx.delete("ns", "gone");
  await tx.prepare("l1", { inDoubtTimeoutMs: 3_600_000 });
  const [p, ...rest] = await b.listPrepared();
  assert.equal(rest.length, 0);
  assert.equal(p!.txid, "l1");
  assert.equal(p!.coordinator, null);
  assert.equal(p!.inDoubt, false);
  assert.ok(p!.ageMs >= 0 && p!.ageMs < 60_000);
  assert.equal(typeof p!.preparedAtMs, "number");
  assert.deepEqual(p!.keys.map((k) => k.ns).sort(), ["ns", "ns"]);
  assert.deepEqual(p!.keys.map((k) => k.key).sort(), ["gone", ["order", 42]].sort());
  const s = b.stats();
  assert.equal(s.prepared, 1);
  assert.equal(s.inDoubt, 0);
  assert.equal(a.stats().preparesMade, 1);
  await b.commitPrepared("l1");
  assert.equal(b.stats().preparedCommitted, 1);
  assert.equal(b.stats().prepared, 0);
  assert.match(b.metrics(), /^txtdb_prepared\{[^}]*\} 0$/m);
  assert.match(b.metrics(), /^txtdb_prepared_committed_total\{[^}]*\} 1$/m);
  await a.close();
  await b.close();
});

test(`${R} undecided prepared transactions survive compaction and reopening; decided ones stay decided`, async () => {
  const dir = tempDir("prepc");
  const opts = { segmentBytes: 4096, autoCompactBytes: 0 };
  let db = await open(dir, { namespaces: ["ns"], ...opts });
  const tx = await db.begin();
  tx.set("ns", "held", "prepared value");
  await tx.prepare("keep");
  const done = await db.begin();
  done.set("ns", "c", "committed");
  await done.prepare("done");
  const { version: doneVersion } = await db.commitPrepared("done");
  for (let i = 0; i < 200; i++) await db.set("ns", ["fill", i], "x".repeat(100)); // several segments
  const r = await db.compact();
  assert.ok(r.segmentsFolded > 0 && r.checkpointVersion > doneVersion, "the fold passed both prepare records");
  assert.equal((await db.listPrepared()).length, 1);
  await assert.rejects(db.set("ns", "held", 1), preparedBy("keep"), "still blocking after the fold");
  await db.close();
  db = await open(dir, opts);
  assert.deepEqual((await db.listPrepared()).map((p) => p.txid), ["keep"], "carried by the manifest across a reopen");
  await assert.rejects(db.set("ns", "held", 1), preparedBy("keep"));
  assert.deepEqual(await db.commitPrepared("done"), { version: doneVersion }, "the decision was carried too");
  assert.equal(await db.get("ns", "c"), "committed");
  const { version } = await db.commitPrepared("keep");
  assert.equal(await db.get("ns", "held"), "prepared value");
  await db.compact();
  await db.close();
  db = await open(dir, opts);
  assert.deepEqual(await db.listPrepared(), []);
  assert.deepEqual(await db.commitPrepared("keep"), { version });
  assert.ok((await db.check()).ok);
  await db.close();
});

test(`${R} check() is clean and a fresh reader rebuilds the same state after prepares and decisions of every kind`, async () => {
  const { a, b, dir } = await two();
  for (let i = 0; i < 20; i++) {
    const tx = await a.begin();
    tx.set("ns", ["k", i], i);
    await tx.prepare(`c${i}`);
    if (i % 3 === 0) await b.abortPrepared(`c${i}`);
    else if (i % 3 === 1) await b.commitPrepared(`c${i}`);
  }
  const report = await a.check();
  assert.ok(report.ok, JSON.stringify(report.problems));
  const fresh = await open(dir, { readOnly: true });
  assert.deepEqual((await fresh.listPrepared()).map((p) => p.txid), (await a.listPrepared()).map((p) => p.txid));
  assert.equal((await fresh.listPrepared()).length, 6);
  for (let i = 0; i < 20; i++) assert.equal(await fresh.get("ns", ["k", i]), i % 3 === 1 ? i : undefined);
  await fresh.close();
  for (const p of await a.listPrepared()) await a.abortPrepared(p.txid);
  await a.close();
  await b.close();
});

test(`${R} another handle's compaction carries a prepared transaction: its keys stay blocked, a fresh handle sees it, and its decision applies after the fold`, async () => {
  const dir = tempDir("prepx");
  const opts = { segmentBytes: 4096, autoCompactBytes: 0 };
  const a = await open(dir, { namespaces: ["ns"], ...opts });
  const b = await open(dir, opts);
  const tx = await a.begin();
  tx.set("ns", "held", "v");
  for await (const _ of tx.list("ns", { prefix: ["range"] })) { /* a range read */ }
  await tx.prepare("across");
  for (let i = 0; i < 200; i++) await b.set("ns", ["fill", i], "x".repeat(100));
  await a.get("ns", "held"); // a read moves a's published pin to the head, so b's fold may pass the prepare
  const r = await b.compact();
  assert.ok(r.segmentsFolded > 0 && r.checkpointVersion > (await b.listPrepared())[0]!.version, "b's fold passed a's prepare record");
  const fresh = await open(dir, opts);
  assert.deepEqual((await fresh.listPrepared()).map((p) => p.txid), ["across"]);
  await assert.rejects(fresh.set("ns", ["range", 1], 1), preparedBy("across"), "the range it read is still held after the fold");
  await assert.rejects(a.set("ns", "held", 1), preparedBy("across"));
  await fresh.commitPrepared("across");
  assert.equal(await b.get("ns", "held"), "v");
  for (const db of [a, b, fresh]) {
    assert.ok((await db.check()).ok);
    await db.close();
  }
});

test(`${R} a transaction that enqueues queue messages cannot be prepared (its messages are decided at commit); nothing of it is written`, async () => {
  const dir = tempDir("prep");
  const db = await open(dir, { namespaces: ["ns"] });
  const tx = await db.begin();
  tx.set("ns", "k", 1);
  tx.enqueue("jobs", { n: 1 });
  await assert.rejects(tx.prepare("with-a-message"), code("INVALID_ARGUMENT", (e) => assert.match(e.message, /enqueue/)));
  tx.rollback();
  assert.equal(await db.get("ns", "k"), undefined);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  assert.deepEqual(await db.listPrepared(), []);
  await db.close();
});

test(`${R} a prepare that read a namespace it found missing is NAMESPACE_NOT_FOUND and prepares nothing: a prepared transaction cannot hold the absence, so another process's creation of it meanwhile would go unseen`, async () => {
  const { a, b } = await two();
  const tx = await a.begin();
  await assert.rejects(tx.get("ghost", "k"), code("NAMESPACE_NOT_FOUND"));
  tx.set("ns", "saw-no-ghost", true);
  await assert.rejects(tx.prepare("p-ghost"), code("NAMESPACE_NOT_FOUND", (e) => assert.equal(e.details?.ns, "ghost")));
  assert.deepEqual(await a.listPrepared(), []);
  await b.createNamespace("ghost");
  await b.set("ghost", "k", 1);
  assert.equal(await a.get("ns", "saw-no-ghost"), undefined, "nothing was prepared or committed");
  // Snapshot isolation also validates touched namespaces: the same refusal.
  const snap = await a.begin({ isolation: "snapshot" });
  await assert.rejects(snap.get("ghost2", "k"), code("NAMESPACE_NOT_FOUND"));
  snap.set("ns", "x", 1);
  await assert.rejects(snap.prepare("p-ghost2"), code("NAMESPACE_NOT_FOUND"));
  // A read of a namespace that exists prepares as before.
  const ok = await a.begin();
  assert.equal(await ok.get("ghost", "k"), 1);
  ok.set("ns", "saw-ghost", true);
  await ok.prepare("p-ok");
  await a.commitPrepared("p-ok");
  assert.equal(await b.get("ns", "saw-ghost"), true);
  await a.close();
  await b.close();
});
