/** Compaction, pins, check(): on this runtime's real adapter (two handles act as two processes). */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test, leaseOpensFailing } from "./harness.ts";
import { open, TxtDbError } from "txtdb";

const R = `[${runtime}]`;
const storeBytes = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith("seg-") || f.startsWith("tbl-")).reduce((a, f) => a + fs.statSync(`${dir}/${f}`).size, 0);

test(`${R} a snapshot held by one process keeps its values while another updates and compacts; after release compaction reclaims them`, async () => {
  const dir = tempDir("cmp");
  const small = { segmentBytes: 2048, autoCompactBytes: 0 };
  const reader = await open(dir, { namespaces: ["ns"], ...small });
  const writer = await open(dir, small);
  for (let i = 0; i < 10; i++) await writer.set("ns", i, 0);
  const snap = await reader.snapshot();
  for (let round = 1; round <= 30; round++) for (let i = 0; i < 10; i++) await writer.set("ns", i, round);
  const held = await writer.compact();
  assert.equal(held.minPinnedVersion, snap.version, "compaction honours the reader's pin");
  for (let i = 0; i < 10; i++) assert.equal(await snap.get("ns", i), 0, "the snapshot still reads its version");
  for (let i = 0; i < 10; i++) assert.equal(await reader.get("ns", i), 30);
  const before = storeBytes(dir);
  snap.release();
  await reader.get("ns", 0); // the reader's pin moves to its head
  const freed = await writer.compact();
  assert.ok(freed.segmentsFolded > 0, "nothing was folded after the pin went");
  assert.ok(freed.minPinnedVersion > snap.version);
  assert.ok(storeBytes(dir) < before, `store did not shrink: ${before} → ${storeBytes(dir)}`);
  assert.ok(fs.readdirSync(dir).filter((f) => f.startsWith("tbl-")).length >= 1, "the state is in tables");
  // Both handles, and a fresh one that opens the tables, read the same state and versions.
  const fresh = await open(dir);
  for (let i = 0; i < 10; i++) {
    const [a, b, c] = [await reader.getEntry("ns", i), await writer.getEntry("ns", i), await fresh.getEntry("ns", i)];
    assert.deepEqual(a, b);
    assert.deepEqual(b, c);
  }
  assert.deepEqual(await fresh.check(), { ok: true, problems: [], records: (await fresh.check()).records, bytes: (await fresh.check()).bytes });
  await fresh.close();
  await reader.close();
  await writer.close();
});

test(`${R} under a steady update load with automatic compaction the store stops growing, and memory stays bounded`, async () => {
  const dir = tempDir("steady");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 8192, autoCompactBytes: 32768, durability: "none" });
  const sizes: number[] = [];
  for (let round = 0; round < 24; round++) {
    for (let j = 0; j < 100; j++) await db.transaction((tx) => { for (let k = 0; k < 5; k++) tx.set("ns", (j * 5 + k) % 100, { round, pad: "x".repeat(40) }); });
    sizes.push(storeBytes(dir));
  }
  await db.close(); // waits for a running automatic compaction
  const early = Math.max(...sizes.slice(4, 8));
  const late = Math.max(...sizes.slice(20));
  assert.ok(late <= early * 1.5, `store kept growing: ${sizes.join(", ")}`);
  const again = await open(dir);
  const s = again.stats();
  assert.ok(s.checkpointVersion > 0n, "automatic compaction ran");
  assert.ok(s.versionsHeld <= 100 * 40, `index holds ${s.versionsHeld} versions for 100 keys`);
  assert.equal((await again.check()).ok, true);
  await again.close();
});

