#!/usr/bin/env node
// The longest commit in one process while another compacts (the writer-lock stall), on the
// tsup build: `node scripts/bench/compact-stall.mjs` (fills 300k keys twice, ~60 MB of log).
// Pass another build's dist/ directory as the first argument to compare releases.
// STALL_BASE=<store dir>: start from a copy of that store (e.g. a 10M-key store that
// `scale.mjs --keep` left, ~1.1 GB), so the compaction runs on a store of that size.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
const self = fileURLToPath(import.meta.url);
const defaultDist = new URL("../../dist", import.meta.url).pathname;
if (process.argv[2] === undefined || !["fill", "compact", "write"].includes(process.argv[3])) {
  const dist = process.argv[2] ?? defaultDist;
  const dir = mkdtempSync("/tmp/txtdb-stall-");
  if (process.env.STALL_BASE) {
    rmSync(dir, { recursive: true });
    const cp = spawnSync("cp", ["-a", process.env.STALL_BASE, dir], { stdio: "inherit" });
    if (cp.status !== 0) process.exit(1);
    const du = spawnSync("du", ["-sh", dir], { encoding: "utf8" });
    console.log(`store copied from ${process.env.STALL_BASE}: ${du.stdout.trim()}`);
  }
  const run = (role) => new Promise((resolve) => spawn(process.execPath, [self, dist, role, dir], { stdio: "inherit" }).on("exit", resolve));
  await run("fill");
  await Promise.all([run("write"), run("compact")]);
  if (process.env.STALL_BASE) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
import { existsSync, writeFileSync } from "node:fs";
const [dist, role, dir] = process.argv.slice(2);
const { open } = await import(`${dist}/mod.js`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
if (role === "fill") {
  const db = await open(dir, { durability: "none", autoCompactBytes: 0 });
  if (!(await db.listNamespaces()).includes("ns")) await db.createNamespace("ns");
  for (let b = 0; b < 30; b++) await db.transaction((tx) => { for (let i = 0; i < 10000; i++) tx.set("ns", ["k", b * 10000 + i], "x".repeat(100)); }, {});
  for (let b = 0; b < 30; b++) await db.transaction((tx) => { for (let i = 0; i < 10000; i++) tx.set("ns", ["k", b * 10000 + i], "y".repeat(100)); }, {});
  await db.close();
} else if (role === "compact") {
  const db = await open(dir, { autoCompactBytes: 0 });
  writeFileSync(`${dir}.c-ready`, "");
  while (!existsSync(`${dir}.w-ready`)) await sleep(20);
  await sleep(500);
  writeFileSync(`${dir}.c-start`, "");
  const t0 = performance.now();
  const r = await db.compact();
  console.log(`compact took ${(performance.now() - t0).toFixed(0)} ms, folded ${r.segmentsFolded}`);
  writeFileSync(`${dir}.c-done`, "");
  await db.close();
} else {
  while (!existsSync(`${dir}.c-ready`)) await sleep(20);
  const db = await open(dir, { autoCompactBytes: 0 });
  await db.set("ns", "warm", 1);
  writeFileSync(`${dir}.w-ready`, "");
  while (!existsSync(`${dir}.c-start`)) await db.set("ns", "warm", 1);
  let max = 0, n = 0;
  while (!existsSync(`${dir}.c-done`)) { const a = performance.now(); await db.set("ns", ["w", n++ % 100], n); max = Math.max(max, performance.now() - a); }
  console.log(`writer during the compaction: ${n} commits, longest ${max.toFixed(1)} ms`);
  await db.close();
}
