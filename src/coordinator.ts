/**
 * The coordinator of two-phase commit across stores. Its decision log is a txtdb store
 * (decisions.ts); participants are txtdb stores (participant.ts) and any object with
 * `prepare`, `commit`, `abort` and `inDoubt`.
 *
 * The protocol, in the order {@link Coordinator.transaction} carries it out (presumed
 * abort: no durable decision means abort):
 *
 * 1. Run `fn` with one transaction per txtdb store (other participants receive
 *    themselves). It may run more than once (CONFLICT reruns it with a new txid).
 * 2. Prepare everywhere at once. Each txtdb prepare record names this coordinator: its
 *    directory, identity and this process's lease in it. A prepare that fails, or the
 *    phase outlasting `prepareTimeoutMs`, aborts the transaction everywhere (a txtdb
 *    participant records the abort even if its prepare has not arrived: a late prepare is
 *    refused); a CONFLICT reruns it, anything else rejects.
 * 3. The decision: a serializable transaction on the coordinator store that reads the
 *    txid's key and, if no resolver recorded an abort there, writes the commit decision
 *    (with the participant stores' paths), durably. From here the transaction is committed,
 *    whatever dies: `coord.transaction` resolves even if a participant cannot be reached now.
 * 4. Commit everywhere at once. Once every participant confirmed, the decision is deleted
 *    (lazily, many per transaction on the coordinator store: nothing depends on it being
 *    durable; a decision found again is pushed again, which is idempotent).
 *
 * Recovery ({@link Coordinator.recover}: at open, then every `recoverIntervalMs`): every
 * commit decision left in the log is pushed to its participants again (their stores opened
 * by path) and deleted once all confirmed; each other participant's `inDoubt()` txids of
 * this coordinator are decided from the log, a missing decision being recorded as an abort
 * first when the coordinator process that began it is dead (its lease) or the txid has been
 * in doubt past `inDoubtTimeoutMs`. Resolver-written aborts are kept for
 * `decisionRetentionMs` (they fence a slow coordinator), then deleted. Participant stores
 * resolve their own in-doubt transactions too (participant.ts), so a participant reopened
 * while the coordinator is down finishes the work without it.
 *
 * @module
 */
import { describeInput, isTxtDbError, TxtDbError } from "./errors.ts";
import { Database, databaseInternals, open } from "./db.ts";
import type { Transaction } from "./tx.ts";
import { withoutCommit } from "./tx.ts";
import type { Isolation } from "./tx.ts";
import type { FileInfo, Platform } from "./port.ts";
import { absolutePath, joinPath, randomFraction } from "./port.ts";
import { leaseOwnerAlive } from "./liveness.ts";
import { toWellFormedString } from "./keys.ts";
import { checkKnownOptions, checkTransactionOptions, describeOptions, invalidArg } from "./options.ts";
import { abortReason, armInterval, raceDeadline, signalAborted } from "./timers.ts";
import type { Timer } from "./timers.ts";
import { abortUnlessCommitted, COORDINATOR_NS, DECISIONS_NS, isDecision, outcomeOf } from "./decisions.ts";
import type { DecisionValue } from "./decisions.ts";
import type { CoordinatorRef } from "./record.ts";
import { Histogram, metricMakers, renderPrometheus } from "./metrics.ts";
import type { Distribution } from "./stats.ts";
import { IN_DOUBT_MS_DEFAULT } from "./participant.ts";

/** Default time for every participant to prepare before the transaction aborts. */
export const PREPARE_TIMEOUT_MS_DEFAULT = 30_000;
/** How long an abort a resolver recorded is kept (it fences a coordinator slower than that). */
export const DECISION_RETENTION_MS_DEFAULT = 24 * 3_600_000;
/** Default period of the recovery pass. */
export const RECOVER_INTERVAL_MS_DEFAULT = 1_000;
/** Decisions one lazy deletion removes at most (one transaction on the coordinator store). */
const DELETIONS_PER_COMMIT_MAX = 512;

/**
 * A resource that takes part in two-phase commit besides txtdb stores. Each method returns a
 * Promise; `prepare` must make the transaction durable before it resolves, and `commit` and
 * `abort` must be idempotent (recovery may call them again, or for a txid never prepared).
 *
 * @example
 * ```ts
 * const mailbox: TwoPhaseParticipant = {
 *   name: "mailbox",
 *   prepare: async (txid) => { await stageMail(txid); },
 *   commit: async (txid) => { await sendStaged(txid); },
 *   abort: async (txid) => { await dropStaged(txid); },
 *   inDoubt: async () => listStaged(),
 * };
 * ```
 */
export interface TwoPhaseParticipant {
  /** For diagnostics (decisions list it). */
  readonly name?: string;
  /** Validates and durably records the transaction as prepared under `txid`. */
  prepare(txid: string): Promise<void>;
  /** Makes prepared `txid` take effect; idempotent. */
  commit(txid: string): Promise<void>;
  /** Drops `txid` (prepared or not); idempotent. */
  abort(txid: string): Promise<void>;
  /** The txids prepared here and not decided yet (recovery asks after a crash). */
  inDoubt(): Promise<string[]>;
}

/** Options of {@link Coordinator.open}. */
export interface CoordinatorOptions {
  /** Other participants, so that recovery after a crash reaches them. */
  participants?: TwoPhaseParticipant[];
  /** Every participant must prepare within this (ms) or the transaction aborts (default 30 000). */
  prepareTimeoutMs?: number;
  /** A prepared transaction undecided this long (ms) is resolved by any process (default 60 000). */
  inDoubtTimeoutMs?: number;
  /** Period of the recovery pass, ms (default 1 000). */
  recoverIntervalMs?: number;
  /** How long aborts recorded by resolvers are kept, ms (default 24 h). */
  decisionRetentionMs?: number;
  /** The platform (tests: the simulated one); default: this runtime's. Participant stores are opened with it. */
  adapter?: Platform;
}

