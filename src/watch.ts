/**
 * Cross-process change notification.
 *
 * Each watcher tails the shared log on its own, from its own position, up to the
 * published frontier: the log is the history, so events come from every process, in
 * TSN order, none skipped, and a watcher that starts `fromVersion` replays what the log
 * still holds. Watchers are woken by the adapter's file events on the store directory
 * (every commit rewrites the frontier file there), with a polling fallback for adapters
 * without events and as a safety net for lost events.
 *
 * What a watcher follows: the namespace its name denoted when `watch()` was called (a
 * namespace id; writes carry ids, not names). Rules, in the order the scan applies them
 * to each record:
 *
 * 1. Namespace operations of commits after the name was resolved come first (a commit
 *    applies its namespace operations before its writes). A drop of the watched name,
 *    or a rename of it, ends the watcher: every event of earlier commits is delivered,
 *    then `next()` rejects with NAMESPACE_NOT_FOUND, whose details
 *    `{ ns, version, op: "drop" | "rename", to? }` say where to go on (watch `to`, or
 *    the re-created name, with `fromVersion: version`). A drop delivers no final event
 *    (no synthetic deletes): listing every key of a dropped namespace would be unbounded,
 *    and deletes nobody wrote would be indistinguishable from real ones. After a
 *    rename the id lives on under the new name, so without this rule a write to the new
 *    name would be delivered as a key of the old one.
 * 2. The name is resolved at `fromVersion` when it denoted a namespace then (a watcher
 *    resumed, or one following a rename with the version NAMESPACE_NOT_FOUND gave: it
 *    goes on with that namespace even if the name was dropped or taken by another since,
 *    and meets the drop or rename by rule 1); otherwise at the version the watch is asked
 *    at, and the replay starts no earlier than the commit that gave the name to that
 *    namespace (its writes under another name were not writes to this one: localdb.ts).
 *    Namespace operations at or before that version are history the name already
 *    reflects: the namespace it denoted then was alive then, so none of them removed it
 *    (ids are never reused). A watcher replaying `fromVersion` from before the name
 *    existed, across an old drop of it, delivers only the writes of the namespace the
 *    name denotes when asked, never those of an earlier namespace that bore the name.
 * 3. Writes to the watched id whose key matches become one event per commit.
 *
 * Bounds: each watcher buffers at most `bufferMax` events and `bufferBytes` bytes of
 * encoded changes (key and value bytes as the log holds them, plus a fixed allowance per
 * change), whichever comes first. The buffer holds encoded bytes, copied out of the log
 * record, and decodes an event only when the consumer takes it: encoded values are
 * smaller than decoded object graphs, and every consumer gets a fresh copy no one else
 * shares. One event always fits, however large, so that a resumed watcher can make
 * progress. A full buffer means two different things:
 *
 * - While the watcher replays history it was asked for (`fromVersion` up to the version
 *   at `watch()`), it pauses its scan and waits for the consumer: that history is finite
 *   and the log holds it, and overflowing there would make a resume from a backlog
 *   larger than the buffer overflow again, forever.
 * - Past that, the consumer is falling behind live commits: it gets WATCH_OVERFLOW at its
 *   next `next()`, with `details.resumeFrom`, the version of the last event it was handed
 *   (or where it started), so resuming from it repeats nothing and skips nothing. The
 *   buffered events are released at once rather than handed out first: a watcher nobody
 *   consumes holds nothing once it has overflowed, and stops pinning history.
 *
 * The number of watchers per database is limited (`maxWatchers`).
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { decodeKey } from "./keys.ts";
import type { Key } from "./keys.ts";
import { bytesToBinary } from "./keys.ts";
import { decodeValue } from "./codec.ts";
import { valueBytesOf } from "./expiry.ts";
import { decodeCommit, tsnBreak } from "./record.ts";
import type { CommitRecord } from "./record.ts";
import type { Log, LogPosition } from "./log.ts";
import type { WatchHandle } from "./port.ts";
import { armInterval, listenAbort, signalAborted, TIMER_DELAY_MS_MAX } from "./timers.ts";
import type { Timer } from "./timers.ts";

/** One event: the matching changes of one commit. A delete has value undefined. */
export interface WatchEvent<T = unknown> {
  /** The version (TSN) of the commit. */
  version: bigint;
  /** The matching keys that commit wrote, with their new values (undefined: deleted). */
  changes: { key: Key; value: T | undefined }[];
}

