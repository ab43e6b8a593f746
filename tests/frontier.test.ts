/**
 * The durable frontier's rules (tail.ts, rules 1-9), each in an interleaving that only the
 * log tail's own API can produce deterministically: several simulated processes append one
 * after another under the (assumed) writer lock, then make their batches durable in any
 * order, with fdatasync failing where a test says. Each test names the rule it guards and
 * fails if that rule is broken. Then the same through the public API: EIO at every sync
 * while several processes commit, and the reopen that verifies the tail.
 */
import { assert, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import { withFaults } from "txtdb/adapters/faults";
import { binaryToBytes, encodeCommit, encodeKey, encodeValue, frame, Meters, PortError, Tail } from "txtdb/internal";
import type { AppendedBatch, LogPosition, Platform } from "txtdb/internal";

const noHooks = { localPin: () => 0, publishPin: () => {}, compactionNoticed: () => {}, endPinsBelow: () => {}, viewReset: () => {} };

interface Proc {
  tail: Tail;
  meters: Meters;
  /** Makes every fdatasync of a log segment in this process fail with EIO while true. */
  failSyncs: boolean;
  /** Fails the next write of this many bytes to the frontier file (the log end record) with EIO. */
  failFrontierWriteOf?: number;
  /** Writes of a sync-failure mark (its 8 bytes, into the frontier file) by this process. */
  markWrites: number;
  /** Called before each fdatasync of a log segment in this process (before failSyncs fails it). */
  beforeSync?: (path: string) => void;
  /** Called as this process releases a log segment's flock (the sync lock). */
  onSegmentUnlock?: () => void;
}

async function store(world: SimWorld): Promise<void> {
  (await open("/db", { adapter: world.process(), namespaces: ["ns"] })).close();
}

function proc(world: SimWorld, durability: "full" | "relaxed" = "full", segmentBytes = 1 << 20): Proc {
  const p: Proc = { tail: undefined as unknown as Tail, meters: new Meters(), failSyncs: false, markWrites: 0 };
  const platform: Platform = withFaults(unlockWatched(world.process(), () => p.onSegmentUnlock?.()), (step, path, bytes) => {
    if (step === "beforeFsync" && path.endsWith(".log")) p.beforeSync?.(path);
    if (step === "beforeFsync" && p.failSyncs && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
    if (step === "beforeWrite" && path.endsWith("/frontier") && bytes === 8) p.markWrites++;
    if (step === "beforeWrite" && path.endsWith("/frontier") && bytes === p.failFrontierWriteOf) {
      p.failFrontierWriteOf = undefined;
      throw new PortError("EIO", "write", path);
    }
  });
  p.tail = new Tail(platform, "/db", { mode: 0o600, readOnly: false, durability, segmentBytes, relaxedSyncMs: 1000, cacheBytes: 1 << 20 }, p.meters, noHooks);
  p.tail.loadManifest(p.tail.log.readManifest()!);
  return p;
}

/** `platform` with `onUnlock` called before each unlock of a log segment's handle. */
function unlockWatched(platform: Platform, onUnlock: () => void): Platform {
  const bound = (target: object, name: string | symbol) => {
    const v = (target as Record<string | symbol, unknown>)[name];
    return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  };
  const open: Platform["open"] = (path, options) => {
    const h = platform.open(path, options);
    if (!path.endsWith(".log")) return h;
    return new Proxy(h, { get: (target, name) => (name === "unlock" ? () => (onUnlock(), target.unlock()) : bound(target, name)) });
  };
  return new Proxy(platform, { get: (target, name) => (name === "open" ? open : bound(target, name)) });
}

/** One commit (key `k` of namespace id 1 set to `v`), appended as the committer would, holding the writer lock: a full segment is sealed first. */
function append(p: Proc, k: string, v: number): AppendedBatch {
  p.tail.catchUpLocked();
  if (p.tail.activeSegmentFull()) p.tail.sealActiveLocked(() => {});
  const record = { tsn: p.tail.index.lastTsn + 1, writes: [{ nsId: 1, key: binaryToBytes(encodeKey(k)), value: encodeValue(v) }], namespaceOps: [] };
  p.tail.index.apply(record);
  return p.tail.appendLocked(frame(encodeCommit(record)));
}

const durableEnd = (p: Proc): LogPosition => {
  const fr = p.tail.log.readFrontier()!;
  return { seg: fr.durableSeg, off: fr.durableOff };
};
const isIO = (e: unknown) => e instanceof TxtDbError && e.code === "IO";

test("[sim] rule 2: a batch is appended behind another process's batch that is not yet durable, and the log end says where", async () => {
  const world = new SimWorld(1);
  await store(world);
  const [a, b] = [proc(world), proc(world)];
  const ba = append(a, "a", 1);
  const bb = append(b, "b", 2);
  assert.deepEqual(bb.end.seg, ba.end.seg);
  assert.ok(bb.end.off > ba.end.off, "b appended after a's unsynced batch");
  assert.equal(b.tail.index.lastTsn, ba.tsn + 1, "b caught up a's batch before validating");
  assert.deepEqual(a.tail.log.readTailState().end, bb.end, "the log end is b's");
});

test("[sim] rule 3: one sync makes several processes' batches durable; a covered process resolves without syncing", async () => {
  const world = new SimWorld(2);
  await store(world);
  const [a, b, c] = [proc(world), proc(world), proc(world)];
  const batches = [append(a, "a", 1), append(b, "b", 2), append(c, "c", 3)];
  const syncs0 = world.counters.syncs;
  await a.tail.makeDurable(batches[0]!); // reads the log end (c's) before syncing: publishes all three
  assert.equal(world.counters.syncs - syncs0, 1, "one sync");
  assert.deepEqual(durableEnd(a), batches[2]!.end, "the durable end is the last batch's");
  await b.tail.makeDurable(batches[1]!);
  await c.tail.makeDurable(batches[2]!);
  assert.equal(world.counters.syncs - syncs0, 1, "b and c were covered: no sync of their own");
  assert.equal(b.meters.counters.fsyncs + c.meters.counters.fsyncs, 0);
});

test("[sim] rule 3: a process whose sync is held up by a stopped syncer (it holds the sync lock) syncs for itself, and resolves", async () => {
  const world = new SimWorld(9);
  await store(world);
  const a = proc(world);
  const ba = append(a, "a", 1);
  // Another process took the sync lock (the segment's flock) and stopped there.
  const stopped = world.process().open(`/db/seg-${String(ba.end.seg).padStart(10, "0")}.log`);
  assert.ok(stopped.tryLock(true));
  const syncs0 = world.counters.syncs;
  await a.tail.makeDurable(ba);
  assert.equal(world.counters.syncs - syncs0, 1, "a synced for itself");
  assert.deepEqual(durableEnd(a), ba.end);
  stopped.close();
});

test("[sim] rule 4: the frontier only moves forward, whatever order the syncs publish in", async () => {
  const world = new SimWorld(3);
  await store(world);
  const [a, b] = [proc(world), proc(world)];
  const ba = append(a, "a", 1);
  const bb = append(b, "b", 2);
  await b.tail.makeDurable(bb);
  const after = a.tail.log.readFrontier()!;
  await a.tail.makeDurable(ba); // covered: must not write its smaller end
  assert.deepEqual(a.tail.log.readFrontier(), after, "a's later settle left the frontier where b put it");
  assert.equal(after.tsn, bb.tsn);
});

test("[sim] rule 5: readers never see a batch before a sync covered it", async () => {
  const world = new SimWorld(4);
  await store(world);
  const [a, reader] = [proc(world), proc(world)];
  reader.tail.refresh();
  const before = reader.tail.visibleTsn;
  const ba = append(a, "a", 1);
  reader.tail.refresh();
  assert.equal(reader.tail.visibleTsn, before, "an unsynced batch is not visible to another process");
  assert.equal(a.tail.visibleTsn, before, "nor to its own process's reads");
  await a.tail.makeDurable(ba);
  reader.tail.refresh();
  assert.equal(reader.tail.visibleTsn, ba.tsn);
});

test("[sim] rules 6-7: a failed sync marks the store; a later sync that succeeds resolves nothing, and every process refuses commits", async () => {
  const world = new SimWorld(5);
  await store(world);
  const [a, b, c] = [proc(world), proc(world), proc(world)];
  const ba = append(a, "a", 1);
  const bb = append(b, "b", 2);
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO, "a's failed sync fails its commit");
  assert.ok(a.tail.log.readTailState().failedPid !== 0, "the failure is marked");
  assert.equal(a.markWrites, 1, "marked once (each mark is a write and an fdatasync of the frontier file)");
  await assert.rejects(b.tail.makeDurable(bb), isIO, "b's own sync succeeds, but it may not trust it: it must not resolve");
  assert.ok(comparePos(durableEnd(b), ba.end) < 0, "nothing past the failed batch was published");
  assert.throws(() => append(c, "c", 3), isIO, "a third process refuses to append");
});

test("[sim] rule 7: a failed sync is marked before its process releases the sync lock, so a process waiting for that lock finds the mark instead of syncing after the failure", async () => {
  const world = new SimWorld(9);
  await store(world);
  const a = proc(world);
  const ba = append(a, "a", 1);
  const marks: number[] = [];
  a.onSegmentUnlock = () => marks.push(a.tail.log.readTailState().failedPid);
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO);
  assert.ok(marks.length > 0, "the sync lock was taken and released");
  assert.notEqual(marks[0], 0, "the mark was written before the sync lock was released");
});

