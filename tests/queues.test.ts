/**
 * Queues in one process (every runtime): enqueue and delivery, delays, dedupe windows,
 * retries and the dead list, retryDead, queueStats, tx.enqueue committed, rolled back and
 * rerun after a conflict, concurrency, two handles on one queue, the visibility timeout,
 * stopping by signal and by close() while handlers run, the reserved namespace, and bad
 * arguments. Across processes: queues-multiprocess.test.ts.
 */
import { assert, canSpawn, sleep, tempDir, test, waitUntil } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, QueueMessage } from "txtdb";

function code(e: unknown): string | undefined {
  return e instanceof TxtDbError ? e.code : undefined;
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), expected: string, what: string): Promise<void> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    assert.equal(code(e), expected, `${what}: ${String(e)}`);
    assert.ok((e as Error).message.length > 10, `${what}: a message that says what was wrong`);
    return;
  }
  assert.fail(`${what}: no error`);
}

/** Listens until `count` messages were handled; returns them. */
async function collect(db: Database, queue: string, count: number, opts: { concurrency?: number; retryDelayMs?: number; maxAttempts?: number } = {}, onMessage?: (v: unknown, m: QueueMessage) => unknown): Promise<{ value: unknown; msg: QueueMessage }[]> {
  const got: { value: unknown; msg: QueueMessage }[] = [];
  const stop = new AbortController();
  const listening = db.listenQueue(queue, async (value, msg) => {
    await onMessage?.(value, msg);
    got.push({ value, msg });
    if (got.length >= count) stop.abort();
  }, { ...opts, signal: stop.signal });
  const waited = await waitUntil(() => got.length >= count, 30_000, 2);
  stop.abort();
  await listening;
  assert.ok(waited >= 0, `only ${got.length} of ${count} messages arrived`);
  return got;
}

