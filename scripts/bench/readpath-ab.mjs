// A/B of the synchronous read hot path (index.get + value decode, as a point read does it)
// between two builds of txtdb, in one process: 100k keys without expiry, read in the
// in-memory table and again after compaction (tables), in alternating blocks; the best
// block of each counts, by CPU time (other work on the machine only ever slows a block).
//
//   node scripts/bench/readpath-ab.mjs <baseline dist dir> <candidate dist dir> [blocks]
//
// e.g. build main into /tmp/base (git archive main | tar -x -C /tmp/base; npx tsup there)
// and compare with ./dist. Run it twice with the arguments swapped: the build loaded second
// tends to win a few percent (measured A/A: +2-7 %).
import * as fs from "node:fs";
import * as path from "node:path";

const [baseDir, candDir, blocksArg] = process.argv.slice(2);
if (!baseDir || !candDir) throw new Error("usage: readpath-ab.mjs <baseline dist dir> <candidate dist dir> [blocks]");
const BLOCKS = Number(blocksArg ?? 60);
const N = 100_000;
const builds = {};
for (const [name, root] of [["baseline", baseDir], ["candidate", candDir]]) {
  const m = await import(path.resolve(root, "mod.js")), int = await import(path.resolve(root, "internal.js"));
  const dir = fs.mkdtempSync("/tmp/txtdb-readpath-");
  const db = await m.open(dir, { namespaces: ["ns"], durability: "none", autoCompactBytes: 0 });
  for (let b = 0; b < N; b += 5000) await db.transaction((tx) => { for (let i = b; i < b + 5000; i++) tx.set("ns", ["k", i], { n: i, s: "v" + i }); });
  const index = int.databaseInternals(db).index;
  const keys = Array.from({ length: N }, (_, i) => int.encodeKey(["k", (i * 7919) % N], 2048));
  // A build with expiring keys decodes the value's own bytes (valueBytesOf), as its reads do.
  const unwrap = int.valueBytesOf ?? ((b) => b);
  builds[name] = { db, dir, index, decode: int.decodeValue, unwrap, keys, id: index.resolve("ns", index.lastTsn) };
}
function block(b) {
  const { index, keys, id, decode, unwrap } = b;
  const snap = index.lastTsn;
  const c0 = process.cpuUsage();
  let s = 0;
  for (const k of keys) s += decode(unwrap(index.get(id, k, snap, true).value)).n;
  const c = process.cpuUsage(c0);
  if (s !== (N * (N - 1)) / 2) throw new Error("wrong sum");
  return keys.length / ((c.user + c.system) / 1000);
}
const best = {};
for (const where of ["memory", "tables"]) {
  if (where === "tables") for (const b of Object.values(builds)) await b.db.compact();
  for (let i = 0; i < BLOCKS; i++) {
    for (const name of i % 2 ? ["baseline", "candidate"] : ["candidate", "baseline"]) {
      const k = `${where} ${name}`;
      best[k] = Math.max(best[k] ?? 0, block(builds[name]));
    }
  }
}
for (const [k, v] of Object.entries(best)) console.log(`${k.padEnd(18)} ${(v).toFixed(0)}k point reads/s (best of ${BLOCKS} blocks of ${N}, CPU time)`);
for (const b of Object.values(builds)) { await b.db.close(); fs.rmSync(b.dir, { recursive: true, force: true }); }
