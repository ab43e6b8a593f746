/**
 * `txtdb stats`: the store's figures across processes, from what is on disk — the files and
 * their sizes, the manifest's tables (format 2) or checkpoint (format 1) and segments, each live process's lease (pid,
 * runtime, start time, pin and since when it is held) and the writer lock's holder record.
 *
 * What it cannot show: per-process counters (commits, conflicts, latencies, fsyncs) live in
 * each process's memory (`db.stats()`, `db.metrics()`); a lease publishes only pid, runtime,
 * start time and pin (with since when it is held), so those are left out rather than shown
 * as the CLI's own zeros. The lease of an older release does not say since when its pin is
 * held: that pin's age is unknown (null), bounded by its process's running time
 * (`heldAtMostMs`).
 *
 * Sagas by status come from the store too ({@link gatherSagaFigures}), for every namespace
 * that holds some, where `db.stats().sagas` counts only the namespaces a process has open.
 *
 * {@link storeFigures} is pure (tested on every runtime); {@link gatherFigures} reads the files.
 *
 * @module
 */
import type { Database } from "../mod.ts";
import { databaseInternals } from "../src/db.ts";
import { CHECKPOINT_FILE, COMPACT_LOCK, FRONTIER, LEASES_DIR, lastLogSegment, MANIFEST, parseSegmentName, TABLE_FILE, TABLE_TMP_FILE, WRITER_LOCK } from "../src/files.ts";
import { Log } from "../src/log.ts";
import { readWriterHolder } from "../src/holder.ts";
import { scanLeaseFiles } from "../src/liveness.ts";
import type { Platform } from "../src/port.ts";
import { inspectAllSagas } from "../src/sagas.ts";

/** A live process sharing the store, as its lease describes it. */
export interface LiveProcess {
  pid: number;
  runtime: string;
  /** Wall-clock start (ms since the epoch), when the lease says. */
  startedAtMs?: number;
  /** The oldest version it may still read; undefined while it is opening. */
  pinnedVersion?: bigint;
  /** Since when it pins that version (wall clock, ms since the epoch), when its lease says. */
  pinnedSinceMs?: number;
}

/** What {@link storeFigures} is computed from. */
export interface FiguresInput {
  dir: string;
  version: bigint;
  namespaces: number;
  checkpointVersion: bigint;
  firstSegment: number;
  /** The tables the manifest names (format 2), with their levels. */
  tables: { name: string; level: number }[];
  /** The store directory's files (not leases/) with their sizes. */
  files: { name: string; bytes: number }[];
  leaseBytes: number;
  /** Other live processes (not the one computing the figures). */
  processes: LiveProcess[];
  writerLock: { held: boolean; holder?: { pid: number; runtime: string; sinceWallMs: number } };
  nowMs: number;
}

/**
 * What a file is. "table being written" is a table no manifest names yet: a compaction in
 * progress, or one a crash left (the next open removes it); never delete one by hand while
 * a process has the store open.
 */
type Role = "segment" | "active segment" | "table" | "table being written" | "checkpoint" | "manifest" | "frontier" | "writer lock" | "compact lock" | "leftover";

/** The output of `txtdb stats`. */
export interface StoreFigures {
  scope: string;
  path: string;
  version: bigint;
  namespaces: number;
  bytes: { total: number; segments: number; tables: number; checkpoint: number; leftovers: number; other: number };
  /** The tables the manifest names, by level (format 2). */
  tables: { count: number; bytesByLevel: number[] };
  files: { name: string; bytes: number; role: Role }[];
  segments: { live: number; first: string | null; active: string | null };
  checkpoint: { file: string | null; version: bigint; bytes: number } | null;
  /** `pinAgeMs`: how long it has pinned `pinnedVersion` (null: no pin yet, or its lease does not say). */
  processes: { pid: number; runtime: string; runningMs: number | null; pinnedVersion: bigint | null; behindHead: bigint | null; pinAgeMs: number | null }[];
  /** `heldMs`: how long it has been held (null when the lease does not say); `heldAtMostMs`: its process's running time. */
  oldestPin: { pid: number; runtime: string; version: bigint; behindHead: bigint; heldMs: number | null; heldAtMostMs: number | null } | null;
  writerLock: { held: false } | { held: true; pid: number | null; runtime: string | null; heldMs: number | null };
}