test("[sim] rule 7 at a seal: EIO at the sync of a segment's seal (sealing at once, or as a commit finds its segment full) marks the failure; a batch another process appended before it does not resolve, a later seal publishes nothing, and after a reopen the batch is gone", async () => {
  for (const how of ["seal", "roll"] as const) {
    const world = new SimWorld(11);
    await store(world);
    const [a, b] = [proc(world, "full", 120), proc(world, "full", 120)];
    let last: AppendedBatch | undefined;
    let i = 0;
    for (; !a.tail.activeSegmentFull(); i++) {
      last = append(a, `k${i}`, i);
      if (!a.tail.activeSegmentFull()) await a.tail.makeDurable(last);
    }
    const published = durableEnd(a);
    b.failSyncs = true;
    let syncsTried = 0;
    b.beforeSync = () => syncsTried++;
    if (how === "seal") {
      b.tail.catchUpLocked();
      assert.throws(() => b.tail.sealActiveLocked(() => {}), isIO, `${how}: the seal fails`);
    } else {
      assert.throws(() => append(b, "b", 1), isIO, `${how}: the append that seals fails`);
    }
    assert.equal(syncsTried, 1, `${how}: the failed sync is not tried again (a retry on the same file "succeeds" without the pages it dropped)`);
    b.beforeSync = undefined;
    b.failSyncs = false;
    assert.notEqual(b.tail.log.readTailState().failedPid, 0, `${how}: the failure is marked`);
    assert.throws(() => {
      b.tail.catchUpLocked();
      b.tail.sealActiveLocked(() => {});
    }, isIO, `${how}: a later seal refuses`);
    assert.deepEqual(durableEnd(a), published, `${how}: nothing was published past a's last durable batch`);
    await assert.rejects(a.tail.makeDurable(last!), isIO, `${how}: a's batch, behind a failed sync, does not resolve`);
    a.tail.close();
    b.tail.close();
    const db = await open("/db", { adapter: world.process() });
    assert.equal(await db.get("ns", `k${i - 2}`), i - 2, `${how}: a durable commit`);
    assert.equal(await db.get("ns", `k${i - 1}`), undefined, `${how}: the batch that never resolved`);
    await db.set("ns", "after", 1);
    await db.close();
  }
});

