/**
 * Sagas within one process, on every runtime: steps in order with their outputs, retries
 * that follow the policy (tries counted, delays within the policy's bounds), compensation in
 * reverse order, a compensation that keeps failing ("failed"), idempotency keys (also under
 * concurrent starts from several handles), result() waiting from another handle, watch(),
 * list(), close() handing a saga over to another handle, values mutated after they were
 * passed, and bad input. sagas-multiprocess.test.ts does the same across processes.
 */
import { assert, canSpawn, runtime, sleep, tempDir, test, outcomeCode } from "./harness.ts";
import { open, Sagas, TxtDbError } from "txtdb";
import type { Database, SagaContext, SagaEvent } from "txtdb";
import { retryDelayMs } from "txtdb/internal";

const R = `[${runtime}]`;
const FAST = { attempts: 3, minDelayMs: 5, maxDelayMs: 20 };

const code = outcomeCode;

async function setup(label: string, options: Parameters<typeof Sagas.open>[1] = {}): Promise<{ dir: string; db: Database; sagas: Sagas }> {
  const dir = tempDir(label);
  const db = await open(dir, { durability: "none" });
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: FAST, ...options });
  return { dir, db, sagas };
}

test(`${R} a saga runs its steps in order; result() gives every output; ctx carries the idempotency key and earlier results`, async () => {
  const { db, sagas } = await setup("saga-basic");
  const seen: { step: string; attempt: number; key: string; results: unknown; input: unknown }[] = [];
  const record = (input: unknown, ctx: SagaContext) => seen.push({ step: ctx.step, attempt: ctx.attempt, key: ctx.idempotencyKey, results: { ...ctx.results }, input });
  sagas.define("trip", [
    { name: "flight", run: (input: { who: string }, ctx) => (record(input, ctx), `F-${input.who}`) },
    { name: "hotel", run: async (input, ctx) => (record(input, ctx), await sleep(1), { room: 12, at: new Date(0), big: 2n ** 70n }) },
    { name: "mail", run: (input, ctx) => void record(input, ctx) },
  ]);
  const id = await sagas.start("trip", { who: "ada" });
  const r = await sagas.result(id);
  assert.equal(r.status, "completed");
  assert.deepEqual(r.output, { flight: "F-ada", hotel: { room: 12, at: new Date(0), big: 2n ** 70n }, mail: undefined });
  assert.equal(r.error, undefined);
  assert.deepEqual(seen.map((s) => s.step), ["flight", "hotel", "mail"]);
  assert.deepEqual(seen.map((s) => s.key), [`${id}/flight`, `${id}/hotel`, `${id}/mail`]);
  assert.deepEqual(seen.map((s) => s.attempt), [1, 1, 1]);
  assert.deepEqual(seen[0]!.results, {});
  assert.deepEqual(seen[1]!.results, { flight: "F-ada" });
  assert.deepEqual(Object.keys(seen[2]!.results as object), ["flight", "hotel"]);
  for (const s of seen) assert.deepEqual(s.input, { who: "ada" });
  const info = await sagas.get(id);
  assert.equal(info?.status, "completed");
  assert.equal(info?.step, null);
  assert.equal(info?.runner, null);
  assert.deepEqual((await sagas.list({ status: "running" })).length, 0);
  await sagas.close();
  await db.close();
});

