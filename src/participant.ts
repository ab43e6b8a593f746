/**
 * One open store as a participant of two-phase commit: `tx.prepare()`, `commitPrepared()`,
 * `abortPrepared()`, `listPrepared()`, the move of the store to format 3, and the resolver
 * of in-doubt transactions. The records and their validation are in prepared.ts; the
 * coordinator is coordinator.ts.
 *
 * Resolving in-doubt transactions (any writable handle, at open and while open):
 *
 * 1. A prepared transaction whose record names a coordinator is due when the coordinator's
 *    process is known dead (its lease in the coordinator store is free: the kernel says so,
 *    see liveness.ts) or when it has been undecided longer than its in-doubt timeout
 *    (`inDoubtMs`, set by the coordinator; 60 s by default). One prepared without a
 *    coordinator is left to whoever prepared it (`txtdb doctor` lists it).
 * 2. The resolver opens the coordinator store (never creating one: a missing directory,
 *    or one whose identity is not the record's, leaves the transaction in doubt, listed by
 *    doctor), and there reads the decision, recording an abort first unless a commit
 *    decision is there (decisions.ts). Then it applies that decision here.
 * 3. While this process knows of undecided prepared transactions, or the store is in
 *    format 3, it checks every `RESOLVE_POLL_MS` (the frontier probe, one small read, and a
 *    lease check per coordinator); it learns prepared transactions of other processes by
 *    tailing the log like any commit. Housekeeping timers never keep a process alive.
 *
 * @module
 */
import { isTxtDbError, TxtDbError } from "./errors.ts";
import { bytesToBinary, decodeKey } from "./keys.ts";
import type { Database } from "./db.ts";
import { FORMAT_TWO_PHASE } from "./log.ts";
import type { FileLock } from "./lock.ts";
import type { Platform } from "./port.ts";
import { joinPath } from "./port.ts";
import { isTxid, TXID_CHARS_MAX } from "./record.ts";
import type { CoordinatorRef } from "./record.ts";
import { newTxState } from "./tx.ts";
import type { TxState } from "./tx.ts";
import type { Tail } from "./tail.ts";
import { stampHolder } from "./holder.ts";
import { leaseOwnerAlive } from "./liveness.ts";
import { describeOptions, invalidArg } from "./options.ts";
import { armInterval } from "./timers.ts";
import type { Timer } from "./timers.ts";
import type { PreparedInfo, PreparedTx, TwoPhaseStats } from "./prepared.ts";
import { abortUnlessCommitted, coordinatorId } from "./decisions.ts";
import { MANIFEST } from "./files.ts";

/** Default in-doubt timeout: a prepared transaction undecided this long is resolved. */
export const IN_DOUBT_MS_DEFAULT = 60_000;
/** How often a process that knows of prepared transactions looks for due ones. */
export const RESOLVE_POLL_MS = 250;

/** Options of `tx.prepare()`. */
export interface PrepareOptions {
  /**
   * The coordinator that decides this transaction: its store's directory, identity and
   * its process's lease there. {@link Coordinator} sets it; without it, the transaction
   * waits for `commitPrepared()` or `abortPrepared()` however long it takes.
   */
  coordinator?: CoordinatorRef | null;
  /** Undecided this long (ms), the transaction is resolved by any process (default 60 000). */
  inDoubtTimeoutMs?: number;
}

/** What the participant needs from its database. */
export interface ParticipantHost {
  readonly platform: Platform;
  readonly path: string;
  readonly readOnly: boolean;
  readonly tail: Tail;
  readonly lock: FileLock;
  readonly compactLock: FileLock;
  readonly lockTimeoutMs: number;
  submit(state: TxState): Promise<number>;
  ensureOpen(): void;
  isClosed(): boolean;
  /** Opens another store (a coordinator's), writable; never creates one (the caller checked). */
  openStore(path: string): Promise<Database>;
}

/** Checks a transaction id argument. */
export function checkTxid(txid: unknown, what: string): asserts txid is string {
  if (!isTxid(txid)) {
    throw invalidArg(`${what} needs a transaction id: a non-empty string of at most ${TXID_CHARS_MAX} characters (well-formed UTF-16); got ${typeof txid === "string" ? JSON.stringify(txid.slice(0, 60)) : typeof txid}`);
  }
}

function checkCoordinatorRef(c: unknown): asserts c is CoordinatorRef | null | undefined {
  if (c === undefined || c === null) return;
  const ok = typeof c === "object" && ["path", "id", "lease"].every((k) => {
    const v = (c as Record<string, unknown>)[k];
    return typeof v === "string" && v.length > 0 && v.length <= 4096;
  });
  if (!ok) throw invalidArg("prepare() option coordinator must be { path, id, lease } (non-empty strings), as Coordinator sets it, or null");
}

/** The two-phase commit side of one open database. */
export class Participant {
  readonly #host: ParticipantHost;
  #formatReady = false;
  #poll: Timer | undefined;
  #resolving: Promise<number> | undefined;
  /** Transactions a resolve attempt could not settle (coordinator missing): not retried every poll. */
  readonly #stuck = new Map<string, { reason: string; retryAtMs: number }>();
  readonly #counts = { preparesMade: 0, preparedCommitted: 0, preparedAborted: 0, inDoubtResolved: 0 };