test("enqueue() delivers the value (a copy: later changes to the original do not reach it) with its id, attempt and queue", async () => {
  const db = await open(tempDir("q-basic"));
  const value = { to: "a@b.c", n: [1, 2], when: new Date(5), big: 10n };
  const r = await db.enqueue("jobs", value);
  assert.equal(typeof r.id, "string");
  assert.equal(r.deduplicated, false);
  assert.equal(typeof r.version, "bigint");
  value.n.push(3);
  assert.deepEqual(db.queueStats("jobs"), { ready: 1, delayed: 0, running: 0, dead: 0 });
  const [got] = await collect(db, "jobs", 1);
  assert.deepEqual(got!.value, { to: "a@b.c", n: [1, 2], when: new Date(5), big: 10n });
  assert.equal(got!.msg.id, r.id);
  assert.equal(got!.msg.attempt, 1);
  assert.equal(got!.msg.queue, "jobs");
  assert.equal(typeof got!.msg.enqueuedAtMs, "number");
  await sleep(20);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  assert.deepEqual(db.queueStats("other"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
});

test("a handler is called as soon as its claim is written, before the claim's sync (the claim's durability is not waited for)", async () => {
  const { withFaults } = await import("txtdb/adapters/faults");
  const { defaultPlatform } = await import("txtdb/internal");
  const base = await defaultPlatform();
  const dir = tempDir("q-early");
  // What the listener's handle does, in order, once the message is waiting: its log syncs
  // and the handler's call.
  const events: string[] = [];
  let recording = false;
  const watched = withFaults(base, (step, path) => {
    if (recording && step === "beforeFsync" && path.endsWith(".log")) events.push("sync");
  });
  const listenerDb = await open(dir, { adapter: watched });
  const producer = await open(dir);
  await producer.enqueue("jobs", "warm-up"); // the queues' namespace exists before recording starts
  await collect(listenerDb, "jobs", 1);
  await producer.enqueue("jobs", "timed");
  recording = true;
  await collect(listenerDb, "jobs", 1, {}, () => void events.push("handler"));
  recording = false;
  assert.equal(events[0], "handler", `the handler came first; events: ${events.join(", ")}`);
  assert.ok(events.includes("sync"), `the claim was synced after: ${events.join(", ")}`);
  await producer.close();
  await listenerDb.close();
});

test("a handler's synchronous start (run as its claim is written, before the claim's sync) may enqueue, write and stop its own listener: everything lands and the listener resolves", async () => {
  const db = await open(tempDir("q-sync-start"), { namespaces: ["ns"] });
  await db.enqueue("jobs", 0);
  const stop = new AbortController();
  const seen: number[] = [];
  const writes: Promise<unknown>[] = [];
  const listening = db.listenQueue<number>("jobs", (n) => {
    // All synchronous: nothing here is awaited before the handler returns.
    seen.push(n);
    writes.push(db.set("ns", ["handled", n], true));
    if (n < 5) writes.push(db.enqueue("jobs", n + 1));
    else stop.abort();
  }, { signal: stop.signal });
  assert.ok(await waitUntil(() => seen.length >= 6, 20_000, 2) >= 0, `handled ${seen.join(", ")}`);
  await listening;
  await Promise.all(writes);
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  for (let n = 0; n <= 5; n++) assert.equal(await db.get("ns", ["handled", n]), true, `write of handler ${n}`);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
});

test("queues live apart from namespaces: never listed, counted, read, written, watched or created by users", async () => {
  const db = await open(tempDir("q-ns"), { namespaces: ["a"] });
  await db.enqueue("jobs", 1);
  assert.deepEqual(await db.listNamespaces(), ["a"]);
  assert.equal(db.stats().namespaces, 1);
  const reserved = "\u0000txtdb.queues";
  await rejectsWith(db.get(reserved, ["r"]), "INVALID_ARGUMENT", "get");
  await rejectsWith(db.count(reserved, { prefix: [] }), "INVALID_ARGUMENT", "count");
  await rejectsWith(db.set(reserved, "k", 1), "INVALID_ARGUMENT", "set");
  await rejectsWith(db.createNamespace(reserved), "INVALID_ARGUMENT", "createNamespace");
  await rejectsWith(db.createNamespace("\u0000txtdb.mine"), "INVALID_ARGUMENT", "createNamespace of another reserved name");
  await rejectsWith(db.dropNamespace(reserved), "INVALID_ARGUMENT", "dropNamespace");
  await rejectsWith(db.renameNamespace("a", reserved), "INVALID_ARGUMENT", "renameNamespace");
  await rejectsWith(() => db.watch(reserved, { prefix: [] }), "INVALID_ARGUMENT", "watch");
  await rejectsWith(db.transaction((tx) => tx.set(reserved, "k", 1)), "INVALID_ARGUMENT", "tx.set");
  await rejectsWith(async () => {
    for await (const _ of db.list(reserved, { prefix: [] })) break;
  }, "INVALID_ARGUMENT", "list");
  const snap = await db.snapshot();
  await rejectsWith(snap.get(reserved, "k"), "INVALID_ARGUMENT", "snapshot get");
  snap.release();
  await rejectsWith(open(tempDir("q-ns2"), { namespaces: [reserved] }), "INVALID_ARGUMENT", "open namespaces");
  // Watching a user namespace sees nothing of the queue's commits.
  const w = db.watch("a", { prefix: [] });
  await db.enqueue("jobs", 2);
  await db.set("a", "x", 1);
  const ev = await w.next();
  assert.deepEqual(ev.value!.changes, [{ key: "x", value: 1 }]);
  await w.return!();
  assert.equal(await db.count("a", { prefix: [] }), 1);
  await db.close();
});

test("delayMs: the message is delayed, then ready; a handler never starts before its delay", async () => {
  const db = await open(tempDir("q-delay"));
  const before = Date.now();
  await db.enqueue("jobs", "late", { delayMs: 150 });
  await db.enqueue("jobs", "now");
  const s = db.queueStats("jobs");
  assert.equal(s.ready, 1);
  assert.equal(s.delayed, 1);
  const got = await collect(db, "jobs", 2, {}, (v) => {
    if (v === "late") assert.ok(Date.now() >= before + 150, "not before the delay");
  });
  assert.deepEqual(got.map((g) => g.value), ["now", "late"]);
  await db.close();
});

test("a delayed message wakes a listener already waiting (its timer), not only a new commit", async () => {
  const db = await open(tempDir("q-delay-wake"));
  const stop = new AbortController();
  let at = 0;
  const listening = db.listenQueue("jobs", () => {
    at = Date.now();
    stop.abort();
  }, { signal: stop.signal });
  const t0 = Date.now();
  await db.enqueue("jobs", 1, { delayMs: 120 });
  assert.ok(await waitUntil(() => at > 0, 30_000, 5) >= 0, "delivered without any later commit");
  assert.ok(at >= t0 + 120);
  await listening;
  await db.close();
});

test("dedupeKey: a second enqueue within the window is skipped; after the window it is enqueued again", async () => {
  const db = await open(tempDir("q-dedupe"));
  const a = await db.enqueue("jobs", "first", { dedupeKey: "mail-42", dedupeWindowMs: 150 });
  const b = await db.enqueue("jobs", "second", { dedupeKey: "mail-42", dedupeWindowMs: 150 });
  assert.equal(a.deduplicated, false);
  assert.equal(b.deduplicated, true);
  await db.enqueue("jobs", "other key", { dedupeKey: "mail-43" });
  await db.enqueue("other", "other queue", { dedupeKey: "mail-42" });
  assert.equal(db.queueStats("jobs").ready, 2);
  assert.equal(db.queueStats("other").ready, 1);
  await sleep(200);
  const c = await db.enqueue("jobs", "third", { dedupeKey: "mail-42" });
  assert.equal(c.deduplicated, false);
  const got = await collect(db, "jobs", 3);
  assert.deepEqual(got.map((g) => g.value).sort(), ["first", "other key", "third"]);
  // The dedupe key holds whether or not the first message was handled already.
  assert.equal((await db.enqueue("jobs", "fourth", { dedupeKey: "mail-42" })).deduplicated, true);
  // In a transaction too: a held key skips the message, not the transaction.
  await db.createNamespace("n");
  await db.transaction((tx) => {
    tx.set("n", "k", 1);
    tx.enqueue("jobs", "fifth", { dedupeKey: "mail-42" });
  });
  assert.equal(await db.get("n", "k"), 1);
  assert.equal(db.queueStats("jobs").ready, 0);
  await db.close();
});

test("concurrent enqueues with one dedupe key from two handles enqueue once", async () => {
  const dir = tempDir("q-dedupe-race");
  const a = await open(dir), b = await open(dir);
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).enqueue("jobs", i, { dedupeKey: "once" })));
  assert.equal(results.filter((r) => !r.deduplicated).length, 1);
  assert.equal(a.queueStats("jobs").ready, 1);
  await a.close();
  await b.close();
});

