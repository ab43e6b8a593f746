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
 * Bounds: each watcher buffers at most `bufferMax` events; a consumer that falls further
 * behind gets WATCH_OVERFLOW (with the version to resume from) and the watcher stops.
 * The number of watchers per database is limited (`maxWatchers`).
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { decodeKey } from "./keys.ts";
import type { Key } from "./keys.ts";
import { bytesToBinary } from "./keys.ts";
import { decodeValue } from "./codec.ts";
import { decodeCommit } from "./record.ts";
import type { Log, LogPosition } from "./log.ts";
import type { WatchHandle } from "./port.ts";

/** One event: the matching changes of one commit. A delete has value undefined. */
export interface WatchEvent {
  version: bigint;
  changes: { key: Key; value: unknown | undefined }[];
}

/** What a watcher matches, as encoded keys of one namespace id. */
export interface WatchMatch {
  nsId: number;
  keys?: Set<string>;
  start?: string;
  end?: string;
}

/** The database side a hub needs. */
export interface WatchSource {
  log: Log;
  /** The first position of the log (where history starts). */
  logStart(): LogPosition;
  /** The version the checkpoint holds: history at or below it is folded away. */
  checkpointTsn(): number;
  /** The current read position and TSN, to start a watcher "from now". */
  head(): { pos: LogPosition; tsn: number };
  watchDir(onChange: () => void): WatchHandle | undefined;
  pollMs: number;
  bufferMax: number;
  maxWatchers: number;
}

class Watcher {
  readonly hub: WatchHub;
  readonly match: WatchMatch;
  pos: LogPosition;
  lastTsn: number;
  readonly queue: WatchEvent[] = [];
  waiting: ((r: IteratorResult<WatchEvent>) => void) | undefined;
  waitingReject: ((e: unknown) => void) | undefined;
  error: unknown;
  done = false;

  constructor(hub: WatchHub, match: WatchMatch, pos: LogPosition, lastTsn: number) {
    this.hub = hub;
    this.match = match;
    this.pos = pos;
    this.lastTsn = lastTsn;
  }

  push(e: WatchEvent): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = this.waitingReject = undefined;
      w({ done: false, value: e });
      return;
    }
    this.queue.push(e);
  }

  fail(e: unknown): void {
    if (this.done) return;
    this.error = e;
    if (this.waitingReject) {
      const r = this.waitingReject;
      this.waiting = this.waitingReject = undefined;
      this.error = undefined;
      this.done = true;
      r(e);
    }
    this.hub.remove(this);
  }

  end(): void {
    this.done = true;
    this.queue.length = 0;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = this.waitingReject = undefined;
      w({ done: true, value: undefined });
    }
    this.hub.remove(this);
  }
}

/** All watchers of one database, and the one file watch and poll timer they share. */
export class WatchHub {
  readonly #src: WatchSource;
  readonly #watchers = new Set<Watcher>();
  #fileWatch: WatchHandle | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #scheduled = false;

  constructor(src: WatchSource) {
    this.#src = src;
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

  /** Starts a watcher; events come for commits after `fromTsn` (or after now). */
  watch(match: WatchMatch, fromTsn: number | undefined): AsyncIterableIterator<WatchEvent> {
    if (this.#watchers.size >= this.#src.maxWatchers) {
      throw new TxtDbError("LIMIT", `This database already has ${this.#src.maxWatchers} watchers (maxWatchers); stop some with return()`);
    }
    const head = this.#src.head();
    if (fromTsn !== undefined && fromTsn < this.#src.checkpointTsn()) {
      throw new TxtDbError("WATCH_OVERFLOW", `History before version ${this.#src.checkpointTsn()} was compacted; resume from version ${this.#src.checkpointTsn()} or later, after re-reading the state`, {
        details: { resumeFrom: BigInt(this.#src.checkpointTsn()) },
      });
    }
    const w = fromTsn === undefined || fromTsn >= head.tsn
      ? new Watcher(this, match, head.pos, fromTsn ?? head.tsn)
      : new Watcher(this, match, this.#src.logStart(), fromTsn);
    this.#watchers.add(w);
    this.#start();
    if (fromTsn !== undefined && fromTsn < head.tsn) this.#schedule();
    const it: AsyncIterableIterator<WatchEvent> = {
      next: () => {
        if (w.queue.length > 0) return Promise.resolve({ done: false, value: w.queue.shift()! });
        if (w.error !== undefined) {
          const e = w.error;
          w.error = undefined;
          w.done = true;
          return Promise.reject(e);
        }
        if (w.done) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve, reject) => {
          w.waiting = resolve;
          w.waitingReject = reject;
        });
      },
      return: () => {
        w.end();
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  remove(w: Watcher): void {
    this.#watchers.delete(w);
    if (this.#watchers.size === 0) this.#stop();
  }

  /** Ends every watcher (database closing). */
  closeAll(): void {
    for (const w of [...this.#watchers]) w.end();
    this.#stop();
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    this.#fileWatch = this.#src.watchDir(() => this.#schedule());
    // With file events the timer is only a safety net for a lost event.
    this.#timer = setInterval(() => this.#schedule(), this.#fileWatch ? Math.max(this.#src.pollMs, 100) : this.#src.pollMs);
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#fileWatch?.close();
    this.#fileWatch = undefined;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.poll();
    });
  }

  /** Delivers every published commit each watcher has not seen yet. */
  poll(): void {
    if (this.#watchers.size === 0) return;
    let frontier;
    try {
      frontier = this.#src.log.readFrontier();
    } catch (e) {
      for (const w of [...this.#watchers]) w.fail(e);
      return;
    }
    if (!frontier) return;
    const to = { seg: frontier.seg, off: frontier.off };
    for (const w of [...this.#watchers]) {
      if (w.done || w.lastTsn >= frontier.tsn) continue;
      // A watcher at the very end of a segment that compaction folded moves to the next one.
      const start = this.#src.logStart();
      if (w.pos.seg < start.seg) w.pos = start;
      try {
        const end = this.#src.log.scan(w.pos, to, (body, _at, next) => {
          if (w.done) return;
          const record = decodeCommit(body.slice());
          w.pos = next;
          if (record.tsn <= w.lastTsn) return;
          w.lastTsn = record.tsn;
          const changes: WatchEvent["changes"] = [];
          for (const wr of record.writes) {
            if (wr.nsId !== w.match.nsId) continue;
            const k = bytesToBinary(wr.key);
            const hit = w.match.keys ? w.match.keys.has(k) : k >= w.match.start! && k < w.match.end!;
            if (hit) changes.push({ key: decodeKey(k), value: wr.value === null ? undefined : decodeValue(wr.value) });
          }
          if (changes.length === 0) return;
          if (w.queue.length >= this.#src.bufferMax) {
            throw new TxtDbError("WATCH_OVERFLOW", `Watcher fell more than ${this.#src.bufferMax} events behind; resume with watch(..., { fromVersion: ${w.lastTsn - 1}n })`, {
              details: { resumeFrom: BigInt(w.lastTsn - 1) },
            });
          }
          w.push({ version: BigInt(record.tsn), changes });
        });
        if (end.problem) throw new TxtDbError("CORRUPTION", `Watcher hit a damaged record at offset ${end.problem.at.off}: ${end.problem.reason}`, { details: { offset: end.problem.at.off } });
      } catch (e) {
        w.fail(e);
      }
    }
  }
}
