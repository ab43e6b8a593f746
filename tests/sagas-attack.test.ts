/**
 * Sagas under hostile and careless use, in one process: steps that throw what cannot be
 * stored as it is (lone surrogates, getters that throw, huge messages cut inside a pair),
 * names and ids that cannot be keys, and damaged saga records. Every step's real failure is
 * recorded (never passed off as a crash), bad input is INVALID_ARGUMENT, and nothing spins.
 */
import { assert, runtime, sleep, takeWriterLock, tempDir, test, outcomeCode } from "./harness.ts";
import { open, Sagas, TxtDbError } from "txtdb";
import type { Database } from "txtdb";

const R = `[${runtime}]`;
const FAST = { attempts: 2, minDelayMs: 5, maxDelayMs: 20 };

const code = outcomeCode;

async function setup(label: string): Promise<{ db: Database; sagas: Sagas }> {
  const db = await open(tempDir(label), { durability: "none" });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: FAST });
  return { db, sagas };
}

function thrower(make: () => unknown) {
  return () => {
    throw make();
  };
}

test(`${R} a step's failure that cannot be stored as thrown (lone surrogates, a throwing getter, a cut through a pair) is recorded, not taken for a crash`, async () => {
  const { db, sagas } = await setup("saga-atk-fail");
  try {
    const named = new Error("plain");
    named.name = "Bad\ud800Name";
    (named as Error & { code: string }).code = "E\udc00CODE";
    const getter = new Error("x");
    Object.defineProperty(getter, "message", { get() { throw new Error("boom"); } });
    const cases: [string, () => unknown, (f: { name: string; message: string; code?: string }) => void][] = [
      ["lone-message", () => new Error("bad \ud800 message"), (f) => assert.equal(f.message, "bad \ufffd message")],
      ["lone-string", () => "thrown \udfff string", (f) => assert.match(f.message, /thrown/)],
      ["lone-name-code", () => named, (f) => {
        assert.equal(f.name, "Bad\ufffdName");
        assert.equal(f.code, "E\ufffdCODE");
        assert.equal(f.message, "plain");
      }],
      ["getter", () => getter, (f) => assert.equal(f.name, "Error")],
      // 4 094 characters, then pairs: the cut (4 095 characters and "…") falls inside one.
      ["cut-pair", () => new Error("m".repeat(4_094) + "\u{1F600}".repeat(10)), (f) => assert.ok(f.message.length <= 4_096 && f.message.startsWith("mmm") && f.message.endsWith("\ufffd…"), `${f.message.length}: ${f.message.slice(-4)}`)],
      // Was a defect: a cut message was 4 097 characters long ("…" beyond the 4 096).
      ["long", () => new Error("x".repeat(10_000)), (f) => assert.equal(f.message, "x".repeat(4_095) + "…")],
    ];
    for (const [name, make, check] of cases) {
      let tries = 0;
      sagas.define(name, [{ name: "only", run: () => (tries++, thrower(make)()) }]);
      const id = await sagas.start(name, {});
      const r = await sagas.result(id, { timeoutMs: 30_000 });
      assert.equal(r.status, "compensated", name);
      assert.notEqual(r.error?.name, "SagaRunnerLost", `${name}: the step's own failure was lost: ${JSON.stringify(r.error)}`);
      assert.equal(r.error?.attempts, FAST.attempts, name);
      assert.equal(tries, FAST.attempts, `${name}: tried ${tries} times`);
      check(r.error!);
    }
  } finally {
    await sagas.close();
    await db.close();
  }
});