test("a failing handler is retried with growing attempts; past maxAttempts the message is dead with its last error; retryDead puts it back", async () => {
  const db = await open(tempDir("q-dead"));
  const { id } = await db.enqueue("jobs", { n: 1 });
  await db.enqueue("jobs", { n: 2 });
  const attempts: number[] = [];
  const stop = new AbortController();
  let okCount = 0;
  const listening = db.listenQueue<{ n: number }>("jobs", (v, msg) => {
    if (v.n === 2) {
      okCount++;
      return;
    }
    attempts.push(msg.attempt);
    const e = new TypeError(`attempt ${msg.attempt} failed`) as TypeError & { code: string };
    e.code = "E_PLANNED";
    throw e;
  }, { signal: stop.signal, maxAttempts: 3, retryDelayMs: 5, retryDelayMaxMs: 20 });
  assert.ok(await waitUntil(() => db.queueStats("jobs").dead === 1, 30_000, 5) >= 0);
  stop.abort();
  await listening;
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.equal(okCount, 1);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 1 });
  const dead = [];
  for await (const d of db.deadLetters("jobs")) dead.push(d);
  assert.equal(dead.length, 1);
  assert.equal(dead[0]!.id, id);
  assert.deepEqual(dead[0]!.value, { n: 1 });
  assert.equal(dead[0]!.attempts, 3);
  assert.equal(dead[0]!.error!.name, "TypeError");
  assert.equal(dead[0]!.error!.message, "attempt 3 failed");
  assert.equal(dead[0]!.error!.code, "E_PLANNED");
  assert.match(dead[0]!.error!.stack!, /attempt 3 failed/);
  assert.equal(await db.retryDead("jobs", "no-such-id"), 0);
  assert.equal(await db.retryDead("jobs", id), 1);
  assert.deepEqual(db.queueStats("jobs"), { ready: 1, delayed: 0, running: 0, dead: 0 });
  const [again] = await collect(db, "jobs", 1);
  assert.equal(again!.msg.attempt, 1, "attempts start over");
  assert.equal(again!.msg.id, id);
  await db.close();
});

