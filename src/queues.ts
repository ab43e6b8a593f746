/**
 * Durable queues shared by every process and runtime that opens the store:
 * `db.enqueue`, `tx.enqueue`, `db.listenQueue`, `db.queueStats`, `db.deadLetters`,
 * `db.retryDead`. Records and the moves decided at the head are in queuestore.ts.
 *
 * Delivery, in order of what happens to a message:
 *
 * 1. Enqueue writes an `r` key in a commit (its own, or the user's transaction's). Its
 *    ready time is the head's clock plus `delayMs` (queuestore.ts rule 3).
 * 2. Listeners wake on the commit through the same change notification as `watch()` (the
 *    watch hub's file events on the store directory, WatchHub.subscribe: no log scan), and
 *    claim only if their view shows a ready message. A delayed message arms one timer per
 *    listener, for the earliest delayed message: no polling.
 * 3. A listener with free slots claims up to that many messages in one commit; the claim is
 *    decided at the head (queuestore.ts rule 2), so claims of several processes never
 *    conflict and never share a message. The listener runs the handlers.
 * 4. Outcomes (ack, failure) are collected and ride on the listener's next commit, which
 *    also claims for the slots they freed: one commit per round, whatever the concurrency,
 *    and the group commit shares one fsync among every process's commits of the moment.
 * 5. A failure puts the message back after a backoff (exponential with jitter from
 *    `retryDelayMs` to `retryDelayMaxMs`), or, past `maxAttempts`, on the dead list with
 *    its error.
 *
 * Who runs a message: the claim names its owner by the lease of the owner's database
 * handle (liveness.ts: a file flock'd for the handle's life, freed by the kernel when the
 * process dies). Every listener sweeps the queue's claims every {@link SWEEP_MS}: a
 * claim whose owner's lease can be locked (dead process, closed handle) or whose
 * deadline passed is given back, as a failed attempt. While a handler runs, its listener
 * renews its claim (moves the deadline to the head's clock plus the visibility timeout)
 * every third of that timeout, in its next round: a handler in a live process keeps its
 * message however slow it is, since the API promises one handler at a time. The deadline
 * passes only when renewals stop: the listener abandoned the handler at its stop, or its
 * commits failed that long. Past the visibility timeout a handler is presumed hung: its
 * `msg.signal` aborts and its slot is freed, its message still its own. An ack from a
 * handler whose claim was given back changes nothing, and a listener that gets back a
 * message whose earlier run it still runs waits for that run first.
 *
 * Claims start before their fsync. A listener calls the handlers of a claim as soon as the
 * claim is written to the log (under the writer lock), before its sync begins: the sync is a
 * blocking call, so a handler left to a promise would start only after it. The handlers run
 * while the sync is under way, and the listener forms its next round meanwhile (at most one
 * round of a listener waits for its sync). This
 * keeps every promise: every later claim of any process is decided at a head that includes
 * this one (claims never double up); if the machine dies before the sync, the claim is lost
 * with everything after the durable end, the message is still waiting, and it runs again
 * (at least once). Only a failed fsync (the store then refuses commits until a writable open
 * repairs its tail, tail.ts rule 7) can hand a message to a second handler while the first
 * still runs. The enqueue, by contrast, resolves only once durable, like every commit.
 *
 * Stopping (signal aborted, db.close()): the listener claims nothing more, waits for its
 * running handlers and commits their outcomes, then resolves. A handler still running
 * `visibilityTimeoutMs` after the stop is abandoned, its signal aborted (its claim, no longer renewed, is given back by the sweep
 * of any listener, at its deadline, or at once when the handle's lease goes with close).
 *
 * @module
 */
import { describeInput, isTxtDbError, TxtDbError } from "./errors.ts";
import { decodeKeyParts, encodeKey, isWellFormedString, prefixRange } from "./keys.ts";
import { decodeValue, encodeValue } from "./codec.ts";
import type { Index } from "./index.ts";
import type { Platform } from "./port.ts";
import { randomFraction } from "./port.ts";
import { FRAME_BODY_MAX_BYTES } from "./record.ts";
import { newTxState } from "./tx.ts";
import { checkTxBytes } from "./txstate.ts";
import type { Limits, TxState } from "./tx.ts";
import { armInterval, armTimer, listenAbort, signalAborted } from "./timers.ts";
import type { Timer } from "./timers.ts";
import { checkFunction, checkSignal, invalidArg, readFields } from "./options.ts";
import {
  claimEnd,
  claimFrom,
  decodeRecord,
  deadRange,
  FLOOR_RESET_MS,
  HeadWork,
  keyId,
  keyTime,
  MESSAGE_VALUE_BYTES_MAX,
  QUEUES_NS,
  readyEnd,
  readyFrom,
} from "./queuestore.ts";
import type { Claimed, HeadWriter, LiveClaim, Outcome, QueueError } from "./queuestore.ts";

export type { QueueError } from "./queuestore.ts";
export { QUEUES_NS } from "./queuestore.ts";

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** Listeners sweep their queue's claims (dead owners, passed visibility timeouts) this often. */
export const SWEEP_MS = 1_000;
/**
 * A listener renews the claims of its running handlers every third of `visibilityTimeoutMs`
 * (so that two renewals may fail before a claim lapses), and no more often than this.
 */
const RENEW_MS_MIN = 20;
/** Default `visibilityTimeoutMs`: a handler running this long in a live process is presumed hung. */
export const VISIBILITY_TIMEOUT_MS_DEFAULT = 30_000;
/** Default `maxAttempts`. */
export const MAX_ATTEMPTS_DEFAULT = 5;
/** Default `retryDelayMs` (first retry) and `retryDelayMaxMs` (cap). */
export const RETRY_DELAY_MS_DEFAULT = 1_000;
export const RETRY_DELAY_MAX_MS_DEFAULT = 60_000;
/** Default `dedupeWindowMs`: a dedupe key holds this long after its enqueue. */
export const DEDUPE_WINDOW_MS_DEFAULT = 10 * 60_000;
/** Longest queue name (characters). */
export const QUEUE_NAME_MAX = 256;
/** Longest dedupe key (characters). */
export const DEDUPE_KEY_MAX = 1024;
/** Longest delay, dedupe window, visibility timeout or retry delay: 365 days. */
const DURATION_MS_MAX = 365 * 86_400_000;
/** Most handlers one listener runs at once. */
export const CONCURRENCY_MAX = 4096;
/** Most claims one sweep looks at; most dead letters one retryDead commit moves; most dedupe keys one commit forgets. */
const SWEEP_CLAIMS_MAX = 100_000;
const RETRY_DEAD_BATCH = 1_000;
const DEDUPE_FORGET_BATCH = 1024;
/**
 * Most commits of forgetting one sweep makes (while each forgets a whole batch): 64 × 1,024
 * keys a second per listener, above what one process enqueues with dedupe keys (~17,000 a
 * second measured). One batch a second (256 keys, as before) fell behind any producer
 * faster than that, and the dedupe keys past their window piled up without bound.
 */