test("[sim] rule 7 at a seal: with the frontier lock held by a stopped process, a seal's failed sync is still marked (without the lock: the writer lock keeps any verifying open out), and the seal is not published by a later one", async () => {
  const world = new SimWorld(29);
  await store(world);
  const [a, b] = [proc(world, "full", 120), proc(world, "full", 120)];
  let last: AppendedBatch | undefined;
  for (let i = 0; !a.tail.activeSegmentFull(); i++) {
    last = append(a, `k${i}`, i);
    if (!a.tail.activeSegmentFull()) await a.tail.makeDurable(last);
  }
  const stopped = world.process().open("/db/frontier");
  assert.ok(stopped.tryLock(true), "the stopped process holds the frontier lock");
  b.tail.catchUpLocked();
  b.failSyncs = true;
  assert.throws(() => b.tail.sealActiveLocked(() => {}), isIO, "the seal fails");
  b.failSyncs = false;
  stopped.unlock();
  stopped.close();
  assert.notEqual(b.tail.log.readTailState().failedPid, 0, "the failure is marked");
  assert.throws(() => {
    b.tail.catchUpLocked();
    b.tail.sealActiveLocked(() => {});
  }, isIO, "a later seal refuses");
  await assert.rejects(a.tail.makeDurable(last!), isIO, "a's batch does not resolve");
});

test("[sim] rule 6 at a seal: a seal whose catch-up came before another process marked a failed sync publishes nothing, and a batch appended behind the failed one does not resolve", async () => {
  const world = new SimWorld(21);
  await store(world);
  const [a, b, c] = [proc(world, "full", 120), proc(world, "full", 120), proc(world, "full", 120)];
  let ba: AppendedBatch;
  for (let i = 0; ; i++) {
    ba = append(a, `a${i}`, i);
    if (a.tail.readPos.off + 24 >= 120) break;
    await a.tail.makeDurable(ba);
  }
  const bc = append(c, "c", 1);
  b.tail.catchUpLocked(); // no mark yet
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO);
  assert.throws(() => b.tail.sealActiveLocked(() => {}), isIO, "the seal refuses to publish");
  assert.ok(comparePos(durableEnd(c), bc.end) < 0, "nothing past the failed batch was published");
  await assert.rejects(c.tail.makeDurable(bc), isIO, "c's batch does not resolve");
});

test("[sim] a segment deleted just as a seal syncs it: the seal fails with CORRUPTION, before it starts the next segment or publishes", async () => {
  const world = new SimWorld(23);
  await store(world);
  const a = proc(world, "full", 1 << 20);
  await a.tail.makeDurable(append(a, "k", 1));
  const before = durableEnd(a);
  const seg = "/db/seg-0000000001.log";
  a.beforeSync = (path) => {
    if (path !== seg) return;
    a.beforeSync = undefined;
    world.process().unlink(seg);
  };
  a.tail.catchUpLocked();
  assert.throws(() => a.tail.sealActiveLocked(() => {}), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /deleted/.test(e.message));
  assert.equal(world.lookup("/db/seg-0000000002.log"), undefined, "no next segment was started");
  assert.deepEqual(durableEnd(a), before, "the frontier did not move");
});

