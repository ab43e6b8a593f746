/**
 * Enqueues made at once share one commit (a batch, queues.ts; batches side by side share one
 * record, TxState.shareable in commit.ts): one version for many messages, so that every process frames, decodes and applies one record where it
 * did one per message. What must hold, here in one process and on the simulated platform
 * with a fault at every file operation: each message is there once; a dedupe key still
 * holds within the shared record; a failed append takes every message of the record back
 * and nothing of it is ever seen; after a crash or a torn write and a power loss, the
 * messages present are a prefix of the enqueues in order, with every acknowledged one.
 *
 * Replay one point with TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, tempDir, test, waitUntil } from "./harness.ts";
import { atEveryOperation, baseSeed, reopen } from "./simfaults.ts";
import { open } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import { withFaults } from "txtdb/adapters/faults";
import { PortError } from "txtdb/internal";
import type { FaultKind } from "txtdb/adapters/sim";

/** Every message waiting in `queue`, handled (and so removed) by one listener: their values. */
async function drain(db: Database, queue: string): Promise<number[]> {
  const expected = db.queueStats(queue).ready;
  const got: number[] = [];
  const stop = new AbortController();
  const listening = db.listenQueue<number>(queue, (v) => void got.push(v), { signal: stop.signal, concurrency: 64 });
  await waitUntil(() => got.length >= expected && db.queueStats(queue).running === 0, 20_000, 2);
  stop.abort();
  await listening;
  assert.equal(got.length, expected, `${got.length} of ${expected} waiting messages handled`);
  return got.sort((a, b) => a - b);
}

test("enqueues made at once share one record: one version for many, each message once, a dedupe key holds within the record, every enqueue counted", async () => {
  const dir = tempDir("q-shared");
  const db = await open(dir);
  await db.enqueue("jobs", -1); // the queues' namespace exists from here on
  const before = db.stats().commits;
  const results = await Promise.all(Array.from({ length: 500 }, (_, i) => db.enqueue("jobs", i, i % 50 === 7 ? { dedupeKey: "once" } : undefined)));
  const versions = new Set(results.map((r) => r.version));
  assert.ok(versions.size <= 3, `500 enqueues at once share their records: ${versions.size} versions`);
  assert.equal(new Set(results.map((r) => r.id)).size, 500, "every enqueue has its own id");
  assert.equal(results.filter((r) => r.deduplicated).length, 9, "ten enqueues under one dedupe key, within one record: one enqueued");
  assert.equal(db.stats().commits - before, 491, "each enqueue written counts as a commit");
  // Another handle (its own index, built from the log) sees every message once.
  const other = await open(dir);
  assert.equal(other.queueStats("jobs").ready, 492);
  const values = await drain(other, "jobs");
  const want = [-1, ...Array.from({ length: 500 }, (_, i) => i).filter((i) => i % 50 !== 7 || i === 7)];
  assert.deepEqual(values, want);
  assert.equal(db.queueStats("jobs").ready, 0);
  await other.close();
  await db.close();
});

test("an enqueue made while its batch's commit is on its way to the disk (after the batch ran at the head) goes into the next batch, and is written", async () => {
  const { defaultPlatform } = await import("txtdb/internal");
  const base = await defaultPlatform();
  let db: Database | undefined;
  let armed = false;
  let late: Promise<{ version: bigint }> | undefined;
  const adapter = withFaults(base, (step, path) => {
    // During the batch's sync: its items were decided at the head already.
    if (armed && step === "beforeFsync" && path.endsWith(".log")) {
      armed = false;
      late = db!.enqueue("jobs", 1000);
    }
  });
  db = await open(tempDir("q-late"), { adapter });
  await db.enqueue("jobs", 0); // the queues' namespace exists from here on
  armed = true;
  const firsts = await Promise.all([db.enqueue("jobs", 1), db.enqueue("jobs", 2)]);
  assert.ok(late, "an enqueue was made during the batch's sync");
  const lateResult = await late!;
  assert.equal(firsts[0]!.version, firsts[1]!.version, "the two enqueues made at once share a commit");
  assert.ok(lateResult.version > firsts[0]!.version, "the late one went into a later commit");
  assert.deepEqual(await drain(db, "jobs"), [0, 1, 2, 1000]);
  await db.close();
});

