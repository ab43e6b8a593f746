/**
 * Isolation under compaction and idle pins: a transaction's read version stays pinned, for
 * every process's compactions, from its first read until its commit (or prepare) is
 * decided, however long that commit waits for the writer lock; a pin whose history is gone
 * fails the commit with CONFLICT `{ lostHistory: true }`; lists count as use of the pin they
 * read under. Then a model check: processes running random transactions against a small key
 * set while compaction runs and idle pins are released, their histories checked.
 */
import * as fs from "node:fs";
import { afterEach, assert, canSpawn, envVar, runtime, sleep, tempDir, test } from "./harness.ts";
import type { Attempt, ReadRec, WriteRec } from "./workers/isoworker.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Platform } from "txtdb";
import { defaultPlatform } from "txtdb/internal";
import { writerLockBlockable } from "./workers/lockblock.ts";

const R = `[${runtime}]`;
const platform = await defaultPlatform();

/** Runs `f` with console.warn silenced (idle releases warn), returning what it warned. */
async function quietly<T>(f: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (...a: unknown[]) => void warnings.push(a.map(String).join(" "));
  try {
    return { result: await f(), warnings };
  } finally {
    console.warn = warn;
  }
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; details?: Record<string, unknown> | undefined }> {
  try {
    await p;
    return { code: "ok" };
  } catch (e) {
    if (e instanceof TxtDbError) return { code: e.code, details: e.details as Record<string, unknown> | undefined };
    throw e;
  }
}

/**
 * A: the handle whose commit waits (writer lock blockable, small maxIdleMs); B: another
 * handle on the store, free to commit and compact.
 */
async function twoHandles(label: string, maxIdleMs = 60): Promise<{ dir: string; a: Database; b: Database; blocked: { on: boolean } }> {
  const dir = tempDir(label);
  const { adapter, blocked } = writerLockBlockable(platform);
  const a = await open(dir, { namespaces: ["ns"], adapter, maxIdleMs, autoCompactBytes: 0 });
  const b = await open(dir, { autoCompactBytes: 0 });
  return { dir, a, b, blocked };
}

for (const [how, isolation] of [["commit", "serializable"], ["commit", "snapshot"], ["prepare", "serializable"], ["prepare", "snapshot"]] as const) {
  test(`${R} a ${how} waiting for the writer lock keeps its read version pinned: a delete committed and compacted meanwhile still conflicts (${isolation})`, async () => {
    const { a, b, blocked } = await twoHandles("iso-wait");
    try {
      await a.set("ns", "k", "v0");
      await a.set("ns", "other", 0);
      // The store's move to the two-phase format (the first prepare's) holds compact.lock:
      // made now, so that the prepare below waits for the writer lock only.
      if (how === "prepare") await a.abortPrepared("warm-up");
      const { result, warnings } = await quietly(async () => {
        const tx = await a.begin({ isolation });
        assert.equal(await tx.get("ns", "k"), "v0");
        // Serializable: a write that depends on the read. Snapshot: a write of the key itself.
        if (isolation === "serializable") tx.set("ns", "other", 1);
        else tx.set("ns", "k", "v1");
        await b.delete("ns", "k");
        blocked.on = true;
        const committing = codeOf(how === "commit" ? tx.commit() : tx.prepare("t-1"));
        // Long past maxIdleMs: the commit waits for the lock all along.
        await sleep(300);
        const c = await b.compact();
        // Other work of this process meanwhile: a read learns the compaction (and drops the
        // versions it folded from this process's memory).
        await b.set("ns", "z", 1);
        assert.equal(await a.get("ns", "z"), 1);
        blocked.on = false;
        const outcome = await committing;
        return { outcome, folded: c.segmentsFolded, minPin: c.minPinnedVersion, readVersion: tx.readVersion };
      });
      assert.equal(result.outcome.code, "CONFLICT", `the delete of k after the transaction's read version must make its commit conflict (compaction folded ${result.folded} segments, min pin ${result.minPin}, read version ${result.readVersion}); warnings: ${warnings.join(" | ")}`);
      assert.equal(await b.get("ns", "k"), undefined, "k stays deleted");
      if (isolation === "serializable") assert.equal(await b.get("ns", "other"), 0);
      assert.deepEqual(await b.listPrepared(), [], "nothing was prepared");
      assert.ok(result.minPin <= result.readVersion, "compaction kept the committing transaction's read version");
      assert.deepEqual(warnings, [], "no pin was released as idle while its commit waited");
    } finally {
      blocked.on = false;
      await a.close();
      await b.close();
    }
  });
}

