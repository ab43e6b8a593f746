/**
 * Bench of locks on named resources (any runtime). Usage: locks.ts <mode> <dir> <n> [args]
 *   uncontended <dir> <n>            n acquire + release of X on ["bench", i % 100] in one process (two table changes each)
 *   pingpong <dir> <n> <stampFile>   with a peer process doing the same: each takes X on "h", notes the time the
 *                                    peer released it (from the stamp file), stamps its own release time, releases;
 *                                    the handover is the time from a release to the peer's grant (clocks:
 *                                    performance.timeOrigin + now(), one machine)
 *   deadlock <dir> <n>               two owners (handles) form a two-request cycle n times; the time from the
 *                                    request that closes it to its DEADLOCK
 * Prints one JSON line: { runtime, ops, ms, samplesUs? }.
 */
import { open, detectRuntime, TxtDbError } from "txtdb";
import { defaultPlatform } from "txtdb";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [mode, dir, nArg, extra] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const n = Number(nArg);
const now = () => performance.timeOrigin + performance.now();
const db = await open(dir!);
const platform = await defaultPlatform();
const samplesUs: number[] = [];
const t0 = performance.now();
if (mode === "uncontended") {
  for (let i = 0; i < n; i++) (await db.lock(["bench", i % 100], "X")).release();
} else if (mode === "pingpong") {
  // Both processes start together (a Deno process starts later than a Node one): each
  // holds a "ready" lock and waits until it sees the other's.
  const ready = await db.lock(["ready", platform.pid], "X");
  while (db.locks().filter((l) => Array.isArray(l.resource) && l.resource[0] === "ready").length < 2) await new Promise((r) => setTimeout(r, 1));
  const stamp = platform.open(extra!, { create: true });
  const buf = new Uint8Array(16);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < n; i++) {
    const l = await db.lock("h", "X");
    const granted = now();
    if (stamp.read(buf, 0) === 16 && view.getFloat64(8, true) !== platform.pid) samplesUs.push((granted - view.getFloat64(0, true)) * 1000);
    view.setFloat64(8, platform.pid, true);
    view.setFloat64(0, now(), true);
    stamp.write(buf, 0);
    l.release();
  }
  stamp.close();
  // The peer may still be looking for this one's "ready" lock.
  await new Promise((r) => setTimeout(r, 50));
  ready.release();
} else if (mode === "deadlock") {
  const other = await open(dir!);
  for (let i = 0; i < n; i++) {
    const a1 = await db.lock(["d", 1], "X");
    const b1 = await other.lock(["d", 2], "X");
    const waiting = db.lock(["d", 2], "X");
    while (!db.locks().some((l) => l.waiting)) await new Promise((r) => setTimeout(r, 0));
    const s = performance.now();
    try {
      await other.lock(["d", 1], "X");
      throw new Error("no deadlock found");
    } catch (e) {
      if (!(e instanceof TxtDbError) || e.code !== "DEADLOCK") throw e;
      samplesUs.push((performance.now() - s) * 1000);
    }
    b1.release();
    (await waiting).release();
    a1.release();
  }
  await other.close();
}
const ms = performance.now() - t0;
await db.close();
console.log(JSON.stringify({ runtime: detectRuntime(), ops: n, ms, samplesUs }));
