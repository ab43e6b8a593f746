/**
 * A two-phase commit worker for twophase-multiprocess.test.ts; runs on Node, Deno or Bun.
 *
 *   transfer <a> <b> <coord> <tag> <stallAt> <point> <inDoubtMs> <count>
 *       transfers j = 1..count (0: until stdin closes): j moves j from a's ["x", tag] to b's ["y", tag] and marks
 *       ["t", tag, j] in both; prints "acked <j>" as each resolves. At transfer `stallAt`
 *       it stops at `point` (fn, between-prepares, after-prepares, after-decision,
 *       between-commits; none: never), prints "stalled <txid>" and freezes (the test
 *       SIGKILLs it, or lets its in-doubt timeout pass).
 *   resolve <a> <b> <timeoutMs>
 *       opens both stores (their resolvers decide what is in doubt), waits until neither
 *       holds a prepared transaction, prints "resolved <ms>"; "unresolved <json>" on timeout.
 *   recover <coord>
 *       opens the coordinator (its recovery pushes commit decisions), prints "recovered <json>".
 *   prepare <dir> <txid>
 *       prepares a transaction that writes ns "w", reads ns "r" and the range ["q", …);
 *       prints "prepared", then on "commit" or "abort" decides it and prints "decided".
 *   probe <dir>
 *       tries to write ns "w", "r", ["q", 5] and "free" (no retries) and reads "w"; prints
 *       "probe <json>" with each outcome (ok, or the CONFLICT's preparedBy).
 */
import { Coordinator, open, TxtDbError } from "txtdb";
import type { Database, Transaction } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, ...rest] = args();

function freeze(): never {
  // Blocks this thread for good: the process stays alive (its leases locked) until killed.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  throw new Error("unreachable");
}

async function transfer(): Promise<void> {
  const [aDir, bDir, cDir, tag, stallAtArg, point, inDoubtArg, countArg] = rest as [string, string, string, string, string, string, string, string];
  const stallAt = Number(stallAtArg);
  const count = Number(countArg);
  const a = await open(aDir, { namespaces: ["acct"] });
  const b = await open(bDir, { namespaces: ["acct"] });
  const coord = await Coordinator.open(cDir, { inDoubtTimeoutMs: Number(inDoubtArg), prepareTimeoutMs: 30_000 });
  say("ready");
  let stop = false;
  void (async () => {
    for await (const _ of stdinLines()) { /* commands are not used: EOF stops the loop */ }
    stop = true;
  })();
  const originalCommit = { a: a.commitPrepared.bind(a), b: b.commitPrepared.bind(b) };
  const originalBegin = { a: a.begin.bind(a), b: b.begin.bind(b) };
  for (let j = 1; (count === 0 && !stop) || j <= count; j++) {
    const stalling = j === stallAt;
    let txid = "";
    if (stalling && (point === "after-decision" || point === "between-commits")) {
      let aCommit: Promise<unknown> | undefined;
      a.commitPrepared = (id: string) => {
        if (point === "after-decision") {
          say(`stalled ${id}`);
          freeze();
        }
        return (aCommit = originalCommit.a(id));
      };
      b.commitPrepared = async (id: string) => {
        await aCommit;
        say(`stalled ${id}`);
        freeze();
      };
    }
    if (stalling && (point === "between-prepares" || point === "after-prepares")) {
      // The coordinator prepares the stores' own transactions (fn gets views whose prepare()
      // refuses): the hooks go on the transactions begin() hands it.
      let aPrepared: Promise<void> | undefined;
      a.begin = async (options) => {
        const tx = await originalBegin.a(options);
        const prepareA = tx.prepare.bind(tx);
        tx.prepare = (id, opts) => (aPrepared = prepareA((txid = id), opts));
        return tx;
      };
      b.begin = async (options) => {
        const tx = await originalBegin.b(options);
        const prepareB = tx.prepare.bind(tx);
        tx.prepare = point === "between-prepares"
          ? async (id) => {
            await aPrepared;
            say(`stalled ${id}`);
            freeze();
          }
          : async (id, opts) => {
            await aPrepared;
            await prepareB(id, opts);
            say(`stalled ${id}`);
            freeze();
          };
        return tx;
      };
    }
    await coord.transaction([a, b], (ta: Transaction, tb: Transaction) => {
      ta.sum("acct", ["x", tag], -j);
      tb.sum("acct", ["y", tag], j);
      ta.set("acct", ["t", tag, j], j);
      tb.set("acct", ["t", tag, j], j);
      if (stalling && point === "fn") {
        say("stalled fn");
        freeze();
      }
    }, { maxRetries: 10_000 });
    say(`acked ${j}`);
    void txid;
  }
  await coord.close();
  await a.close();
  await b.close();
  say("done");
}

async function resolve(): Promise<void> {
  const [aDir, bDir, timeoutArg] = rest as [string, string, string];
  const t0 = performance.now();
  const a = await open(aDir, { namespaces: ["acct"] });
  const b = await open(bDir, { namespaces: ["acct"] });
  say("ready");
  const deadline = t0 + Number(timeoutArg);
  for (;;) {
    const left = [...await a.listPrepared(), ...await b.listPrepared()];
    if (left.length === 0) break;
    if (performance.now() > deadline) {
      say(`unresolved ${JSON.stringify(left.map((p) => ({ txid: p.txid, ageMs: p.ageMs, coordinator: p.coordinator })))}`);
      exit(1);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  say(`resolved ${Math.round(performance.now() - t0)}`);
  await a.close();
  await b.close();
}

async function recover(): Promise<void> {
  const coord = await Coordinator.open(rest[0]!, { recoverIntervalMs: 0 });
  const r = await coord.recover();
  await coord.close();
  say(`recovered ${JSON.stringify(r)}`);
}

async function prepare(): Promise<void> {
  const [dir, txid] = rest as [string, string];
  const db = await open(dir, { namespaces: ["ns"] });
  const tx = await db.begin();
  await tx.get("ns", "r");
  for await (const _ of tx.list("ns", { prefix: ["q"] })) { /* a range read */ }
  tx.set("ns", "w", "prepared");
  await tx.prepare(txid);
  say("prepared");
  for await (const line of stdinLines()) {
    if (line === "commit") await db.commitPrepared(txid);
    else if (line === "abort") await db.abortPrepared(txid);
    else continue;
    say("decided");
    break;
  }
  await db.close();
}

async function probe(): Promise<void> {
  const db: Database = await open(rest[0]!);
  const outcome = async (write: () => Promise<unknown>) => {
    try {
      await write();
      return "ok";
    } catch (e) {
      if (e instanceof TxtDbError && e.code === "CONFLICT") return `blocked by ${String(e.details?.preparedBy)}`;
      throw e;
    }
  };
  const result = {
    w: await outcome(() => db.set("ns", "w", "probe")),
    r: await outcome(() => db.set("ns", "r", "probe")),
    q: await outcome(() => db.transaction((tx) => tx.set("ns", ["q", 5], "probe"), { maxRetries: 0 })),
    free: await outcome(() => db.set("ns", "free", "probe")),
    read: await db.get("ns", "w"),
  };
  await db.close();
  say(`probe ${JSON.stringify(result)}`);
}

const modes: Record<string, () => Promise<void>> = { transfer, resolve, recover, prepare, probe };
const run = mode ? modes[mode] : undefined;
if (!run) {
  console.error(`unknown mode ${mode}`);
  exit(2);
}
await run().catch((e) => {
  console.error(e);
  exit(1);
});
exit(0);