const DEDUPE_FORGET_COMMITS_MAX = 64;
/** After a failed round (I/O, lock timeout), a listener tries again this much later; twice as late after each further one, up to the max. */
const ROUND_RETRY_MS = 100;
const ROUND_RETRY_MAX_MS = 5_000;
/** Failed rounds in a row are told on the console once a minute. */
const ROUND_FAILURE_TELL_MS = 60_000;

/** Options of `enqueue()`. */
export interface EnqueueOptions {
  /** Milliseconds before the message becomes ready (default 0). */
  delayMs?: number;
  /**
   * A message enqueued under this key while an earlier one's window holds (see
   * `dedupeWindowMs`) is not enqueued again: enqueue resolves with `deduplicated: true`.
   */
  dedupeKey?: string;
  /** How long a dedupe key holds after its enqueue (default 10 minutes). */
  dedupeWindowMs?: number;
}

/** What `db.enqueue()` resolves to. */
export interface EnqueueResult {
  /** The message's id (also when deduplicated: the id this enqueue would have had). */
  id: string;
  /**
   * The version of the commit (when deduplicated: the head it was decided at). Enqueues in
   * flight at once may share one commit, and so one version.
   */
  version: bigint;
  /** True when the dedupe key held: nothing was enqueued. */
  deduplicated: boolean;
}

/** Options of `listenQueue()`. */
export interface ListenOptions {
  /** Handlers run at once by this listener (default 1). */
  concurrency?: number;
  /** Stops the listener: it claims nothing more, finishes its running handlers, and resolves. */
  signal?: AbortSignal;
  /** Attempts before a message goes to the dead list (default 5). */
  maxAttempts?: number;
  /**
   * A handler running this long is presumed hung: its `msg.signal` aborts and its slot is
   * freed, its message still its own (default 30 s). While a handler runs its claim is
   * renewed every third of this; a claim left unrenewed this long (its listener stopped
   * waiting for it) goes to another listener. A dead process's messages go back at once.
   */
  visibilityTimeoutMs?: number;
  /** Delay before the first retry; doubles with each attempt, with jitter (default 1 s). */
  retryDelayMs?: number;
  /** Longest retry delay (default 60 s). */
  retryDelayMaxMs?: number;
}

/** What a handler learns about the message beside its value. */
export interface QueueMessage {
  /** The message's id (unique in the store). */
  id: string;
  /** This attempt's number: 1 the first time. */
  attempt: number;
  /** The queue's name. */
  queue: string;
  /** Wall-clock milliseconds of the enqueue. */
  enqueuedAtMs: number;
  /**
   * Aborted when this handler should stop: it ran past `visibilityTimeoutMs` (presumed
   * hung: its slot went to another message, though its message goes to no other handler
   * while it runs), or its listener stopped and gave up waiting for it (then its message
   * may go to another handler). A handler that throws on it fails the attempt as usual.
   */
  signal: AbortSignal;
}

/** Counts of a queue's messages, as of the newest committed state. */
export interface QueueStats {
  /** Waiting and ready now. */
  ready: number;
  /** Waiting for their delay or retry backoff to pass. */
  delayed: number;
  /** Claimed by a listener (running, or held by a process not yet found dead). */
  running: number;
  /** On the dead list (past maxAttempts). */
  dead: number;
}

/** A message on the dead list. */
export interface DeadLetter<T = unknown> {
  /** The message's id. */
  id: string;
  /** Its value. */
  value: T;
  /** Attempts made. */
  attempts: number;
  /** The last attempt's error (serialisable). */
  error: QueueError | undefined;
}

/** A handler: resolves to acknowledge; throws (or rejects) to fail the attempt. */
export type QueueHandler<T = unknown> = (value: T, message: QueueMessage) => unknown;

/** What queues need from the database. */
export interface QueueHost {
  readonly platform: Platform;
  readonly readOnly: boolean;
  limits(): Limits;
  ensureOpen(): void;
  /** Follows other processes' commits; returns the newest visible version. */
  refresh(): number;
  /** The newest version this process shows now, without the freshness probe of {@link refresh}. */
  visible(): number;
  /**
   * Follows other processes' commits, and reads ahead those appended and not yet durable
   * (tail.ts rule 10); returns the newest version the index holds, visible or not.
   */
  head(): number;
  index(): Index;
  commit(state: TxState): Promise<number>;
  /** This handle's lease id (undefined: none, a read-only store). */
  ownerId(): string | undefined;
  /** True while the owner of lease `id` lives. */
  ownerAlive(id: string): boolean;
  /** Calls `onCommit` when any process commits (the notification that wakes watchers); returns the unsubscribe. */
  subscribe(onCommit: () => void): () => void;
}

interface Floors {
  readyMs: number;
  claimMs: number;
  sinceMs: number;
}

interface ResolvedListen {
  concurrency: number;
  maxAttempts: number;
  visibilityMs: number;
  retryMs: number;
  retryMaxMs: number;
  signal: AbortSignal | undefined;
}

function checkQueueName(queue: unknown, what: string): asserts queue is string {
  if (typeof queue !== "string" || queue.length === 0 || queue.length > QUEUE_NAME_MAX) {
    throw invalidArg(`${what}: the queue name must be a non-empty string of at most ${QUEUE_NAME_MAX} characters; got ${describeInput(queue)}`);
  }
  if (!isWellFormedString(queue)) throw invalidArg(`${what}: the queue name ${JSON.stringify(queue)} contains a lone surrogate; use well-formed Unicode`);
}

/** The options `o`, checked and read once each (options.ts readFields): work from the copy. */
function checkOptionsObject(o: unknown, what: string, allowed: readonly string[]): Record<string, unknown> {
  if (o === undefined) return {};
  if (o === null || typeof o !== "object" || Array.isArray(o)) throw invalidArg(`${what} options must be an object; got ${describeInput(o)}`);
  return readFields(what, o, allowed, (k) => invalidArg(`${what}: unknown option ${JSON.stringify(k)}; the options are ${allowed.join(", ")}`));
}

function duration(v: unknown, name: string, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > DURATION_MS_MAX) {
    throw invalidArg(`${name} must be a finite number of milliseconds from ${min} to ${DURATION_MS_MAX}; got ${describeInput(v)}`);
  }
  return Math.round(v);
}

function integer(v: unknown, name: string, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw invalidArg(`${name} must be an integer from ${min} to ${max}; got ${describeInput(v)}`);
  return v;
}