/** The `scope` line of `txtdb stats`, saying what the figures are and what is left out. */
export const FIGURES_SCOPE =
  "store-wide figures from the store's files and the leases of live processes (the stats command's own process excluded); " +
  "per-process counters (commits, conflicts, latencies, fsyncs) stay in each process (db.stats(), db.metrics()) and are not shown";

/** The store's figures from what is on disk (pure). */
/**
 * How many commits a pin lies behind `head`, never below 0: the head is read before the
 * leases, and a live process may have moved its pin past it meanwhile (it then reads at
 * the head, as far as the reader of these figures can tell).
 */
export function commitsBehind(head: bigint, pin: bigint): bigint {
  return pin >= head ? 0n : head - pin;
}

export function storeFigures(input: FiguresInput): StoreFigures {
  // The log is the segments from the first one on, each the next number, up to the first
  // number missing (as repair and catch-up read it): a segment file past a gap is no part of
  // it (a stray copy, a file left by hand) and counts as a leftover, not as the active one.
  const activeN = lastLogSegment(input.firstSegment, new Set(input.files.map((f) => parseSegmentName(f.name)).filter((n) => n !== undefined)));
  const inLog = (n: number) => n >= input.firstSegment && n <= activeN;
  const segs = input.files.filter((f) => {
    const n = parseSegmentName(f.name);
    return n !== undefined && inLog(n);
  });
  const ckptPrefix = `ckpt-${String(input.checkpointVersion).padStart(16, "0")}`;
  const isCheckpoint = (name: string) => input.checkpointVersion > 0n && CHECKPOINT_FILE.test(name) && name.startsWith(ckptPrefix);
  const tableLevel = new Map(input.tables.map((t) => [t.name, t.level]));
  const role = (name: string): Role => {
    const n = parseSegmentName(name);
    if (n !== undefined) return !inLog(n) ? "leftover" : n === activeN ? "active segment" : "segment";
    if (isCheckpoint(name)) return "checkpoint";
    if (tableLevel.has(name)) return "table";
    if (TABLE_FILE.test(name) || TABLE_TMP_FILE.test(name)) return "table being written";
    if (name === MANIFEST) return "manifest";
    if (name === FRONTIER) return "frontier";
    if (name === WRITER_LOCK) return "writer lock";
    if (name === COMPACT_LOCK) return "compact lock";
    return "leftover";
  };
  const files = input.files.map((f) => ({ name: f.name, bytes: f.bytes, role: role(f.name) })).sort((a, b) => a.name.localeCompare(b.name));
  const sum = (pred: (r: Role) => boolean) => files.filter((f) => pred(f.role)).reduce((a, f) => a + f.bytes, 0);
  const ckpt = files.find((f) => f.role === "checkpoint");
  const bytesSegments = sum((r) => r === "segment" || r === "active segment");
  const bytesCheckpoint = sum((r) => r === "checkpoint");
  const bytesTables = sum((r) => r === "table");
  const bytesLeftovers = sum((r) => r === "leftover" || r === "table being written");
  const bytesOther = sum((r) => r === "manifest" || r === "frontier" || r === "writer lock" || r === "compact lock") + input.leaseBytes;
  const bytesByLevel: number[] = [];
  for (const f of files) {
    const level = tableLevel.get(f.name);
    if (level === undefined) continue;
    while (bytesByLevel.length <= level) bytesByLevel.push(0);
    bytesByLevel[level]! += f.bytes;
  }
  const processes = input.processes.map((p) => ({
    pid: p.pid,
    runtime: p.runtime,
    runningMs: p.startedAtMs === undefined ? null : Math.max(0, Math.round(input.nowMs - p.startedAtMs)),
    pinnedVersion: p.pinnedVersion ?? null,
    behindHead: p.pinnedVersion === undefined ? null : commitsBehind(input.version, p.pinnedVersion),
    pinAgeMs: p.pinnedVersion === undefined || p.pinnedSinceMs === undefined ? null : Math.max(0, Math.round(input.nowMs - p.pinnedSinceMs)),
  }));
  const pinned = processes.filter((p) => p.pinnedVersion !== null).sort((a, b) => (a.pinnedVersion! < b.pinnedVersion! ? -1 : a.pinnedVersion! > b.pinnedVersion! ? 1 : 0));
  const oldest = pinned[0];
  const holder = input.writerLock.holder;
  return {
    scope: FIGURES_SCOPE,
    path: input.dir,
    version: input.version,
    namespaces: input.namespaces,
    bytes: { total: bytesSegments + bytesTables + bytesCheckpoint + bytesLeftovers + bytesOther, segments: bytesSegments, tables: bytesTables, checkpoint: bytesCheckpoint, leftovers: bytesLeftovers, other: bytesOther },
    tables: { count: files.filter((f) => f.role === "table").length, bytesByLevel },
    files,
    segments: {
      live: segs.length,
      first: segs.length ? files.find((f) => parseSegmentName(f.name) === input.firstSegment)?.name ?? null : null,
      active: files.find((f) => f.role === "active segment")?.name ?? null,
    },
    checkpoint: input.checkpointVersion > 0n || ckpt ? { file: ckpt?.name ?? null, version: input.checkpointVersion, bytes: ckpt?.bytes ?? 0 } : null,
    processes,
    oldestPin: oldest
      ? { pid: oldest.pid, runtime: oldest.runtime, version: oldest.pinnedVersion!, behindHead: oldest.behindHead!, heldMs: oldest.pinAgeMs, heldAtMostMs: oldest.runningMs }
      : null,
    writerLock: input.writerLock.held
      ? { held: true, pid: holder?.pid ?? null, runtime: holder?.runtime ?? null, heldMs: holder ? Math.max(0, Math.round(input.nowMs - holder.sinceWallMs)) : null }
      : { held: false },
  };
}

