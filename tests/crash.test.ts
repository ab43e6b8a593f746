/**
 * Crash recovery on the simulated platform: a crash (or a torn write, or an I/O error)
 * at every file operation of opening, committing, namespace operations and segment
 * rolls; then a power loss that drops or tears every unsynced byte. After reopening,
 * the state must be a prefix of history that contains every commit that resolved.
 *
 * Every failure message names the seed and the operation; replay one point with
 * TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, envVar, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import type { FaultKind } from "txtdb/adapters/sim";

const BASE_SEED = Number(envVar("TXTDB_SEED") ?? 1000);
const ONLY_AT = envVar("TXTDB_CRASH_AT") === undefined ? undefined : Number(envVar("TXTDB_CRASH_AT"));
const STEPS = 10;

interface History {
  acked: number; // highest j whose commit resolved
  createAcked: boolean;
  renameAcked: boolean;
}

/** One process: 10 sequential commits, a namespace create after 3 and a rename after 6, small segments. */
async function sequential(world: SimWorld, h: History): Promise<void> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 400 });
  for (let j = 1; j <= STEPS; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["k", j], "v".repeat(40));
    }, { maxRetries: 0 });
    h.acked = j;
    if (j === 3) {
      await db.createNamespace("extra");
      h.createAcked = true;
    }
    if (j === 6) {
      await db.renameNamespace("extra", "extra2");
      h.renameAcked = true;
    }
  }
  await db.close();
}

