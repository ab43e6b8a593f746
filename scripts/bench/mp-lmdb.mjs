// One lmdb-js bench process, with durable commits. Usage: mp-lmdb.mjs <w3|w6> <dir> <run> [keys] [warm procs barrierDir]
//   (`warm` and `run`: a count of transactions or a duration such as 3000ms, see
// barrier.mjs parsePhase; the untimed warm-up first, then barrier.mjs until `procs` workers are ready)
//   w3  read-modify-write increments on `keys` keys; w6  transfers among 100 accounts.
// Each read-modify-write runs in transactionSync, alone under LMDB's write lock across
// processes: lmdb-js's asynchronous transaction() lost updates here between processes (a
// counter summed to 1,999 of 2,000 with four processes), so the bench does not use it.
// Synchronous: one transaction at a time per process. Prints one JSON line.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { open } = require("lmdb");
import { runPeerWorker } from "./barrier.mjs";
const [mode, path, runArg, keysArg, warmArg, procsArg, barrierDir] = process.argv.slice(2);
const keys = Number(keysArg ?? 1000);
// overlappingSync off: transactionSync returns only after the flush, as a durable commit must.
// A fixed map of 1 GiB, the same the creating process gave: with the default growing map,
// eight processes committing at once made lmdb-js fail with "MDB_BAD_TXN ... mdb_page_touch"
// (seen in CI) when one of them grew the map under the others.
// Several processes creating one environment at once sometimes make lmdb-js's open throw
// "No transaction to renew" (seen in CI): try again a few times before giving up.
let db;
for (let attempt = 1; ; attempt++) {
  try {
    db = open({ path, overlappingSync: false, mapSize: 2 ** 30 });
    break;
  } catch (e) {
    if (attempt >= 5) throw e;
    await new Promise((r) => setTimeout(r, 20 * attempt));
  }
}
/** One transaction (serializable under the engine's write lock). */
function one() {
  if (mode === "w3") {
    const k = Math.floor(Math.random() * keys);
    db.transactionSync(() => {
      db.putSync(k, (db.get(k) ?? 0) + 1);
    });
  } else {
    const from = Math.floor(Math.random() * 100);
    const to = (from + 1 + Math.floor(Math.random() * 99)) % 100;
    db.transactionSync(() => {
      db.putSync(["acct", from], db.get(["acct", from]) - 1);
      db.putSync(["acct", to], db.get(["acct", to]) + 1);
    });
  }
}
await runPeerWorker({ one, run: runArg, warm: warmArg ?? "0", procs: Number(procsArg), dir: barrierDir, id: `lmdb-${process.pid}` });
await db.close();
