/**
 * Bench of two-phase commit (any runtime). Usage: twophase.ts <dir> <n>
 *
 * In one process, with durability "full": n transactions of each kind, one at a time and
 * then 16 in flight, each moving 1 between two accounts (a set of two keys):
 *   single  both accounts in one store: db.transaction
 *   2pc     one account in each of two stores: coord.transaction (prepare in both, the
 *           decision in the coordinator store, commit in both)
 * Every transaction touches its own pair of keys, so they never conflict (prepared keys
 * would serialize a hot key). fsyncs are counted through the platform (every store's log,
 * manifests and directories). The totals are verified at the end.
 *
 * Prints one JSON line: { runtime, rows: [{ kind, inFlight, ops, ms, fsyncs }] }.
 */
import { Coordinator, defaultPlatform, detectRuntime, open } from "txtdb";
import type { Database } from "txtdb";
import { withFaults } from "txtdb/adapters/faults";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [dir, nArg] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const n = Number(nArg);
let fsyncs = 0;
const platform = withFaults(await defaultPlatform(), (step) => {
  if (step === "beforeFsync" || step === "beforeDirSync") fsyncs++;
});
const options = { adapter: platform, namespaces: ["acct"], durability: "full" as const };
const single = await open(`${dir}/single`, options);
const a = await open(`${dir}/a`, options);
const b = await open(`${dir}/b`, options);
const coord = await Coordinator.open(`${dir}/coordinator`, { adapter: platform, recoverIntervalMs: 0 });

async function runKind(kind: "single" | "2pc", inFlight: number, offset: number): Promise<{ kind: string; inFlight: number; ops: number; ms: number; fsyncs: number }> {
  const one = (i: number): Promise<unknown> => {
    const k = offset + i;
    if (kind === "single") {
      return single.transaction((tx) => {
        tx.sum("acct", ["from", k], -1);
        tx.sum("acct", ["to", k], 1);
      });
    }
    return coord.transaction([a, b], (ta, tb) => {
      ta.sum("acct", ["from", k], -1);
      tb.sum("acct", ["to", k], 1);
    });
  };
  // A short warm-up (JIT, the first prepare's move to format 3), not counted.
  for (let i = 0; i < 20; i++) await one(-1 - i - offset);
  const f0 = fsyncs;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) await one(next++);
  }));
  return { kind, inFlight, ops: n, ms: performance.now() - t0, fsyncs: fsyncs - f0 };
}

async function total(db: Database, side: string): Promise<number> {
  let s = 0;
  for await (const e of db.list<number>("acct", { prefix: [side] })) s += e.value;
  return s;
}

const rows = [];
let offset = 0;
for (const inFlight of [1, 16]) {
  for (const kind of ["single", "2pc"] as const) {
    rows.push(await runKind(kind, inFlight, offset));
    offset += n + 100;
  }
}
// Every transfer is in both stores (and in the single one), nothing is left prepared.
const transfers = 2 * (n + 20);
if ((await total(a, "from")) !== -transfers || (await total(b, "to")) !== transfers) throw new Error("two-phase bench: the totals do not match");
if ((await total(single, "from")) !== -transfers || (await total(single, "to")) !== transfers) throw new Error("single-store bench: the totals do not match");
if ((await a.listPrepared()).length + (await b.listPrepared()).length !== 0) throw new Error("two-phase bench: transactions left prepared");
await coord.close();
for (const db of [single, a, b]) await db.close();
console.log(JSON.stringify({ runtime: detectRuntime(), rows }));
