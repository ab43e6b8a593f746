/**
 * Locks on named resources when a process is killed at every file operation of acquire
 * and release, on the simulated platform: process P (killed at its n-th operation, a
 * write there possibly torn) takes, refuses and releases locks while process Q holds one
 * and waits for one that P holds. Whatever the step P dies at, the table never grants two
 * incompatible holders, Q's wait ends granted (P's lock does not outlive P), and a third
 * process then gets every lock P could have held.
 *
 * A second scenario kills P while it waits: its request queued behind Q's lock, the wait's
 * reads of the table, its timeout taking it out of the queue, a request that then goes
 * through. Q's later requests must never wait for P's dead entries.
 *
 * Every failure message names the seed and the operation; replay one point with
 * TXTDB_SEED=<seed> TXTDB_KILL_AT=<n> (Node and Bun legs).
 */
import { assert, envVar, sleep, test, waitUntil } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, LockInfo } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import type { SimPlatform } from "txtdb/adapters/sim";

const BASE_SEED = Number(envVar("TXTDB_SEED") ?? 7000);
const ONLY_AT = envVar("TXTDB_KILL_AT") === undefined ? undefined : Number(envVar("TXTDB_KILL_AT"));

const COMPATIBLE: Record<string, string[]> = { IS: ["IS", "IX", "S", "SIX"], IX: ["IS", "IX"], S: ["IS", "S"], SIX: ["IS"], X: [] };

function noIncompatibleHolders(listed: LockInfo[], where: string): void {
  const granted = listed.filter((l) => !l.waiting);
  for (const a of granted) {
    for (const b of granted) {
      if (a === b || a.pid === b.pid || JSON.stringify(a.resource) !== JSON.stringify(b.resource)) continue;
      assert.ok(COMPATIBLE[a.mode]!.includes(b.mode), `${where}: ${a.mode} (pid ${a.pid}) and ${b.mode} (pid ${b.pid}) both granted on ${JSON.stringify(a.resource)}`);
    }
  }
}

/** P's part, from the armed point: every kind of table change (grant, refusal, hierarchy, a release that grants a waiter, close). */
async function pSteps(P: Database, held: { release(): void }): Promise<void> {
  const refused = await P.lock(["a", "c"], "X", { timeoutMs: 0 }).catch((e: unknown) => e);
  if (!(refused instanceof TxtDbError) || refused.code !== "LOCK_TIMEOUT") throw refused instanceof Error ? refused : new Error("X under Q's S was granted");
  const d = await P.lock(["a", "d"], "S", { timeoutMs: 0 });
  const e = await P.lock(["e"], "X", { timeoutMs: 0 });
  held.release(); // grants Q's waiting X on b
  d.release();
  const again = await P.lock(["e"], "S", { timeoutMs: 0 }); // re-asking a weaker mode: no file operation
  again.release();
  e.release();
  await P.close();
}

async function runPoint(seed: number, killAt: number | undefined): Promise<number> {
  const world = new SimWorld(seed);
  const pp = world.process();
  const where = `seed ${seed}, P killed at its operation ${killAt ?? "never"}`;
  const P = await open("/db", { adapter: pp });
  const Q = await open("/db", { adapter: world.process() });
  const hb = await P.lock(["b"], "X");
  const qWait = Q.lock(["b"], "X", { timeoutMs: 30_000 });
  assert.ok((await waitUntil(() => Q.locks().some((l) => l.waiting), 5_000)) >= 0, `${where}: Q's request never queued`);
  const qa = await Q.lock(["a"], "S");
  const opsBefore = pp.opCount;
  if (killAt !== undefined) pp.killAtOp(killAt);
  let failure: unknown;
  await pSteps(P, hb).catch((e) => (failure = e));
  const ops = pp.opCount - opsBefore;
  if (killAt === undefined) assert.equal(failure, undefined, `${where}: ${String(failure)}`);
  else if (!pp.killed) assert.equal(failure, undefined, `${where}: P failed without being killed: ${String(failure)}`);
  if (pp.killed) await P.close().catch(() => {});

  // Q's wait ends granted: P released b, or died holding it.
  const qb = await qWait.catch((e: unknown) => assert.fail(`${where}: Q's wait for P's lock ended with ${String(e)}`));
  const R = await open("/db", { adapter: world.process() });
  noIncompatibleHolders(R.locks(), where);
  const refused = await R.lock(["b"], "S", { timeoutMs: 0 }).catch((e: unknown) => e);
  assert.ok(refused instanceof TxtDbError && refused.code === "LOCK_TIMEOUT", `${where}: S on b granted while Q holds X on it`);
  assert.ok(R.locks().every((l) => !l.waiting), `${where}: a refused request stayed queued`);
  qb.release();
  qa.release();
  // Nothing of P's outlives P: R gets, without waiting, every lock P held or asked for.
  for (const [resource, mode] of [[["a", "c"], "X"], [["a", "d"], "X"], [["e"], "X"], [["b"], "X"], [["a"], "X"]] as const) {
    const l = await R.lock([...resource], mode, { timeoutMs: 0 }).catch((e: unknown) => assert.fail(`${where}: ${JSON.stringify(resource)} ${mode}: ${String(e)}; table ${JSON.stringify(R.locks())}`));
    l.release();
  }
  assert.deepEqual(R.locks(), [], `${where}: locks left behind`);
  await Q.close();
  await R.close();
  return ops;
}

