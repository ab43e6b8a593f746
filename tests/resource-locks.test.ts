/**
 * Locks on named resources within one process, on every runtime: two or three Database
 * handles on one store are independent owners, so the matrix, the hierarchy, the queue
 * order, deadlocks, timeouts, aborts, close and bad input are all checked here on Node,
 * Deno and Bun (resource-locks-multiprocess.test.ts does it across processes).
 */
import { assert, runtime, sleep, tempDir, test, waitUntil, outcomeCode } from "./harness.ts";
import { open, ResourceLock, TxtDbError } from "txtdb";
import type { Database, LockMode } from "txtdb";

const R = `[${runtime}]`;
const MODES: LockMode[] = ["IS", "IX", "S", "SIX", "X"];
const COMPATIBLE: Record<string, string[]> = { IS: ["IS", "IX", "S", "SIX"], IX: ["IS", "IX"], S: ["IS", "S"], SIX: ["IS"], X: [] };

const code = (p: Promise<unknown>): Promise<string> => outcomeCode(p, "granted");

/** Resolves with what `p` settled as, or "pending" if it has not after a few turns of the loop. */
async function state(p: Promise<unknown>): Promise<string> {
  let s = "pending";
  p.then(() => (s = "granted"), (e: unknown) => (s = e instanceof TxtDbError ? e.code : String(e)));
  await sleep(30);
  return s;
}

async function two(label: string): Promise<[Database, Database, Database]> {
  const dir = tempDir(label);
  return [await open(dir), await open(dir), await open(dir)];
}

async function closeAll(dbs: Database[]): Promise<void> {
  for (const db of dbs) await db.close();
}

test(`${R} lock(): the compatibility matrix between two handles (owners) of one store`, async () => {
  const [a, b, c] = await two("rl-matrix");
  for (const held of MODES) {
    for (const asked of MODES) {
      const h = await a.lock(["m", held, asked], held);
      const got = await code(b.lock(["m", held, asked], asked, { timeoutMs: 0 }).then((l) => l.release()));
      assert.equal(got, COMPATIBLE[held]!.includes(asked) ? "granted" : "LOCK_TIMEOUT", `${held} held, ${asked} asked`);
      h.release();
    }
  }
  assert.deepEqual(c.locks(), []);
  await closeAll([a, b, c]);
});