test("retryDead(queue) moves every dead message back; thrown non-Errors are stored in a serialisable form", async () => {
  const db = await open(tempDir("q-dead-all"));
  const thrown: unknown[] = ["a string", { weird: true }, null, 42n, Symbol("s")];
  for (let i = 0; i < thrown.length; i++) await db.enqueue("jobs", i);
  const stop = new AbortController();
  const listening = db.listenQueue<number>("jobs", (i) => {
    throw thrown[i];
  }, { signal: stop.signal, maxAttempts: 1, concurrency: 8 });
  assert.ok(await waitUntil(() => db.queueStats("jobs").dead === thrown.length, 30_000, 5) >= 0);
  stop.abort();
  await listening;
  const errors = new Map<number, unknown>();
  for await (const d of db.deadLetters<number>("jobs")) errors.set(d.value, d.error);
  assert.deepEqual(errors.get(0), { name: "Error", message: "a string" });
  assert.deepEqual(errors.get(1), { name: "Error", message: '{"weird":true}' });
  assert.deepEqual(errors.get(2), { name: "Error", message: "null" });
  assert.deepEqual(errors.get(3), { name: "Error", message: "42n" });
  assert.deepEqual(errors.get(4), { name: "Error", message: "Symbol(s)" });
  assert.equal(await db.retryDead("jobs"), thrown.length);
  assert.deepEqual(db.queueStats("jobs"), { ready: thrown.length, delayed: 0, running: 0, dead: 0 });
  const dead = [];
  for await (const d of db.deadLetters("jobs")) dead.push(d);
  assert.deepEqual(dead, []);
  await db.close();
});

test("tx.enqueue: delivered if the transaction commits, never if it rolls back, once if a conflict reran it", async () => {
  const db = await open(tempDir("q-tx"), { namespaces: ["acct"] });
  const id = await db.transaction((tx) => {
    tx.set("acct", "a", 1);
    return tx.enqueue("jobs", "committed");
  });
  assert.equal(typeof id, "string");
  await rejectsWith(db.transaction((tx) => {
    tx.enqueue("jobs", "rolled back");
    throw new TxtDbError("INVALID_ARGUMENT", "the function failed on purpose");
  }), "INVALID_ARGUMENT", "the transaction's own error");
  const tx = await db.begin();
  tx.enqueue("jobs", "manual rollback");
  tx.rollback();
  // A conflict: the first run reads "a", another commit changes it, the run is repeated.
  let runs = 0;
  await db.transaction(async (t) => {
    runs++;
    const a = (await t.get<number>("acct", "a"))!;
    if (runs === 1) await db.set("acct", "a", a + 100);
    t.set("acct", "a", a + 1);
    t.enqueue("jobs", `rerun ${runs}`);
  });
  assert.equal(runs, 2);
  // A manual transaction that loses a conflict writes no message.
  const loser = await db.begin();
  await loser.get("acct", "a");
  loser.set("acct", "a", 0);
  loser.enqueue("jobs", "lost");
  await db.set("acct", "a", 7);
  await rejectsWith(loser.commit(), "CONFLICT", "the loser");
  const got = await collect(db, "jobs", 2);
  await sleep(50);
  assert.deepEqual(got.map((g) => g.value).sort(), ["committed", "rerun 2"]);
  assert.equal(got.find((g) => g.value === "committed")!.msg.id, id);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
});

