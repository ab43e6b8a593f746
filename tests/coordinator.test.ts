/**
 * Two-phase commit across stores, in one process on this runtime's real adapter: the
 * Coordinator (src/coordinator.ts) over txtdb stores and other participants, reruns on
 * CONFLICT, aborts everywhere on a failed or late prepare, and the recovery paths: a
 * participant store resolving an in-doubt transaction against the coordinator's log (dead
 * lease, in-doubt timeout, commit decision found), and a coordinator reopened pushing a
 * commit decision its participants had not applied. Crashes of real processes are in
 * twophase-crash.test.ts.
 */
import { assert, runtime, sleep, tempDir, test, waitUntil } from "./harness.ts";
import { Coordinator, open, TxtDbError } from "txtdb";
import type { Database, TwoPhaseParticipant } from "txtdb";

const R = `[${runtime}]`;
const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;

async function stores(): Promise<{ a: Database; b: Database; coordDir: string; dirs: string[] }> {
  const dirs = [tempDir("2pc-a"), tempDir("2pc-b")];
  const a = await open(dirs[0]!, { namespaces: ["acct"] });
  const b = await open(dirs[1]!, { namespaces: ["acct"] });
  return { a, b, coordDir: tempDir("2pc-c"), dirs };
}

/** A participant that keeps its state in memory and records every call. */
function memoryParticipant(name: string, behaviour: { failPrepare?: boolean; hangPrepare?: boolean } = {}) {
  const prepared = new Set<string>();
  const calls: string[] = [];
  const p: TwoPhaseParticipant & { prepared: Set<string>; calls: string[]; committed: string[] } = {
    name,
    prepared,
    calls,
    committed: [],
    prepare: async (txid) => {
      calls.push(`prepare ${txid}`);
      if (behaviour.hangPrepare) await new Promise(() => {});
      if (behaviour.failPrepare) throw new Error(`${name} refuses`);
      prepared.add(txid);
    },
    commit: async (txid) => {
      calls.push(`commit ${txid}`);
      if (prepared.delete(txid)) p.committed.push(txid);
    },
    abort: async (txid) => {
      calls.push(`abort ${txid}`);
      prepared.delete(txid);
    },
    inDoubt: async () => [...prepared],
  };
  return p;
}

async function decisionsOf(coordDir: string): Promise<string[]> {
  const db = await open(coordDir, { readOnly: true });
  try {
    const out: string[] = [];
    for await (const e of db.list<{ outcome: string }>("decisions", { prefix: [] })) out.push(`${String(e.key)}=${e.value.outcome}`);
    return out;
  } finally {
    await db.close();
  }
}

