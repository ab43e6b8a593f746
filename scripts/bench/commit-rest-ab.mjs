// A/B of what a sequential durable commit (W1: db.set awaited one after another) costs
// besides its fsync, between two builds of txtdb, in one process, in alternating blocks.
// Why: the fsync is most of a commit here and its time moves ±2× from one minute to the
// next on this kind of VM, so commits per second hide a change of a few µs in the rest of
// the commit (system calls, encoding, the index, promise hops). Each block's time in
// fdatasync (Node's fs.fdatasyncSync, which the Node adapter calls) is taken off its
// time; the medians of the blocks are printed.
//
//   node scripts/bench/commit-rest-ab.mjs <baseline dist dir> <candidate dist dir> [blocks=20] [commits per block=400]
//
// e.g. build the baseline into a copy (git worktree add /tmp/base <commit>; npm run build
// there, with node_modules linked) and compare with ./dist.
import * as fs from "node:fs";
import * as os from "node:os";
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
if (!baseDir || !candDir) throw new Error("usage: commit-rest-ab.mjs <baseline dist dir> <candidate dist dir> [blocks] [commits per block]");
const BLOCKS = Number(blocksArg ?? 20), N = Number(perArg ?? 400);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "txtdb-rest-ab-"));
const value = (i) => ({ i, pad: "x".repeat(50) });
const engines = [];
for (const [name, root] of [["baseline", baseDir], ["candidate", candDir]]) {
  const m = await import(path.resolve(root, "mod.js"));
  const db = await m.open(`${dir}/${name}`, { namespaces: ["b"] });
  for (let i = 0; i < 2000; i++) await db.set("b", i % 1000, value(i)); // warm-up, untimed
  engines.push({ name, db, restUs: [], commitUs: [] });
}
for (let k = 0; k < BLOCKS; k++) {
  for (const e of k % 2 ? [...engines].reverse() : engines) {
    syncNs = 0;
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await e.db.set("b", i % 1000, value(i));
    const ns = Number(process.hrtime.bigint() - t);
    e.commitUs.push(ns / N / 1000);
    e.restUs.push((ns - syncNs) / N / 1000);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const e of engines) {
  console.log(`${e.name.padEnd(10)} commit ${median(e.commitUs).toFixed(1)} µs, of which outside fdatasync ${median(e.restUs).toFixed(1)} µs (median of ${BLOCKS} blocks of ${N})`);
  await e.db.close();
}
fs.rmSync(dir, { recursive: true, force: true });