test("a store's first enqueue may be a transaction's (the queues' namespace is created on the way)", async () => {
  const db = await open(tempDir("q-tx-first"), { namespaces: ["n"] });
  await db.transaction((tx) => {
    tx.enqueue("jobs", 1, { delayMs: 10 });
    tx.enqueue("jobs", 2);
  });
  assert.equal(db.queueStats("jobs").ready + db.queueStats("jobs").delayed, 2);
  const tx = await db.begin();
  tx.enqueue("jobs", 3);
  await tx.commit();
  assert.equal((await collect(db, "jobs", 3)).length, 3);
  await db.close();
});

test("concurrency: at most `concurrency` handlers of one listener run at once; two handles share a queue, each message once", async () => {
  const dir = tempDir("q-conc");
  const a = await open(dir), b = await open(dir);
  for (let i = 0; i < 60; i++) await a.enqueue("jobs", i);
  let running = 0, peak = 0;
  const seen: number[] = [];
  const stop = new AbortController();
  const handler = async (i: number) => {
    running++;
    peak = Math.max(peak, running);
    await sleep(2);
    seen.push(i);
    running--;
  };
  const la = a.listenQueue("jobs", handler, { concurrency: 3, signal: stop.signal });
  const lb = b.listenQueue("jobs", handler, { concurrency: 2, signal: stop.signal });
  assert.ok(await waitUntil(() => seen.length >= 60, 30_000, 2) >= 0);
  await sleep(30);
  stop.abort();
  await Promise.all([la, lb]);
  assert.ok(peak <= 5, `peak ${peak} handlers`);
  assert.equal(seen.length, 60);
  assert.deepEqual([...seen].sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i));
  await a.close();
  await b.close();
});

