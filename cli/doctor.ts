/**
 * `txtdb doctor`: live processes and their pins (and for how long), the writer lock and
 * `compact.lock` and who holds them, sagas,
 * and what looks wrong (exit 1): an old pin holding back compaction, a stuck lock holder, a
 * saga no live process runs, a saga that failed, prepared transactions in doubt, and (in a
 * coordinator store) commit decisions some participant store has not confirmed. A store too
 * damaged to open is a problem found too: what is wrong, where (doctorDamaged).
 *
 * @module
 */
import type { Database } from "../mod.ts";
import { databaseInternals } from "../src/db.ts";
import { kernelFlockHolders, readLockHolder, readWriterHolder, unrecordedHolder } from "../src/holder.ts";
import { COMPACT_LOCK, LEASES_DIR, WRITER_LOCK } from "../src/files.ts";
import { inspectAllSagas } from "../src/sagas.ts";
import { coordinatorId, DECISIONS_NS, isDecision } from "../src/decisions.ts";
import type { DecisionValue } from "../src/decisions.ts";
import { IN_DOUBT_MS_DEFAULT } from "../src/participant.ts";
import { leaseOwnerAlive, listLeases } from "../src/liveness.ts";
import type { Platform } from "../src/port.ts";
import type { CheckReport } from "../src/check.ts";
import { commitsBehind, liveProcesses } from "./figures.ts";
import { duration, safe, seconds } from "./output.ts";

/** A commit holds the writer lock for milliseconds; a holder past this has stopped or hangs. */
const WRITER_HOLD_SUSPECT_MS = 5_000;
/** A pin this many commits behind the head is reported as holding back compaction. */
const PIN_BEHIND_SUSPECT = 10_000n;

/** The Linux process state letter of `pid` (T: stopped, t: traced, Z: zombie), if /proc says. */
function processState(platform: Platform, pid: number): string | undefined {
  try {
    const f = platform.open(`/proc/${pid}/stat`, { readOnly: true });
    try {
      const buf = new Uint8Array(512);
      const text = new TextDecoder().decode(buf.subarray(0, f.read(buf, 0)));
      // "pid (comm) S ...": comm may hold spaces and parentheses, so read after the last ")".
      return /^\) (\S)/.exec(text.slice(text.lastIndexOf(")")))?.[1];
    } finally {
      f.close();
    }
  } catch {
    // Not Linux, the process is gone, or Deno, which refuses /proc to --allow-read alone.
    return undefined;
  }
}

/**
 * Locks on named resources: how many are held and waited for, and a warning for each process
 * that holds some while stopped (SIGSTOP, Ctrl-Z, a debugger): its lease stays held, so its
 * locks stay granted and their waiters wait. A lock held for a long time by a running
 * process is not a problem in itself (locks are for long work); the waiters are listed.
 * Returns the number of problems.
 */
function lockHolders(db: Database, out: (line: string) => void): number {
  const locks = db.locks();
  const held = locks.filter((l) => !l.waiting);
  const waiting = locks.filter((l) => l.waiting);
  out(`locks on named resources: ${held.length} held, ${waiting.length} waiting`);
  let problems = 0;
  const pids = [...new Set(held.map((l) => l.pid))];
  for (const pid of pids) {
    const mine = held.filter((l) => l.pid === pid);
    const state = processState(databaseInternals(db).platform, pid);
    const resources = mine.map((l) => `${l.mode} ${JSON.stringify(l.resource)}`).slice(0, 5).join(", ") + (mine.length > 5 ? ", ..." : "");
    const blocked = waiting.filter((w) => mine.some((h) => JSON.stringify(h.resource) === JSON.stringify(w.resource))).length;
    const longest = Math.max(...mine.map((l) => l.sinceMs));
    out(safe(`  pid ${pid} (${mine[0]!.runtime}) holds ${mine.length} (${resources}) for up to ${seconds(longest)}${blocked ? `; ${blocked} waiting on them` : ""}`));
    if (state === "T" || state === "t") {
      problems++;
      out(
        `warning: pid ${pid} holds locks on named resources while ${state === "T" ? "stopped (SIGSTOP or Ctrl-Z)" : "stopped by a debugger"}: ` +
          "they stay granted while it lives, and their waiters fail with LOCK_TIMEOUT. " +
          `Resume it (kill -CONT ${pid}) or end it (kill ${pid}): its locks are free the moment it exits.`,
      );
    }
  }
  for (const w of waiting) out(safe(`  pid ${w.pid} (${w.runtime}) waits for ${w.mode} ${JSON.stringify(w.resource)} since ${seconds(w.sinceMs)}`));
  return problems;
}