test(`${R} names and ids with lone surrogates are INVALID_ARGUMENT in start, result, get, list and watch`, async () => {
  const { db, sagas } = await setup("saga-atk-lone");
  try {
    sagas.define("ok", [{ name: "s", run: () => 1 }]);
    const lone = "x\ud800y";
    assert.equal(await code(sagas.start(lone, {})), "INVALID_ARGUMENT");
    assert.equal(await code(sagas.result(lone, { timeoutMs: 100 })), "INVALID_ARGUMENT");
    assert.equal(await code(sagas.get(lone)), "INVALID_ARGUMENT");
    assert.equal(await code(sagas.list({ name: lone })), "INVALID_ARGUMENT");
    assert.equal(await code(() => sagas.watch({ id: lone })), "INVALID_ARGUMENT");
    assert.equal(await code(() => sagas.watch({ name: lone })), "INVALID_ARGUMENT");
    assert.equal(await code(() => sagas.define(lone, [{ name: "s", run: () => 1 }])), "INVALID_ARGUMENT");
    const id = await sagas.start("ok", {});
    assert.equal((await sagas.result(id, { timeoutMs: 30_000 })).status, "completed");
  } finally {
    await sagas.close();
    await db.close();
  }
});

test(`${R} a damaged saga record (running past its last step) is left alone, not claimed again and again`, async () => {
  const { db, sagas } = await setup("saga-atk-damaged");
  try {
    let runs = 0;
    sagas.define("s", [{ name: "only", run: () => ++runs }]);
    const id = await sagas.start("s", {});
    assert.equal((await sagas.result(id, { timeoutMs: 30_000 })).status, "completed");
    const rec = await db.get<Record<string, unknown>>("sagas", ["saga", id]);
    const damaged = { ...rec!, status: "running", index: 1, attempt: 0, owner: null, ownerPid: null, ownerRuntime: null, dueAtMs: 0 };
    await db.transaction((tx) => {
      tx.set("sagas", ["saga", id], damaged);
      tx.set("sagas", ["run", "s", id], { owner: null, dueAtMs: 0 });
    });
    await sleep(1_000);
    // Nobody claimed it (a claim writes an owner and counts a try), and the step did not run again.
    assert.deepEqual(await db.get("sagas", ["saga", id]), damaged);
    assert.equal(runs, 1);
    // The handle still runs other sagas.
    const other = await sagas.start("s", {});
    assert.equal((await sagas.result(other, { timeoutMs: 30_000 })).status, "completed");
  } finally {
    await sagas.close();
    await db.close();
  }
});

// Was a defect: start() took an input that filled maxValueBytes but for a few bytes; the
// runner's claim (owner, pid, runtime: ~25 bytes more) then failed with INVALID_VALUE on
// every try, every 100 ms: the saga never ran and a core stayed busy. A step's output that
// filled the record likewise left no room for the next step's failure.
test(`${R} an input or a step's output too big to leave room for claims and failures is refused (INVALID_VALUE), not left to spin; the largest accepted input runs`, async () => {
  const db = await open(tempDir("saga-atk-big"), { durability: "none", maxValueBytes: 64 * 1024 });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: FAST });
  try {
    let runs = 0;
    sagas.define("s", [{ name: "only", run: () => ++runs }]);
    // The largest input start() accepts (by bisection).
    let lo = 0, hi = 64 * 1024, id: string | undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const r = await sagas.start("s", "x".repeat(mid)).then((i) => i, (e) => e as TxtDbError);
      if (typeof r === "string") (lo = mid), (id = r);
      else {
        assert.equal(r.code, "INVALID_VALUE", String(r));
        assert.match(r.message, /must leave \d+ bytes of maxValueBytes \(65536\) free/);
        hi = mid - 1;
      }
    }
    assert.ok(id !== undefined && lo > 16 * 1024, `largest input ${lo}`);
    assert.equal((await sagas.result(id, { timeoutMs: 10_000 })).status, "completed");
    const before = runs;
    assert.equal(await code(sagas.start("s", "x".repeat(lo + 1))), "INVALID_VALUE");
    assert.equal((await sagas.list({ name: "s" })).filter((i) => i.status !== "completed").length, 0, "nothing of the refused start was written");
    assert.equal(runs, before);

    // A step's output that fills the record fails the saga at once (no retry: the run
    // returned) and the saga compensates; the failure is still recorded.
    let undone = 0, tries = 0;
    sagas.define("out", [
      { name: "first", run: () => 1, compensate: () => void undone++ },
      { name: "big", run: () => (tries++, "y".repeat(60_000)) },
      { name: "last", run: () => 2 },
    ]);
    const big = await sagas.start("out", {});
    const r = await sagas.result(big, { timeoutMs: 10_000 });
    assert.equal(r.status, "compensated", JSON.stringify(r));
    assert.equal(r.error?.step, "big");
    assert.equal(r.error?.code, "INVALID_VALUE");
    assert.ok((r.error?.message.length ?? 0) <= 4_096);
    assert.equal(tries, 1);
    assert.equal(undone, 1);
  } finally {
    await sagas.close();
    await db.close();
  }
});

