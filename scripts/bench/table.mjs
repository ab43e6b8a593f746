#!/usr/bin/env node
// Micro-benchmark of the storage v2 building blocks (src/table.ts, blockcache.ts, merge.ts)
// on Node, beside lmdb-js on the same data: write speed, open time, random point reads
// with a warm and a cold block cache, and 1,000-key range scans.
//
//   node scripts/bench/table.mjs [--keys=1000000] [--block=4096] [--no-lmdb]
//
// Keys are encodeKey(["k", i]) (13 bytes), values 100 random bytes, one version each.
// "Cold" means the block cache is far smaller than the table (every read misses it); the
// file itself stays in the OS page cache, as it would for a hot store.
import { build } from "esbuild";
import * as fs from "node:fs";

const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt);
const N = arg("keys", 1_000_000);
const BLOCK = arg("block", 4096);
const withLmdb = !process.argv.includes("--no-lmdb");
const GETS = Math.min(N, 300_000);
const SCANS = 300;
const SCAN_KEYS = 1000;

fs.mkdirSync("/tmp/txtdb-bench", { recursive: true });
const dir = fs.mkdtempSync("/tmp/txtdb-bench/table-");
const modPath = `${dir}/storage.mjs`;
await build({
  stdin: {
    contents: `export * from "./src/table.ts"; export * from "./src/blockcache.ts"; export * from "./src/merge.ts"; export { encodeKey } from "./src/keys.ts";`,
    resolveDir: process.cwd(), loader: "ts",
  },
  outfile: modPath, bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning",
});
const { TableWriter, TableReader, BlockCache, mergeVisible, encodeKey } = await import(modPath);

/** The port's FileHandle over node:fs, as adapters/nodefs.ts does it (the parts tables use). */
function handle(path, flags) {
  const fd = fs.openSync(path, flags, 0o600);
  return {
    path,
    read: (buf, pos) => fs.readSync(fd, buf, 0, buf.length, pos),
    write: (data, pos) => { let done = 0; while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, pos + done); },
    size: () => fs.fstatSync(fd).size,
    datasync: () => fs.fdatasyncSync(fd),
    close: () => fs.closeSync(fd),
  };
}

let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const keys = Array.from({ length: N }, (_, i) => encodeKey(["k", i]));
// encodeKey orders numbers numerically, so keys[] is sorted.
const value = new Uint8Array(100).map(() => Math.floor(rand() * 256));
const ms = (t0) => performance.now() - t0;
const fmt = (n) => Math.round(n).toLocaleString("en-US");
const results = {};

// 1. Write
const path = `${dir}/t.tbl`;
let t0 = performance.now();
const wf = handle(path, "wx");
const w = new TableWriter(wf, { blockBytesTarget: BLOCK });
for (let i = 0; i < N; i++) w.add(1, keys[i], i + 1, value);
const meta = w.finish();
const writeMs = ms(t0);
wf.datasync();
wf.close();
const userBytes = N * (keys[0].length + value.length);
results.write = { ms: writeMs, fileMB: meta.fileBytes / 1e6, MBps: meta.fileBytes / 1e6 / (writeMs / 1000), userMBps: userBytes / 1e6 / (writeMs / 1000), entriesPerSec: N / (writeMs / 1000), blocks: meta.blockCount, indexKB: meta.indexBytes / 1024, filterKB: meta.filterBytes / 1024 };

// 2. Open (footer + filter + index), median of 9
const opens = [];
for (let i = 0; i < 9; i++) {
  t0 = performance.now();
  const r = TableReader.open(handle(path, "r"), { cache: new BlockCache(1 << 20) });
  opens.push(ms(t0));
  r.close();
}
opens.sort((a, b) => a - b);
results.open = { medianMs: opens[4], residentKB: 0 };

const order = Array.from({ length: GETS }, () => Math.floor(rand() * N));
function pointGets(reader) {
  let found = 0;
  const t = performance.now();
  for (let i = 0; i < GETS; i++) if (reader.get(1, keys[order[i]], Number.MAX_SAFE_INTEGER) !== undefined) found++;
  const elapsed = ms(t);
  if (found !== GETS) throw new Error(`found ${found} of ${GETS}`);
  return { opsPerSec: GETS / (elapsed / 1000), usPerOp: (elapsed * 1000) / GETS };
}

// 3. Warm cache: every block cached before timing
const warmCache = new BlockCache(1 << 30);
const warm = TableReader.open(handle(path, "r"), { cache: warmCache });
results.open.residentKB = warm.residentBytes / 1024;
for (const _ of warm.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER)) { /* fill */ }
results.getWarm = pointGets(warm);
results.getWarm.cache = warmCache.stats();

// 4. Cold cache: 4 MiB cache for a table ~30× larger
const coldCache = new BlockCache(4 << 20);
const cold = TableReader.open(handle(path, "r"), { cache: coldCache });
results.getCold = pointGets(cold);
const cs = coldCache.stats();
results.getCold.hitRate = cs.hits / (cs.hits + cs.misses);