test(`${R} retries follow the policy: tries counted, each delay within [min·2^(n-1), 1.5·min·2^(n-1)] capped at maxDelayMs`, async () => {
  const { db, sagas } = await setup("saga-retry");
  const policy = { attempts: 4, minDelayMs: 30, maxDelayMs: 50 };
  const tries: { attempt: number; atMs: number }[] = [];
  sagas.define("flaky", [
    {
      name: "call",
      retry: policy,
      run: (_i, ctx) => {
        tries.push({ attempt: ctx.attempt, atMs: Date.now() });
        if (ctx.attempt < 4) throw new Error(`try ${ctx.attempt} fails`);
        return "done";
      },
    },
  ]);
  const events: SagaEvent[] = [];
  const watcher = sagas.watch();
  const collecting = (async () => {
    for await (const e of watcher) {
      events.push(e);
      if (e.status === "completed") break;
    }
  })();
  const id = await sagas.start("flaky", null);
  const r = await sagas.result(id);
  await collecting;
  assert.equal(r.status, "completed");
  assert.deepEqual(r.output, { call: "done" });
  assert.deepEqual(tries.map((t) => t.attempt), [1, 2, 3, 4]);
  // The delays as scheduled (exact: the due time and the update come from one clock reading).
  const waits = events.filter((e) => e.nextAttemptAtMs !== null).map((e) => e.nextAttemptAtMs! - e.updatedAtMs);
  assert.equal(waits.length, 3, JSON.stringify(events, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
  const bounds = [[30, 45], [50, 50], [50, 50]];
  waits.forEach((w, i) => assert.ok(w >= bounds[i]![0]! && w <= bounds[i]![1]!, `retry ${i + 1} waited ${w} ms; policy bounds ${bounds[i]}`));
  // And as they happened: never earlier than scheduled (timers only fire late).
  for (let i = 1; i < tries.length; i++) assert.ok(tries[i]!.atMs - tries[i - 1]!.atMs >= waits[i - 1]! - 2, `try ${i + 1} came ${tries[i]!.atMs - tries[i - 1]!.atMs} ms after try ${i}`);
  assert.equal(events.find((e) => e.nextAttemptAtMs !== null)?.step, "call");
  await sagas.close();
  await db.close();
});

test(`${R} retryDelayMs: exponential from minDelayMs, jitter up to half, capped at maxDelayMs`, () => {
  const p = { attempts: 10, minDelayMs: 1_000, maxDelayMs: 30_000 };
  assert.equal(retryDelayMs(p, 1, 0), 1_000);
  assert.equal(retryDelayMs(p, 1, 0.999999), 1_000 * (1 + 0.999999 / 2));
  assert.equal(retryDelayMs(p, 2, 0), 2_000);
  assert.equal(retryDelayMs(p, 3, 0.5), 5_000);
  assert.equal(retryDelayMs(p, 5, 0), 16_000);
  assert.equal(retryDelayMs(p, 6, 0), 30_000);
  assert.equal(retryDelayMs(p, 1_000, 0.9), 30_000);
  assert.equal(retryDelayMs({ attempts: 3, minDelayMs: 0, maxDelayMs: 0 }, 2, 0.5), 0);
});

test(`${R} a step that fails for good makes the completed steps compensate in reverse order (steps without compensate skipped)`, async () => {
  const { db, sagas } = await setup("saga-comp");
  const log: string[] = [];
  const compensated: { step: string; key: string; results: unknown; attempt: number }[] = [];
  const step = (name: string, withCompensate = true) => ({
    name,
    run: () => (log.push(`run ${name}`), `${name}-out`),
    ...(withCompensate ? { compensate: (_i: unknown, ctx: SagaContext) => void (log.push(`undo ${name}`), compensated.push({ step: ctx.step, key: ctx.idempotencyKey, results: { ...ctx.results }, attempt: ctx.attempt })) } : {}),
  });
  sagas.define("order", [
    step("a"),
    step("b", false),
    step("c"),
    { name: "pay", run: () => (log.push("run pay"), Promise.reject(Object.assign(new TypeError("card declined"), { code: "DECLINED" }))), compensate: () => void log.push("undo pay") },
    step("never"),
  ]);
  const id = await sagas.start("order", { n: 1 });
  const r = await sagas.result(id);
  assert.equal(r.status, "compensated");
  assert.deepEqual(log, ["run a", "run b", "run c", "run pay", "run pay", "run pay", "undo c", "undo a"]);
  assert.deepEqual(r.output, { a: "a-out", b: "b-out", c: "c-out" });
  assert.deepEqual(r.error, { step: "pay", phase: "run", attempts: 3, name: "TypeError", message: "card declined", code: "DECLINED" });
  assert.equal(r.compensationErrors, undefined);
  assert.deepEqual(compensated.map((c) => c.key), [`${id}/c`, `${id}/a`]);
  assert.deepEqual(compensated[0]!.results, { a: "a-out", b: "b-out", c: "c-out" }, "a compensation sees its own step's output");
  assert.deepEqual(compensated.map((c) => c.attempt), [1, 1]);
  assert.equal((await sagas.list({ status: "compensated" }))[0]?.id, id);
  await sagas.close();
  await db.close();
});

test(`${R} a compensation that keeps failing is retried, then recorded; the earlier compensations still run; status "failed"`, async () => {
  const { db, sagas } = await setup("saga-failed");
  const log: string[] = [];
  sagas.define("order", [
    { name: "a", run: () => 1, compensate: () => void log.push("undo a") },
    { name: "b", run: () => 2, compensate: (_i, ctx) => { log.push(`undo b ${ctx.attempt}`); throw new Error("refund service down"); }, compensateRetry: { attempts: 2, minDelayMs: 1 } },
    { name: "c", run: () => { throw "plain string"; }, retry: { attempts: 1 } },
  ]);
  const id = await sagas.start("order", {});
  const r = await sagas.result(id);
  assert.equal(r.status, "failed");
  assert.deepEqual(log, ["undo b 1", "undo b 2", "undo a"]);
  assert.deepEqual(r.error, { step: "c", phase: "run", attempts: 1, name: "Error", message: "plain string" });
  assert.deepEqual(r.compensationErrors, [{ step: "b", phase: "compensate", attempts: 2, name: "Error", message: "refund service down" }]);
  assert.deepEqual((await sagas.list({ status: "failed" })).map((s) => s.id), [id]);
  await sagas.close();
  await db.close();
});

test(`${R} one idempotency key, one saga: sequential and concurrent starts (from three handles) return the same id`, async () => {
  const { dir, db, sagas } = await setup("saga-idem");
  let runs = 0;
  sagas.define("once", [{ name: "s", run: () => ++runs }]);
  const a = await sagas.start("once", { v: 1 }, { idempotencyKey: "order-42" });
  const b = await sagas.start("once", { v: 2 }, { idempotencyKey: "order-42" });
  assert.equal(a, b);
  assert.equal((await sagas.result(a)).output?.s, 1);
  // Other handles (independent, as other processes are) that do not define it.
  const others = await Promise.all([open(dir), open(dir), open(dir)]);
  const handles = await Promise.all(others.map((d) => Sagas.open(d)));
  const ids = await Promise.all(Array.from({ length: 24 }, (_, i) => handles[i % 3]!.start("once", i, { idempotencyKey: "burst" })));
  assert.equal(new Set(ids).size, 1, `one key made ${new Set(ids).size} sagas`);
  assert.equal((await handles[1]!.result(ids[0]!)).status, "completed");
  assert.equal(runs, 2);
  assert.equal((await sagas.list()).length, 2);
  // The key belongs to a saga of one name.
  sagas.define("other", [{ name: "s", run: () => 0 }]);
  assert.equal(await code(sagas.start("other", 1, { idempotencyKey: "order-42" })), "INVALID_ARGUMENT");
  for (const h of handles) await h.close();
  for (const d of others) await d.close();
  await sagas.close();
  await db.close();
});

test(`${R} result() waits from a handle that does not run the saga; TIMEOUT on timeoutMs and signal; INVALID_ARGUMENT for an unknown id`, async () => {
  const { dir, db, sagas } = await setup("saga-result");
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  sagas.define("slow", [{ name: "wait", run: async () => (await gate, "ok") }]);
  const id = await sagas.start("slow", null);
  const db2 = await open(dir);
  const watcherSide = await Sagas.open(db2);
  assert.equal(await code(watcherSide.result(id, { timeoutMs: 20 })), "TIMEOUT");
  const ac = new AbortController();
  const aborted = watcherSide.result(id, { signal: ac.signal });
  ac.abort();
  assert.equal(await code(aborted), "TIMEOUT");
  const waiting = watcherSide.result(id);
  let settled = false;
  void waiting.then(() => (settled = true));
  await sleep(30);
  assert.equal(settled, false);
  assert.equal((await watcherSide.get(id))?.status, "running");
  assert.equal((await watcherSide.get(id))?.runner?.runtime, runtime);
  release();
  assert.deepEqual(await waiting, { status: "completed", output: { wait: "ok" } });
  assert.equal(await code(watcherSide.result("no-such-saga")), "INVALID_ARGUMENT");
  // start() from a handle that does not define the name: another handle registered it.
  const id2 = await watcherSide.start("slow", 2);
  assert.equal((await sagas.result(id2)).status, "completed");
  assert.equal(await code(watcherSide.start("nobody-defines-this", 1)), "INVALID_ARGUMENT");
  // close() fails a waiting result() with CLOSED.
  let gate2!: () => void;
  const opened = new Promise<void>((r) => (gate2 = r));
  sagas.define("slower", [{ name: "wait", run: () => opened }]);
  const id3 = await sagas.start("slower", null);
  const pending = watcherSide.result(id3);
  await sleep(10);
  await watcherSide.close();
  assert.equal(await code(pending), "CLOSED");
  assert.equal(await code(() => watcherSide.start("slow", 1)), "CLOSED");
  gate2();
  assert.equal((await sagas.result(id3)).status, "completed");
  await db2.close();
  await sagas.close();
  await db.close();
});

test(`${R} watch() reports every change of a saga in version order; fromVersion resumes; filters by id and name`, async () => {
  const { db, sagas } = await setup("saga-watch");
  sagas.define("w", [{ name: "one", run: () => 1 }, { name: "two", run: (_i, ctx) => { if (ctx.attempt === 1) throw new Error("again"); return 2; } }]);
  sagas.define("noise", [{ name: "x", run: () => 0 }]);
  const byName = sagas.watch({ name: "w" });
  const id = await sagas.start("w", null);
  await sagas.start("noise", null);
  await sagas.result(id);
  const events: SagaEvent[] = [];
  for await (const e of byName) {
    events.push(e);
    if (e.status === "completed") break;
  }
  assert.ok(events.every((e) => e.id === id && e.name === "w"));
  const trail = events.map((e) => `${e.status}:${e.step}:${e.attempts}:${e.runner ? "owned" : "free"}`);
  assert.deepEqual(trail, ["running:one:0:free", "running:one:1:owned", "running:two:1:owned", "running:two:1:free", "running:two:2:owned", "completed:null:0:free"]);
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.version > events[i - 1]!.version);
  // Resuming after the third event repeats nothing and misses nothing.
  const resumed = sagas.watch({ id, fromVersion: events[2]!.version });
  const again: SagaEvent[] = [];
  for await (const e of resumed) {
    again.push(e);
    if (e.status === "completed") break;
  }
  assert.deepEqual(again.map((e) => e.version), events.slice(3).map((e) => e.version));
  // return() ends a pending next() promptly.
  const idle = sagas.watch({ id: "nothing-happens-here" });
  const next = idle.next();
  await idle.return!();
  assert.equal((await next).done, true);
  await sagas.close();
  await db.close();
});

test(`${R} list() filters by status and name, oldest first, with a limit`, async () => {
  const { db, sagas } = await setup("saga-list");
  sagas.define("ok", [{ name: "s", run: () => 1 }]);
  sagas.define("bad", [{ name: "s", run: () => { throw new Error("no"); }, retry: { attempts: 1 } }]);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await sagas.start(i % 2 ? "bad" : "ok", i));
  for (const id of ids) await sagas.result(id);
  assert.deepEqual((await sagas.list()).map((s) => s.id), ids);
  assert.deepEqual((await sagas.list({ status: "completed" })).map((s) => s.id), [ids[0], ids[2], ids[4]]);
  assert.deepEqual((await sagas.list({ status: "compensated", name: "bad" })).map((s) => s.id), [ids[1], ids[3]]);
  assert.deepEqual((await sagas.list({ name: "ok", limit: 2 })).map((s) => s.id), [ids[0], ids[2]]);
  assert.deepEqual(await sagas.list({ status: "running" }), []);
  assert.deepEqual(await sagas.list({ limit: 0 }), []);
  const one = (await sagas.list({ limit: 1 }))[0]!;
  assert.deepEqual(Object.keys(one).sort(), ["attempts", "createdAtMs", "id", "idempotencyKey", "name", "nextAttemptAtMs", "runner", "status", "step", "updatedAtMs"]);
  await sagas.close();
  await db.close();
});

