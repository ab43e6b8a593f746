/**
 * The format upgrade (1 → 2: the checkpoint becomes sorted tables) and its rollback
 * (2 → 1: the tables become a checkpoint again), in place. `open()` upgrades a writable
 * store of format 1; `txtdb migrate <dir>` does it explicitly and `txtdb migrate
 * --rollback <dir>` goes back. The log segments are the same in both formats and stay.
 *
 * Rules, in the order {@link upgradeLocked} and {@link rollbackLocked} carry them out:
 *
 * 1. Only under the writer lock and `compact.lock`, and only when no other process has the
 *    store open (no other live lease): a running process of the old release keeps the
 *    checkpoint in memory and would compact by it. A process of the old release that opens
 *    afterwards reads format 2 in the manifest and refuses with FORMAT (releases check the
 *    manifest's format before anything else). A read-only process of this release reads a
 *    format-1 store as before (the checkpoint in memory) and follows the upgrade when it
 *    notices the new manifest.
 * 2. Upgrade: the checkpoint's entries, in table order, are written as one sorted run at
 *    level 1 (fold.ts rules 5–6: fresh files, fdatasync, rename, directory sync). Nothing
 *    else changes: the folded version, the first segment and the namespace bindings carry
 *    over.
 * 3. Then the format-2 manifest naming them (temp, fsync, rename, directory fsync). A crash
 *    before its rename leaves the format-1 store, whole; the tables it does not name are
 *    removed by cleanup at a later open (under `compact.lock`).
 * 4. Only then is the checkpoint deleted (the old files are kept until the new manifest is
 *    durable); a crash before that leaves a checkpoint cleanup removes.
 * 5. Rollback mirrors it: the state at the folded version (newest version of each key in
 *    the tables, deletes and dropped namespaces left out) is written as a checkpoint
 *    (fresh file, fsync, rename, directory sync), then the format-1 manifest, then the
 *    tables are deleted. Commits made since the upgrade are in the log and stay.
 *
 * @module
 */
