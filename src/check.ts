/**
 * `db.check()`: verifies every record's checksum in the manifest, the tables (every block,
 * filter, index and footer: table.ts `verify`) or the checkpoint (format 1), and the log
 * segments, that every record's fields and every stored value decode (a frame with a
 * valid checksum can still hold bytes no read could decode), and that an index rebuilt
 * from those files agrees with the live index, and that each table is the one the manifest
 * names (its size, footer and whole content as the manifest records them: table.ts rule 9;
 * a table of another store copied over its name has every checksum right). Reports problems with file and offset;
 * changes nothing.
 *
 * @module
 */
import { readCheckpoint, CheckpointDamage } from "./checkpoint.ts";
import { decodeCommit, tsnBreak } from "./record.ts";
import { decodeValue } from "./codec.ts";
import { valueBytesOf } from "./expiry.ts";
import { bytesToBinary, decodeKey, describeKey, sameBytes } from "./keys.ts";
import { Index } from "./index.ts";
import type { Frontier, Log, Manifest } from "./log.ts";
import { comparePositions, tableIdentity } from "./log.ts";
import { MANIFEST, segmentName } from "./files.ts";
import type { Platform } from "./port.ts";
import { PortError } from "./port.ts";
import { BlockCache } from "./blockcache.ts";
import { isTxtDbError } from "./errors.ts";
import { Levels } from "./levels.ts";
import { TableReader } from "./table.ts";

/** What `check()` found. */
export interface CheckReport {
  /** True when nothing is wrong. */
  ok: boolean;
  /** What is wrong, each with the file and the byte offset where it was found. */
  problems: { file: string; offset: number; message: string }[];
  /** Log records and table entries read. */
  records: number;
  /** Bytes read. */
  bytes: number;
}

const PROBLEMS_MAX = 1000;

/**
 * Checks the store's files against each other and against `live` at version `head`.
 * `viewOver` says where the live view ends if that stands in for the frontier file's.
 */
