/**
 * Two-phase commit across real processes of Node, Deno and Bun (tests/workers/twophase.ts):
 *
 * - a transaction prepared in one runtime blocks conflicting commits from the others (a key
 *   it wrote, a key it read, a key in a range it read), never their reads;
 * - a coordinator process SIGKILLed at every step of the protocol (inside fn, between the
 *   prepares, after them, after the decision, between the commits), then a process of
 *   another runtime opening the stores resolves what was in doubt: every transfer is in
 *   both stores or neither, every acknowledged one in both, the sums are conserved, check()
 *   is clean, nothing stays prepared;
 * - a coordinator that is alive but stuck: the resolver waits for the in-doubt timeout,
 *   then aborts it (or applies the commit decision it finds);
 * - coordinators of two runtimes transferring at once, one SIGKILLed at random moments.
 *
 * Runs from the Node and Bun legs (the Deno leg cannot spawn; Deno takes part as a worker).
 */
import { afterEach, assert, canSpawn, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import type { Database } from "txtdb";
import type { Runtime, Worker } from "./procs.ts";

const { killAllWorkers, startWorker, RUNTIMES } = canSpawn
  ? await import("./procs.ts")
  : { killAllWorkers: () => {}, startWorker: undefined, RUNTIMES: [] as Runtime[] };
afterEach(() => killAllWorkers());

const IN_DOUBT_MS = 1_500;

interface Dirs {
  a: string;
  b: string;
  c: string;
}

async function freshDirs(): Promise<Dirs> {
  const dirs = { a: tempDir("mp2pc-a"), b: tempDir("mp2pc-b"), c: tempDir("mp2pc-c") };
  // Created here first, so that workers never race to create them.
  for (const d of [dirs.a, dirs.b]) await (await open(d, { namespaces: ["acct"] })).close();
  return dirs;
}

function acked(w: Worker): Set<number> {
  return new Set(w.lines.filter((l) => l.startsWith("acked ")).map((l) => Number(l.slice(6))));
}

/** Opens a resolver process of `runtime` on both stores; resolves once nothing is in doubt. */
async function resolveWith(runtime: Runtime, dirs: Dirs, timeoutMs: number): Promise<number> {
  const r = startWorker!(runtime, "twophase", ["resolve", dirs.a, dirs.b, String(timeoutMs)]);
  const line = await Promise.race([r.waitFor("resolved ", timeoutMs + 30_000), r.waitFor("unresolved ", timeoutMs + 30_000)]);
  assert.ok(line.startsWith("resolved "), `${runtime} resolver: ${line}; stderr: ${r.stderr}`);
  await r.exited;
  return Number(line.slice("resolved ".length));
}

/** Every transfer of each tag in both stores or neither, acknowledged ones in both, sums conserved, check() clean. */
async function verify(dirs: Dirs, ackedByTag: Map<string, Set<number>>, where: string): Promise<void> {
  const a = await open(dirs.a);
  const b = await open(dirs.b);
  try {
    assert.deepEqual(await a.listPrepared(), [], `${where}: store a keeps a transaction in doubt`);
    assert.deepEqual(await b.listPrepared(), [], `${where}: store b keeps a transaction in doubt`);
    const inA = await markers(a);
    const inB = await markers(b);
    assert.deepEqual([...inA.keys()].sort(), [...inB.keys()].sort(), `${where}: transfers in one store only`);
    for (const [tag, js] of ackedByTag) for (const j of js) assert.ok(inA.has(`${tag}/${j}`), `${where}: acknowledged transfer ${tag}/${j} is missing`);
    const moved = [...inA.values()].reduce((s, n) => s + n, 0);
    const x = await total(a, "x");
    const y = await total(b, "y");
    assert.equal(x + moved, 0, `${where}: store a's sum does not match its transfers`);
    assert.equal(x + y, 0, `${where}: the sum over the stores is not conserved (x=${x}, y=${y})`);
    for (const [name, db] of [["a", a], ["b", b]] as const) {
      const report = await db.check();
      assert.ok(report.ok, `${where}: check() of ${name}: ${JSON.stringify(report.problems)}`);
    }
  } finally {
    await a.close();
    await b.close();
  }
}

/** The sum of the accounts ["x" | "y", tag] of a store. */
async function total(db: Database, side: string): Promise<number> {
  let sum = 0;
  for await (const e of db.list<number>("acct", { prefix: [side] })) sum += e.value;
  return sum;
}

async function markers(db: Database): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const e of db.list<number>("acct", { prefix: ["t"] })) {
    const [, tag, j] = e.key as [string, string, number];
    out.set(`${tag}/${j}`, e.value);
  }
  return out;
}