// Was a defect: when the outcome of a try could not be committed (here: the writer lock
// held elsewhere past lockTimeoutMs, five times), the next claim recorded its last try as
// "SagaRunnerLost" (a process that died), though this process was alive and knew why.
test(`${R} a try whose outcome could not be recorded fails with the real cause, not as a dead runner`, async () => {
  const dir = tempDir("saga-atk-unrecorded");
  const db = await open(dir, { durability: "none", lockTimeoutMs: 50 });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: { attempts: 1, minDelayMs: 5, maxDelayMs: 20 } });
  try {
    let release: (() => void) | undefined;
    sagas.define("s", [{
      name: "only",
      run: async () => {
        // Held until well after the runner gave up recording the outcome (5 commits, ~1 s).
        release = await takeWriterLock(dir);
        setTimeout(() => release?.(), 3_000);
        return "done";
      },
    }]);
    const id = await sagas.start("s", {});
    const r = await sagas.result(id, { timeoutMs: 20_000 });
    assert.equal(r.status, "compensated", JSON.stringify(r));
    assert.notEqual(r.error?.name, "SagaRunnerLost", JSON.stringify(r.error));
    assert.equal(r.error?.code, "LOCK_TIMEOUT", JSON.stringify(r.error));
    assert.match(r.error!.message, /recording its outcome failed/);
  } finally {
    await sagas.close();
    await db.close();
  }
});

// Was a defect: a saga compensating a step whose compensation the running process's
// definition no longer has (same steps by name, compensate removed) ended with a plain
// TypeError ("fn is not a function") as its compensation error.
test(`${R} a compensation removed from a redefined saga ends it failed with a TxtDbError that says what changed`, async () => {
  const dir = tempDir("saga-atk-redefined");
  const db = await open(dir, { durability: "none" });
  const first = await Sagas.open(db, { namespace: "sagas", retry: { attempts: 1, minDelayMs: 5, maxDelayMs: 20 } });
  let compensating!: () => void;
  const reached = new Promise<void>((r) => (compensating = r));
  first.define("trip", [
    { name: "book", run: () => "booked", compensate: () => {
      compensating();
      throw new Error("not now");
    }, compensateRetry: { attempts: 3, minDelayMs: 1_000, maxDelayMs: 1_000 } },
    { name: "pay", run: () => {
      throw new Error("declined");
    } },
  ]);
  const id = await first.start("trip", {});
  await reached;
  await first.close(); // the compensation waits for its next try; this handle gives it up
  const second = await Sagas.open(db, { namespace: "sagas", retry: { attempts: 1, minDelayMs: 5, maxDelayMs: 20 } });
  try {
    second.define("trip", [{ name: "book", run: () => "booked" }, { name: "pay", run: () => "paid" }]);
    const r = await second.result(id, { timeoutMs: 10_000 });
    assert.equal(r.status, "failed", JSON.stringify(r));
    const f = r.compensationErrors?.[0];
    assert.equal(f?.name, "TxtDbError", JSON.stringify(f));
    assert.equal(f?.code, "INVALID_ARGUMENT");
    assert.equal(f?.step, "book");
    assert.match(f!.message, /without a compensate function: the definition changed/);
  } finally {
    await second.close();
    await db.close();
  }
});