test("[sim] a shared record whose append fails is taken back whole: its messages fail and never show, not even after later commits of the same handle", async () => {
  const world = new SimWorld(5);
  let armed = false;
  const adapter = withFaults(world.process(), (step, path, bytes) => {
    // The batch's bytes (not the preallocation's zeros): EIO once.
    if (armed && step === "beforeWrite" && path.endsWith(".log") && (bytes ?? 0) > 50 && (bytes ?? 0) < 100_000) {
      armed = false;
      throw new PortError("EIO", "write", path);
    }
  });
  const db = await open("/db", { adapter });
  await Promise.all([1, 2, 3].map((v) => db.enqueue("jobs", v)));
  armed = true;
  const failed = await Promise.allSettled([4, 5, 6, 7].map((v) => db.enqueue("jobs", v)));
  assert.deepEqual(failed.map((x) => x.status), ["rejected", "rejected", "rejected", "rejected"]);
  const later = await Promise.all([8, 9].map((v) => db.enqueue("jobs", v)));
  assert.equal(new Set(later.map((r) => r.version)).size, 1, "the later enqueues share a record too");
  assert.equal(db.queueStats("jobs").ready, 5, "the failed record's messages were taken back off the index");
  assert.deepEqual(await drain(db, "jobs"), [1, 2, 3, 8, 9]);
  await db.close();
});

const BASE_SEED = baseSeed(9100);
const ROUNDS = 5;
const PER_ROUND = 6;

/**
 * Round r enqueues PER_ROUND messages at once (values r·PER_ROUND + i), the last of them
 * under the dedupe key of its round; records in `h` the values acknowledged and every value
 * attempted, in order.
 */
async function scenario(world: SimWorld, h: { acked: Set<number>; attempted: number[] }): Promise<void> {
  const db = await open("/db", { adapter: world.process(), segmentBytes: 512, autoCompactBytes: 0 });
  let failure: unknown;
  for (let r = 0; r < ROUNDS; r++) {
    const values = Array.from({ length: PER_ROUND }, (_, i) => r * PER_ROUND + i);
    h.attempted.push(...values);
    const settled = await Promise.allSettled(values.map((v, i) => db.enqueue("jobs", v, i === PER_ROUND - 1 ? { dedupeKey: `round-${r}` } : undefined)));
    settled.forEach((x, i) => {
      if (x.status === "fulfilled") {
        assert.ok(!x.value.deduplicated, "each round's dedupe key is new");
        h.acked.add(values[i]!);
      } else {
        failure ??= x.reason;
      }
    });
    // A failed commit (EIO, ENOSPC: the process lives on) is never seen, not even by this
    // handle, whose index held its messages for a moment and must have taken them back
    // before later commits made their versions visible; every acknowledged one is seen.
    let ready: number | undefined;
    try {
      ready = db.queueStats("jobs").ready;
    } catch {
      // the handle refuses reads after this fault, or the process crashed
    }
    if (ready !== undefined) assert.equal(ready, h.acked.size, `after round ${r}: exactly the acknowledged messages wait`);
    if (r === 2) await db.compact().catch((e) => void (failure ??= e));
  }
  await db.close();
  if (failure) throw failure;
}

/**
 * After a crash or a torn write (`lived` false) the messages present are a prefix of the
 * enqueues in order (records are whole or absent, and in log order), every acknowledged one
 * among them. After EIO or ENOSPC the process lived to see its commits fail: a failed
 * commit is never seen, so exactly the acknowledged messages are present (an enqueue may
 * also fail before its commit, leaving a gap in the order).
 */
async function verify(db: Database, h: { acked: Set<number>; attempted: number[] }, where: string, lived: boolean): Promise<void> {
  const values = await drain(db, "jobs");
  assert.equal(new Set(values).size, values.length, `${where}: a message twice: ${values}`);
  if (lived) assert.deepEqual(values, [...h.acked].sort((a, b) => a - b), `${where}: exactly the acknowledged messages: present ${values}, acknowledged ${[...h.acked].sort((a, b) => a - b)}`);
  else assert.deepEqual(values, h.attempted.slice(0, values.length), `${where}: not a prefix of the enqueues`);
  for (const v of h.acked) assert.ok(values.includes(v), `${where}: acknowledged message ${v} lost`);
  const report = await db.check();
  assert.ok(report.ok, `${where}: check(): ${JSON.stringify(report.problems)}`);
}

test("[sim] shared enqueue records: a crash, torn write, EIO or ENOSPC at every file operation, then power loss: a prefix of the enqueues, every acknowledged one, none twice; a failed append leaves nothing", async () => {
  const probe = new SimWorld(BASE_SEED);
  const h0 = { acked: new Set<number>(), attempted: [] as number[] };
  await scenario(probe, h0);
  const total = probe.counters.ops;
  const db0 = await open("/db", { adapter: probe.powerLoss().process() });
  await verify(db0, h0, "no fault", true);
  await db0.close();
  const kinds: FaultKind[] = ["crash", "tear", "EIO", "ENOSPC"];
  await atEveryOperation({
    total,
    kinds: () => kinds,
    seed: (at, kind) => BASE_SEED + 17 * at + kinds.indexOf(kind),
    state: () => ({ acked: new Set<number>(), attempted: [] as number[] }),
    run: (world, h) => scenario(world, h),
    check: async (world, h, where, _failure, kind) => {
      const db = await reopen(where, { adapter: world.powerLoss().process() });
      await verify(db, h, where, kind === "EIO" || kind === "ENOSPC");
      await db.close();
    },
  });
});