export function checkStore(platform: Platform, dir: string, log: Log, live: Index, head: number, viewOver?: (fr: Readonly<Frontier> | undefined) => { seg: number; off: number } | undefined): CheckReport {
  const report: CheckReport = { ok: true, problems: [], records: 0, bytes: 0 };
  const problem = (file: string, offset: number, message: string) => {
    if (report.problems.length < PROBLEMS_MAX) report.problems.push({ file, offset, message });
  };
  let manifest: Manifest | undefined;
  try {
    manifest = log.readManifest();
    if (!manifest) problem(`${dir}/${MANIFEST}`, 0, "manifest is missing");
  } catch (e) {
    // A read that failed (EIO) is no finding about the store, and everything after it would
    // be measured against no manifest (versions "missing" that a table holds): the caller
    // reports it as IO.
    if (e instanceof PortError) throw e;
    problem(`${dir}/${MANIFEST}`, 0, (e as Error).message);
  }
  // One instant for both indexes: a key expiring between the two sides of the comparison
  // below would otherwise look like a difference.
  const now = platform.wallClockMs();
  const rebuilt = new Index(() => now);
  let tablesOk = true;
  const levels = new Levels(platform, dir, new BlockCache(0));
  if (manifest && manifest.format >= 2) {
    for (const t of manifest.tables ?? []) {
      const path = `${dir}/${t.name}`;
      let reader: TableReader | undefined;
      try {
        const f = platform.open(path, { readOnly: true });
        try {
          // With the manifest's identity: verify() then also checks the whole content is the table's (table.ts rule 9).
          reader = TableReader.open(f, { cache: levels.cache, identity: tableIdentity(t) });
        } catch (e) {
          f.close();
          throw e;
        }
        const v = reader.verify();
        report.records += v.entries;
        report.bytes += v.bytes;
        let block = 0;
        for (const e of reader.entries({ onBlock: (offset) => (block = offset) })) {
          if (e.value === null) continue;
          checkValue(e.value, (message) => problem(path, block, `${message} (key ${describeKey(decodeKey(e.key))}, namespace id ${e.nsId}, version ${e.tsn})`));
        }
        if (reader.meta.maxTsn > (manifest.checkpointTsn ?? 0)) problem(path, 0, `table holds version ${reader.meta.maxTsn}, past the manifest's folded version ${manifest.checkpointTsn}`);
        const { minKey, maxKey } = reader.meta;
        const sameBound = (b: [number, Uint8Array] | undefined, k: { nsId: number; key: string } | undefined) =>
          b === undefined || (k !== undefined && b[0] === k.nsId && bytesToBinary(b[1]) === k.key);
        if (!sameBound(t.min, minKey) || !sameBound(t.max, maxKey)) problem(`${dir}/${MANIFEST}`, 0, `the key bounds the manifest records for table "${t.name}" are not the table's`);
      } catch (e) {
        tablesOk = false;
        const d = isTxtDbError(e) ? (e.details as { offset?: number } | undefined) : undefined;
        problem(path, typeof d?.offset === "number" ? d.offset : 0, e instanceof Error ? e.message : String(e));
      } finally {
        reader?.close();
      }
    }
    if (tablesOk) {
      try {
        levels.adopt(manifest.tables ?? []);
        rebuilt.levels = levels;
      } catch (e) {
        // The file the error names (the manifest, when its tables are out of shape), else the directory.
        tablesOk = false;
        const d = isTxtDbError(e) ? (e.details as { file?: unknown; offset?: unknown } | undefined) : undefined;
        problem(typeof d?.file === "string" ? d.file : dir, typeof d?.offset === "number" ? d.offset : 0, e instanceof Error ? e.message : String(e));
      }
    }
    const flat = manifest.bindings ?? [];
    const bindings: [string, number][] = [];
    for (let i = 0; i < flat.length; i += 2) bindings.push([flat[i] as string, flat[i + 1] as number]);
    rebuilt.loadBindings(manifest.checkpointTsn ?? 0, bindings, manifest.nextNsId ?? 1);
    rebuilt.setLastTsn(manifest.checkpointTsn ?? 0);
  } else if (manifest?.checkpoint) {
    const path = `${dir}/${manifest.checkpoint}`;
    try {
      const f = platform.open(path, { readOnly: true });
      try {
        const { header, frames, bytes } = readCheckpoint(f, (e, at) => {
          checkValue(e.value, (message) => problem(path, at, `${message} (key ${describeKey(decodeKey(e.key))}, namespace id ${e.nsId}, version ${e.tsn})`));
          rebuilt.put(e.nsId, e.key, e.tsn, e.value);
        });
        rebuilt.loadBindings(header.tsn, header.bindings, header.nextNsId);
        rebuilt.setLastTsn(header.tsn);
        if (header.tsn !== manifest.checkpointTsn) problem(path, 0, `checkpoint holds version ${header.tsn}, the manifest says ${manifest.checkpointTsn}`);
        report.records += frames;
        report.bytes += bytes;
      } finally {
        f.close();
      }
    } catch (e) {
      problem(path, e instanceof CheckpointDamage ? e.offset : 0, e instanceof CheckpointDamage ? `checkpoint damaged: ${e.message}` : String(e));
    }
  }
  // The published frontier, or where this process's view ends if that stands in for it: a
  // read-only open that made a dead writer's records past a lagging, lost or (in "relaxed")
  // overshooting frontier file durable after a power loss (tail.ts rule 11) checks the log
  // up to what it shows.
  const published = log.readFrontier();
  const frontier = viewOver?.(published) ?? published;
  const first = manifest?.firstSegment ?? 1;
  const segments = log.listSegments().filter((n) => n >= first);
  let ordered = tablesOk;
  for (const n of segments) {
    const path = `${dir}/${segmentName(n)}`;
    // A segment past the frontier's holds only what is past the frontier: a commit being
    // written right now, or a new segment whose first write a crash tore (zeros the next
    // writer reuses). Neither is damage, as past the frontier in the active segment.
    if (frontier && n > frontier.seg) continue;
    // Sealed segments are checked to their size; the active one up to the published
    // frontier (past it lies preallocated space, or a commit being written right now).
    const limit = frontier && frontier.seg === n ? frontier.off : log.segment(n)?.size() ?? 0;
    const end = log.scan({ seg: n, off: 0 }, { seg: n, off: limit }, (body, at, next) => {
      report.records++;
      report.bytes += next.off - at.off;
      try {
        const record = decodeCommit(body.slice());
        for (const w of record.writes) {
          if (w.value === null) continue;
          checkValue(w.value, (message) => problem(path, at.off, `${message} (key ${describeKey(decodeKey(bytesToBinary(w.key)))}, namespace id ${w.nsId}, version ${record.tsn})`));
        }
        if (ordered && record.tsn === rebuilt.lastTsn + 1) rebuilt.apply(record);
        else if (ordered) {
          problem(path, at.off, tsnBreak(record.tsn, rebuilt.lastTsn).replace("record TSN", "record version"));
          ordered = false;
        }
      } catch (e) {
        problem(path, at.off, `undecodable record: ${(e as Error).message}`);
      }
    });
    if (end.problem) {
      // A frame cut short past the frontier is a commit being written right now (or a torn
      // tail the next writer repairs), not damage.
      const pastFrontier = frontier && comparePositions(end.problem.at, { seg: frontier.seg, off: frontier.off }) >= 0;
      if (!(pastFrontier && end.problem.incomplete)) problem(path, end.problem.at.off, end.problem.reason);
      ordered = false;
    }
  }
  // The live index must agree with the files for everything visible at `head`, compared
  // page by page (a store far larger than memory is never held whole).
  if (ordered && rebuilt.lastTsn >= head) {
    const liveClock = live.wallClockMs;
    live.wallClockMs = () => now; // restored below; nothing else runs meanwhile (all synchronous)
    try {
      for (const [name, id] of live.bindingsAt(head)) {
        const rid = rebuilt.resolve(name, head);
        if (rid !== id) {
          problem(dir, 0, `index: namespace "${name}" is id ${id} in memory, ${rid} in the files`);
          continue;
        }
        const a = rangeAll(live, id, head);
        const b = rangeAll(rebuilt, id, head);
        for (let i = 0; ; i++) {
          const x = a.next(), y = b.next();
          if (x.done || y.done) {
            if (!x.done || !y.done) problem(dir, 0, `index: namespace "${name}" has ${x.done ? i : "more than " + i} keys in memory, ${y.done ? i : "more than " + i} in the files`);
            break;
          }
          const [ka, va] = x.value, [kb, vb] = y.value;
          if (ka !== kb || va.tsn !== vb.tsn || !sameBytes(va.value, vb.value)) {
            problem(dir, 0, `index: namespace "${name}" differs from the files at key #${i}`);
            break;
          }
        }
      }
    } catch (e) {
      // A table that cannot be read where the comparison needs it (its own problem was
      // reported above, or it only shows now, e.g. key bounds that do not match it).
      const d = isTxtDbError(e) ? (e.details as { file?: string; offset?: number } | undefined) : undefined;
      problem(typeof d?.file === "string" ? d.file : dir, typeof d?.offset === "number" ? d.offset : 0, e instanceof Error ? e.message : String(e));
    } finally {
      live.wallClockMs = liveClock;
    }
  }
  levels.close();
  report.ok = report.problems.length === 0;
  return report;
}

