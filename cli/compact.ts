/**
 * `txtdb compact`'s explanation of what it did: how much it folded, or why it folded
 * nothing and what to do about it (pure, tested on every runtime).
 *
 * Compaction folds sealed log segments — every segment but the active one — whose versions
 * all lie at or below the oldest version a live process still pins. So nothing folds when:
 * 0. the tables already hold the head (nothing was written since the last compaction);
 * 1. only the active segment holds data and it could not be sealed (compaction seals it
 *    when every version in it is at or below every pin); or
 * 2. a live process pins a version inside the oldest sealed segment: an open snapshot,
 *    transaction or watcher there (or a process still opening, whose pin is not published);
 *    or
 * 3. a lease cannot be read (another user's), or `leases/` cannot be listed: its owner (or
 *    any process) cannot be told dead, so compaction keeps everything past the tables.
 *
 * @module
 */
import type { CompactResult } from "../mod.ts";
import { bytes } from "./output.ts";
import { commitsBehind } from "./figures.ts";
import type { LiveProcess, StoreFigures } from "./figures.ts";

/**
 * One sentence or two for a person: what was folded, or why nothing was and what to do.
 * `unreadable` is the compacting handle's `stats().unreadableLeases`.
 */
export function explainCompact(result: CompactResult, before: StoreFigures, processes: LiveProcess[], unreadable: { path: string; reason: string }[] = []): string {
  if (result.segmentsFolded > 0) {
    return `folded ${result.segmentsFolded} segment${result.segmentsFolded === 1 ? "" : "s"} (${bytes(result.logBytesFolded)} of log) into tables at version ${result.checkpointVersion}, ` +
      `writing ${bytes(result.tableBytesWritten)} of tables; the store went from ${bytes(result.bytesBefore)} to ${bytes(result.bytesAfter)}`;
  }
  if (result.tableBytesWritten > 0) {
    return `nothing new to fold; tables holding keys whose expiry has passed were rewritten (${bytes(result.tableBytesWritten)} written): ` +
      `the store went from ${bytes(result.bytesBefore)} to ${bytes(result.bytesAfter)}`;
  }
  if (result.checkpointVersion >= before.version) {
    return `nothing to fold: the tables already hold every version up to the head (${before.version}); nothing was written since the last compaction. Nothing is wrong.`;
  }
  if (unreadable.length > 0) {
    const what = unreadable.map((u) => `${u.path} ${u.reason}`).join("; ");
    return `nothing folded: ${what}. A lease that cannot be read cannot be told dead, so compaction keeps every version a process could read through it. ` +
      "`txtdb doctor` says what to do.";
  }
  if (before.segments.live <= 1) {
    const active = before.files.find((f) => f.role === "active segment");
    return `nothing to fold: everything written since the last fold is in the active segment${active ? ` ${active.name} (${bytes(active.bytes)})` : ""}, ` +
      "which compaction seals only when no live process pins a version inside it; compact again once pins moved on. Nothing is wrong.";
  }
  const minPin = result.minPinnedVersion;
  const pinners = processes.filter((p) => p.pinnedVersion !== undefined && p.pinnedVersion <= minPin);
  const who = pinners.length
    ? pinners.map((p) => `pid ${p.pid} (${p.runtime}) pins version ${p.pinnedVersion}, ${commitsBehind(before.version, p.pinnedVersion!)} commits behind the head`).join("; ")
    : processes.some((p) => p.pinnedVersion === undefined)
    ? `a live process that has not published its pin yet (it is opening: ${processes.filter((p) => p.pinnedVersion === undefined).map((p) => `pid ${p.pid}`).join(", ")}) counts as reading from the tables`
    : "a process pinned it while compaction ran (it has released it since)";
  return `nothing folded: the oldest sealed segment holds versions above ${minPin}, the oldest version a live process still reads — ${who}. ` +
    "An open snapshot, transaction or watcher in that process holds back compaction: let it finish or release it (or end the process), " +
    "then compact again. `txtdb doctor` lists every process's pin.";
}