async function verifySequential(db: Database, h: History, where: string): Promise<void> {
  const n = ((await db.get<number>("main", "n")) ?? 0);
  assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (state at ${n})`);
  for (let j = 1; j <= STEPS; j++) {
    const v = await db.get("main", ["k", j]);
    assert.equal(v !== undefined, j <= n, `${where}: key k${j} ${v === undefined ? "missing" : "present"} with n=${n}: not a prefix of history`);
  }
  const names = await db.listNamespaces();
  // The create sits between commits 3 and 4, the rename between 6 and 7: a prefix that
  // contains a later commit must contain them.
  const created = names.includes("extra") || names.includes("extra2");
  if (h.createAcked || n >= 4) assert.ok(created, `${where}: namespace create lost (n=${n}, names ${names})`);
  if (n <= 2) assert.ok(!created, `${where}: namespace exists before its commit (n=${n})`);
  if (h.renameAcked || n >= 7) assert.deepEqual(names, ["extra2", "main"], `${where}: rename lost (n=${n})`);
  else if (created && n < 6) assert.deepEqual(names, ["extra", "main"], `${where}: rename appeared early`);
}

async function runPoint(seed: number, at: number, kind: FaultKind): Promise<void> {
  const world = new SimWorld(seed);
  world.failAt(at, kind);
  const h: History = { acked: 0, createAcked: false, renameAcked: false };
  let failure: unknown;
  await sequential(world, h).catch((e) => (failure = e));
  const where = `seed ${seed}, ${kind} at operation ${at} (${world.trace[at - 1] ?? "?"})`;
  if (kind === "EIO" || kind === "ENOSPC") {
    // The machine keeps running: a failed commit must not appear, the store must reopen.
    if (failure !== undefined) assert.ok(failure instanceof TxtDbError, `${where}: ${String(failure)}`);
  }
  const after = kind === "EIO" || kind === "ENOSPC" ? world.processCrash() : world.powerLoss();
  let db: Database;
  try {
    db = await open("/db", { adapter: after.process(), namespaces: ["main"] });
  } catch (e) {
    assert.fail(`${where}: reopen failed: ${String(e)}`);
  }
  await verifySequential(db, h, where);
  if (kind === "EIO" || kind === "ENOSPC") {
    // Nothing was lost from the page cache, so the state is exactly what resolved: a
    // commit reported as failed must not appear.
    assert.equal((await db.get<number>("main", "n")) ?? 0, h.acked, `${where}: a failed commit appeared`);
  }
  await db.set("main", "after", 1); // the store takes new commits
  await db.close();
}

async function countOps(seed: number): Promise<number> {
  const world = new SimWorld(seed);
  await sequential(world, { acked: 0, createAcked: false, renameAcked: false });
  return world.counters.ops;
}

test("[sim] crash at every file operation of open, commit, namespace ops and segment rolls, then power loss: a prefix with every resolved commit", async () => {
  const total = await countOps(BASE_SEED);
  assert.ok(total > 80, `scenario has ${total} operations`);
  for (let at = 1; at <= total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    await runPoint(BASE_SEED + at, at, "crash");
  }
});

test("[sim] a torn write at every file operation, then power loss: a prefix with every resolved commit", async () => {
  const total = await countOps(BASE_SEED);
  for (let at = 1; at <= total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    await runPoint(BASE_SEED + 7919 * at, at, "tear");
  }
});

test("[sim] EIO and ENOSPC at every file operation: failed commits never appear, the store reopens", async () => {
  const total = await countOps(BASE_SEED);
  for (let at = 1; at <= total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    await runPoint(BASE_SEED + at, at, at % 2 ? "EIO" : "ENOSPC");
  }
});

/** Two processes committing concurrently (group commit in each), sums and markers. */
async function concurrent(world: SimWorld, acked: Set<string>): Promise<void> {
  const a = await open("/db", { adapter: world.process(), namespaces: ["main"] });
  const b = await open("/db", { adapter: world.process() });
  const work = (db: Database, name: string) =>
    Promise.all(Array.from({ length: 8 }, (_, i) =>
      db.transaction((tx) => {
        tx.sum("main", "total", 1);
        tx.set("main", ["c", name, i], true);
      }).then(() => void acked.add(`${name}${i}`))
    ));
  await Promise.all([work(a, "a"), work(b, "b")]);
  await a.close();
  await b.close();
}

test("[sim] two processes group-committing: a crash at every operation keeps every resolved commit, atomically", async () => {
  const probe = new SimWorld(BASE_SEED);
  await concurrent(probe, new Set());
  const total = probe.counters.ops;
  for (let at = 1; at <= total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    const seed = BASE_SEED + 31 * at;
    const world = new SimWorld(seed);
    world.failAt(at, at % 3 === 0 ? "tear" : "crash");
    const acked = new Set<string>();
    await concurrent(world, acked).catch(() => {});
    const where = `seed ${seed}, crash at operation ${at} (${world.trace[at - 1] ?? "?"})`;
    const db = await open("/db", { adapter: world.powerLoss().process(), namespaces: ["main"] });
    const markers: string[] = [];
    for await (const e of db.list("main", { prefix: ["c"] })) markers.push(`${(e.key as string[])[1]}${(e.key as unknown[])[2]}`);
    for (const k of acked) assert.ok(markers.includes(k), `${where}: acknowledged commit ${k} lost`);
    assert.equal((await db.get<number>("main", "total")) ?? 0, markers.length, `${where}: a commit was applied partly`);
    await db.close();
  }
});

/** Writes, compacts (checkpoint, manifest switch, deletes), writes, compacts again. */
async function compacting(world: SimWorld, h: { acked: number }): Promise<void> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 300, autoCompactBytes: 0 });
  for (let j = 1; j <= 12; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["k", j % 4], j);
    }, { maxRetries: 0 });
    h.acked = j;
    if (j === 6 || j === 12) await db.compact();
  }
  await db.close();
}

test("[sim] a crash (or torn write) at every file operation of compaction and the manifest switch, then power loss: every resolved commit, and check() passes", async () => {
  const probe = new SimWorld(BASE_SEED);
  await compacting(probe, { acked: 0 });
  const total = probe.counters.ops;
  assert.ok(probe.trace.some((t) => t.startsWith("rename /db/MANIFEST.tmp")), "the scenario switches manifests");
  for (let at = 1; at <= total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    for (const kind of ["crash", "tear"] as const) {
      const seed = BASE_SEED + 13 * at + (kind === "tear" ? 1 : 0);
      const world = new SimWorld(seed);
      world.failAt(at, kind);
      const h = { acked: 0 };
      await compacting(world, h).catch(() => {});
      const where = `seed ${seed}, ${kind} at operation ${at} (${world.trace[at - 1] ?? "?"})`;
      let db: Database;
      try {
        db = await open("/db", { adapter: world.powerLoss().process(), namespaces: ["main"] });
      } catch (e) {
        assert.fail(`${where}: reopen failed: ${String(e)}`);
      }
      const n = (await db.get<number>("main", "n")) ?? 0;
      assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (n=${n})`);
      for (let r = 0; r < 4; r++) {
        // The last commit j ≤ n with j % 4 == r wrote ["k", r] = j.
        let expect: number | undefined;
        for (let j = n; j >= 1; j--) if (j % 4 === r) { expect = j; break; }
        assert.equal(await db.get("main", ["k", r]), expect, `${where}: k${r} is not what the prefix up to ${n} wrote`);
      }
      const report = await db.check();
      assert.ok(report.ok, `${where}: check() after recovery: ${JSON.stringify(report.problems)}`);
      await db.close();
    }
  }
});