test("a handler running past visibilityTimeoutMs keeps its message (its claim is renewed; its signal says it is presumed hung); once its stopped listener abandons it, another listener takes the message, and the late finish changes nothing", async () => {
  const dir = tempDir("q-visibility");
  const a = await open(dir), b = await open(dir);
  await a.enqueue("jobs", "slow");
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const stopA = new AbortController(), stopB = new AbortController();
  const attempts: string[] = [];
  let signal: AbortSignal | undefined;
  const la = a.listenQueue("jobs", async (_v, msg) => {
    attempts.push(`a${msg.attempt}`);
    signal = msg.signal;
    await hung;
  }, { signal: stopA.signal, visibilityTimeoutMs: 100, retryDelayMs: 0 });
  assert.ok(await waitUntil(() => attempts.length === 1, 30_000, 2) >= 0);
  const lb = b.listenQueue("jobs", (_v, msg) => void attempts.push(`b${msg.attempt}`), { signal: stopB.signal });
  await sleep(1_500); // past a sweep of each listener and many visibility timeouts
  assert.deepEqual(attempts, ["a1"], "not given to another attempt while its handler runs in a live process");
  assert.equal(signal?.aborted, true);
  assert.equal((signal?.reason as TxtDbError | undefined)?.code, "TIMEOUT");
  stopA.abort(); // A stops, and abandons the hung handler: its claim is no longer renewed
  await la;
  assert.equal((signal?.reason as TxtDbError | undefined)?.code, "TIMEOUT", "the first reason stays");
  assert.ok(await waitUntil(() => attempts.length === 2, 30_000, 5) >= 0, "given back once unrenewed, and taken again");
  assert.deepEqual(attempts, ["a1", "b2"]);
  release();
  await sleep(50);
  stopB.abort();
  await lb;
  assert.deepEqual(a.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  assert.equal(attempts.length, 2, `the late finish of attempt 1 changed nothing: ${attempts}`);
  await a.close();
  await b.close();
});

test("listenQueue() resolves when its signal aborts (at once if already aborted), after its running handlers finish and are acknowledged", async () => {
  const dir = tempDir("q-abort");
  const db = await open(dir);
  const aborted = new AbortController();
  aborted.abort();
  let called = false;
  await db.listenQueue("jobs", () => void (called = true), { signal: aborted.signal });
  await db.enqueue("jobs", 1);
  await db.enqueue("jobs", 2);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started = 0;
  const stop = new AbortController();
  let resolved = false;
  const listening = db.listenQueue("jobs", async () => {
    started++;
    await gate;
  }, { signal: stop.signal, concurrency: 2 }).then(() => void (resolved = true));
  assert.ok(await waitUntil(() => started === 2, 30_000, 2) >= 0);
  stop.abort();
  await sleep(30);
  assert.equal(resolved, false, "waits for running handlers");
  release();
  await listening;
  assert.equal(called, false);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 }, "their outcomes were committed");
  await db.close();
});

test("listenQueue() whose signal aborts, or whose database closes, while it starts (the queues' namespace being made) resolves", async () => {
  for (const how of ["abort", "close"] as const) {
    const db = await open(tempDir(`q-abort-start-${how}`)); // no queue yet: the listener makes the namespace first
    const stop = new AbortController();
    let called = false;
    const listening = db.listenQueue("jobs", () => void (called = true), { signal: stop.signal });
    if (how === "abort") stop.abort();
    const closing = how === "close" ? db.close() : undefined;
    const outcome = await Promise.race([
      listening.then(() => "resolved", (e) => (e instanceof TxtDbError ? e.code : String(e))),
      sleep(5_000).then(() => "still waiting after 5 s"),
    ]);
    assert.ok(how === "abort" ? outcome === "resolved" : outcome === "resolved" || outcome === "CLOSED", `${how}: ${outcome}`);
    assert.equal(called, false);
    await closing;
    if (how === "abort") {
      await db.enqueue("jobs", 1);
      assert.equal(db.queueStats("jobs").ready, 1, "the stopped listener took nothing");
      await db.close();
    }
  }
});

test("close() while handlers run: listeners stop, close waits for the handlers and commits them; a handler that never ends is abandoned and its message redelivered", async () => {
  const dir = tempDir("q-close");
  let db = await open(dir);
  await db.enqueue("jobs", "finishes");
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started = 0;
  const listening = db.listenQueue("jobs", async () => {
    started++;
    await gate;
  });
  assert.ok(await waitUntil(() => started === 1, 30_000, 2) >= 0);
  const closing = db.close();
  await sleep(20);
  release();
  await closing;
  await listening;
  db = await open(dir);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
  await rejectsWith(db.listenQueue("x", () => {}), "CLOSED", "listen on a closed handle");

  db = await open(dir);
  await db.enqueue("jobs", "hangs");
  started = 0;
  const hanging = db.listenQueue("jobs", () => {
    started++;
    return new Promise(() => {});
  }, { visibilityTimeoutMs: 100, retryDelayMs: 0 });
  assert.ok(await waitUntil(() => started === 1, 30_000, 2) >= 0);
  await db.close(); // within the visibility timeout: abandoned
  await hanging;
  db = await open(dir);
  const [again] = await collect(db, "jobs", 1);
  assert.equal(again!.value, "hangs");
  assert.equal(again!.msg.attempt, 2);
  await db.close();
});