test(`${R} a saga runner's lease takes the store's file mode, not its directory's: a store opened owner-only in a directory made 0o755 beforehand keeps its lease 0o600`, async () => {
  const fs = await import("node:fs");
  const dir = tempDir("saga-atk-mode");
  fs.chmodSync(dir, 0o755); // made before the store, by someone else's habits
  const db = await open(dir);
  try {
    const sagas = await Sagas.open(db, { namespace: "sagas" });
    sagas.define("one", [{ name: "only", run: () => 1 }]);
    const leases = fs.readdirSync(`${dir}/locks`).filter((n) => n.endsWith(".lease"));
    assert.ok(leases.length > 0, "the runner took its lease");
    for (const name of leases) assert.equal(fs.statSync(`${dir}/locks/${name}`).mode & 0o777, 0o600, `${name} is owner-only`);
    assert.equal(fs.statSync(`${dir}/locks`).mode & 0o777, 0o700);
    await sagas.close();
  } finally {
    await db.close();
  }
});

test(`${R} start() stores the input as it was at the call: the caller changing the object before start() resolves changes nothing (with and without an idempotency key, from a handle that did not define the saga)`, async () => {
  const { db, sagas } = await setup("start-input-copy");
  const seen: string[] = [];
  sagas.define("m", [{ name: "a", run: (input) => (seen.push(JSON.stringify(input)), 1) }]);
  const input = { amount: 100, items: ["x"] };
  const p = sagas.start("m", input, { idempotencyKey: "order-1" });
  input.amount = 999_999;
  input.items.push("y");
  await sagas.result(await p);
  const other = await Sagas.open(db);
  const input2 = { amount: 5 };
  const p2 = other.start("m", input2);
  input2.amount = -1;
  await sagas.result(await p2);
  assert.deepEqual(seen.sort(), ['{"amount":100,"items":["x"]}', '{"amount":5}'].sort());
  await other.close();
  await sagas.close();
  await db.close();
});

// Was a defect: a step whose run returned an output that cannot be stored (an Error inside
// it, or too big for the saga's record) was taken for a failed try: it ran again (the
// flight booked three times), then the saga compensated only the steps before it, so the
// step's own effect was never undone, and the saga still said "compensated".
test(`${R} a step whose run returned an output that cannot be stored (an Error inside, too big) is not run again: the saga fails with INVALID_VALUE and compensates that step itself, then the earlier ones`, async () => {
  const db = await open(tempDir("saga-atk-unstorable"), { durability: "none", maxValueBytes: 64 * 1024 });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: { attempts: 3, minDelayMs: 5, maxDelayMs: 10 } });
  try {
    for (const [label, output] of [["error-inside", () => ({ id: "F1", raw: new Error("provider warning") })], ["too-big", () => "y".repeat(60_000)]] as const) {
      const log: string[] = [];
      let compensatedWith: unknown;
      sagas.define(label, [
        { name: "charge", run: () => (log.push("charge"), "ch_1"), compensate: () => void log.push("refund") },
        { name: "flight", run: () => (log.push("book"), output()),
          compensate: (_input, ctx) => {
            compensatedWith = { ...ctx.results };
            log.push("cancel");
          } },
        { name: "hotel", run: () => (log.push("hotel"), "H1") },
      ]);
      const r = await sagas.result(await sagas.start(label, {}), { timeoutMs: 30_000 });
      assert.deepEqual(log, ["charge", "book", "cancel", "refund"], `${label}: the flight is booked once and cancelled, the charge refunded`);
      assert.equal(r.status, "compensated", JSON.stringify(r));
      assert.equal(r.error?.step, "flight", label);
      assert.equal(r.error?.phase, "run", label);
      assert.equal(r.error?.attempts, 1, label);
      assert.equal(r.error?.name, "TxtDbError", label);
      assert.equal(r.error?.code, "INVALID_VALUE", label);
      assert.match(r.error!.message, /returned \(try 1\), but its output cannot be stored/, label);
      assert.match(r.error!.message, /not run again/, label);
      assert.deepEqual(r.output, { charge: "ch_1" }, `${label}: the flight's output was not kept`);
      assert.deepEqual(compensatedWith, { charge: "ch_1" }, label);
    }
  } finally {
    await sagas.close();
    await db.close();
  }
});

