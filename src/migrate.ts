/**
 * Moving a store between formats under the locks upgrade.ts asks for (its rule 1): the
 * automatic upgrade when `open()` meets a format-1 store, and `txtdb migrate [--rollback]`.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { COMPACT_LOCK, ioError, LEASES_DIR, WRITER_LOCK } from "./files.ts";
import { holderRecord, stampHolder } from "./holder.ts";
import { listLeases } from "./liveness.ts";
import { FileLock } from "./lock.ts";
import { FORMAT_CHECKPOINT, FORMAT_READABLE_MAX, FORMAT_TWO_PHASE, FORMAT_VERSION, Log } from "./log.ts";
import type { Manifest } from "./log.ts";
import { checkManifestFiles } from "./opening.ts";
import type { Platform } from "./port.ts";
import { rollbackLocked, upgradeLocked } from "./upgrade.ts";
import type { FormatChange } from "./upgrade.ts";

export type { FormatChange };

/**
 * Upgrades (or rolls back) the store whose manifest is `m`; the caller holds the writer
 * lock. Takes `compact.lock` without waiting and checks that no other process has the
 * store open; FORMAT with what to do otherwise. `ownLease` is the caller's lease file, if
 * it has one (it does not count as another process).
 */
export function changeFormatLocked(platform: Platform, dir: string, log: Log, m: Manifest, compactLock: FileLock, to: number, ownLease?: string): { manifest: Manifest; change: FormatChange } {
  const listing = listLeases(platform, `${dir}/${LEASES_DIR}`);
  const others = listing.live.filter((l) => l.path !== ownLease);
  const verb = to > m.format ? "upgraded" : "rolled back";
  // No leases/ at all: no process ever took a lease here (a copy of a store). One that
  // cannot be listed hides the processes that may have the store open.
  if (listing.unlisted !== undefined && listing.unlisted.errno !== "ENOENT") {
    throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${m.format} and must be ${verb} to format ${to} with no other process using it, but its leases directory ${listing.unlisted.reason}, so whether other processes have it open cannot be told. Make "${dir}/${LEASES_DIR}" a directory this user can read, then try again`, {
      details: { format: m.format, target: to },
    });
  }
  if (others.length > 0) {
    const who = others.slice(0, 5).map((l) => (l.info ? `pid ${l.info.pid} (${l.info.runtime})` : l.path)).join(", ");
    throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${m.format} and must be ${verb} to format ${to} with no other process using it, but ${others.length} ${others.length === 1 ? "process has" : "processes have"} it open: ${who}. Close them, then open it again (or run \`txtdb migrate ${to < m.format ? "--rollback " : ""}${dir}\`)`, {
      details: { format: m.format, target: to, processes: others.length },
    });
  }
  const release = compactLock.tryAcquire(true);
  if (!release) {
    throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${m.format} and must be ${verb} to format ${to}, but a compaction is running in another process; try again when it ends`, {
      details: { format: m.format, target: to },
    });
  }
  try {
    checkManifestFiles(platform, dir, log, m);
    return to > m.format ? upgradeLocked(platform, dir, log, m) : rollbackLocked(platform, dir, log, m);
  } finally {
    release();
  }
}

/**
 * `txtdb migrate <dir>` (to the current format) and `txtdb migrate --rollback <dir>` (to
 * format 1), with no database open in this process. Returns what changed; a store already
 * in the asked format is left alone (`change` undefined).
 */
export async function migrateStore(platform: Platform, dir: string, options: { rollback?: boolean; lockTimeoutMs?: number } = {}): Promise<{ format: number; change?: FormatChange }> {
  const log = new Log(platform, dir, 0o600, false);
  const writer = new FileLock(platform, `${dir}/${WRITER_LOCK}`, 0o600, { guardDir: dir });
  const compact = new FileLock(platform, `${dir}/${COMPACT_LOCK}`, 0o600, { recordHolder: () => holderRecord(platform) }); // as compact.ts's: doctor names it
  try {
    const first = log.readManifest();
    if (!first) throw new TxtDbError("INVALID_ARGUMENT", `No txtdb store at "${dir}" (no MANIFEST)`);
    if (first.format > FORMAT_READABLE_MAX) {
      throw new TxtDbError("FORMAT", `Store "${dir}" has format version ${first.format}; this txtdb reads up to ${FORMAT_READABLE_MAX}. Upgrade txtdb to migrate it`, { details: { format: first.format, supported: FORMAT_READABLE_MAX } });
    }
    if (first.format === FORMAT_TWO_PHASE) {
      // Format 3 is format 2 plus records of two-phase commit, which no older format holds.
      if (options.rollback) {
        throw new TxtDbError("FORMAT", `Store "${dir}" is in format ${FORMAT_TWO_PHASE}: it has held prepared transactions (two-phase commit), which format ${FORMAT_CHECKPOINT} cannot represent, so it cannot be rolled back`, { details: { format: first.format } });
      }
      return { format: first.format };
    }
    const target = options.rollback ? FORMAT_CHECKPOINT : FORMAT_VERSION;
    const releaseWriter = await writer.acquire(true, { timeoutMs: options.lockTimeoutMs ?? 30_000 });
    try {
      stampHolder(writer, platform);
      const m = log.readManifest()!;
      if (m.format === target) return { format: m.format };
      const { manifest, change } = changeFormatLocked(platform, dir, log, m, compact, target);
      return { format: manifest.format, change };
    } finally {
      releaseWriter();
    }
  } catch (e) {
    // A failure of the file system (EIO, ENOSPC, EACCES) is IO with the cause kept, as
    // everywhere else; it used to reach `txtdb migrate` as the port's own error.
    throw ioError(e, `Migrating "${dir}" to format ${options.rollback ? FORMAT_CHECKPOINT : FORMAT_VERSION}`);
  } finally {
    log.close();
    writer.close();
    compact.close();
  }
}
