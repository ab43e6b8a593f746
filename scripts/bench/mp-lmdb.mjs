// One lmdb-js bench process, with its default durable commits (a transaction resolves
// after the flush). Usage: mp-lmdb.mjs <w3|w6> <dir> <n> [keys] [inFlight]
//   w3  n read-modify-write increments on `keys` keys; w6  n transfers among 100 accounts.
// lmdb-js runs each transaction callback alone under LMDB's write lock (no conflicts);
// `inFlight` transactions are awaited at once, as on txtdb. Prints one JSON line.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { open } = require("lmdb");
const [mode, path, nArg, keysArg, inFlightArg] = process.argv.slice(2);
const n = Number(nArg), keys = Number(keysArg ?? 1000), inFlight = Number(inFlightArg ?? 1);
const db = open({ path });
const lat = [];
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: inFlight }, async () => {
  while (next < n) {
    next++;
    const s = performance.now();
    if (mode === "w3") {
      const k = Math.floor(Math.random() * keys);
      await db.transaction(() => {
        db.put(k, (db.get(k) ?? 0) + 1);
      });
    } else {
      const from = Math.floor(Math.random() * 100);
      const to = (from + 1 + Math.floor(Math.random() * 99)) % 100;
      await db.transaction(() => {
        db.put(["acct", from], db.get(["acct", from]) - 1);
        db.put(["acct", to], db.get(["acct", to]) + 1);
      });
    }
    lat.push((performance.now() - s) * 1000);
  }
}));
const ms = performance.now() - t0;
lat.sort((a, b) => a - b);
console.log(JSON.stringify({ runtime: "node", ops: n, ms, p99us: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) }));
await db.close();
