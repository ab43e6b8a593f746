/**
 * One txtdb bench process (any runtime). Usage: mp-txtdb.ts <mode> <dir> <run> [keys] [inFlight] [warm procs barrierDir]
 *   w3  read-modify-write increments on `keys` keys (serializable, retried)
 *   w6  bank transfers among 100 accounts (serializable, retried)
 *   (w3, w6: `warm` and `run` are a count of transactions or a duration such as 3000ms,
 *   see barrier.mjs parsePhase; the untimed warm-up first, then barrier.mjs until `procs`
 *   workers are ready)
 *   watchwriter n  commits carrying their wall-clock send time, one every 2 ms
 * Prints one JSON line: runtime, ops (timed), warmOps, ms, p99 of a transaction (retries included), fsyncs, lock-wait and commit
 * percentiles, and the process's CPU time over the timed run.
 */
import { open, detectRuntime } from "txtdb";
// @ts-ignore: a plain ES module shared with the peers' workers
import { barrier, parsePhase, phaseGoesOn } from "./barrier.mjs";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [mode, dir, runArg, keysArg, inFlightArg, warmArg, procsArg, barrierDir] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const keys = Number(keysArg ?? 1000);
const db = await open(dir!);
const now = () => performance.timeOrigin + performance.now();
// Transactions in flight in this process (the API is async; group commit shares each
// lock acquisition and fsync among them). better-sqlite3 is synchronous: one at a time.
const IN_FLIGHT = Number(inFlightArg ?? 16);
// The untimed warm-up runs at least 16 at a time, whatever the timed run does: the JIT
// counts calls, not seconds, and a process with one transaction in flight made ~800 calls
// in a 3 s warm-up against ~6,500 at 16 (four processes), and then ran its timed row ~24 %
// slower. better-sqlite3 and lmdb-js are synchronous and warm one at a time.
const WARM_IN_FLIGHT = Math.max(IN_FLIGHT, 16);
// ...and then, where the timed run has fewer in flight, warms up again in the timed run's
// shape, for twice the first warm-up's time: at 16 in flight one group commit handles a
// whole batch, so the functions a commit at one in flight runs once each (the committer's
// loop, the sync path, the timers of a wait) had been called a few hundred times, and V8
// compiled them during the timed run (~140 ms of optimizing compiles per process, and
// baseline code until then). The peers' workers warm up one at a time, their timed shape.
// Measured here, four processes at one in flight: 2,364-2,550 transactions/s without this
// phase (3 s at 16 only), 3,131-3,504 with 3 s more at one; eight: 1,708-1,814 against
// 2,660-2,675 with 9 s more (four alternating rounds, two).
const SAME_SHAPE_WARM_FACTOR = 2;
type Phase = { ms: number; count: number };
/** Runs transactions, `inFlight` at a time, for `phase`; returns each one's latency (retries included), in µs. */
async function run(phase: Phase, inFlight: number): Promise<number[]> {
  const lat: number[] = [];
  let started = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (phaseGoesOn(phase, t0, started)) {
      started++;
      const s = performance.now();
      if (mode === "w3") {
        const k = Math.floor(Math.random() * keys);
        await db.transaction(async (tx) => tx.set("b", k, ((await tx.get<number>("b", k)) ?? 0) + 1), { maxRetries: 100_000 });
      } else {
        const from = Math.floor(Math.random() * 100);
        const to = (from + 1 + Math.floor(Math.random() * 99)) % 100;
        await db.transaction(async (tx) => {
          const a = (await tx.get<number>("b", ["acct", from]))!;
          const b = (await tx.get<number>("b", ["acct", to]))!;
          tx.set("b", ["acct", from], a - 1);
          tx.set("b", ["acct", to], b + 1);
        }, { maxRetries: 100_000 });
      }
      lat.push((performance.now() - s) * 1000);
    }
  }));
  return lat;
}
let before = db.stats();
let warmOps = 0;
if (mode === "w3" || mode === "w6") {
  const warm = parsePhase(warmArg ?? "0");
  if (warm.count > 0) {
    const id = `${detectRuntime()}-${Math.random()}`;
    await barrier(`${barrierDir}/opened`, Number(procsArg), id);
    warmOps = (await run(warm, WARM_IN_FLIGHT)).length;
    if (IN_FLIGHT < WARM_IN_FLIGHT) {
      warmOps += (await run({ ms: warm.ms * SAME_SHAPE_WARM_FACTOR, count: warm.count * SAME_SHAPE_WARM_FACTOR }, IN_FLIGHT)).length;
    }
    await barrier(`${barrierDir}/warmed`, Number(procsArg), id);
    before = db.stats();
  }
}
// No heartbeat timer here: a 1 ms one woke every worker a thousand times a second, which
// the peers' workers never paid (eight processes on two cores: ~10 % of txtdb's throughput
// at one transaction in flight). The event loop's gaps have their own row (extras.ts).
type Cpu = { user: number; system: number };
const cpuNow = (): Cpu | undefined => (globalThis as unknown as { process?: { cpuUsage?: () => Cpu } }).process?.cpuUsage?.();
const cpu0 = cpuNow();
const t0 = performance.now();
let lat: number[] = [];
if (mode === "w3" || mode === "w6") {
  lat = await run(parsePhase(runArg), IN_FLIGHT);
} else if (mode === "watchwriter") {
  for (let i = 0; i < Number(runArg); i++) {
    await db.set("b", "ping", { i, sentAt: now() });
    await new Promise((r) => setTimeout(r, 2));
  }
}
const ms = performance.now() - t0;
const cpu1 = cpuNow();
// CPU time of the whole process (every thread) over the timed run, where the runtime tells it.
const cpuUs = cpu0 && cpu1 ? Math.round(cpu1.user - cpu0.user + cpu1.system - cpu0.system) : undefined;
const s = db.stats();
lat.sort((a, b) => a - b);
const p99us = Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0);
// Counts of the timed run only; the distributions (lock wait, fsync, commit latency) span the warm-up too.
console.log(JSON.stringify({ runtime: detectRuntime(), ops: mode === "watchwriter" ? Number(runArg) : lat.length, warmOps, ms, p99us, batches: s.batches - before.batches, fsyncs: s.fsyncs - before.fsyncs, lockWaitUs: s.lockWaitUs, fsyncUs: s.fsyncUs, commitLatencyUs: s.commitLatencyUs, conflicts: s.conflicts - before.conflicts, retries: s.retries - before.retries, cpuUs }));
await db.close();
