#!/usr/bin/env node
// A/B of one table's point reads and scans (src/table.ts) between two source trees of
// txtdb, in one process: one table of N keys (encodeKey(["k", i]), 100-byte values) is
// written once, then each tree's TableReader reads it in alternating blocks: random point
// reads with a 4 MiB block cache (cold: nearly every read is a positioned read and a
// checksum), random point reads with every block cached (warm), and 1,000-key scans
// (range() from a random start). The best block of each counts, by CPU time.
//
//   node scripts/bench/table-ab.mjs <baseline repo dir> <candidate repo dir> [--keys=2000000] [--blocks=9]
//
// Large N is the point: at 10M keys the filter and the index (~26 MB) no longer sit in the
// CPU caches, and a point read's search over them costs memory latency.
import { build } from "esbuild";
import * as fs from "node:fs";
import * as path from "node:path";

const [baseRepo, candRepo] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
if (!baseRepo || !candRepo) throw new Error("usage: table-ab.mjs <baseline repo dir> <candidate repo dir> [--keys=N] [--blocks=B]");
const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt);
const N = arg("keys", 2_000_000);
const BLOCKS = arg("blocks", 9);
const GETS = 100_000;
const SCANS = 50;

fs.mkdirSync("/tmp/txtdb-bench", { recursive: true });
const dir = fs.mkdtempSync("/tmp/txtdb-bench/table-ab-");
async function load(repo, name) {
  const out = `${dir}/${name}.mjs`;
  await build({
    stdin: { contents: `export * from "./src/table.ts"; export * from "./src/blockcache.ts"; export { encodeKey } from "./src/keys.ts";`, resolveDir: path.resolve(repo), loader: "ts" },
    outfile: out, bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning",
  });
  return import(out);
}
const builds = { baseline: await load(baseRepo, "baseline"), candidate: await load(candRepo, "candidate") };

function handle(p, flags) {
  const fd = fs.openSync(p, flags, 0o600);
  return {
    path: p,
    read: (buf, pos) => fs.readSync(fd, buf, 0, buf.length, pos),
    write: (data, pos) => { let done = 0; while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, pos + done); },
    size: () => fs.fstatSync(fd).size,
    datasync: () => fs.fdatasyncSync(fd),
    close: () => fs.closeSync(fd),
  };
}
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const { TableWriter, encodeKey } = builds.baseline;
const keyOf = (i) => encodeKey(["k", i]);
const file = `${dir}/t.tbl`;
{
  const t0 = performance.now();
  const value = new Uint8Array(100).map(() => Math.floor(rand() * 256));
  const wf = handle(file, "wx");
  const w = new TableWriter(wf);
  for (let i = 0; i < N; i++) w.add(1, keyOf(i), i + 1, value);
  w.finish();
  wf.close();
  process.stderr.write(`wrote ${N} keys, ${(fs.statSync(file).size / 1e6).toFixed(0)} MB, in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
const getKeys = Array.from({ length: GETS }, () => keyOf(Math.floor(rand() * N)));
const scanFrom = Array.from({ length: SCANS }, () => keyOf(Math.floor(rand() * (N - 1000))));
const readers = {};
for (const [name, m] of Object.entries(builds)) {
  const cold = m.TableReader.open(handle(file, "r"), { cache: new m.BlockCache(4 << 20, { slotBytes: m.BLOCK_SLOT_BYTES }) });
  const warm = m.TableReader.open(handle(file, "r"), { cache: new m.BlockCache(1 << 30, { slotBytes: m.BLOCK_SLOT_BYTES }) });
  for (const _ of warm.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER)) { /* fill */ }
  readers[name] = { cold, warm };
}
const cpu = (fn) => { const c0 = process.cpuUsage(); fn(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; };
const measures = {
  "get cold": (r) => GETS / cpu(() => { for (const k of getKeys) if (r.cold.get(1, k, Number.MAX_SAFE_INTEGER, true) === undefined) throw new Error("missing"); }),
  "get warm": (r) => GETS / cpu(() => { for (const k of getKeys) if (r.warm.get(1, k, Number.MAX_SAFE_INTEGER, true) === undefined) throw new Error("missing"); }),
  "scan": (r) => (SCANS * 1000) / cpu(() => {
    for (const k of scanFrom) { let n = 0; for (const _ of r.warm.range(1, k, undefined, Number.MAX_SAFE_INTEGER)) if (++n === 1000) break; }
  }),
};
const best = {};
for (let i = 0; i < BLOCKS; i++) {
  for (const [what, fn] of Object.entries(measures)) {
    for (const name of i % 2 ? ["baseline", "candidate"] : ["candidate", "baseline"]) {
      const k = `${what}|${name}`;
      best[k] = Math.max(best[k] ?? 0, fn(readers[name]));
    }
  }
}
for (const what of Object.keys(measures)) {
  const b = best[`${what}|baseline`], c = best[`${what}|candidate`];
  console.log(`${what.padEnd(9)} baseline ${b.toFixed(0).padStart(6)}k/s  candidate ${c.toFixed(0).padStart(6)}k/s  ×${(c / b).toFixed(3)}  (${N} keys, best of ${BLOCKS} blocks, CPU time)`);
}
for (const r of Object.values(readers)) { r.cold.close(); r.warm.close(); }
fs.rmSync(dir, { recursive: true, force: true });
