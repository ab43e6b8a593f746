/**
 * A watching worker for tests/watch-namespaces.test.ts; runs on Node, Deno or Bun.
 *
 *   watch-ns <dir> <spec>...     spec := <tag>:<namespace>:<fromVersion or "-">:<follow 0|1>
 *
 * Opens the store (creating nothing) and starts one watcher per spec on the whole
 * namespace. Prints "watching" once all are started, then for each event
 * "event <tag> <namespace> <version> <changes as JSON>" and, when a watcher ends with an
 * error, "ended <tag> <code> <details as JSON>" (bigints as strings). With follow 1 a
 * watcher whose namespace was renamed or dropped goes on as the error says: it watches the
 * new name (or the same one, re-created) from the version in the error. Exits when stdin
 * closes.
 */
import { open, TxtDbError } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir, ...specs] = args();
const json = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? String(x) : x));

async function follow(db: Awaited<ReturnType<typeof open>>, tag: string, ns: string, from: bigint | undefined, again: boolean): Promise<void> {
  for (;;) {
    const it = db.watch(ns, { prefix: [] }, from === undefined ? {} : { fromVersion: from });
    try {
      for await (const e of it) say(`event ${tag} ${ns} ${e.version} ${json(e.changes)}`);
      return; // the database closed
    } catch (e) {
      if (!(e instanceof TxtDbError)) throw e;
      say(`ended ${tag} ${e.code} ${json(e.details)}`);
      const d = e.details as { op?: string; to?: string; version?: bigint } | undefined;
      if (!again || (d?.op !== "rename" && d?.op !== "drop")) return;
      if (d.op === "rename") ns = d.to!; // a drop: the name again (the re-created namespace, if any)
      from = d.version!;
    }
  }
}

try {
  const db = await open(dir!);
  const running: Promise<void>[] = [];
  for (const spec of specs) {
    const [tag, ns, from, again] = spec.split(":");
    running.push(follow(db, tag!, ns!, from === "-" ? undefined : BigInt(from!), again === "1"));
  }
  say("watching");
  for await (const _ of stdinLines()) { /* commands: none; EOF ends the worker */ }
  await db.close();
  await Promise.all(running);
  exit(0);
} catch (e) {
  console.error(`watch-ns failed: ${e instanceof Error ? e.stack : String(e)}`);
  exit(1);
}