test(`${R} lock(): an owner never conflicts with itself; re-asking a held or weaker mode is granted at once and counted`, async () => {
  const [a, b, c] = await two("rl-self");
  const x = await a.lock("r", "X");
  const s = await a.lock("r", "S", { timeoutMs: 0 });
  const x2 = await a.lock("r", "X", { timeoutMs: 0 });
  assert.equal(a.stats().resourceLockReentries, 2);
  assert.equal(a.stats().resourceLocksHeld, 3);
  assert.equal(a.locks().length, 1, "one entry in the table, counted three times");
  x.release();
  s.release();
  assert.equal(await code(b.lock("r", "IS", { timeoutMs: 0 })), "LOCK_TIMEOUT", "still held by x2");
  x2.release();
  x2.release(); // idempotent
  assert.ok(x2.released);
  assert.equal(await code(b.lock("r", "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  // A conversion goes ahead of waiting new requests: S held, X waited for by b, X asked by a.
  const s1 = await a.lock("conv", "S");
  const bx = b.lock("conv", "X");
  assert.equal(await state(bx), "pending");
  const upgraded = await a.lock("conv", "X", { timeoutMs: 0 });
  assert.deepEqual(c.locks().filter((l) => !l.waiting).map((l) => l.mode).sort(), ["S", "X"]);
  s1.release();
  assert.equal(await state(bx), "pending", "a still holds X");
  upgraded.release();
  (await bx).release();
  await closeAll([a, b, c]);
});

test(`${R} lock(): a lock on ["a", "b"] takes the intention lock on ["a"] first; its release and a refused request leave nothing`, async () => {
  const [a, b, c] = await two("rl-hier");
  const l = await a.lock(["a", "b", "c"], "S");
  assert.deepEqual(c.locks().map((i) => [i.resource, i.mode, i.waiting]), [["a", "IS", false], [["a", "b"], "IS", false], [["a", "b", "c"], "S", false]]);
  assert.equal(await code(b.lock(["a"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  const bix = await b.lock(["a", "b"], "IX", { timeoutMs: 0 }); // IX is compatible with IS
  assert.equal(await code(b.lock(["a", "b", "c"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  assert.deepEqual(c.locks().filter((i) => i.pid === b.platform.pid || i.mode !== "IS").map((i) => [i.resource, i.mode]).slice(-2), [["a", "IX"], [["a", "b"], "IX"]]);
  bix.release();
  l.release();
  await b.close();
  assert.deepEqual(c.locks(), [], "close() released b's locks; the refused request left no intention lock");
  await closeAll([a, c]);
});

test(`${R} lock(): first come, first served; a compatible request queues behind an earlier incompatible waiter`, async () => {
  const dir = tempDir("rl-fcfs");
  const dbs = await Promise.all([0, 1, 2, 3].map(() => open(dir)));
  const [h, w1, w2, w3] = dbs as [Database, Database, Database, Database];
  const held = await h.lock("q", "S");
  const order: string[] = [];
  const p1 = w1.lock("q", "X").then((l) => (order.push("w1"), l));
  await waitUntil(() => h.locks().some((l) => l.waiting), 5_000);
  const p2 = w2.lock("q", "X").then((l) => (order.push("w2"), l));
  await waitUntil(() => h.locks().filter((l) => l.waiting).length === 2, 5_000);
  const p3 = w3.lock("q", "S").then((l) => (order.push("w3"), l));
  assert.equal(await state(p3), "pending", "S overtook earlier X waiters");
  held.release();
  (await p1).release();
  (await p2).release();
  (await p3).release();
  assert.deepEqual(order, ["w1", "w2", "w3"]);
  const s = w1.stats();
  assert.equal(s.resourceLockWaits, 1);
  assert.equal(s.resourceLockWaitUs.count, 1);
  assert.ok(s.resourceLockWaitUs.max > 0);
  await closeAll(dbs);
});

test(`${R} lock(): timeoutMs and signal end a wait with LOCK_TIMEOUT, the request leaves the queue at once, and what queued behind it goes on`, async () => {
  const [a, b, c] = await two("rl-timeout");
  const held = await a.lock("t", "S");
  const t0 = performance.now();
  assert.equal(await code(b.lock("t", "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  assert.equal(await code(b.lock("t", "X", { timeoutMs: 50 })), "LOCK_TIMEOUT");
  assert.ok(performance.now() - t0 >= 45);
  assert.ok(c.locks().every((l) => !l.waiting), "no waiting entry left");
  const ac = new AbortController();
  const aborted = b.lock(["t"], "X", { signal: ac.signal });
  await waitUntil(() => c.locks().some((l) => l.waiting), 5_000);
  const behind = c.lock("t", "S");
  assert.equal(await state(behind), "pending", "S queued behind the X waiter");
  ac.abort();
  const e = await aborted.catch((x: unknown) => x);
  assert.ok(e instanceof TxtDbError && e.code === "LOCK_TIMEOUT", String(e));
  assert.deepEqual((e.details as { blockers: { mode: string }[] }).blockers.map((x) => x.mode), ["S"]);
  (await behind).release();
  const pre = new AbortController();
  pre.abort();
  assert.equal(await code(b.lock("free", "X", { signal: pre.signal })), "LOCK_TIMEOUT", "an aborted signal fails at once, even on a free resource");
  assert.deepEqual(c.locks().map((l) => [l.resource, l.mode, l.waiting]), [["t", "S", false]]);
  assert.equal(b.stats().resourceLockTimeouts, 4);
  held.release();
  await closeAll([a, b, c]);
});

test(`${R} lock(): deadlocks between two and three handles fail exactly the request that began waiting last with DEADLOCK; the victim keeps its locks`, async () => {
  const [a, b, c] = await two("rl-deadlock");
  const a1 = await a.lock("r1", "X");
  const b1 = await b.lock("r2", "S");
  const aw = a.lock("r2", "X");
  await waitUntil(() => c.locks().some((l) => l.waiting), 5_000);
  const e = await b.lock("r1", "S").catch((x: unknown) => x);
  assert.ok(e instanceof TxtDbError && e.code === "DEADLOCK", String(e));
  const cycle = (e.details as { cycle: { resource: unknown; mode: string; pid: number; runtime: string }[] }).cycle;
  assert.deepEqual(cycle.map((x) => [x.resource, x.mode]), [["r1", "S"], ["r2", "X"]]);
  assert.ok(cycle.every((x) => x.pid === a.platform.pid && x.runtime === a.platform.runtime));
  assert.equal(await state(aw), "pending", "the other request keeps waiting: the victim keeps r2");
  assert.equal(b.stats().deadlocks, 1);
  b1.release();
  (await aw).release();
  a1.release();
  // Three owners: a -> b -> c -> a, closed by c.
  const [x1, y1, z1] = [await a.lock("p1", "X"), await b.lock("p2", "X"), await c.lock("p3", "X")];
  const ax = a.lock("p2", "S");
  const by = b.lock("p3", "X");
  await waitUntil(() => c.locks().filter((l) => l.waiting).length === 2, 5_000);
  assert.equal(await code(c.lock("p1", "IS")), "DEADLOCK");
  assert.equal(await state(ax), "pending");
  assert.equal(await state(by), "pending");
  z1.release();
  (await by).release();
  y1.release();
  (await ax).release();
  x1.release();
  assert.equal(a.stats().deadlocks + b.stats().deadlocks + c.stats().deadlocks, 2);
  assert.deepEqual(c.locks(), []);
  await closeAll([a, b, c]);
});

test(`${R} close() releases the handle's locks and fails its waiting requests with CLOSED; lock() after close fails with CLOSED`, async () => {
  const [a, b, c] = await two("rl-close");
  const held = await a.lock("x", "X");
  const mine = await b.lock("y", "X");
  const waiting = b.lock("x", "S");
  await waitUntil(() => c.locks().some((l) => l.waiting), 5_000);
  await b.close();
  assert.equal(await code(waiting), "CLOSED");
  assert.ok(mine instanceof ResourceLock);
  mine.release(); // after close: nothing to do, no error
  assert.deepEqual(c.locks().map((l) => [l.resource, l.mode]), [["x", "X"]]);
  assert.equal(await code(b.lock("z", "X")), "CLOSED");
  assert.throws(() => b.locks(), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED");
  held.release();
  {
    await using scoped = await c.lock("w", "X");
    assert.equal(scoped.mode, "X");
  }
  assert.deepEqual(c.locks(), [], "await using released it");
  await closeAll([a, c]);
});

test(`${R} lock(): bad input fails with INVALID_ARGUMENT or INVALID_KEY and holds nothing; a read-only handle cannot lock`, async () => {
  const dir = tempDir("rl-bad");
  const db = await open(dir);
  const bad: [unknown, unknown, unknown, string][] = [
    ["r", "XX", undefined, "INVALID_ARGUMENT"],
    ["r", "x", undefined, "INVALID_ARGUMENT"],
    ["r", undefined, undefined, "INVALID_ARGUMENT"],
    [[], "X", undefined, "INVALID_ARGUMENT"],
    [["a", NaN], "X", undefined, "INVALID_KEY"],
    [[{}], "S", undefined, "INVALID_KEY"],
    [null, "S", undefined, "INVALID_KEY"],
    ["x".repeat(5000), "S", undefined, "INVALID_KEY"],
    ["r", "S", { timeoutMs: -1 }, "INVALID_ARGUMENT"],
    ["r", "S", { timeoutMs: "5" }, "INVALID_ARGUMENT"],
    ["r", "S", { signal: {} }, "INVALID_ARGUMENT"],
    ["r", "S", 5, "INVALID_ARGUMENT"],
  ];
  for (const [resource, mode, options, expected] of bad) {
    const got = await code((db.lock as (r: unknown, m: unknown, o: unknown) => Promise<unknown>)(resource, mode, options));
    assert.equal(got, expected, `lock(${String(resource).slice(0, 20)}, ${String(mode)}, ${JSON.stringify(options)})`);
  }
  assert.deepEqual(db.locks(), []);
  assert.equal(db.stats().resourceLocksHeld, 0);
  await db.close();
  const ro = await open(dir, { readOnly: true });
  assert.equal(await code(ro.lock("r", "S")), "READ_ONLY");
  assert.deepEqual(ro.locks(), []);
  await ro.close();
});

test(`${R} stats() and metrics() show locks held, waits, timeouts and deadlocks`, async () => {
  const [a, b, c] = await two("rl-stats");
  const l = await a.lock(["s", 1], "X");
  const s = a.stats();
  assert.equal(s.resourceLocksHeld, 1);
  assert.equal(s.resourceLocksWaiting, 0);
  assert.equal(await code(b.lock(["s", 1], "S", { timeoutMs: 10 })), "LOCK_TIMEOUT");
  const m = b.metrics();
  for (const [name, value] of [["txtdb_resource_locks_held", "0"], ["txtdb_resource_lock_waits_total", "1"], ["txtdb_resource_lock_timeouts_total", "1"], ["txtdb_deadlocks_total", "0"], ["txtdb_resource_lock_wait_seconds_count", "1"]]) {
    assert.ok(new RegExp(`^${name}\\{[^}]*\\} ${value}$`, "m").test(m), `metrics() has ${name} ${value}`);
  }
  l.release();
  await closeAll([a, b, c]);
});