test(`${R} close() waits for the try under way, records it, and gives the saga up: another handle finishes it, no step runs twice`, async () => {
  const dir = tempDir("saga-handover");
  const db1 = await open(dir);
  const db2 = await open(dir);
  const s1 = await Sagas.open(db1, { retry: FAST, resumeAfterMs: 50 });
  const s2 = await Sagas.open(db2, { retry: FAST, resumeAfterMs: 50 });
  const runs: string[] = [];
  let entered!: () => void;
  const inStep = new Promise<void>((r) => (entered = r));
  let abortSeen = false;
  s1.define("h", [
    { name: "one", run: async (_i, ctx) => { runs.push("1:one"); entered(); await new Promise((r) => ctx.signal.addEventListener("abort", r)); abortSeen = true; return "from-1"; } },
    { name: "two", run: () => (runs.push("1:two"), "x") },
  ]);
  const id = await s1.start("h", null);
  await inStep;
  s2.define("h", [
    { name: "one", run: () => (runs.push("2:one"), "from-2") },
    { name: "two", run: () => (runs.push("2:two"), "y") },
  ]);
  await sleep(120); // s2 sees s1 alive and leaves the saga alone
  assert.deepEqual(runs, ["1:one"]);
  await s1.close();
  assert.equal(abortSeen, true);
  const r = await s2.result(id);
  assert.deepEqual(r, { status: "completed", output: { one: "from-1", two: "y" } });
  assert.deepEqual(runs, ["1:one", "2:two"]);
  await s2.close();
  await db1.close();
  await db2.close();
});

