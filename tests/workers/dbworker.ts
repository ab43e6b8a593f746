/**
 * A database worker for the multi-process tests; runs on Node, Deno or Bun.
 *
 *   counter <dir> <n> <serializable|snapshot> <rmw|sum> [segmentBytes autoCompactBytes]
 *                                                         n increments of ns/"hot"; with sizes, small segments, and a compact() every 50
 *   bank <dir> <n> <accounts>                             n random transfers
 *   skew <dir> <serializable|snapshot> <me> <other>       read both, wait for "go", write, commit
 *   writer <dir> <n> <ns> <tag>                           n writes into a namespace another process renames
 *   renamer <dir> <rounds> <from> <to>                    rename back and forth (even rounds)
 *   ackloop <dir> <tag>                                   commit forever; print "ack <i>" as each resolves
 *   pause <dir> <beforeFsync|midAppend> [tag]             freeze between append and sync, or mid-append holding the writer lock
 *   watchcount <dir> <n>                                  watch ns/["ack", ...]; print "watched <n> in order"
 *   snapshot <dir>                                        hold a snapshot; print "pinned <v>"; on "read" print its value of ns/"k"
 *
 * Prints "ready" once open, "done <json>" at the end.
 */
import { defaultPlatform, open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { withFaults } from "txtdb/adapters/faults";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, dir, ...rest] = args();
const platform = await defaultPlatform();
const retryForever = { maxRetries: 100_000 };

function freeze(): never {
  // Blocks this thread for good: the test SIGKILLs the process here.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  throw new Error("unreachable");
}

