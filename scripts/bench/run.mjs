#!/usr/bin/env node
// `npm run bench`: every workload on txtdb (Node, Deno, Bun) and on the peers, in one run
// on one machine; prints a markdown table with txtdb÷peer ratios and writes JSON to
// bench-results/. `--quick` uses small sizes (under a minute); `--smoke` (used by the
// test command) uses tiny ones and checks only that every workload ran.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, openSync, writeSync, fdatasyncSync, closeSync, rmSync } from "node:fs";
import { build } from "esbuild";

const quick = process.argv.includes("--quick");
const smoke = process.argv.includes("--smoke");
const scale = smoke ? 0.02 : quick ? 0.25 : 1;
mkdirSync("/tmp/txtdb-bench", { recursive: true });
const dir = mkdtempSync("/tmp/txtdb-bench/run-");

function fsyncCostUs() {
  const fd = openSync(`${dir}/fsync-probe`, "w");
  const buf = Buffer.alloc(100, 1);
  const n = smoke ? 20 : 300;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) { writeSync(fd, buf); fdatasyncSync(fd); }
  const us = ((performance.now() - t0) * 1000) / n;
  closeSync(fd);
  return Math.round(us);
}

await build({ entryPoints: ["scripts/bench/txtdb.ts"], outfile: ".build-bench/txtdb.js", bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning" });

function runJson(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}

const fsyncUs = fsyncCostUs();
const results = [
  ...runJson(process.execPath, [".build-bench/txtdb.js", dir, String(scale)]),
  ...runJson("node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/txtdb.ts", dir, String(scale)]),
  ...runJson("node_modules/.bin/bun", ["scripts/bench/txtdb.ts", dir, String(scale)]),
  ...runJson(process.execPath, ["scripts/bench/peers.mjs", dir, String(scale)]),
];
rmSync(dir, { recursive: true, force: true });

const workloads = [...new Set(results.filter((r) => r.ops > 0).map((r) => r.workload))];
const fmt = (n) => (n === undefined ? "" : n.toLocaleString("en-US"));
const lines = [
  `txtdb bench — ${new Date().toISOString().slice(0, 10)}, ${smoke ? "smoke" : quick ? "quick" : "full"} scale, write+fdatasync of 100 B: ${fsyncUs} µs`,
  "",
  "| workload | engine | runtime | ops/s | p50 µs | p99 µs | txtdb (node) ÷ this | note |",
  "|---|---|---|---:|---:|---:|---:|---|",
];
for (const w of workloads) {
  const rows = results.filter((r) => r.workload === w);
  const mine = rows.find((r) => r.engine === "txtdb" && r.runtime === "node");
  for (const r of rows) {
    const ratio = mine && r !== mine && r.opsPerSec ? (mine.opsPerSec / r.opsPerSec).toFixed(2) + "×" : "";
    lines.push(`| ${w} | ${r.engine} | ${r.runtime} | ${fmt(r.opsPerSec)} | ${fmt(r.p50us)} | ${fmt(r.p99us)} | ${ratio} | ${r.note ?? ""} |`);
  }
}
for (const r of results.filter((r) => r.ops === 0)) lines.push(`| ${r.workload} | ${r.engine} | ${r.runtime} | — | | | | ${r.note} |`);
console.log(lines.join("\n"));
mkdirSync("bench-results", { recursive: true });
writeFileSync(`bench-results/${smoke ? "smoke" : quick ? "quick" : "full"}.json`, JSON.stringify({ date: new Date().toISOString(), fsyncUs, scale, results }, null, 2));
if (smoke) {
  const missing = ["txtdb/node", "txtdb/deno", "txtdb/bun"].filter((k) => !results.some((r) => `${r.engine}/${r.runtime}` === k && r.ops > 0));
  if (missing.length) { console.error(`bench smoke: no results from ${missing.join(", ")}`); process.exit(1); }
}
