// One better-sqlite3 bench process: WAL, synchronous=FULL, BEGIN IMMEDIATE, busy timeout,
// and a retry on SQLITE_BUSY. Usage: mp-sqlite.mjs <w3|w6> <file> <n> [keys] [warm procs barrierDir]
// (`warm` untimed transactions first, then barrier.mjs until `procs` workers are ready).
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const Database = require("better-sqlite3");
import { barrier } from "./barrier.mjs";
const [mode, file, nArg, keysArg, warmArg, procsArg, barrierDir] = process.argv.slice(2);
const n = Number(nArg), keys = Number(keysArg ?? 1000);
const db = new Database(file, { timeout: 10000 });
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
const get = db.prepare("SELECT v FROM kv WHERE k = ?");
const put = db.prepare("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)");
const tx = (fn) => {
  for (;;) {
    try {
      db.exec("BEGIN IMMEDIATE");
      try { fn(); db.exec("COMMIT"); return; } catch (e) { db.exec("ROLLBACK"); throw e; }
    } catch (e) {
      if (e.code !== "SQLITE_BUSY") throw e;
    }
  }
};
/** Runs `count` transactions, one at a time; returns each one's latency in µs. */
function run(count) {
  const lat = [];
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    if (mode === "w3") {
      const k = Math.floor(Math.random() * keys);
      tx(() => put.run(k, (get.get(k)?.v ?? 0) + 1));
    } else {
      const from = Math.floor(Math.random() * 100);
      const to = (from + 1 + Math.floor(Math.random() * 99)) % 100;
      tx(() => { put.run(1e6 + from, get.get(1e6 + from).v - 1); put.run(1e6 + to, get.get(1e6 + to).v + 1); });
    }
    lat.push((performance.now() - s) * 1000);
  }
  return lat;
}
if (Number(warmArg ?? 0) > 0) {
  run(Number(warmArg));
  await barrier(barrierDir, Number(procsArg), `sqlite-${process.pid}`);
}
const t0 = performance.now();
const lat = run(n);
const ms = performance.now() - t0;
lat.sort((a, b) => a - b);
console.log(JSON.stringify({ runtime: "node", ops: n, ms, p99us: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) }));
db.close();
