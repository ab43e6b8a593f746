/**
 * Sagas under hostile and careless use, in one process: steps that throw what cannot be
 * stored as it is (lone surrogates, getters that throw, huge messages cut inside a pair),
 * names and ids that cannot be keys, and damaged saga records. Every step's real failure is
 * recorded (never passed off as a crash), bad input is INVALID_ARGUMENT, and nothing spins.
 */
import { assert, runtime, sleep, tempDir, test, outcomeCode } from "./harness.ts";
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
      // 4 095 characters, then a pair: the cut at 4 096 falls inside it.
      ["cut-pair", () => new Error("m".repeat(4_095) + "\u{1F600}".repeat(10)), (f) => assert.ok(f.message.length <= 4_097 && f.message.startsWith("mmm"))],
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