test("[sim] a writable open that finds the log ending in zeros in one segment while the next holds records (a seal's trim lost) refuses with CORRUPTION and writes nothing", async () => {
  const world = new SimWorld(25);
  await store(world);
  const a = proc(world, "full", 120);
  let frontierInFirst: Uint8Array | undefined;
  for (let i = 0; a.tail.readPos.seg < 2 || a.tail.readPos.off === 0; i++) {
    if (a.tail.readPos.seg === 1) frontierInFirst = world.lookup("/db/frontier")!.data.slice(0, 36);
    await a.tail.makeDurable(append(a, `k${i}`, i));
  }
  a.tail.close();
  // As a power loss can leave it: the seal's trim lost (the zeros it had taken off are back)
  // and the frontier file (never synced) still at a frontier in the first segment.
  const sim = world.process();
  const first = sim.open("/db/seg-0000000001.log");
  first.write(new Uint8Array(4096), first.size());
  first.close();
  const frontier = sim.open("/db/frontier");
  frontier.write(frontierInFirst!, 0);
  frontier.close();
  const second = world.lookup("/db/seg-0000000002.log")!;
  const bytes = second.data.slice();
  await assert.rejects(open("/db", { adapter: world.process() }), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION");
  assert.deepEqual(world.lookup("/db/seg-0000000002.log")?.data.slice(), bytes, "the next segment is untouched");
});

test("[sim] rule 6: a sync-failure mark counts even when the end record beside it is torn (as a power loss leaves it: the end record is never synced)", async () => {
  const world = new SimWorld(27);
  await store(world);
  const a = proc(world);
  const ba = append(a, "a", 1);
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO);
  a.tail.close();
  const f = world.process().open("/db/frontier");
  f.write(new Uint8Array(40).fill(0x5a), 64); // the end record, garbled
  f.close();
  const b = proc(world);
  assert.notEqual(b.tail.log.readTailState().failedPid, 0, "the mark is still read");
  assert.throws(() => append(b, "b", 2), isIO, "commits are refused");
});

test("[sim] rule 7: a failed sync whose batch another process's successful sync covered resolves", async () => {
  const world = new SimWorld(6);
  await store(world);
  const [a, b] = [proc(world), proc(world)];
  const ba = append(a, "a", 1);
  const bb = append(b, "b", 2);
  await b.tail.makeDurable(bb);
  a.failSyncs = true;
  await a.tail.makeDurable(ba); // covered already: no sync is even tried
  assert.equal(a.tail.log.readTailState().failedPid, 0, "no failure marked");
  assert.equal(a.tail.visibleTsn, ba.tsn);
});

test("[sim] rule 8: a writable open cuts what lies past the durable end, bumps the epoch, and processes holding cut records rebuild their view", async () => {
  const world = new SimWorld(7);
  await store(world);
  const [a, b] = [proc(world), proc(world)];
  const ok = append(a, "ok", 1);
  await a.tail.makeDurable(ok);
  const ba = append(a, "a", 2);
  const bb = append(b, "b", 3); // b's index holds a's unsynced record too
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO);
  const epoch = a.tail.log.readTailState().epoch;
  // The verifying open.
  const db = await open("/db", { adapter: world.process() });
  const st = a.tail.log.readTailState();
  assert.equal(st.failedPid, 0, "the mark is cleared");
  assert.equal(st.epoch, epoch + 1, "the epoch moved");
  assert.deepEqual(durableEnd(a), ok.end, "the log was cut back to the durable end");
  await assert.rejects(b.tail.makeDurable(bb), isIO, "b's batch was cut: it never resolves");
  // New history goes on from the cut; b's catch-up rebuilds its view from the log.
  await db.set("ns", "x", 1);
  await db.close();
  const c = append(b, "c", 4);
  await b.tail.makeDurable(c);
  assert.equal(b.tail.index.lastTsn, c.tsn, "b's index holds the new history, not the cut records");
  assert.equal(c.tsn, ok.tsn + 2, "versions go on after the durable end: x, then c");
});

test("[sim] rule 9: a batch whose append fails is taken off the log and the log end goes back", async () => {
  const world = new SimWorld(8);
  await store(world);
  const [a, b] = [proc(world), proc(world)];
  const ok = append(a, "ok", 1);
  await a.tail.makeDurable(ok);
  const before = a.tail.log.readTailState();
  a.failFrontierWriteOf = 40; // the log end record, written after the batch's bytes
  assert.throws(() => append(a, "bad", 2), (e: unknown) => e instanceof PortError);
  assert.deepEqual(a.tail.log.readTailState().end, before.end, "the log end went back");
  const c = append(b, "c", 3);
  assert.equal(c.tsn, ok.tsn + 1, "the failed batch's bytes were cut: b appended right after ok");
  await b.tail.makeDurable(c);
});

test("[sim] rule 9: the cut of a failed append outlives a power loss: the next writable open does not adopt the failed batch as a dead writer's", async () => {
  // In the active segment, and right after a seal (tiny segments: each append seals the one before).
  for (const [seed, segmentBytes] of Array.from({ length: 24 }, (_, i) => [30 + i, i % 2 ? 16 : 1 << 20] as const)) {
    const world = new SimWorld(seed);
    await store(world);
    const a = proc(world, "full", segmentBytes);
    await a.tail.makeDurable(append(a, "ok", 1));
    a.failFrontierWriteOf = 40; // the log end record, written after the batch's bytes
    assert.throws(() => append(a, "bad", 2), (e: unknown) => e instanceof PortError);
    a.tail.close();
    const db = await open("/db", { adapter: world.powerLoss().process() });
    assert.equal(await db.get("ns", "ok"), 1, `seed ${seed}: the durable commit`);
    assert.equal(await db.get("ns", "bad"), undefined, `seed ${seed}: the failed commit appeared after a power loss`);
    await db.close();
  }
});