  constructor(host: ParticipantHost) {
    this.#host = host;
  }

  // --- the protocol ---

  /** `tx.prepare(txid)`: validates and durably records `state` as prepared. */
  async prepare(state: TxState, txid: string, options: PrepareOptions = {}): Promise<void> {
    checkTxid(txid, "prepare()");
    if (options === null || typeof options !== "object" || Array.isArray(options)) throw invalidArg(`prepare() options must be an object; got ${describeOptions(options)}`);
    checkCoordinatorRef(options.coordinator);
    const inDoubtMs = options.inDoubtTimeoutMs ?? IN_DOUBT_MS_DEFAULT;
    if (typeof inDoubtMs !== "number" || !(inDoubtMs >= 0) || !Number.isFinite(inDoubtMs)) throw invalidArg(`prepare() option inDoubtTimeoutMs must be a non-negative finite number of ms; got ${String(inDoubtMs)}`);
    if (state.namespaceOps.length > 0) {
      throw invalidArg(`Cannot prepare transaction "${txid}": it creates, drops or renames namespaces, which two-phase commit does not carry; do that in its own transaction first`);
    }
    this.#writable();
    await this.#ensureFormat();
    state.twoPhase = { op: "prepare", txid, coordinator: options.coordinator ?? null, inDoubtMs, atMs: this.#host.platform.wallClockMs() };
    await this.#host.submit(state);
    this.#counts.preparesMade++;
    this.wake();
  }

  /** `db.commitPrepared(txid)`: the prepared writes become visible at a new version. */
  async commitPrepared(txid: string): Promise<{ version: bigint }> {
    checkTxid(txid, "commitPrepared()");
    this.#writable();
    const state = newTxState(this.#host.tail.visibleTsn, "serializable", true);
    state.twoPhase = { op: "commit", txid };
    try {
      const tsn = await this.#host.submit(state);
      this.#counts.preparedCommitted++;
      return { version: BigInt(tsn) };
    } catch (e) {
      if (isTxtDbError(e, "NOT_PREPARED") && e.details?.state === "committed") return { version: e.details.version as bigint };
      throw e;
    }
  }

  /** `db.abortPrepared(txid)`: drops the prepared writes; an unknown txid's abort is recorded. */
  async abortPrepared(txid: string): Promise<void> {
    checkTxid(txid, "abortPrepared()");
    this.#writable();
    this.#host.tail.refresh();
    const index = this.#host.tail.index;
    if (index.prepared.decision(txid)?.outcome === "aborted") return;
    await this.#ensureFormat();
    const state = newTxState(this.#host.tail.visibleTsn, "serializable", true);
    state.twoPhase = { op: "abort", txid };
    await this.#host.submit(state);
    this.#counts.preparedAborted++;
  }

  /** `db.listPrepared()`: the undecided prepared transactions, oldest first. */
  list(): PreparedInfo[] {
    this.#host.ensureOpen();
    const tail = this.#host.tail;
    tail.refresh();
    const index = tail.index;
    const names = new Map<number, string>();
    for (const [name, id] of index.bindingsAt(index.lastTsn)) names.set(id, name);
    const now = this.#host.platform.wallClockMs();
    return index.prepared.list().map((p) => ({
      txid: p.op.txid,
      coordinator: p.op.coordinator?.path ?? null,
      preparedAtMs: p.op.preparedAtMs,
      ageMs: Math.max(0, now - p.op.preparedAtMs),
      inDoubt: now - p.op.preparedAtMs >= p.op.inDoubtMs,
      keys: p.op.writes.map((w) => ({ ns: names.get(w.nsId) ?? `#${w.nsId}`, key: decodeKey(bytesToBinary(w.key)) })),
      version: BigInt(p.tsn),
    }));
  }

  /** The figures of `stats()`. */
  stats(): TwoPhaseStats {
    const now = this.#host.platform.wallClockMs();
    const open = this.#host.tail.index.prepared.list();
    return {
      prepared: open.length,
      inDoubt: open.filter((p) => now - p.op.preparedAtMs >= p.op.inDoubtMs).length,
      oldestPreparedAgeMs: open.length > 0 ? Math.max(0, now - Math.min(...open.map((p) => p.op.preparedAtMs))) : 0,
      ...this.#counts,
    };
  }

  #writable(): void {
    this.#host.ensureOpen();
    if (this.#host.readOnly) throw new TxtDbError("READ_ONLY", "Cannot prepare, commit or abort a prepared transaction: the database was opened with readOnly: true");
  }

  /**
   * Moves the store to format 3 before its first record of two-phase commit (log.ts), under
   * `compact.lock` (every writer of the manifest holds it) and the writer lock: the same
   * manifest with the new format number, temp, fsync, rename, directory fsync.
   */
  async #ensureFormat(): Promise<void> {
    if (this.#formatReady) return;
    const host = this.#host;
    if ((host.tail.log.readManifest()?.format ?? 0) >= FORMAT_TWO_PHASE) {
      this.#formatReady = true;
      return;
    }
    const releaseCompaction = await host.compactLock.acquire(true, { timeoutMs: host.lockTimeoutMs });
    try {
      const release = await host.lock.acquire(true, { timeoutMs: host.lockTimeoutMs });
      try {
        stampHolder(host.lock, host.platform);
        const tail = host.tail;
        tail.followManifest();
        tail.catchUpLocked();
        const onDisk = tail.log.readManifest();
        if (onDisk && onDisk.format < FORMAT_TWO_PHASE) tail.switchManifestLocked({ ...tail.manifest, format: FORMAT_TWO_PHASE });
        else tail.followManifest();
      } finally {
        release();
      }
    } finally {
      releaseCompaction();
    }
    this.#formatReady = true;
  }

  // --- the resolver ---

  /** Starts polling for due transactions (rule 3), if this handle may resolve and is not already. */
  wake(): void {
    if (this.#poll || this.#host.readOnly || this.#host.isClosed()) return;
    this.#poll = armInterval(RESOLVE_POLL_MS, () => void this.resolveDue().catch(() => {}), { unref: true });
  }

  /** Stops the poll (close). */
  stop(): void {
    this.#poll?.cancel();
    this.#poll = undefined;
  }

  /**
   * Resolves every due in-doubt transaction (rules 1-2); returns how many it decided. Runs
   * one pass at a time; errors of one transaction leave it for a later pass.
   */
  resolveDue(): Promise<number> {
    if (this.#resolving) return this.#resolving;
    if (this.#host.isClosed() || this.#host.readOnly) return Promise.resolve(0);
    const pass = this.#resolvePass().finally(() => (this.#resolving = undefined));
    this.#resolving = pass;
    return pass;
  }

  /** Resolves once the pass under way, if any, ends (close waits for it). */
  async idle(): Promise<void> {
    await this.#resolving?.catch(() => {});
  }

  async #resolvePass(): Promise<number> {
    const host = this.#host;
    let decided = 0;
    try {
      host.tail.refresh();
      const open = host.tail.index.prepared.list();
      if (open.length === 0 && host.tail.manifest.format < FORMAT_TWO_PHASE) this.stop();
      const now = host.platform.wallClockMs();
      const leaseAlive = new Map<string, boolean>();
      for (const p of open) {
        if (host.isClosed()) break;
        const c = p.op.coordinator;
        if (!c) continue;
        const stuck = this.#stuck.get(p.op.txid);
        if (stuck && stuck.retryAtMs > now) continue;
        const leasePath = joinPath(c.path, "leases", c.lease);
        let alive = leaseAlive.get(leasePath);
        if (alive === undefined) leaseAlive.set(leasePath, (alive = leaseOwnerAlive(host.platform, leasePath)));
        if (alive && now - p.op.preparedAtMs < p.op.inDoubtMs) continue;
        try {
          if (await this.#resolve(p)) decided++;
        } catch (e) {
          this.#stuck.set(p.op.txid, { reason: (e as Error).message, retryAtMs: now + Math.min(10_000, Math.max(RESOLVE_POLL_MS, p.op.inDoubtMs / 4)) });
        }
      }
      for (const txid of this.#stuck.keys()) if (!host.tail.index.prepared.get(txid)) this.#stuck.delete(txid);
    } catch (e) {
      if (!host.isClosed()) throw e;
    }
    return decided;
  }

  /** Why a due transaction could not be resolved, for `txtdb doctor` (undefined: none known). */
  stuckReason(txid: string): string | undefined {
    return this.#stuck.get(txid)?.reason;
  }

  /** Rule 2 for one transaction. */
  async #resolve(p: PreparedTx): Promise<boolean> {
    const host = this.#host;
    const c = p.op.coordinator!;
    if (!host.platform.stat(joinPath(c.path, MANIFEST))) {
      throw new TxtDbError("UNAVAILABLE", `Cannot resolve prepared transaction "${p.op.txid}": its coordinator store "${c.path}" does not exist (seen from this process's working directory); open the coordinator, or decide it with commitPrepared/abortPrepared`);
    }
    const coord = await host.openStore(c.path);
    let outcome: "commit" | "abort";
    try {
      const id = await coordinatorId(coord);
      if (id !== c.id) {
        throw new TxtDbError("UNAVAILABLE", `Cannot resolve prepared transaction "${p.op.txid}": the store at "${c.path}" is not its coordinator (identity ${JSON.stringify(id ?? null)}, expected ${JSON.stringify(c.id)})`);
      }
      outcome = await abortUnlessCommitted(coord, p.op.txid, host.platform.wallClockMs());
    } finally {
      await coord.close();
    }
    if (host.isClosed()) return false;
    try {
      if (outcome === "commit") await this.commitPrepared(p.op.txid);
      else await this.abortPrepared(p.op.txid);
    } catch (e) {
      if (!isTxtDbError(e, "NOT_PREPARED")) throw e;
      return false; // decided meanwhile by someone else
    }
    this.#counts.inDoubtResolved++;
    return true;
  }
}