test(`${R} values mutated after they were passed or read change nothing stored; an output that cannot be stored fails the saga at once (no retry) and compensates its step`, async () => {
  const { db, sagas } = await setup("saga-mutate");
  const inputs: unknown[] = [];
  const undone: string[] = [];
  sagas.define("m", [
    { name: "a", run: (input: { list: number[] }, ctx) => { inputs.push(structuredClone(input)); input.list.push(99); (ctx.results as Record<string, unknown>).hack = 1; return { n: 1 }; },
      compensate: () => void undone.push("a") },
    { name: "b", run: (input: { list: number[] }, ctx) => { inputs.push(structuredClone(input)); assert.deepEqual(ctx.results, { a: { n: 1 } }); return input.list.length === 0 ? () => "a function" : "ok"; },
      compensate: () => void undone.push("b") },
  ]);
  const input = { list: [1, 2] };
  const id = await sagas.start("m", input);
  input.list.push(3);
  const r = await sagas.result(id);
  assert.equal(r.status, "completed");
  assert.deepEqual(r.output, { a: { n: 1 }, b: "ok" });
  assert.deepEqual(inputs, [{ list: [1, 2] }, { list: [1, 2] }]);
  inputs.length = 0;
  // b returns a function: it ran once (not retried), and both steps are undone, b first.
  const failed = await sagas.start("m", { list: [] });
  const f = await sagas.result(failed);
  assert.equal(f.status, "compensated", JSON.stringify(f));
  assert.equal(f.error?.step, "b");
  assert.equal(f.error?.code, "INVALID_VALUE");
  assert.equal(f.error?.attempts, 1);
  assert.deepEqual(f.output, { a: { n: 1 } });
  assert.equal(inputs.length, 2);
  assert.deepEqual(undone, ["b", "a"]);
  r.output!.a = "changed";
  assert.deepEqual((await sagas.result(id)).output, { a: { n: 1 }, b: "ok" });
  // One try of b in the saga that completed.
  const events: SagaEvent[] = [];
  for await (const e of sagas.watch({ id, fromVersion: 0n })) {
    events.push(e);
    if (e.status === "completed") break;
  }
  assert.ok(events.some((e) => e.step === "b" && e.attempts === 1));
  assert.ok(!events.some((e) => e.step === "b" && e.attempts === 2));
  await sagas.close();
  await db.close();
});