for (const how of ["commit", "prepare"] as const) {
  test(`${R} a ${how} whose history is compacted away while it waits for the writer lock fails with CONFLICT { lostHistory: true }, and writes nothing`, async () => {
    const dir = tempDir("iso-lost");
    const { adapter, blocked } = writerLockBlockable(platform);
    const a = await open(dir, { namespaces: ["ns"], adapter, autoCompactBytes: 0 });
    const [aLease] = fs.readdirSync(`${dir}/leases`);
    const b = await open(dir, { autoCompactBytes: 0 });
    try {
      await a.set("ns", "k", "v0");
      await a.set("ns", "other", 0);
      if (how === "prepare") await a.abortPrepared("warm-up");
      let outcome: { code: string; details?: Record<string, unknown> | undefined } | undefined;
      // A's lease comes back within LEASE_CHECK_EVERY_MS; a round whose compaction saw it
      // again folds nothing, and is run again.
      for (let round = 0; round < 5 && outcome === undefined; round++) {
        const tx = await a.begin();
        assert.equal(await tx.get("ns", "k"), round === 0 ? "v0" : undefined);
        tx.set("ns", "other", round + 1);
        if (round === 0) await b.delete("ns", "k");
        else await b.set("ns", "other", -round); // a change after the read version, for the fold to pass
        blocked.on = true;
        const committing = codeOf(how === "commit" ? tx.commit() : tx.prepare(`t-${round}`));
        await sleep(20);
        // A's lease deleted by hand: B's compaction no longer sees A's pins, and folds past them.
        fs.rmSync(`${dir}/leases/${aLease}`, { force: true });
        const c = await b.compact();
        await b.set("ns", "z", round);
        assert.equal(await a.get("ns", "z"), round); // A learns the compaction: its history is gone
        blocked.on = false;
        const o = await committing;
        if (c.segmentsFolded > 0 && c.checkpointVersion > tx.readVersion) outcome = o;
        else assert.ok(o.code === "ok" || o.code === "CONFLICT", `round ${round}: ${o.code}`);
      }
      assert.ok(outcome, "a compaction folded past the waiting transaction's read version");
      assert.equal(outcome.code, "CONFLICT", `the ${how} must fail, not be validated against a history it can no longer see`);
      assert.equal(outcome.details?.lostHistory, true);
      assert.equal(await b.get("ns", "k"), undefined, "k stays deleted");
      assert.deepEqual(await b.listPrepared(), [], "nothing was prepared");
    } finally {
      blocked.on = false;
      await a.close();
      await b.close();
    }
  });
}

/** A store with `n` keys in "ns", opened with a small maxIdleMs. */
async function storeOfKeys(label: string, n: number, maxIdleMs: number): Promise<Database> {
  const db = await open(tempDir(label), { namespaces: ["ns"], maxIdleMs, autoCompactBytes: 0 });
  await db.transaction((tx) => {
    for (let i = 0; i < n; i++) tx.set("ns", ["k", i], i);
  });
  return db;
}

/** Reads `it` to its end, one entry per timer turn (`pauseMs`): slow, but never idle for long. */
async function readSlowly(it: AsyncIterableIterator<{ value: unknown }>, pauseMs = 1): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return out;
    out.push(r.value.value);
    await sleep(pauseMs);
  }
}

const SLOW_KEYS = 700; // three pages of a streaming list (256 entries each)
const SLOW_IDLE_MS = 150; // the whole read takes several times this

test(`${R} a db.list() read slowly but steadily, for many times maxIdleMs, is not released as idle: every next() is a use of its pin`, async () => {
  const db = await storeOfKeys("iso-dblist", SLOW_KEYS, SLOW_IDLE_MS);
  try {
    const t0 = performance.now();
    const { result, warnings } = await quietly(async () => {
      const it = db.list("ns", { prefix: ["k"] });
      const first = await it.next(); // the list's version, pinned from its first page on
      // Another commit after it, and a compaction: the list still shows its own version.
      await db.set("ns", ["k", SLOW_KEYS - 1], "changed");
      await db.compact();
      return [(first.value as { value: unknown }).value, ...(await readSlowly(it))];
    });
    assert.ok(performance.now() - t0 > 2 * SLOW_IDLE_MS, "the read lasted longer than maxIdleMs");
    assert.deepEqual(warnings, [], "nothing was released as idle");
    assert.deepEqual(result, Array.from({ length: SLOW_KEYS }, (_, i) => i), "every entry, at the list's version");
  } finally {
    await db.close();
  }
});

test(`${R} a snapshot's list read slowly but steadily keeps the snapshot in use: it is not released as idle, mid-list or after`, async () => {
  const db = await storeOfKeys("iso-snaplist", SLOW_KEYS, SLOW_IDLE_MS);
  try {
    const { result, warnings } = await quietly(async () => {
      const snap = await db.snapshot();
      await db.set("ns", ["k", 0], "changed");
      const values = await readSlowly(snap.list("ns", { prefix: ["k"] }));
      // In use until its last next(): readable right after.
      const after = await snap.get("ns", ["k", 0]);
      snap.release();
      return { values, after };
    });
    assert.deepEqual(warnings, [], "the snapshot was not released as idle");
    assert.deepEqual(result.values, Array.from({ length: SLOW_KEYS }, (_, i) => i));
    assert.equal(result.after, 0);
  } finally {
    await db.close();
  }
});

