// The start lines of a multi-process bench row: every worker opens the store and waits here
// until all `procs` workers have (`<dir>/opened`), runs its untimed warm-up, and waits again
// (`<dir>/warmed`), so that no worker's timed run overlaps another's warm-up (the JIT
// compiling txtdb's commit path, better-sqlite3's statements, lmdb-js's first transactions)
// and no worker writes while another still opens (without the first line, lmdb-js's
// counters came out one short in 1 of ~70 eight-process smoke runs here; none in 70 with
// it). Node, Deno (--allow-read --allow-write) and Bun.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";

/** Marks this worker ready in `dir` and resolves once `procs` workers are. */
export async function barrier(dir, procs, id) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/${id}`, "");
  const deadline = Date.now() + 120_000;
  while (readdirSync(dir).length < procs) {
    if (Date.now() > deadline) throw new Error(`bench barrier ${dir}: ${readdirSync(dir).length} of ${procs} workers after 120 s`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * How long a phase of a bench worker runs: a count of transactions ("2000") or a duration
 * ("4000ms"). A duration is how the bench's multi-process rows warm up and measure: the JIT
 * of a txtdb process (V8 in Node and Deno, JavaScriptCore in Bun) takes about 12,000
 * transactions to reach its steady state when four processes share two cores (CPU per
 * transaction falls from ~240 µs over the first 4,000 to ~100 µs), so a fixed small count
 * measured the compiler, not the store; a duration gives every engine the same wall time.
 */
export function parsePhase(arg) {
  const text = String(arg ?? "0");
  const ms = /^(\d+)ms$/.exec(text);
  if (ms) return { ms: Number(ms[1]), count: Infinity };
  const count = Number(text);
  if (!Number.isInteger(count) || count < 0) throw new Error(`bench phase ${text}: a count of transactions or a duration such as 3000ms`);
  return { ms: Infinity, count };
}

/** Whether a phase that started at `t0` and has run `done` transactions goes on. */
export const phaseGoesOn = (phase, t0, done) => done < phase.count && performance.now() - t0 < phase.ms;

/**
 * A peer's worker (one transaction at a time): untimed calls of `one(i)` for the `warm`
 * phase, the barrier, then the timed `run` phase (parsePhase). Prints the worker's JSON
 * result line (ops, warmOps, ms, p99 µs).
 */
export async function runPeerWorker({ one, run, warm, procs, dir, id }) {
  const warmPhase = parsePhase(warm), runPhase = parsePhase(run);
  let warmOps = 0;
  if (warmPhase.count > 0) await barrier(`${dir}/opened`, procs, id);
  const w0 = performance.now();
  while (phaseGoesOn(warmPhase, w0, warmOps)) one(warmOps++);
  if (warmPhase.count > 0) await barrier(`${dir}/warmed`, procs, id);
  const lat = [];
  const t0 = performance.now();
  while (phaseGoesOn(runPhase, t0, lat.length)) {
    const s = performance.now();
    one(lat.length);
    lat.push((performance.now() - s) * 1000);
  }
  const ms = performance.now() - t0;
  lat.sort((a, b) => a - b);
  console.log(JSON.stringify({ runtime: "node", ops: lat.length, warmOps, ms, p99us: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) }));
}