test("[sim] rule 10: a committer reads ahead other processes' batches on their way to a sync; they stay invisible until covered, and a repair that cuts them makes the reader rebuild its view", async () => {
  const world = new SimWorld(9);
  await store(world);
  const [a, b, r] = [proc(world), proc(world), proc(world)];
  const ok = append(a, "ok", 1);
  await a.tail.makeDurable(ok);
  r.tail.refresh();
  const ba = append(a, "a", 2); // appended, not durable
  r.tail.readAhead();
  assert.equal(r.tail.index.lastTsn, ba.tsn, "the batch was read ahead");
  assert.deepEqual(r.tail.readPos, ba.end, "up to the log end");
  r.tail.refresh();
  assert.equal(r.tail.visibleTsn, ok.tsn, "rule 5 holds: nothing read ahead is visible before a sync covers it");
  assert.equal(r.tail.index.get(1, encodeKey("a"), r.tail.visibleTsn), undefined);
  // The sync fails; a writable open cuts the batch (rule 8) and history goes on without it.
  a.failSyncs = true;
  await assert.rejects(a.tail.makeDurable(ba), isIO);
  const db = await open("/db", { adapter: world.process() });
  await db.set("ns", "x", 1);
  await db.close();
  // r holds a record the log no longer has: its next read sees the new epoch and rebuilds.
  r.tail.refresh();
  assert.equal(r.tail.index.get(1, encodeKey("a"), Number.MAX_SAFE_INTEGER), undefined, "the cut record is gone from r's view");
  assert.ok(r.tail.index.get(1, encodeKey("x"), r.tail.visibleTsn), "the new history is");
  // Reading ahead never passes a failure mark, another epoch, or the segment it reads.
  const bb = append(b, "b", 3);
  b.failSyncs = true;
  await assert.rejects(b.tail.makeDurable(bb), isIO); // marks the failure
  const before = r.tail.index.lastTsn;
  r.tail.readAhead();
  assert.equal(r.tail.index.lastTsn, before, "nothing is read ahead while a failure is marked");
});

function comparePos(x: LogPosition, y: LogPosition): number {
  return x.seg !== y.seg ? x.seg - y.seg : x.off - y.off;
}

test("[sim] rule 11: a read-only open shows a batch past the frontier only when nobody could still be syncing it: not while another process lives or the writer lock is held; then, alone, it syncs and shows it", async () => {
  const world = new SimWorld(11);
  await store(world);
  const live = await open("/db", { adapter: world.process(), readOnly: true }); // a live process: its lease
  const a = proc(world); // a writer with no lease of its own: a dead one, once `live` is gone
  const batch = append(a, "a", 1);
  const shows = async (): Promise<number | undefined> => {
    const ro = await open("/db", { adapter: world.process(), readOnly: true });
    try {
      return await ro.get<number>("ns", "a");
    } finally {
      await ro.close();
    }
  };
  assert.equal(await shows(), undefined, "another process is alive: its sync may still come, or fail (rule 8 would cut the batch)");
  await live.close();
  const holder = world.process().open("/db/writer.lock", { readOnly: true });
  assert.ok(holder.tryLock(true));
  assert.equal(await shows(), undefined, "the writer lock is held: someone is appending");
  holder.close();
  const syncsBefore = world.counters.syncs;
  assert.equal(await shows(), 1, "nobody alive and the lock free: the dead writer's batch is shown");
  assert.ok(world.counters.syncs > syncsBefore, "after a sync of its segment");
  assert.equal(a.tail.log.readFrontier()!.tsn, batch.tsn - 1, "and the read-only open wrote nothing: the frontier is where it was");
  // The next writable open publishes it (a dead writer's batch, catchUpLocked) before
  // anything can be appended behind it.
  const rw0 = await open("/db", { adapter: world.process() });
  assert.equal(a.tail.log.readFrontier()!.durableOff, batch.end.off, "the writable open made it the durable end");
  await rw0.close();
  // A sync failure marked (rule 7): the next writable open cuts what lies past the durable end.
  const b = proc(world);
  b.failSyncs = true;
  const failed = append(b, "b", 2);
  await assert.rejects(b.tail.makeDurable(failed), isIO);
  const ro = await open("/db", { adapter: world.process(), readOnly: true });
  assert.equal(await ro.get("ns", "b"), undefined, "a batch past the durable end of a store marked by a failed sync is not shown");
  await ro.close();
  const rw = await open("/db", { adapter: world.process() });
  assert.equal(await rw.get("ns", "a"), 1, "the writable open keeps what the read-only open showed");
  assert.equal(await rw.get("ns", "b"), undefined);
  await rw.close();
});