test(`${R} check() and reads report a bit flip in a table or a segment as CORRUPTION naming file and offset, never wrong data`, async () => {
  const dir = tempDir("flip");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
  for (let i = 0; i < 60; i++) await db.set("ns", i % 20, "value-" + i);
  await db.compact();
  assert.equal((await db.check()).ok, true);
  const table = fs.readdirSync(dir).find((f) => f.startsWith("tbl-"))!;
  assert.ok(table, "compaction wrote a table");
  const bytes = fs.readFileSync(`${dir}/${table}`);
  // A bit flip in a data block: check() names the table and the block's offset; a fresh
  // handle opens (it reads only footer, filter and index) and every read of that block
  // fails with CORRUPTION instead of returning something else.
  bytes[10] = bytes[10]! ^ 0x01;
  fs.writeFileSync(`${dir}/${table}`, bytes);
  const report = await db.check();
  assert.equal(report.ok, false);
  assert.ok(report.problems.some((p) => p.file.endsWith(table) && p.offset === 0 && /checksum/.test(p.message)), JSON.stringify(report.problems));
  const fresh = await open(dir, { readOnly: true });
  let corrupt = 0;
  for (let i = 0; i < 20; i++) {
    try {
      assert.equal(await fresh.get("ns", i), "value-" + (40 + i), "a read returns the right value or fails");
    } catch (e) {
      assert.ok(e instanceof TxtDbError && e.code === "CORRUPTION" && String(e.details?.file).endsWith(table) && e.details?.offset === 0, String(e));
      corrupt++;
    }
  }
  assert.ok(corrupt > 0, "the damaged block was reported");
  await fresh.close();
  for (let i = 0; i < 20; i++) {
    try {
      assert.equal(await db.get("ns", i), "value-" + (40 + i), "the open handle never returns wrong data");
    } catch (e) {
      assert.ok(e instanceof TxtDbError && e.code === "CORRUPTION", String(e));
    }
  }
  bytes[10] = bytes[10]! ^ 0x01;
  // A bit flip in the footer: opening fails with CORRUPTION naming the table.
  const at = bytes.length - 5;
  bytes[at] = bytes[at]! ^ 0x01;
  fs.writeFileSync(`${dir}/${table}`, bytes);
  await assert.rejects(open(dir), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && String(e.details?.file).endsWith(table));
  assert.ok((await db.check()).problems.some((p) => p.file.endsWith(table)));
  bytes[at] = bytes[at]! ^ 0x01;
  fs.writeFileSync(`${dir}/${table}`, bytes);
  assert.equal((await db.check()).ok, true, "restored, the table checks clean");
  const seg = fs.readdirSync(dir).filter((f) => f.startsWith("seg-")).sort()[0]!;
  await db.set("ns", "tail", "x".repeat(100));
  const sb = fs.readFileSync(`${dir}/${seg}`);
  if (sb.length > 20) {
    sb[12] = sb[12]! ^ 0x10;
    fs.writeFileSync(`${dir}/${seg}`, sb);
    const r2 = await db.check();
    assert.ok(r2.problems.some((p) => p.file.endsWith(seg)), JSON.stringify(r2.problems));
    await assert.rejects(open(dir), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION");
  }
  await db.close();
});

test(`${R} watch fromVersion older than the checkpoint is refused with WATCH_OVERFLOW; stats show pins and leases`, async () => {
  const dir = tempDir("wc");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  const v1 = (await db.set("ns", "a", 1)).version;
  for (let i = 0; i < 40; i++) await db.set("ns", "a", i);
  await db.compact();
  assert.ok(db.stats().checkpointVersion > v1);
  assert.throws(() => db.watch("ns", { keys: ["a"] }, { fromVersion: v1 }), (e: unknown) => e instanceof TxtDbError && e.code === "WATCH_OVERFLOW");
  const tx = await db.begin();
  const s = db.stats();
  assert.equal(s.openTransactions, 1);
  assert.equal(s.oldestPinVersion, tx.readVersion);
  tx.rollback();
  assert.equal(db.stats().openTransactions, 0);
  const other = await open(dir);
  const procs = db.processes();
  assert.equal(procs.length, 2);
  assert.equal(procs.filter((p) => p.self).length, 1);
  await other.close();
  assert.equal(db.processes().length, 1, "a closed handle's lease is gone");
  await db.close();
});

test(`${R} bounded pins: a snapshot or transaction unused past maxIdleMs is released with a warning, and compaction moves on`, async () => {
  const dir = tempDir("idle");
  // No fsync: a commit's sync blocks the event loop, and on a loaded disk one can outlast
  // maxIdleMs, starving the timer that keeps `busy` in use.
  const db = await open(dir, { namespaces: ["ns"], maxIdleMs: 200, segmentBytes: 512, autoCompactBytes: 0, durability: "none" });
  await db.set("ns", "k", 0);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => void warnings.push(m);
  try {
    await using snap = await db.snapshot();
    const tx = await db.begin();
    const busy = await db.snapshot();
    // Its failure shows in the assertion on `busy` below, not as an unhandled rejection.
    const keepBusy = setInterval(() => void busy.get("ns", "k").catch(() => {}), 5);
    for (let i = 0; i < 30; i++) await db.set("ns", "k", i);
    await new Promise((r) => setTimeout(r, 600));
    clearInterval(keepBusy);
    await assert.rejects(snap.get("ns", "k"), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED" && /maxIdleMs/.test(e.message));
    await assert.rejects(tx.get("ns", "k"), (e: unknown) => e instanceof TxtDbError && e.code === "TIMEOUT" && /maxIdleMs/.test(e.message));
    assert.equal(await busy.get("ns", "k"), 0, "a snapshot in use is kept");
    assert.ok(warnings.length >= 2 && warnings.every((w) => /maxIdleMs/.test(w)), warnings.join(" | "));
    assert.equal(db.stats().oldestPinVersion, busy.version);
    busy.release();
    await db.get("ns", "k");
    const r = await db.compact();
    assert.ok(r.segmentsFolded > 0 && r.minPinnedVersion > busy.version);
  } finally {
    console.warn = warn;
  }
  await db.close();
});

test(`${R} compact() folds the active segment too: old versions go whatever segmentBytes is, and a second compact() creates nothing`, async () => {
  const dir = tempDir("cmp");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 }); // default segmentBytes: 64 MiB
  const other = await open(dir);
  const value = "v".repeat(1000);
  for (let round = 0; round < 20; round++) {
    await db.transaction((tx) => {
      for (let i = 0; i < 100; i++) tx.set("ns", ["k", i], `${round}:${value}`);
    });
  }
  assert.equal(await other.get("ns", ["k", 5]), `19:${value}`, "the other handle has read the active segment");
  const live = 100 * 1000;
  const before = storeBytes(dir);
  assert.ok(before > 15 * live, `the log holds every version (${before} bytes)`);
  const r = await db.compact();
  assert.ok(r.segmentsFolded >= 1, "the active segment was sealed and folded");
  const after = storeBytes(dir);
  assert.ok(after < 2 * live, `after compact() the store holds about the live data: ${after} bytes for ${live} live`);
  // Both handles keep reading and writing across the new segment.
  assert.equal(await other.get("ns", ["k", 99]), `19:${value}`);
  await other.set("ns", "after", 1);
  assert.equal(await db.get("ns", "after"), 1);
  const files = fs.readdirSync(dir).sort();
  await other.compact(); // folds the one new commit
  const again = await db.compact(); // nothing new: no new segment, no new checkpoint
  assert.equal(again.segmentsFolded, 0);
  assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith("seg-")).length, files.filter((f) => f.startsWith("seg-")).length);
  const fresh = await open(dir);
  assert.equal(await fresh.get("ns", ["k", 0]), `19:${value}`);
  assert.equal((await fresh.check()).ok, true);
  await fresh.close();
  await other.close();
  await db.close();
});