/** What a watcher matches, as encoded keys of one namespace id. */
export interface WatchMatch {
  nsId: number;
  /**
   * The name `nsId` was resolved from, at the version the watch is asked at. Without it a
   * watcher cannot tell that its namespace was dropped or renamed away (log records name
   * namespaces in their operations, ids in their writes), and follows the id as before.
   */
  ns?: string;
  /**
   * The version `ns` was resolved to `nsId` at: the namespace operations of later commits
   * can end the watcher (rule 1); those at or before it are history (rule 2). Default: the
   * version the watch is asked at.
   */
  boundTsn?: number;
  keys?: Set<string>;
  start?: string;
  end?: string;
}

/** Whether a watcher's selection (its keys, or its range [start, end)) takes `key` (encoded). */
export function watchSelects(match: { keys?: ReadonlySet<string> | undefined; start?: string | undefined; end?: string | undefined }, key: string): boolean {
  return match.keys ? match.keys.has(key) : key >= match.start! && key < match.end!;
}

/**
 * Default of `bufferBytes` (the `watchBufferBytes` option): 64 MiB of encoded changes per
 * watcher. Why this much: it holds the whole event bound (10,000 events) of changes up to
 * ~6 KiB each, so a consumer that pauses for a GC or a slow handler does not overflow
 * under ordinary writes, and it matches the default value cache (`cacheBytes`), the
 * memory a process is already expected to spend on data. Why not more: it is per
 * watcher, and before this bound 10,000 buffered events of large values reached
 * gigabytes (issue 9).
 */
export const WATCH_BUFFER_BYTES_DEFAULT = 64 * 2 ** 20;

/**
 * What a buffered change costs beyond its key and value bytes: the objects that hold it
 * (an entry, a string header, a byte array and its buffer). Counting it keeps a flood of
 * tiny changes bounded by bytes too.
 */
const CHANGE_OVERHEAD_BYTES = 128;
/** What a buffered event costs beyond its changes. */
const EVENT_OVERHEAD_BYTES = 64;

/** The database side a hub needs. */
export interface WatchSource {
  log: Log;
  /** The first position of the log (where history starts). */
  logStart(): LogPosition;
  /** The version the checkpoint holds: history at or below it is folded away. */
  checkpointTsn(): number;
  /** The current read position and TSN, to start a watcher "from now". */
  head(): { pos: LogPosition; tsn: number };
  /** File events that may mean a commit (the frontier file's, or the store directory's); undefined: none, poll. */
  watchCommits(onChange: () => void): WatchHandle | undefined;
  pollMs: number;
  /** Events a watcher buffers before WATCH_OVERFLOW (`watchBufferMax`). */
  bufferMax: number;
  /** Bytes of encoded changes a watcher buffers before WATCH_OVERFLOW (`watchBufferBytes`; default {@link WATCH_BUFFER_BYTES_DEFAULT}). */
  bufferBytes?: number;
  maxWatchers: number;
}

/** A change as the buffer holds it: the key as a binary string, the value's own CBOR bytes (null: deleted). */
interface HeldChange {
  key: string;
  value: Uint8Array | null;
}

/** An event as the buffer holds it, decoded only when handed out. */
interface HeldEvent {
  version: number;
  changes: HeldChange[];
  bytes: number;
}

function decodeEvent(e: HeldEvent): WatchEvent {
  return {
    version: BigInt(e.version),
    changes: e.changes.map((c) => ({ key: decodeKey(c.key), value: c.value === null ? undefined : decodeValue(valueBytesOf(c.value)) })),
  };
}

