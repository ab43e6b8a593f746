/**
 * The in-memory MVCC index each process builds by tailing the log.
 *
 * Keys are binary strings (see keys.ts) grouped by namespace id. Each key has a version
 * chain: ascending TSNs with the value bytes written at each (null for a delete). A read
 * at snapshot S takes the newest version with TSN ≤ S, so a snapshot is just a number.
 * Namespace names are versioned the same way (name → id, or null once dropped or renamed
 * away), so an old snapshot still resolves the names it saw.
 *
 * The committing process applies its batch tentatively (TSNs above the published
 * frontier, invisible to every snapshot) so later transactions of the same batch validate
 * against it; if the append or sync fails, `undo` takes those versions back off.
 *
 * @module
 */
import type { CommitRecord } from "./record.ts";
import { bytesToBinary } from "./keys.ts";

/** Versions of one key, oldest first. */
export class Chain {
  readonly tsns: number[] = [];
  readonly values: (Uint8Array | null)[] = [];

  /** Index of the newest version with TSN ≤ snap, or -1. */
  at(snap: number): number {
    const t = this.tsns;
    let i = t.length - 1;
    if (i >= 0 && t[i]! <= snap) return i; // the common case: newest is visible
    while (i >= 0 && t[i]! > snap) i--;
    return i;
  }
}

class Keyspace {
  readonly chains = new Map<string, Chain>();
  /** Every key ever written, sorted (deleted keys stay: they carry versions). */
  sorted: string[] = [];
  /** Keys not yet merged into `sorted`. */
  unsorted: string[] = [];

  keys(): string[] {
    if (this.unsorted.length > 0) {
      const fresh = this.unsorted.sort();
      this.unsorted = [];
      if (fresh.length < 32) {
        for (const k of fresh) this.sorted.splice(lowerBound(this.sorted, k), 0, k);
      } else {
        const merged: string[] = new Array(this.sorted.length + fresh.length);
        let i = 0, j = 0, o = 0;
        while (i < this.sorted.length && j < fresh.length) merged[o++] = this.sorted[i]! < fresh[j]! ? this.sorted[i++]! : fresh[j++]!;
        while (i < this.sorted.length) merged[o++] = this.sorted[i++]!;
        while (j < fresh.length) merged[o++] = fresh[j++]!;
        this.sorted = merged;
      }
    }
    return this.sorted;
  }
}