test("[sim] a process killed at every file operation of acquire and release: never two incompatible holders, never a dead holder's lock", async () => {
  const total = await runPoint(BASE_SEED, undefined);
  assert.ok(total > 15, `P's part has ${total} file operations`);
  if (envVar("TXTDB_VERBOSE")) console.log(`P's part: ${total} file operations`);
  for (let at = 1; at <= total + 1; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    await runPoint(BASE_SEED + at, at);
  }
});

/** P waits behind Q, times out, then takes what Q released; killed at its n-th operation. */
async function runWaiterPoint(seed: number, killAt: number | undefined): Promise<number> {
  const world = new SimWorld(seed);
  const pp = world.process();
  const where = `seed ${seed}, waiting P killed at its operation ${killAt ?? "never"}`;
  const Q = await open("/db", { adapter: world.process() });
  const P = await open("/db", { adapter: pp });
  const q = await Q.lock(["w", 1], "X");
  const opsBefore = pp.opCount;
  if (killAt !== undefined) pp.killAtOp(killAt);
  let failure: unknown;
  const pPart = (async () => {
    const timedOut = await P.lock(["w", 1], "S", { timeoutMs: 20 }).catch((e: unknown) => e);
    if (!(timedOut instanceof TxtDbError) || timedOut.code !== "LOCK_TIMEOUT") throw timedOut instanceof Error ? timedOut : new Error("granted under X");
    const queued = P.lock(["w", 2], "X", { timeoutMs: 5_000 });
    return await queued;
  })().catch((e: unknown) => {
    failure = e;
    return undefined;
  });
  const q2 = await Q.lock(["w", 2], "S"); // P's X on ["w", 2] queues behind it, or P is dead already
  await sleep(15);
  q2.release();
  const got = await pPart;
  const ops = pp.opCount - opsBefore;
  if (!pp.killed) assert.equal(failure, undefined, `${where}: P failed without being killed: ${String(failure)}`);
  else await P.close().catch(() => {});
  noIncompatibleHolders(Q.locks(), where);
  q.release();
  if (!pp.killed) got!.release();
  // Nothing of P's outlives P (or its release): Q gets everything at once.
  for (const resource of [["w", 1], ["w", 2], ["w"]]) {
    const l = await Q.lock(resource, "X", { timeoutMs: 0 }).catch((e: unknown) => assert.fail(`${where}: ${JSON.stringify(resource)}: ${String(e)}; table ${JSON.stringify(Q.locks())}`));
    l.release();
  }
  assert.deepEqual(Q.locks(), [], `${where}: locks left behind`);
  // P may have died after its part (its release or close counted on): close what is left.
  await P.close().catch(() => {});
  await Q.close();
  return ops;
}

test("[sim] a waiting process killed at every file operation of its wait, timeout and next request: its entries never block anyone", async () => {
  const total = await runWaiterPoint(BASE_SEED, undefined);
  assert.ok(total > 8, `P's part has ${total} file operations`);
  if (envVar("TXTDB_VERBOSE")) console.log(`waiting P's part: ${total} file operations`);
  // The wait's reads of the table depend on timers: P's operations differ a little from run to run.
  for (let at = 1; at <= total + 3; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    await runWaiterPoint(BASE_SEED + 31 * at, at);
  }
});
