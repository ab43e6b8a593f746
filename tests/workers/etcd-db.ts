/**
 * A process using txtdb's public API on an etcd location (`open("etcd://…")`); runs on
 * Node, Deno (with --allow-net) or Bun.
 *
 *   counter <url> <n>           n db.transaction() increments of c/"hot" and n tx.sum() of 1
 *                               on c/"sum"
 *   bank <url> <n> <accounts>   n transfers between random accounts b/["acct", i] (never
 *                               below 0); every 10th, an audit of the total over a snapshot's
 *                               list(): prints "bad <json>" unless it is accounts * 100
 *   skew <url> <me> <rounds>    each round (r/["round", k] set by the test): if at least two
 *                               doctors of round k are on call, takes doctor <me> off call
 *                               (reads both others, writes its own: write skew if unchecked)
 *   watch <url> <from> <n>      watches w/ prefix [] from version <from>; prints "event <version>
 *                               <json changes>" for each of n events, then "done"
 *   hold <url>                  in namespace ns (made by the test): sets "s" and k = 1, takes a
 *                               snapshot and begins a transaction there, sets k = 2, prints
 *                               "pinned <version>"; then on stdin "check": reads k at the
 *                               snapshot, "s" in the transaction, and the first event of a
 *                               watch from the snapshot's version, printing "checked <json>"
 *                               (an error's code and message in it instead); "commit": commits
 *                               the transaction (a write of "t"), printing "committed <json>";
 *                               "release": releases both, printing "released"; EOF: exits
 *
 * Prints "ready" once open, "done <json>" when finished.
 */
import { open, TxtDbError } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, url, a1, a2] = args();
let conflicts = 0;

async function run(): Promise<void> {
  const db = await open(url!);
  const counted = async <T>(fn: Parameters<typeof db.transaction<T>>[0]) => {
    let attempts = 0;
    const r = await db.transaction<T>(async (tx) => {
      if (attempts++ > 0) conflicts++;
      return await fn(tx);
    }, { maxRetries: 1000 });
    return r;
  };
  try {
    say("ready");
    if (mode === "counter") {
      const n = Number(a1);
      for (let i = 0; i < n; i++) {
        await counted(async (tx) => {
          tx.set("c", "hot", ((await tx.get<number>("c", "hot")) ?? 0) + 1);
        });
        const s = await db.begin();
        s.sum("c", "sum", 1);
        await s.commit(); // a CONFLICT here fails the worker: sums never conflict
      }
      say(`done ${JSON.stringify({ conflicts })}`);
    } else if (mode === "bank") {
      const n = Number(a1), accounts = Number(a2);
      let audits = 0;
      for (let i = 0; i < n; i++) {
        const x = Math.floor(Math.random() * accounts);
        const y = (x + 1 + Math.floor(Math.random() * (accounts - 1))) % accounts;
        await counted(async (tx) => {
          const [from, to] = (await tx.getMany<number>("b", [["acct", x], ["acct", y]])) as [number, number];
          const amount = Math.min(from, 1 + Math.floor(Math.random() * 20));
          tx.set("b", ["acct", x], from - amount);
          tx.set("b", ["acct", y], to + amount);
        });
        if (i % 10 === 0) {
          await using snap = await db.snapshot();
          let total = 0;
          for await (const e of snap.list<number>("b", { prefix: ["acct"] })) total += e.value;
          audits++;
          if (total !== accounts * 100) say(`bad ${JSON.stringify({ total, version: String(snap.version) })}`);
        }
      }
      say(`done ${JSON.stringify({ conflicts, audits })}`);
    } else if (mode === "skew") {
      const me = Number(a1), rounds = Number(a2);
      let offCall = 0;
      for (let k = 0; k < rounds; k++) {
        // Wait for the test to open round k.
        while ((await db.get("r", ["round", k])) === undefined) await new Promise((r) => setTimeout(r, 5));
        const went = await counted(async (tx) => {
          const on = await tx.getMany<boolean>("r", [0, 1, 2].map((d) => ["doc", k, d]));
          if (on.filter((v) => v === true).length < 2 || on[me] !== true) return false;
          tx.set("r", ["doc", k, me], false);
          return true;
        });
        if (went) offCall++;
        await db.set("r", ["finished", k, me], true);
      }
      say(`done ${JSON.stringify({ conflicts, offCall })}`);
    } else if (mode === "watch") {
      const from = BigInt(a1!), n = Number(a2);
      let seen = 0;
      for await (const ev of db.watch("w", { prefix: [] }, { fromVersion: from })) {
        say(`event ${ev.version} ${JSON.stringify(ev.changes)}`);
        if (++seen >= n) break;
      }
      say(`done ${JSON.stringify({ seen })}`);
    } else if (mode === "hold") {
      await db.set("ns", "s", "steady");
      await db.set("ns", "k", 1);
      const snap = await db.snapshot();
      const tx = await db.begin();
      await db.set("ns", "k", 2);
      say(`pinned ${snap.version}`);
      const outcome = async (fn: () => Promise<Record<string, unknown>>) => {
        try {
          return JSON.stringify(await fn());
        } catch (e) {
          return JSON.stringify({ error: e instanceof TxtDbError ? `${e.code}: ${e.message}` : String(e) });
        }
      };
      for await (const line of stdinLines()) {
        if (line === "check") {
          say(`checked ${await outcome(async () => {
            const w = db.watch("ns", { keys: ["k"] }, { fromVersion: snap.version });
            try {
              const first = await w.next();
              const change = first.done ? undefined : first.value.changes[0];
              return { snap: await snap.get("ns", "k"), tx: await tx.get("ns", "s"), watched: change?.value ?? null };
            } finally {
              await w.return?.();
            }
          })}`);
        } else if (line === "commit") {
          say(`committed ${await outcome(async () => {
            tx.set("ns", "t", "from the transaction");
            return { version: String((await tx.commit()).version) };
          })}`);
        } else if (line === "release") {
          snap.release();
          tx.rollback();
          say("released");
        }
      }
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await db.close();
  }
}

run().then(() => exit(0), (e) => {
  console.error(e instanceof TxtDbError ? `${e.code}: ${e.message}` : e);
  exit(1);
});