test(`${R} bad input gets INVALID_ARGUMENT (or READ_ONLY, INVALID_VALUE, CLOSED) and changes nothing`, async () => {
  const { dir, db, sagas } = await setup("saga-bad");
  const run = () => 1;
  const bad: [string, () => unknown][] = [
    ["no name", () => sagas.define("", [{ name: "s", run }])],
    ["name not a string", () => sagas.define(42 as unknown as string, [{ name: "s", run }])],
    ["huge name", () => sagas.define("x".repeat(300), [{ name: "s", run }])],
    ["no steps", () => sagas.define("x", [])],
    ["steps not an array", () => sagas.define("x", {} as never)],
    ["step not an object", () => sagas.define("x", [null as never])],
    ["duplicate step names", () => sagas.define("x", [{ name: "s", run }, { name: "s", run }])],
    ["run not a function", () => sagas.define("x", [{ name: "s", run: "go" as never }])],
    ["run missing", () => sagas.define("x", [{ name: "s" } as never])],
    ["compensate not a function", () => sagas.define("x", [{ name: "s", run, compensate: 1 as never }])],
    ["typo in a step field", () => sagas.define("x", [{ name: "s", run, compensation: run } as never])],
    ["attempts 0", () => sagas.define("x", [{ name: "s", run, retry: { attempts: 0 } }])],
    ["attempts 1.5", () => sagas.define("x", [{ name: "s", run, retry: { attempts: 1.5 } }])],
    ["attempts huge", () => sagas.define("x", [{ name: "s", run, retry: { attempts: 1e9 } }])],
    ["negative delay", () => sagas.define("x", [{ name: "s", run, retry: { minDelayMs: -1 } }])],
    ["NaN delay", () => sagas.define("x", [{ name: "s", run, retry: { maxDelayMs: NaN } }])],
    ["max below min", () => sagas.define("x", [{ name: "s", run, retry: { minDelayMs: 10, maxDelayMs: 5 } }])],
    ["unknown retry field", () => sagas.define("x", [{ name: "s", run, retry: { tries: 3 } as never }])],
    ["retry not an object", () => sagas.define("x", [{ name: "s", run, retry: 3 as never }])],
    ["lone surrogate", () => sagas.define("x\ud800", [{ name: "s", run }])],
  ];
  for (const [what, f] of bad) assert.equal(await code(f), "INVALID_ARGUMENT", what);
  assert.deepEqual(sagas.defined, []);
  sagas.define("x", [{ name: "s", run }]);
  assert.equal(await code(() => sagas.define("x", [{ name: "s", run }])), "INVALID_ARGUMENT", "defined twice");
  assert.equal(await code(sagas.start("unknown-saga", 1)), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.start("x", 1, { idempotencyKey: "" })), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.start("x", 1, { idempotencyKey: 7 as never })), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.start("x", 1, { idem: "k" } as never)), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.start("x", () => 1)), "INVALID_VALUE");
  assert.equal(await code(sagas.start("x", { f: Symbol("s") })), "INVALID_VALUE");
  assert.equal(await code(sagas.result(42 as never)), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.result("x", { timeoutMs: -1 })), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.list({ status: "done" as never })), "INVALID_ARGUMENT");
  assert.equal(await code(sagas.list({ limit: -1 })), "INVALID_ARGUMENT");
  assert.equal(await code(() => sagas.watch({ signal: "no" as never })), "INVALID_ARGUMENT");
  assert.equal(await code(Sagas.open(db, { namespace: "" })), "INVALID_ARGUMENT");
  assert.equal(await code(Sagas.open(db, { retries: 3 } as never)), "INVALID_ARGUMENT");
  assert.equal(await code(Sagas.open(db, { resumeAfterMs: 0 })), "INVALID_ARGUMENT");
  assert.equal(await code(Sagas.open(db, { concurrency: 0 })), "INVALID_ARGUMENT");
  assert.equal(await code(Sagas.open({} as never)), "INVALID_ARGUMENT");
  assert.deepEqual(await sagas.list(), [], "nothing was started");
  // A read-only handle lists and waits, but neither defines nor starts.
  const ro = await open(dir, { readOnly: true });
  const roSagas = await Sagas.open(ro);
  assert.equal(await code(() => roSagas.define("y", [{ name: "s", run }])), "READ_ONLY");
  assert.equal(await code(roSagas.start("x", 1)), "READ_ONLY");
  assert.deepEqual(await roSagas.list(), []);
  assert.equal(await code(Sagas.open(ro, { namespace: "missing" })), "NAMESPACE_NOT_FOUND");
  await roSagas.close();
  await ro.close();
  await sagas.close();
  assert.equal(await code(() => sagas.define("z", [{ name: "s", run }])), "CLOSED");
  await db.close();
});