/** First index in sorted `arr` whose element is ≥ key. */
export function lowerBound(arr: readonly string[], key: string): number {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface NameChain {
  tsns: number[];
  ids: (number | null)[];
}

/** A visible version of a key. */
export interface Version {
  tsn: number;
  value: Uint8Array;
}

/** The MVCC index: keys, versions and namespace bindings up to `lastTsn`. */
export class Index {
  /** Newest TSN applied (tentative ones included while a commit is in flight). */
  lastTsn = 0;
  /** The next namespace id to hand out (replayed identically by every process). */
  nextNsId = 1;
  readonly #spaces = new Map<number, Keyspace>();
  readonly #names = new Map<string, NameChain>();
  /** Versions held, for stats. */
  versionCount = 0;

  /** Applies one commit record. Records must arrive in TSN order. */
  apply(record: CommitRecord): void {
    const tsn = record.tsn;
    if (tsn <= this.lastTsn) throw new Error(`txtdb internal assertion failed: TSN ${tsn} applied after ${this.lastTsn}`);
    for (const op of record.namespaceOps) {
      if (op.op === "create") {
        this.#bind(op.name, tsn, op.id);
        this.nextNsId = Math.max(this.nextNsId, op.id + 1);
      } else if (op.op === "drop") {
        this.#bind(op.name, tsn, null);
      } else {
        const id = this.resolve(op.name, tsn - 1);
        this.#bind(op.name, tsn, null);
        this.#bind(op.to, tsn, id ?? null);
      }
    }
    for (const w of record.writes) this.put(w.nsId, bytesToBinary(w.key), tsn, w.value);
    this.lastTsn = tsn;
  }

  /** Removes what `apply(record)` added; `record` must be the newest applied. */
  undo(record: CommitRecord, previousTsn: number, previousNextNsId: number): void {
    for (const w of record.writes) {
      const chain = this.#spaces.get(w.nsId)?.chains.get(bytesToBinary(w.key));
      if (chain && chain.tsns[chain.tsns.length - 1] === record.tsn) {
        chain.tsns.pop();
        chain.values.pop();
        this.versionCount--;
      }
    }
    for (const op of record.namespaceOps) {
      for (const name of op.op === "rename" ? [op.name, op.to] : [op.name]) {
        const c = this.#names.get(name);
        if (c && c.tsns[c.tsns.length - 1] === record.tsn) {
          c.tsns.pop();
          c.ids.pop();
        }
      }
    }
    this.lastTsn = previousTsn;
    this.nextNsId = previousNextNsId;
  }

  put(nsId: number, key: string, tsn: number, value: Uint8Array | null): void {
    let space = this.#spaces.get(nsId);
    if (!space) this.#spaces.set(nsId, (space = new Keyspace()));
    let chain = space.chains.get(key);
    if (!chain) {
      space.chains.set(key, (chain = new Chain()));
      space.unsorted.push(key);
    }
    const last = chain.tsns.length - 1;
    if (last >= 0 && chain.tsns[last] === tsn) {
      chain.values[last] = value; // two writes of one key in one commit: the last wins
      return;
    }
    chain.tsns.push(tsn);
    chain.values.push(value);
    this.versionCount++;
  }

  #bind(name: string, tsn: number, id: number | null): void {
    let c = this.#names.get(name);
    if (!c) this.#names.set(name, (c = { tsns: [], ids: [] }));
    c.tsns.push(tsn);
    c.ids.push(id);
  }

  /** The namespace id `name` denotes at `snap`, or undefined if it did not exist. */
  resolve(name: string, snap: number): number | undefined {
    const c = this.#names.get(name);
    if (!c) return undefined;
    let i = c.tsns.length - 1;
    while (i >= 0 && c.tsns[i]! > snap) i--;
    return i >= 0 ? c.ids[i] ?? undefined : undefined;
  }

  /** TSN of the newest change to `name`'s binding, or 0. */
  nameChangedAt(name: string): number {
    const c = this.#names.get(name);
    return c ? c.tsns[c.tsns.length - 1]! : 0;
  }

  /** Namespace names that exist at `snap`, sorted. */
  namespaces(snap: number): string[] {
    const out: string[] = [];
    for (const name of this.#names.keys()) if (this.resolve(name, snap) !== undefined) out.push(name);
    return out.sort();
  }

  chain(nsId: number, key: string): Chain | undefined {
    return this.#spaces.get(nsId)?.chains.get(key);
  }

  /** The value visible at `snap` (undefined if absent or deleted). */
  get(nsId: number, key: string, snap: number): Version | undefined {
    const chain = this.#spaces.get(nsId)?.chains.get(key);
    if (!chain) return undefined;
    const i = chain.at(snap);
    if (i < 0) return undefined;
    const value = chain.values[i]!;
    return value === null ? undefined : { tsn: chain.tsns[i]!, value };
  }

  /** TSN of the newest version of a key (a delete counts), or 0. */
  latestTsn(nsId: number, key: string): number {
    const chain = this.#spaces.get(nsId)?.chains.get(key);
    return chain && chain.tsns.length > 0 ? chain.tsns[chain.tsns.length - 1]! : 0;
  }

  /**
   * Up to `limit` visible entries in [start, end) at `snap`, ascending or descending.
   * `after`, if given, resumes strictly past that key (in the scan's direction).
   */
  range(nsId: number, start: string, end: string, snap: number, reverse: boolean, limit: number, after?: string): [string, Version][] {
    const out: [string, Version][] = [];
    const space = this.#spaces.get(nsId);
    if (!space || limit <= 0) return out;
    const keys = space.keys();
    if (!reverse) {
      let i = lowerBound(keys, after !== undefined && after >= start ? after : start);
      if (after !== undefined && keys[i] === after) i++;
      for (; i < keys.length && out.length < limit; i++) {
        const k = keys[i]!;
        if (k >= end) break;
        const v = this.get(nsId, k, snap);
        if (v) out.push([k, v]);
      }
    } else {
      let i = lowerBound(keys, after !== undefined && after < end ? after : end) - 1;
      for (; i >= 0 && out.length < limit; i--) {
        const k = keys[i]!;
        if (k < start) break;
        const v = this.get(nsId, k, snap);
        if (v) out.push([k, v]);
      }
    }
    return out;
  }

  /** A key in [start, end) changed after `afterTsn` (TSN and key), or undefined. */
  changedInRange(nsId: number, start: string, end: string, afterTsn: number): { key: string; tsn: number } | undefined {
    const space = this.#spaces.get(nsId);
    if (!space) return undefined;
    const keys = space.keys();
    for (let i = lowerBound(keys, start); i < keys.length; i++) {
      const k = keys[i]!;
      if (k >= end) break;
      const t = this.latestTsn(nsId, k);
      if (t > afterTsn) return { key: k, tsn: t };
    }
    return undefined;
  }

  /** Namespace bindings (name → id) that exist at `snap`. */
  bindingsAt(snap: number): [string, number][] {
    const out: [string, number][] = [];
    for (const name of this.#names.keys()) {
      const id = this.resolve(name, snap);
      if (id !== undefined) out.push([name, id]);
    }
    return out;
  }

  /**
   * Every live entry as of `snap` in the namespaces bound then: the newest version ≤ snap
   * of each key, deletes left out. This is what a checkpoint at `snap` holds.
   */
  *stateAt(snap: number): Generator<{ nsId: number; key: string; tsn: number; value: Uint8Array }> {
    for (const [, nsId] of this.bindingsAt(snap)) {
      const space = this.#spaces.get(nsId);
      if (!space) continue;
      for (const key of space.keys()) {
        const v = this.get(nsId, key, snap);
        if (v) yield { nsId, key, tsn: v.tsn, value: v.value };
      }
    }
  }

  /** Installs a checkpoint's namespace bindings at its TSN (on an empty index). */
  loadBindings(tsn: number, bindings: [string, number][], nextNsId: number): void {
    for (const [name, id] of bindings) this.#bind(name, tsn, id);
    this.nextNsId = Math.max(this.nextNsId, nextNsId);
  }

  /** Sets the applied TSN after loading a checkpoint. */
  setLastTsn(tsn: number): void {
    this.lastTsn = tsn;
  }

  /**
   * Drops versions no reader can need: for each key, everything older than its newest
   * version ≤ `minSnap` (and the key itself when that version is a delete), and the data
   * of namespace ids no name has been bound to since `minSnap`. Keeps memory bounded under
   * a steady update load; `minSnap` must be ≤ every snapshot this process still reads.
   */
  prune(minSnap: number): number {
    let dropped = 0;
    const liveIds = new Set<number>();
    for (const c of this.#names.values()) {
      // ids bound at minSnap or later
      for (let i = c.tsns.length - 1; i >= 0; i--) {
        if (c.ids[i] !== null) liveIds.add(c.ids[i]!);
        if (c.tsns[i]! <= minSnap) break;
      }
    }
    for (const [nsId, space] of this.#spaces) {
      if (!liveIds.has(nsId)) {
        for (const chain of space.chains.values()) dropped += chain.tsns.length;
        this.#spaces.delete(nsId);
        continue;
      }
      let removedKeys = false;
      for (const [key, chain] of space.chains) {
        const i = chain.at(minSnap);
        if (i < 0) continue; // every version is newer than minSnap: all may be read
        if (i === chain.tsns.length - 1 && chain.values[i] === null) {
          dropped += chain.tsns.length;
          space.chains.delete(key);
          removedKeys = true;
          continue;
        }
        if (i > 0) {
          chain.tsns.splice(0, i);
          chain.values.splice(0, i);
          dropped += i;
        }
      }
      if (removedKeys) {
        space.sorted = space.keys().filter((k) => space.chains.has(k));
      }
    }
    this.versionCount -= dropped;
    return dropped;
  }

  /** Keys (live or deleted) across all namespaces held in memory. */
  keyCountAll(): number {
    let n = 0;
    for (const space of this.#spaces.values()) n += space.chains.size;
    return n;
  }

  /** Number of keys (live or deleted) in a namespace id. */
  keyCount(nsId: number): number {
    return this.#spaces.get(nsId)?.chains.size ?? 0;
  }
}
