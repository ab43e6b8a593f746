/**
 * Expiring keys through crashes on the simulated platform: commits set keys with and
 * without expireIn while the (hand-moved) wall clock advances, so that compactions fold
 * expired versions as deletes over older permanent versions and merge level 0 into level 1;
 * a crash (or torn write) at every file operation, then a power loss. After reopening: a
 * prefix of history with every resolved commit, an expired key absent (never the older
 * version it hid), a live one present, and check() clean.
 *
 * Replay one point with TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, test } from "./harness.ts";
import { atEveryOperation, baseSeed, crashOrTear, reopen } from "./simfaults.ts";
import { open } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import { ManualClock } from "./expiryclock.ts";

const BASE_SEED = baseSeed(7000);
const ROUNDS = 16;
const STEP_MS = 5;
const EXPIRE_IN_MS = 12;
const START_MS = 1_800_000_000_000;

/**
 * Commit j (at START_MS + STEP_MS·(j−1)) sets n = j, and x[j % 4] = j: without expiry when
 * j % 3 == 0, else with expireIn; then the clock moves STEP_MS on. Compacts every 4 commits.
 */
async function scenario(world: SimWorld, clock: ManualClock, h: { acked: number }): Promise<void> {
  const db = await open("/db", { adapter: clock.platform(world.process()), namespaces: ["main"], segmentBytes: 256, autoCompactBytes: 0 });
  for (let j = 1; j <= ROUNDS; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["x", j % 4], j, j % 3 === 0 ? undefined : { expireIn: EXPIRE_IN_MS });
    }, { maxRetries: 0 });
    h.acked = j;
    clock.advance(STEP_MS);
    if (j % 4 === 0) await db.compact();
  }
  await db.close();
}

/** x[r] after commits 1..n, read at `nowMs`. */
function expected(n: number, r: number, nowMs: number): number | undefined {
  let last = 0;
  for (let j = 1; j <= n; j++) if (j % 4 === r) last = j;
  if (last === 0) return undefined;
  const expiring = last % 3 !== 0;
  return expiring && START_MS + STEP_MS * (last - 1) + EXPIRE_IN_MS <= nowMs ? undefined : last;
}

async function verify(db: Database, clock: ManualClock, h: { acked: number }, where: string): Promise<void> {
  const n = (await db.get<number>("main", "n")) ?? 0;
  assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (n=${n})`);
  const want = [0, 1, 2, 3].map((r) => expected(n, r, clock.nowMs));
  assert.deepEqual(await db.getMany("main", [0, 1, 2, 3].map((r) => ["x", r])), want, `${where}: x after ${n} commits at +${clock.nowMs - START_MS} ms`);
  const listed: unknown[] = [];
  for await (const e of db.list("main", { prefix: ["x"] })) listed.push(e.value);
  assert.deepEqual(listed, want.filter((v) => v !== undefined), `${where}: list`);
  assert.equal(await db.count("main", { prefix: ["x"] }), listed.length, `${where}: count`);
  const report = await db.check();
  assert.ok(report.ok, `${where}: check() after recovery: ${JSON.stringify(report.problems)}`);
}

test("[sim] expiry: a crash (or torn write) at every file operation of compactions that fold expired versions over older ones, then power loss: a prefix, expired keys absent, check() clean", async () => {
  const probe = new SimWorld(BASE_SEED);
  const probeClock = new ManualClock(START_MS);
  await scenario(probe, probeClock, { acked: 0 });
  const total = probe.counters.ops;
  const db0 = await open("/db", { adapter: probeClock.platform(probe.powerLoss().process()) });
  await verify(db0, probeClock, { acked: ROUNDS }, "no crash");
  assert.ok(db0.stats().tableBytesByLevel[1]! > 0, `level 1 holds the merges: ${JSON.stringify(db0.stats().tableBytesByLevel)}`);
  await db0.close();
  await atEveryOperation({
    total,
    kinds: crashOrTear,
    seed: (at, kind) => BASE_SEED + 13 * at + (kind === "tear" ? 1 : 0),
    state: () => ({ h: { acked: 0 }, clock: new ManualClock(START_MS) }),
    run: (world, { h, clock }) => scenario(world, clock, h),
    check: async (world, { h, clock }, where) => {
      const db = await reopen(where, { adapter: clock.platform(world.powerLoss().process()), namespaces: ["main"] });
      await verify(db, clock, h, where);
      // Later: everything written with expiry has expired; a compaction reclaims it.
      clock.advance(EXPIRE_IN_MS);
      await db.set("main", "after", 1);
      await db.compact();
      await verify(db, clock, h, `${where}, compacted after every expiry`);
      await db.close();
    },
  });
});