class Watcher {
  /** Detaches what the watcher's `signal` holds (see WatchHub.watch). */
  cleanup: (() => void) | undefined;
  readonly hub: WatchHub;
  readonly match: WatchMatch;
  /** The version the watch was asked at: namespace operations after it can end the watcher (rule 1). */
  readonly askedTsn: number;
  pos: LogPosition;
  /** The newest record the scan has passed. */
  lastTsn: number;
  /**
   * The version of the record just before `pos` in the log: the next record scanned must
   * be the one after it, or records are missing (see poll).
   */
  posTsn: number;
  /** The version of the last event handed to the consumer, or where it started: where an overflowed consumer resumes. */
  deliveredTsn: number;
  readonly queue: HeldEvent[] = [];
  queueBytes = 0;
  /** A replaying watcher whose buffer filled: it scans again once the consumer has drained half. */
  paused = false;
  /**
   * Consumers waiting for an event, first come first served: `next()` may be called again
   * before the previous call settled (as an async generator allows), and each call gets
   * its own event, in order, or the end.
   */
  readonly waiting: { resolve: (r: IteratorResult<WatchEvent>) => void; reject: (e: unknown) => void }[] = [];
  error: unknown;
  done = false;

  constructor(hub: WatchHub, match: WatchMatch, pos: LogPosition, posTsn: number, lastTsn: number, askedTsn: number) {
    this.hub = hub;
    this.match = match;
    this.pos = pos;
    this.posTsn = posTsn;
    this.lastTsn = lastTsn;
    this.deliveredTsn = lastTsn;
    this.askedTsn = askedTsn;
  }

  /** Hands `e` to a waiting consumer, or buffers it; false if the buffer is full. */
  offer(e: HeldEvent, bufferMax: number, bufferBytes: number): boolean {
    const w = this.waiting.shift();
    if (w) {
      this.hub.consumersWaiting(-1);
      this.deliveredTsn = e.version;
      let value: WatchEvent;
      try {
        value = decodeEvent(e);
      } catch (err) {
        // A value that does not decode ends the watcher: the consumer cannot skip it silently.
        this.done = true;
        this.hub.remove(this);
        w.reject(err);
        this.#endWaiting();
        return true;
      }
      w.resolve({ done: false, value });
      return true;
    }
    // One event always fits (an empty buffer takes it whatever its size): otherwise an
    // event larger than the bound could never be delivered, not even after a resume.
    if (this.queue.length >= bufferMax || (this.queue.length > 0 && this.queueBytes + e.bytes > bufferBytes)) return false;
    this.queue.push(e);
    this.queueBytes += e.bytes;
    return true;
  }

  /** The next buffered event, decoded. */
  take(bufferMax: number, bufferBytes: number): WatchEvent {
    const e = this.queue.shift()!;
    this.queueBytes -= e.bytes;
    this.deliveredTsn = e.version;
    // Half, not one: scanning again for every event taken would re-read the record
    // that did not fit once per event.
    if (this.paused && this.queue.length <= bufferMax / 2 && this.queueBytes <= bufferBytes / 2) {
      this.paused = false;
      this.hub.schedule();
    }
    return decodeEvent(e);
  }

  /** Ends the watcher with `e`, after the buffered events unless `dropQueue`. */
  fail(e: unknown, dropQueue = false): void {
    if (this.done) return;
    if (dropQueue) {
      this.queue.length = 0;
      this.queueBytes = 0;
    }
    this.error = e;
    const w = this.waiting.shift();
    if (w) {
      this.hub.consumersWaiting(-1);
      this.error = undefined;
      this.done = true;
      w.reject(e);
      this.#endWaiting();
    }
    this.hub.remove(this);
  }

  end(): void {
    this.done = true;
    this.queue.length = 0;
    this.queueBytes = 0;
    this.#endWaiting();
    this.hub.remove(this);
  }

  /** Resolves every waiting `next()` as done (the watcher is over). */
  #endWaiting(): void {
    const ended = this.waiting.splice(0);
    if (ended.length > 0) this.hub.consumersWaiting(-ended.length);
    for (const w of ended) w.resolve({ done: true, value: undefined });
  }
}

/**
 * The error that ends a watcher whose namespace `record` dropped or renamed away (rule 1),
 * or undefined if the record leaves it alone.
 */
function namespaceGone(ns: string, record: CommitRecord): TxtDbError | undefined {
  for (const op of record.namespaceOps) {
    if (op.name !== ns || op.op === "create") continue;
    return namespaceEnded(ns, BigInt(record.tsn), op.op === "drop" ? undefined : op.to);
  }
  return undefined;
}

