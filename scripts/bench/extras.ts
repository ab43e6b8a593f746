/**
 * txtdb-only figures, on Node: cross-process watch latency, snapshot creation at scale,
 * memory per million keys and after a million operations, store size under a steady
 * update load with compaction. Usage: extras.ts <dir> <scale>
 */
import { open } from "txtdb";
import { defaultPlatform, FileLock } from "txtdb/internal";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { Latencies, result } from "./stats.ts";
import type { Result } from "./stats.ts";

const [dir, scaleArg] = process.argv.slice(2);
const scale = Number(scaleArg ?? 1);
const out: Result[] = [];
const gc = (globalThis as { gc?: () => void }).gc;
const mem = () => { gc?.(); gc?.(); return process.memoryUsage(); };
const MiB = (b: number) => Math.round(b / 1048576);

// Watch latency: a Deno process commits timestamps; this process's watcher measures.
{
  const path = `${dir}/watch`;
  const db = await open(path, { namespaces: ["b"] });
  const n = Math.max(50, Math.round(1000 * scale));
  const lat = new Latencies(n);
  const it = db.watch("b", { keys: ["ping"] });
  const writer = spawn("node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/mp-txtdb.ts", "watchwriter", path, String(n)], { stdio: ["ignore", "ignore", "inherit"] });
  let seen = 0;
  for await (const e of it) {
    const v = e.changes[0]!.value as { sentAt: number };
    lat.add((performance.timeOrigin + performance.now() - v.sentAt) * 1000);
    if (++seen >= n) break;
  }
  await new Promise((r) => writer.on("exit", r));
  out.push(result("watch latency across processes (deno → node)", "txtdb", "node", seen, 1000, lat, "ops/s column not meaningful; see p50/p99"));
  await db.close();
}
// Event-loop stall while a commit waits for the writer lock held by another open file
// description (as another process would): the worst gap of a 1 ms heartbeat. Each round
// is paired with an idle round (the same heartbeat, nothing else running), because on a
// VM the idle loop's own timer jitter is of the same size.
{
  const path = `${dir}/stall`;
  const db = await open(path, { namespaces: ["b"] });
  const holder = new FileLock(await defaultPlatform(), `${path}/writer.lock`);
  const gaps = new Latencies(10_000);
  const idleGaps = new Latencies(10_000);
  const heartbeat = (into: Latencies) => {
    let last = performance.now();
    return setInterval(() => {
      const t = performance.now();
      into.add((t - last) * 1000);
      last = t;
    }, 1);
  };
  for (let round = 0; round < 10; round++) {
    const release = await holder.acquire(true);
    let beat = heartbeat(gaps);
    const waiting = db.set("b", "k", round);
    setTimeout(release, 300);
    await waiting;
    clearInterval(beat);
    beat = heartbeat(idleGaps);
    await new Promise((r) => setTimeout(r, 300));
    clearInterval(beat);
  }
  holder.close();
  const summary = (lat: Latencies) => `worst gap ${(lat.percentile(100) / 1000).toFixed(2)} ms; ${lat.countAbove(5000)} of ${lat.count} gaps over 5 ms`;
  out.push(result("event-loop gap while waiting 300 ms for the writer lock (1 ms heartbeat)", "txtdb", "node", 10, 3000, gaps, summary(gaps)));
  out.push(result("event-loop gap of an idle loop, same rounds (1 ms heartbeat)", "(none)", "node", 10, 3000, idleGaps, `${summary(idleGaps)}: this VM's timer jitter`));
  await db.close();
}
// Snapshot creation at 10k / 100k / 1M keys, and memory per key.
for (const keys of [10_000, 100_000, 1_000_000].map((k) => Math.round(k * Math.min(1, scale)))) {
  const path = `${dir}/snap-${keys}`;
  const before = mem().heapUsed;
  const db = await open(path, { namespaces: ["b"], durability: "none" });
  for (let i = 0; i < keys; i += 10_000) {
    await db.transaction((tx) => { for (let j = i; j < Math.min(keys, i + 10_000); j++) tx.set("b", j, j); });
  }
  const held = mem().heapUsed - before;
  const n = 20_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) (await db.snapshot()).release();
  out.push(result(`snapshot creation at ${keys.toLocaleString("en-US")} keys`, "txtdb", "node", n, performance.now() - t0, undefined, `heap for ${keys.toLocaleString("en-US")} small keys: ${MiB(held)} MiB`));
  await db.close();
}
// A million operations (or the scaled count) of steady updates with automatic compaction.
{
  const path = `${dir}/steady`;
  const db = await open(path, { namespaces: ["b"], durability: "none", segmentBytes: 4 << 20, autoCompactBytes: 16 << 20 });
  const ops = Math.round(1_000_000 * scale);
  const storeSize = () => fs.readdirSync(path).filter((f) => f.startsWith("seg-") || f.startsWith("ckpt-") || f.startsWith("tbl-")).reduce((a, f) => a + fs.statSync(`${path}/${f}`).size, 0);
  let maxStore = 0;
  const t0 = performance.now();
  for (let i = 0; i < ops; i += 100) {
    await db.transaction((tx) => { for (let j = 0; j < 100; j++) tx.set("b", (i + j) % 10_000, { i: i + j, pad: "x".repeat(50) }); });
    if (i % 50_000 === 0) maxStore = Math.max(maxStore, storeSize());
  }
  const ms = performance.now() - t0;
  const beforeCompact = storeSize();
  await db.compact();
  const afterCompact = storeSize();
  const m = mem();
  out.push(result(`steady updates to 10k keys (${ops.toLocaleString("en-US")} writes)`, "txtdb", "node", ops, ms, undefined,
    `store ${MiB(beforeCompact)} MiB before compact(), ${Math.round(afterCompact / 1024)} KiB after, live data ~${Math.round((10_000 * 80) / 1024)} KiB (max seen ${MiB(maxStore)} MiB, ${MiB(ops * 80)} MiB written); heap ${MiB(m.heapUsed)} MiB, rss ${MiB(m.rss)} MiB after; versions in memory ${db.stats().versionsHeld}`));
  await db.close();
}
console.log(JSON.stringify(out));
