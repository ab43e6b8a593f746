/**
 * Validation of optimistic transactions and the group committer.
 *
 * Under the writer lock, the committer has caught up on every commit any process made,
 * so the index holds the head of history. Each transaction of the batch is validated
 * against that head (first committer wins), given the next TSN, and applied tentatively
 * so the next transaction of the same batch sees it. Then the whole batch goes to the
 * log in one append and one sync.
 *
 * The {@link GroupCommitter} (below) runs this: commits of this process queue up; one
 * runner takes the whole queue, acquires the writer lock once, catches up, validates each
 * transaction against the head, and hands the batch to the log tail for one append and
 * one sync (durability rules in tail.ts). A commit can be taken back (TIMEOUT, abort) only
 * while it waits in the queue: the batch is taken under the lock, and from then on its
 * outcome is on its way to the disk.
 *
 * Rules of the committer (the durability rules of the append and sync are in tail.ts):
 *
 * 1. A commit can be taken back only while it is queued; the batch is taken once the writer
 *    lock is held, and every commit of it then learns its outcome.
 * 2. A CONFLICT is delivered only once the commit it lost to is durable, and so visible to
 *    the rerun: a batch that appended something resolves after its own sync, which covers
 *    every record appended before it; a batch that appended nothing, having lost to records
 *    another process appended and has not made durable yet, first makes them durable itself
 *    (Tail.makeDurable: shared with a sync under way, or synced here). Delivered earlier,
 *    the rerun read the state before those records (readers never pass the durable
 *    frontier) and lost again, and again until its retries ran out; when their writer had
 *    been killed or stopped between its append and its sync, for as long as no other
 *    commit came to sync them (every transaction touching those keys failed).
 *
 * Conflict rules (a newer version of a key means: TSN > the transaction's readVersion):
 * - any namespace the transaction touched was created, dropped or renamed since → CONFLICT
 * - a key it set or deleted has a newer version → CONFLICT (both isolation levels)
 * - serializable only: a key it read, or a key in a range it read, has a newer version
 * - `check(ns, key, v)`: the key's version at the head is not v → CONFLICT
 * - `sum()` writes never conflict: the sum is computed here, at the head (keeping the
 *   expiry of the value it adds to: expiry.ts)
 * - serializable only: a key it read present has expired by now (expiry.ts, rule 3)
 *
 * @module
 */
import { assert, isTxtDbError, TxtDbError } from "./errors.ts";
import { binaryToBytes, decodeKey, describeKey } from "./keys.ts";
import { encodeValue } from "./codec.ts";
import { expiresAtOf, isExpiring, wrapExpiring } from "./expiry.ts";
import type { Index } from "./index.ts";
import type { CommitRecord, NamespaceOp, RecordWrite } from "./record.ts";
import { addNumeric, decodeStored } from "./tx.ts";
import { lostHistoryConflict } from "./txstate.ts";
import type { TxState } from "./tx.ts";
import { encodeCommit, FRAME_BODY_MAX_BYTES, FRAME_HEADER_BYTES, frameInto } from "./record.ts";
import type { FileLock } from "./lock.ts";
import type { Platform } from "./port.ts";
import type { Meters } from "./stats.ts";
import type { AppendedBatch, Tail } from "./tail.ts";
import { ioError } from "./files.ts";
import { stampHolder } from "./holder.ts";

function conflict(message: string, details: Record<string, unknown>): TxtDbError {
  return new TxtDbError("CONFLICT", message, { details });
}

function keyConflict(ns: string, key: string, version: number, what: string): TxtDbError {
  const k = decodeKey(key);
  return conflict(`Transaction conflict: ${what} ${describeKey(k)} in namespace "${ns}" was changed by the commit at version ${version}; retry the transaction`, {
    ns,
    key: k,
    version: BigInt(version),
  });
}