test("big enqueues made at once go in group commits of at most 64 MiB past the first, and every message is kept", async () => {
  // Memory bound: each enqueue over 1 MiB is a batch of its own, and a group commit sizes
  // its batches by their bytes; eight of 15 MiB used to make one group commit of 120 MiB.
  const db = await open(tempDir("q-big"));
  const value = new Uint8Array(15 << 20).fill(3);
  await db.enqueue("big", 1); // the queues' namespace, made first
  const before = db.stats();
  const ids = await Promise.all(Array.from({ length: 8 }, () => db.enqueue("big", value)));
  const after = db.stats();
  assert.equal(new Set(ids.map((r) => r.id)).size, 8);
  assert.ok(after.batches - before.batches >= 2, `${after.batches - before.batches} group commit(s) for 120 MiB of enqueues`);
  assert.equal(db.queueStats("big").ready, 9);
  await db.close();
});

test("bad arguments fail with INVALID_ARGUMENT / INVALID_VALUE / INVALID_KEY and write nothing", async () => {
  const db = await open(tempDir("q-bad"));
  const badQueues: unknown[] = ["", 5, null, undefined, {}, "x".repeat(257), "a\uD800b", ["jobs"]];
  for (const q of badQueues) {
    await rejectsWith(db.enqueue(q as string, 1), "INVALID_ARGUMENT", `enqueue to ${String(q)}`);
    await rejectsWith(db.listenQueue(q as string, () => {}), "INVALID_ARGUMENT", `listen to ${String(q)}`);
    await rejectsWith(() => db.queueStats(q as string), "INVALID_ARGUMENT", `stats of ${String(q)}`);
    await rejectsWith(db.retryDead(q as string), "INVALID_ARGUMENT", `retryDead of ${String(q)}`);
    await rejectsWith(() => db.deadLetters(q as string), "INVALID_ARGUMENT", `deadLetters of ${String(q)}`);
  }
  for (const v of [undefined, () => 1, Symbol("s"), { f() {} }]) await rejectsWith(db.enqueue("jobs", v), "INVALID_VALUE", `value ${String(v)}`);
  await rejectsWith(db.enqueue("jobs", "x".repeat(70 * 2 ** 20)), "INVALID_VALUE", "a value past maxValueBytes");
  const badEnqueue: unknown[] = [null, 5, "x", { delayMs: -1 }, { delayMs: NaN }, { delayMs: Infinity }, { delayMs: "5" }, { delay: 5 }, { dedupeKey: "" }, { dedupeKey: 5 }, { dedupeKey: "x".repeat(1025) }, { dedupeWindowMs: 5 }, { dedupeKey: "k", dedupeWindowMs: 0 }];
  for (const o of badEnqueue) await rejectsWith(db.enqueue("jobs", 1, o as never), "INVALID_ARGUMENT", `enqueue options ${JSON.stringify(o)}`);
  await rejectsWith(db.enqueue("jobs", 1, { dedupeKey: "k".repeat(1000) + "\uDC00" }), "INVALID_ARGUMENT", "a dedupe key with a lone surrogate");
  const badListen: unknown[] = [null, 5, { concurrency: 0 }, { concurrency: 1.5 }, { concurrency: 1e9 }, { maxAttempts: 0 }, { visibilityTimeoutMs: 0 }, { retryDelayMs: -5 }, { retryDelayMs: 100, retryDelayMaxMs: 10 }, { signal: "stop" }, { conccurency: 2 }];
  for (const o of badListen) await rejectsWith(db.listenQueue("jobs", () => {}, o as never), "INVALID_ARGUMENT", `listen options ${JSON.stringify(o)}`);
  for (const h of [undefined, null, "f", {}]) await rejectsWith(db.listenQueue("jobs", h as never), "INVALID_ARGUMENT", `handler ${String(h)}`);
  await rejectsWith(db.retryDead("jobs", 5 as never), "INVALID_ARGUMENT", "retryDead id");
  await rejectsWith(db.transaction((tx) => void tx.enqueue("jobs", () => 1)), "INVALID_VALUE", "tx.enqueue of a function");
  await rejectsWith(db.transaction((tx) => void tx.enqueue("", 1)), "INVALID_ARGUMENT", "tx.enqueue to no queue");
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 }, "nothing was written");
  await db.close();
  await rejectsWith(db.enqueue("jobs", 1), "CLOSED", "enqueue after close");
  await rejectsWith(() => db.queueStats("jobs"), "CLOSED", "stats after close");
});

