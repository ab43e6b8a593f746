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