test(`${R} a watcher replaying history whose pin cannot be written (the lease write fails) fails at its start with IO, not later with WATCH_OVERFLOW after another process folded what it was to read`, async () => {
  const { withFaults } = await import("txtdb/adapters/faults");
  const { defaultPlatform, PortError } = await import("txtdb/internal");
  const base = await defaultPlatform();
  const dir = tempDir("watch-pin");
  let failLeaseWrites = false;
  const faulty = withFaults(base, (step, path) => {
    if (failLeaseWrites && step === "beforeWrite" && path.includes("/leases/")) throw new PortError("EIO", "write", path);
  });
  const db = await open(dir, { adapter: faulty, namespaces: ["ns"], autoCompactBytes: 0 });
  try {
    const first = await db.set("ns", "k", 0);
    for (let i = 1; i <= 20; i++) await db.set("ns", "k", i);
    failLeaseWrites = true;
    let thrown: unknown;
    try {
      const w = db.watch("ns", { keys: ["k"] }, { fromVersion: first.version });
      await w.return?.();
    } catch (e) {
      thrown = e;
    }
    assert.ok(thrown instanceof TxtDbError && thrown.code === "IO", `watch() with the pin unwritable: ${String(thrown)}`);
    failLeaseWrites = false;
    // Without the failure, the same watcher replays from its version.
    const w = db.watch<number>("ns", { keys: ["k"] }, { fromVersion: first.version });
    const event = await w.next();
    assert.equal(event.done, false);
    await w.return?.();
  } finally {
    failLeaseWrites = false;
    await db.close();
  }
});

