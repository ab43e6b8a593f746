/**
 * The loop every crash test runs on the simulated platform: a scenario replayed once per
 * file operation, in a fresh world that fails at that operation (a crash, a torn write,
 * EIO or ENOSPC), then a check of what survives. Every failure message names the seed,
 * the fault and the operation; `TXTDB_CRASH_AT=<n>` runs operation n only (both fault kinds
 * where a loop alternates them), `TXTDB_SEED=<seed>` moves each file's seeds.
 */
import { assert, envVar } from "./harness.ts";
import { open } from "txtdb";
import type { Database, OpenOptions } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import type { FaultKind } from "txtdb/adapters/sim";

/** The one operation to fail, when replaying a reported point. */
export const ONLY_AT = envVar("TXTDB_CRASH_AT") === undefined ? undefined : Number(envVar("TXTDB_CRASH_AT"));

/** A file's base seed: `TXTDB_SEED` or its own default. */
export function baseSeed(fallback: number): number {
  return Number(envVar("TXTDB_SEED") ?? fallback);
}

export interface FaultLoop<S> {
  /** File operations of the scenario (a probe run counts them). */
  total: number;
  /** The faults at operation `at`, one run each. */
  kinds: (at: number) => readonly FaultKind[];
  /** The seed of the world failing at `at` with `kind`. */
  seed: (at: number, kind: FaultKind) => number;
  /** Fresh state the scenario records into (what was acknowledged). */
  state: () => S;
  /** The scenario; its failure, if any, goes to `check`. */
  run: (world: SimWorld, state: S) => Promise<unknown>;
  /** Checks what survives; `where` names the seed, the fault and the operation. */
  check: (world: SimWorld, state: S, where: string, failure: unknown, kind: FaultKind) => Promise<void>;
}

/** Runs the scenario failing at each operation from 1 to `total` in turn (see the module). */
export async function atEveryOperation<S>(loop: FaultLoop<S>): Promise<void> {
  for (let at = 1; at <= loop.total; at++) {
    if (ONLY_AT !== undefined && at !== ONLY_AT) continue;
    for (const kind of loop.kinds(at)) {
      const seed = loop.seed(at, kind);
      const world = new SimWorld(seed);
      world.failAt(at, kind);
      const state = loop.state();
      let failure: unknown;
      await loop.run(world, state).catch((e) => (failure = e));
      await loop.check(world, state, `seed ${seed}, ${kind} at operation ${at} (${world.trace[at - 1] ?? "?"})`, failure, kind);
    }
  }
}

/**
 * A crash at even operations and a torn write at odd ones: the two kinds together cover
 * every operation in half the runs. Both at a replayed operation.
 */
export function crashOrTear(at: number): FaultKind[] {
  if (ONLY_AT !== undefined) return ["crash", "tear"];
  return [at % 2 === 0 ? "crash" : "tear"];
}

/** Opens the store at `path` after the fault, or fails the test saying where. */
export async function reopen(where: string, options: OpenOptions, path = "/db"): Promise<Database> {
  try {
    return await open(path, options);
  } catch (e) {
    assert.fail(`${where}: reopen failed: ${String(e)}`);
  }
}