/**
 * Runs `run` (a check) up to `runs` times, until its report is clean or the manifest held
 * still while it ran: a compaction in another process may switch the manifest and delete
 * the files a check was reading, which it would report as damage. `still` false: the last
 * report was made while the manifest moved.
 */
export function checkWhileManifestMoves(log: Log, runs: number, run: () => CheckReport): { report: CheckReport; still: boolean } {
  for (let attempt = 1; ; attempt++) {
    const before = manifestFrameOf(log);
    const report = run();
    const after = manifestFrameOf(log);
    const still = before === undefined || after === undefined ? before === after : sameBytes(before, after);
    if (report.ok || still || attempt >= runs) return { report, still: report.ok || still };
  }
}

/** The manifest's frame as it is now (undefined: none, or unreadable), to tell whether it moved. */
function manifestFrameOf(log: Log): Uint8Array | undefined {
  try {
    return log.readManifestWithFrame()?.frame;
  } catch {
    return undefined;
  }
}

/** Reports a stored value that does not decode: every read of it would fail. */
function checkValue(bytes: Uint8Array, report: (message: string) => void): void {
  try {
    decodeValue(valueBytesOf(bytes));
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e;
    report(`undecodable value: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

function* rangeAll(index: Index, id: number, snap: number) {
  let after: string | undefined;
  for (;;) {
    const page = index.range(id, "", "\xff", snap, false, 1024, after);
    if (page.length === 0) return;
    yield* page;
    after = page[page.length - 1]![0];
  }
}