test(`${R} many sagas at once, bounded by concurrency: every one completes, each step once`, async () => {
  const { db, sagas } = await setup("saga-many", { concurrency: 4 });
  let running = 0;
  let most = 0;
  const counts = new Map<string, number>();
  sagas.define("n", [
    { name: "a", run: async (_i, ctx) => { running++; most = Math.max(most, running); await sleep(1); running--; counts.set(ctx.idempotencyKey, (counts.get(ctx.idempotencyKey) ?? 0) + 1); } },
    { name: "b", run: (_i, ctx) => void counts.set(ctx.idempotencyKey, (counts.get(ctx.idempotencyKey) ?? 0) + 1) },
  ]);
  const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => sagas.start("n", i)));
  const results = await Promise.all(ids.map((id) => sagas.result(id)));
  assert.ok(results.every((r) => r.status === "completed"));
  assert.ok(most <= 4, `ran ${most} at once`);
  assert.equal(counts.size, 120);
  assert.ok([...counts.values()].every((n) => n === 1));
  await sagas.close();
  await db.close();
});

/** Makes the saga look owned by a runner whose process is gone (a lease id with no lease file). */
async function orphan(db: Database, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const rec = await tx.get<Record<string, unknown>>("sagas", ["saga", id]);
    tx.set("sagas", ["saga", id], { ...rec, owner: "deadbeefdeadbeef", ownerPid: 999999, ownerRuntime: "node" });
    tx.set("sagas", ["run", rec!.name as string, id], { owner: "deadbeefdeadbeef", dueAtMs: 0 });
  });
}

