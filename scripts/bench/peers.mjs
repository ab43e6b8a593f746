// The peers' single-process workloads on Node, configured as documented in the README:
// better-sqlite3 in WAL mode with synchronous=FULL and BEGIN IMMEDIATE; lmdb-js with its
// default durable commits (a put resolves after the flush).
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const [dir, scaleArg] = process.argv.slice(2);
const scale = Number(scaleArg ?? 1);
const out = [];

function lat(max) {
  const s = new Float64Array(max);
  let n = 0;
  return {
    add: (us) => { if (n < max) s[n++] = us; },
    p: (q) => { const a = s.slice(0, n).sort(); return a.length ? Math.round(a[Math.min(a.length - 1, Math.floor((q / 100) * a.length))] * 10) / 10 : 0; },
  };
}
const res = (workload, engine, ops, ms, l, note) => ({ workload, engine, runtime: "node", ops, opsPerSec: Math.round(ops / (ms / 1000)), ...(l ? { p50us: l.p(50), p99us: l.p(99) } : {}), ...(note ? { note } : {}) });
/** Untimed commits before W1 and W2 (scaled like the timed ones), as txtdb.ts. */
const WARM_UP = 1000;
/** W5: timed 1,000-key scans, after untimed ones (scaled), as txtdb.ts. */
const SCANS = 600, SCANS_UNTIMED = 30;
const val = (i) => JSON.stringify({ i, pad: "x".repeat(50) });

try {
  const Database = require("better-sqlite3");
  const db = new Database(`${dir}/sqlite.db`);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 10000");
  db.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)");
  const put = db.prepare("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)");
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const write = (k, v) => { begin.run(); put.run(k, v); commit.run(); };
  // Untimed warm-up before W1 and W2, as txtdb.ts does for txtdb.
  for (let i = 0; i < Math.round(WARM_UP * scale); i++) write(i % 1000, val(i));
  let n = Math.round(2000 * scale);
  let l = lat(n);
  let t0 = performance.now();
  for (let i = 0; i < n; i++) { const s = performance.now(); write(i % 1000, val(i)); l.add((performance.now() - s) * 1000); }
  out.push(res("W1 durable commits, sequential", "better-sqlite3", n, performance.now() - t0, l));
  n = Math.round(20000 * scale);
  l = lat(n);
  t0 = performance.now();
  for (let i = 0; i < n; i++) { const s = performance.now(); write(Math.floor(Math.random() * 10000), val(i)); l.add((performance.now() - s) * 1000); }
  out.push(res("W2 durable commits, 64 in flight", "better-sqlite3", n, performance.now() - t0, l, "synchronous API: one commit at a time"));
  const keys = Math.round(100_000 * Math.min(1, scale));
  db.pragma("synchronous = OFF");
  db.exec("BEGIN");
  for (let i = 0; i < keys; i++) put.run(i, val(i));
  db.exec("COMMIT");
  const get = db.prepare("SELECT v FROM kv WHERE k = ?");
  n = keys * 2;
  t0 = performance.now();
  for (let i = 0; i < n; i++) JSON.parse(get.get((i * 7919) % keys).v);
  out.push(res("W4 point reads on db", "better-sqlite3", n, performance.now() - t0));
  out.push({ ...out[out.length - 1], workload: "W4t point reads, store compacted into tables", note: "same store as W4 (no compaction)" });
  const range = db.prepare("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k");
  const scans = Math.round(SCANS * Math.min(1, scale));
  const scanKeys = (from, count) => {
    let seen = 0;
    for (let s = from; s < from + count; s++) { const start = (s * 997) % (keys - 1000); for (const r of range.iterate(start, start + 1000)) { JSON.parse(r.v); seen++; } }
    return seen;
  };
  scanKeys(scans, Math.round(SCANS_UNTIMED * Math.min(1, scale)));
  t0 = performance.now();
  const seen = scanKeys(0, scans);
  out.push(res("W5 range scans of 1,000 keys (keys/s)", "better-sqlite3", seen, performance.now() - t0));
  out.push({ ...out[out.length - 1], workload: "W5t range scans of 1,000 keys, store compacted into tables (keys/s)", note: "same store as W5 (no compaction)" });
  db.close();
} catch (e) {
  out.push({ workload: "all", engine: "better-sqlite3", runtime: "node", ops: 0, opsPerSec: 0, note: `unavailable: ${e.message}` });
}

try {
  const { open } = require("lmdb");
  const db = open({ path: `${dir}/lmdb` });
  // Untimed warm-ups before W1 and W2, as for the others.
  for (let i = 0; i < Math.round(WARM_UP * scale); i++) await db.put(i % 1000, { i, pad: "x".repeat(50) });
  let n = Math.round(2000 * scale);
  let l = lat(n);
  let t0 = performance.now();
  for (let i = 0; i < n; i++) { const s = performance.now(); await db.put(i % 1000, { i, pad: "x".repeat(50) }); l.add((performance.now() - s) * 1000); }
  out.push(res("W1 durable commits, sequential", "lmdb-js", n, performance.now() - t0, l));
  n = Math.round(20000 * scale);
  let warm = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (warm < Math.round(WARM_UP * scale)) { warm++; await db.put(Math.floor(Math.random() * 10000), { pad: "x".repeat(50) }); }
  }));
  l = lat(n);
  let next = 0;
  t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < n) { next++; const s = performance.now(); await db.put(Math.floor(Math.random() * 10000), { pad: "x".repeat(50) }); l.add((performance.now() - s) * 1000); }
  }));
  out.push(res("W2 durable commits, 64 in flight", "lmdb-js", n, performance.now() - t0, l));
  const keys = Math.round(100_000 * Math.min(1, scale));
  await db.transaction(() => { for (let i = 0; i < keys; i++) db.put(i, { i, pad: "x".repeat(50) }); });
  n = keys * 2;
  t0 = performance.now();
  for (let i = 0; i < n; i++) db.get((i * 7919) % keys);
  out.push(res("W4 point reads on db", "lmdb-js", n, performance.now() - t0));
  out.push({ ...out[out.length - 1], workload: "W4t point reads, store compacted into tables", note: "same store as W4 (no compaction)" });
  const scans = Math.round(SCANS * Math.min(1, scale));
  const scanKeys = (from, count) => {
    let seen = 0;
    for (let s = from; s < from + count; s++) { const start = (s * 997) % (keys - 1000); for (const _ of db.getRange({ start, end: start + 1000 })) seen++; }
    return seen;
  };
  scanKeys(scans, Math.round(SCANS_UNTIMED * Math.min(1, scale)));
  t0 = performance.now();
  const seen = scanKeys(0, scans);
  out.push(res("W5 range scans of 1,000 keys (keys/s)", "lmdb-js", seen, performance.now() - t0));
  out.push({ ...out[out.length - 1], workload: "W5t range scans of 1,000 keys, store compacted into tables (keys/s)", note: "same store as W5 (no compaction)" });
  await db.close();
} catch (e) {
  out.push({ workload: "all", engine: "lmdb-js", runtime: "node", ops: 0, opsPerSec: 0, note: `unavailable: ${e.message}` });
}
console.log(JSON.stringify(out));