/** Every option of {@link CoordinatorOptions}: the record makes the compiler ask for a new one here. */
const COORDINATOR_OPTIONS: Record<keyof CoordinatorOptions, true> = { participants: true, prepareTimeoutMs: true, inDoubtTimeoutMs: true, recoverIntervalMs: true, decisionRetentionMs: true, adapter: true };

/** Options of {@link Coordinator.transaction}: as `db.transaction()`'s. */
export interface CoordinatedTransactionOptions {
  /** Isolation of the transactions on txtdb stores (default: each store's). */
  isolation?: Isolation;
  /** Reruns on CONFLICT (default 10). */
  maxRetries?: number;
  /** The whole transaction, reruns included, until the commit decision (TIMEOUT after). */
  timeoutMs?: number;
  /** Aborting it ends the transaction with TIMEOUT, unless the commit decision was made. */
  signal?: AbortSignal;
}

/** What one recovery pass did. */
export interface RecoveryResult {
  /** Commits pushed to participants (decisions found in the log). */
  committed: number;
  /** Transactions aborted (in-doubt transactions of other participants). */
  aborted: number;
  /** Transactions whose participants could not all be reached (tried again later). */
  pending: number;
}

/** Counters and figures of one Coordinator handle: `coord.stats()`. */
export interface CoordinatorStats {
  /** The coordinator store's directory. */
  path: string;
  /** Transactions this handle committed (the commit decision durable). */
  committed: number;
  /** Transactions this handle ended without a commit: `fn` threw, a participant refused to prepare, TIMEOUT, a resolver's abort (reruns are not counted). */
  aborted: number;
  /** Reruns after CONFLICT. */
  retries: number;
  /** Transactions running now. */
  inFlight: number;
  /** Commit decisions of this handle that some participant has not confirmed yet: recovery pushes them again. */
  unfinished: number;
  /** Decisions in the coordinator store's log now, from any process: commits not yet confirmed everywhere or not yet deleted, and aborts kept for `decisionRetentionMs`. */
  decisionsLogged: number;
  /** Recovery passes this handle ran (at open, every `recoverIntervalMs`, `recover()`). */
  recoveryPasses: number;
  /** Commits recovery pushed to participants that had not confirmed them. */
  recoveredCommitted: number;
  /** In-doubt transactions of other participants recovery aborted. */
  recoveredAborted: number;
  /** From `transaction()`'s call to its commit decision, reruns included, in µs. */
  decisionLatencyUs: Distribution;
}

type Participant = Database | TwoPhaseParticipant;
/** What `fn` receives for each participant: a transaction for a txtdb store, the participant itself otherwise. */
export type ParticipantView<P> = P extends Database ? Transaction : P;

function isParticipantObject(p: unknown): p is TwoPhaseParticipant {
  if (p === null || typeof p !== "object") return false;
  const o = p as Record<string, unknown>;
  return ["prepare", "commit", "abort", "inDoubt"].every((m) => typeof o[m] === "function");
}