/**
 * NAMESPACE_NOT_FOUND for a watcher whose namespace `ns` was dropped (`renamedTo`
 * undefined) or renamed at `version` (rule 1): shared with the etcd engine's watch.
 */
export function namespaceEnded(ns: string, version: bigint, renamedTo: string | undefined): TxtDbError {
  if (renamedTo === undefined) {
    return new TxtDbError(
      "NAMESPACE_NOT_FOUND",
      `Namespace "${ns}" was dropped at version ${version}; this watcher ended there, after every event before it. If "${ns}" is created again, watch it with { fromVersion: ${version}n } to receive its writes from the start`,
      { details: { ns, version, op: "drop" } },
    );
  }
  return new TxtDbError(
    "NAMESPACE_NOT_FOUND",
    `Namespace "${ns}" was renamed to "${renamedTo}" at version ${version}; this watcher ended there, after every event before it. To go on, watch "${renamedTo}" with { fromVersion: ${version}n }`,
    { details: { ns, version, op: "rename", to: renamedTo } },
  );
}

/** All watchers of one database, and the one file watch and poll timer they share. */
export class WatchHub {
  readonly #src: WatchSource;
  readonly #bufferBytes: number;
  readonly #watchers = new Set<Watcher>();
  /** Subscribers to the notification alone (queue listeners): called when the frontier moved, no scan. */
  readonly #subscribers = new Set<() => void>();
  #subscribedTsn = -1;
  #fileWatch: WatchHandle | undefined;
  #timer: Timer | undefined;
  #scheduled = false;
  /** `next()` calls of all watchers not settled yet. */
  #waitingCount = 0;
  /**
   * A timer that only keeps the process alive, armed while a consumer waits for an event
   * or a queue listener listens: a watcher that nobody iterates (or that its consumer left
   * between events) is no reason for a script to keep running. The poll timer and file
   * events never keep it alive themselves.
   */
  #keepAlive: Timer | undefined;

  constructor(src: WatchSource) {
    this.#src = src;
    this.#bufferBytes = src.bufferBytes ?? WATCH_BUFFER_BYTES_DEFAULT;
  }

  get count(): number {
    return this.#watchers.size;
  }