/** Validates `s` against the index head; returns the error that rejects it, if any. */
export function validate(s: TxState, index: Index): TxtDbError | undefined {
  const head = index.lastTsn;
  const after = s.readVersion;
  // Namespace operations: existence at the head.
  const exists = (name: string) => index.resolve(name, head) !== undefined;
  const pendingNames = new Map<string, boolean>(); // effects of earlier ops in this same transaction
  const has = (name: string) => pendingNames.get(name) ?? exists(name);
  for (const op of s.namespaceOps) {
    if (op.op === "create") {
      if (has(op.name)) return new TxtDbError("NAMESPACE_EXISTS", `Cannot create namespace "${op.name}": it already exists`, { details: { ns: op.name } });
      pendingNames.set(op.name, true);
    } else {
      if (!has(op.name)) return new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot ${op.op} namespace "${op.name}": it does not exist`, { details: { ns: op.name } });
      if (op.op === "rename") {
        if (has(op.to)) return new TxtDbError("NAMESPACE_EXISTS", `Cannot rename namespace "${op.name}" to "${op.to}": "${op.to}" already exists`, { details: { ns: op.to } });
        pendingNames.set(op.to, true);
      }
      pendingNames.set(op.name, false);
    }
  }
  for (const ns of s.touched) {
    const changed = index.nameChangedAt(ns);
    if (!s.blind && changed > after) {
      return conflict(`Transaction conflict: namespace "${ns}" was created, dropped or renamed by the commit at version ${changed}; retry the transaction`, {
        ns,
        version: BigInt(changed),
      });
    }
    if (!exists(ns)) {
      // Missing now and unchanged since the snapshot (or the conflict above): missing then
      // too, where this transaction found it missing; nothing it saw has changed.
      if (!s.blind && index.resolve(ns, after) === undefined) continue;
      return new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist any more; it was dropped or renamed`, { details: { ns } });
    }
  }
  if (s.blind) return undefined;
  for (const [ns, writes] of s.writes) {
    const id = index.resolve(ns, head)!;
    for (const [key, op] of writes) {
      if (op.kind === "sum") continue;
      const t = index.changedAfter(id, key, after);
      if (t > 0) return keyConflict(ns, key, t, "key written");
    }
  }
  if (s.isolation === "serializable") {
    for (const [ns, keys] of s.reads) {
      const id = index.resolve(ns, head)!;
      for (const key of keys) {
        const t = index.changedAfter(id, key, after);
        if (t > 0) return keyConflict(ns, key, t, "key read");
      }
    }
    for (const r of s.ranges) {
      const id = index.resolve(r.ns, head)!;
      const hit = index.changedInRange(id, r.start, r.end, after);
      if (hit) {
        return conflict(
          `Transaction conflict: key ${describeKey(decodeKey(hit.key))} in a range read from namespace "${r.ns}" was changed by the commit at version ${hit.tsn}; retry the transaction`,
          { ns: r.ns, range: r.selector, key: decodeKey(hit.key), version: BigInt(hit.tsn) },
        );
      }
    }
    // A key read present that has expired since no longer reads so (expiry.ts, rule 3).
    const soonest = s.readExpiry;
    if (soonest !== undefined && soonest.expiresAtMs <= index.wallClockMs()) {
      const k = decodeKey(soonest.key);
      return conflict(
        `Transaction conflict: key ${describeKey(k)} in namespace "${soonest.ns}", read at version ${soonest.tsn}, expired (at ${new Date(soonest.expiresAtMs).toISOString()}) before this transaction committed; retry the transaction`,
        { ns: soonest.ns, key: k, version: BigInt(soonest.tsn), expired: true, expiresAtMs: soonest.expiresAtMs },
      );
    }
  }
  for (const c of s.checks) {
    const id = index.resolve(c.ns, head)!;
    const v = index.get(id, c.key, head);
    const actual = v ? v.tsn : null;
    if (actual !== c.version) {
      const k = decodeKey(c.key);
      return conflict(
        `check() failed: key ${describeKey(k)} in namespace "${c.ns}" is at version ${actual ?? "absent"}, expected ${c.version ?? "absent"}`,
        { ns: c.ns, key: k, version: actual === null ? null : BigInt(actual) },
      );
    }
  }
  return undefined;
}