test(`${R} a transaction's list read slowly but steadily keeps the transaction in use: it is not released as idle, and commits`, async () => {
  const db = await storeOfKeys("iso-txlist", SLOW_KEYS, SLOW_IDLE_MS);
  try {
    const { result, warnings } = await quietly(async () => {
      const tx = await db.begin();
      const values = await readSlowly(tx.list("ns", { prefix: ["k"] }));
      tx.set("ns", "sum", (values as number[]).reduce((a, b) => a + b, 0));
      return { values, outcome: await codeOf(tx.commit()) };
    });
    assert.deepEqual(warnings, [], "the transaction was not released as idle");
    assert.equal(result.values.length, SLOW_KEYS);
    assert.equal(result.outcome.code, "ok");
    assert.equal(await db.get("ns", "sum"), (SLOW_KEYS * (SLOW_KEYS - 1)) / 2);
  } finally {
    await db.close();
  }
});

// --- the model check ---

/** Keys of the model check: ns/["k", 0..KEYS-1] (as tests/workers/isoworker.ts). */
const KEYS = 16;
const ATTACK_MS = Number(envVar("TXTDB_ISO_ATTACK_MS") ?? 8_000);
const ATTACK_IDLE_MS = 25;

/**
 * Checks the histories of every process against one serial order, the commit versions':
 * - every committed write has its own version, past its read version;
 * - every read (a key, a range; in a transaction, a snapshot, failed or not) shows exactly
 *   the state the committed writes make at its read version: a deleted key never reads
 *   present after its delete, a value no committed write wrote is never read;
 * - a committed serializable transaction: no other commit between its read version and its
 *   own wrote a key it read, listed in a range, or wrote (no lost update, no lost delete, no
 *   phantom); a committed snapshot transaction: none wrote a key it wrote;
 * - a list on the database shows the state at one version;
 * - the store ends in the state the committed writes make.
 * Returns the problems found (empty: none).
 */
function checkHistories(histories: Attempt[][], initial: { c: number; writes: WriteRec[] }, final: ReadRec[]): string[] {
  const problems: string[] = [];
  const all = histories.flatMap((h, w) => h.map((a) => ({ ...a, w })));
  const committed = [{ kind: "setup" as const, c: initial.c, r: initial.c - 1, writes: initial.writes, w: -1 }, ...all.filter((a) => a.outcome === "ok" && a.c !== undefined)];
  const byVersion = new Map<number, (typeof committed)[number]>();
  for (const t of committed) {
    if (byVersion.has(t.c!)) problems.push(`two commits at version ${t.c}`);
    byVersion.set(t.c!, t);
    if (t.r !== undefined && t.c! <= t.r) problems.push(`a commit at ${t.c} at or before its read version ${t.r}`);
  }
  // Per key, the committed writes in version order.
  const chains: [number, string | null][][] = Array.from({ length: KEYS }, () => []);
  for (const t of [...committed].sort((x, y) => x.c! - y.c!)) for (const [k, v] of t.writes) chains[k]!.push([t.c!, v]);
  const at = (k: number, version: number): [number, string | null] => {
    let last: [number, string | null] = [0, null];
    for (const e of chains[k]!) {
      if (e[0] > version) break;
      last = e;
    }
    return last[1] === null ? [0, null] : last;
  };
  const writtenBetween = (k: number, after: number, before: number) => chains[k]!.find(([c]) => c > after && c < before);
  const rangeAt = (from: number, to: number, version: number): ReadRec[] => {
    const out: ReadRec[] = [];
    for (let k = from; k < to; k++) {
      const [c, v] = at(k, version);
      if (v !== null) out.push([k, c, v]);
    }
    return out;
  };
  const same = (x: ReadRec[], y: ReadRec[]) => JSON.stringify(x) === JSON.stringify(y);
  const neverCommitted = new Set(all.filter((a) => a.outcome !== "ok").flatMap((a) => a.writes.map(([, v]) => v)).filter((v) => v !== null));
  for (const a of all) {
    const who = `process ${a.w} ${a.kind}${a.iso ? ` (${a.iso})` : ""} at ${a.r ?? "?"}${a.c !== undefined ? ` committed at ${a.c}` : ` ${a.outcome}`}`;
    for (const [k, version, value] of [...a.reads, ...a.ranges.flatMap((r) => r.got)]) {
      if (value !== null && neverCommitted.has(value)) problems.push(`${who} read k${k} = ${value}, written by a transaction that did not commit`);
    }
    if (a.kind === "tx" || a.kind === "snap") {
      for (const [k, version, value] of a.reads) {
        const [c, v] = at(k, a.r!);
        if (c !== version || v !== value) problems.push(`${who} read k${k} as ${value ?? "absent"} (version ${version}); at its read version it is ${v ?? "absent"} (version ${c})`);
      }
      for (const rg of a.ranges) {
        const want = rangeAt(rg.from, rg.to, a.r!);
        if (!same(rg.got, want)) problems.push(`${who} listed k${rg.from}..k${rg.to} as ${JSON.stringify(rg.got)}; at its read version: ${JSON.stringify(want)}`);
      }
    }
    if (a.kind === "tx" && a.outcome === "ok") {
      const keys = new Set<number>(a.writes.map(([k]) => k));
      if (a.iso === "serializable") {
        for (const [k] of a.reads) keys.add(k);
        for (const rg of a.ranges) for (let k = rg.from; k < rg.to; k++) keys.add(k);
      }
      for (const k of keys) {
        const w = writtenBetween(k, a.r!, a.c!);
        if (w) problems.push(`${who}: k${k}, which it ${a.writes.some(([x]) => x === k) ? "wrote" : "read"}, was written (${w[1] ?? "deleted"}) at ${w[0]}, between its read version and its commit (a lost ${w[1] === null ? "delete" : "update"})`);
      }
    }
    if (a.kind === "dblist" && a.outcome === "ok") {
      const got = a.ranges[0]!.got;
      const from = Math.max(0, ...got.map(([, c]) => c));
      let found = false;
      for (let version = from; version <= Math.max(from, ...byVersion.keys()) && !found; version++) found = same(got, rangeAt(0, KEYS, version));
      if (!found) problems.push(`${who} listed ${JSON.stringify(got)}: the state at no version`);
    }
  }
  const want = rangeAt(0, KEYS, Math.max(...byVersion.keys()));
  if (!same(final, want)) problems.push(`the store ends as ${JSON.stringify(final)}; the committed writes make ${JSON.stringify(want)}`);
  return problems;
}