test(`${R} a saga whose runner died is taken over; if that try was the step's last, the step fails for good (SagaRunnerLost) and compensates`, async () => {
  const dir = tempDir("saga-lost");
  const db = await open(dir);
  const first = await Sagas.open(db, { retry: FAST, resumeAfterMs: 40 });
  let blocked!: () => void;
  const inStep = new Promise<void>((r) => (blocked = r));
  const hang = async (_i: unknown, ctx: SagaContext) => {
    blocked();
    await new Promise((r) => ctx.signal.addEventListener("abort", r));
    return "too late";
  };
  first.define("one-shot", [{ name: "a", run: () => "a" , compensate: () => void 0 }, { name: "b", run: hang, retry: { attempts: 1 } }]);
  first.define("retried", [{ name: "a", run: () => "a" }, { name: "b", run: hang }]);
  const lastTry = await first.start("one-shot", null);
  await inStep;
  await orphan(db, lastTry);
  await first.close(); // its try ends on the abort; its outcome is not written: the saga is not its own any more
  const db2 = await open(dir);
  const second = await Sagas.open(db2, { retry: FAST, resumeAfterMs: 40 });
  const undone: string[] = [];
  second.define("one-shot", [{ name: "a", run: () => "a", compensate: (_i, ctx) => void undone.push(ctx.idempotencyKey) }, { name: "b", run: () => "b", retry: { attempts: 1 } }]);
  const r = await second.result(lastTry, { timeoutMs: 30_000 });
  assert.equal(r.status, "compensated");
  assert.equal(r.error?.name, "SagaRunnerLost");
  assert.equal(r.error?.step, "b");
  assert.match(r.error!.message, /pid 999999/);
  assert.deepEqual(undone, [`${lastTry}/a`]);
  // With tries left, the new runner tries again: try 2.
  const third = await Sagas.open(db, { retry: FAST });
  let entered!: () => void;
  const again = new Promise<void>((res) => (entered = res));
  third.define("retried", [{ name: "a", run: () => "a" }, { name: "b", run: async (_i, ctx) => { entered(); await new Promise((res) => ctx.signal.addEventListener("abort", res)); return "never"; } }]);
  const id = await third.start("retried", null);
  await again;
  await orphan(db, id);
  await third.close();
  const attempts: number[] = [];
  second.define("retried", [{ name: "a", run: () => "a" }, { name: "b", run: (_i, ctx) => (attempts.push(ctx.attempt), "b") }]);
  assert.deepEqual((await second.result(id, { timeoutMs: 30_000 })).output, { a: "a", b: "b" });
  assert.deepEqual(attempts, [2]);
  await second.close();
  await db2.close();
  await db.close();
});

test(`${R} dropping the namespace fails a waiting result() with NAMESPACE_NOT_FOUND`, async () => {
  const { db, sagas } = await setup("saga-drop");
  sagas.define("stuck", [{ name: "s", run: (_i, ctx) => new Promise((r) => ctx.signal.addEventListener("abort", r)) }]);
  const id = await sagas.start("stuck", null);
  const waiting = sagas.result(id);
  await sleep(20);
  await db.dropNamespace("sagas");
  assert.equal(await code(waiting), "NAMESPACE_NOT_FOUND");
  await sagas.close();
  await db.close();
});

test(`${R} txtdb doctor counts sagas by state and flags one whose runner died with nobody to take it over, and a failed one`, { skip: !canSpawn }, async () => {
  const { runCli } = await import("./clirun.ts");
  const { dir, db, sagas } = await setup("saga-doctor");
  sagas.define("fails", [{ name: "a", run: () => 1, compensate: () => { throw new Error("cannot undo"); }, compensateRetry: { attempts: 1 } }, { name: "b", run: () => { throw new Error("no"); }, retry: { attempts: 1 } }]);
  const failed = await sagas.start("fails", null);
  assert.equal((await sagas.result(failed)).status, "failed");
  let entered!: () => void;
  const inStep = new Promise<void>((r) => (entered = r));
  sagas.define("held", [{ name: "wait", run: (_i, ctx) => (entered(), new Promise((r) => ctx.signal.addEventListener("abort", r))) }]);
  const held = await sagas.start("held", null);
  await inStep;
  const stats = runCli(runtime === "bun" ? "bun" : "node", ["stats", dir]);
  assert.equal(stats.code, 0, stats.err);
  assert.deepEqual(JSON.parse(stats.out).sagas, { sagas: { running: 1, compensating: 0, completed: 0, compensated: 0, failed: 1, stuck: 0 } });
  let r = runCli(runtime === "bun" ? "bun" : "node", ["doctor", dir]);
  assert.match(r.out, /sagas in "sagas": running 1, compensating 0, completed 0, compensated 0, failed 1/, r.out + r.err);
  assert.doesNotMatch(r.out, /is stuck/, "a saga its live runner runs is not stuck");
  assert.match(r.out, /1 sagas in "sagas" failed/);
  assert.equal(r.code, 1);
  await orphan(db, held);
  await sagas.close();
  r = runCli(runtime === "bun" ? "bun" : "node", ["doctor", dir]);
  assert.match(r.out, new RegExp(`warning: saga ${held} \\("held", running at step "wait"\\) is stuck: its runner's process \\(pid 999999, node\\) died`), r.out + r.err);
  assert.equal(JSON.parse(runCli(runtime === "bun" ? "bun" : "node", ["stats", dir]).out).sagas.sagas.stuck, 1);
  await db.close();
});

