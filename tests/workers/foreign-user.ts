/**
 * A process of another user on a store: `foreign-user <dir> reader|writer <keys>`.
 * reader: opens read-only (allowForeignOwner), takes a snapshot, prints
 * `ready <json>` ({ version, mirror, leased }), then on each stdin line `snap` reads every
 * key `k0000`..`k<keys-1>` in the snapshot and prints `snap <json>` (the values, or the
 * error's code and message), or on `db` reads them on the database.
 * writer: opens writable (allowForeignOwner), prints `ready <json>`, and on `write <tag>`
 * sets every key to `<tag>-<i>` and compacts, printing `wrote <json>` (or the error).
 * Ends at stdin's end.
 */
import { open } from "txtdb";
import { args, say, stdinLines } from "./io.ts";

const [dir, role, keysArg] = args();
const keys = Number(keysArg);
const key = (i: number) => `k${String(i).padStart(4, "0")}`;
const big = (_k: string, v: unknown) => (typeof v === "bigint" ? String(v) : v);
const failure = (e: unknown) => ({ error: (e as { code?: string }).code ?? String(e), message: (e as Error).message });

const db = await open(dir!, role === "reader" ? { readOnly: true, allowForeignOwner: true, cacheBytes: 0 } : { allowForeignOwner: true, namespaces: ["ns"], mode: 0o660, segmentBytes: 4096, autoCompactBytes: 0 });
const snap = await db.snapshot();
await snap.get("ns", key(0));
await db.get("ns", key(0));
const stats = await db.stats();
say(`ready ${JSON.stringify({ version: snap.version, mirror: stats.frontierMirror, liveLeases: stats.liveLeases }, big)}`);
for await (const line of stdinLines()) {
  const [cmd, tag] = line.split(" ");
  try {
    if (cmd === "snap" || cmd === "db") {
      const values: unknown[] = [];
      for (let i = 0; i < keys; i++) values.push(await (cmd === "snap" ? snap : db).get("ns", key(i)));
      say(`${cmd} ${JSON.stringify({ values })}`);
    } else if (cmd === "write") {
      for (let i = 0; i < keys; i++) await db.set("ns", key(i), `${tag}-${i}`);
      const r = await db.compact();
      say(`wrote ${JSON.stringify(r, big)}`);
    }
  } catch (e) {
    say(`${cmd} ${JSON.stringify(failure(e))}`);
  }
}
snap.release();
await db.close();