async function run(): Promise<void> {
  if (mode === "pause") {
    let armed = false;
    const point = rest[0];
    const faulty = withFaults(platform, (step, path, bytes, data) => {
      if (!armed || !path.endsWith(".log")) return;
      if (point === "beforeFsync" && step === "beforeFsync") {
        say("paused");
        freeze();
      }
      // The commit's records (they start with the frame magic), not the zero-fill.
      const isRecords = (step === "beforeAppend" || step === "beforeWrite") && data?.[0] === 0xc7;
      if (point === "midAppend" && isRecords) return Math.floor((bytes ?? 0) / 2);
      if (point === "midAppend" && step === "afterPartialWrite") {
        say("paused");
        freeze();
      }
    });
    const db = await open(dir!, { adapter: faulty, namespaces: ["ns"] });
    const tag = rest[1] ?? "p";
    say("ready");
    armed = true;
    // Between append and sync: a commit that another process's sync covered already
    // resolves without syncing (rule 3 in tail.ts), so this tries again until one syncs,
    // for up to 20 s (the test waits 30 s). A writer syncing back to back beside it covers
    // most attempts: 200 were all covered once (CI, Deno, 2026-12-04).
    const untilMs = performance.now() + 20_000;
    for (let attempt = 0; point === "beforeFsync" ? performance.now() < untilMs : attempt < 1; attempt++) {
      await db.transaction((tx) => {
        for (let i = 0; i < 20; i++) tx.set("ns", ["paused", tag, attempt, i], "x".repeat(100));
      });
    }
    say("not paused");
    return;
  }

  // counter's optional sizes: segments that roll, and compactions, under the test's attack.
  const small = mode === "counter" && rest[3] !== undefined ? { segmentBytes: Number(rest[3]), autoCompactBytes: Number(rest[4]) } : undefined;
  const db: Database = await open(dir!, { namespaces: ["ns"], ...small });
  say("ready");
  const t0 = performance.now();
  let acked = 0;
  if (mode === "counter") {
    const [n, isolation, style] = [Number(rest[0]), rest[1] as "serializable" | "snapshot", rest[2]];
    for (let i = 0; i < n; i++) {
      if (style === "sum") await db.transaction((tx) => tx.sum("ns", "hot", 1), { isolation, ...retryForever });
      else {
        await db.transaction(async (tx) => {
          tx.set("ns", "hot", ((await tx.get<number>("ns", "hot")) ?? 0) + 1);
        }, { isolation, ...retryForever });
      }
      if (small && i % 50 === 49) await db.compact();
      acked++;
    }
  } else if (mode === "bank") {
    const [n, accounts] = [Number(rest[0]), Number(rest[1])];
    for (let i = 0; i < n; i++) {
      const from = Math.floor(Math.random() * accounts);
      const to = (from + 1 + Math.floor(Math.random() * (accounts - 1))) % accounts;
      const amount = 1 + Math.floor(Math.random() * 20);
      await db.transaction(async (tx) => {
        const a = (await tx.get<number>("ns", ["acct", from]))!;
        const b = (await tx.get<number>("ns", ["acct", to]))!;
        if (a < amount) return;
        tx.set("ns", ["acct", from], a - amount);
        tx.set("ns", ["acct", to], b + amount);
        tx.sum("ns", "transfers", 1);
      }, retryForever);
      acked++;
    }
  } else if (mode === "skew") {
    const [isolation, me, other] = [rest[0] as "serializable" | "snapshot", rest[1]!, rest[2]!];
    const tx = await db.begin({ isolation });
    const otherOn = await tx.get<boolean>("ns", other);
    await tx.get<boolean>("ns", me);
    say("read");
    for await (const line of stdinLines()) if (line === "go") break;
    if (otherOn) tx.set("ns", me, false);
    const outcome = await tx.commit().then(() => "committed", (e: TxtDbError) => e.code);
    say(`outcome ${outcome}`);
  } else if (mode === "writer") {
    const [n, ns, tag] = [Number(rest[0]), rest[1]!, rest[2]!];
    for (let i = 0; i < n; i++) {
      for (;;) {
        try {
          await db.transaction((tx) => tx.set(ns, ["w", tag, i], i), retryForever);
          break;
        } catch (e) {
          // Renamed away at begin: wait for it to come back.
          if (!(e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND")) throw e;
          await new Promise((r) => setTimeout(r, 1));
        }
      }
      acked++;
    }
  } else if (mode === "renamer") {
    const [rounds, from, to] = [Number(rest[0]), rest[1]!, rest[2]!];
    for (let i = 0; i < rounds; i++) {
      await db.renameNamespace(i % 2 ? to : from, i % 2 ? from : to);
      acked++;
      await new Promise((r) => setTimeout(r, 2));
    }
  } else if (mode === "snapshot") {
    const snap = await db.snapshot();
    say(`pinned ${snap.version}`);
    for await (const line of stdinLines()) {
      if (line === "read") say(`value ${JSON.stringify(await snap.get("ns", "k"))}`);
    }
    snap.release();
  } else if (mode === "watchcount") {
    // Watch the ackloop writers' keys; check order per writer; print "watched <n> in order".
    const n = Number(rest[0]);
    const it = db.watch("ns", { prefix: ["ack"] });
    say("watching");
    const next = new Map<string, number>();
    let seen = 0;
    let last = 0n;
    for await (const e of it) {
      if (e.version <= last) throw new Error("versions out of order");
      last = e.version;
      for (const c of e.changes) {
        const [, tag, i] = c.key as [string, string, number];
        if (i !== (next.get(tag) ?? 0)) throw new Error(`${tag}: got ${i}, expected ${next.get(tag) ?? 0}`);
        next.set(tag, i + 1);
        seen++;
      }
      if (seen >= n) break;
    }
    say(`watched ${seen} in order`);
  } else if (mode === "ackloop") {
    const tag = rest[0]!;
    for (let i = 0; ; i++) {
      await db.set("ns", ["ack", tag, i], i);
      say(`ack ${i}`);
    }
  } else {
    throw new Error(`dbworker: unknown mode ${mode}`);
  }
  const s = db.stats();
  say(`done ${JSON.stringify({ runtime: platform.runtime, acked, ms: Math.round(performance.now() - t0), retries: s.retries, conflicts: s.conflicts, commits: s.commits, batches: s.batches })}`);
  await db.close();
}

try {
  await run();
  exit(0);
} catch (e) {
  console.error(`dbworker ${mode} failed: ${e instanceof Error ? e.stack : String(e)}`);
  exit(1);
}
