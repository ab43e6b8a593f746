#!/usr/bin/env node
// `npm run demo`: Node, Deno and Bun processes transfer money between accounts in one
// store for a few seconds while a watcher in this process prints live totals from their
// commits; then per-runtime throughput, conflicts and retries, and the verified invariant.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { open } from "txtdb";

const SECONDS = Number(process.env.TXTDB_DEMO_SECONDS ?? 5);
const ACCOUNTS = 100;
const START = 1000;
mkdirSync("/tmp/txtdb-demo", { recursive: true });
const dir = mkdtempSync("/tmp/txtdb-demo/bank-");
const db = await open(dir, { namespaces: ["bank"] });
await db.transaction((tx) => { for (let i = 0; i < ACCOUNTS; i++) tx.set("bank", ["acct", i], START); });
console.log(`store ${dir}: ${ACCOUNTS} accounts × ${START} = ${ACCOUNTS * START}`);

// The watcher: a live mirror of the balances, built only from commit events.
const balances = new Map();
for await (const e of db.list("bank", { prefix: ["acct"] })) balances.set(e.key[1], e.value);
let events = 0;
const watcher = db.watch("bank", { prefix: ["acct"] });
const watching = (async () => {
  for await (const ev of watcher) {
    events++;
    for (const c of ev.changes) balances.set(c.key[1], c.value);
  }
})();
const sum = () => [...balances.values()].reduce((a, b) => a + b, 0);

const workers = [
  ["node", [process.execPath, ["scripts/demo-worker.mjs"]]],
  ["deno", ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/demo-worker.mjs"]]],
  ["bun", ["node_modules/.bin/bun", ["scripts/demo-worker.mjs"]]],
].map(([name, [cmd, base]]) => {
  const child = spawn(cmd, [...base, dir, String(SECONDS), String(ACCOUNTS), name], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => child.on("exit", (code) => {
    const line = out.split("\n").find((l) => l.startsWith("done "));
    if (code !== 0 || !line) reject(new Error(`${name} worker failed (exit ${code}): ${out}`));
    else resolve(JSON.parse(line.slice(5)));
  }));
});
console.log(`started Node, Deno and Bun workers for ${SECONDS} s; live view from this process's watcher:`);
const t0 = performance.now();
const ticker = setInterval(() => {
  console.log(`  ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s  commits seen ${String(events).padStart(7)}  total ${sum()}`);
}, 1000);
const results = await Promise.all(workers);
clearInterval(ticker);
// Let the watcher drain the last commits, then stop it.
const deadline = performance.now() + 2000;
while (performance.now() < deadline && sum() !== ACCOUNTS * START) await new Promise((r) => setTimeout(r, 20));
await new Promise((r) => setTimeout(r, 100));
await watcher.return();
await watching;

console.log("\n| process | transfers | transfers/s | conflicts | retries | group-commit batches |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of results) {
  console.log(`| ${r.runtime} | ${r.acked} | ${Math.round(r.acked / r.seconds)} | ${r.conflicts} | ${r.retries} | ${r.batches} |`);
}
const acked = results.reduce((a, r) => a + r.acked, 0);

// Verify from the store itself.
let total = 0;
for await (const e of db.list("bank", { prefix: ["acct"] })) total += e.value;
const problems = [];
if (total !== ACCOUNTS * START) problems.push(`total is ${total}, expected ${ACCOUNTS * START}`);
for (const r of results) {
  let n = 0;
  for await (const _ of db.list("bank", { prefix: ["xfer", r.tag] })) n++;
  if (n !== r.acked) problems.push(`${r.tag}: ${r.acked} acknowledged transfers, ${n} in the store`);
}
const counter = await db.get("bank", "transfers");
if (counter !== acked) problems.push(`transfer counter ${counter}, acknowledged ${acked}`);
if (sum() !== total) problems.push(`the watcher's mirror totals ${sum()}, the store ${total}`);
await db.close();
if (problems.length) {
  console.log(`\nINVARIANT BROKEN:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`\nverified: total conserved (${total}); all ${acked} acknowledged transfers present (${Math.round(acked / SECONDS)}/s across 3 runtimes); the watcher saw ${events} commits and its mirror matches the store`);