if (canSpawn) {
  const { startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  test(`${R} model check: Node, Bun and Deno processes running random transactions, snapshots and lists on a few keys, with compaction, idle releases, a held writer lock and processes starved of it, keep serializability and snapshot reads`, async () => {
    const base = tempDir("iso-model");
    const dir = `${base}/store`;
    const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
    const initial: WriteRec[] = Array.from({ length: KEYS }, (_, k) => [k, `init:${k}`]);
    const setup = await db.begin();
    for (const [k, v] of initial) setup.set("ns", ["k", k], v);
    const { version } = await setup.commit();
    await db.close();
    const seed = Math.floor(Math.random() * 2 ** 31);
    const runtimes = ["node", "bun", "deno"] as const;
    const workers = runtimes.map((rt, i) =>
      startWorker(rt, "isoworker", [dir, String(i), String(ATTACK_MS), String(seed + i), String(ATTACK_IDLE_MS), `${base}/hist-${i}.json`, ...(i === 0 ? ["locker"] : [])])
    );
    const { result: lines } = await quietly(() => Promise.all(workers.map((w) => w.waitFor("done ", ATTACK_MS + 60_000))));
    const exits = await Promise.all(workers.map((w) => w.exited));
    exits.forEach((x, i) => assert.equal(x.code, 0, `${workers[i]!.runtime} worker exited ${x.code}: ${workers[i]!.stderr}`));
    const histories = runtimes.map((_, i) => JSON.parse(fs.readFileSync(`${base}/hist-${i}.json`, "utf8")) as Attempt[]);
    const check = await open(dir, { readOnly: true });
    const final: ReadRec[] = [];
    for await (const e of check.list<string>("ns", { prefix: ["k"] })) final.push([(e.key as [string, number])[1], Number(e.version), e.value]);
    await check.close();
    const problems = checkHistories(histories, { c: Number(version), writes: initial }, final);
    const committed = histories.flat().filter((a) => a.kind === "tx" && a.outcome === "ok").length;
    const summary = `seed ${seed}; ${lines.map((l, i) => `${runtimes[i]}: ${l.slice(5)}`).join("; ")}`;
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems (${summary})`);
    // The run did what it is for: transactions committed and conflicted, histories were read.
    assert.ok(committed > 50, `only ${committed} transactions committed (${summary})`);
    assert.ok(histories.flat().some((a) => a.outcome === "CONFLICT"), `no transaction conflicted (${summary})`);
    if (envVar("TXTDB_ISO_VERBOSE")) console.log(summary);
  });
}