test("a read-only handle reads queue stats and dead letters but cannot enqueue, listen or retry", async () => {
  const dir = tempDir("q-ro");
  const w = await open(dir);
  await w.enqueue("jobs", 1);
  const ro = await open(dir, { readOnly: true });
  assert.equal(ro.queueStats("jobs").ready, 1);
  await rejectsWith(ro.enqueue("jobs", 1), "READ_ONLY", "enqueue");
  await rejectsWith(ro.listenQueue("jobs", () => {}), "READ_ONLY", "listen");
  await rejectsWith(ro.retryDead("jobs"), "READ_ONLY", "retryDead");
  await rejectsWith(ro.transaction((tx) => void tx.enqueue("jobs", 1)), "READ_ONLY", "tx.enqueue");
  await ro.close();
  await w.close();
});

test("queues survive a reopen: waiting, delayed and dead messages are still there", async () => {
  const dir = tempDir("q-reopen");
  let db = await open(dir);
  await db.enqueue("jobs", "ready");
  await db.enqueue("jobs", "later", { delayMs: 60_000 });
  await db.enqueue("dlq", "doomed");
  const stop = new AbortController();
  const l = db.listenQueue("dlq", () => {
    throw new Error("no");
  }, { maxAttempts: 1, signal: stop.signal });
  assert.ok(await waitUntil(() => db.queueStats("dlq").dead === 1, 30_000, 5) >= 0);
  stop.abort();
  await l;
  assert.equal((await db.check()).ok, true, "check() reads queue records as valid values");
  await db.compact();
  assert.equal((await db.check()).ok, true, "and after they were folded into a table");
  await db.close();
  db = await open(dir);
  assert.deepEqual(db.queueStats("jobs"), { ready: 1, delayed: 1, running: 0, dead: 0 });
  assert.deepEqual(db.queueStats("dlq"), { ready: 0, delayed: 0, running: 0, dead: 1 });
  assert.deepEqual(await db.listNamespaces(), []);
  await db.close();
});

test("txtdb queues <dir> prints every queue that holds messages with its counts, on each runtime's command line", { skip: !canSpawn }, async () => {
  const { runCli } = await import("./clirun.ts");
  const dir = tempDir("q-cli");
  const db = await open(dir, { namespaces: ["users"] });
  await db.enqueue("emails", 1);
  await db.enqueue("emails", 2, { delayMs: 60_000 });
  await db.enqueue("a\nb", 3);
  await db.enqueue("gone", 4);
  const stop = new AbortController();
  const l = db.listenQueue("gone", () => stop.abort(), { signal: stop.signal });
  await l;
  await db.close();
  for (const rt of ["node", "deno", "bun"] as const) {
    const r = runCli(rt, ["queues", dir]);
    assert.equal(r.code, 0, `${rt}: ${r.err}`);
    assert.deepEqual(r.out.trim().split("\n").map((l) => JSON.parse(l)), [
      { queue: "a\nb", ready: 1, delayed: 0, running: 0, dead: 0 },
      { queue: "emails", ready: 1, delayed: 1, running: 0, dead: 0 },
    ], rt);
  }
  const empty = tempDir("q-cli-empty");
  await (await open(empty)).close();
  assert.equal(runCli("node", ["queues", empty]).out, "");
});
