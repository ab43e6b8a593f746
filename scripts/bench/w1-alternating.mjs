// W1 (sequential durable commits) of txtdb on Node, better-sqlite3 and lmdb-js in one
// process, in alternating blocks. Why: the disk's fdatasync time moves by ±2× from one
// minute to the next on this kind of VM, and the W1 rows of the single-process section run
// minutes apart (each runtime's bench, then the peers), so their ratio says as much about
// the disk's minute as about the engines (2026-12-03: 0.45× there, 0.68× alternating, in the
// same quarter hour). Here every engine commits a block in turn, round after round, and each
// row totals its engine's blocks, so all three see the same disk.
//
//   node scripts/bench/w1-alternating.mjs <dir> [scale]   (no dir: a new one under the system's temp dir)
// Prints one JSON line: the rows, as the other bench scripts do.
import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { open } from "txtdb";

const require = createRequire(import.meta.url);
const [dirArg, scaleArg] = process.argv.slice(2);
// Without a dir the stores went to "./undefined/" in the working directory.
const dir = dirArg || fs.mkdtempSync(path.join(os.tmpdir(), "txtdb-w1alt-"));
const scale = Number(scaleArg ?? 1);
/** Rounds of one block per engine; the first only warms up. */
const ROUNDS = scale < 0.1 ? 3 : 9;
const BLOCK = Math.max(20, Math.round(250 * Math.min(1, scale)));
const WORKLOAD = "W1 durable commits, sequential, alternating blocks";
const value = (i) => ({ i, pad: "x".repeat(50) });

const engines = [];
{
  const db = await open(`${dir}/w1alt-txtdb`, { namespaces: ["b"] });
  engines.push({ engine: "txtdb", close: () => db.close(), commit: (i) => db.set("b", i % 1000, value(i)) });
}
try {
  const Database = require("better-sqlite3");
  const s = new Database(`${dir}/w1alt-sqlite.db`);
  s.pragma("journal_mode = WAL");
  s.pragma("synchronous = FULL");
  s.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)");
  const put = s.prepare("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"), begin = s.prepare("BEGIN IMMEDIATE"), commit = s.prepare("COMMIT");
  engines.push({ engine: "better-sqlite3", close: () => s.close(), commit: (i) => { begin.run(); put.run(i % 1000, JSON.stringify(value(i))); commit.run(); } });
} catch (e) {
  engines.push({ engine: "better-sqlite3", unavailable: e.message });
}
try {
  const { open: openLmdb } = require("lmdb");
  const l = openLmdb({ path: `${dir}/w1alt-lmdb` });
  engines.push({ engine: "lmdb-js", close: () => l.close(), commit: (i) => l.put(i % 1000, value(i)) });
} catch (e) {
  engines.push({ engine: "lmdb-js", unavailable: e.message });
}

const live = engines.filter((e) => !e.unavailable);
for (const e of live) Object.assign(e, { ms: 0, ops: 0, lat: [] });
for (let round = 0; round < ROUNDS; round++) {
  for (const e of live) {
    const t0 = performance.now();
    for (let i = 0; i < BLOCK; i++) {
      const s = performance.now();
      await e.commit(round * BLOCK + i);
      if (round > 0) e.lat.push((performance.now() - s) * 1000);
    }
    if (round > 0) {
      e.ms += performance.now() - t0;
      e.ops += BLOCK;
    }
  }
}
const pct = (a, q) => {
  const s = Float64Array.from(a).sort();
  return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))] * 10) / 10 : 0;
};
const rows = engines.map((e) => e.unavailable
  ? { workload: WORKLOAD, engine: e.engine, runtime: "node", ops: 0, opsPerSec: 0, note: `unavailable: ${e.unavailable}` }
  : { workload: WORKLOAD, engine: e.engine, runtime: "node", ops: e.ops, opsPerSec: Math.round(e.ops / (e.ms / 1000)), p50us: pct(e.lat, 50), p99us: pct(e.lat, 99), note: `${ROUNDS - 1} rounds of ${BLOCK} commits, engines in turn` });
for (const e of live) await e.close();
console.log(JSON.stringify(rows));