test(`${R} compaction writes its tables without the writer lock: other writers commit meanwhile, and the switch still keeps every commit`, async () => {
  const { withFaults } = await import("txtdb/adapters/faults");
  const { defaultPlatform, FileLock } = await import("txtdb/internal");
  const base = await defaultPlatform();
  const dir = tempDir("cmp");
  let probes = 0;
  let lockFreeDuringWrite = 0;
  const probe = new FileLock(base, `${dir}/writer.lock`);
  const faulty = withFaults(base, (step, path) => {
    // While the checkpoint is being written, another process could take the writer lock.
    if (step === "beforeWrite" && path.endsWith(".sst.tmp")) {
      probes++;
      const release = probe.tryAcquire(true);
      if (release) {
        lockFreeDuringWrite++;
        release();
      }
    }
  });
  const db = await open(dir, { adapter: faulty, namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 500; i++) await db.set("ns", ["k", i % 50], i);
  const r = await db.compact();
  assert.ok(r.segmentsFolded > 0);
  assert.ok(probes > 0, "the tables were written");
  assert.equal(lockFreeDuringWrite, probes, "the writer lock was free while the tables were written");
  probe.close();
  // A commit that lands between the plan and the switch is kept: it lies past the checkpoint.
  const other = await open(dir);
  let committed = 0;
  const faulty2 = withFaults(base, (step, path) => {
    if (step === "beforeWrite" && path.endsWith(".sst.tmp") && committed === 0) committed = -1; // mark: writing now
  });
  const db2 = await open(dir, { adapter: faulty2 });
  for (let i = 0; i < 200; i++) await db2.set("ns", ["k", i % 50], 1000 + i);
  const compacting = db2.compact();
  await other.set("ns", "during", 1); // may land before, during or after the checkpoint write
  await compacting;
  const fresh = await open(dir);
  assert.equal(await fresh.get("ns", "during"), 1);
  assert.equal(await fresh.get("ns", ["k", 49]), 1199);
  assert.equal((await fresh.check()).ok, true);
  await Promise.all([fresh.close(), db2.close(), other.close(), db.close()]);
});

test(`${R} opening reads no table: filters and indexes are read on a table's first use and checked against the manifest's key bounds`, async () => {
  const dir = tempDir("lazy");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 2000; i++) await db.set("ns", ["k", i], "v".repeat(50));
  await db.compact();
  await db.close();
  const again = await open(dir, { readOnly: true });
  assert.ok(again.stats().tables >= 1);
  assert.equal(again.stats().tableIndexBytes, 0, "nothing of the tables is read at open");
  assert.equal(await again.get("ns", ["k", 1999]), "v".repeat(50));
  assert.ok(again.stats().tableIndexBytes > 0, "the first read loaded the table's filter and index");
  await again.close();
  // Bounds in the manifest that do not match the table: the table's first use fails with
  // CORRUPTION (never a silently skipped table), and check() names the manifest.
  const { decodeInternal, encodeInternal, frame, parseFrame } = await import("txtdb/internal");
  const raw = new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`));
  const m = decodeInternal((parseFrame(raw, 0) as { body: Uint8Array }).body) as { tables: { min: [number, Uint8Array] }[] };
  m.tables[0]!.min = [m.tables[0]!.min[0], new Uint8Array([2, 0x6b, 0])]; // a smaller key than the table's first
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal(m)));
  const bad = await open(dir, { readOnly: true });
  await assert.rejects(bad.get("ns", ["k", 5]), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /bounds/.test(e.message));
  const report = await bad.check();
  assert.ok(report.problems.some((p) => p.file.endsWith("MANIFEST") && /key bounds/.test(p.message)), JSON.stringify(report.problems));
  await bad.close();
});

test(`${R} a process that only writes, with automatic compaction off, learns another's compaction at its next roll-over and drops the folded versions`, async () => {
  const dir = tempDir("compact-adopt");
  const writer = await open(dir, { namespaces: ["ns"], segmentBytes: 4096, autoCompactBytes: 0 });
  const compactor = await open(dir, { segmentBytes: 4096, autoCompactBytes: 0 });
  for (let i = 0; i < 2000; i++) await writer.set("ns", ["k", i % 500], { i, pad: "x".repeat(60) });
  const before = writer.stats().versionsHeld;
  assert.ok(before >= 2000, `the writer holds its versions: ${before}`);
  const r = await compactor.compact();
  assert.ok(r.segmentsFolded > 0);
  // The writer reads nothing: only its own roll-overs can tell it. A few more commits roll over.
  for (let i = 0; i < 100; i++) await writer.set("ns", ["k", i], { i, pad: "y".repeat(60) });
  await new Promise((res) => setTimeout(res, 20)); // the adoption runs on a later turn
  const after = writer.stats().versionsHeld;
  assert.ok(after < 200, `the writer dropped what the other process folded: ${before} -> ${after} versions in memory`);
  assert.deepEqual(await writer.get("ns", ["k", 499]), { i: 1999, pad: "x".repeat(60) });
  assert.deepEqual(await writer.get("ns", ["k", 5]), { i: 5, pad: "y".repeat(60) });
  await compactor.close();
  await writer.close();
});