/**
 * Lease files this process cannot open, and a leases directory it cannot list: each is a
 * problem, since txtdb cannot tell their owners dead and counts them alive, so compaction
 * folds nothing past the tables while they are there (the log and every process's memory
 * grow). Says why and what to do. Returns the number of problems.
 */
function unreadableLeases(unreadable: { path: string; reason: string }[], checkpoint: bigint, out: (line: string) => void): number {
  for (const u of unreadable) {
    const dir = !u.path.endsWith(".lease");
    out(safe(dir ? `  leases directory ${u.path}: cannot be listed (warning below)` : `  lease ${u.path}: cannot be read, its process is unknown (warning below)`));
    out(
      safe(
        dir
          ? `warning: the leases directory ${u.path} ${u.reason}: the processes that have the store open cannot be seen, so compaction folds nothing past version ${checkpoint} (the tables). ` +
            "It was probably renamed, deleted or replaced under running processes: put it back (it must be a directory the store's users can read), or close every process of the store and open it again."
          : `warning: the lease ${u.path} ${u.reason}: whether its process lives cannot be told, so it counts as alive and compaction folds nothing past version ${checkpoint} (the tables) while it is there. ` +
            "If its process has ended, remove the file (as its owner or root). If the store is shared by several users, open it everywhere with a mode that lets them read each other's files " +
            "(for instance mode: 0o660 and a common group), and run doctor as one of them.",
      ),
    );
  }
  return unreadable.length;
}

/** Stuck sagas listed per namespace, at most (the count says how many there are). */
const STUCK_SAGAS_SHOWN_MAX = 20;

/**
 * The sagas of every namespace that holds some: counts by state, a warning per saga that no
 * live process runs (its runner died and no process that defines it took over, or it is long
 * overdue), and one for failed sagas (a compensation failed: a person must look).
 */
async function sagas(db: Database, out: (line: string) => void): Promise<number> {
  let problems = 0;
  for (const h of await inspectAllSagas(db)) {
    const ns = h.namespace;
    out(safe(`sagas in ${JSON.stringify(ns)}: ${Object.entries(h.counts).map(([s, n]) => `${s} ${n}`).join(", ")}`));
    for (const s of h.stuck.slice(0, STUCK_SAGAS_SHOWN_MAX)) {
      out(safe(`warning: saga ${s.id} (${JSON.stringify(s.name)}, ${s.status}${s.step === null ? "" : ` at step ${JSON.stringify(s.step)}`}) is stuck: ${s.reason}; start a process that defines it`));
    }
    if (h.stuck.length > STUCK_SAGAS_SHOWN_MAX) out(`warning: ${h.stuck.length - STUCK_SAGAS_SHOWN_MAX} more stuck sagas in ${JSON.stringify(ns)}`);
    problems += h.stuck.length;
    if ((h.counts.failed ?? 0) > 0) {
      problems++;
      out(safe(`warning: ${h.counts.failed} sagas in ${JSON.stringify(ns)} failed (a compensation failed after its retries): a person must look; sagas.list({ status: "failed" }) lists them`));
    }
  }
  return problems;
}

/**
 * Prepared transactions of two-phase commit not decided yet: each with its age, coordinator
 * and keys. One past its in-doubt timeout is a problem: no writable process of the store
 * resolved it (none has the store open, or its coordinator cannot be reached from them).
 * Returns the number of problems.
 */