test(`${R} coord.transaction commits in every store or none, returns what fn returned, and leaves no decision behind`, async () => {
  const { a, b, coordDir } = await stores();
  const coord = await Coordinator.open(coordDir);
  await a.set("acct", "alice", 100);
  const r = await coord.transaction([a, b], async (ta, tb) => {
    const v = (await ta.get<number>("acct", "alice"))!;
    ta.set("acct", "alice", v - 10);
    tb.sum("acct", "bob", 10);
    return "moved";
  });
  assert.equal(r, "moved");
  assert.equal(await a.get("acct", "alice"), 90);
  assert.equal(await b.get("acct", "bob"), 10);
  assert.deepEqual(await a.listPrepared(), []);
  assert.deepEqual(await b.listPrepared(), []);
  await assert.rejects(coord.transaction([a, b], (ta, tb) => {
    ta.set("acct", "alice", 0);
    tb.set("acct", "bob", 0);
    throw new Error("changed my mind");
  }), /changed my mind/);
  assert.equal(await a.get("acct", "alice"), 90, "fn threw: nothing written anywhere");
  assert.deepEqual(await a.listPrepared(), []);
  const s = coord.stats();
  assert.equal(s.path, coordDir);
  assert.deepEqual([s.committed, s.aborted, s.retries, s.inFlight, s.unfinished], [1, 1, 0, 0, 0]);
  assert.equal(s.decisionLatencyUs.count, 1, "one transaction reached its decision");
  assert.ok(s.recoveryPasses >= 1, "the pass at open is counted");
  assert.ok((await waitUntil(() => coord.stats().decisionsLogged === 0, 5_000, 5)) >= 0, "the finished decision is deleted lazily");
  await (async () => {
    // A decision written by another handle of the coordinator store counts in decisionsLogged.
    const cdb = await open(coordDir);
    await cdb.set("decisions", "someone-elses", { outcome: "abort", atMs: Date.now(), participants: [], others: [], by: "resolver" });
    await cdb.close();
  })();
  assert.equal(coord.stats().decisionsLogged, 1);
  const m = coord.metrics();
  assert.match(m, /^txtdb_coordinator_committed_total\{store="[^"]+"\} 1$/m, m);
  assert.match(m, /^txtdb_coordinator_aborted_total\{store="[^"]+"\} 1$/m);
  assert.match(m, /^txtdb_coordinator_decisions_logged\{store="[^"]+"\} 1$/m);
  assert.match(m, /^txtdb_coordinator_decision_latency_seconds_count\{store="[^"]+"\} 1$/m);
  await coord.close();
  assert.throws(() => coord.stats(), code("CLOSED"));
  assert.deepEqual(await decisionsOf(coordDir), ["someone-elses=abort"], "finished decisions are deleted");
  await a.close();
  await b.close();
});

test(`${R} concurrent transfers across two stores rerun on CONFLICT and conserve the sum`, async () => {
  const { a, b, coordDir } = await stores();
  const coord = await Coordinator.open(coordDir);
  await a.set("acct", "x", 1000);
  await b.set("acct", "y", 1000);
  let runs = 0;
  const transfers = Array.from({ length: 24 }, (_, i) =>
    coord.transaction([a, b], async (ta, tb) => {
      runs++;
      const x = (await ta.get<number>("acct", "x"))!;
      const y = (await tb.get<number>("acct", "y"))!;
      const amount = (i % 5) + 1;
      ta.set("acct", "x", x - amount);
      tb.set("acct", "y", y + amount);
    }, { maxRetries: 1000 })
  );
  await Promise.all(transfers);
  assert.ok(runs > 24, `reruns happened (${runs} runs)`);
  assert.equal(coord.stats().committed, 24);
  assert.equal(coord.stats().retries, runs - 24, "every rerun is counted");
  const x = (await a.get<number>("acct", "x"))!;
  const y = (await b.get<number>("acct", "y"))!;
  assert.equal(x + y, 2000, "the sum over the stores is conserved");
  assert.equal(y - 1000, Array.from({ length: 24 }, (_, i) => (i % 5) + 1).reduce((s, n) => s + n, 0));
  await coord.close();
  await a.close();
  await b.close();
});

test(`${R} a participant that refuses to prepare aborts the transaction everywhere, other participants included`, async () => {
  const { a, b, coordDir } = await stores();
  const ok = memoryParticipant("ok");
  const no = memoryParticipant("no", { failPrepare: true });
  const coord = await Coordinator.open(coordDir);
  await assert.rejects(coord.transaction([a, ok, b, no], (ta, o, tb, n) => {
    assert.equal(o, ok, "other participants receive themselves");
    assert.equal(n, no);
    ta.set("acct", "k", 1);
    tb.set("acct", "k", 1);
  }), /no refuses/);
  assert.equal(await a.get("acct", "k"), undefined);
  assert.equal(await b.get("acct", "k"), undefined);
  assert.deepEqual(await a.listPrepared(), [], "the prepared store was aborted");
  assert.deepEqual([...ok.prepared], [], "the other participant was aborted");
  assert.ok(ok.calls.some((c) => c.startsWith("abort ")));
  await a.set("acct", "k", 2); // the keys are free again
  await coord.close();
  await a.close();
  await b.close();
});

test(`${R} a prepare slower than prepareTimeoutMs aborts with TIMEOUT; the late store refuses the prepare when it arrives`, async () => {
  const { a, b, coordDir } = await stores();
  const slow = memoryParticipant("slow", { hangPrepare: true });
  const coord = await Coordinator.open(coordDir, { prepareTimeoutMs: 200 });
  const t0 = performance.now();
  await assert.rejects(coord.transaction([a, b, slow], (ta, tb) => {
    ta.set("acct", "k", 1);
    tb.set("acct", "k", 1);
  }), code("TIMEOUT"));
  assert.ok(performance.now() - t0 >= 190);
  assert.deepEqual(await a.listPrepared(), []);
  assert.deepEqual(await b.listPrepared(), []);
  const txid = slow.calls[0]!.slice("prepare ".length);
  const late = await a.begin();
  late.set("acct", "late", 1);
  await assert.rejects(late.prepare(txid), code("INVALID_ARGUMENT"), "the abort fenced the txid");
  await coord.close();
  await a.close();
  await b.close();
});

test(`${R} other participants get commit after a durable decision; timeoutMs and signal end a transaction before it with TIMEOUT`, async () => {
  const { a, b, coordDir } = await stores();
  const mail = memoryParticipant("mail");
  const coord = await Coordinator.open(coordDir, { participants: [mail] });
  await coord.transaction([a, mail], (ta) => ta.set("acct", "m", 1));
  assert.equal(mail.committed.length, 1);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(coord.transaction([a, b], (ta) => ta.set("acct", "n", 1), { signal: ac.signal }), code("TIMEOUT"));
  await assert.rejects(coord.transaction([a, b], async (ta) => {
    await sleep(300);
    ta.set("acct", "n", 1);
  }, { timeoutMs: 50 }), code("TIMEOUT"));
  assert.equal(await a.get("acct", "n"), undefined);
  assert.deepEqual(await a.listPrepared(), []);
  await coord.close();
  await a.close();
  await b.close();
});

test(`${R} bad arguments to the coordinator fail with INVALID_ARGUMENT, READ_ONLY or CLOSED`, async () => {
  const { a, b, coordDir, dirs } = await stores();
  await assert.rejects(Coordinator.open(""), code("INVALID_ARGUMENT"));
  await assert.rejects(Coordinator.open(coordDir, { prepareTimeoutMs: -1 }), code("INVALID_ARGUMENT"));
  await assert.rejects(Coordinator.open(coordDir, { participants: [{ prepare: async () => {} } as unknown as TwoPhaseParticipant] }), code("INVALID_ARGUMENT"));
  const coord = await Coordinator.open(coordDir);
  await assert.rejects(coord.transaction([], () => {}), code("INVALID_ARGUMENT"));
  await assert.rejects(coord.transaction([a, a], () => {}), code("INVALID_ARGUMENT"));
  const a2 = await open(dirs[0]!);
  await assert.rejects(coord.transaction([a, a2], () => {}), code("INVALID_ARGUMENT"), "the same store through two handles");
  await assert.rejects(coord.transaction([a, {} as TwoPhaseParticipant], () => {}), code("INVALID_ARGUMENT"));
  await assert.rejects(coord.transaction([a, b], "nope" as unknown as () => void), code("INVALID_ARGUMENT"));
  await assert.rejects(coord.transaction([a, b], () => {}, { maxRetries: -1 }), code("INVALID_ARGUMENT"));
  const ro = await open(dirs[1]!, { readOnly: true });
  await assert.rejects(coord.transaction([a, ro], () => {}), code("READ_ONLY"));
  await coord.close();
  await coord.close();
  await assert.rejects(coord.transaction([a, b], () => {}), code("CLOSED"));
  for (const db of [a, a2, b, ro]) await db.close();
});

test(`${R} a participant store resolves an in-doubt transaction whose coordinator process is dead: abort recorded in the coordinator's log first`, async () => {
  const { a, coordDir } = await stores();
  const coord = await Coordinator.open(coordDir);
  const reader = await open(coordDir, { readOnly: true });
  const id = await reader.get<string>("coordinator", "id");
  await reader.close();
  await coord.close();
  const tx = await a.begin();
  tx.set("acct", "orphan", 1);
  // A coordinator process that died: its lease file is gone (or unlocked).
  await tx.prepare("dead-1", { coordinator: { path: coordDir, id: id!, lease: "0000000000000000.lease" }, inDoubtTimeoutMs: 3_600_000 });
  assert.ok(await waitUntil(() => a.stats().prepared === 0, 10_000, 20) >= 0, "resolved without waiting for the in-doubt timeout");
  assert.equal(await a.get("acct", "orphan"), undefined);
  assert.deepEqual(await decisionsOf(coordDir), ["dead-1=abort"]);
  assert.equal(a.stats().inDoubtResolved, 1);
  await a.close();
});

test(`${R} a participant store applies a commit decision it finds, and resolves a live coordinator's transaction after the in-doubt timeout`, async () => {
  const { a, b, coordDir } = await stores();
  const coord = await Coordinator.open(coordDir, { recoverIntervalMs: 0 });
  const cdb = await open(coordDir);
  const id = (await cdb.get<string>("coordinator", "id"))!;
  const lease = (await import("txtdb/internal")).databaseInternals(cdb).leaseFile!; // a live lease: this process's
  await cdb.set("decisions", "decided", { outcome: "commit", atMs: Date.now(), participants: [], others: [], by: "coordinator" });
  const t1 = await a.begin();
  t1.set("acct", "c", "committed by the log");
  await t1.prepare("decided", { coordinator: { path: coordDir, id, lease }, inDoubtTimeoutMs: 200 });
  const t2 = await b.begin();
  t2.set("acct", "d", "never decided");
  const t0 = performance.now();
  await t2.prepare("undecided", { coordinator: { path: coordDir, id, lease }, inDoubtTimeoutMs: 300 });
  assert.ok(await waitUntil(() => a.stats().prepared === 0 && b.stats().prepared === 0, 10_000, 20) >= 0);
  assert.ok(performance.now() - t0 >= 290, "a live coordinator's transaction waits for the in-doubt timeout");
  assert.equal(await a.get("acct", "c"), "committed by the log");
  assert.equal(await b.get("acct", "d"), undefined);
  assert.deepEqual((await decisionsOf(coordDir)).sort(), ["decided=commit", "undecided=abort"]);
  await cdb.close();
  await coord.close();
  await a.close();
  await b.close();
});

test(`${R} a resolver never takes another directory for the coordinator: a wrong identity or a missing store leaves the transaction in doubt`, async () => {
  const { a, coordDir } = await stores();
  const coord = await Coordinator.open(coordDir);
  await coord.close();
  const t1 = await a.begin();
  t1.set("acct", "x", 1);
  await t1.prepare("wrong-id", { coordinator: { path: coordDir, id: "not-its-id", lease: "0000000000000000.lease" } });
  const t2 = await a.begin();
  t2.set("acct", "y", 1);
  await t2.prepare("no-store", { coordinator: { path: `${coordDir}-missing`, id: "x", lease: "0000000000000000.lease" } });
  await sleep(800);
  assert.deepEqual((await a.listPrepared()).map((p) => p.txid).sort(), ["no-store", "wrong-id"]);
  assert.deepEqual(await decisionsOf(coordDir), [], "nothing was recorded in the wrong store");
  await a.abortPrepared("wrong-id");
  await a.abortPrepared("no-store");
  await a.close();
});

test(`${R} a reopened coordinator pushes a commit decision its participants had not applied, and decides other participants' in-doubt transactions`, async () => {
  const { a, b, coordDir, dirs } = await stores();
  const coord = await Coordinator.open(coordDir, { recoverIntervalMs: 0 });
  const cdb = await open(coordDir);
  const id = (await cdb.get<string>("coordinator", "id"))!;
  const lease = (await import("txtdb/internal")).databaseInternals(cdb).leaseFile!;
  for (const [db, key] of [[a, "p"], [b, "q"]] as const) {
    const tx = await db.begin();
    tx.set("acct", key, "after recovery");
    await tx.prepare("crashed-after-decision", { coordinator: { path: coordDir, id, lease }, inDoubtTimeoutMs: 3_600_000 });
  }
  await cdb.set("decisions", "crashed-after-decision", { outcome: "commit", atMs: Date.now(), participants: dirs, others: [], by: "coordinator" });
  await cdb.close();
  await coord.close();
  const mail = memoryParticipant("mail");
  mail.prepared.add(`${id}.${"ab".repeat(8)}.1.00000000`); // a txid of this coordinator's process that is gone, undecided
  mail.prepared.add("foreign-txid"); // not of this coordinator's making: left alone
  mail.prepared.add(`${"cd".repeat(12)}.${"ab".repeat(8)}.1.00000000`); // another coordinator's, whose process is gone: left to it
  const again = await Coordinator.open(coordDir, { participants: [mail], recoverIntervalMs: 0 });
  assert.equal(await a.get("acct", "p"), "after recovery");
  assert.equal(await b.get("acct", "q"), "after recovery");
  assert.deepEqual(await a.listPrepared(), []);
  assert.deepEqual([...mail.prepared], ["foreign-txid", `${"cd".repeat(12)}.${"ab".repeat(8)}.1.00000000`]);
  const st = again.stats();
  assert.deepEqual([st.recoveryPasses, st.recoveredCommitted, st.recoveredAborted], [1, 1, 1], "the pass at open pushed one commit and aborted one");
  assert.deepEqual([st.committed, st.aborted], [0, 0]);
  assert.deepEqual((await decisionsOf(coordDir)).sort(), [`${id}.${"ab".repeat(8)}.1.00000000=abort`]);
  await again.close();
  await a.close();
  await b.close();
});

test(`${R} a coordinator and stores opened by relative paths are recorded by absolute paths (a prepare's coordinator, a decision's stores), for processes in other working directories`, async () => {
  const { relative } = await import("node:path");
  const cwd = (globalThis as { Deno?: { cwd(): string } }).Deno?.cwd() ?? (await import("node:process")).cwd();
  const rel = (p: string) => relative(cwd, p);
  const dirs = [tempDir("2pc-rel-a"), tempDir("2pc-rel-b")];
  const coordDir = tempDir("2pc-rel-c");
  assert.ok(!rel(coordDir).startsWith("/"), `a relative path: ${rel(coordDir)}`);
  const a = await open(`./${rel(dirs[0]!)}/`, { namespaces: ["acct"] });
  const b = await open(rel(dirs[1]!), { namespaces: ["acct"] });
  const coord = await Coordinator.open(`${rel(coordDir)}/.`, { recoverIntervalMs: 0 });
  assert.equal(coord.path, coordDir, "the coordinator's path is absolute and normal");
  // A participant that never confirms the commit leaves the decision in the log, naming the stores.
  let prepared!: () => void;
  const inPrepare = new Promise<void>((r) => (prepared = r));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow: TwoPhaseParticipant = {
    name: "slow",
    prepare: async () => {
      prepared();
      await gate;
    },
    commit: async () => {},
    abort: async () => {},
    inDoubt: async () => [],
  };
  const done = coord.transaction([a, b, slow], (ta, tb) => {
    ta.set("acct", "x", 1);
    tb.set("acct", "y", 1);
  });
  await inPrepare;
  let inA = await a.listPrepared();
  for (let i = 0; i < 1000 && inA.length === 0; i++) inA = (await sleep(5), await a.listPrepared()); // the stores prepare alongside

  assert.equal(inA.length, 1);
  assert.equal(inA[0]!.coordinator, coordDir, "the prepare names the coordinator by its absolute path");
  release();
  await done;
  await coord.close();
  assert.equal(await a.get("acct", "x"), 1);
  // A commit decision written now names the stores by absolute paths.
  const coord2 = await Coordinator.open(rel(coordDir), { recoverIntervalMs: 0 });
  const failing: TwoPhaseParticipant = { name: "f", prepare: async () => {}, commit: async () => { throw new Error("not now"); }, abort: async () => {}, inDoubt: async () => [] };
  await coord2.transaction([a, failing], (ta) => ta.set("acct", "z", 1));
  const log = await open(coordDir, { readOnly: true });
  const decisions: { participants: string[] }[] = [];
  for await (const e of log.list<{ participants: string[] }>("decisions", { prefix: [] })) decisions.push(e.value);
  await log.close();
  assert.deepEqual(decisions.map((d) => d.participants), [[dirs[0]]], "the decision names the store by its absolute path");
  await coord2.close();
  await a.close();
  await b.close();
});