test("[multi-process] a transaction prepared in one runtime blocks conflicting commits from every runtime; their reads see the committed value", { skip: !canSpawn }, async () => {
  for (const [i, preparer] of RUNTIMES.entries()) {
    const dir = tempDir("mp2pc-block");
    const db = await open(dir, { namespaces: ["ns"] });
    await db.set("ns", "w", "committed");
    const p = startWorker!(preparer, "twophase", ["prepare", dir, `held-${i}`]);
    await p.waitFor("prepared", 30_000);
    const probes = RUNTIMES.map((r) => startWorker!(r, "twophase", ["probe", dir]));
    for (const [k, w] of probes.entries()) {
      const line = await w.waitFor("probe ", 30_000);
      const got = JSON.parse(line.slice("probe ".length));
      assert.deepEqual(got, { w: `blocked by held-${i}`, r: `blocked by held-${i}`, q: `blocked by held-${i}`, free: "ok", read: "committed" }, `${RUNTIMES[k]} probing ${preparer}'s prepared transaction`);
    }
    await assert.rejects(db.set("ns", "w", 1), (e: unknown) => (e as { details?: { preparedBy?: string } }).details?.preparedBy === `held-${i}`);
    p.send(i === 1 ? "abort" : "commit");
    await p.waitFor("decided", 30_000);
    await p.finish();
    assert.equal(await db.get("ns", "w"), i === 1 ? "committed" : "prepared");
    await db.set("ns", "w", "free again");
    await db.close();
  }
});

const POINTS = ["fn", "between-prepares", "after-prepares", "after-decision", "between-commits"] as const;

test("[multi-process] a coordinator SIGKILLed at every step of the protocol: another runtime's process resolves it; every transfer in both stores or neither", { skip: !canSpawn }, async () => {
  let round = 0;
  for (const point of POINTS) {
    const coordinatorRuntime = RUNTIMES[round % 3]!;
    const resolverRuntime = RUNTIMES[(round + 1) % 3]!;
    round++;
    const dirs = await freshDirs();
    const where = `${coordinatorRuntime} coordinator killed at ${point}, ${resolverRuntime} resolver`;
    const w = startWorker!(coordinatorRuntime, "twophase", ["transfer", dirs.a, dirs.b, dirs.c, "k", "3", point, "3600000", "5"]);
    await w.waitFor("stalled", 60_000);
    w.kill9();
    await w.exited;
    const got = acked(w);
    assert.deepEqual([...got].sort(), [1, 2], `${where}: the first two transfers resolved`);
    // The coordinator's lease died with it: resolved at once, not after the (one hour) in-doubt timeout.
    await resolveWith(resolverRuntime, dirs, 20_000);
    const a = await open(dirs.a);
    const third = (await a.get("acct", ["t", "k", 3])) !== undefined;
    await a.close();
    assert.equal(third, point === "after-decision" || point === "between-commits", `${where}: the stalled transfer's outcome follows the decision`);
    await verify(dirs, new Map([["k", got]]), where);
  }
});

test("[multi-process] a live but stuck coordinator: after the in-doubt timeout a resolver of another runtime aborts it, or applies the commit decision it finds", { skip: !canSpawn }, async () => {
  for (const [i, point] of (["after-prepares", "between-commits"] as const).entries()) {
    const dirs = await freshDirs();
    const coordinatorRuntime = RUNTIMES[(i + 2) % 3]!;
    const resolverRuntime = RUNTIMES[i % 3]!;
    const where = `${coordinatorRuntime} coordinator stuck at ${point}, ${resolverRuntime} resolver`;
    const w = startWorker!(coordinatorRuntime, "twophase", ["transfer", dirs.a, dirs.b, dirs.c, "s", "2", point, String(IN_DOUBT_MS), "3"]);
    await w.waitFor("stalled", 60_000);
    const t0 = performance.now();
    await resolveWith(resolverRuntime, dirs, 30_000);
    const waited = performance.now() - t0;
    assert.ok(waited >= IN_DOUBT_MS * 0.5, `${where}: resolved after ${Math.round(waited)} ms, before the coordinator's in-doubt timeout (${IN_DOUBT_MS} ms) could have passed`);
    const a = await open(dirs.a);
    const second = (await a.get("acct", ["t", "s", 2])) !== undefined;
    await a.close();
    assert.equal(second, point === "between-commits", `${where}: the outcome follows the coordinator's log`);
    w.kill9();
    await w.exited;
    await verify(dirs, new Map([["s", acked(w)]]), where);
  }
});

test("[multi-process] coordinators of two runtimes transfer at once while one is SIGKILLed at random moments: all or nothing, sums conserved", { skip: !canSpawn }, async () => {
  const dirs = await freshDirs();
  const ackedByTag = new Map<string, Set<number>>();
  const steady = startWorker!("node", "twophase", ["transfer", dirs.a, dirs.b, dirs.c, "steady", "0", "none", String(IN_DOUBT_MS), "0"]);
  await steady.waitFor("ready", 60_000);
  for (let round = 0; round < 6; round++) {
    const runtime = RUNTIMES[(round + 1) % 3]!;
    const tag = `r${round}`;
    const w = startWorker!(runtime, "twophase", ["transfer", dirs.a, dirs.b, dirs.c, tag, "0", "none", String(IN_DOUBT_MS), "0"]);
    await w.waitFor("acked 1", 60_000);
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 200));
    w.kill9();
    await w.exited;
    ackedByTag.set(tag, acked(w));
  }
  await steady.finish();
  ackedByTag.set("steady", acked(steady));
  assert.ok(ackedByTag.get("steady")!.size > 0, "the steady coordinator made transfers meanwhile");
  await resolveWith("deno", dirs, 30_000);
  await verify(dirs, ackedByTag, "random kills");
});
