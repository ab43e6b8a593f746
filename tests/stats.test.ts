/** stats() and metrics(): figures that add up, fixed-size histograms, Prometheus text. */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import { Histogram } from "./keyhelpers.ts";

const R = `[${runtime}]`;

test(`${R} stats() counts commits, group-commit batches, fsyncs, latencies and lock waits consistently`, async () => {
  const dir = tempDir("stats");
  const db = await open(dir, { namespaces: ["ns"] });
  const base = db.stats();
  await Promise.all(Array.from({ length: 50 }, (_, i) => db.set("ns", i, i)));
  for (let i = 0; i < 10; i++) await db.set("ns", "seq", i);
  await db.get("ns", 1);
  await db.getMany("ns", [1, 2]);
  const s = db.stats();
  assert.equal(s.commits - base.commits, 60);
  assert.equal(s.commitLatencyUs.count, 60, "one latency sample per commit");
  assert.ok(s.commitLatencyUs.p50 > 0 && s.commitLatencyUs.p99 >= s.commitLatencyUs.p50);
  assert.equal(s.batchSize.count, s.batches);
  assert.ok(s.batchSize.max >= 10, "concurrent commits were grouped");
  assert.ok(s.lockWaitUs.count >= s.batches - base.batches);
  assert.equal(s.fsyncUs.count, s.fsyncs);
  assert.equal(s.reads, 2);
  assert.equal(s.liveLeases, 1);
  assert.equal(s.keysInMemory, 51);
  assert.ok(s.logBytes > 0);
  assert.equal(s.durability, "full");
  await db.close();
});

test(`${R} stats().logBytes counts the log's segments only: a segment file past a gap in the numbers (a stray copy) is no part of the log`, async () => {
  const dir = tempDir("stats");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  const before = db.stats().logBytes;
  assert.ok(before > 0);
  fs.writeFileSync(`${dir}/seg-0000000009.log`, new Uint8Array(1 << 20), { mode: 0o600 });
  assert.equal(db.stats().logBytes, before);
  await db.set("ns", "k", 2);
  assert.equal(await db.get("ns", "k"), 2);
  await db.close();
});

test(`${R} metrics() is Prometheus text with HELP/TYPE lines, counters and summaries`, async () => {
  const dir = tempDir("metrics");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "a", 1);
  const text = db.metrics();
  assert.match(text, /^# HELP txtdb_commits_total /m);
  assert.match(text, /^# TYPE txtdb_commits_total counter$/m);
  assert.match(text, /^txtdb_commits_total\{store="[^"]+",runtime="[a-z]+"\} 2$/m);
  assert.match(text, /^txtdb_commit_latency_seconds\{store="[^"]+",runtime="[a-z]+",quantile="0\.99"\} [0-9.e-]+$/m);
  for (const line of text.trim().split("\n")) {
    assert.match(line, /^(# (HELP|TYPE) txtdb_[a-z_]+ .+|txtdb_[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+)$/, `not exposition format: ${line}`);
  }
  await db.close();
});

test(`${R} histograms are fixed-size: two million samples keep percentiles right without growing`, () => {
  const h = new Histogram();
  for (let i = 1; i <= 2_000_000; i++) h.record(i % 1000);
  assert.equal(h.count, 2_000_000);
  const p50 = h.percentile(50);
  assert.ok(p50 >= 400 && p50 <= 650, `p50 ${p50}`);
  assert.ok(h.percentile(99) >= 900 && h.percentile(99) <= 999, `p99 ${h.percentile(99)}`);
});

test(`${R} txtdb doctor never prints the head below a version a process pins: another process may commit and pin between doctor's reads of the head and of the leases (review helper-73 saw "pins version 1210 (0 behind the head)" under a head of 1190)`, async () => {
  const { doctor } = await import("../cli/doctor.ts");
  // The database from the same sources as doctor (the built package's classes are others).
  const { open: openSource } = await import("../mod.ts");
  const dir = tempDir("doctor-head");
  const db = await openSource(dir, { namespaces: ["ns"] });
  const other = await openSource(dir);
  const before = db.stats();
  // Doctor's read of the head comes first; then the other commits, and pins what it committed.
  db.stats = () => before;
  for (let i = 0; i < 5; i++) await other.set("ns", i, i);
  const snap = await other.snapshot();
  const pinned = other.processes().find((p) => p.self)!.pinnedVersion!;
  assert.ok(pinned > before.version, `the pin ${pinned} is above the head doctor read, ${before.version}`);
  const lines: string[] = [];
  await doctor(db, dir, (l) => lines.push(l));
  const head = BigInt(/^store .*: version (\d+),/.exec(lines[0]!)![1]!);
  assert.ok(head >= pinned, `doctor's head ${head} is below the pinned version ${pinned}:\n${lines.join("\n")}`);
  assert.match(lines.join("\n"), new RegExp(`pins version ${pinned} \\(0 behind the head\\)`));
  snap.release();
  await other.close();
  await db.close();
});
