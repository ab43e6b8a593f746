// The start line of a multi-process bench row: every worker runs its untimed warm-up, then
// waits here until all `procs` workers have arrived, so that no worker's timed run overlaps
// another's warm-up (the JIT compiling txtdb's commit path, better-sqlite3's statements,
// lmdb-js's first transactions). Node, Deno (--allow-read --allow-write) and Bun.
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
 * A peer's worker (one transaction at a time): `warm` untimed calls of `one(i)`, the
 * barrier, then `n` timed ones. Prints the worker's JSON result line (ops, ms, p99 µs).
 */
export async function runPeerWorker({ one, n, warm, procs, dir, id }) {
  for (let i = 0; i < warm; i++) one(i);
  if (warm > 0) await barrier(dir, procs, id);
  const lat = new Float64Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    one(i);
    lat[i] = (performance.now() - s) * 1000;
  }
  const ms = performance.now() - t0;
  lat.sort();
  console.log(JSON.stringify({ runtime: "node", ops: n, ms, p99us: Math.round(lat[Math.floor(n * 0.99)] ?? 0) }));
}