/** An error in a form that can be stored and read back anywhere (never the object itself). */
export function toQueueError(e: unknown): QueueError {
  // At most `max` bytes of UTF-8, the mark of the cut included, cut between characters.
  const clip = (s: string, max = 4096) => {
    if (s.length * 3 <= max) return s; // fits, whatever its characters
    const bytes = utf8Encoder.encode(s);
    if (bytes.length <= max) return s;
    let end = max - 3; // "…" takes three bytes
    while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a character
    return utf8Decoder.decode(bytes.subarray(0, end)) + "…";
  };
  try {
    if (e instanceof Error) {
      const out: QueueError = { name: clip(String(e.name)), message: clip(String(e.message)) };
      if (typeof e.stack === "string") out.stack = clip(e.stack, 8192);
      const code = (e as { code?: unknown }).code;
      if (typeof code === "string") out.code = clip(code, 256);
      return out;
    }
    return { name: "Error", message: clip(typeof e === "string" ? e : describeInput(e)) };
  } catch {
    return { name: "Error", message: "(a thrown value that cannot be described)" };
  }
}

interface PendingEnqueue {
  queue: string;
  id: string;
  value: Uint8Array;
  delayMs: number;
  dedupe: { key: string; windowMs: number } | undefined;
}

/** Enqueues that share one commit (see Queues.#submitEnqueue). */
interface EnqueueBatch {
  items: PendingEnqueue[];
  waiters: { resolve: (r: EnqueueResult) => void; reject: (e: unknown) => void }[];
  /** Value bytes of the items. */
  bytes: number;
  /** The batch's transaction: its `bytes` follow the items' (the group commit sizes batches by them). */
  state: TxState;
}

/** Most enqueues one batch (one commit) takes, and most value bytes, beyond its first item's. */
const ENQUEUE_BATCH_MAX = 1024;
const ENQUEUE_BATCH_BYTES_MAX = 1 << 20;

/** The queues of one open database: enqueue, listeners, stats, dead letters. */
export class Queues {
  readonly #host: QueueHost;
  readonly #listeners = new Set<Listener>();
  readonly #floors = new Map<string, Floors>();
  readonly #idPrefix: string;
  #idCounter = 0;
  #creating: Promise<void> | undefined;
  #nsReady = false;
  #closing = false;
  /** Calls accepted and not yet settled (see {@link track}), and who waits for none to be left. */
  #accepted = 0;
  #allSettled: { promise: Promise<void>; resolve: () => void } | undefined;
  /** The batch new enqueues join, until the committer runs it at the head. */
  #openBatch: EnqueueBatch | undefined;