function inDoubt(db: Database, out: (line: string) => void): number {
  const participant = databaseInternals(db).participant;
  const prepared = participant.list();
  if (prepared.length === 0) return 0;
  const late = prepared.filter((p) => p.inDoubt);
  out(`prepared transactions (two-phase commit): ${prepared.length}, ${late.length} in doubt past their timeout`);
  const platform = databaseInternals(db).platform;
  for (const p of prepared.slice(0, 20)) {
    const ref = databaseInternals(db).index.prepared.get(p.txid)?.op.coordinator;
    const coordinator = ref
      ? `coordinator ${ref.path} (${platform.stat(`${ref.path}/MANIFEST`) ? leaseOwnerAlive(platform, `${ref.path}/leases/${ref.lease}`) ? "its process is alive" : "its process is gone" : "missing from here"})`
      : "no coordinator (decided by whoever prepared it)";
    out(safe(`  ${p.txid}: prepared ${seconds(p.ageMs)} ago at version ${p.version}, ${p.keys.length} keys, ${coordinator}${p.inDoubt ? ", IN DOUBT" : ""}`));
  }
  if (prepared.length > 20) out(`  ... and ${prepared.length - 20} more`);
  if (late.length === 0) return 0;
  out(
    `warning: ${late.length} prepared transaction${late.length === 1 ? " is" : "s are"} in doubt past the timeout: their keys refuse writers with CONFLICT. ` +
      "Any writable open of this store resolves them against their coordinator's log at open (for instance 'txtdb compact <dir>', run where the coordinator's path resolves), " +
      "or decide each with db.commitPrepared(txid) / db.abortPrepared(txid) once you know the outcome.",
  );
  return 1;
}

/** Decisions shown one by one, at most (the counts say how many there are). */
const DECISIONS_SHOWN_MAX = 20;

/**
 * A coordinator store (two-phase commit): its decisions by outcome, and a warning for each
 * commit decision that has waited past the in-doubt timeout for a txtdb participant to
 * confirm it (the coordinator deletes a decision once every store committed; one left
 * means a store could not be reached or opened, and its keys stay held until recovery gets
 * through). Decisions that involve other participants are kept for decisionRetentionMs by
 * design and are only counted. Returns the number of problems.
 */
async function decisions(db: Database, out: (line: string) => void): Promise<number> {
  if ((await coordinatorId(db)) === undefined) return 0;
  const now = databaseInternals(db).platform.wallClockMs();
  const counts = { commit: 0, abort: 0 };
  const late: [string, DecisionValue][] = [];
  for await (const e of db.list<unknown>(DECISIONS_NS, { prefix: [] })) {
    if (typeof e.key !== "string" || !isDecision(e.value)) continue;
    counts[e.value.outcome]++;
    if (e.value.outcome === "commit" && e.value.others.length === 0 && now - e.value.atMs > IN_DOUBT_MS_DEFAULT) late.push([e.key, e.value]);
  }
  out(`coordinator store: ${counts.commit} commit decisions, ${counts.abort} abort decisions in its log`);
  for (const [txid, d] of late.slice(0, DECISIONS_SHOWN_MAX)) {
    out(safe(`  ${txid}: commit decided ${seconds(now - d.atMs)} ago, not confirmed by every store of ${JSON.stringify(d.participants)}`));
  }
  if (late.length > DECISIONS_SHOWN_MAX) out(`  ... and ${late.length - DECISIONS_SHOWN_MAX} more`);
  if (late.length === 0) return 0;
  out(
    `warning: ${late.length} commit decision${late.length === 1 ? " waits" : "s wait"} for participant stores to confirm them: those stores hold the keys until then. ` +
      "Open the coordinator (Coordinator.open) where the stores' paths resolve: its recovery commits them there; or open each store writable, which asks this log.",
  );
  return 1;
}

/** How `processState` reads in a report line (", process stopped (…)"), or "" for a running process or none known. */
function stateText(state: string | undefined): string {
  return state === "T" ? ", process stopped (SIGSTOP or Ctrl-Z)" : state === "t" ? ", process stopped by a debugger" : state === "Z" ? ", process is a zombie" : "";
}

const isStopped = (state: string | undefined): boolean => state === "T" || state === "t";

/**
 * The warning for a txtdb process that holds `compact.lock` while stopped: nothing ends its
 * hold, as nothing ends a stopped writer's (the kernel releases a lock at exit, not at a stop).
 */
function stoppedCompactHolder(pid: number, path: string, state: string | undefined): string {
  return (
    `warning: pid ${pid} holds ${path} while ${state === "t" ? "stopped by a debugger" : "stopped (SIGSTOP or Ctrl-Z)"}: ` +
    "compactions (automatic ones, db.compact(), txtdb compact) and backups wait for it and fail with LOCK_TIMEOUT after lockTimeoutMs (default 30 s), and the log grows meanwhile. " +
    `Resume it (kill -CONT ${pid}) or end it (kill ${pid}): the kernel releases the lock when it exits, and nothing committed is lost.`
  );
}