test(`${R} stats().sagas and metrics() count sagas by status in the namespaces of open handles, from every handle's writes`, async () => {
  const dir = tempDir("saga-stats");
  const db = await open(dir, { durability: "none" });
  const zero = { running: 0, compensating: 0, completed: 0, compensated: 0, failed: 0 };
  assert.deepEqual(db.stats().sagas, zero, "no handle open: nothing counted");
  const sagas = await Sagas.open(db, { namespace: "sagas", retry: FAST });
  // A second database handle on the directory reads only what the files say, as another process does.
  const other = await open(dir, { durability: "none" });
  const watching = await Sagas.open(other, { namespace: "sagas" }); // defines nothing: no watcher keeps its view fresh
  const extra = await Sagas.open(other, { namespace: "more" });
  assert.deepEqual(other.stats().sagas, zero);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  sagas.define("ok", [{ name: "a", run: () => 1 }]);
  sagas.define("gated", [{ name: "a", run: () => gate }]);
  sagas.define("undo", [{ name: "a", run: () => 1, compensate: () => 0 }, { name: "b", run: () => { throw new Error("no"); }, retry: { attempts: 1 } }]);
  sagas.define("broken", [{ name: "a", run: () => 1, compensate: () => { throw new Error("stuck"); }, compensateRetry: { attempts: 1 } }, { name: "b", run: () => { throw new Error("no"); }, retry: { attempts: 1 } }]);
  for (let i = 0; i < 3; i++) await sagas.result(await sagas.start("ok", i));
  await sagas.result(await sagas.start("undo", null));
  await sagas.result(await sagas.start("broken", null));
  const gated = await sagas.start("gated", null);
  const expected = { running: 1, compensating: 0, completed: 3, compensated: 1, failed: 1 };
  assert.deepEqual(db.stats().sagas, expected);
  assert.deepEqual(other.stats().sagas, expected, "the other handle counts the sagas the first one wrote");
  const metrics = other.metrics();
  for (const [status, n] of Object.entries(expected)) assert.match(metrics, new RegExp(`^txtdb_sagas\\{[^}]*status="${status}"\\} ${n}$`, "m"), metrics);
  assert.match(metrics, /^# TYPE txtdb_sagas gauge$/m);
  release();
  await sagas.result(gated);
  assert.deepEqual(other.stats().sagas, { ...expected, running: 0, completed: 4 });
  await watching.close();
  assert.deepEqual(other.stats().sagas, zero, "the closed handle's namespace is no longer counted; the open one holds none");
  await extra.close();
  assert.deepEqual(db.stats().sagas, { ...expected, running: 0, completed: 4 });
  await sagas.close();
  assert.deepEqual(db.stats().sagas, zero);
  await other.close();
  await db.close();
});

test(`${R} an output too big to store (maxValueBytes) fails the saga at once, without a retry, and the step's own compensation runs`, async () => {
  const dir = tempDir("saga-big");
  const db = await open(dir, { durability: "none", maxValueBytes: 4_096 });
  const sagas = await Sagas.open(db, { retry: FAST });
  try {
    let runs = 0, undone = 0;
    sagas.define("huge", [{ name: "s", run: () => (runs++, "x".repeat(10_000)), compensate: () => void undone++, retry: { attempts: 2 } }]);
    const r = await sagas.result(await sagas.start("huge", null), { timeoutMs: 30_000 });
    assert.equal(r.status, "compensated");
    assert.equal(r.error?.code, "INVALID_VALUE"); // what a value over maxValueBytes is
    assert.equal(r.error?.attempts, 1);
    assert.deepEqual(r.output, {});
    assert.equal(runs, 1);
    assert.equal(undone, 1);
  } finally {
    await sagas.close();
    await db.close();
  }
});

test(`${R} a handle whose definition has other steps leaves a saga alone; one with the saga's steps runs it`, async () => {
  const dir = tempDir("saga-mismatch");
  const db = await open(dir, { durability: "none" });
  const definer = await Sagas.open(db, { retry: FAST });
  definer.define("v", [{ name: "a", run: () => 1 }, { name: "b", run: () => 2 }]);
  await definer.close(); // its definition stays registered in the store
  const starter = await Sagas.open(db);
  const id = await starter.start("v", null);
  const other = await Sagas.open(db, { retry: FAST });
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (m: string) => void warnings.push(m);
  try {
    let ran = false;
    other.define("v", [{ name: "a", run: () => (ran = true) }, { name: "c", run: () => 3 }]);
    await sleep(150);
    assert.equal(ran, false);
    assert.equal((await starter.get(id))?.attempts, 0);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0]!, /started with steps \["a","b"\]/);
  } finally {
    console.warn = warn;
  }
  const right = await Sagas.open(db, { retry: FAST });
  right.define("v", [{ name: "a", run: () => 1 }, { name: "b", run: () => 2 }]);
  assert.deepEqual(await starter.result(id), { status: "completed", output: { a: 1, b: 2 } });
  for (const s of [starter, other, right]) await s.close();
  await db.close();
});