  /** The oldest version a watcher has delivered up to (it must still be able to read past it). */
  oldestTsn(): number | undefined {
    let min: number | undefined;
    for (const w of this.#watchers) if (min === undefined || w.lastTsn < min) min = w.lastTsn;
    return min;
  }

  /**
   * Starts a watcher; events come for commits after `fromTsn` (or after now). An aborted
   * `signal` ends it as `return()` does (a pending `next()` resolves done).
   */
  watch<T = unknown>(match: WatchMatch, fromTsn: number | undefined, signal?: AbortSignal): AsyncIterableIterator<WatchEvent<T>> {
    if (this.#watchers.size >= this.#src.maxWatchers) {
      throw new TxtDbError("LIMIT", `This database already has ${this.#src.maxWatchers} watchers (maxWatchers); stop some with return()`);
    }
    const head = this.#src.head();
    if (fromTsn !== undefined && fromTsn < this.#src.checkpointTsn()) {
      throw historyFolded(this.#src.checkpointTsn(), `History before version ${this.#src.checkpointTsn()} was compacted`);
    }
    const w = fromTsn === undefined || fromTsn >= head.tsn
      ? new Watcher(this, match, head.pos, head.tsn, fromTsn ?? head.tsn, head.tsn)
      : new Watcher(this, match, this.#src.logStart(), this.#src.checkpointTsn(), fromTsn, head.tsn);
    this.#watchers.add(w);
    this.#start();
    if (fromTsn !== undefined && fromTsn < head.tsn) this.schedule();
    if (signal !== undefined) {
      if (signalAborted(signal)) {
        w.end();
      } else {
        w.cleanup = listenAbort(signal, () => w.end()); // no listener outlives its watcher
      }
    }
    const it: AsyncIterableIterator<WatchEvent> = {
      next: () => {
        if (w.queue.length > 0) {
          try {
            return Promise.resolve({ done: false, value: w.take(this.#src.bufferMax, this.#bufferBytes) });
          } catch (e) {
            w.end();
            return Promise.reject(e);
          }
        }
        if (w.error !== undefined) {
          const e = w.error;
          w.error = undefined;
          w.done = true;
          return Promise.reject(e);
        }
        if (w.done) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve, reject) => {
          w.waiting.push({ resolve, reject });
          this.consumersWaiting(1);
        });
      },
      return: () => {
        w.end();
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]: () => it,
    };
    // Values are decoded as stored: T is the caller's word for what they are, as with get<T>().
    return it as AsyncIterableIterator<WatchEvent<T>>;
  }

  remove(w: Watcher): void {
    w.cleanup?.();
    w.cleanup = undefined;
    this.#watchers.delete(w);
    if (this.#watchers.size === 0 && this.#subscribers.size === 0) this.#stop();
  }

  /**
   * Calls `onCommit` whenever the published frontier moved (a commit in any process), woken
   * like the watchers (file events, the polling fallback), without scanning the log: for
   * queue listeners, which read what they need from the index. Returns the unsubscribe.
   */
  subscribe(onCommit: () => void): () => void {
    this.#subscribers.add(onCommit);
    this.#start();
    this.#holdProcess();
    return () => {
      this.#subscribers.delete(onCommit);
      this.#holdProcess();
      if (this.#watchers.size === 0 && this.#subscribers.size === 0) this.#stop();
    };
  }

  /** A consumer began (`delta` 1) or stopped (-n) waiting in `next()`. */
  consumersWaiting(delta: number): void {
    this.#waitingCount += delta;
    this.#holdProcess();
  }

  /** Arms or cancels {@link #keepAlive} for what waits now. */
  #holdProcess(): void {
    const wanted = this.#waitingCount > 0 || this.#subscribers.size > 0;
    if (wanted && this.#keepAlive === undefined) this.#keepAlive = armInterval(TIMER_DELAY_MS_MAX, () => {});
    if (!wanted && this.#keepAlive !== undefined) {
      this.#keepAlive.cancel();
      this.#keepAlive = undefined;
    }
  }

  /** Ends every watcher (database closing). */
  closeAll(): void {
    for (const w of [...this.#watchers]) w.end();
    this.#subscribers.clear();
    this.#holdProcess();
    this.#stop();
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    this.#fileWatch = this.#src.watchCommits(() => this.schedule());
    // With file events the timer is only a safety net for a lost event. What keeps the
    // process alive is a consumer waiting (#keepAlive), not the watcher's existence.
    this.#timer = armInterval(this.#fileWatch ? Math.max(this.#src.pollMs, 100) : this.#src.pollMs, () => this.schedule(), { unref: true });
  }

  #stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#fileWatch?.close();
    this.#fileWatch = undefined;
  }

  /** Polls soon (once per microtask turn, however often asked). */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.poll();
    });
  }

  /** Delivers every published commit each watcher has not seen yet. */
  poll(): void {
    if (this.#watchers.size === 0 && this.#subscribers.size === 0) return;
    let frontier;
    try {
      frontier = this.#src.log.readFrontier();
    } catch (e) {
      for (const w of [...this.#watchers]) w.fail(e);
      return;
    }
    if (!frontier) return;
    if (frontier.tsn !== this.#subscribedTsn) {
      this.#subscribedTsn = frontier.tsn;
      for (const s of [...this.#subscribers]) s();
    }
    const to = { seg: frontier.seg, off: frontier.off };
    for (const w of [...this.#watchers]) {
      if (w.done || w.paused || w.lastTsn >= frontier.tsn) continue;
      // A watcher at the very end of a segment that compaction folded moves to the next one.
      // Only at the very end: a watcher behind the folded version would skip history it
      // has not scanned (another process's compaction may fold past a watcher replaying
      // from an old version when its pin did not reach it: published after that compaction
      // read the pins, or not at all); it ends, after the events it holds, with
      // WATCH_OVERFLOW rather than a silent gap.
      const start = this.#src.logStart();
      if (w.pos.seg < start.seg) {
        const folded = this.#src.checkpointTsn();
        if (w.lastTsn < folded) {
          w.fail(historyFolded(folded, `Watcher fell behind compaction: history from version ${w.lastTsn + 1} to ${folded} was folded away before it was scanned`));
          continue;
        }
        w.pos = start;
        w.posTsn = folded;
      }
      try {
        const end = this.#src.log.scan(w.pos, to, (body, at, next) => {
          if (w.done) return;
          // No copy of the body: what an event keeps is copied out of it below, so the
          // read buffer the body lies in is not held by the watcher.
          let record: ReturnType<typeof decodeCommit>;
          try {
            record = decodeCommit(body);
          } catch (e) {
            throw this.#src.log.undecodableRecord(at, e);
          }
          // Every record takes the next version: one that skips versions means records are
          // missing from the log (a segment file removed, a range cut out), and replaying on
          // would hand the consumer a history with a hole as if it were whole.
          if (record.tsn !== w.posTsn + 1) throw this.#src.log.corruptionAt(at, tsnBreak(record.tsn, w.posTsn));
          // Rule 1: the record's namespace operations apply before its writes.
          if (w.match.ns !== undefined && record.tsn > (w.match.boundTsn ?? w.askedTsn) && record.namespaceOps.length > 0) {
            const gone = namespaceGone(w.match.ns, record);
            if (gone) {
              w.pos = next;
              w.posTsn = record.tsn;
              w.lastTsn = Math.max(w.lastTsn, record.tsn);
              throw gone;
            }
          }
          if (record.tsn > w.lastTsn) {
            const changes: HeldChange[] = [];
            let bytes = EVENT_OVERHEAD_BYTES;
            for (const wr of record.writes) {
              if (wr.nsId !== w.match.nsId) continue;
              const k = bytesToBinary(wr.key);
              const hit = watchSelects(w.match, k);
              if (!hit) continue;
              const value = wr.value === null ? null : wr.value.slice();
              changes.push({ key: k, value });
              bytes += k.length + (value?.length ?? 0) + CHANGE_OVERHEAD_BYTES;
            }
            if (changes.length > 0 && !w.offer({ version: record.tsn, changes, bytes }, this.#src.bufferMax, this.#bufferBytes)) {
              // Replaying history the consumer asked for (up to the version it asked at):
              // wait for it rather than overflow, or a resume from a backlog larger than
              // the buffer would overflow again at once, forever. The record is read
              // again when the consumer has drained half the buffer.
              if (record.tsn <= w.askedTsn) throw PAUSE;
              const resumeFrom = BigInt(w.deliveredTsn);
              throw new Overflow(new TxtDbError(
                "WATCH_OVERFLOW",
                `Watcher fell behind: its consumer left ${w.queue.length} events (${w.queueBytes} bytes of changes) unread, the most it may buffer (watchBufferMax ${this.#src.bufferMax}, watchBufferBytes ${this.#bufferBytes}); resume with watch(..., { fromVersion: ${resumeFrom}n }) and consume faster, or raise those options`,
                { details: { resumeFrom, bufferedEvents: w.queue.length, bufferedBytes: w.queueBytes } },
              ));
            }
            w.lastTsn = record.tsn;
          }
          w.pos = next;
          w.posTsn = record.tsn;
        });
        if (end.problem) throw new TxtDbError("CORRUPTION", `Watcher hit a damaged record at offset ${end.problem.at.off}: ${end.problem.reason}`, { details: { offset: end.problem.at.off } });
      } catch (e) {
        if (e === PAUSE) w.paused = true;
        // An overflow releases the buffer at once: the consumer resumes from the log.
        else if (e instanceof Overflow) w.fail(e.error, true);
        else w.fail(e);
      }
    }
  }
}

/** WATCH_OVERFLOW for history folded away up to `folded`: resume from there, after re-reading the state. */
function historyFolded(folded: number, what: string): TxtDbError {
  return new TxtDbError("WATCH_OVERFLOW", `${what}; resume from version ${folded} or later, after re-reading the state`, {
    details: { resumeFrom: BigInt(folded) },
  });
}

/** Stops a replaying watcher's scan while its buffer is full (see poll). */
const PAUSE: unique symbol = Symbol("watch-pause");

/** Carries WATCH_OVERFLOW out of a scan, marked so the watcher drops its buffer. */
class Overflow {
  readonly error: TxtDbError;
  constructor(error: TxtDbError) {
    this.error = error;
  }
}