/** Builds the commit record of a validated transaction at `tsn` (sums computed at the head). */
export function buildRecord(s: TxState, index: Index, tsn: number): CommitRecord {
  const head = index.lastTsn;
  const namespaceOps: NamespaceOp[] = [];
  let nextId = index.nextNsId;
  for (const op of s.namespaceOps) {
    if (op.op === "create") namespaceOps.push({ op: "create", name: op.name, id: nextId++ });
    else if (op.op === "drop") namespaceOps.push({ op: "drop", name: op.name });
    else namespaceOps.push({ op: "rename", name: op.name, to: op.to });
  }
  const writes: RecordWrite[] = [];
  for (const [ns, ops] of s.writes) {
    const id = index.resolve(ns, head)!;
    for (const [key, op] of ops) {
      let value: Uint8Array | null;
      if (op.kind === "set") value = op.value;
      else if (op.kind === "delete") value = null;
      else {
        const current = index.get(id, key, head);
        value = encodeValue(current ? addNumeric(decodeStored(current.value, ns, key), op.delta, `key ${describeKey(decodeKey(key))} in "${ns}"`) : op.delta);
        if (current && isExpiring(current.value)) value = wrapExpiring(value, expiresAtOf(current.value));
      }
      writes.push({ nsId: id, key: binaryToBytes(key), value, binary: key });
    }
  }
  return { tsn, writes, namespaceOps };
}

/** Most writes and bytes (keys and values) of one record shared by shareable commits. */
const SHARED_RECORD_WRITES_MAX = 4096;
const SHARED_RECORD_BYTES_MAX = 1 << 20;

/** LIMIT for a transaction whose log record would be `bytes` long, over FRAME_BODY_MAX_BYTES. */
function recordTooLarge(bytes: number): TxtDbError {
  return new TxtDbError("LIMIT", `Transaction's log record would be ${bytes} bytes, over the ${FRAME_BODY_MAX_BYTES}-byte limit of one record (whatever maxTxBytes and maxValueBytes allow); split it into smaller transactions`, { details: { bytes, limitBytes: FRAME_BODY_MAX_BYTES } });
}

/** A commit that may share its record with its neighbours (TxState.shareable): writes only. */
function isShareable(s: TxState): boolean {
  return s.shareable === true && s.blind && !s.twoPhase && s.namespaceOps.length === 0 && s.checks.length === 0;
}

/** Most transactions in one group commit. */
const BATCH_MAX = 4096;
/**
 * Most counted bytes (keys and values, TxState.bytes) of one group commit past its first
 * transaction: a batch is held in memory about three times over while it is built (the
 * transactions, their records, the buffer appended), so many big transactions queued at
 * once go in several batches rather than one that could be gigabytes.
 */
const BATCH_BYTES_MAX = 64 << 20;

/**
 * How many times one batch is put back in the queue, its writer lock having turned out lost
 * just before its append (see commitBatchLocked), before it fails with that IO error.
 */
const LOCK_LOST_REQUEUES_MAX = 8;

/** The errors commitBatchLocked throws for a lost writer lock: the batch is put back, not failed. */
const lockLostErrors = new WeakSet<object>();

/** True for the IO error of a batch that found its writer lock lost before its append (nothing was written). */
export function isWriterLockLost(e: unknown): boolean {
  return typeof e === "object" && e !== null && lockLostErrors.has(e);
}

/** The next batch off the front of `queue`: at least one commit, at most BATCH_MAX and BATCH_BYTES_MAX. */
function takeBatch(queue: PendingCommit[]): PendingCommit[] {
  let n = 0;
  let bytes = 0;
  while (n < queue.length && n < BATCH_MAX) {
    bytes += queue[n]!.state.bytes;
    if (n > 0 && bytes > BATCH_BYTES_MAX) break;
    n++;
  }
  return queue.splice(0, n);
}