test("[sim] rule 11, \"relaxed\": after a power loss that kept the frontier file's writes and not the log's (the frontier past the log), a read-only open shows what the next writable open will, and backup() and check() agree with it", async () => {
  let passedLog = 0;
  for (let seed = 1; seed <= 80; seed++) {
    const world = new SimWorld(seed);
    const db = await open("/db", { adapter: world.process(), namespaces: ["ns"], durability: "relaxed", relaxedSyncMs: 60_000 });
    for (let i = 1; i <= 5; i++) await db.set("ns", "n", i);
    const lost = world.powerLoss(); // before the relaxed sync
    await db.close().catch(() => {}); // (its machine is gone: this only stops its timers)
    const where = `seed ${seed}`;
    const ro = await open("/db", { adapter: lost.process(), readOnly: true });
    const names = await ro.listNamespaces();
    const shown = names.includes("ns") ? (await ro.get<number>("ns", "n")) ?? 0 : -1;
    const report = await ro.check();
    assert.ok(report.ok, `${where}: check() of the read-only open: ${JSON.stringify(report.problems)}`);
    const copy = await ro.backup("/copy");
    await ro.close();
    const fromCopy = await open("/copy", { adapter: lost.process(), readOnly: true });
    assert.equal((await fromCopy.listNamespaces()).includes("ns") ? (await fromCopy.get<number>("ns", "n")) ?? 0 : -1, shown, `${where}: the backup (version ${copy.version}) holds what the read-only open showed`);
    await fromCopy.close();
    const rw = await open("/db", { adapter: lost.process() });
    const after = (await rw.listNamespaces()).includes("ns") ? (await rw.get<number>("ns", "n")) ?? 0 : -1;
    assert.equal(after, shown, `${where}: the writable open shows what the read-only open showed`);
    if (after < 5) passedLog++;
    await rw.close();
  }
  assert.ok(passedLog > 0, "some seeds lost commits that \"relaxed\" had published (the case under test)");
});

