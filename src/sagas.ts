/**
 * Sagas: long-running work of several steps, each with a compensation, whose state lives in
 * the store so that it survives crashes and every process sees it. See docs/sagas.md.
 *
 * How a saga runs (the states and transitions are in sagastate.ts):
 * 1. `start()` writes the saga, unowned and due now, in one serializable transaction with
 *    its idempotency key's entry: two starts with one key, from any processes, make one saga
 *    (the loser of the race conflicts, reruns, and finds the winner's id).
 * 2. Every handle that defined the saga's name learns of it from the run index
 *    (`["run", name, id]`), which it watches (`db.watch`: woken by commits, no polling), and
 *    claims it when it is unowned and due, or owned by a runner whose lease is free: a
 *    serializable transaction writes this handle's lease id as owner and counts the try
 *    (sagastate.ts, rules 1 and 2). Only one claimer commits.
 * 3. The owner runs the try, then commits its outcome (checking it still owns the saga) and,
 *    in the same commit, starts the next try: each step's outcome is durable before the next
 *    step starts. A failed try with tries left gives the saga up until its backoff ends.
 * 4. Liveness: each runner holds a lease (liveness.ts: a file in `locks/` flock'd for the
 *    handle's life, dropped by the kernel when the process dies). A saga owned by another
 *    runner is looked at again every `resumeAfterMs / 2`: that timer is the only periodic
 *    one, since a death changes no file a watch could see; whether the owner is dead comes
 *    from its lease's lock, never from a clock.
 * 5. Steps never run twice at once for one saga: a try runs only under an owner whose lease
 *    is held, and ownership passes only when that lease is free, that is when the process
 *    that ran the try is gone. `close()` waits for tries under way and gives their sagas up.
 *
 * @module
 */
import type { Database } from "./db.ts";
import { databaseInternals } from "./db.ts";
import { decodeValue, encodeValue } from "./codec.ts";
import { describeInput, isTxtDbError, TxtDbError } from "./errors.ts";
import { LOCKS_DIR } from "./files.ts";
import type { Key } from "./keys.ts";
import { encodeKey, isWellFormedString } from "./keys.ts";
import { leaseOwnerAlive, ProcessLease } from "./liveness.ts";
import { dirModeOf, isSignalLike, readFields } from "./options.ts";
import { joinPath, randomFraction } from "./port.ts";
import type { Platform } from "./port.ts";
import { armTimer, raceDeadline, signalAborted } from "./timers.ts";
import type { Timer } from "./timers.ts";
import type { WatchEvent } from "./watch.ts";
import {
  checkDefinition,
  checkName,
  DEFAULT_RETRY,
  failureOf,
  IDEMPOTENCY_KEY_BYTES_MAX,
  invalid,
  resolvePolicy,
  retryDelayMs,
  storableMessage,
} from "./sagadefs.ts";
import type {
  SagaListFilter,
  SagaResultOptions,
  RetryPolicy,
  SagaContext,
  SagaDef,
  SagaEvent,
  SagaFailure,
  SagaInfo,
  SagaResult,
  SagasOptions,
  SagaStep,
  SagaStartOptions,
  SagaWatchFilter,
} from "./sagadefs.ts";
import {
  checkRecordRoom,
  currentPolicy,
  failedForGood,
  idemKey,
  infoOf,
  isFinal,
  isRecord,
  newRecord,
  outputUnstorable,
  resultOf,
  SAGA_STATUSES,
  sagaKey,
  statusPrefix,
  stepFailed,
  stepSucceeded,
  typeKey,
  writeRecord,
} from "./sagastate.ts";
import type { RunEntry, SagaRecord } from "./sagastate.ts";

export type {
  SagaListFilter,
  SagaResultOptions,
  RetryPolicy,
  SagaContext,
  SagaEvent,
  SagaFailure,
  SagaInfo,
  SagaResult,
  SagasOptions,
  SagaStatus,
  SagaStep,
  SagaStartOptions,
  SagaWatchFilter,
} from "./sagadefs.ts";

const DEFAULT_NAMESPACE = "sagas";
const DEFAULT_RESUME_AFTER_MS = 5_000;
const DEFAULT_CONCURRENCY = 16;
const CONCURRENCY_MAX = 10_000;
/** Conflicts a saga transaction reruns through (many processes starting one key at once). */
const TX_RETRIES_MAX = 200;
/** Times an outcome's commit is tried before the saga is left to a later claim. */
const OUTCOME_COMMITS_MAX = 5;
/** Wait before a failed claim or watch is tried again, in ms. */
const RECOVERY_DELAY_MS = 100;
const LEASE_ID = /^[0-9a-f]{16}$/;
const OPTION_FIELDS = ["namespace", "retry", "resumeAfterMs", "concurrency"];

interface Active extends RunEntry {
  name: string;
}

/** The last id's time and its rank within that ms, for every handle of this process. */
const idClock = { ms: 0, seq: 0 };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The options `v`, checked and each field read once (options.ts readFields): work from the copy. */
function checkOptionsObject(what: string, v: unknown, fields: string[]): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isPlainObject(v)) throw invalid(`${what} must be an object { ${fields.join(", ")} }; got ${v === null ? "null" : typeof v}`);
  return readFields(what, v, fields, (k) => invalid(`${what} has an unknown field ${JSON.stringify(k)}; the fields are ${fields.join(", ")}`));
}

function checkSignalArg(what: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!isSignalLike(signal)) throw invalid(`${what} signal must be an AbortSignal`);
  return signal as AbortSignal;
}

function checkId(id: unknown): string {
  if (typeof id !== "string" || id.length === 0 || id.length > 128 || !isWellFormedString(id)) throw invalid(`A saga id must be the string start() returned; got ${typeof id === "string" ? JSON.stringify(id.slice(0, 80)) : String(id)}`);
  return id;
}