// Was a defect: start() measured an idempotency key in UTF-16 units (at most 1 024), the store
// in bytes: a key of 1 000 "€" (3 000 bytes) passed start()'s check and failed later with
// INVALID_KEY from the store ("Key is 3008 bytes encoded"), a message about no key the caller gave.
test(`${R} start() measures an idempotency key in bytes, as the store does: one of many-byte characters past 1024 bytes, or past maxKeyBytes, is INVALID_ARGUMENT at the check, saying so`, async () => {
  const db = await open(tempDir("saga-atk-idem-bytes"), { durability: "none" });
  const small = await open(tempDir("saga-atk-idem-small"), { durability: "none", maxKeyBytes: 128 });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: FAST });
  const tight = await Sagas.open(small, { namespace: "sagas", retry: FAST });
  try {
    sagas.define("s", [{ name: "only", run: () => 1 }]);
    tight.define("s", [{ name: "only", run: () => 1 }]);
    const refused = async (s: Sagas, key: string, why: RegExp) => {
      const e = await s.start("s", {}, { idempotencyKey: key }).then(() => undefined, (e: unknown) => e);
      assert.ok(e instanceof TxtDbError, `${key.length} units: ${String(e)}`);
      assert.equal(e.code, "INVALID_ARGUMENT", e.message);
      assert.match(e.message, /idempotencyKey/);
      assert.match(e.message, why);
    };
    await refused(sagas, "\u20ac".repeat(1_000), /3000 bytes in UTF-8.*at most 1024 bytes/);
    await refused(sagas, "\u{1F600}".repeat(257), /1028 bytes in UTF-8/);
    await refused(sagas, "x".repeat(1_025), /1025 bytes in UTF-8/);
    await refused(tight, "x".repeat(200), /maxKeyBytes \(128\)/);
    // At the limit, in bytes, whatever the characters: accepted, and one key is one saga.
    for (const key of ["x".repeat(1_024), "\u20ac".repeat(341), "\u{1F600}".repeat(256)]) {
      const id = await sagas.start("s", {}, { idempotencyKey: key });
      assert.equal(await sagas.start("s", {}, { idempotencyKey: key }), id);
      assert.equal((await sagas.result(id, { timeoutMs: 10_000 })).status, "completed");
    }
  } finally {
    await sagas.close();
    await tight.close();
    await db.close();
    await small.close();
  }
});

// Was a defect: an options object whose getter throws escaped Sagas.open(), define(), start()
// and result() as that raw error, not INVALID_ARGUMENT.
test(`${R} options, retry policies and steps whose getters throw are INVALID_ARGUMENT naming the field, not the raw error`, async () => {
  const { db, sagas } = await setup("saga-atk-getters");
  try {
    sagas.define("s", [{ name: "only", run: () => 1 }]);
    const boom = (name: string, extra: Record<string, unknown> = {}) => Object.defineProperty({ ...extra }, name, { enumerable: true, get() { throw new Error("opt boom"); } });
    const cases: [string, () => unknown][] = [
      ["start idempotencyKey", () => sagas.start("s", {}, boom("idempotencyKey") as never)],
      ["result timeoutMs", () => sagas.result("x", boom("timeoutMs") as never)],
      ["list limit", () => sagas.list(boom("limit") as never)],
      ["open namespace", () => Sagas.open(db, boom("namespace") as never)],
      ["open retry.attempts", () => Sagas.open(db, { retry: boom("attempts") as never })],
      ["define step run", () => sagas.define("t", [boom("run", { name: "a" }) as never])],
      ["define step retry.minDelayMs", () => sagas.define("u", [{ name: "a", run: () => 1, retry: boom("minDelayMs") as never }])],
    ];
    for (const [what, f] of cases) {
      let e: unknown;
      try {
        await f();
      } catch (err) {
        e = err;
      }
      assert.ok(e instanceof TxtDbError, `${what}: ${String(e)}`);
      assert.equal(e.code, "INVALID_ARGUMENT", `${what}: ${e.message}`);
      assert.match(e.message, /threw/, what);
    }
    assert.deepEqual(sagas.defined, ["s"]);
  } finally {
    await sagas.close();
    await db.close();
  }
});
