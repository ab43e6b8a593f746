/**
 * A process that changes namespaces while writing into them, on an etcd location, through
 * the public API (Node, Deno with --allow-net, or Bun):
 *
 *   churn <url> <n> <seed>   n rounds; each creates, drops or renames one of the names
 *                            a, b, c, d, or writes into one (db.set, or a transaction that
 *                            reads and writes two of them); prints "bad <code> <message>"
 *                            for any error other than NAMESPACE_NOT_FOUND, NAMESPACE_EXISTS
 *                            and CONFLICT
 *
 * Prints "ready" once open, "done <json counts>" when finished.
 */
import { open, TxtDbError } from "txtdb";
import { args, exit, say } from "./io.ts";

const [mode, url, a1, a2] = args();
const NAMES = ["a", "b", "c", "d"];
const EXPECTED = new Set(["NAMESPACE_NOT_FOUND", "NAMESPACE_EXISTS", "CONFLICT"]);

async function run(): Promise<void> {
  if (mode !== "churn") throw new Error(`unknown mode ${mode}`);
  const db = await open(url!);
  say("ready");
  let seed = Number(a2 ?? 1) >>> 0;
  const rnd = (n: number) => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed % n;
  };
  const counts: Record<string, number> = {};
  for (let i = 0; i < Number(a1); i++) {
    const x = NAMES[rnd(4)]!, y = NAMES[rnd(4)]!;
    const op = rnd(6);
    let what = "";
    try {
      if (op === 0) (what = "create"), await db.createNamespace(x);
      else if (op === 1) (what = "drop"), await db.dropNamespace(x);
      else if (op === 2) (what = "rename"), await db.renameNamespace(x, y);
      else if (op === 3) (what = "set"), await db.set(x, ["k", i], i);
      else {
        what = "tx";
        await db.transaction(async (tx) => {
          const n = (await tx.get<number>(x, "n")) ?? 0;
          tx.set(x, "n", n + 1);
          tx.set(y, ["t", i], n);
        }, { maxRetries: 0 });
      }
      counts[`${what} ok`] = (counts[`${what} ok`] ?? 0) + 1;
    } catch (e) {
      if (!(e instanceof TxtDbError) || !EXPECTED.has(e.code)) {
        say(`bad ${e instanceof TxtDbError ? e.code : "THROW"} ${what} ${String(e instanceof Error ? e.message : e).replace(/\n/g, " ")}`);
      }
      const k = `${what} ${e instanceof TxtDbError ? e.code : "THROW"}`;
      counts[k] = (counts[k] ?? 0) + 1;
    }
  }
  say(`done ${JSON.stringify(counts)}`);
  await db.close();
}

run().then(() => exit(0), (e) => {
  console.error(e);
  exit(1);
});