test("[sim] rule 11: a live writer whose lease file was deleted by hand, between its append and a sync that fails: a read-only open meanwhile does not show its batch (it waits to see whether anything moves)", async () => {
  const world = new SimWorld(101);
  let failSync = false;
  const wp = withFaults(world.process(), (step, path) => {
    if (step === "beforeFsync" && failSync && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
  });
  const w = await open("/db", { adapter: wp, namespaces: ["ns"] });
  await w.set("ns", "ok", 1);
  const sh = world.process();
  for (const name of sh.readdir("/db/leases")) sh.unlink(`/db/leases/${name}`); // the careless user
  // The sync lock held elsewhere: the writer, after its append, waits before syncing itself.
  const holder = sh.open(`/db/${sh.readdir("/db").find((n) => n.endsWith(".log"))!}`, { readOnly: true });
  assert.ok(holder.tryLock(true));
  failSync = true;
  const pending = w.set("ns", "x", 42).then(() => "ok", (e) => (e instanceof TxtDbError ? e.code : String(e)));
  await new Promise((r) => setImmediate(r));
  const ro = await open("/db", { adapter: world.process(), readOnly: true });
  const shown = await ro.get("ns", "x");
  await ro.close();
  holder.close();
  assert.equal(await pending, "IO");
  await w.close();
  const rw = await open("/db", { adapter: world.process() });
  assert.equal(await rw.get("ns", "x"), undefined, "the failed batch was cut");
  assert.equal(shown, undefined, "so no process may have shown it");
  await rw.close();
});

test("[sim] rule 11, \"relaxed\": the writable open that puts back a frontier found past the log bumps the epoch, so a read-only open that passed it reads a new frontier even when it equals the old one byte for byte", async () => {
  const world = new SimWorld(50); // a seed whose power loss keeps the frontier's write and not the log's
  const a = await open("/db", { adapter: world.process(), namespaces: ["ns"] });
  await a.set("ns", "n", 0);
  await a.close();
  const db = await open("/db", { adapter: world.process(), durability: "relaxed", relaxedSyncMs: 60_000 });
  for (let i = 1; i <= 5; i++) await db.set("ns", "n", i);
  const lost = world.powerLoss();
  await db.close().catch(() => {});
  const frontierBefore = lost.process().open("/db/frontier", { readOnly: true });
  const bytes = new Uint8Array(36);
  frontierBefore.read(bytes, 0);
  frontierBefore.close();
  assert.equal(new DataView(bytes.buffer).getFloat64(0, true), 7, "the frontier survived at version 7");
  const ro = await open("/db", { adapter: lost.process(), readOnly: true });
  assert.equal(await ro.get("ns", "n"), 0, "the log holds n = 0 only: that is shown, not CORRUPTION");
  const w = await open("/db", { adapter: lost.process(), durability: "relaxed", relaxedSyncMs: 60_000 });
  for (let i = 1; i <= 5; i++) await w.set("ns", "n", i); // the same commits again: the same frontier
  assert.equal(await ro.get("ns", "n"), 5, "the read-only open sees the commits the writer redid");
  const copy = await ro.backup("/copy");
  assert.equal(copy.version, 7n);
  await ro.close();
  await w.close();
});

test("[sim] rule 11: a read-only open of a store closed cleanly syncs nothing and finds nothing to adopt", async () => {
  const world = new SimWorld(12);
  const db = await open("/db", { adapter: world.process(), namespaces: ["ns"], segmentBytes: 400 });
  for (let i = 0; i < 20; i++) await db.set("ns", ["k", i], "v".repeat(40));
  await db.close();
  const syncs = world.counters.syncs;
  const ro = await open("/db", { adapter: world.process(), readOnly: true });
  assert.equal(await ro.get("ns", ["k", 19]), "v".repeat(40));
  await ro.close();
  assert.equal(world.counters.syncs, syncs, "no fdatasync");
  assert.ok(!world.trace.slice(-200).some((t) => t.startsWith("open /db/writer.lock")), "the writer lock was not even opened");
});

test("[sim] EIO at every log sync while three processes commit: no commit resolves, every process refuses until a reopen verified the tail, nothing failed appears after a power loss", async () => {
  for (let seed = 10; seed < 16; seed++) {
    const world = new SimWorld(seed);
    await store(world);
    let failing = true;
    const adapters = [0, 1, 2].map(() => withFaults(world.process(), (step, path) => {
      if (failing && step === "beforeFsync" && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
    }));
    const dbs = [];
    failing = false;
    for (const adapter of adapters) dbs.push(await open("/db", { adapter }));
    await dbs[0]!.set("ns", "base", 1);
    failing = true;
    let resolved = 0;
    const outcomes = await Promise.allSettled(dbs.flatMap((db, i) => Array.from({ length: 4 }, (_, j) => db.set("ns", ["k", i, j], j).then(() => resolved++))));
    assert.equal(resolved, 0, `seed ${seed}: ${resolved} commits resolved while every sync failed`);
    for (const o of outcomes) assert.ok(o.status === "rejected" && isIO(o.reason), `seed ${seed}: ${o.status === "rejected" ? String(o.reason) : "resolved"}`);
    // The disk is fine again, but nothing that followed a failed sync can be trusted:
    // every open process refuses until a reopen verified the tail.
    failing = false;
    for (const db of dbs) await assert.rejects(db.set("ns", "later", 1), isIO, `seed ${seed}: a commit after the failure was accepted before a reopen`);
    const after = world.powerLoss();
    const db = await open("/db", { adapter: after.process() });
    assert.equal(await db.get("ns", "base"), 1, `seed ${seed}: the acknowledged commit was lost`);
    for await (const e of db.list("ns", { prefix: ["k"] })) assert.fail(`seed ${seed}: failed commit ${JSON.stringify(e.key)} appeared`);
    await db.set("ns", "after", 1);
    assert.equal((await db.check()).ok, true);
    await db.close();
  }
});

test("[sim] after a failed sync, a reopen in one process lets the processes already open commit again, on the verified history", async () => {
  const world = new SimWorld(20);
  await store(world);
  let failing = false;
  const adapter = () => withFaults(world.process(), (step, path) => {
    if (failing && step === "beforeFsync" && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
  });
  const [x, y] = [await open("/db", { adapter: adapter() }), await open("/db", { adapter: adapter() })];
  await x.set("ns", "n", 1);
  failing = true;
  await assert.rejects(x.set("ns", "n", 2), isIO);
  failing = false;
  await assert.rejects(y.set("ns", "m", 1), isIO, "y refuses while the failure is marked");
  const z = await open("/db", { adapter: adapter() }); // verifies the tail
  await z.close();
  await y.set("ns", "m", 1);
  await x.set("ns", "n", 3);
  assert.equal(await y.get("ns", "n"), 3);
  assert.equal(await x.get("ns", "m"), 1);
  const seen: number[] = [];
  for await (const e of x.list<number>("ns", { prefix: [] })) seen.push(e.value);
  assert.deepEqual(seen.sort(), [1, 3], "the failed commit (n = 2) is nowhere");
  await Promise.all([x.close(), y.close()]);
});

/** `platform` with its files' reads and size() calls counted by path (the base keeps its own state). */
function countingFiles(platform: Platform): { platform: Platform; reads: Map<string, number>; sizes: Map<string, number> } {
  const reads = new Map<string, number>();
  const sizes = new Map<string, number>();
  const bump = (m: Map<string, number>, path: string) => m.set(path, (m.get(path) ?? 0) + 1);
  const wrapped = Object.create(platform) as Platform;
  wrapped.open = (path, options) => {
    const h = platform.open(path, options);
    return new Proxy(h, {
      get(target, name) {
        if (name === "read") return (buf: Uint8Array, pos: number) => (bump(reads, path), target.read(buf, pos));
        if (name === "size") return () => (bump(sizes, path), target.size());
        const v = (target as unknown as Record<string | symbol, unknown>)[name];
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  };
  return { platform: wrapped, reads, sizes };
}

test("[sim] the catch-up under the writer lock reads the frontier file once and asks no segment its size when nobody appended", async () => {
  // One pread for the frontier and the tail state, and a segment's size asked only after a
  // short read: each was a system call more per commit (on this kind of machine, a system
  // call in the middle of JavaScript costs ~5 µs).
  const world = new SimWorld(31);
  await store(world);
  const counted = countingFiles(world.process());
  const tail = new Tail(counted.platform, "/db", { mode: 0o600, readOnly: false, durability: "full", segmentBytes: 1 << 20, relaxedSyncMs: 1000, cacheBytes: 1 << 20 }, new Meters(), noHooks);
  tail.loadManifest(tail.log.readManifest()!);
  const p = { tail, meters: new Meters(), failSyncs: false };
  await tail.makeDurable(append(p, "a", 1));
  counted.reads.clear();
  counted.sizes.clear();
  tail.catchUpLocked();
  assert.equal(counted.reads.get("/db/frontier"), 1, "one read of the frontier file");
  const segmentSizes = [...counted.sizes].filter(([path]) => path.endsWith(".log"));
  assert.deepEqual(segmentSizes, [], "no segment was asked its size");
  const head = tail.log.readHead();
  assert.deepEqual(head, { frontier: tail.log.readFrontier(), tail: tail.log.readTailState() }, "readHead reads what the two reads read");
});

test("[sim] a scan finds a segment that ends before the frontier, and one cut below what was read, without asking its size first", async () => {
  const world = new SimWorld(32);
  await store(world);
  const a = proc(world);
  for (let i = 0; i < 5; i++) await a.tail.makeDurable(append(a, `k${i}`, i));
  const end = a.tail.log.readTailState().end;
  const seg = `/db/seg-${String(end.seg).padStart(10, "0")}.log`;
  let whole = 0;
  assert.equal(a.tail.log.scan({ seg: end.seg, off: 0 }, end, () => whole++).problem, undefined);
  const file = world.process().open(seg, {});
  // Cut in the middle of the last records: a scan to the published end meets the file's end.
  file.truncate(end.off - 10);
  const records: number[] = [];
  const short = a.tail.log.scan({ seg: end.seg, off: 0 }, end, (_body, at) => records.push(at.off));
  assert.ok(short.problem?.incomplete, `a segment shorter than the frontier is an incomplete tail: ${JSON.stringify(short.problem)}`);
  assert.match(short.problem!.reason, /before the frontier|cut short/);
  assert.equal(records.length, whole - 1, "the whole records before the cut were read");
  // The same to the end of the file (the catch-up under the writer lock): a torn tail.
  let before = 0;
  const torn = a.tail.log.scan({ seg: end.seg, off: 0 }, undefined, () => before++);
  assert.ok(torn.problem?.incomplete, `a frame cut short at the file's end is a torn tail: ${JSON.stringify(torn)}`);
  assert.equal(before, whole - 1);
  // Cut below a position already read: damage, never a torn tail.
  file.truncate(20);
  const cut = a.tail.log.scan({ seg: end.seg, off: 40 }, undefined, () => assert.fail("nothing to read"));
  assert.equal(cut.problem?.cut, true, `a segment cut below what was read is reported as cut: ${JSON.stringify(cut)}`);
  // Exactly at the end of a sealed (trimmed) segment: nothing more, no problem.
  const exact = a.tail.log.scan({ seg: end.seg, off: 20 }, undefined, () => assert.fail("nothing to read"));
  assert.equal(exact.problem, undefined);
  assert.deepEqual(exact.end, { seg: end.seg, off: 20 });
  file.close();
});

test("[sim] a compaction whose seal fails writing the log's end or publishing the next segment leaves its handle reading and committing, never stopped on an internal assertion", async () => {
  // 40 bytes: the tail state's end (writeTailEnd); 36: the frontier (the seal's publish).
  for (const failBytes of [40, 36]) {
    const world = new SimWorld(41 + failBytes);
    let armed = false;
    const platformB = withFaults(world.process(), (step, path, bytes) => {
      if (armed && step === "beforeWrite" && path.endsWith("/frontier") && bytes === failBytes) {
        armed = false;
        throw new PortError("EIO", "write", path);
      }
    });
    const a = await open("/db", { adapter: world.process(), namespaces: ["m"], segmentBytes: 256, autoCompactBytes: 0 });
    const b = await open("/db", { adapter: platformB, segmentBytes: 256, autoCompactBytes: 0 });
    for (let j = 1; j <= 3; j++) await a.set("m", "n", j);
    await b.set("m", "n", 4); // the sealing handle's own commit ends the active segment
    assert.equal(await a.get("m", "n"), 4);
    armed = true;
    await assert.rejects(b.compact(), (e: unknown) => e instanceof TxtDbError, `${failBytes}: the compaction fails with a TxtDbError`);
    assert.equal(armed, false, `${failBytes}: the write failed inside the compaction`);
    // The other process goes on committing where the log really ends; the sealing handle sees it.
    for (let j = 5; j <= 7; j++) await a.set("m", "n", j);
    assert.equal(await b.get("m", "n"), 7, `${failBytes}: the sealing handle reads the other process's commits`);
    const snap = await b.snapshot();
    assert.equal(await snap.get("m", "n"), 7);
    snap.release();
    await b.set("m", "n", 8);
    assert.equal(await a.get("m", "n"), 8, `${failBytes}: and commits after it`);
    await b.compact();
    assert.equal(await a.get("m", "n"), 8);
    assert.equal((await b.check()).ok, true);
    await a.close();
    await b.close();
    const c = await open("/db", { adapter: world.process() });
    assert.equal(await c.get("m", "n"), 8);
    assert.equal((await c.check()).ok, true, `${failBytes}: the store checks clean`);
    await c.close();
  }
});
