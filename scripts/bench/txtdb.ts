/**
 * txtdb's single-process workloads; runs unchanged on Node (bundled), Deno and Bun and
 * prints one JSON array of results. Usage: txtdb.ts <dir> <scale>
 */
import { open } from "txtdb";
import { detectRuntime } from "txtdb";
import { Latencies, pool, result } from "./stats.ts";
import type { Result } from "./stats.ts";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [dir, scaleArg] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const scale = Number(scaleArg ?? 1);
const rt = detectRuntime();
const out: Result[] = [];
/** Untimed commits before W1 and W2 (scaled like the timed ones); peers.mjs uses the same figure. */
const WARM_UP = 1000;
/** W5/W5t: timed 1,000-key scans, after untimed ones (scaled); peers.mjs uses the same figures. */
const SCANS = 600, SCANS_UNTIMED = 30;

// W1: durable single-key commits, awaited one after another.
{
  const db = await open(`${dir}/w1-${rt}`, { namespaces: ["b"] });
  const n = Math.round(2000 * scale);
  // Untimed warm-up (every engine gets one): the timed commits measure steady state, not
  // the JIT compiling the commit path (the first 2,000 commits of a fresh Node process
  // ran at about half the speed of the next 2,000).
  await pool(Math.round(WARM_UP * scale), 1, (i) => db.set("b", i % 1000, { i, pad: "x".repeat(50) }), new Latencies(1));
  const lat = new Latencies(n);
  const ms = await pool(n, 1, (i) => db.set("b", i % 1000, { i, pad: "x".repeat(50) }), lat);
  out.push(result("W1 durable commits, sequential", "txtdb", rt, n, ms, lat));
  await db.close();
}
// W2: 64 in flight, blind writes to 10k random keys.
{
  const db = await open(`${dir}/w2-${rt}`, { namespaces: ["b"] });
  const n = Math.round(20000 * scale);
  await pool(Math.round(WARM_UP * scale), 64, () => db.set("b", Math.floor(Math.random() * 10000), { pad: "x".repeat(50) }), new Latencies(1));
  const lat = new Latencies(n);
  const ms = await pool(n, 64, () => db.set("b", Math.floor(Math.random() * 10000), { pad: "x".repeat(50) }), lat);
  out.push(result("W2 durable commits, 64 in flight", "txtdb", rt, n, ms, lat, `${db.stats().batches} batches`));
  await db.close();
}
// W4: warm point reads of 100k keys, on db and inside one transaction.
{
  const db = await open(`${dir}/w4-${rt}`, { namespaces: ["b"], durability: "none" });
  const keys = Math.round(100_000 * Math.min(1, scale));
  for (let i = 0; i < keys; i += 1000) {
    await db.transaction((tx) => { for (let j = i; j < Math.min(keys, i + 1000); j++) tx.set("b", j, { j, pad: "x".repeat(50) }); });
  }
  const n = keys * 2;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await db.get("b", (i * 7919) % keys);
  out.push(result("W4 point reads on db", "txtdb", rt, n, performance.now() - t0));
  const tx = await db.begin();
  t0 = performance.now();
  for (let i = 0; i < n; i++) await tx.get("b", (i * 7919) % keys);
  out.push(result("W4 point reads in a transaction", "txtdb", rt, n, performance.now() - t0));
  tx.rollback();
  // W5: range scans of 1,000 consecutive keys, after untimed ones (as every engine here):
  // steady state, not the first scans' compilation.
  const scans = Math.round(SCANS * Math.min(1, scale));
  const scanKeys = async (from: number, count: number) => {
    let seen = 0;
    for (let s = from; s < from + count; s++) {
      const start = (s * 997) % (keys - 1000);
      for await (const _ of db.list("b", { start, end: start + 1000 })) seen++;
    }
    return seen;
  };
  await scanKeys(scans, Math.round(SCANS_UNTIMED * Math.min(1, scale)));
  t0 = performance.now();
  let seen = await scanKeys(0, scans);
  out.push(result("W5 range scans of 1,000 keys (keys/s)", "txtdb", rt, seen, performance.now() - t0));
  // W4t, W5t: the same reads once compaction has moved the store into sorted tables (reads
  // go through the block cache and the tables instead of the in-memory table).
  await db.compact();
  t0 = performance.now();
  for (let i = 0; i < n; i++) await db.get("b", (i * 7919) % keys);
  out.push(result("W4t point reads, store compacted into tables", "txtdb", rt, n, performance.now() - t0));
  await scanKeys(scans, Math.round(SCANS_UNTIMED * Math.min(1, scale)));
  t0 = performance.now();
  seen = await scanKeys(0, scans);
  out.push(result("W5t range scans of 1,000 keys, store compacted into tables (keys/s)", "txtdb", rt, seen, performance.now() - t0));
  // Snapshot creation at this size.
  const snaps = 10000;
  t0 = performance.now();
  for (let i = 0; i < snaps; i++) (await db.snapshot()).release();
  out.push(result(`snapshot creation at ${keys} keys`, "txtdb", rt, snaps, performance.now() - t0));
  await db.close();
}
console.log(JSON.stringify(out));