// 5. Range scans of 1,000 keys from random starts (warm cache), straight and through the merge
function scans(viaMerge) {
  let seen = 0;
  const t = performance.now();
  for (let s = 0; s < SCANS; s++) {
    const from = Math.floor(rand() * (N - SCAN_KEYS));
    const src = warm.range(1, keys[from], undefined, Number.MAX_SAFE_INTEGER);
    const it = viaMerge ? mergeVisible([[], src], { snapshotTsn: Number.MAX_SAFE_INTEGER, limit: SCAN_KEYS }) : src;
    let n = 0;
    for (const _ of it) if (++n === SCAN_KEYS) break;
    seen += n;
  }
  return { keysPerSec: seen / (ms(t) / 1000) };
}
results.scan = scans(false);
results.scanMerged = scans(true);
{
  let n = 0;
  t0 = performance.now();
  for (const _ of warm.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER, { reverse: true })) n++;
  results.scanFullReverse = { keysPerSec: n / (ms(t0) / 1000) };
}
warm.close();
cold.close();

// 6. lmdb-js on the same keys and values
if (withLmdb) {
  try {
    const { open } = await import("lmdb");
    const db = open({ path: `${dir}/lmdb`, keyEncoding: "binary", encoding: "binary", compression: false });
    const bkeys = keys.map((k) => Buffer.from(k, "latin1"));
    const bval = Buffer.from(value);
    t0 = performance.now();
    await db.transaction(() => { for (let i = 0; i < N; i++) db.put(bkeys[i], bval); });
    results.lmdbWrite = { ms: ms(t0) };
    for (let i = 0; i < N; i += 1000) db.getBinary(bkeys[i]);
    t0 = performance.now();
    let found = 0;
    for (let i = 0; i < GETS; i++) if (db.getBinary(bkeys[order[i]]) !== undefined) found++;
    const el = ms(t0);
    if (found !== GETS) throw new Error(`lmdb found ${found}`);
    results.lmdbGet = { opsPerSec: GETS / (el / 1000), usPerOp: (el * 1000) / GETS };
    let seen = 0;
    t0 = performance.now();
    for (let s = 0; s < SCANS; s++) {
      const from = Math.floor(rand() * (N - SCAN_KEYS));
      for (const _ of db.getRange({ start: bkeys[from], limit: SCAN_KEYS })) seen++;
    }
    results.lmdbScan = { keysPerSec: seen / (ms(t0) / 1000) };
    await db.close();
  } catch (e) {
    results.lmdb = `unavailable: ${e.message}`;
  }
}
fs.rmSync(dir, { recursive: true, force: true });

const r = results;
console.log(`tables, ${fmt(N)} entries (13 B keys, 100 B values), ${BLOCK} B blocks, Node ${process.version}`);
console.log(`write          ${r.write.MBps.toFixed(0)} MB/s of file (${r.write.userMBps.toFixed(0)} MB/s of keys+values), ${fmt(r.write.entriesPerSec)} entries/s, ${r.write.fileMB.toFixed(1)} MB, ${r.write.blocks} blocks, index ${r.write.indexKB.toFixed(0)} KiB, filter ${r.write.filterKB.toFixed(0)} KiB`);
console.log(`open           ${r.open.medianMs.toFixed(2)} ms (median of 9), ${r.open.residentKB.toFixed(0)} KiB resident (index + filter)`);
console.log(`get, warm      ${fmt(r.getWarm.opsPerSec)}/s (${r.getWarm.usPerOp.toFixed(2)} µs)` + (r.lmdbGet ? `   lmdb-js ${fmt(r.lmdbGet.opsPerSec)}/s (${r.lmdbGet.usPerOp.toFixed(2)} µs) → ${(r.getWarm.opsPerSec / r.lmdbGet.opsPerSec).toFixed(2)}×` : ""));
console.log(`get, cold      ${fmt(r.getCold.opsPerSec)}/s (${r.getCold.usPerOp.toFixed(2)} µs), cache hit rate ${(r.getCold.hitRate * 100).toFixed(1)} %` + (r.lmdbGet ? ` → ${(r.getCold.opsPerSec / r.lmdbGet.opsPerSec).toFixed(2)}× lmdb-js` : ""));
console.log(`scan 1,000     ${fmt(r.scan.keysPerSec)} keys/s; through mergeVisible ${fmt(r.scanMerged.keysPerSec)} keys/s` + (r.lmdbScan ? `   lmdb-js ${fmt(r.lmdbScan.keysPerSec)} keys/s → ${(r.scan.keysPerSec / r.lmdbScan.keysPerSec).toFixed(2)}× (${(r.scanMerged.keysPerSec / r.lmdbScan.keysPerSec).toFixed(2)}× merged)` : ""));
console.log(`full reverse   ${fmt(r.scanFullReverse.keysPerSec)} keys/s`);
if (r.lmdb) console.log(`lmdb-js ${r.lmdb}`);
