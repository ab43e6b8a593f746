// A/B of reads from tables through the public API, between two builds of txtdb: one store
// of N keys shaped as scale.mjs fills it (["k", i] → { s: 80 chars, n: i }), compacted; then
// child processes, alternating between the builds, each open the store and measure one of:
// warm point reads (db.get over a subset that fits the block cache), cold point reads (a
// 256 KiB cache, so nearly every read is a positioned read and a checksum) and 1,000-key
// range scans (db.list), or (--only=pages) the same scans read from the index alone
// (Index.range, pages of 256 keys, nothing decoded). Each child reports its best block by CPU time; the table shows
// the median and the best over the children of each build (they vary by ±25 % here).
// Separate processes because two builds in one process do not run alike: the one loaded
// first measured 10–20 % faster at scans.
//
//   node scripts/bench/tables-ab.mjs <baseline dist dir> <candidate dist dir> [rounds] [keys] [--only=warm,cold,scan] [--verbose]
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const S = "x".repeat(70);
const valueOf = (i) => ({ s: S + String(i).padStart(10, "0"), n: i });
const READS = 20_000;
const SCANS = 40;
const SCAN = 1000;
const BLOCKS = 8;

if (process.argv[2] === "--child") {
  const [, , , dist, dir, what, keysArg] = process.argv;
  const N = Number(keysArg);
  const m = await import(path.resolve(dist, "mod.js"));
  let seed = 7;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const warmKeys = Array.from({ length: READS }, () => Math.floor(rand() * 20_000) * Math.floor(N / 20_000));
  const coldKeys = Array.from({ length: READS }, () => Math.floor(rand() * N));
  const scanStarts = Array.from({ length: SCANS }, () => Math.floor(rand() * (N - SCAN)));
  const db = await m.open(dir, { durability: "none", autoCompactBytes: 0, ...(what === "cold" ? { cacheBytes: 256 * 1024 } : {}) });
  const cpu = async (fn) => { const c0 = process.cpuUsage(); await fn(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; };
  const gets = async (keys) => READS / await cpu(async () => { for (const i of keys) if ((await db.get("bench", ["k", i])).n !== i) throw new Error("wrong value"); });
  const scans = async () => (SCANS * SCAN) / await cpu(async () => {
    for (const a of scanStarts) {
      let n = 0;
      for await (const e of db.list("bench", { start: ["k", a], end: ["k", a + SCAN] })) if (e.value.n !== a + n++) throw new Error("wrong value");
      if (n !== SCAN) throw new Error("wrong count");
    }
  });
  // The table layer alone (no promise, no Entry, no decoding): Index.range by pages of 256 as list() asks.
  const int = await import(path.resolve(dist, "internal.js"));
  const index = int.databaseInternals(db).index;
  const pages = async () => (SCANS * SCAN) / await cpu(() => {
    const snap = index.lastTsn, id = index.resolve("bench", snap);
    for (const a of scanStarts) {
      const s = int.encodeKey(["k", a]), e = int.encodeKey(["k", a + SCAN]);
      let after, n = 0;
      for (;;) {
        const rows = index.range(id, s, e, snap, false, 256, after);
        n += rows.length;
        if (rows.length < 256) break;
        after = rows[rows.length - 1][0];
      }
      if (n !== SCAN) throw new Error("wrong count");
    }
  });
  const fn = what === "warm" ? () => gets(warmKeys) : what === "cold" ? () => gets(coldKeys) : what === "pages" ? pages : scans;
  let best = 0;
  for (let i = 0; i < BLOCKS; i++) best = Math.max(best, await fn());
  await db.close();
  process.stdout.write(String(best));
  process.exit(0);
}

const [baseDir, candDir, roundsArg, keysArg] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7).split(",") ?? ["warm", "cold", "scan"];
const verbose = process.argv.includes("--verbose");
if (!baseDir || !candDir) throw new Error("usage: tables-ab.mjs <baseline dist dir> <candidate dist dir> [rounds] [keys]");
const ROUNDS = Number(roundsArg ?? 5);
const N = Number(keysArg ?? 200_000);
const dir = fs.mkdtempSync("/tmp/txtdb-tables-ab-");
{
  const m = await import(path.resolve(baseDir, "mod.js"));
  const db = await m.open(dir, { namespaces: ["bench"], durability: "none", autoCompactBytes: 0 });
  for (let b = 0; b < N; b += 10_000) await db.transaction((tx) => { for (let i = b; i < Math.min(N, b + 10_000); i++) tx.set("bench", ["k", i], valueOf(i)); });
  await db.compact();
  await db.close();
}
const self = fileURLToPath(import.meta.url);
const results = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const what of only) {
    for (const [name, dist] of r % 2 ? [["baseline", baseDir], ["candidate", candDir]] : [["candidate", candDir], ["baseline", baseDir]]) {
      const out = spawnSync(process.execPath, [self, "--child", dist, dir, what, String(N)], { encoding: "utf8" });
      if (out.status !== 0) throw new Error(`child failed: ${out.stderr}`);
      (results[`${what}|${name}`] ??= []).push(Number(out.stdout));
    }
  }
}
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; };
for (const what of only) {
  if (verbose) for (const name of ["baseline", "candidate"]) console.log(`${what} ${name}: ${results[`${what}|${name}`].map((x) => x.toFixed(0)).join(" ")}`);
  const b = median(results[`${what}|baseline`]), c = median(results[`${what}|candidate`]);
  const bMax = Math.max(...results[`${what}|baseline`]), cMax = Math.max(...results[`${what}|candidate`]);
  const label = { warm: "warm get", cold: "cold get", scan: "scan keys", pages: "pages" }[what];
  console.log(`${label.padEnd(9)} median: baseline ${(b).toFixed(0).padStart(5)}k/s  candidate ${(c).toFixed(0).padStart(5)}k/s  ×${(c / b).toFixed(3)};  best: ${bMax.toFixed(0)}k/s vs ${cMax.toFixed(0)}k/s ×${(cMax / bMax).toFixed(3)}  (${ROUNDS} processes each, each its best of ${BLOCKS} blocks by CPU time)`);
}
fs.rmSync(dir, { recursive: true, force: true });