function sameSteps(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** A deep copy, so that a step mutating its input or `ctx.results` changes nothing stored or seen by later steps. */
function copy<T>(v: T): T {
  return v === undefined || v === null || typeof v !== "object" ? v : structuredClone(v);
}

/**
 * The sagas of one namespace of a store, for one process: define them, start them, wait for
 * their results, list and watch them. A handle that defines a saga runs the sagas of that
 * name that are due, new, or left by a runner that died, in any process.
 *
 * @example
 * ```ts
 * const sagas = await Sagas.open(db, { namespace: "sagas" });
 * sagas.define("book-trip", [
 *   { name: "flight", run: (input, ctx) => bookFlight(input, ctx.idempotencyKey),
 *     compensate: (input, ctx) => cancelFlight(input, ctx.idempotencyKey) },
 *   { name: "hotel", run: (input, ctx) => bookHotel(input, ctx.idempotencyKey) },
 * ]);
 * const id = await sagas.start("book-trip", { who: "ada" }, { idempotencyKey: "order-42" });
 * const { status, output } = await sagas.result(id);
 * await sagas.close();
 * ```
 */
export class Sagas {
  /** The namespace holding the sagas' state. */
  readonly namespace: string;
  readonly #db: Database;
  readonly #platform: Platform;
  readonly #retry: RetryPolicy;
  readonly #resumeAfterMs: number;
  readonly #concurrency: number;
  readonly #defs = new Map<string, SagaDef>();
  /** Sagas not yet ended whose name this handle defined, as the run index says. */
  readonly #active = new Map<string, Active>();
  /** Sagas this handle is claiming or running, and the promise of that work. */
  readonly #running = new Map<string, Promise<void>>();
  /** Sagas left alone: their steps differ from this handle's definition. */
  readonly #skipped = new Set<string>();
  /**
   * Tries whose outcome this handle failed to record (#recordOutcome gave up), with why: the
   * next claim reports that cause, not a runner's death.
   */
  readonly #unrecorded = new Map<string, { status: string; index: number; attempt: number; cause: unknown }>();
  /** Runners found dead (a lease id is never reused). */
  readonly #deadOwners = new Set<string>();
  /** result() calls waiting, by saga id. */
  readonly #waiters = new Map<string, Set<(outcome: SagaRecord | Error) => void>>();
  readonly #abort = new AbortController();
  #lease: ProcessLease | undefined;
  #watchGeneration = 0;
  #watchStop: AbortController | undefined;
  /** Resolves once the internal watcher runs from a loaded state (undefined: not running). */
  #watchReady: Promise<void> | undefined;
  #dueTimer: Timer | undefined;
  #probeTimer: Timer | undefined;
  #registrations: Promise<unknown>[] = [];
  #closing: Promise<void> | undefined;

  private constructor(db: Database, namespace: string, retry: RetryPolicy, resumeAfterMs: number, concurrency: number) {
    this.#db = db;
    this.#platform = databaseInternals(db).platform;
    this.namespace = namespace;
    this.#retry = retry;
    this.#resumeAfterMs = resumeAfterMs;
    this.#concurrency = concurrency;
  }

  /**
   * Opens the sagas of `options.namespace` (default `"sagas"`) in `db`, creating the
   * namespace if missing (on a read-only handle it must exist; such a handle can list,
   * watch and wait for results, not define or start). The namespace should hold nothing else.
   *
   * @example
   * ```ts
   * const sagas = await Sagas.open(db, { namespace: "sagas", retry: { minDelayMs: 200 } });
   * ```
   */
  static async open(db: Database, options: SagasOptions = {}): Promise<Sagas> {
    if (typeof db !== "object" || db === null || typeof (db as Partial<Database>).transaction !== "function" || typeof (db as Partial<Database>).watch !== "function") {
      throw invalid("Sagas.open() needs an open Database (from open()) as its first argument");
    }
    databaseInternals(db, "Sagas.open()"); // UNSUPPORTED on etcd: sagas need two-phase commit's store

    const o = checkOptionsObject("Sagas.open() options", options, OPTION_FIELDS);
    const namespace = o.namespace === undefined ? DEFAULT_NAMESPACE : o.namespace;
    if (typeof namespace !== "string" || namespace.length === 0) throw invalid(`Sagas.open() namespace must be a non-empty string; got ${String(namespace)}`);
    const retry = resolvePolicy("Sagas.open() retry", o.retry, DEFAULT_RETRY);
    const resumeAfterMs = o.resumeAfterMs === undefined ? DEFAULT_RESUME_AFTER_MS : o.resumeAfterMs;
    if (typeof resumeAfterMs !== "number" || !(resumeAfterMs >= 1) || resumeAfterMs > 2 ** 31 - 1) {
      throw invalid(`Sagas.open() resumeAfterMs must be a number of ms from 1 to ${2 ** 31 - 1}; got ${String(resumeAfterMs)}`);
    }
    const concurrency = o.concurrency === undefined ? DEFAULT_CONCURRENCY : o.concurrency;
    if (typeof concurrency !== "number" || !Number.isInteger(concurrency) || concurrency < 1 || concurrency > CONCURRENCY_MAX) {
      throw invalid(`Sagas.open() concurrency must be an integer from 1 to ${CONCURRENCY_MAX}; got ${String(concurrency)}`);
    }
    if (!(await db.listNamespaces()).includes(namespace)) {
      if (db.readOnly) {
        throw new TxtDbError("NAMESPACE_NOT_FOUND", `Sagas.open(): namespace "${namespace}" does not exist and this handle is read-only; open the store writable once to create it`, { details: { ns: namespace } });
      }
      try {
        await db.createNamespace(namespace);
      } catch (e) {
        if (!isTxtDbError(e, "NAMESPACE_EXISTS")) throw e; // another process created it meanwhile
      }
    }
    const handle = new Sagas(db, namespace, retry, resumeAfterMs, concurrency);
    const counted = databaseInternals(db).sagaNamespaces;
    counted.set(namespace, (counted.get(namespace) ?? 0) + 1);
    return handle;
  }

  // --- defining and starting ---

  /**
   * Defines the saga `name`: its steps, run in order. From now on this handle runs the
   * sagas of that name, in any process's store writes: new ones, ones whose retry is due,
   * and ones whose runner died. Every process that runs them must define the same steps
   * (by name, in order); a handle leaves alone a saga started with other steps.
   *
   * Throws INVALID_ARGUMENT (a bad name, no steps, duplicate step names, a `run` or
   * `compensate` that is not a function, a bad retry policy, the name already defined
   * here), READ_ONLY, CLOSED.
   *
   * @example
   * ```ts
   * sagas.define("signup", [
   *   { name: "account", run: (input) => createAccount(input), compensate: (input) => deleteAccount(input),
   *     retry: { attempts: 5, minDelayMs: 500, maxDelayMs: 10_000 } },
   *   { name: "welcome", run: (input, ctx) => sendMail(input, ctx.idempotencyKey) },
   * ]);
   * ```
   */
  // deno-lint-ignore no-explicit-any
  define<I = any>(name: string, steps: SagaStep<I>[]): void {
    this.#ensureOpen();
    if (this.#db.readOnly) throw new TxtDbError("READ_ONLY", `Cannot define saga ${JSON.stringify(name)}: the database was opened read-only`);
    const def = checkDefinition(name, steps, this.#retry);
    if (!isWellFormedString(def.name) || def.stepNames.some((s) => !isWellFormedString(s))) {
      throw invalid(`define(${JSON.stringify(def.name)}): names must be well-formed Unicode (no lone surrogates)`);
    }
    if (this.#defs.has(def.name)) throw invalid(`Saga ${JSON.stringify(def.name)} is already defined on this handle; define each name once`);
    this.#lease ??= this.#takeLease();
    this.#defs.set(def.name, def);
    // Lets start() in processes that do not define it know the name; runners need not wait for it.
    const registration = this.#db.transaction((tx) => {
      tx.set(this.namespace, typeKey(def.name), { steps: def.stepNames, definedAtMs: this.#platform.wallClockMs() });
    }, { maxRetries: TX_RETRIES_MAX }).catch(() => {});
    this.#registrations.push(registration);
    void registration.then(() => (this.#registrations = this.#registrations.filter((r) => r !== registration)));
    this.#restartWatch();
  }

  /** The names defined on this handle. */
  get defined(): string[] {
    return [...this.#defs.keys()];
  }

  /**
   * Starts a saga of `name` with `input` (any storable value; stored, so later changes to
   * the object change nothing) and resolves with its id once the saga is durable. With an
   * `idempotencyKey`, the first start (from any process) makes the saga and every later
   * one resolves with its id, whatever its input. `name` must be defined on this handle or
   * on some handle of the store (any process).
   *
   * Throws INVALID_ARGUMENT (an unknown name, a bad key, the key already used by a saga of
   * another name), INVALID_VALUE (an input that cannot be stored), READ_ONLY, CLOSED.
   *
   * @example
   * ```ts
   * const id = await sagas.start("book-trip", { who: "ada" }, { idempotencyKey: "order-42" });
   * ```
   */
  async start(name: string, input?: unknown, options: SagaStartOptions = {}): Promise<string> {
    this.#ensureOpen();
    checkName("start(): the saga's name", name);
    const o = checkOptionsObject("start() options", options, ["idempotencyKey"]);
    const key = o.idempotencyKey === undefined ? undefined : this.#checkIdempotencyKey(o.idempotencyKey);
    if (this.#db.readOnly) throw new TxtDbError("READ_ONLY", `Cannot start saga ${JSON.stringify(name)}: the database was opened read-only`);
    // Copied now, at the call (as enqueue does): the record is made after awaits, and a
    // rerun after a conflict makes it again; the caller may change the object meanwhile.
    const stored = input === undefined ? undefined : decodeValue(encodeValue(input, Number.MAX_SAFE_INTEGER));
    const ns = this.namespace;
    const def = this.#defs.get(name);
    const id = this.#newId();
    const got = await this.#db.transaction(async (tx) => {
      if (key !== undefined) {
        const existing = await tx.get<string>(ns, idemKey(key));
        if (typeof existing === "string") {
          const rec = await tx.get(ns, sagaKey(existing));
          if (isRecord(rec) && rec.name !== name) {
            throw invalid(`start(${JSON.stringify(name)}): idempotencyKey ${JSON.stringify(key)} already started saga ${existing} of another name (${JSON.stringify(rec.name)}); use one key per saga`);
          }
          return existing;
        }
      }
      let stepNames = def?.stepNames;
      if (!stepNames) {
        const registered = await tx.get<{ steps?: unknown }>(ns, typeKey(name));
        if (!isPlainObject(registered) || !Array.isArray(registered.steps)) {
          throw invalid(`start(): no saga is named ${JSON.stringify(name)}; define() it first (in this process or any process of the store)`);
        }
        stepNames = registered.steps.map(String);
      }
      const rec = newRecord(id, { name, stepNames }, stored, key ?? null, this.#platform.wallClockMs());
      // Rule 3 of sagastate.ts: an input that leaves the record no room for its first claim
      // would make a saga that never runs.
      checkRecordRoom(rec, this.#maxValueBytes(), true, `start(${JSON.stringify(name)}): the input is too big`);
      writeRecord(tx, ns, undefined, rec);
      if (key !== undefined) tx.set(ns, idemKey(key), id);
      return id;
    }, { maxRetries: TX_RETRIES_MAX });
    if (got === id && def && !this.#closing) {
      // The watcher would tell too; this saves its round trip.
      if (!this.#active.has(id)) this.#active.set(id, { name, owner: null, dueAtMs: 0 });
      this.#pump();
    }
    return got;
  }

  /**
   * A `start()` idempotency key, measured as the store measures keys: in bytes (UTF-8), at
   * most {@link IDEMPOTENCY_KEY_BYTES_MAX}, and within `maxKeyBytes` as the key of its
   * index entry. Checked here, so that a key of many-byte characters gets this message,
   * not INVALID_KEY from the commit.
   */
  #checkIdempotencyKey(key: unknown): string {
    const shown = typeof key === "string" ? JSON.stringify(key.length > 80 ? key.slice(0, 80) + "…" : key) : String(key);
    if (typeof key !== "string" || key.length === 0 || !isWellFormedString(key)) {
      throw invalid(`start() idempotencyKey must be a non-empty string of well-formed Unicode (no lone surrogates), at most ${IDEMPOTENCY_KEY_BYTES_MAX} bytes in UTF-8; got ${shown}`);
    }
    const bytes = key.length * 3 <= IDEMPOTENCY_KEY_BYTES_MAX ? key.length : new TextEncoder().encode(key).length;
    if (bytes > IDEMPOTENCY_KEY_BYTES_MAX) {
      throw invalid(`start() idempotencyKey is ${bytes} bytes in UTF-8 (${key.length} UTF-16 units); at most ${IDEMPOTENCY_KEY_BYTES_MAX} bytes are allowed (characters beyond ASCII take 2 to 4 bytes each): use a shorter key, or a hash of it; got ${shown}`);
    }
    const maxKeyBytes = databaseInternals(this.#db).limits.maxKeyBytes;
    try {
      encodeKey(idemKey(key), maxKeyBytes);
    } catch (e) {
      if (!isTxtDbError(e, "INVALID_KEY")) throw e;
      throw invalid(`start() idempotencyKey (${bytes} bytes in UTF-8) makes a store key over this store's maxKeyBytes (${maxKeyBytes}): ${(e as Error).message}; use a shorter key, or a hash of it`);
    }
    return key;
  }

  // --- results, lists, watching ---

  /**
   * Waits until the saga ends and resolves with its outcome: `{ status: "completed",
   * output }`, `{ status: "compensated", output, error }` (`output`: the steps that had
   * completed; `error`: the step failure that made it compensate) or `{ status: "failed",
   * output, error, compensationErrors }` (a compensation failed after its retries too: a
   * person must look). Works from any process, for sagas any process runs.
   *
   * Throws INVALID_ARGUMENT (no saga has this id), TIMEOUT (`timeoutMs` passed or `signal`
   * aborted), CLOSED (the handle closed while waiting).
   *
   * @example
   * ```ts
   * const r = await sagas.result(id, { timeoutMs: 60_000 });
   * if (r.status !== "completed") console.error(r.error);
   * ```
   */
  async result(id: string, options: SagaResultOptions = {}): Promise<SagaResult> {
    this.#ensureOpen();
    checkId(id);
    const o = checkOptionsObject("result() options", options, ["timeoutMs", "signal"]);
    const timeoutMs = o.timeoutMs;
    if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || !(timeoutMs >= 0))) throw invalid(`result() timeoutMs must be a non-negative number of ms; got ${String(timeoutMs)}`);
    const signal = checkSignalArg("result()", o.signal);
    let resolveEnd!: (rec: SagaRecord) => void;
    let rejectEnd!: (e: unknown) => void;
    const ended = new Promise<SagaRecord>((resolve, reject) => {
      resolveEnd = resolve;
      rejectEnd = reject;
    });
    const waiter = (outcome: SagaRecord | Error) => (outcome instanceof Error ? rejectEnd(outcome) : resolveEnd(outcome));
    let set = this.#waiters.get(id);
    if (!set) this.#waiters.set(id, (set = new Set()));
    set.add(waiter);
    try {
      // The watcher runs before the read: whatever the read misses, the watcher delivers.
      await this.#ensureWatch();
      const rec = await this.#db.get(this.namespace, sagaKey(id));
      if (!isRecord(rec)) throw invalid(`result(): no saga has id ${JSON.stringify(id)} in namespace "${this.namespace}"`);
      const final = isFinal(rec.status)
        ? rec
        : await raceDeadline(ended, timeoutMs, signal, (cause) => ({
          error: new TxtDbError("TIMEOUT", `result(): saga ${id} had not ended ${signalAborted(signal) ? "when the signal aborted" : `after ${timeoutMs} ms`}`, { cause, details: { id } }),
        }));
      return resultOf(final);
    } finally {
      set.delete(waiter);
      if (set.size === 0) this.#waiters.delete(id);
      this.#maybeStopWatch();
    }
  }

  /**
   * One saga as {@link Sagas.list} shows it, or undefined if no saga has this id.
   *
   * @example
   * ```ts
   * const info = await sagas.get(id); // { status: "running", step: "hotel", attempts: 2, ... }
   * ```
   */
  async get(id: string): Promise<SagaInfo | undefined> {
    this.#ensureOpen();
    checkId(id);
    const rec = await this.#db.get(this.namespace, sagaKey(id));
    return isRecord(rec) ? infoOf(rec) : undefined;
  }

  /**
   * The sagas of the namespace, oldest first, read at one version: all of them, or those
   * in `status`, of `name`, at most `limit`.
   *
   * @example
   * ```ts
   * await sagas.list({ status: "running" }); // [{ id, name, status, step, attempts, updatedAtMs, ... }]
   * ```
   */
  async list(filter: SagaListFilter = {}): Promise<SagaInfo[]> {
    this.#ensureOpen();
    const f = checkOptionsObject("list() filter", filter, ["status", "name", "limit"]);
    const status = f.status;
    if (status !== undefined && !["running", "compensating", "completed", "compensated", "failed"].includes(status as string)) {
      throw invalid(`list() status must be one of "running", "compensating", "completed", "compensated", "failed"; got ${describeInput(status)}`);
    }
    if (f.name !== undefined) checkName("list() name", f.name);
    const limit = f.limit === undefined ? Infinity : f.limit;
    if (typeof limit !== "number" || !(limit >= 0) || (limit !== Infinity && !Number.isInteger(limit))) throw invalid(`list() limit must be a non-negative integer; got ${String(limit)}`);
    const out: SagaInfo[] = [];
    if (limit === 0) return out;
    const snap = await this.#db.snapshot();
    try {
      const take = (rec: unknown): boolean => {
        if (!isRecord(rec) || (f.name !== undefined && rec.name !== f.name) || (status !== undefined && rec.status !== status)) return true;
        out.push(infoOf(rec));
        return out.length < limit;
      };
      if (status !== undefined) {
        let ids: string[] = [];
        const flush = async () => {
          const recs = await snap.getMany(this.namespace, ids.map(sagaKey));
          ids = [];
          for (const r of recs) if (!take(r)) return false;
          return true;
        };
        for await (const e of snap.list<string>(this.namespace, { prefix: ["status", status as string] })) {
          if (f.name !== undefined && e.value !== f.name) continue;
          ids.push(String((e.key as Key[])[2]));
          if (ids.length >= 256 && !(await flush())) return out;
        }
        await flush();
      } else {
        for await (const e of snap.list(this.namespace, { prefix: ["saga"] })) if (!take(e.value)) break;
      }
      return out;
    } finally {
      snap.release();
    }
  }

  /**
   * Events for every change of a saga (each try started, each step's outcome, the end),
   * from any process, in commit order: all sagas, or one `id`, or one `name`. Each event is
   * the saga as {@link Sagas.list} shows it, with the commit's `version`; pass the last one
   * as `fromVersion` to resume without missing or repeating one. `return()` or `signal`
   * stops it. Throws WATCH_OVERFLOW (from `next()`) when the consumer falls too far behind.
   *
   * @example
   * ```ts
   * for await (const e of sagas.watch({ name: "book-trip" })) console.log(e.id, e.status, e.step);
   * ```
   */
  watch(filter: SagaWatchFilter = {}): AsyncIterableIterator<SagaEvent> {
    this.#ensureOpen();
    const f = checkOptionsObject("watch() filter", filter, ["id", "name", "fromVersion", "signal"]);
    const id = f.id === undefined ? undefined : checkId(f.id);
    const name = f.name === undefined ? undefined : checkName("watch() name", f.name);
    const signal = checkSignalArg("watch()", f.signal);
    const opts: { fromVersion?: bigint; signal?: AbortSignal } = {};
    if (f.fromVersion !== undefined) opts.fromVersion = f.fromVersion as bigint;
    if (signal) opts.signal = signal;
    const inner = this.#db.watch(this.namespace, id === undefined ? { prefix: ["saga"] } : { keys: [sagaKey(id)] }, opts);
    const pending: SagaEvent[] = [];
    const iterator: AsyncIterableIterator<SagaEvent> = {
      async next(): Promise<IteratorResult<SagaEvent>> {
        for (;;) {
          const ready = pending.shift();
          if (ready) return { value: ready, done: false };
          const r = await inner.next();
          if (r.done) return { value: undefined, done: true };
          for (const c of r.value.changes) {
            if (!isRecord(c.value) || (name !== undefined && c.value.name !== name)) continue;
            pending.push({ ...infoOf(c.value), version: r.value.version });
          }
        }
      },
      async return(): Promise<IteratorResult<SagaEvent>> {
        pending.length = 0;
        await inner.return?.();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  // --- closing ---

  /**
   * Stops running sagas here: aborts `ctx.signal`, waits for the tries under way, records
   * their outcomes and gives their sagas up (another handle that defined them goes on at
   * once), and fails waiting `result()` calls with CLOSED. The database stays open.
   * Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort(new TxtDbError("CLOSED", "The Sagas handle was closed"));
      this.#dueTimer?.cancel();
      this.#probeTimer?.cancel();
      this.#stopWatch();
      await Promise.allSettled([...this.#running.values(), ...this.#registrations]);
      const closed = new TxtDbError("CLOSED", `The Sagas handle of namespace "${this.namespace}" was closed while result() waited`);
      for (const set of this.#waiters.values()) for (const w of set) w(closed);
      this.#waiters.clear();
      this.#active.clear();
      this.#unrecorded.clear();
      const counted = databaseInternals(this.#db).sagaNamespaces;
      const handles = (counted.get(this.namespace) ?? 1) - 1;
      if (handles > 0) counted.set(this.namespace, handles);
      else counted.delete(this.namespace);
      try {
        this.#lease?.release(this.#platform);
      } catch {
        // a lease file left behind is a dead runner's once this process ends; swept later
      }
      this.#lease = undefined;
    })();
    return this.#closing;
  }

  /** `await using sagas = await Sagas.open(db)` closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- internals ---

  #ensureOpen(): void {
    if (this.#closing) throw new TxtDbError("CLOSED", `The Sagas handle of namespace "${this.namespace}" is closed; open it again`);
  }

  /** This handle's runner lease (in the store's `locks/`, beside the lock owners' leases). */
  #takeLease(): ProcessLease {
    const dir = joinPath(this.#db.path, LOCKS_DIR);
    try {
      // The store's own modes, as the lock owners' leases beside them get: the directory's
      // mode may be wider than the store's (a directory made before the store, 0o755).
      const mode = databaseInternals(this.#db).fileMode;
      this.#platform.mkdir(dir, dirModeOf(mode));
      return ProcessLease.create(this.#platform, dir, mode);
    } catch (e) {
      throw new TxtDbError("IO", `Taking a saga runner's lease in "${dir}" failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  /**
   * Time first, so that ids (and list()) follow start order: across processes to the ms,
   * within a process exactly (a counter orders the ids of one ms, and the clock going back
   * does not reorder them). The random part keeps processes apart.
   */
  #newId(): string {
    const bytes = new Uint8Array(6);
    this.#platform.randomBytes(bytes);
    const ms = Math.max(Math.floor(this.#platform.wallClockMs()), idClock.ms);
    idClock.seq = ms === idClock.ms ? idClock.seq + 1 : 0;
    idClock.ms = ms;
    return ms.toString(36).padStart(9, "0") + "-" + idClock.seq.toString(36).padStart(4, "0") + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  #maxValueBytes(): number {
    return databaseInternals(this.#db).limits.maxValueBytes;
  }

  #random(): number {
    return randomFraction(this.#platform);
  }

  /** True while the runner holding lease `owner` lives (its lease's lock is held). */
  #alive(owner: string): boolean {
    if (owner === this.#lease?.id) return true;
    if (this.#deadOwners.has(owner)) return false;
    // An id that is not a lease id (a damaged record) names no live runner; it never becomes a path.
    const alive = LEASE_ID.test(owner) && leaseOwnerAlive(this.#platform, joinPath(this.#db.path, LOCKS_DIR, owner + ".lease"));
    if (!alive) this.#deadOwners.add(owner);
    return alive;
  }

  // The internal watcher: the run index for scheduling, the records for result().

  #ensureWatch(): Promise<void> {
    return this.#watchReady ?? this.#restartWatch();
  }

  #maybeStopWatch(): void {
    if (this.#defs.size === 0 && this.#waiters.size === 0) this.#stopWatch();
  }

  #stopWatch(): void {
    this.#watchGeneration++;
    this.#watchStop?.abort();
    this.#watchStop = undefined;
    this.#watchReady = undefined;
  }

  /**
   * (Re)starts the watcher from a snapshot: loads the run index of the defined names and
   * the records result() waits for at the snapshot, then watches from its version, so
   * nothing between is missed.
   */
  #restartWatch(): Promise<void> {
    this.#stopWatch();
    const generation = this.#watchGeneration;
    const stop = (this.#watchStop = new AbortController());
    const ready = (async () => {
      const snap = await this.#db.snapshot();
      let from: bigint;
      try {
        if (generation !== this.#watchGeneration) return;
        const active = new Map<string, Active>();
        for (const name of this.#defs.keys()) {
          for await (const e of snap.list<RunEntry>(this.namespace, { prefix: ["run", name] })) {
            const id = (e.key as Key[])[2];
            if (typeof id === "string" && isPlainObject(e.value)) active.set(id, { name, owner: e.value.owner ?? null, dueAtMs: Number(e.value.dueAtMs) || 0 });
          }
        }
        for (const id of this.#waiters.keys()) {
          const rec = await snap.get(this.namespace, sagaKey(id));
          if (isRecord(rec) && isFinal(rec.status)) this.#deliver(rec);
        }
        if (generation !== this.#watchGeneration) return;
        this.#active.clear();
        for (const [id, a] of active) this.#active.set(id, a);
        from = snap.version;
      } finally {
        snap.release();
      }
      const events = this.#db.watch(this.namespace, { prefix: [] }, { fromVersion: from, signal: stop.signal });
      void this.#consume(events, generation);
      this.#pump();
    })();
    this.#watchReady = ready;
    ready.catch((e) => {
      if (this.#watchReady === ready) this.#watchReady = undefined;
      if (isTxtDbError(e, "NAMESPACE_NOT_FOUND")) this.#namespaceGone(e);
      else this.#recoverWatch(generation);
    });
    return ready;
  }

  async #consume(events: AsyncIterableIterator<WatchEvent>, generation: number): Promise<void> {
    try {
      for await (const ev of events) {
        if (generation !== this.#watchGeneration) return;
        for (const c of ev.changes) this.#onChange(c.key, c.value);
        this.#pump();
      }
    } catch (e) {
      if (generation !== this.#watchGeneration) return;
      if (isTxtDbError(e, "CLOSED")) return void this.close();
      if (isTxtDbError(e, "NAMESPACE_NOT_FOUND")) return this.#namespaceGone(e);
      // WATCH_OVERFLOW and the like: reload from a snapshot and go on.
      this.#recoverWatch(generation);
      return;
    }
    // Ended without our stop: the database was closed under this handle.
    if (generation === this.#watchGeneration) void this.close();
  }

  /** The namespace was dropped or renamed: nothing here can go on; waiting result() calls fail with the error. */
  #namespaceGone(e: TxtDbError): void {
    this.#stopWatch();
    this.#active.clear();
    for (const set of this.#waiters.values()) for (const w of set) w(e);
  }

  #recoverWatch(generation: number): void {
    if (this.#closing || generation !== this.#watchGeneration) return;
    armTimer(RECOVERY_DELAY_MS, () => {
      if (this.#closing || generation !== this.#watchGeneration) return;
      if (this.#defs.size > 0 || this.#waiters.size > 0) this.#restartWatch().catch(() => {});
    });
  }

  #onChange(key: Key, value: unknown): void {
    if (!Array.isArray(key)) return;
    const [kind, a, b] = key as unknown[];
    if (kind === "run" && typeof a === "string" && typeof b === "string" && this.#defs.has(a)) {
      if (value === undefined) {
        this.#active.delete(b);
        this.#skipped.delete(b);
      } else if (isPlainObject(value)) {
        this.#active.set(b, { name: a, owner: typeof value.owner === "string" ? value.owner : null, dueAtMs: Number(value.dueAtMs) || 0 });
      }
    } else if (kind === "saga" && typeof a === "string" && isRecord(value) && isFinal(value.status)) {
      this.#deliver(value);
    }
  }

  #deliver(rec: SagaRecord): void {
    const set = this.#waiters.get(rec.id);
    if (set) for (const w of [...set]) w(rec);
  }

  // Scheduling.

  /** Starts what is runnable here now; arms a timer for the next due retry and a probe of live foreign runners. */
  #pump(): void {
    if (this.#closing) return;
    this.#dueTimer?.cancel();
    this.#dueTimer = undefined;
    const now = this.#platform.wallClockMs();
    let nextDueMs = Infinity;
    let foreignRunners = false;
    const alive = new Map<string, boolean>();
    for (const [id, e] of this.#active) {
      if (this.#running.size >= this.#concurrency) break;
      if (this.#running.has(id) || this.#skipped.has(id)) continue;
      if (e.owner !== null && e.owner !== this.#lease?.id) {
        let a = alive.get(e.owner);
        if (a === undefined) alive.set(e.owner, (a = this.#alive(e.owner)));
        if (a) {
          foreignRunners = true;
          continue;
        }
      }
      if (e.dueAtMs > now) {
        nextDueMs = Math.min(nextDueMs, e.dueAtMs);
        continue;
      }
      this.#launch(id);
    }
    if (nextDueMs < Infinity) this.#dueTimer = armTimer(nextDueMs - now, () => this.#pump());
    // A runner's death changes no file: look at live foreign runners' leases again in a while.
    if (foreignRunners && !this.#probeTimer) {
      this.#probeTimer = armTimer(this.#resumeAfterMs / 2, () => {
        this.#probeTimer = undefined;
        this.#pump();
      });
    }
  }

  #launch(id: string): void {
    const work = this.#runSaga(id)
      .catch((e) => {
        if (isTxtDbError(e, "CLOSED")) return void this.close();
        if (isTxtDbError(e, "INVALID_VALUE") || isTxtDbError(e, "LIMIT")) {
          // A record too big to be claimed (written before start() kept room in it, or
          // with a smaller maxValueBytes): no later try would do better; say so once and
          // leave it, rather than try again every RECOVERY_DELAY_MS for ever.
          if (!this.#skipped.has(id)) console.error(`txtdb: saga ${id} cannot be claimed and is left alone: ${(e as Error).message}`);
          this.#skipped.add(id);
          return;
        }
        // A claim or outcome that could not be written: the saga stays runnable; look again soon.
        armTimer(RECOVERY_DELAY_MS, () => this.#pump());
      })
      .finally(() => {
        this.#running.delete(id);
        // On a later turn: a saga whose claim finds nothing to do must never relaunch in a
        // loop of microtasks (a claim that reads only settles without I/O).
        armTimer(0, () => this.#pump());
      });
    this.#running.set(id, work);
  }

  /**
   * Claims the saga (sagastate.ts rule 2) and starts its next try (rule 1); undefined if it
   * is not this handle's to run (then what was read is noted, so that the saga is not
   * launched again before its entry changes).
   */
  #claim(id: string): Promise<SagaRecord | undefined> {
    const ns = this.namespace;
    return this.#db.transaction(async (tx) => {
      const rec = await tx.get(ns, sagaKey(id));
      this.#note(id, rec);
      if (!isRecord(rec) || isFinal(rec.status)) return undefined;
      const def = this.#defs.get(rec.name);
      if (!def) return undefined;
      if (!sameSteps(def.stepNames, rec.steps)) {
        if (!this.#skipped.has(id)) {
          console.warn(`txtdb: saga ${id} (${JSON.stringify(rec.name)}) was started with steps ${JSON.stringify(rec.steps)}, but this process defines ${JSON.stringify(def.stepNames)}; it is left to a process with that definition`);
        }
        this.#skipped.add(id);
        return undefined;
      }
      const me = this.#lease!.id;
      if (rec.owner !== null && rec.owner !== me && this.#alive(rec.owner)) return undefined;
      const now = this.#platform.wallClockMs();
      if (rec.dueAtMs > now) return undefined;
      const next: SagaRecord = { ...rec, results: [...rec.results], compensationErrors: [...rec.compensationErrors] };
      // The previous owner died during a try, or this handle gave up writing its outcome.
      // If that was the last try allowed, the step failed for good.
      const lost = rec.owner === null ? undefined : this.#lostTry(def, rec);
      if (lost && next.attempt >= currentPolicy(def, next).attempts) failedForGood(def, next, lost);
      else if (lost && rec.owner === me) next.lastError = lost; // the cause, while the next try runs
      if (!isFinal(next.status)) {
        next.attempt++;
        next.owner = me;
        next.ownerPid = this.#platform.pid;
        next.ownerRuntime = this.#platform.runtime;
        next.dueAtMs = 0;
      }
      next.updatedAtMs = now;
      writeRecord(tx, ns, rec, next);
      return isFinal(next.status) ? undefined : next;
    }, { maxRetries: TX_RETRIES_MAX }).then((claimed) => {
      this.#unrecorded.delete(id); // told, or its try superseded
      if (!claimed) void this.#db.get(ns, sagaKey(id)).then((rec) => this.#note(id, rec), () => {});
      return claimed;
    });
  }

  /**
   * Why the try `rec` stands at has no outcome, though an owner claimed it: its owner's
   * process died, or (owned by this handle) its outcome could not be recorded, for the
   * cause #recordOutcome met.
   */
  #lostTry(def: SagaDef, rec: SagaRecord): SagaFailure {
    const step = def.steps[rec.index]!.name;
    const phase = rec.status === "running" ? "run" : "compensate";
    const what = `try ${rec.attempt} of ${phase === "run" ? "step" : "the compensation of step"} ${JSON.stringify(step)}`;
    if (rec.owner !== this.#lease?.id) {
      return { step, phase, attempts: rec.attempt, name: "SagaRunnerLost", message: `The process running ${what} (pid ${rec.ownerPid ?? "?"}, ${rec.ownerRuntime ?? "?"}) died before its outcome was recorded` };
    }
    const u = this.#unrecorded.get(rec.id);
    if (!u || u.status !== rec.status || u.index !== rec.index || u.attempt !== rec.attempt) {
      return { step, phase, attempts: rec.attempt, name: "SagaOutcomeNotRecorded", message: `This process (pid ${this.#platform.pid}) ran ${what}, but its outcome was not recorded` };
    }
    const cause = failureOf(u.cause, step, phase, rec.attempt);
    return { ...cause, message: storableMessage(`This process (pid ${this.#platform.pid}) ran ${what}, but recording its outcome failed (${OUTCOME_COMMITS_MAX} commits), so it counts as failed: ${cause.message}`) };
  }

  /** Brings this handle's view of a saga's run entry up to `rec` (the watcher may not have told yet). */
  #note(id: string, rec: unknown): void {
    if (!isRecord(rec) || isFinal(rec.status) || !this.#defs.has(rec.name)) this.#active.delete(id);
    else this.#active.set(id, { name: rec.name, owner: rec.owner, dueAtMs: rec.dueAtMs });
  }

  async #runSaga(id: string): Promise<void> {
    let rec = await this.#claim(id);
    while (rec && !isFinal(rec.status)) {
      if (this.#closing) return await this.#giveUp(rec);
      const def = this.#defs.get(rec.name)!;
      const step = def.steps[rec.index]!;
      const phase = rec.status === "running" ? "run" : "compensate";
      const fn = phase === "run" ? step.run : step.compensate;
      if (!fn) {
        // The saga began compensating under a definition with this compensation; this
        // handle's definition (same steps, by name) has none. Nothing here can undo the step.
        const e = new TxtDbError("INVALID_ARGUMENT", `Saga ${rec.id} (${JSON.stringify(rec.name)}) must compensate step ${JSON.stringify(step.name)}, but this process defines that step without a compensate function: the definition changed while the saga was under way. The step stays undone and the saga ends as failed: undo it by hand, and keep a step's compensate in the definition while sagas that completed the step may still compensate it`, { details: { id: rec.id, saga: rec.name, step: step.name } });
        rec = await this.#recordOutcome(def, rec, false, undefined, e, "for-good");
        continue;
      }
      const results = rec.results.slice(0, rec.done);
      const ctx: SagaContext = Object.freeze({
        sagaId: rec.id,
        saga: rec.name,
        step: step.name,
        phase,
        attempt: rec.attempt,
        idempotencyKey: `${rec.id}/${step.name}`,
        results: Object.fromEntries(results.map((v, i) => [rec!.steps[i]!, copy(v)])),
        signal: this.#abort.signal,
      });
      let ok = false;
      let output: unknown;
      let error: unknown;
      try {
        output = await fn(copy(rec.input), ctx);
        ok = true;
      } catch (e) {
        error = e;
      }
      // The run returned: its effect happened. An output that cannot be stored must not
      // pass for a failed try (a retry would do the effect again, and its output could not
      // be stored either); the step fails for good and is itself compensated.
      const unstorable = ok && phase === "run" ? this.#unstorableOutput(def, rec, output) : undefined;
      rec = unstorable
        ? await this.#recordOutcome(def, rec, false, undefined, unstorable, "output-unstorable")
        : await this.#recordOutcome(def, rec, ok, output, error);
    }
  }

  /**
   * Why the output a step's run returned cannot be stored in the saga's record (not a
   * value, or leaving too little of `maxValueBytes` free, sagastate.ts rule 3), or
   * undefined when it can: checked as the outcome's commit would check it, before it.
   */
  #unstorableOutput(def: SagaDef, ran: SagaRecord, output: unknown): TxtDbError | undefined {
    const trial: SagaRecord = { ...ran, results: [...ran.results] };
    stepSucceeded(def, trial, output);
    try {
      checkRecordRoom(trial, this.#maxValueBytes(), false, "The output is too big");
      return undefined;
    } catch (e) {
      return this.#unstorableError(def.steps[ran.index]!.name, ran, e);
    }
  }

  #unstorableError(step: string, ran: SagaRecord, cause: unknown): TxtDbError {
    const code = isTxtDbError(cause, "LIMIT") ? "LIMIT" : "INVALID_VALUE";
    const why = cause instanceof Error ? cause.message : String(cause);
    return new TxtDbError(code, `Step ${JSON.stringify(step)} of saga ${ran.id} returned (try ${ran.attempt}), but its output cannot be stored: ${why}. The step is not run again, since its effect has happened: the saga fails and compensates, starting with this step's own compensation. Return only storable data (no functions, symbols, Errors or class instances), and keep big data under a key of its own`, { cause });
  }

  /** Gives up a saga claimed for a try that will not run now (the handle is closing): the try is not counted. */
  async #giveUp(claimed: SagaRecord): Promise<void> {
    const ns = this.namespace;
    await this.#db.transaction(async (tx) => {
      const cur = await tx.get(ns, sagaKey(claimed.id));
      if (!isRecord(cur) || cur.owner !== this.#lease?.id || cur.attempt !== claimed.attempt || cur.index !== claimed.index || cur.status !== claimed.status) return;
      writeRecord(tx, ns, cur, { ...cur, owner: null, ownerPid: null, ownerRuntime: null, attempt: cur.attempt - 1, updatedAtMs: this.#platform.wallClockMs() });
    }, { maxRetries: TX_RETRIES_MAX });
  }

  /**
   * Commits a try's outcome, and starts the next try in the same commit unless the saga
   * waits, ended, or this handle is closing (then it gives the saga up). Undefined when the
   * saga is not this handle's any more. A failure (`ok` false) is retried while the policy
   * allows (`"retry"`), fails the step at once (`"for-good"`), or, for a run that returned
   * an output that cannot be stored, fails it at once with the step itself compensated
   * (`"output-unstorable"`, sagastate.ts outputUnstorable).
   */
  async #recordOutcome(def: SagaDef, ran: SagaRecord, ok: boolean, output: unknown, error: unknown, failure: "retry" | "for-good" | "output-unstorable" = "retry"): Promise<SagaRecord | undefined> {
    const ns = this.namespace;
    const me = this.#lease!.id;
    const step = def.steps[ran.index]!;
    const phase = ran.status === "running" ? "run" : "compensate";
    for (let commit = 1; ; commit++) {
      try {
        return await this.#db.transaction(async (tx) => {
          const cur = await tx.get(ns, sagaKey(ran.id));
          if (!isRecord(cur) || cur.owner !== me || cur.status !== ran.status || cur.index !== ran.index || cur.attempt !== ran.attempt) return undefined;
          const next: SagaRecord = { ...cur, results: [...cur.results], compensationErrors: [...cur.compensationErrors] };
          const now = this.#platform.wallClockMs();
          if (ok) {
            stepSucceeded(def, next, output);
            // Rule 3 of sagastate.ts: an output that leaves the record no room for what
            // comes later cannot be stored (checked before, by #unstorableOutput; again here
            // on the record as it stands now).
            checkRecordRoom(next, this.#maxValueBytes(), false, "The output is too big");
          } else if (failure === "output-unstorable") outputUnstorable(def, next, failureOf(error, step.name, phase, cur.attempt));
          else if (failure === "for-good") failedForGood(def, next, failureOf(error, step.name, phase, cur.attempt));
          else stepFailed(def, next, failureOf(error, step.name, phase, cur.attempt), now, retryDelayMs(currentPolicy(def, cur), cur.attempt, this.#random()));
          if (!isFinal(next.status) && next.owner === me) {
            if (this.#closing) {
              next.owner = null;
              next.ownerPid = null;
              next.ownerRuntime = null;
            } else {
              next.attempt++;
            }
          }
          next.updatedAtMs = now;
          writeRecord(tx, ns, cur, next);
          return next;
        }, { maxRetries: TX_RETRIES_MAX }).then((written) => {
          if (written) this.#note(ran.id, written);
          return written?.owner === me ? written : undefined;
        });
      } catch (e) {
        if (ok && (isTxtDbError(e, "INVALID_VALUE") || isTxtDbError(e, "LIMIT"))) {
          ok = false;
          if (phase === "run") {
            // The commit itself refused the output (what #unstorableOutput did not foresee):
            // as there, the step fails for good and is itself compensated, never run again.
            error = this.#unstorableError(step.name, ran, e);
            failure = "output-unstorable";
          } else {
            // A compensation's output is not kept: the record itself could not be written.
            error = e;
          }
          continue;
        }
        if (isTxtDbError(e, "CLOSED")) throw e;
        if (commit >= OUTCOME_COMMITS_MAX) {
          // The saga stays claimed by this handle: its next claim counts the try as failed,
          // for this cause (#lostTry).
          this.#unrecorded.set(ran.id, { status: ran.status, index: ran.index, attempt: ran.attempt, cause: e });
          throw e;
        }
        await this.#platform.sleep(RECOVERY_DELAY_MS * commit);
      }
    }
  }
}

/** One saga `txtdb doctor` flags: it has not ended and no live process runs it. */
export interface StuckSaga {
  id: string;
  name: string;
  status: string;
  step: string | null;
  reason: string;
}

/** What `txtdb doctor` reports about the sagas of one namespace. */
export interface SagaHealth {
  namespace: string;
  counts: Record<string, number>;
  stuck: StuckSaga[];
  /** Sagas not yet ended, looked at (at most `lookMax`). */
  looked: number;
}

/**
 * The sagas of namespace `ns`, for diagnosis (`txtdb doctor`): how many in each state, and
 * those that have not ended while no live process runs them: owned by a runner whose lease
 * is free (its process died, and no live process that defines the saga took it over), or
 * unowned and due for more than `lateMs` (no live process defines it). Undefined when the
 * namespace holds no sagas. Reads only; the liveness of runners comes from their leases.
 */
export async function inspectSagas(db: Database, ns: string, options: { lateMs?: number; lookMax?: number } = {}): Promise<SagaHealth | undefined> {
  const lateMs = options.lateMs ?? 60_000;
  const lookMax = options.lookMax ?? 10_000;
  if ((await db.count(ns, { prefix: ["type"] })) === 0 && (await db.count(ns, { prefix: ["saga"] })) === 0) return undefined;
  const platform = databaseInternals(db).platform;
  const counts: Record<string, number> = {};
  for (const s of SAGA_STATUSES) counts[s] = await db.count(ns, { prefix: statusPrefix(s) });
  const stuck: StuckSaga[] = [];
  const alive = new Map<string, boolean>();
  const now = platform.wallClockMs();
  let looked = 0;
  for await (const e of db.list<RunEntry>(ns, { prefix: ["run"] }, { limit: lookMax })) {
    looked++;
    const id = (e.key as Key[])[2];
    if (typeof id !== "string" || !isPlainObject(e.value)) continue;
    const owner = typeof e.value.owner === "string" ? e.value.owner : null;
    let reason: string | undefined;
    if (owner !== null) {
      let a = alive.get(owner);
      if (a === undefined) alive.set(owner, (a = LEASE_ID.test(owner) && leaseOwnerAlive(platform, joinPath(db.path, LOCKS_DIR, owner + ".lease"))));
      if (!a) reason = "its runner's process died and no live process that defines it has taken it over";
    } else if (now - (Number(e.value.dueAtMs) || 0) > lateMs) {
      reason = `due for ${Math.round((now - (Number(e.value.dueAtMs) || 0)) / 1000)} s and no live process that defines it has taken it`;
    }
    if (!reason) continue;
    const rec = await db.get(ns, sagaKey(id));
    if (!isRecord(rec)) continue;
    const info = infoOf(rec);
    const runner = rec.ownerPid !== null ? ` (pid ${rec.ownerPid}, ${rec.ownerRuntime ?? "?"})` : "";
    stuck.push({ id, name: rec.name, status: rec.status, step: info.step, reason: reason.replace("its runner's process", `its runner's process${runner}`) });
  }
  return { namespace: ns, counts, stuck, looked };
}

/** {@link inspectSagas} of every namespace that holds sagas, in name order (`txtdb stats` and `doctor`). */
export async function inspectAllSagas(db: Database): Promise<SagaHealth[]> {
  const out: SagaHealth[] = [];
  for (const ns of await db.listNamespaces()) {
    const h = await inspectSagas(db, ns);
    if (h) out.push(h);
  }
  return out;
}