/** A commit waiting in the queue. */
export interface PendingCommit {
  state: TxState;
  resolve: (tsn: number) => void;
  reject: (e: unknown) => void;
  /** How many times its batch found the writer lock lost before the append. */
  lockLost?: number;
}

/** What the committer asks of the rest of the database. */
export interface CommitterHooks {
  /** True while no snapshot or transaction is open in this process (a lone write need not wait). */
  noOpenReads(): boolean;
  /** After a batch is written: `seg` is the segment it went into, `rolled` if it started one. */
  afterBatch(seg: number, rolled: boolean): void;
}

/** The group committer of one open database: the queue, its runner, and the batch. */
export class GroupCommitter {
  readonly #platform: Platform;
  readonly #tail: Tail;
  readonly #lock: FileLock;
  readonly #meters: Meters;
  readonly #lockTimeoutMs: number;
  readonly #hooks: CommitterHooks;
  readonly #queue: PendingCommit[] = [];
  #committing: Promise<void> | undefined;
  #running = false;
  /** When the committer last let the event loop turn (see #runCommits). */
  #lastTurnMs = -Infinity;

  constructor(platform: Platform, tail: Tail, lock: FileLock, meters: Meters, lockTimeoutMs: number, hooks: CommitterHooks) {
    this.#platform = platform;
    this.#tail = tail;
    this.#lock = lock;
    this.#meters = meters;
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#hooks = hooks;
  }

  /** True while a runner is at work (close() waits for it). */
  get running(): boolean {
    return this.#running;
  }

  /** The current runner, if any. */
  get committing(): Promise<void> | undefined {
    return this.#committing;
  }

  /** Queues a transaction for the next group commit; resolves with its TSN. */
  submit(state: TxState): Promise<number> {
    const t0 = this.#platform.monotonicMs();
    return new Promise<number>((resolve, reject) => {
      const done = (tsn: number) => {
        this.#meters.commitLatencyUs.record((this.#platform.monotonicMs() - t0) * 1000);
        resolve(tsn);
      };
      const pending: PendingCommit = { state, resolve: done, reject };
      this.#queue.push(pending);
      // `#running` is cleared synchronously when the runner finds the queue empty, so a
      // commit queued at any moment after that starts a new runner; none is stranded.
      if (!this.#running) {
        this.#running = true;
        this.#committing = this.#runCommits();
      }
    });
  }

  /**
   * Takes the commit queued for `state` back out of the queue and rejects it with `error`,
   * if it is still there: before the writer lock is held it can leave unwritten. False once
   * its group commit has taken it (its outcome is then on its way).
   */
  takeBackState(state: TxState, error: unknown): boolean {
    const i = this.#queue.findIndex((p) => p.state === state);
    if (i < 0) return false; // in a group commit already: wait for its outcome
    const [pending] = this.#queue.splice(i, 1);
    pending!.reject(error); // the commit settles (rolled back); nothing was written
    return true;
  }