/** Live processes with a lease on the store at `dir`, except the one with pid `selfPid`. Reads only. */
export function liveProcesses(platform: Platform, dir: string, selfPid: number): { processes: LiveProcess[]; leaseBytes: number } {
  const processes: LiveProcess[] = [];
  let leaseBytes = 0;
  for (const { path, info, pin, pinSinceWallMs } of scanLeaseFiles(platform, `${dir}/${LEASES_DIR}`) ?? []) {
    leaseBytes += platform.stat(path)?.size ?? 0;
    if (info?.pid === selfPid) continue;
    processes.push({
      pid: info?.pid ?? -1,
      runtime: info?.runtime ?? "?",
      ...(info ? { startedAtMs: info.startedAtMs } : {}),
      ...(pin !== undefined ? { pinnedVersion: BigInt(pin) } : {}),
      ...(pin !== undefined && pinSinceWallMs !== undefined ? { pinnedSinceMs: pinSinceWallMs } : {}),
    });
  }
  return { processes, leaseBytes };
}

/** The store's files at `dir` (top level) with their sizes. */
export function storeFiles(platform: Platform, dir: string): { name: string; bytes: number }[] {
  const files: { name: string; bytes: number }[] = [];
  for (const name of platform.readdir(dir)) {
    if (name === LEASES_DIR) continue;
    const info = platform.lstat(`${dir}/${name}`);
    if (info?.isFile) files.push({ name, bytes: info.size });
  }
  return files;
}

/** Gathers {@link storeFigures}' input for an open store. */
export function gatherFigures(db: Database): StoreFigures {
  const s = db.stats();
  const p = databaseInternals(db).platform;
  const { processes, leaseBytes } = liveProcesses(p, db.path, p.pid);
  const writer = readWriterHolder(p, db.path);
  return storeFigures({
    dir: db.path,
    version: s.version,
    namespaces: s.namespaces,
    checkpointVersion: s.checkpointVersion,
    firstSegment: s.firstSegment,
    tables: manifestTables(p, db.path),
    files: storeFiles(p, db.path),
    leaseBytes,
    processes,
    writerLock: writer.holder ? { held: writer.held, holder: writer.holder } : { held: writer.held },
    nowMs: p.wallClockMs(),
  });
}

/** Sagas of one namespace in `txtdb stats`: counts by status, and how many look stuck. */
export type SagaFigures = Record<string, number> & { stuck: number };

/**
 * The sagas of every namespace that holds some (the same look as `txtdb doctor`'s, whose
 * warnings list the stuck ones): empty when the store has none.
 */
export async function gatherSagaFigures(db: Database): Promise<Record<string, SagaFigures>> {
  const out: Record<string, SagaFigures> = {};
  for (const h of await inspectAllSagas(db)) out[h.namespace] = { ...h.counts, stuck: h.stuck.length };
  return out;
}

/** The tables the manifest on disk names (none for format 1, or if it cannot be read). */
function manifestTables(platform: Platform, dir: string): { name: string; level: number }[] {
  const log = new Log(platform, dir, 0o600, true);
  try {
    return log.readManifest()?.tables ?? [];
  } catch {
    return [];
  } finally {
    log.close();
  }
}
