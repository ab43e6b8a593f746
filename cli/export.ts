/**
 * `txtdb export`: NDJSON `{"ns","key","value","version"}` lines of every entry at one
 * snapshot, on stdout; progress and the summary on stderr. An expiring key's line also has
 * `"expiresAtMs"` (its absolute expiry, ms since the epoch), which import keeps.
 *
 * @module
 */
import { TxtDbError } from "../src/errors.ts";
import type { Database, Snapshot } from "../mod.ts";
import { IMPORT_NS } from "./import.ts";
import { databaseInternals } from "../src/db.ts";
import { expiresAtOf, isExpiring } from "../src/expiry.ts";
import { encodeKey } from "../src/keys.ts";
import { json } from "./output.ts";
import type { Progress } from "./output.ts";

async function existsAt(snap: Snapshot, ns: string): Promise<boolean> {
  try {
    await snap.get(ns, "");
    return true;
  } catch (e) {
    if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") return false;
    throw e;
  }
}

/** Writes every entry of `names` (all namespaces when empty, an import's marker excluded) through `out`, waiting for `drained` now and then. */
export async function exportAll(db: Database, names: string[], out: (line: string) => void, drained: () => Promise<void>, progress: Progress): Promise<number> {
  const snap = await db.snapshot();
  try {
    progress.start(`at version ${snap.version}`);
    // Snapshots cannot list namespaces yet, so the list comes from the head, just after the
    // snapshot was taken: a namespace created since then does not exist at the snapshot and
    // is skipped; one dropped since then is missed (a narrow race, only without names given).
    const all = names.length ? names : (await db.listNamespaces()).filter((ns) => ns !== IMPORT_NS);
    let n = 0;
    let expiredMeanwhile = 0;
    // Entries do not carry their expiry: it is read from the stored version the entry came from.
    const index = databaseInternals(db).index;
    const at = Number(snap.version);
    for (const ns of all) {
      if (!names.length && !(await existsAt(snap, ns))) continue;
      const nsId = index.resolve(ns, at);
      for await (const e of snap.list(ns, { prefix: [] })) {
        let line: string;
        let stored: Uint8Array | undefined;
        try {
          stored = nsId === undefined ? undefined : index.get(nsId, encodeKey(e.key), at)?.value;
        } catch (cause) {
          const why = cause instanceof TxtDbError ? cause.message : String(cause);
          throw new TxtDbError("INVALID_VALUE", `Cannot export namespace ${json(ns)} key ${json(e.key)} after ${n} entries: ${why}`, { cause });
        }
        // The index hides an expired version, even at a pinned snapshot (expiry.ts, rule 1): a
        // key the listing returned and the index no longer has expired in between (the listing
        // reads ahead in pages, and a slow reader of stdout can hold the export for long).
        // Written without its "expiresAtMs", it came back from import as a key that never
        // expires; left out, it reads as absent, as it does in the store now.
        if (stored === undefined && (await snap.getEntry(ns, e.key)) === undefined) {
          expiredMeanwhile++;
          continue;
        }
        try {
          const expiresAtMs = stored && isExpiring(stored) ? expiresAtOf(stored) : NaN;
          line = json({ ns, key: e.key, value: e.value, version: e.version, ...(Number.isFinite(expiresAtMs) ? { expiresAtMs } : {}) });
        } catch (cause) {
          const why = cause instanceof TxtDbError ? cause.message : String(cause);
          throw new TxtDbError("INVALID_VALUE", `Cannot export namespace ${json(ns)} key ${json(e.key)} after ${n} entries: ${why}`, { cause });
        }
        out(line);
        if (++n % 1000 === 0) {
          progress.update(() => `${n} entries (namespace ${json(ns)})`);
          await drained();
        }
      }
    }
    progress.done(`exported ${n} entries at version ${snap.version}${expiredMeanwhile ? `; ${expiredMeanwhile} expired while the export ran and were left out` : ""}`);
    return 0;
  } finally {
    snap.release();
  }
}