  #nextTurn(): Promise<void> {
    return this.#platform.nextTurn ? this.#platform.nextTurn() : this.#platform.sleep(0);
  }

  async #runCommits(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // Let every commit this turn of the event loop produces join the batch: a
        // transaction reaches commit() only after several microtask hops of its own, so
        // waiting one microtask would batch little; waiting for the next turn also lets
        // timers and I/O run between batches, so a stream of commits never starves them.
        await Promise.resolve();
        // The exception: one blind write (db.set) with no transaction open in this
        // process, as in a loop awaiting each write, has no one to wait for; a turn would
        // only add its latency (~20 µs here). Even so a turn is taken every millisecond.
        const lone = this.#queue.length === 1 && this.#queue[0]!.state.blind && this.#hooks.noOpenReads();
        if (!lone || this.#platform.monotonicMs() - this.#lastTurnMs >= 1) {
          await this.#nextTurn();
          this.#lastTurnMs = this.#platform.monotonicMs();
        }
        if (this.#queue.length === 0) break; // every queued commit was taken back (timeout, abort)
        let release: () => void;
        let waited = false;
        try {
          let free = this.#lock.tryAcquire(true);
          if (!free) {
            // Taken: read what other processes made durable before waiting, so that the
            // catch-up under the lock reads only what was appended since (time spent reading
            // others' records in the lock is time every writer waits). A lock free at once
            // is not worth that system call: the catch-up under it reads the same.
            try {
              this.#tail.refresh();
            } catch {
              // the catch-up under the lock meets the same problem and reports it
            }
            free = this.#lock.tryAcquire(true);
          }
          if (free) this.#lock.onWait?.(0); // counted as acquire() counts a lock taken at once
          waited = free === undefined;
          release = free ?? (await this.#waitForLock());
        } catch (e) {
          const err = ioError(e, "Taking the writer lock");
          for (const p of this.#queue.splice(0, BATCH_MAX)) p.reject(err);
          continue;
        }
        // The batch is taken only now that the lock is held: until this moment a commit whose
        // transaction times out (or is aborted) can leave the queue unwritten.
        const batch = takeBatch(this.#queue);
        if (batch.length === 0) {
          release();
          continue;
        }
        let results: (number | TxtDbError)[];
        let appended: AppendedBatch | undefined;
        let lostTo: AppendedBatch | undefined;
        try {
          stampHolder(this.#lock, this.#platform, waited);
          ({ results, appended } = this.commitBatchLocked(batch.map((p) => p.state)));
          // Rule 2: a batch that appended nothing and lost to records not durable yet.
          if (!appended && results.some((r) => isTxtDbError(r, "CONFLICT"))) lostTo = this.#tail.unsyncedReadLocked();
        } catch (e) {
          if (isWriterLockLost(e) && batch.every((p) => (p.lockLost ?? 0) < LOCK_LOST_REQUEUES_MAX)) {
            // Nothing was appended: the batch goes again, under the lock on the file the
            // path now names (the lock checks that at every grant).
            for (const p of batch) p.lockLost = (p.lockLost ?? 0) + 1;
            this.#queue.unshift(...batch);
            continue;
          }
          const err = ioError(e, "Commit");
          for (const p of batch) p.reject(err);
          continue;
        } finally {
          release();
        }
        // Written, not yet durable: queue claims start their handlers now (queues.ts says
        // why that keeps its promises); every commit still resolves only once durable.
        batch.forEach((p, i) => {
          const r = results[i];
          if (p.state.onAppended && typeof r === "number") {
            try {
              p.state.onAppended(r);
            } catch {
              // the callback's failure is its owner's; the commit goes on
            }
          }
        });
        if (lostTo) {
          try {
            await this.#tail.makeDurable(lostTo);
          } catch {
            // Not made durable (a sync failed and is marked, or the records were cut by a
            // repair): the conflicts stand as they are, and the next commit meets the failure.
          }
        }
        // The lock is released before the sync: other processes append behind this batch
        // meanwhile, and one sync makes them all durable (rules 2-3 in tail.ts).
        if (appended) {
          try {
            await this.#tail.makeDurable(appended);
          } catch (e) {
            const err = ioError(e, "Commit");
            results = results.map((r) => (typeof r === "number" ? (err as TxtDbError) : r));
          }
        }
        batch.forEach((p, i) => {
          const r = results[i]!;
          if (typeof r === "number") p.resolve(r);
          else p.reject(r);
        });
      }
    } finally {
      // Synchronously after the loop saw an empty queue: see submit().
      this.#running = false;
    }
  }

  /**
   * Waits for the writer lock, held by another process or handle, reading ahead (tail.ts
   * rule 10) once as the wait starts: the batches other processes appended, still on their
   * way to a sync, are then read before the lock comes, not in it, where every other writer
   * would wait for the reading too. (A lock that is free at once needs none of this: the
   * catch-up under it reads the same, and nobody waits.) Not again while the wait goes on:
   * it read ahead every millisecond until 2026-12-03, and each of those timer wake-ups cost
   * more than the reading it saved under the lock, where eight processes share two cores
   * (W3, one in flight, seven alternating rounds each: ~2,000 transactions/s with the
   * timer, ~2,300/s without; no difference at four processes or at 16 in flight).
   */
  async #waitForLock(): Promise<() => void> {
    this.#tail.readAhead();
    return await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
  }

  /** The error of a batch whose writer lock was lost (a cleaner deleted the lock file): nothing was written, and the batch goes again. */
  #lockLost(): TxtDbError {
    const lost = this.#lock.lostError(`Commit to "${this.#tail.path}"`, "Nothing was written");
    lockLostErrors.add(lost);
    return lost;
  }

  /**
   * Validates and appends a batch; the writer lock is held. All synchronous. The batch
   * resolves only after {@link Tail.makeDurable}(`appended`), which the caller runs once
   * the lock is released (or holding it, where nothing else is waiting).
   */
  commitBatchLocked(states: TxState[]): { results: (number | TxtDbError)[]; appended: AppendedBatch | undefined } {
    const tail = this.#tail;
    const counters = this.#meters.counters;
    tail.catchUpLocked();
    const startSeg = tail.readPos.seg; // a batch that starts a segment tells afterBatch (auto-compaction)
    // A full active segment is sealed now, not in the append: the seal's fsync would put
    // milliseconds between the lock check before the append and the append's write. The
    // seal cuts the segment at this process's read position: the lock is checked first.
    if (tail.activeSegmentFull()) {
      tail.sealActiveLocked(() => {
        if (!this.#lock.heldAtPath()) throw this.#lockLost();
      });
    }
    const index = tail.index;
    const results: (number | TxtDbError)[] = [];
    // `body`: the record encoded when it was built (its size is checked then), or undefined
    // once another commit joined it (encoded again below).
    const applied: { record: CommitRecord; body: Uint8Array | undefined; prevTsn: number; prevNextNsId: number; shareable: boolean; bytes: number }[] = [];
    // Whatever throws from here until the batch is appended (a bug, a failed allocation)
    // fails the whole batch: what it applied to the index goes back off it first, or this
    // process would go on reading, and numbering after, records that are in no log.
    const undoApplied = () => {
      for (const a of applied.reverse()) index.undo(a.record, a.prevTsn, a.prevNextNsId);
    };
    let commits = 0;
    let data: Uint8Array;
    try {
      for (const s of states) {
        let error: TxtDbError | undefined;
        if (s.pinEnded?.() === true) {
          // Its pin was ended while it waited (its history compacted away, this process
          // holding no lease): what changed since its read version may be folded out of
          // sight, so it cannot be validated. Never written on a history it cannot check.
          error = lostHistoryConflict("was ended while its commit waited for the writer lock, and nothing was written");
        } else if (s.twoPhase) {
          // Two-phase commit (prepared.ts): a prepare validates like a commit and against
          // other prepared transactions; a decision needs its prepared transaction.
          const v = index.prepared.validate(s, index, validate);
          if (v.skip !== undefined) {
            results.push(v.skip); // an abort of an aborted transaction: nothing to write
            continue;
          }
          error = v.error;
        } else {
          // A failure to read what validation needs (a damaged table: CORRUPTION) is this
          // transaction's outcome. It used to escape and fail the whole batch, leaving the
          // batch's earlier transactions applied to this process's index though never written.
          try {
            error = validate(s, index) ?? index.prepared.blocks(s, index);
          } catch (e) {
            if (!isTxtDbError(e)) throw e;
            error = e;
          }
        }
        let record: CommitRecord | undefined;
        if (!error && s.atHead) {
          // Queue work decided at the head (queuestore.ts); nothing left to write: no record.
          try {
            if (!s.atHead(index)) {
              results.push(index.lastTsn);
              continue;
            }
          } catch (e) {
            if (!isTxtDbError(e)) throw e;
            error = e;
          }
        }
        // A shareable commit after another one joins its record, at its version (TxState.shareable).
        const shareable = !error && isShareable(s);
        const last = applied.length > 0 ? applied[applied.length - 1] : undefined;
        const wouldShare = shareable && last !== undefined && last.shareable && last.record.writes.length < SHARED_RECORD_WRITES_MAX && last.bytes < SHARED_RECORD_BYTES_MAX;
        let share = false;
        // A record over FRAME_BODY_MAX_BYTES would be written and resolve, and then every
        // reader would take it for garbage and the store would not open: refused here, as
        // this transaction's own outcome, whatever maxTxBytes and maxValueBytes allow. The
        // counted bytes first (no need to encode gigabytes to know), then the encoding.
        if (!error && s.bytes > FRAME_BODY_MAX_BYTES) error = recordTooLarge(s.bytes);
        let body: Uint8Array | undefined;
        // Only a record that others may join keeps count of its bytes.
        let bytes = 0;
        if (!error) {
          try {
            record = s.twoPhase ? index.prepared.build(s, index, index.lastTsn + 1, buildRecord) : buildRecord(s, index, index.lastTsn + 1);
            if (shareable) for (const w of record.writes) bytes += w.key.length + (w.value?.length ?? 0);
            // Only small commits join, so a joined record stays far below the limit.
            share = wouldShare && bytes <= SHARED_RECORD_BYTES_MAX;
            if (share) record.tsn = index.lastTsn; // a shareable record carries its version nowhere else
            else {
              body = encodeCommit(record);
              if (body.length > FRAME_BODY_MAX_BYTES) error = recordTooLarge(body.length);
            }
          } catch (e) {
            if (!isTxtDbError(e)) throw e;
            error = e;
          }
        }
        if (error || !record) {
          if (error?.code === "CONFLICT") counters.conflicts++;
          results.push(error!);
          continue;
        }
        if (share) {
          index.applyMore(record); // asserts that the shared record is the newest applied
          for (const w of record.writes) last!.record.writes.push(w);
          last!.bytes += bytes;
          last!.body = undefined;
        } else {
          const prev = { prevTsn: index.lastTsn, prevNextNsId: index.nextNsId };
          index.apply(record);
          applied.push({ record, body, ...prev, shareable, bytes });
        }
        commits += s.commitsCounted ?? 1;
        results.push(record.tsn);
      }
      if (applied.length === 0) {
        if (tail.readPos.seg !== startSeg) this.#hooks.afterBatch(tail.readPos.seg, true); // sealed above
        return { results, appended: undefined };
      }
      const bodies = applied.map((a) => a.body ?? encodeCommit(a.record));
      let bytes = 0;
      for (const b of bodies) bytes += FRAME_HEADER_BYTES + b.length;
      data = new Uint8Array(bytes);
      let o = 0;
      for (const b of bodies) o = frameInto(data, o, b);
      assert(o === data.length, "the batch's frames fill its buffer");
    } catch (e) {
      undoApplied();
      throw e;
    }
    if (!this.#lock.heldAtPath()) {
      // The lock file was deleted (a tmp cleaner) since the lock was granted: another
      // process may have locked a new one and be appending now, so nothing is appended
      // under this one. Checked as late as can be: this check and the append are
      // microseconds apart, where the catch-up and validation before them are not.
      undoApplied();
      throw this.#lockLost();
    }
    let appended: AppendedBatch;
    try {
      appended = tail.appendLocked(data);
    } catch (e) {
      // Nothing of this batch may become visible: take it back off the index (the tail
      // took it off the file).
      undoApplied();
      throw e;
    }
    counters.batches++;
    counters.commits += commits;
    counters.batchSizeMax = Math.max(counters.batchSizeMax, commits);
    this.#meters.batchSizes.record(commits);
    for (const a of applied) counters.keysWritten += a.record.writes.length;
    this.#hooks.afterBatch(appended.seg, appended.seg !== startSeg);
    return { results, appended };
  }
}