test(`[${runtime}] a lease that cannot be opened now (EMFILE, EACCES, EIO) is a live owner's: compaction keeps its snapshot's versions and its lease`, async () => {
  const { defaultPlatform } = await import("txtdb");
  const dir = tempDir("lease-unopenable");
  // Handle c's platform: opens of other processes' leases fail while failing.errno is set.
  const { adapter, failing } = leaseOpensFailing(await defaultPlatform());
  const a = await open(dir, { namespaces: ["n"] });
  const c = await open(dir, { adapter });
  try {
    for (const errno of ["EMFILE", "EACCES", "EIO"]) {
      await a.set("n", "k", `old ${errno}`);
      const snap = await a.snapshot();
      for (let i = 0; i < 50; i++) await a.set("n", "k", `new ${errno} ${i}`);
      const leases = fs.readdirSync(`${dir}/leases`).filter((f) => f.endsWith(".lease")).length;
      failing.errno = errno;
      await c.compact();
      failing.errno = undefined;
      assert.equal(fs.readdirSync(`${dir}/leases`).filter((f) => f.endsWith(".lease")).length, leases, `${errno}: a live process's lease was removed`);
      assert.equal(await snap.get("n", "k"), `old ${errno}`, `${errno}: the snapshot lost its version`);
      snap.release();
    }
  } finally {
    await c.close();
    await a.close();
  }
});

test(`[${runtime}] a lease left half-made (a process that died between creating its lease and renaming it into place) is swept; one still being made is not`, async () => {
  const { defaultPlatform } = await import("txtdb");
  const platform = await defaultPlatform();
  const dir = tempDir("lease-new");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
  await db.set("ns", "k", 1);
  const dead = `${dir}/leases/00000000deadbeef.lease-new`;
  const making = `${dir}/leases/00000000cafecafe.lease-new`;
  fs.writeFileSync(dead, "");
  fs.writeFileSync(making, "");
  // A maker holds its fresh lease locked from its open to its rename.
  const held = platform.open(making, { readOnly: true });
  assert.ok(held.tryLock(true));
  try {
    const r = await db.compact();
    assert.equal(fs.existsSync(dead), false, "the dead maker's fresh lease is removed");
    assert.equal(fs.existsSync(making), true, "a fresh lease still locked is left to its maker");
    assert.equal(r.leasesReclaimed, 1);
    assert.equal(db.processes().length, 1, "a fresh lease is no process");
  } finally {
    held.close();
  }
  db.processes(); // sweeps too: the maker is gone now
  assert.equal(fs.existsSync(making), false);
  await db.close();
});

test(`${R} compact() reports bytesAfter as the store's files after it (live segments and the new tables), and bytesBefore as those before it`, async () => {
  const dir = tempDir("cmpbytes");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 2048, autoCompactBytes: 0, durability: "none" });
  for (let round = 0; round < 10; round++) for (let i = 0; i < 40; i++) await db.set("ns", ["k", i], `${round}:${"v".repeat(40)}`);
  const first = await db.compact();
  assert.ok(first.segmentsFolded > 0);
  assert.equal(first.bytesAfter, storeBytes(dir), "bytesAfter: the segments and tables on disk");
  for (let i = 0; i < 40; i++) await db.set("ns", ["k", i], "x".repeat(400));
  const before = storeBytes(dir);
  const second = await db.compact();
  assert.equal(second.bytesBefore, before);
  assert.equal(second.bytesAfter, storeBytes(dir));
  await db.close();
});
