#!/usr/bin/env node
// `npm run bench`: every workload on txtdb (Node, Deno, Bun) and on the peers, in one run
// on one machine; prints a markdown table with txtdb÷peer ratios and writes JSON to
// bench-results/. `--quick` uses small sizes (under a minute); `--smoke` (used by the
// test command) uses tiny ones and checks only that every workload ran.
import { spawn, spawnSync } from "node:child_process";
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

await build({ entryPoints: ["scripts/bench/txtdb.ts", "scripts/bench/extras.ts", "scripts/bench/mp-txtdb.ts"], outdir: ".build-bench", bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning" });

function runJson(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: smoke ? 120_000 : 900_000, killSignal: "SIGKILL" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${(r.stderr ?? "").slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}

/** Runs `procs` worker processes at once and returns their JSON results. */
/** A bench worker that runs longer than this is killed and the run fails, naming it. */
const WORKER_TIMEOUT_MS = smoke ? 60_000 : 300_000;

function runParallel(specs) {
  return Promise.all(specs.map(([cmd, args]) => new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bench worker did not finish within ${WORKER_TIMEOUT_MS} ms: ${cmd} ${args.join(" ")}`));
    }, WORKER_TIMEOUT_MS);
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out.trim().split("\n").at(-1)));
      else reject(new Error(`${cmd} ${args.join(" ")} exited ${code}`));
    });
  })));
}

const txtdbCmd = {
  node: (a) => [process.execPath, [".build-bench/mp-txtdb.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/mp-txtdb.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/mp-txtdb.ts", ...a]],
};

/** Commit attempts (acknowledged + retried) per group commit, over bench workers' results. */
const attemptsPerGroupCommit = (res) => (res.reduce((a, r) => a + r.ops + r.retries, 0) / res.reduce((a, r) => a + r.batches, 0)).toFixed(1);

async function multiProcess() {
  const rows = [];
  const { open } = await import("txtdb");
  let Database;
  try { Database = (await import("better-sqlite3")).default; } catch { /* peer unavailable */ }
  const per = Math.max(20, Math.round(2000 * scale));
  for (const procs of [1, 2, 4]) {
    // W3 on txtdb (Node processes), verified.
    const path = `${dir}/w3-${procs}`;
    const db = await open(path, { namespaces: ["b"] });
    const res = await runParallel(Array.from({ length: procs }, () => txtdbCmd.node(["w3", path, String(per)])));
    let sum = 0;
    for await (const e of db.list("b", { prefix: [] })) sum += e.value;
    await db.close();
    if (sum !== procs * per) throw new Error(`W3 txtdb ${procs} processes: counters sum to ${sum}, acknowledged ${procs * per}: LOST UPDATES`);
    const ms = Math.max(...res.map((r) => r.ms));
    const lockP99 = Math.max(...res.map((r) => r.lockWaitUs.p99));
    const lockP50 = Math.max(...res.map((r) => r.lockWaitUs.p50));
    const gap = Math.max(...res.map((r) => r.worstGapMs));
    rows.push({ workload: `W3 increments, ${procs} process${procs > 1 ? "es" : ""}`, engine: "txtdb", runtime: "node", ops: procs * per, opsPerSec: Math.round((procs * per) / (ms / 1000)), note: `verified; 16 in flight per process; ${attemptsPerGroupCommit(res)} commit attempts per group commit; commit-lock wait p50 ${Math.round(lockP50)} µs, p99 ${Math.round(lockP99)} µs; worst 1 ms-heartbeat gap ${gap.toFixed(1)} ms` });
    if (Database) {
      const file = `${dir}/w3-${procs}.sqlite`;
      const s = new Database(file);
      s.pragma("journal_mode = WAL");
      s.exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)");
      s.close();
      const r2 = await runParallel(Array.from({ length: procs }, () => [process.execPath, ["scripts/bench/mp-sqlite.mjs", "w3", file, String(per)]]));
      const v = new Database(file);
      const total = v.prepare("SELECT COALESCE(SUM(v), 0) AS t FROM kv").get().t;
      v.close();
      if (total !== procs * per) throw new Error(`W3 sqlite ${procs} processes: sum ${total}, expected ${procs * per}`);
      const ms2 = Math.max(...r2.map((r) => r.ms));
      rows.push({ workload: `W3 increments, ${procs} process${procs > 1 ? "es" : ""}`, engine: "better-sqlite3", runtime: "node", ops: procs * per, opsPerSec: Math.round((procs * per) / (ms2 / 1000)), note: "verified; synchronous: one transaction at a time per process" });
    }
  }
  // W6: bank transfers, 4 processes of mixed runtimes for txtdb.
  {
    const path = `${dir}/w6`;
    const db = await open(path, { namespaces: ["b"] });
    await db.transaction((tx) => { for (let i = 0; i < 100; i++) tx.set("b", ["acct", i], 1000); });
    const res = await runParallel([txtdbCmd.node(["w6", path, String(per)]), txtdbCmd.deno(["w6", path, String(per)]), txtdbCmd.bun(["w6", path, String(per)]), txtdbCmd.node(["w6", path, String(per)])]);
    let total = 0;
    for await (const e of db.list("b", { prefix: ["acct"] })) total += e.value;
    await db.close();
    if (total !== 100_000) throw new Error(`W6 txtdb: total ${total}, expected 100000`);
    const ms = Math.max(...res.map((r) => r.ms));
    rows.push({ workload: "W6 bank transfers, 4 processes", engine: "txtdb", runtime: "node+deno+bun+node", ops: 4 * per, opsPerSec: Math.round((4 * per) / (ms / 1000)), note: `total verified; 16 in flight per process; ${res.reduce((a, r) => a + r.conflicts, 0)} conflicts; ${attemptsPerGroupCommit(res)} commit attempts per group commit` });
    if (Database) {
      const file = `${dir}/w6.sqlite`;
      const s = new Database(file);
      s.pragma("journal_mode = WAL");
      s.exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)");
      const ins = s.prepare("INSERT INTO kv (k, v) VALUES (?, 1000)");
      for (let i = 0; i < 100; i++) ins.run(1e6 + i);
      s.close();
      const r2 = await runParallel(Array.from({ length: 4 }, () => [process.execPath, ["scripts/bench/mp-sqlite.mjs", "w6", file, String(per)]]));
      const v = new Database(file);
      const t2 = v.prepare("SELECT SUM(v) AS t FROM kv").get().t;
      v.close();
      if (t2 !== 100_000) throw new Error(`W6 sqlite: total ${t2}`);
      rows.push({ workload: "W6 bank transfers, 4 processes", engine: "better-sqlite3", runtime: "node", ops: 4 * per, opsPerSec: Math.round((4 * per) / (Math.max(...r2.map((r) => r.ms)) / 1000)), note: "total verified" });
    }
  }
  return rows;
}

const fsyncUs = fsyncCostUs();
const results = [
  ...runJson(process.execPath, [".build-bench/txtdb.js", dir, String(scale)]),
  ...runJson("node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/txtdb.ts", dir, String(scale)]),
  ...runJson("node_modules/.bin/bun", ["scripts/bench/txtdb.ts", dir, String(scale)]),
  ...runJson(process.execPath, ["scripts/bench/peers.mjs", dir, String(scale)]),
  ...(await multiProcess()),
  ...runJson(process.execPath, ["--expose-gc", ".build-bench/extras.js", dir, String(smoke ? 0.002 : scale)]),
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
  const mine = rows.find((r) => r.engine === "txtdb" && r.runtime.startsWith("node"));
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
