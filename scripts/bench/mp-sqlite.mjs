// One better-sqlite3 bench process: WAL, synchronous=FULL, BEGIN IMMEDIATE, busy timeout,
// and a retry on SQLITE_BUSY. Usage: mp-sqlite.mjs <w3|w6> <file> <run> [keys] [warm procs barrierDir]
// (`warm` and `run`: a count of transactions or a duration such as 3000ms, see
// barrier.mjs parsePhase; the untimed warm-up first, then barrier.mjs until `procs` workers are ready).
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const Database = require("better-sqlite3");
import { runPeerWorker } from "./barrier.mjs";
const [mode, file, runArg, keysArg, warmArg, procsArg, barrierDir] = process.argv.slice(2);
const keys = Number(keysArg ?? 1000);
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
/** One transaction (serializable under the engine's write lock). */
function one() {
  if (mode === "w3") {
    const k = Math.floor(Math.random() * keys);
    tx(() => put.run(k, (get.get(k)?.v ?? 0) + 1));
  } else {
    const from = Math.floor(Math.random() * 100);
    const to = (from + 1 + Math.floor(Math.random() * 99)) % 100;
    tx(() => { put.run(1e6 + from, get.get(1e6 + from).v - 1); put.run(1e6 + to, get.get(1e6 + to).v + 1); });
  }
}
await runPeerWorker({ one, run: runArg, warm: warmArg ?? "0", procs: Number(procsArg), dir: barrierDir, id: `sqlite-${process.pid}` });
db.close();