/** More looks at a writer lock whose kernel holder is not the one its record names, and how far apart. */
const UNRECORDED_HOLDER_LOOKS = 3;
const UNRECORDED_HOLDER_LOOK_MS = 50;

/** The writer lock's holder as its record and the kernel's lock table say (`real`: a holder the record does not name). */
function lookAtWriterLock(platform: Platform, dir: string): ReturnType<typeof readWriterHolder> & { real: ReturnType<typeof unrecordedHolder> } {
  const seen = readWriterHolder(platform, dir);
  let real: ReturnType<typeof unrecordedHolder>;
  if (seen.held && !seen.guard) {
    try {
      const file = platform.lstat(`${dir}/${WRITER_LOCK}`);
      real = file ? unrecordedHolder(platform, file, seen.holder?.pid) : undefined;
    } catch {
      real = undefined;
    }
  }
  return { ...seen, real };
}

/**
 * The warning for a process that holds the writer lock while stopped (`how`: through what,
 * if not writer.lock itself): nothing ends its hold (the kernel releases a lock at exit,
 * not at a stop).
 */
function stoppedWriterHolder(pid: number, how: string, state: string | undefined): string {
  return (
    `warning: pid ${pid} holds the writer lock${how} while ${state === "t" ? "stopped by a debugger" : "stopped (SIGSTOP or Ctrl-Z)"}: ` +
    "every writer waits for it and fails with LOCK_TIMEOUT after lockTimeoutMs (default 30 s). " +
    `Resume it (kill -CONT ${pid}) or end it (kill ${pid}): the kernel releases the lock when it exits, and nothing committed is lost.`
  );
}

/**
 * The writer lock held, per the kernel's lock table, by a live txtdb process (it holds a
 * lease here) that the record does not name: it took the lock and has not written its
 * record yet, which a commit does right after the grant, so it was stopped or hangs in
 * between (or doctor looked at that very moment). It used to be reported as "another
 * program (flock(1), another user's process)", with advice to kill it as a stranger.
 * `recorded`: the pid the record names, an earlier holder. Returns the number of problems.
 */
function unrecordedTxtdbHolder(platform: Platform, pid: number, recorded: number | undefined, out: (line: string) => void): number {
  const state = processState(platform, pid);
  const earlier = recorded === undefined ? "" : ` (the record in the file names pid ${recorded}, an earlier holder)`;
  out(safe(`writer lock: held by pid ${pid} per the kernel's lock table, a txtdb process with a lease here that has not recorded itself yet${earlier}${stateText(state)}`));
  if (!isStopped(state)) return 0; // it records itself or lets go within microseconds: run doctor again
  out(stoppedWriterHolder(pid, "", state));
  return 1;
}

/**
 * Who holds the writer lock, and a warning when the holder has held it far longer than a
 * commit does, or is stopped. `pids`: the live processes with a lease. Returns the number of
 * problems. Read-only and never blocking: a stuck holder must not make doctor wait too.
 */