  constructor(host: QueueHost) {
    this.#host = host;
    const bytes = new Uint8Array(6);
    host.platform.randomBytes(bytes);
    this.#idPrefix = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** A message id unique in the store: the clock, this handle's random prefix, a counter. */
  newId(): string {
    const t = Math.floor(this.#host.platform.wallClockMs()).toString(36).padStart(9, "0");
    // The counter is padded so that the ids of one handle sort in enqueue order within a
    // millisecond ("a" before "10" would not): messages ready at the same time run in it.
    return `${t}-${this.#idPrefix}-${(this.#idCounter++).toString(36).padStart(8, "0")}`;
  }

  // --- the namespace ---

  #nsId(): number | undefined {
    const snap = this.#host.refresh();
    return this.#host.index().resolve(QUEUES_NS, snap);
  }

  /** True once the queues' namespace exists (a commit that needs it can go straight to the committer). */
  namespaceReady(): boolean {
    // Once it exists it stays: no user can drop or rename a reserved namespace.
    if (!this.#nsReady) this.#nsReady = this.#nsId() !== undefined;
    return this.#nsReady;
  }

  /** Creates the queues' namespace if missing (once per store; racing creators are fine). */
  ensureNamespace(): Promise<void> {
    if (this.namespaceReady()) return Promise.resolve();
    this.#creating ??= (async () => {
      const state = newTxState(this.#host.refresh(), "serializable", true);
      state.namespaceOps.push({ op: "create", name: QUEUES_NS });
      try {
        await this.#host.commit(state);
      } catch (e) {
        if (!isTxtDbError(e, "NAMESPACE_EXISTS")) throw e;
      }
    })().finally(() => void (this.#creating = undefined));
    return this.#creating;
  }

  #floorsOf(queue: string): Floors {
    const now = this.#host.platform.monotonicMs();
    let f = this.#floors.get(queue);
    if (!f || now - f.sinceMs > FLOOR_RESET_MS) {
      if (!f && this.#floors.size >= 10_000) this.#floors.clear(); // bounded: floors are only shortcuts
      f = { readyMs: 0, claimMs: 0, sinceMs: now };
      this.#floors.set(queue, f);
    }
    return f;
  }

  // --- enqueue ---

  #pending(queue: unknown, value: unknown, options: EnqueueOptions | undefined, what: string): PendingEnqueue {
    checkQueueName(queue, what);
    const o = checkOptionsObject(options, what, ["delayMs", "dedupeKey", "dedupeWindowMs"]);
    const delayMs = duration(o.delayMs, `${what} delayMs`, 0, 0);
    let dedupe: PendingEnqueue["dedupe"];
    if (o.dedupeKey !== undefined) {
      const key = o.dedupeKey;
      if (typeof key !== "string" || key.length === 0 || key.length > DEDUPE_KEY_MAX || !isWellFormedString(key)) {
        throw invalidArg(`${what} dedupeKey must be a non-empty, well-formed string of at most ${DEDUPE_KEY_MAX} characters; got ${describeInput(key)}`);
      }
      encodeKey(["k", queue, key], this.#host.limits().maxKeyBytes); // INVALID_KEY now, not at commit
      dedupe = { key, windowMs: duration(o.dedupeWindowMs, `${what} dedupeWindowMs`, 1, DEDUPE_WINDOW_MS_DEFAULT) };
    } else if (o.dedupeWindowMs !== undefined) {
      throw invalidArg(`${what} dedupeWindowMs needs a dedupeKey`);
    }
    const bytes = encodeValue(value, this.#host.limits().maxValueBytes);
    if (bytes.length > MESSAGE_VALUE_BYTES_MAX) {
      // Only a maxValueBytes near 1 GiB lets such a value through: its enqueue would commit,
      // and no claim of it ever could (queuestore.ts MESSAGE_VALUE_BYTES_MAX).
      throw new TxtDbError("INVALID_VALUE", `${what}: the value is ${bytes.length} bytes encoded; a queue message can be at most ${MESSAGE_VALUE_BYTES_MAX} bytes, whatever maxValueBytes allows (one log record, at most ${FRAME_BODY_MAX_BYTES} bytes, must hold it with its claim and its last error); store the data under a key and enqueue the key`);
    }
    return { queue, id: this.newId(), value: bytes, delayMs, dedupe };
  }

  #random = () => randomFraction(this.#host.platform);
  #now = () => this.#host.platform.wallClockMs();

  /** `db.enqueue()`. */
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): Promise<EnqueueResult> {
    let p: PendingEnqueue;
    try {
      this.#host.ensureOpen();
      p = this.#pending(queue, value, options, "enqueue()");
      if (this.#host.readOnly) throw new TxtDbError("READ_ONLY", "Cannot enqueue: the database was opened with readOnly: true");
      // The common case goes to the committer now, as a set() does (close() then waits for
      // it as for any queued commit), with no promise of its own around it: a producer with
      // a thousand enqueues in flight spent a fifth of its time collecting garbage.
      if (this.namespaceReady()) return this.#submitEnqueue(p);
      const pending = p;
      // ensureNamespace() may throw at once (a failed freshness probe): a rejection, like
      // every other failure here, never a throw out of enqueue().
      return this.track(this.ensureNamespace().then(() => this.#submitEnqueue(pending)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Queues one enqueue (the queues' namespace exists): it joins the open batch, whose one
   * commit the committer takes at its next group commit. Enqueues at once share a commit
   * and a version as the contract allows (EnqueueResult.version), so a producer with a
   * thousand enqueues in flight pays for one transaction, one run at the head and one
   * record instead of a thousand (a profile of such a producer spent most of its time on
   * those and the garbage they left).
   */
  #submitEnqueue(p: PendingEnqueue): Promise<EnqueueResult> {
    let batch = this.#openBatch;
    if (!batch || batch.items.length >= ENQUEUE_BATCH_MAX || (batch.bytes + p.value.length > ENQUEUE_BATCH_BYTES_MAX && batch.items.length > 0)) {
      batch = this.#newBatch();
    }
    const b = batch;
    return new Promise<EnqueueResult>((resolve, reject) => {
      b.items.push(p);
      b.waiters.push({ resolve, reject });
      b.bytes += p.value.length;
      b.state.bytes = b.bytes;
    });
  }

  /** Opens a batch of enqueues and queues its commit. */
  #newBatch(): EnqueueBatch {
    // No freshness probe (a read of the frontier file per batch): an enqueue reads nothing
    // at its snapshot, its dedupe and ready time are decided at the head, and the queues'
    // namespace, which the snapshot must show, was seen by namespaceReady().
    const state = newTxState(this.#host.visible(), "serializable", true);
    state.shareable = true;
    const batch: EnqueueBatch = { items: [], waiters: [], bytes: 0, state };
    this.#openBatch = batch;
    const close = () => {
      if (this.#openBatch === batch) this.#openBatch = undefined;
    };
    const written: boolean[] = [];
    new HeadWork(state, this.#now, this.#random).add((w) => {
      // Under the writer lock: from here on the batch takes nobody (a later enqueue opens
      // the next one), and every item in it is decided now, in the order it came.
      close();
      written.length = 0; // (a batch put back after a lost writer lock runs again: HeadWork.add)
      let n = 0;
      for (const p of batch.items) {
        const wrote = w.enqueue(p.queue, p.id, p.value, p.delayMs, p.dedupe);
        written.push(wrote);
        if (wrote) n++;
      }
      state.commitsCounted = n; // each message written, as when each was its own commit
    });
    let committing: Promise<number>;
    try {
      committing = this.#host.commit(state);
    } catch (e) {
      // CLOSED, READ_ONLY: the batch is empty yet; the enqueue that opened it is told.
      close();
      committing = Promise.reject(e);
    }
    committing.then(
      (tsn) => {
        close();
        const version = BigInt(tsn);
        batch.waiters.forEach((w, i) => w.resolve({ id: batch.items[i]!.id, version, deduplicated: written[i] === false }));
      },
      (e: unknown) => {
        // Failed before the head (the lock, I/O) or after: no item of the batch was written.
        close();
        for (const w of batch.waiters) w.reject(e);
      },
    );
    return batch;
  }

  /**
   * Work accepted before close() that reaches the committer only after an await (the
   * queues' namespace made first): close() waits for it, as it waits for queued commits,
   * instead of closing under it.
   */
  track<T>(work: Promise<T>): Promise<T> {
    this.#accepted++;
    return work.finally(() => {
      if (--this.#accepted === 0) {
        this.#allSettled?.resolve();
        this.#allSettled = undefined;
      }
    });
  }

  /** `tx.enqueue()`: adds the message to the transaction's writes, decided at its commit. */
  enqueueInTransaction(state: TxState, queue: string, value: unknown, options?: EnqueueOptions): string {
    const p = this.#pending(queue, value, options, "tx.enqueue()");
    const limits = this.#host.limits();
    const writes = p.dedupe ? 3 : 1;
    if (state.writeCount + writes > limits.maxTxWrites) {
      throw new TxtDbError("LIMIT", `Transaction writes more than ${limits.maxTxWrites} keys (maxTxWrites); split it into smaller transactions`);
    }
    const bytes = p.value.length + 128 + (p.dedupe ? 2 * p.dedupe.key.length : 0);
    checkTxBytes(state.bytes + bytes, limits.maxTxBytes);
    state.writeCount += writes;
    state.bytes += bytes;
    let work = transactionWork.get(state);
    if (!work) transactionWork.set(state, (work = new HeadWork(state, this.#now, this.#random)));
    work.add((w) => void w.enqueue(p.queue, p.id, p.value, p.delayMs, p.dedupe));
    return p.id;
  }

  // --- reading ---

  /** The names of the queues that hold anything (waiting, running or dead messages), sorted: for `txtdb queues`. */
  names(): string[] {
    this.#host.ensureOpen();
    const snap = this.#host.refresh();
    const index = this.#host.index();
    const nsId = index.resolve(QUEUES_NS, snap);
    if (nsId === undefined) return [];
    const names = new Set<string>();
    for (const tag of ["r", "c", "d"]) {
      let [start, end] = prefixRange([tag]);
      // One look per queue: after each name, skip past every key of that queue.
      for (;;) {
        const [row] = index.range(nsId, start, end, snap, false, 1);
        if (!row) break;
        const queue = decodeKeyParts(row[0])[1];
        if (typeof queue !== "string") break;
        names.add(queue);
        start = prefixRange([tag, queue])[1];
        if (start >= end) break;
      }
    }
    return [...names].sort();
  }

  /** `db.queueStats()`: counts at the newest committed state. */
  stats(queue: string): QueueStats {
    this.#host.ensureOpen();
    checkQueueName(queue, "queueStats()");
    const snap = this.#host.refresh();
    const index = this.#host.index();
    const nsId = index.resolve(QUEUES_NS, snap);
    if (nsId === undefined) return { ready: 0, delayed: 0, running: 0, dead: 0 };
    const f = this.#floorsOf(queue);
    const split = encodeKey(["r", queue, Math.floor(this.#now()) + 1]);
    const from = readyFrom(queue, f.readyMs);
    return {
      ready: from < split ? index.count(nsId, from, split, snap) : 0,
      delayed: index.count(nsId, split > from ? split : from, readyEnd(queue), snap),
      running: index.count(nsId, claimFrom(queue, f.claimMs), claimEnd(queue), snap),
      dead: index.count(nsId, ...deadRange(queue), snap),
    };
  }

  /** `db.deadLetters()`: the dead list, page by page at the newest state of each page. */
  deadLetters<T>(queue: string): AsyncIterableIterator<DeadLetter<T>> {
    this.#host.ensureOpen();
    checkQueueName(queue, "deadLetters()");
    const host = this.#host;
    const [start, end] = deadRange(queue);
    let after: string | undefined;
    let page: DeadLetter<T>[] = [];
    let done = false;
    const it: AsyncIterableIterator<DeadLetter<T>> = {
      next: () => {
        try {
          if (page.length === 0 && !done) {
            host.ensureOpen();
            const snap = host.refresh();
            const index = host.index();
            const nsId = index.resolve(QUEUES_NS, snap);
            const rows = nsId === undefined ? [] : index.range(nsId, start, end, snap, false, 256, after);
            if (rows.length < 256) done = true;
            page = rows.map(([k, v]) => {
              const rec = decodeRecord(k, v.value);
              return { id: keyId(k), value: decodeValue(rec.v) as T, attempts: rec.a, error: rec.e };
            });
            after = rows[rows.length - 1]?.[0];
          }
          const value = page.shift();
          if (value === undefined) return Promise.resolve({ done: true, value: undefined });
          return Promise.resolve({ done: false, value });
        } catch (e) {
          done = true;
          page = [];
          return Promise.reject(e);
        }
      },
      return: () => {
        done = true;
        page = [];
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** `db.retryDead()`: moves one dead message (`id`) or all back to ready, attempts reset; resolves to how many moved. */
  async retryDead(queue: string, id?: string): Promise<number> {
    this.#host.ensureOpen();
    checkQueueName(queue, "retryDead()");
    if (id !== undefined && (typeof id !== "string" || id.length === 0 || id.length > 256 || !isWellFormedString(id))) {
      throw invalidArg(`retryDead() id must be a message id (a non-empty, well-formed string of at most 256 characters); got ${describeInput(id)}`);
    }
    if (this.#host.readOnly) throw new TxtDbError("READ_ONLY", "Cannot retry dead messages: the database was opened with readOnly: true");
    if (!this.namespaceReady()) return 0;
    // All of them: at most as many as were dead when the call began. A listener that fails
    // every message it gets would otherwise refill the dead list as fast as this empties it,
    // and the call would never return.
    const movesMax = id === undefined ? this.stats(queue).dead : 1;
    let total = 0;
    while (total < movesMax) {
      const state = newTxState(this.#host.refresh(), "serializable", true);
      let r = { moved: 0, more: false };
      // Each commit moves what its budget allows (queuestore.ts rule 4), so many big dead
      // messages take several commits rather than one record past the limit.
      const max = Math.min(RETRY_DEAD_BATCH, movesMax - total);
      new HeadWork(state, this.#now, this.#random, this.#host.limits().maxTxBytes).add((w) => void (r = w.retryDead(queue, id, max)));
      await this.#host.commit(state);
      total += r.moved;
      if (id !== undefined || !r.more) break;
    }
    return total;
  }

  // --- listening ---

  /** `db.listenQueue()`: resolves when `signal` aborts or the database closes, after running handlers finish. */
  async listen<T>(queue: string, handler: QueueHandler<T>, options?: ListenOptions): Promise<void> {
    this.#host.ensureOpen();
    checkQueueName(queue, "listenQueue()");
    checkFunction("listenQueue()'s handler", handler);
    // Each option read once, into `o`: a getter runs once, and the signal checked is the one used.
    const o = checkOptionsObject(options, "listenQueue()", ["concurrency", "signal", "maxAttempts", "visibilityTimeoutMs", "retryDelayMs", "retryDelayMaxMs"]);
    checkSignal(o.signal);
    const retryMs = duration(o.retryDelayMs, "listenQueue() retryDelayMs", 0, RETRY_DELAY_MS_DEFAULT);
    const opts: ResolvedListen = {
      concurrency: integer(o.concurrency, "listenQueue() concurrency", 1, CONCURRENCY_MAX, 1),
      maxAttempts: integer(o.maxAttempts, "listenQueue() maxAttempts", 1, 1_000_000, MAX_ATTEMPTS_DEFAULT),
      visibilityMs: duration(o.visibilityTimeoutMs, "listenQueue() visibilityTimeoutMs", 1, VISIBILITY_TIMEOUT_MS_DEFAULT),
      retryMs,
      retryMaxMs: duration(o.retryDelayMaxMs, "listenQueue() retryDelayMaxMs", retryMs, Math.max(retryMs, RETRY_DELAY_MAX_MS_DEFAULT)),
      signal: o.signal as AbortSignal | undefined,
    };
    if (this.#host.readOnly) throw new TxtDbError("READ_ONLY", "Cannot listen to a queue: the database was opened with readOnly: true");
    if (this.#closing) throw new TxtDbError("CLOSED", "Cannot listen to a queue: the database is closing");
    if (signalAborted(opts.signal)) return;
    await this.ensureNamespace();
    // close() may have begun while the namespace was made (an aborted signal: Listener.run).
    if (this.#closing) throw new TxtDbError("CLOSED", "Cannot listen to a queue: the database is closing");
    const owner = this.#host.ownerId();
    if (owner === undefined) throw new TxtDbError("READ_ONLY", "Cannot listen to a queue: this handle holds no lease");
    const listener = new Listener(this, this.#host, queue, handler as QueueHandler, opts, owner);
    this.#listeners.add(listener);
    try {
      await listener.run();
    } finally {
      this.#listeners.delete(listener);
    }
  }

  /**
   * Local, at the head of the log as this process can read it: is something of `queue`
   * ready now? If the first waiting message is delayed, its ready time. At the head, not
   * at the visible state: every listener wakes on the commit that enqueued a message, and
   * the first to claim it appends its claim long before that is durable; the others, who
   * would each take the writer lock to find nothing (three rounds in four with four
   * listeners, measured), see the claim here and stay idle. Should the claim never become
   * durable (a failed sync), the message is ready again at the next commit or poll.
   */
  firstWaiting(queue: string): { ready: boolean; atMs?: number } {
    const snap = this.#host.head();
    const index = this.#host.index();
    const nsId = index.resolve(QUEUES_NS, snap);
    if (nsId === undefined) return { ready: false };
    const [row] = index.range(nsId, readyFrom(queue, this.#floorsOf(queue).readyMs), readyEnd(queue), snap, false, 1);
    if (!row) return { ready: false };
    const at = keyTime(row[0]);
    return at <= this.#now() ? { ready: true } : { ready: false, atMs: at };
  }

  /**
   * One round of a listener: its outcomes, the claims to give back, and a claim for `free`
   * slots, in one commit decided at the head. Resolves to what it claimed. The commit's
   * budget (queuestore.ts rule 4) may leave outcomes for the next round (`left.outcomes`)
   * and claim fewer than `free` while more are ready (`left.full`): both are known once
   * `claimed` resolves.
   */
  round(queue: string, work: { free: number; outcomes: Outcome[]; owner: string; tokenOf: () => string; opts: ResolvedListen; onWritten: (claimed: Claimed[]) => void }): { claimed: Promise<Claimed[]>; durable: Promise<void>; left: { outcomes: Outcome[]; full: boolean } } {
    const f = this.#floorsOf(queue);
    const state = newTxState(this.#host.refresh(), "serializable", true);
    let claimed: Claimed[] = [];
    let floor: number | undefined;
    const left = { outcomes: [] as Outcome[], full: false };
    const head = new HeadWork(state, this.#now, this.#random, this.#host.limits().maxTxBytes);
    head.add((w: HeadWriter) => {
      // What an earlier run of this step reported goes (HeadWork.add: it may run again).
      claimed = [];
      floor = undefined;
      left.outcomes = [];
      left.full = false;
      for (const o of work.outcomes) if (!w.settle(o)) left.outcomes.push(o);
      if (work.free > 0 && left.outcomes.length === 0) {
        const r = w.claim(queue, work.free, f.readyMs, work.owner, work.tokenOf, { visibilityMs: work.opts.visibilityMs, maxAttempts: work.opts.maxAttempts, retryMs: work.opts.retryMs, retryMaxMs: work.opts.retryMaxMs });
        claimed = r.claimed;
        floor = r.floorMs;
        left.full = r.full;
      } else {
        left.full = work.free > 0; // no room left to claim: the next round does
      }
    });
    // The claims are handed out once written, before they are durable: see the module
    // comment ("Claims start before their fsync").
    let written!: (c: Claimed[]) => void;
    const claimedPromise = new Promise<Claimed[]>((resolve) => (written = resolve));
    state.onAppended = () => {
      // Only now that the claims are in the log does the floor hold (queuestore.ts rule 3).
      if (floor !== undefined && this.#floors.get(queue) === f) f.readyMs = Math.max(f.readyMs, floor);
      // Called here, synchronously: the committer goes on to the sync without yielding, so
      // anything left to a promise would start only once the claim is durable.
      work.onWritten(claimed);
      written(claimed);
    };
    const durable = this.#host.commit(state).then(() => written(claimed));
    return { claimed: Promise.race([claimedPromise, durable.then(() => claimed)]), durable, left };
  }

  /**
   * The live claims of `queue`, read at the head; forgets a batch of dedupe keys whose
   * window passed (`moreDedupe`: a whole batch went, more may be left: {@link forgetDedupeKeys}).
   */
  async sweepRead(queue: string): Promise<{ claims: LiveClaim[]; moreDedupe: boolean }> {
    const f = this.#floorsOf(queue);
    const state = newTxState(this.#host.refresh(), "serializable", true);
    let out: LiveClaim[] = [];
    let floor: number | undefined;
    let forgot = 0;
    new HeadWork(state, this.#now, this.#random).add((w) => {
      const r = w.claims(queue, f.claimMs, SWEEP_CLAIMS_MAX);
      out = r.claims;
      floor = r.claims.length < SWEEP_CLAIMS_MAX ? r.floorMs : undefined;
      forgot = w.forgetDedupeKeys(queue, DEDUPE_FORGET_BATCH);
    });
    await this.#host.commit(state);
    if (floor !== undefined && this.#floors.get(queue) === f) f.claimMs = Math.max(f.claimMs, floor);
    return { claims: out, moreDedupe: forgot === DEDUPE_FORGET_BATCH };
  }

  /** Forgets a batch of `queue`'s dedupe keys whose window passed, in one commit; true if a whole batch went (more may be left). */
  async forgetDedupeKeys(queue: string): Promise<boolean> {
    const state = newTxState(this.#host.refresh(), "serializable", true);
    let forgot = 0;
    new HeadWork(state, this.#now, this.#random).add((w) => void (forgot = w.forgetDedupeKeys(queue, DEDUPE_FORGET_BATCH)));
    await this.#host.commit(state);
    return forgot === DEDUPE_FORGET_BATCH;
  }

  /** Stops every listener, waits for their running handlers (each bounded by its visibility timeout). Before the database closes. */
  async close(): Promise<void> {
    this.#closing = true;
    const all = [...this.#listeners];
    for (const l of all) l.stop();
    await Promise.all(all.map((l) => l.finished));
    await this.settled();
  }

  /** True while some accepted call has not settled (see {@link track}). */
  get unsettled(): boolean {
    return this.#accepted > 0;
  }

  /**
   * Resolves once no accepted call is left. The database's close() waits for it after
   * close() above too: a transaction that enqueues may be accepted after the listeners
   * stopped (its function ran late), and its queues' namespace commit must not be the
   * last thing close() waits for, or the transaction itself meets CLOSED while the same
   * transaction's set would have committed.
   */
  async settled(): Promise<void> {
    // One promise shared by every waiter (two close() calls at once both wait).
    while (this.#accepted > 0) {
      if (!this.#allSettled) {
        let resolve!: () => void;
        const promise = new Promise<void>((r) => (resolve = r));
        this.#allSettled = { promise, resolve };
      }
      await this.#allSettled.promise;
    }
  }

}

/** The dedupe and enqueue work of a user's transaction, one per transaction state. */
const transactionWork = new WeakMap<TxState, HeadWork>();

interface Running {
  token: string;
  /** Frees the handler's slot once its visibility timeout has passed (it is presumed hung). */
  hung: Timer;
}

/** A claim whose handler runs here (hung or not): renewed until the handler settles. */
interface Held {
  token: string;
  id: string;
  /** The handler's `msg.signal`. */
  controller: AbortController;
}

/** One `listenQueue()` call. */
class Listener {
  readonly #queues: Queues;
  readonly #host: QueueHost;
  readonly #queue: string;
  readonly #handler: QueueHandler;
  readonly #opts: ResolvedListen;
  readonly #owner: string;
  readonly #running = new Map<string, Running>();
  /** Claims whose handlers run here, by claim key, slot or none (see {@link Listener.#start}). */
  readonly #held = new Map<string, Held>();
  /** Per message id, the end of the last handler run here: a message given back and claimed again waits for it. */
  readonly #runsById = new Map<string, Promise<void>>();
  #renewTimer: Timer | undefined;
  #outcomes: Outcome[] = [];
  #tokenCounter = 0;
  #stopping = false;
  #finished = false;
  #pumping = false;
  #again = false;
  #unsubscribe: (() => void) | undefined;
  #delayTimer: Timer | undefined;
  #delayAt = Infinity;
  #sweepTimer: Timer | undefined;
  #abandonTimer: Timer | undefined;
  #sweeping = false;
  /** The last round's commit, until durable (see #pump). */
  #syncing: Promise<void> | undefined;
  #retryTimer: Timer | undefined;
  /** Rounds failed in a row, and when the last such failure was told (see #roundFailed). */
  #failures = 0;
  #failingSinceMs = 0;
  #toldAtMs = -Infinity;
  #resolve!: () => void;
  readonly finished: Promise<void>;
  readonly #aliveCache = new Map<string, { alive: boolean; atMs: number }>();
  #onAbort = () => this.stop();
  /** Takes #onAbort off the caller's signal (timers.ts listenAbort). */
  #unlistenAbort: (() => void) | undefined;

  constructor(queues: Queues, host: QueueHost, queue: string, handler: QueueHandler, opts: ResolvedListen, owner: string) {
    this.#queues = queues;
    this.#host = host;
    this.#queue = queue;
    this.#handler = handler;
    this.#opts = opts;
    this.#owner = owner;
    this.finished = new Promise((resolve) => (this.#resolve = resolve));
  }

  run(): Promise<void> {
    // An abort event fires once: a signal aborted before this point never calls back.
    if (signalAborted(this.#opts.signal)) {
      this.#finish();
      return this.finished;
    }
    this.#unlistenAbort = listenAbort(this.#opts.signal, this.#onAbort);
    this.#unsubscribe = this.#host.subscribe(() => this.#kick());
    this.#sweepTimer = armInterval(SWEEP_MS, () => void this.#sweep());
    this.#renewTimer = armInterval(Math.max(RENEW_MS_MIN, Math.floor(this.#opts.visibilityMs / 3)), () => this.#renew());
    void this.#sweep();
    this.#kick();
    return this.finished;
  }

  #token(): string {
    return `${this.#owner}/${(this.#tokenCounter++).toString(36)}`;
  }

  /** Stops claiming; resolves `finished` once running handlers are done and their outcomes committed. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#unlistenAbort?.();
    this.#sweepTimer?.cancel();
    this.#delayTimer?.cancel();
    this.#unsubscribe?.();
    if (this.#running.size > 0) {
      // A handler still running this long after the stop is abandoned (see the module comment).
      this.#abandonTimer = armTimer(this.#opts.visibilityMs, () => this.#finish());
    }
    this.#kick();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#stopping = true;
    this.#sweepTimer?.cancel();
    this.#delayTimer?.cancel();
    this.#retryTimer?.cancel();
    this.#abandonTimer?.cancel();
    this.#renewTimer?.cancel();
    for (const r of this.#running.values()) r.hung.cancel();
    // Handlers still running are abandoned: their claims are no longer renewed, and lapse
    // (or go at once, when the handle's lease ends with close()); tell them to stop.
    for (const h of this.#held.values()) h.controller.abort(new TxtDbError("CLOSED", `The listener of queue ${JSON.stringify(this.#queue)} stopped and stopped waiting for this handler (message ${h.id}); its message may go to another handler`));
    this.#held.clear();
    this.#unsubscribe?.();
    this.#resolve();
  }

  /**
   * Renews the claims of the handlers running here (queuestore.ts Outcome "renew"), in the
   * next round's commit: a handler that runs in a live process keeps its message, however
   * long it takes. A claim stops being renewed only when its process dies (its lease then
   * frees it at once), its listener abandons it (#finish), or commits fail for longer than
   * the visibility timeout.
   */
  #renew(): void {
    if (this.#held.size === 0 || this.#finished) return;
    const pending = new Set<string>();
    for (const o of this.#outcomes) if (o.kind === "renew") pending.add(o.key);
    for (const [key, h] of this.#held) {
      if (!pending.has(key)) this.#outcomes.push({ kind: "renew", key, token: h.token, visibilityMs: this.#opts.visibilityMs });
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#finished) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    void this.#pump();
  }

  #armDelay(atMs: number): void {
    if (this.#stopping || atMs >= this.#delayAt) return;
    this.#delayTimer?.cancel();
    this.#delayAt = atMs;
    this.#delayTimer = armTimer(Math.max(0, atMs - this.#host.platform.wallClockMs()), () => {
      this.#delayAt = Infinity;
      this.#delayTimer = undefined;
      this.#kick();
    });
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      for (;;) {
        this.#again = false;
        const free = this.#stopping ? 0 : this.#opts.concurrency - this.#running.size;
        let claim = false;
        if (free > 0) {
          const first = this.#queues.firstWaiting(this.#queue);
          claim = first.ready;
          if (first.atMs !== undefined) this.#armDelay(first.atMs);
        }
        const outcomes = this.#outcomes;
        if (!claim && outcomes.length === 0) {
          if (this.#again) continue;
          break;
        }
        this.#outcomes = [];
        let got: Claimed[];
        try {
          // At most one round waits for its fsync while the next one forms: handlers run
          // during the sync, and rounds stay as large as the group commit makes them.
          await this.#syncing;
          let handedOut = false;
          const handOut = (claimed: Claimed[]) => {
            if (handedOut) return;
            handedOut = true;
            for (const c of claimed) {
              if (this.#stopping) this.#outcomes.push({ kind: "release", key: c.key, token: c.token });
              else this.#start(c);
            }
          };
          const round = this.#queues.round(this.#queue, { free: claim ? free : 0, outcomes, owner: this.#owner, tokenOf: () => this.#token(), opts: this.#opts, onWritten: handOut });
          this.#syncing = round.durable;
          round.durable.catch(() => {}); // its failure is met at the next round's await
          got = await round.claimed;
          handOut(got); // (handed out when written: the claims were in the log)
          // What the commit's budget left (big messages): the next round, at once.
          if (round.left.outcomes.length > 0) {
            this.#outcomes = round.left.outcomes.concat(this.#outcomes);
            this.#again = true;
          }
          if (round.left.full) this.#again = true;
          this.#failures = 0;
        } catch (e) {
          this.#syncing = undefined;
          if (isTxtDbError(e, "CLOSED")) {
            this.#finish();
            return;
          }
          // I/O trouble, a lock timeout: the outcomes wait for the next round (their claims
          // stay until then, or until the sweep gives them back).
          this.#outcomes = outcomes.concat(this.#outcomes);
          this.#roundFailed(e);
          return;
        }
        if (got.length > 0 && this.#stopping) this.#again = true;
        if (claim && got.length === free) this.#again = true; // maybe more waiting
        if (!this.#again) break;
      }
    } catch (e) {
      // An unexpected error: tell, and try again later rather than spin.
      if (!this.#finished) this.#roundFailed(e);
    } finally {
      this.#pumping = false;
      if (this.#stopping && this.#running.size === 0 && this.#outcomes.length === 0) {
        // Resolve once the last round is durable: its outcomes then show in every process.
        const last = this.#syncing;
        if (last) void last.catch(() => {}).then(() => this.#finish());
        else this.#finish();
      }
    }
  }

  /**
   * A round failed: try again later, each time twice as late (up to ROUND_RETRY_MAX_MS),
   * and tell. A failure that lasts (a damaged record, a message no commit can hold, a full
   * disk) must not pass as a quiet loop that delivers nothing: the first of a run of
   * failures is told at once, and then one a minute while they go on. A lock timeout is
   * only contention, told only if it lasts that long.
   */
  #roundFailed(e: unknown): void {
    const now = this.#host.platform.monotonicMs();
    if (++this.#failures === 1) this.#failingSinceMs = now;
    const lasting = now - Math.max(this.#toldAtMs, this.#failingSinceMs) >= ROUND_FAILURE_TELL_MS;
    if ((this.#failures === 1 && !isTxtDbError(e, "LOCK_TIMEOUT")) || lasting) {
      this.#toldAtMs = now;
      console.error(`txtdb: listener of queue ${JSON.stringify(this.#queue)} failed ${this.#failures === 1 ? "a round" : `${this.#failures} rounds in a row`}, and claims nothing meanwhile; retrying:`, e);
    }
    const delay = Math.min(ROUND_RETRY_MAX_MS, ROUND_RETRY_MS * 2 ** Math.min(this.#failures - 1, 16));
    this.#retryTimer?.cancel();
    this.#retryTimer = armTimer(delay, () => this.#kick());
  }

  #start(c: Claimed): void {
    // While the handler runs, its claim is renewed (#renew): a live handler's message goes to
    // no other handler, however slow it is. Past its visibility timeout it is presumed hung:
    // its signal aborts, and its slot is freed here, so that it does not stall the listener
    // (its message stays its own until it settles).
    const controller = new AbortController();
    const held: Held = { token: c.token, id: c.id, controller };
    this.#held.set(c.key, held);
    const running: Running = {
      token: c.token,
      hung: armTimer(this.#opts.visibilityMs, () => {
        controller.abort(new TxtDbError("TIMEOUT", `The handler of message ${c.id} of queue ${JSON.stringify(this.#queue)} ran past visibilityTimeoutMs (${this.#opts.visibilityMs} ms): it is presumed hung and its slot went to another message; its message stays with it until it returns or throws`));
        if (this.#running.get(c.key) !== running) return;
        this.#running.delete(c.key);
        this.#kick();
      }),
    };
    this.#running.set(c.key, running);
    const message: QueueMessage = { id: c.id, attempt: c.record.a, queue: this.#queue, enqueuedAtMs: c.record.t, signal: controller.signal };
    // A message given back while its handler still ran here (its claim lapsed: commits
    // failed, or a visibility timeout too short to renew within) and claimed here again
    // waits for that handler: this listener never runs one message twice at once.
    const before = this.#runsById.get(c.id);
    const done = (async () => {
      if (before) await before;
      let outcome: Outcome;
      try {
        const handler = this.#handler; // called as a plain function: `this` is not the listener
        await handler(decodeValue(c.record.v), message);
        outcome = { kind: "ack", key: c.key, token: c.token };
      } catch (e) {
        outcome = { kind: "fail", key: c.key, token: c.token, error: toQueueError(e) };
      }
      running.hung.cancel();
      if (this.#running.get(c.key) === running) this.#running.delete(c.key);
      if (this.#held.get(c.key) === held) this.#held.delete(c.key);
      if (this.#finished) return; // abandoned: its claim goes back by the sweep
      // A renewal not yet committed would only rewrite what this outcome settles.
      this.#outcomes = this.#outcomes.filter((o) => o.kind !== "renew" || o.key !== c.key);
      this.#outcomes.push(outcome);
      this.#kick();
    })();
    this.#runsById.set(c.id, done);
    void done.then(() => {
      if (this.#runsById.get(c.id) === done) this.#runsById.delete(c.id);
    });
  }

  #alive(owner: string): boolean {
    if (owner === this.#owner) return true;
    // Lease ids are 16 hex digits (liveness.ts): anything else is no path to open.
    if (!/^[0-9a-f]{16}$/.test(owner)) return false;
    const now = this.#host.platform.monotonicMs();
    const cached = this.#aliveCache.get(owner);
    if (cached && now - cached.atMs < SWEEP_MS / 2) return cached.alive;
    const alive = this.#host.ownerAlive(owner);
    if (this.#aliveCache.size > 1000) this.#aliveCache.clear();
    this.#aliveCache.set(owner, { alive, atMs: now });
    return alive;
  }

  /** Gives back claims whose owner died or whose visibility timeout passed. */
  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#stopping) return;
    this.#sweeping = true;
    try {
      const { claims, moreDedupe } = await this.#queues.sweepRead(this.#queue);
      const now = this.#host.platform.wallClockMs();
      for (const c of claims) {
        if (this.#stopping) break;
        // Its handler runs here: renewed, never given back by this listener.
        if (c.owner === this.#owner && this.#held.get(c.key)?.token === c.token) continue;
        const dead = !this.#alive(c.owner);
        if (!dead && c.deadlineMs > now) continue;
        const error = dead
          ? { name: "QueueOwnerDied", message: "The process (or database handle) running this message's handler ended before the handler finished" }
          : { name: "QueueVisibilityTimeout", message: "The handler did not finish within its visibility timeout (visibilityTimeoutMs); the message was given to another attempt" };
        this.#outcomes.push({ kind: "fail", key: c.key, token: c.token, error });
      }
      this.#kick();
      // Dedupe keys past their window, after the claims were given back: while whole
      // batches go, more commits, so that forgetting keeps up with the producers.
      let more = moreDedupe;
      for (let i = 0; more && i < DEDUPE_FORGET_COMMITS_MAX && !this.#stopping; i++) more = await this.#queues.forgetDedupeKeys(this.#queue);
    } catch (e) {
      if (!isTxtDbError(e, "CLOSED") && !this.#stopping) console.error(`txtdb: sweep of queue ${JSON.stringify(this.#queue)} failed; retrying at the next sweep:`, e);
    } finally {
      this.#sweeping = false;
    }
  }
}
