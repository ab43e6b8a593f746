// A/B of sequential durable commits (W1: db.set awaited one after another) between two
// builds of txtdb and better-sqlite3 (WAL, synchronous=FULL), in one process, in
// alternating blocks, so that the disk's speed, which moves ±2× from one minute to the next
// on this kind of VM, is the same for all three. Reports each engine's median block and the
// block-device writes per commit (from /sys/dev/block/<major>:<minor>/stat of the disk the
// stores are on; the flush of an fdatasync counts as one), which is how an extra write per
// sync shows (adapters/statx.ts). For the two txtdb builds it also reports the median
// block's time per commit outside fdatasync (Node's fs.fdatasyncSync, which the Node adapter
// calls, is timed and taken off): the fsync is most of a commit and moves with the disk, so
// commits per second hide a change of a few µs in the rest (system calls, encoding, the
// index, promise hops). better-sqlite3 syncs in native code, out of its sight.
//
//   node scripts/bench/commit-ab.mjs <baseline dist dir> <candidate dist dir> [blocks] [commits per block]
//
// e.g. build main into /tmp/base (git archive main | tar -x -C /tmp/base; npx tsup there)
// and compare with ./dist.
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire, syncBuiltinESMExports } from "node:module";

const require = createRequire(import.meta.url);
const nodeFs = require("node:fs");
const fdatasyncSync = nodeFs.fdatasyncSync;
let syncNs = 0;
nodeFs.fdatasyncSync = (fd) => {
  const t = process.hrtime.bigint();
  try {
    return fdatasyncSync(fd);
  } finally {
    syncNs += Number(process.hrtime.bigint() - t);
  }
};
syncBuiltinESMExports(); // the builds import node:fs as a module namespace

const [baseDir, candDir, blocksArg, perArg] = process.argv.slice(2);
if (!baseDir || !candDir) throw new Error("usage: commit-ab.mjs <baseline dist dir> <candidate dist dir> [blocks] [commits per block]");
const BLOCKS = Number(blocksArg ?? 8);
const N = Number(perArg ?? 1000);
const Database = require("better-sqlite3");

fs.mkdirSync("/tmp/txtdb-bench", { recursive: true });
const dir = fs.mkdtempSync("/tmp/txtdb-bench/commit-ab-");
/** Writes completed on the device holding `dir`, or NaN where the kernel does not say. */
const dev = fs.statSync(dir).dev;
const statPath = `/sys/dev/block/${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((Math.floor(dev / 4096) & 0xfff00))}/stat`;
const deviceWrites = () => {
  try {
    return Number(fs.readFileSync(statPath, "utf8").trim().split(/\s+/)[4]);
  } catch {
    return NaN;
  }
};
const value = (i) => ({ i, pad: "x".repeat(50) });
const engines = [];
for (const [name, root] of [["baseline", baseDir], ["candidate", candDir]]) {
  const m = await import(path.resolve(root, "mod.js"));
  const db = await m.open(`${dir}/${name}`, { namespaces: ["b"] });
  engines.push({ name, close: () => db.close(), run: async () => { for (let i = 0; i < N; i++) await db.set("b", i % 1000, value(i)); } });
}
{
  const s = new Database(`${dir}/sqlite.db`);
  s.pragma("journal_mode = WAL");
  s.pragma("synchronous = FULL");
  s.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)");
  const put = s.prepare("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"), begin = s.prepare("BEGIN IMMEDIATE"), commit = s.prepare("COMMIT");
  engines.push({ name: "better-sqlite3", close: () => s.close(), run: async () => { for (let i = 0; i < N; i++) { begin.run(); put.run(i % 1000, JSON.stringify(value(i))); commit.run(); } } });
}
const results = Object.fromEntries(engines.map((e) => [e.name, []]));
for (let b = 0; b < BLOCKS + 1; b++) {
  for (const e of engines) {
    const w0 = deviceWrites();
    syncNs = 0;
    const t0 = performance.now();
    await e.run();
    const ms = performance.now() - t0;
    const outsideSyncUs = (ms * 1000 - syncNs / 1000) / N;
    if (b > 0) results[e.name].push({ perSec: (N / ms) * 1000, writes: (deviceWrites() - w0) / N, outsideSyncUs }); // block 0 warms up
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sqlite = median(results["better-sqlite3"].map((r) => r.perSec));
for (const e of engines) {
  const perSec = median(results[e.name].map((r) => r.perSec));
  const writes = median(results[e.name].map((r) => r.writes));
  const outside = e.name === "better-sqlite3" ? "" : `  ${median(results[e.name].map((r) => r.outsideSyncUs)).toFixed(1)} µs per commit outside fdatasync`;
  console.log(`${e.name.padEnd(15)} ${Math.round(perSec).toLocaleString("en-US").padStart(6)} commits/s  ${(perSec / sqlite).toFixed(2)}x better-sqlite3  ${writes.toFixed(2)} device writes per commit${outside}`);
}
for (const e of engines) await e.close();
fs.rmSync(dir, { recursive: true, force: true });
