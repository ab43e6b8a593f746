/**
 * Bench of one store location, a directory or an etcd:// URL (any runtime): the rows the
 * README sets side by side to say when to choose which. Usage: etcd.ts <location> <n>
 *
 *   sequential  n db.set() one after another (durable commits, one in flight)
 *   inflight64  n db.set() with 64 in flight
 *   txn         n/4 read-modify-write transactions (db.transaction: get + set), one in flight
 *   reads       n db.get() of random keys among those written, one at a time
 *
 * Prints one JSON line: { runtime, rows: [{ kind, ops, ms, p50us, p99us }] }.
 */
import { detectRuntime, open } from "txtdb";
import { Latencies, pool } from "./stats.ts";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [location, nArg] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const n = Number(nArg);
const db = await open(location!, { namespaces: ["b"] });
const value = { name: "x".repeat(60), n: 1 };

/** One workload, timed by the shared pool (stats.ts): ops/s from `ms`, latencies in µs. */
async function timed(kind: string, ops: number, inFlight: number, one: (i: number) => Promise<unknown>) {
  const lat = new Latencies(ops);
  const ms = await pool(ops, inFlight, one, lat);
  return { kind, ops, ms, p50us: Math.round(lat.percentile(50)), p99us: Math.round(lat.percentile(99)) };
}

for (let i = 0; i < 20; i++) await db.set("b", ["warm", i], value); // JIT, connections
const rows = [];
rows.push(await timed("sequential", n, 1, (i) => db.set("b", ["s", i], value)));
rows.push(await timed("inflight64", n, 64, (i) => db.set("b", ["f", i], value)));
await db.set("b", "counter", 0);
rows.push(await timed("txn", Math.max(10, Math.floor(n / 4)), 1, () => db.transaction(async (tx) => tx.set("b", "counter", ((await tx.get<number>("b", "counter")) ?? 0) + 1))));
rows.push(await timed("reads", n, 1, () => db.get("b", ["s", Math.floor(Math.random() * n)])));
if ((await db.count("b", { prefix: ["s"] })) !== n) throw new Error("etcd bench: keys missing");
await db.close();
console.log(JSON.stringify({ runtime: detectRuntime(), rows }));