function checkParticipants(list: unknown, what: string): asserts list is Participant[] {
  let isArray: boolean;
  try {
    isArray = Array.isArray(list);
  } catch {
    isArray = false; // a revoked Proxy
  }
  if (!isArray) throw invalidArg(`${what} must be an array of txtdb databases or participant objects`);
  (list as unknown[]).forEach((p, i) => {
    let valid: boolean;
    try {
      valid = p instanceof Database || isParticipantObject(p);
    } catch (e) {
      // A getter or Proxy trap that throws (a revoked Proxy): the caller's object, not an IO failure.
      throw invalidArg(`${what}[${i}] could not be read as a participant: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!valid) {
      throw invalidArg(`${what}[${i}] is neither a txtdb Database nor an object with prepare, commit, abort and inDoubt methods`);
    }
    // A store on etcd cannot prepare: UNSUPPORTED before anything is begun.
    if (p instanceof Database) databaseInternals(p, `Two-phase commit (${what}[${i}])`);
  });
}

function checkMs(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !(v >= 0) || !Number.isFinite(v)) throw invalidArg(`${name} must be a non-negative finite number of ms; got ${String(v)}`);
  return v;
}

/** Characters of another participant's name a decision keeps. */
const NAME_CHARS_MAX = 200;

/**
 * Another participant's `name` as a decision records it (for diagnostics only): a short,
 * well-formed string whatever the property holds, so that a name the store cannot hold
 * (a symbol, a lone surrogate, megabytes) never fails the commit decision.
 */
function diagnosticName(name: unknown, i: number): string {
  if (typeof name !== "string" || name.length === 0) return typeof name === "number" ? String(name) : `participant ${i}`;
  const short = name.length > NAME_CHARS_MAX ? name.slice(0, NAME_CHARS_MAX) + "…" : name;
  return toWellFormedString(short);
}

/**
 * The parts of a txid a Coordinator made: the coordinator's identity (its store's id, so
 * that one coordinator never decides another's transactions at a participant they share)
 * and the lease id of the process that made it (whether that process lives); undefined
 * for any other txid.
 */
function parseTxid(txid: string): { coordinator: string; lease: string } | undefined {
  const m = /^([0-9a-f]{24})\.([0-9a-f]{16})\.[0-9a-z]+\.[0-9a-f]{8}$/.exec(txid);
  return m ? { coordinator: m[1]!, lease: m[2]! } : undefined;
}

/**
 * The lease id in a txid made before txids named their coordinator (`<lease>.<counter>.<rand>`):
 * such a txid, still in doubt at a participant after an upgrade, is decided as it was then
 * (as this coordinator's), or it would stay in doubt for ever.
 */
function leaseOfOldTxid(txid: string): string | undefined {
  return /^([0-9a-f]{16})\.[0-9a-z]+\.[0-9a-f]{8}$/.exec(txid)?.[1];
}

/**
 * Whether a decision's name for another participant tells it apart in every process: its own
 * `name`, whole. "participant <i>" counts positions in one list (transaction()'s, or
 * Coordinator.open()'s, which differ), and a name cut short may be another's too.
 */
function identifyingName(name: string): boolean {
  return !/^participant \d+$/.test(name) && !name.endsWith("…");
}

function hex(platform: Platform, bytes: number): string {
  const b = new Uint8Array(bytes);
  platform.randomBytes(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The coordinator of atomic commits across txtdb stores (and other participants). Its
 * decision log is a txtdb store in its own directory; any process that opens it, or a
 * participant store, later finishes what a crashed coordinator left.
 *
 * @example
 * ```ts
 * const orders = await open("./orders"), stock = await open("./stock");
 * const coord = await Coordinator.open("./coordinator");
 * const id = await coord.transaction([orders, stock], async (o, s) => {
 *   s.sum("items", "x", -1);
 *   o.set("orders", "o-42", { item: "x" });
 *   return "o-42";
 * }, { timeoutMs: 30_000 });
 * ```
 */
export class Coordinator {
  /** The coordinator store's directory, absolute: prepare records name it so for other processes. */
  readonly path: string;
  readonly #store: Database;
  readonly #platform: Platform;
  readonly #id: string;
  readonly #others: TwoPhaseParticipant[];
  readonly #prepareTimeoutMs: number;
  readonly #inDoubtTimeoutMs: number;
  readonly #retentionMs: number;
  readonly #adapter: Platform | undefined;
  /** Txids this coordinator is running now (recovery leaves them alone). */
  readonly #inFlight = new Set<string>();
  /** Txids this coordinator decided to commit but could not commit everywhere: recovery retries them. */
  readonly #unfinished = new Set<string>();
  /** Committed everywhere: their decisions are deleted lazily. */
  #done: string[] = [];
  #flushing: Promise<void> | undefined;
  #recovering: Promise<RecoveryResult> | undefined;
  #recoverTimer: Timer | undefined;
  readonly #firstSeen = new Map<string, number>();
  #counter = 0;
  #closed = false;
  readonly #counts = { committed: 0, aborted: 0, retries: 0, recoveryPasses: 0, recoveredCommitted: 0, recoveredAborted: 0 };
  readonly #decisionLatencyUs = new Histogram();
  readonly #running = new Set<Promise<unknown>>();

  private constructor(path: string, store: Database, id: string, options: CoordinatorOptions, prepareTimeoutMs: number, inDoubtTimeoutMs: number, retentionMs: number) {
    this.path = path;
    this.#store = store;
    this.#platform = databaseInternals(store).platform;
    this.#id = id;
    this.#others = options.participants ? [...(options.participants as TwoPhaseParticipant[])] : [];
    this.#prepareTimeoutMs = prepareTimeoutMs;
    this.#inDoubtTimeoutMs = inDoubtTimeoutMs;
    this.#retentionMs = retentionMs;
    this.#adapter = options.adapter;
  }

  /**
   * Opens (creating if needed) the coordinator store in `dir`, and recovers what a crashed
   * coordinator left: commit decisions not applied everywhere are pushed to their
   * participants; other participants' in-doubt transactions are decided.
   *
   * @example
   * ```ts
   * const coord = await Coordinator.open("./coordinator", { participants: [mailbox] });
   * ```
   */
  static async open(dir: string, options: CoordinatorOptions = {}): Promise<Coordinator> {
    if (typeof dir !== "string" || dir.length === 0) throw invalidArg(`Coordinator.open() needs a directory path; got ${describeInput(dir)}`);
    if (options === null || typeof options !== "object" || Array.isArray(options)) throw invalidArg(`Coordinator.open() options must be an object; got ${describeOptions(options)}`);
    checkKnownOptions("Coordinator.open()", options, Object.keys(COORDINATOR_OPTIONS));
    if (options.participants !== undefined) {
      checkParticipants(options.participants, "Coordinator.open() option participants");
      if (options.participants.some((p) => p instanceof Database)) throw invalidArg("Coordinator.open() option participants lists other participants only; txtdb stores recover by themselves (their prepare records name the coordinator)");
    }
    const prepareTimeoutMs = checkMs(options.prepareTimeoutMs, "prepareTimeoutMs", PREPARE_TIMEOUT_MS_DEFAULT);
    const inDoubtTimeoutMs = checkMs(options.inDoubtTimeoutMs, "inDoubtTimeoutMs", IN_DOUBT_MS_DEFAULT);
    const recoverIntervalMs = checkMs(options.recoverIntervalMs, "recoverIntervalMs", RECOVER_INTERVAL_MS_DEFAULT);
    const retentionMs = checkMs(options.decisionRetentionMs, "decisionRetentionMs", DECISION_RETENTION_MS_DEFAULT);
    const store = await open(dir, options.adapter ? { adapter: options.adapter } : {});
    let id: string;
    try {
      // Only an empty store becomes a coordinator's: one with data of its own was taken over
      // (and recovery read its values as decisions). Checked before anything is written.
      const names = await store.listNamespaces();
      // (A "decisions" namespace without "coordinator" is the user's if it holds anything: an
      // open that stopped between creating the two leaves it empty.)
      const own = names.filter((n) => n !== COORDINATOR_NS);
      if (own.length === 1 && own[0] === DECISIONS_NS && (await store.count(DECISIONS_NS, { prefix: [] })) === 0) own.length = 0;
      if (!names.includes(COORDINATOR_NS) && own.length > 0) {
        throw invalidArg(`Coordinator.open("${dir}"): "${store.path}" is a txtdb store with data of its own (namespaces ${JSON.stringify(own.slice(0, 5))}${own.length > 5 ? " and more" : ""}), not a coordinator's; nothing was written. Give the coordinator a directory of its own`);
      }
      for (const ns of [DECISIONS_NS, COORDINATOR_NS]) {
        if (names.includes(ns)) continue;
        await store.createNamespace(ns).catch((e: unknown) => {
          if (!isTxtDbError(e, "NAMESPACE_EXISTS")) throw e; // another process's open made it
        });
      }
      const platform = databaseInternals(store).platform;
      id = await store.transaction(async (tx) => {
        const existing = await tx.get<unknown>(COORDINATOR_NS, "id");
        if (typeof existing === "string") return existing;
        const fresh = hex(platform, 12);
        tx.set(COORDINATOR_NS, "id", fresh);
        return fresh;
      }, { maxRetries: 100 });
    } catch (e) {
      await store.close();
      throw e;
    }
    // Recorded in every prepare and looked up by other processes, whose working directory
    // may differ: absolute.
    const path = absolutePath(databaseInternals(store).platform, store.path);
    const coord = new Coordinator(path, store, id, options, prepareTimeoutMs, inDoubtTimeoutMs, retentionMs);
    await coord.recover().catch(() => {}); // best effort at open; the timer tries again
    if (recoverIntervalMs > 0) coord.#recoverTimer = armInterval(recoverIntervalMs, () => void coord.recover().catch(() => {}), { unref: true });
    return coord;
  }

  /** This coordinator's reference, as its participants' prepare records carry it. */
  #ref(): CoordinatorRef {
    const lease = databaseInternals(this.#store).leaseFile;
    if (!lease) throw new TxtDbError("IO", `Coordinator store "${this.path}" holds no lease for this process; close and open the coordinator again`);
    return { path: this.path, id: this.#id, lease };
  }

  #ensureOpen(): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Coordinator "${this.path}" is closed; open it again`);
  }

  /**
   * A fresh transaction id: this coordinator's identity (recovery decides only its own), this
   * process's lease (so recovery can tell whether the process that made it lives), a counter
   * and randomness. See parseTxid.
   */
  #newTxid(ref: CoordinatorRef): string {
    return `${this.#id}.${ref.lease.replace(/\.lease$/, "")}.${(++this.#counter).toString(36)}.${hex(this.#platform, 4)}`;
  }

  /**
   * Runs `fn` with one transaction per txtdb store in `participants` (other participants
   * receive themselves), then commits it in all of them or in none (two-phase commit; see
   * the module comment). Reruns `fn` on CONFLICT like `db.transaction()`. Resolves with
   * what `fn` returned once the commit decision is durable; rejects only when the
   * transaction is aborted everywhere (or will be, by recovery).
   *
   * @example
   * ```ts
   * await coord.transaction([orders, stock], async (o, s) => {
   *   s.sum("items", "x", -1);
   *   o.set("orders", "o-42", { item: "x" });
   * });
   * ```
   */
  async transaction<const P extends readonly (Database | TwoPhaseParticipant)[], T>(
    participants: P,
    fn: (...views: { -readonly [K in keyof P]: ParticipantView<P[K]> }) => Promise<T> | T,
    options: CoordinatedTransactionOptions = {},
  ): Promise<T> {
    this.#ensureOpen();
    checkParticipants(participants, "coord.transaction()'s participants");
    if (participants.length === 0) throw invalidArg("coord.transaction() needs at least one participant");
    const paths = new Set<string>();
    for (const p of participants) {
      if (!(p instanceof Database)) continue;
      // One directory through two handles ("./a" and "/abs/a"): compared as absolute paths.
      const path = absolutePath(this.#platform, p.path);
      // One directory through two paths (a symlink, a bind mount) is one directory: its
      // device and inode say so where it has them (an etcd store has no local directory).
      let dir: FileInfo | undefined;
      try {
        dir = p.path.includes("://") ? undefined : this.#platform.stat(path);
      } catch {
        dir = undefined;
      }
      const identity = dir?.isDirectory ? `${dir.dev}:${dir.ino}` : path;
      if (paths.has(identity) || paths.has(path)) throw invalidArg(`coord.transaction() lists store "${path}" twice (the same directory, perhaps through two handles or a symlink); list each store once`);
      paths.add(identity);
      // Its decision would conflict with its own prepared transaction until retries ran out.
      if (path === this.path) throw invalidArg(`coord.transaction() lists the coordinator's own store "${path}" as a participant; keep data in stores of their own`);
      if (p.readOnly) throw new TxtDbError("READ_ONLY", `Store "${p.path}" was opened with readOnly: true; it cannot take part in a transaction`);
      paths.add(path);
    }
    if (new Set(participants).size !== participants.length) throw invalidArg("coord.transaction() lists a participant twice");
    const checked = checkTransactionOptions(fn, options, "coord.transaction()", "coord.transaction()'s function");
    const run = this.#run(participants, fn as (...views: unknown[]) => Promise<T> | T, checked);
    this.#running.add(run);
    try {
      return await run;
    } catch (e) {
      this.#counts.aborted++;
      throw e;
    } finally {
      this.#running.delete(run);
    }
  }

  async #run<T>(participants: readonly Participant[], fn: (...views: unknown[]) => Promise<T> | T, options: ReturnType<typeof checkTransactionOptions>): Promise<T> {
    const platform = this.#platform;
    const maxRetries = options.maxRetries;
    const deadline = options.timeoutMs !== undefined ? platform.monotonicMs() + options.timeoutMs : undefined;
    const signal = options.signal;
    const timeoutError = (cause?: unknown) =>
      new TxtDbError("TIMEOUT", signalAborted(signal) ? "Transaction across stores was aborted by its signal" : `Transaction across stores did not reach its decision within ${options.timeoutMs} ms (timeoutMs)`, { cause });
    const left = () => (deadline === undefined ? undefined : deadline - platform.monotonicMs());
    const startedMs = platform.monotonicMs();
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) this.#counts.retries++;
      this.#ensureOpen();
      if (signalAborted(signal)) throw timeoutError(abortReason(signal));
      if (deadline !== undefined && platform.monotonicMs() >= deadline) throw timeoutError();
      const ref = this.#ref();
      const txid = this.#newTxid(ref);
      this.#inFlight.add(txid);
      try {
        const begun = await Promise.allSettled(participants.map((p) => (p instanceof Database ? p.begin(options.isolation ? { isolation: options.isolation } : {}) : Promise.resolve(undefined))));
        const txs = begun.map((b) => (b.status === "fulfilled" ? b.value : undefined));
        const refused = begun.find((b): b is PromiseRejectedResult => b.status === "rejected");
        if (refused) {
          for (const tx of txs) tx?.rollback();
          throw refused.reason;
        }
        let result: T;
        try {
          // fn gets each store's transaction without commit() and prepare(): the coordinator
          // does both, and a store committed (or prepared under another txid) from inside fn
          // broke the all-or-nothing.
          const views = participants.map((p, i) => {
            const tx = txs[i];
            return tx ? withoutCommit(tx, "Inside coord.transaction() the coordinator prepares and commits every store's transaction: return from the function instead of calling commit() or prepare()") : p;
          });
          result = await raceDeadline(Promise.resolve().then(() => fn(...views)), left(), signal, (cause) => ({ error: timeoutError(cause) }));
        } catch (e) {
          for (const tx of txs) tx?.rollback();
          if (isTxtDbError(e, "CONFLICT") && attempt < maxRetries) {
            await this.#backoff(attempt);
            continue;
          }
          throw e;
        }
        // Phase 1: prepare everywhere.
        const failure = await this.#prepareAll(participants, txs, txid, ref, left(), signal, timeoutError);
        if (failure !== undefined) {
          await this.#abortAll(participants, txid);
          if (isTxtDbError(failure, "CONFLICT") && attempt < maxRetries) {
            await this.#backoff(attempt);
            continue;
          }
          throw failure;
        }
        // The decision (rule 3): durable in the coordinator store, unless a resolver got in first.
        let outcome: "commit" | "abort";
        try {
          outcome = await this.#decideCommit(txid, participants);
        } catch (e) {
          // Not durable (a txtdb commit that fails never appears): presumed abort.
          await this.#abortAll(participants, txid);
          throw e;
        }
        if (outcome === "abort") {
          await this.#abortAll(participants, txid);
          throw new TxtDbError("TIMEOUT", `Transaction across stores "${txid}" was aborted by a resolver before its commit decision (in doubt past inDoubtTimeoutMs ${this.#inDoubtTimeoutMs} ms, or this coordinator's lease looked dead); nothing was committed`, { details: { txid } });
        }
        this.#counts.committed++;
        this.#decisionLatencyUs.record((platform.monotonicMs() - startedMs) * 1000);
        // Phase 2: commit everywhere; what fails now is finished by recovery.
        const unconfirmed = await this.#commitAll(participants, txid);
        if (unconfirmed === undefined) this.#completed(txid);
        else {
          this.#unfinished.add(txid);
          await this.#othersConfirmed(txid, unconfirmed);
        }
        return result;
      } finally {
        this.#inFlight.delete(txid);
      }
    }
  }

  async #backoff(attempt: number): Promise<void> {
    await this.#platform.sleep(randomFraction(this.#platform) * Math.min(100, 2 ** attempt));
  }

  /** Phase 1; returns the first failure (or TIMEOUT past prepareTimeoutMs), undefined if all prepared. */
  async #prepareAll(participants: readonly Participant[], txs: (Transaction | undefined)[], txid: string, ref: CoordinatorRef, leftMs: number | undefined, signal: AbortSignal | undefined, timeoutError: (cause?: unknown) => TxtDbError): Promise<unknown> {
    const prepares = participants.map((p, i) => {
      const tx = txs[i];
      return tx ? tx.prepare(txid, { coordinator: ref, inDoubtTimeoutMs: this.#inDoubtTimeoutMs }) : Promise.resolve().then(() => (p as TwoPhaseParticipant).prepare(txid));
    });
    const all = Promise.all(prepares.map((p) => p.then(() => undefined, (e: unknown) => ({ e }))));
    const limitMs = Math.min(this.#prepareTimeoutMs, leftMs ?? Infinity);
    try {
      const outcomes = await raceDeadline(all, limitMs, signal, (cause) => ({
        error: leftMs !== undefined && leftMs <= this.#prepareTimeoutMs || signalAborted(signal)
          ? timeoutError(cause)
          : new TxtDbError("TIMEOUT", `Transaction across stores "${txid}": not every participant prepared within ${this.#prepareTimeoutMs} ms (prepareTimeoutMs); it was aborted`, { details: { txid } }),
      }));
      const failed = outcomes.find((o) => o !== undefined);
      return failed?.e;
    } catch (e) {
      for (const tx of txs) tx?.rollback();
      return e;
    }
  }

  /** Rule 3: the commit decision, or "abort" if a resolver recorded one first. */
  async #decideCommit(txid: string, participants: readonly Participant[]): Promise<"commit" | "abort"> {
    const decision: DecisionValue = {
      outcome: "commit",
      atMs: this.#platform.wallClockMs(),
      participants: participants.filter((p): p is Database => p instanceof Database).map((p) => absolutePath(this.#platform, p.path)),
      others: participants.filter((p): p is TwoPhaseParticipant => !(p instanceof Database)).map((p, i) => diagnosticName(p.name, i)),
      by: "coordinator",
    };
    return await this.#store.transaction(async (tx) => {
      const decided = outcomeOf(await tx.get<unknown>(DECISIONS_NS, txid), txid);
      if (decided !== undefined) return decided;
      tx.set(DECISIONS_NS, txid, decision);
      return "commit" as const;
    }, { maxRetries: 100 });
  }

  /**
   * Calls a method of another participant, bounded by `prepareTimeoutMs`: a participant that
   * never settles must not hang a transaction already decided, a recovery pass, `open()` or
   * `close()`. A late call counts as failed (recovery tries it again).
   */
  #callOther<T>(p: TwoPhaseParticipant, what: string, call: () => T | Promise<T>): Promise<T> {
    return raceDeadline(Promise.resolve().then(call), this.#prepareTimeoutMs, undefined, () => ({
      error: new TxtDbError("TIMEOUT", `Participant ${JSON.stringify(p.name ?? "(unnamed)")}: ${what} did not settle within ${this.#prepareTimeoutMs} ms (prepareTimeoutMs); recovery tries again`),
    }));
  }

  /** Aborts `txid` everywhere, best effort (recovery and the participants' resolvers finish the rest). */
  async #abortAll(participants: readonly Participant[], txid: string): Promise<void> {
    await Promise.all(participants.map((p) => Promise.resolve().then(() => (p instanceof Database ? p.abortPrepared(txid) : this.#callOther(p, `abort("${txid}")`, () => p.abort(txid)))).catch(() => {})));
  }

  /**
   * Phase 2; undefined once every participant confirmed, else the names (as the decision
   * records them) of the other participants that did not.
   */
  async #commitAll(participants: readonly Participant[], txid: string): Promise<string[] | undefined> {
    const results = await Promise.all(participants.map((p) =>
      Promise.resolve().then((): Promise<unknown> => (p instanceof Database ? p.commitPrepared(txid) : this.#callOther(p, `commit("${txid}")`, () => p.commit(txid)))).then(() => true, (e: unknown) => {
        // Unknown: committed and forgotten already (the decision required it prepared).
        return isTxtDbError(e, "NOT_PREPARED") && e.details?.state === "unknown";
      })
    ));
    if (results.every(Boolean)) return undefined;
    const others = participants.map((p, i) => ({ p, ok: results[i] })).filter((x) => !(x.p instanceof Database));
    return others.flatMap((x, i) => (x.ok ? [] : [diagnosticName((x.p as TwoPhaseParticipant).name, i)]));
  }

  /**
   * Narrows the commit decision of `txid` to the other participants `left` that have not
   * confirmed it (recovery can ask only those given to Coordinator.open, and keeps the
   * decision until each it names confirmed). Best effort: if it fails, the decision names
   * them all, and stays until a handle that has them confirms.
   */
  async #othersConfirmed(txid: string, left: string[]): Promise<void> {
    try {
      await this.#store.transaction(async (tx) => {
        const d = await tx.get<unknown>(DECISIONS_NS, txid);
        if (!isDecision(d) || d.outcome !== "commit" || !Array.isArray(d.others) || d.others.length === left.length) return;
        tx.set(DECISIONS_NS, txid, { ...d, others: left });
      }, { maxRetries: 10 });
    } catch {
      // the decision keeps naming every other participant
    }
  }

  /** Rule 4: the decision of `txid` goes, lazily, with others. */
  #completed(txid: string): void {
    this.#done.push(txid);
    if (this.#flushing || this.#closed) return;
    this.#flushing = this.#platform.sleep(0).then(() => this.#flushDone()).finally(() => (this.#flushing = undefined));
  }

  async #flushDone(): Promise<void> {
    while (this.#done.length > 0) {
      const batch = this.#done.splice(0, DELETIONS_PER_COMMIT_MAX);
      try {
        await this.#store.transaction((tx) => {
          for (const txid of batch) tx.delete(DECISIONS_NS, txid);
        }, { isolation: "snapshot", maxRetries: 100 });
      } catch {
        return; // the decisions stay; recovery pushes them again (idempotent) and deletes them
      }
    }
  }

  // --- recovery ---

  /**
   * One recovery pass now (it also runs at open and every `recoverIntervalMs`): pushes
   * every commit decision to its participants, decides other participants' in-doubt
   * transactions, and deletes decisions no longer needed.
   *
   * @example
   * ```ts
   * const { committed, aborted, pending } = await coord.recover();
   * ```
   */
  recover(): Promise<RecoveryResult> {
    try {
      this.#ensureOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#recovering) return this.#recovering;
    this.#counts.recoveryPasses++;
    const pass = this.#recoverPass().then((r) => {
      this.#counts.recoveredCommitted += r.committed;
      this.#counts.recoveredAborted += r.aborted;
      return r;
    }).finally(() => (this.#recovering = undefined));
    this.#recovering = pass;
    return pass;
  }

  async #recoverPass(): Promise<RecoveryResult> {
    const result: RecoveryResult = { committed: 0, aborted: 0, pending: 0 };
    const now = this.#platform.wallClockMs();
    const decisions = new Map<string, DecisionValue>();
    for await (const e of this.#store.list<unknown>(DECISIONS_NS, { prefix: [] })) {
      if (typeof e.key === "string" && isDecision(e.value)) decisions.set(e.key, e.value);
    }
    const stale: string[] = [];
    const opened = new Map<string, Database | null>();
    // Commit decisions whose stores all confirmed but that name other participants: they go
    // only once those confirmed too (below), never by age (decisionRetentionMs is for aborts:
    // a commit decision deleted while a participant was down made its recovery presume abort).
    // Only participants with names of their own can be told apart (identifyingName): a
    // decision naming another kind is kept for decisionRetentionMs, as before.
    const awaitingOthers = new Map<string, string[]>();
    // Decisions another process deleted since this one listed them as unfinished.
    for (const txid of [...this.#unfinished]) if (!decisions.has(txid) && !this.#inFlight.has(txid)) this.#unfinished.delete(txid);
    try {
      for (const [txid, d] of decisions) {
        if (this.#closed) break;
        if (this.#inFlight.has(txid)) continue;
        if (d.outcome === "abort") {
          if (now - d.atMs > this.#retentionMs) stale.push(txid);
          continue;
        }
        // A live coordinator process finishes its own decisions: leave them to it for the
        // in-doubt timeout (its commits are under way; pushing them too would only repeat them).
        if (!this.#unfinished.has(txid) && now - d.atMs < this.#inDoubtTimeoutMs && this.#coordinatorAlive(txid)) continue;
        let all = true;
        // A damaged decision (fields missing or of the wrong type) must not stop the pass:
        // what cannot be read stays pending, and the decision stays in the log.
        const others: unknown[] = Array.isArray(d.others) ? d.others : [];
        for (const path of d.participants as unknown[]) {
          if (typeof path !== "string" || path.length === 0) {
            all = false;
            continue;
          }
          const db = await this.#participantStore(path, opened);
          if (!db) {
            all = false;
            continue;
          }
          try {
            await db.commitPrepared(txid);
          } catch (e) {
            if (!(isTxtDbError(e, "NOT_PREPARED") && e.details?.state === "unknown")) all = false;
          }
        }
        if (!all) {
          result.pending++;
        } else if (others.length > 0 && others.every((o) => typeof o === "string" && identifyingName(o))) {
          // Other participants are reached through inDoubt() below; the decision stays for them.
          awaitingOthers.set(txid, others as string[]);
        } else if (others.length > 0 || !Array.isArray(d.others)) {
          // Unnamed (or damaged): kept for decisionRetentionMs, pushed to whoever lists it meanwhile.
          if (now - d.atMs > this.#retentionMs) {
            stale.push(txid);
            this.#unfinished.delete(txid);
          } else {
            result.pending++;
          }
        } else {
          stale.push(txid);
          result.committed++;
          this.#unfinished.delete(txid);
        }
      }
      // Other participants: their in-doubt transactions of this coordinator. Per name (as
      // decisions record them), whether each participant so named answered, and the txids
      // it still holds in doubt after this pass.
      const answers = new Map<string, { answered: boolean; holds: Set<string> }>();
      for (const [i, p] of this.#others.entries()) {
        if (this.#closed) break;
        const name = diagnosticName(p.name, i);
        // Answers count only under a name that tells the participant apart (identifyingName).
        const answer = { answered: true, holds: new Set<string>() };
        if (identifyingName(name)) {
          const same = answers.get(name);
          if (same) answer.holds = same.holds; // two of one name: both must answer, and neither hold it
          answers.set(name, same && !same.answered ? same : answer);
        }
        let txids: unknown;
        try {
          txids = await this.#callOther(p, "inDoubt()", () => p.inDoubt());
        } catch {
          answer.answered = false;
          result.pending++;
          continue;
        }
        if (!Array.isArray(txids)) {
          answer.answered = false;
          result.pending++; // not the array of txids the protocol asks for: nothing to decide
          continue;
        }
        for (const txid of txids) {
          if (typeof txid !== "string") continue;
          answer.holds.add(txid); // until its commit or abort below succeeds
          if (this.#inFlight.has(txid)) continue;
          let outcome: "commit" | "abort" | undefined;
          try {
            outcome = await this.#othersDecision(txid, decisions.get(txid), now);
          } catch {
            result.pending++; // a damaged decision (CORRUPTION) or the log unreadable: stays in doubt
            continue;
          }
          if (outcome === undefined) continue;
          try {
            if (outcome === "commit") {
              await this.#callOther(p, `commit("${txid}")`, () => p.commit(txid));
              result.committed++;
            } else {
              await this.#callOther(p, `abort("${txid}")`, () => p.abort(txid));
              result.aborted++;
            }
            answer.holds.delete(txid);
          } catch {
            result.pending++;
          }
        }
      }
      // A commit decision naming other participants goes once every one it names answered
      // and holds it no more. One it names that this handle was not given (Coordinator.open's
      // participants) cannot be asked: the decision stays for a handle that has it.
      for (const [txid, names] of awaitingOthers) {
        const confirmed = names.length > 0 && names.every((name) => {
          const answer = answers.get(name);
          return answer !== undefined && answer.answered && !answer.holds.has(txid);
        });
        if (confirmed) {
          stale.push(txid);
          this.#unfinished.delete(txid);
        } else {
          this.#unfinished.add(txid);
          result.pending++;
        }
      }
      for (const txid of this.#firstSeen.keys()) if (now - this.#firstSeen.get(txid)! > 10 * this.#inDoubtTimeoutMs + this.#retentionMs) this.#firstSeen.delete(txid);
      if (stale.length > 0) {
        for (let i = 0; i < stale.length; i += DELETIONS_PER_COMMIT_MAX) {
          const batch = stale.slice(i, i + DELETIONS_PER_COMMIT_MAX);
          await this.#store.transaction((tx) => {
            for (const txid of batch) tx.delete(DECISIONS_NS, txid);
          }, { isolation: "snapshot", maxRetries: 100 });
        }
      }
    } finally {
      for (const db of opened.values()) await db?.close().catch(() => {});
    }
    return result;
  }

  /** A participant store for recovery, opened once per pass; null if it cannot be opened now. */
  async #participantStore(path: string, opened: Map<string, Database | null>): Promise<Database | null> {
    if (opened.has(path)) return opened.get(path)!;
    let db: Database | null = null;
    try {
      if (this.#platform.stat(joinPath(path, "MANIFEST"))) db = await open(path, this.#adapter ? { adapter: this.#adapter } : {});
    } catch {
      db = null;
    }
    opened.set(path, db);
    return db;
  }

  /**
   * The decision for another participant's in-doubt `txid`: the log's, else (presumed
   * abort) an abort recorded first once its coordinator process is dead or it was in doubt
   * past the timeout; undefined while it may still be running, or if it is not ours.
   */
  async #othersDecision(txid: string, logged: DecisionValue | undefined, now: number): Promise<"commit" | "abort" | undefined> {
    if (logged) return logged.outcome;
    // Not a txid of this coordinator's making: another coordinator (sharing this participant)
    // decides it, from its own log. Deciding it here, with no decision in this log, recorded
    // an abort of a transaction the other one committed. Only a decision in this log is
    // followed (one damaged past isDecision, or of a txid made before txids named their
    // coordinator); an unreadable one throws CORRUPTION and stays in doubt.
    if (parseTxid(txid)?.coordinator !== this.#id && leaseOfOldTxid(txid) === undefined) return outcomeOf(await this.#store.get<unknown>(DECISIONS_NS, txid), txid);
    let first = this.#firstSeen.get(txid);
    if (first === undefined) this.#firstSeen.set(txid, (first = now));
    const alive = this.#coordinatorAlive(txid);
    if (alive && now - first < this.#inDoubtTimeoutMs) return undefined;
    const outcome = await abortUnlessCommitted(this.#store, txid, now);
    this.#firstSeen.delete(txid);
    return outcome;
  }

  /** True if the coordinator process that made `txid` (its lease in this store) is alive. */
  #coordinatorAlive(txid: string): boolean {
    const lease = parseTxid(txid)?.lease ?? leaseOfOldTxid(txid);
    return lease !== undefined && leaseOwnerAlive(this.#platform, joinPath(this.path, "leases", `${lease}.lease`));
  }

  /**
   * Counters and figures of this handle (a plain object), and how many decisions the
   * coordinator store holds now. Synchronous, like `db.stats()`.
   *
   * @example
   * ```ts
   * const { committed, aborted, unfinished, decisionsLogged } = coord.stats();
   * ```
   */
  stats(): CoordinatorStats {
    this.#ensureOpen();
    return {
      path: this.path,
      ...this.#counts,
      inFlight: this.#inFlight.size,
      unfinished: this.#unfinished.size,
      decisionsLogged: databaseInternals(this.#store).countNow(DECISIONS_NS, []),
      decisionLatencyUs: this.#decisionLatencyUs.summary(),
    };
  }

  /** {@link stats} in the Prometheus text exposition format (labels: `store`, the coordinator's directory). */
  metrics(): string {
    const s = this.stats();
    const { counter: c, gauge: g } = metricMakers("txtdb_coordinator_");
    return renderPrometheus([
      c("committed_total", "Transactions across stores this coordinator committed.", s.committed),
      c("aborted_total", "Transactions across stores this coordinator ended without a commit.", s.aborted),
      c("retries_total", "Reruns after CONFLICT.", s.retries),
      g("in_flight", "Transactions across stores running now.", s.inFlight),
      g("unfinished", "Commit decisions not yet confirmed by every participant.", s.unfinished),
      g("decisions_logged", "Decisions in the coordinator store's log.", s.decisionsLogged),
      c("recovery_passes_total", "Recovery passes run.", s.recoveryPasses),
      c("recovered_committed_total", "Commits recovery pushed to participants.", s.recoveredCommitted),
      c("recovered_aborted_total", "In-doubt transactions recovery aborted.", s.recoveredAborted),
      { name: "txtdb_coordinator_decision_latency_seconds", help: "From transaction() to its commit decision, reruns included.", type: "summary", histogram: this.#decisionLatencyUs, scale: 1e-6 },
    ], { store: this.path });
  }

  /** Waits for the transactions under way, deletes finished decisions, and closes the coordinator store. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.allSettled([...this.#running]);
    this.#recoverTimer?.cancel();
    await this.#recovering?.catch(() => {});
    this.#closed = true;
    await this.#flushing;
    await this.#flushDone();
    await this.#store.close();
  }

  /** Closes the coordinator: `await using coord = await Coordinator.open(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