async function writerLock(platform: Platform, dir: string, pids: number[], out: (line: string) => void): Promise<number> {
  let look = lookAtWriterLock(platform, dir);
  // A writer that has just taken the lock has not written its record yet: the kernel names
  // it while the record still names the holder before it. Under busy, healthy writers doctor
  // caught that moment and told the user to kill one (review helper-73). A holder that is
  // not txtdb's keeps the lock, unrecorded, across every look; a txtdb writer records
  // itself or lets go within microseconds.
  for (let i = 0; i < UNRECORDED_HOLDER_LOOKS && look.real && look.holder; i++) {
    await platform.sleep(UNRECORDED_HOLDER_LOOK_MS);
    const again = lookAtWriterLock(platform, dir);
    if (!(again.real && again.holder && again.real.pid === look.real.pid)) {
      look = again;
      break;
    }
  }
  const { held, holder, guard, real } = look;
  if (!held) {
    out("writer lock: free");
    return 0;
  }
  if (guard) {
    // Who holds the directory's flock, where the kernel's lock table says (Linux): stopped,
    // it blocks every writer as a stopped holder of writer.lock does, and is as much a problem.
    let pid: number | undefined;
    try {
      const d = platform.stat(dir);
      pid = d ? kernelFlockHolders(platform, d)?.[0] : undefined;
    } catch {
      pid = undefined;
    }
    const state = pid === undefined ? undefined : processState(platform, pid);
    out(safe(`writer lock: held through its guard, the flock of the store directory, with writer.lock free or missing${pid === undefined ? "" : `, by pid ${pid} per the kernel's lock table${stateText(state)}`}: by a txtdb process whose writer.lock was deleted while it held it (a tmp cleaner?), or by another program locking the directory; run doctor again to see whether it is released`));
    if (pid === undefined || !isStopped(state)) return 0;
    out(stoppedWriterHolder(pid, " (through the store directory's flock)", state));
    return 1;
  }
  if (real && (pids.includes(real.pid) || real.pid === platform.pid)) return unrecordedTxtdbHolder(platform, real.pid, holder?.pid, out);
  if (real) {
    out(safe(`writer lock: ${real.text}`));
    if (!holder) return 0; // it may have just taken the lock: run doctor again
    out(
      `warning: pid ${real.pid} holds the writer lock without being a txtdb commit: every writer waits for it and fails with LOCK_TIMEOUT after lockTimeoutMs (default 30 s). ` +
        `End it (kill ${real.pid}): the kernel releases the lock when it exits, and nothing committed is lost.`,
    );
    return 1;
  }
  if (!holder) {
    out("writer lock: held by a process that did not record itself (it has just taken the lock, or it runs an older txtdb); run doctor again to see whether it is released");
    return 0;
  }
  const heldMs = platform.wallClockMs() - holder.sinceWallMs;
  const state = processState(platform, holder.pid);
  const known = pids.includes(holder.pid) ? "" : " (no live txtdb process with this pid has a lease here; it may be a tool outside txtdb's leases)";
  out(safe(`writer lock: held by pid ${holder.pid} (${holder.runtime}) for ${seconds(heldMs)}${stateText(state)}${known}`));
  if (heldMs <= WRITER_HOLD_SUSPECT_MS && !isStopped(state)) return 0;
  out(
    `warning: pid ${holder.pid} has held the writer lock for ${seconds(heldMs)}, but a commit holds it for milliseconds: ` +
      "it is probably stuck (stopped with SIGSTOP or Ctrl-Z, paused in a debugger, or hung). " +
      "Every writer waits for it and fails with LOCK_TIMEOUT after lockTimeoutMs (default 30 s). " +
      `If it was stopped, resume it (kill -CONT ${holder.pid}); otherwise end it (kill ${holder.pid}): ` +
      "the kernel releases the lock when it exits, and nothing committed is lost.",
  );
  return 1;
}

/**
 * Who holds `compact.lock`, if anyone: information (a compaction, a backup or a format
 * change holds it for as long as it runs), and a warning when its holder is not a txtdb
 * process, or is one that is stopped (SIGSTOP, Ctrl-Z, a debugger; Linux, where /proc says):
 * every compaction and backup waits for it and fails with LOCK_TIMEOUT, and the log grows
 * meanwhile. A txtdb process that takes it has a lease here (compaction and
 * backup need a writable open) and records itself in the file (holder.ts); the kernel's
 * lock table (Linux) names a holder that did not. `pids`: the live processes with a lease.
 * Returns the number of problems. Read-only and never blocking.
 */
function compactLock(platform: Platform, dir: string, pids: number[], out: (line: string) => void): number {
  const path = `${dir}/${COMPACT_LOCK}`;
  const { held, holder } = readLockHolder(platform, path);
  if (!held) {
    out("compact lock: free");
    return 0;
  }
  let kernel: number[] | undefined;
  try {
    const file = platform.lstat(path);
    kernel = file ? kernelFlockHolders(platform, file) : undefined;
  } catch {
    kernel = undefined;
  }
  const txtdb = (pid: number) => pids.includes(pid) || pid === platform.pid;
  // The holder by the kernel's word when it can be read; else the record's (a hint: it may
  // be an earlier holder's, left in the file).
  const real = kernel !== undefined && kernel.length > 0 && (holder === undefined || !kernel.includes(holder.pid)) ? kernel[0]! : undefined;
  if (real !== undefined) {
    if (txtdb(real)) {
      const state = processState(platform, real);
      out(safe(`compact lock: held by pid ${real} per the kernel's lock table, a txtdb process with a lease here that did not record itself (an older txtdb's compaction or backup, or one that has just taken it)${stateText(state)}`));
      if (!isStopped(state)) return 0;
      out(safe(stoppedCompactHolder(real, path, state)));
      return 1;
    }
    out(safe(`compact lock: held by pid ${real} per the kernel's lock table, which is not a txtdb process with a lease here${holder ? ` (the record in the file names pid ${holder.pid}, an earlier holder)` : ""}`));
    out(
      `warning: pid ${real} holds ${path} without being a txtdb process (flock(1), another program, another user's process): ` +
        "compactions (automatic ones, db.compact(), txtdb compact) and backups wait for it and fail with LOCK_TIMEOUT after lockTimeoutMs (default 30 s), and the log grows meanwhile. " +
        `End it (kill ${real}): the kernel releases the lock when it exits.`,
    );
    return 1;
  }
  if (!holder) {
    out("compact lock: held by a process that did not record itself (an older txtdb's compaction or backup, or another program such as flock(1)); run doctor again to see whether it is released");
    return 0;
  }
  const heldMs = platform.wallClockMs() - holder.sinceWallMs;
  if (kernel === undefined && !txtdb(holder.pid)) {
    // No kernel table to ask (not Linux, or /proc refused): the record may be an earlier holder's.
    out(safe(`compact lock: held; the record in the file names pid ${holder.pid} (${holder.runtime}), which took it ${duration(heldMs)} ago, but no live txtdb process with this pid has a lease here`));
    out(
      `warning: ${path} is held, and not by a live txtdb process as far as its record says: another program may hold it (flock(1)). ` +
        "Compactions and backups wait for it and fail with LOCK_TIMEOUT after lockTimeoutMs (default 30 s); find its holder (fuser or lsof on the file) and end it.",
    );
    return 1;
  }
  // A compaction or backup holds it for as long as it runs (minutes for a large store), so
  // only a stopped holder is a problem; a hung one cannot be told from a long one.
  const state = processState(platform, holder.pid);
  out(safe(`compact lock: held by pid ${holder.pid} (${holder.runtime}) for ${duration(heldMs)}${stateText(state)}: a compaction, a backup or a format change; others wait for it`));
  if (!isStopped(state)) return 0;
  out(safe(stoppedCompactHolder(holder.pid, path, state)));
  return 1;
}

/** Problems of a damaged store listed one by one, at most (the count says how many there are). */
const DAMAGE_SHOWN_MAX = 20;

/**
 * The diagnosis of a store too damaged to open (`report`: damage.ts): each problem with its
 * file and offset, then what the files still tell (live processes, the writer lock).
 * Returns the exit code: 1, problems were found.
 */
export async function doctorDamaged(platform: Platform, dir: string, report: CheckReport, out: (line: string) => void): Promise<number> {
  out(safe(`store ${dir}: damaged, it cannot be opened; ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"} found`));
  for (const p of report.problems.slice(0, DAMAGE_SHOWN_MAX)) out(safe(`problem: ${p.file} at offset ${p.offset}: ${p.message}`));
  if (report.problems.length > DAMAGE_SHOWN_MAX) out(`  ... and ${report.problems.length - DAMAGE_SHOWN_MAX} more`);
  const procs = liveProcesses(platform, dir, platform.pid).processes;
  out(`live processes: ${procs.length}`);
  const now = platform.wallClockMs();
  for (const p of procs) {
    const age = p.pinnedSinceMs === undefined ? "" : ` for ${duration(now - p.pinnedSinceMs)}`;
    out(safe(`  pid ${p.pid} (${p.runtime})${p.pinnedVersion === undefined ? "" : `: pins version ${p.pinnedVersion}${age}`}`));
  }
  await writerLock(platform, dir, procs.map((p) => p.pid), out);
  compactLock(platform, dir, procs.map((p) => p.pid), out);
  out(
    "warning: the store is damaged, and nothing was changed. " +
      (procs.length > 0 ? "Stop the processes that have it open, then restore" : "Restore") +
      " it (or the files named) from a backup.",
  );
  return 1;
}

/**
 * Leases that are locked (their holder lives) but name no process: a txtdb process writes
 * its info before its lease takes its `.lease` name, so such a file was made by something
 * else (a planted lease in a group-shared store), which keeps compaction from folding.
 */
function namelessLeases(platform: Platform, dir: string): { path: string; uid: number | string; holders: number[] | undefined }[] {
  const listing = listLeases(platform, `${dir}/${LEASES_DIR}`);
  return listing.live.flatMap((l) => {
    if (l.info !== undefined || l.unreadable !== undefined) return [];
    let uid: number | string = "?";
    let holders: number[] | undefined;
    try {
      const st = platform.lstat(l.path);
      if (st) {
        uid = st.uid;
        holders = kernelFlockHolders(platform, st);
      }
    } catch {
      // gone meanwhile
    }
    return [{ path: l.path, uid, holders }];
  });
}

/** How long a process has held its pin, as doctor says it; a lease of an older release does not say. */
function pinAge(ms: number | undefined): string {
  return ms === undefined ? "for a time its lease does not say (an older txtdb)" : `for ${duration(ms)}`;
}

/** Prints the diagnosis through `out`; returns the exit code (1 when a problem was found). */
export async function doctor(db: Database, dir: string, out: (line: string) => void): Promise<number> {
  let problems = 0;
  const s = db.stats();
  const procs = db.processes().filter((p) => !p.self);
  // Another process may commit and pin its commit between the two reads above: the head is
  // at least every version pinned (under load doctor printed a head below a pin).
  const head = procs.reduce((h, p) => (p.pinnedVersion !== undefined && p.pinnedVersion > h ? p.pinnedVersion : h), s.version);
  // Format 2 folds into tables (format 1 into one checkpoint file): name what is there.
  const folded = s.format >= 2 ? `tables ${s.checkpointBytes} B folded up to version ${s.checkpointVersion}` : `checkpoint ${s.checkpointBytes} B at version ${s.checkpointVersion}`;
  out(safe(`store ${dir}: version ${head}, ${s.namespaces} namespaces, log ${s.logBytes} B, ${folded}`));
  out(`live processes: ${procs.length}`);
  const planted = namelessLeases(databaseInternals(db).platform, db.path);
  for (const p of procs) {
    // pid -1: a lease that cannot be read (below) says nothing of its process.
    if (p.pid === -1 && p.pinnedVersion === undefined && (s.unreadableLeases.length > 0 || planted.length > 0)) continue;
    const behind = p.pinnedVersion === undefined ? "pin not published yet" : `pins version ${p.pinnedVersion} (${commitsBehind(head, p.pinnedVersion)} behind the head) ${pinAge(p.pinAgeMs)}`;
    out(safe(`  pid ${p.pid} (${p.runtime}): ${behind}`));
  }
  problems += unreadableLeases(s.unreadableLeases, s.checkpointVersion, out);
  for (const l of planted) {
    problems++;
    const holder = l.holders === undefined ? "" : l.holders.length > 0 ? `, locked by pid ${l.holders.join(", ")} per the kernel's lock table` : "";
    out(
      safe(`warning: the lease ${l.path} is locked but names no process (owned by uid ${l.uid}${holder}): a txtdb process writes who it is into its lease before the lease takes its name, so this one was put there by another program. `) +
        "While it stays locked, it counts as a live process that pins what it may read, and compaction folds nothing past the current tables. End its holder; the lease is removed at the next compaction.",
    );
  }
  const oldest = procs.reduce<(typeof procs)[number] | undefined>((m, p) => (p.pinnedVersion !== undefined && (m === undefined || p.pinnedVersion < m.pinnedVersion!) ? p : m), undefined);
  if (oldest !== undefined && head - oldest.pinnedVersion! > PIN_BEHIND_SUSPECT) {
    problems++;
    out(
      safe(`warning: a process pins a version ${head - oldest.pinnedVersion!} commits old: a long-lived snapshot or transaction holds back compaction ` +
        `(pid ${oldest.pid}, ${oldest.runtime}, pins version ${oldest.pinnedVersion} ${pinAge(oldest.pinAgeMs)}); release it in that process, or end the process: its pin goes with it`),
    );
  }
  problems += await writerLock(databaseInternals(db).platform, db.path, procs.map((p) => p.pid), out);
  problems += compactLock(databaseInternals(db).platform, db.path, procs.map((p) => p.pid), out);
  problems += lockHolders(db, out);
  problems += await sagas(db, out);
  problems += inDoubt(db, out);
  problems += await decisions(db, out);
  if (s.openSnapshots || s.openTransactions) out(`this process: ${s.openSnapshots} snapshots, ${s.openTransactions} transactions open`);
  return problems ? 1 : 0;
}