import { CheckpointDamage, checkpointName, readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import type { CheckpointEntry } from "./checkpoint.ts";
import { TxtDbError } from "./errors.ts";
import { removeUnnamed } from "./files.ts";
import { writeTables } from "./fold.ts";
import { FORMAT_CHECKPOINT, FORMAT_VERSION, tableIdentity } from "./log.ts";
import type { Log, Manifest } from "./log.ts";
import { BlockCache } from "./blockcache.ts";
import { mergeForCompaction } from "./merge.ts";
import type { FileHandle, Platform } from "./port.ts";
import { storeFileError } from "./dirsafety.ts";
import { TableReader } from "./table.ts";
import type { TableEntry } from "./table.ts";

/** What an upgrade or a rollback did. */
export interface FormatChange {
  from: number;
  to: number;
  /** Files written (tables, or the checkpoint). */
  written: string[];
  /** Files deleted once the new manifest was durable. */
  deleted: string[];
  /** Keys carried over. */
  keys: number;
}

function damaged(path: string, e: CheckpointDamage): TxtDbError {
  return new TxtDbError("CORRUPTION", `Checkpoint "${path}" is damaged at offset ${e.offset}: ${e.message}. Nothing was changed; run \`txtdb check\`, restore from a backup if it persists`, {
    details: { file: path, offset: e.offset },
  });
}

/**
 * Opens a checkpoint or table the manifest names, read-only. A symlink, FIFO or directory in
 * its place is CORRUPTION naming it (dirsafety.ts): `txtdb migrate` does not go through the
 * directory check of `open()`, and the port's error used to escape as it was.
 */
function openForFormatChange(platform: Platform, path: string): FileHandle {
  try {
    return platform.open(path, { readOnly: true });
  } catch (e) {
    throw storeFileError(e, path) ?? e;
  }
}

/** Rules 2–4: format 1 → 2. The caller holds the writer lock and `compact.lock`, alone (rule 1). */
export function upgradeLocked(platform: Platform, dir: string, log: Log, m: Manifest): { manifest: Manifest; change: FormatChange } {
  if (m.format !== FORMAT_CHECKPOINT) throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${m.format}; only format ${FORMAT_CHECKPOINT} is upgraded`);
  const tsn = m.checkpointTsn ?? 0;
  let bindings: [string, number][] = [];
  let nextNsId = 1;
  const byNs = new Map<number, CheckpointEntry[]>();
  if (m.checkpoint) {
    const path = `${dir}/${m.checkpoint}`;
    const file = openForFormatChange(platform, path);
    try {
      const { header } = readCheckpoint(file, (e) => {
        let list = byNs.get(e.nsId);
        if (!list) byNs.set(e.nsId, (list = []));
        list.push(e);
      });
      bindings = header.bindings;
      nextNsId = header.nextNsId;
    } catch (e) {
      throw e instanceof CheckpointDamage ? damaged(path, e) : e;
    } finally {
      file.close();
    }
  }
  // Table order: namespace id, then key (a checkpoint is in key order within a namespace;
  // sorting again costs little and does not trust it).
  const ids = [...byNs.keys()].sort((a, b) => a - b);
  let keys = 0;
  const entries = function* (): Generator<TableEntry> {
    for (const id of ids) {
      const list = byNs.get(id)!.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (const e of list) {
        keys++;
        yield { nsId: e.nsId, key: e.key, tsn: e.tsn, value: e.value };
      }
    }
  };
  const out = writeTables({
    platform, dir, mode: log.mode, tables: [], fold: entries(), foldedTsn: tsn,
    liveNsIds: new Set(bindings.map(([, id]) => id)), nextTable: 1, foldLevel: 1,
  });
  const manifest: Manifest = {
    format: FORMAT_VERSION,
    createdAtMs: m.createdAtMs,
    checkpointTsn: tsn,
    firstSegment: m.firstSegment ?? 1,
    tables: out.tables,
    bindings: bindings.flat(),
    nextNsId,
    nextTable: out.nextTable,
  };
  try {
    log.writeManifest(manifest);
  } catch (e) {
    removeUnnamed(platform, dir, log.unnamedByManifest(out.written));
    throw e;
  }
  const deleted: string[] = [];
  if (m.checkpoint) {
    platform.unlink(`${dir}/${m.checkpoint}`);
    platform.syncDir(dir);
    deleted.push(m.checkpoint);
  }
  return { manifest, change: { from: FORMAT_CHECKPOINT, to: FORMAT_VERSION, written: out.written, deleted, keys } };
}

/** Rule 5: format 2 → 1. The caller holds the writer lock and `compact.lock`, alone (rule 1). */
export function rollbackLocked(platform: Platform, dir: string, log: Log, m: Manifest): { manifest: Manifest; change: FormatChange } {
  if (m.format !== FORMAT_VERSION) throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${m.format}; only format ${FORMAT_VERSION} rolls back to ${FORMAT_CHECKPOINT}`);
  const tsn = m.checkpointTsn ?? 0;
  const first = m.firstSegment ?? 1;
  const flat = m.bindings ?? [];
  const bindings: [string, number][] = [];
  for (let i = 0; i < flat.length; i += 2) bindings.push([flat[i] as string, flat[i + 1] as number]);
  const live = new Set(bindings.map(([, id]) => id));
  const cache = new BlockCache(0);
  const readers: TableReader[] = [];
  const tables = m.tables ?? [];
  let keys = 0;
  const written: string[] = [];
  let manifest: Manifest;
  try {
    for (const t of [...tables].sort((a, b) => a.level - b.level)) {
      const file = openForFormatChange(platform, `${dir}/${t.name}`);
      try {
        // With the manifest's identity: a file copied over the table's name is not folded into the checkpoint (table.ts rule 9).
        readers.push(TableReader.open(file, { cache, identity: tableIdentity(t) }));
      } catch (e) {
        file.close();
        throw e;
      }
    }
    if (tsn === 0 && first === 1 && readers.every((r) => r.meta.entryCount === 0)) {
      manifest = { format: FORMAT_CHECKPOINT, createdAtMs: m.createdAtMs }; // nothing was ever folded
    } else {
      const name = checkpointName(tsn).replace(".dat", `-${first}.dat`);
      const tmp = `${dir}/${name}.tmp`;
      platform.unlink(tmp);
      const file = platform.open(tmp, { create: true, exclusive: true, mode: log.mode });
      try {
        const merged = mergeForCompaction(readers.map((r) => r.entries()), { pins: [tsn], bottomLevel: true });
        const state = function* (): Generator<CheckpointEntry> {
          for (const e of merged) {
            if (e.value === null || !live.has(e.nsId)) continue;
            keys++;
            yield { nsId: e.nsId, key: e.key, tsn: e.tsn, value: e.value.slice() };
          }
        };
        writeCheckpoint(file, { tsn, nextNsId: m.nextNsId ?? 1, bindings }, state());
      } catch (e) {
        // A table that fails to read (CORRUPTION) or a failed write: the rollback changes
        // nothing, so its half-written checkpoint goes too (a failed unlink is left to the
        // next writable open's cleanup).
        file.close();
        try {
          platform.unlink(tmp);
        } catch {
          // left to cleanup
        }
        throw e;
      }
      file.close();
      platform.rename(tmp, `${dir}/${name}`);
      platform.syncDir(dir);
      written.push(name);
      manifest = { format: FORMAT_CHECKPOINT, createdAtMs: m.createdAtMs, checkpoint: name, checkpointTsn: tsn, firstSegment: first };
    }
  } finally {
    for (const r of readers) r.close();
  }
  try {
    log.writeManifest(manifest);
  } catch (e) {
    removeUnnamed(platform, dir, log.unnamedByManifest(written));
    throw e;
  }
  const deleted: string[] = [];
  for (const t of tables) {
    platform.unlink(`${dir}/${t.name}`);
    deleted.push(t.name);
  }
  if (deleted.length > 0) platform.syncDir(dir);
  return { manifest, change: { from: FORMAT_VERSION, to: FORMAT_CHECKPOINT, written, deleted, keys } };
}
