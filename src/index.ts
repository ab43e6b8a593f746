/**
 * The in-memory MVCC index each process builds by tailing the log.
 *
 * Keys are binary strings (see keys.ts) grouped by namespace id. Each key has a version
 * chain: ascending TSNs with the value bytes written at each (null for a delete). A read
 * at snapshot S takes the newest version with TSN ≤ S, so a snapshot is just a number.
 * Namespace names are versioned the same way (name → id, or null once dropped or renamed
 * away), so an old snapshot still resolves the names it saw.
 *
 * Format 2 (storage v2): the index is the in-memory table of the commits not yet folded,
 * above the on-disk tables (levels.ts). It holds every version newer than the folded
 * version F of the manifest this process follows (`dropFolded` removes the rest once the
 * tables holding them are open), and the tables hold, for each key, the newest version at
 * or below F (every live pin is at or above F: compaction folds no further). So a read at
 * snapshot S ≥ F takes the index's newest version ≤ S when there is one, and otherwise the
 * tables' (rule "memory first"). A format-1 store's checkpoint is loaded into the index
 * whole, with no tables, as before.
 *
 * The committing process applies its batch tentatively (TSNs above the published
 * frontier, invisible to every snapshot) so later transactions of the same batch validate
 * against it; if the append or sync fails, `undo` takes those versions back off.
 *
 * @module
 */
import type { CommitRecord } from "./record.ts";
import { bytesToBinary } from "./keys.ts";
import type { Levels } from "./levels.ts";
import { mergeVisible } from "./merge.ts";
import type { ScanRowMaker, TableEntry, TableVersion } from "./table.ts";
import { expiresAtOf, isExpiring } from "./expiry.ts";
import { PreparedSet } from "./prepared.ts";
import { SortedKeys } from "./sortedkeys.ts";

/**
 * Versions of one key, oldest first. The first two live in fields of the chain itself and
 * only a third one starts arrays: most keys of the in-memory table ever hold one or two
 * versions (a queue's message: written, then deleted), and a chain of two arrays cost
 * five objects per key where this is one. Measured on a queue-like load (300k keys, each
 * written then deleted): -15 % time and -21 % heap against two arrays per chain.
 */
export class Chain {
  /** The key (a binary string): the sorted key list holds chains, read in key order. */
  readonly key: string;
  /** Versions held (0 once an undo took the only one back). */
  length = 1;
  t0: number;
  v0: Uint8Array | null;
  t1 = 0;
  v1: Uint8Array | null = null;
  /** The third version on, when there are more than two. */
  moreTsns: number[] | undefined = undefined;
  moreValues: (Uint8Array | null)[] | undefined = undefined;

  /** A key's chain with its first version. */
  constructor(key: string, tsn: number, value: Uint8Array | null) {
    this.key = key;
    this.t0 = tsn;
    this.v0 = value;
  }

  /** The TSN of version `i` (0 ≤ i < length). */
  tsn(i: number): number {
    return i === 0 ? this.t0 : i === 1 ? this.t1 : this.moreTsns![i - 2]!;
  }

  /** The value of version `i` (null: a delete). */
  value(i: number): Uint8Array | null {
    return i === 0 ? this.v0 : i === 1 ? this.v1 : this.moreValues![i - 2]!;
  }

  /** The newest version's TSN, or 0 if none is held. */
  get lastTsn(): number {
    return this.length === 0 ? 0 : this.tsn(this.length - 1);
  }

  /** Index of the newest version with TSN ≤ snap, or -1. */
  at(snap: number): number {
    let i = this.length - 1;
    while (i >= 0 && this.tsn(i) > snap) i--;
    return i;
  }

  /** Adds a newer version. */
  push(tsn: number, value: Uint8Array | null): void {
    const n = this.length;
    if (n === 0) (this.t0 = tsn), (this.v0 = value);
    else if (n === 1) (this.t1 = tsn), (this.v1 = value);
    else if (this.moreTsns === undefined) (this.moreTsns = [tsn]), (this.moreValues = [value]);
    else this.moreTsns.push(tsn), this.moreValues!.push(value);
    this.length = n + 1;
  }

  /** Replaces the newest version's value (two writes of one key in one commit: the last wins). */
  setLastValue(value: Uint8Array | null): void {
    const i = this.length - 1;
    if (i === 0) this.v0 = value;
    else if (i === 1) this.v1 = value;
    else this.moreValues![i - 2] = value;
  }

  /** Removes the newest version. */
  pop(): void {
    const i = this.length - 1;
    if (i < 0) return;
    if (i === 0) this.v0 = null;
    else if (i === 1) this.v1 = null;
    else this.moreTsns!.pop(), this.moreValues!.pop();
    this.length = i;
  }

  /** Removes the `n` oldest versions. */
  dropOldest(n: number): void {
    if (n <= 0) return;
    const tsns: number[] = [], values: (Uint8Array | null)[] = [];
    for (let i = n; i < this.length; i++) tsns.push(this.tsn(i)), values.push(this.value(i));
    this.length = 0;
    this.v0 = this.v1 = null;
    this.moreTsns = this.moreValues = undefined;
    for (let i = 0; i < tsns.length; i++) this.push(tsns[i]!, values[i]!);
  }
}

class Keyspace {
  readonly chains = new Map<string, Chain>();
  /** Every key's chain, in key order (deleted keys stay: they carry versions). */
  readonly keys = new SortedKeys<Chain>();

  /** After chains were deleted from the map: the key list lets them go too (it holds exactly the map's chains). */
  forgetDeleted(): void {
    this.keys.retain((c) => this.chains.get(c.key) === c);
  }
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

/** Makes the rows of {@link Index.rangeRows}: from a block's bytes, or from a version. */
export interface RangeRowMaker<R> extends ScanRowMaker<R> {
  /** The row of `key` (a binary string) at version `v` (a value, never a delete). */
  fromVersion(key: string, tsn: number, value: Uint8Array): R;
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
  /** The on-disk tables below this in-memory table (format 2), or undefined (none). */
  levels: Levels | undefined;
  /**
   * The wall clock expiring values are read against (expiry.ts, rule 1): an expired
   * version reads as absent, at every snapshot. The platform's clock, given by the tail.
   */
  wallClockMs: () => number;

  constructor(wallClockMs: () => number) {
    this.wallClockMs = wallClockMs;
  }

  /**
   * Whether this in-memory table was ever given an expiring value: until then its reads skip
   * the expiry check (measured: the check cost ~3 % of an in-memory point read). The tables'
   * values are always checked: nothing says which of them expire.
   */
  #memoryMayExpire = false;

  /** The opposite of #expired, bound once for the tables' scans. */
  readonly #notExpired = (value: Uint8Array): boolean => !this.#expired(value);

  /** True when a visible version's bytes have expired (expiry.ts); one byte compared for the rest. */
  #expired(value: Uint8Array): boolean {
    return isExpiring(value) && expiresAtOf(value) <= this.wallClockMs();
  }
  /** Prepared transactions of two-phase commit and recent decisions (prepared.ts). */
  readonly prepared: PreparedSet = new PreparedSet();

  /** True when reads must also look in tables. */
  #hasTables(): boolean {
    return this.levels !== undefined && !this.levels.empty;
  }

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
    for (const w of record.writes) this.put(w.nsId, w.binary ?? bytesToBinary(w.key), tsn, w.value);
    if (record.twoPhase) this.prepared.apply(record);
    this.lastTsn = tsn;
  }

  /**
   * Applies more writes of the newest applied record (`record.tsn` is {@link lastTsn}): a
   * commit that shares the record (TxState.shareable). Writes only, no namespace operation.
   */
  applyMore(record: CommitRecord): void {
    if (record.tsn !== this.lastTsn || record.namespaceOps.length > 0 || record.twoPhase) {
      throw new Error(`txtdb internal assertion failed: writes shared at TSN ${record.tsn} after ${this.lastTsn}`);
    }
    for (const w of record.writes) this.put(w.nsId, w.binary ?? bytesToBinary(w.key), record.tsn, w.value);
  }

  /** Removes what `apply(record)` added; `record` must be the newest applied. */
  undo(record: CommitRecord, previousTsn: number, previousNextNsId: number): void {
    if (record.twoPhase) this.prepared.undo(record);
    for (const w of record.writes) {
      const chain = this.#spaces.get(w.nsId)?.chains.get(w.binary ?? bytesToBinary(w.key));
      if (chain && chain.length > 0 && chain.lastTsn === record.tsn) {
        chain.pop();
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
    if (value !== null && isExpiring(value)) this.#memoryMayExpire = true;
    let space = this.#spaces.get(nsId);
    if (!space) this.#spaces.set(nsId, (space = new Keyspace()));
    const chain = space.chains.get(key);
    if (!chain) {
      const fresh = new Chain(key, tsn, value);
      space.chains.set(key, fresh);
      space.keys.push(fresh);
      this.versionCount++;
      return;
    }
    if (chain.length > 0 && chain.lastTsn === tsn) {
      chain.setLastValue(value); // two writes of one key in one commit: the last wins
      return;
    }
    chain.push(tsn, value);
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

  /**
   * The first namespace `name` came to denote after `tsn`, and the commit that gave it
   * (a creation, or a rename to it), or undefined if it denoted none since.
   */
  firstBoundAfter(name: string, tsn: number): { id: number; tsn: number } | undefined {
    const c = this.#names.get(name);
    if (!c) return undefined;
    for (let i = 0; i < c.tsns.length; i++) {
      const id = c.ids[i];
      if (c.tsns[i]! > tsn && id !== null && id !== undefined) return { id, tsn: c.tsns[i]! };
    }
    return undefined;
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

  /**
   * The value visible at `snap` (undefined if absent or deleted): memory first, then the
   * tables. `borrow`: the value may be overwritten by the next table read (see
   * TableReader.get); only for a caller that decodes it at once.
   */
  get(nsId: number, key: string, snap: number, borrow = false): Version | undefined {
    const space = this.#spaces.get(nsId);
    // An empty map still hashes the key (a fresh string per read): skip it after a fold.
    const chain = space !== undefined && space.chains.size > 0 ? space.chains.get(key) : undefined;
    if (chain) {
      const i = chain.at(snap);
      if (i >= 0) {
        const value = chain.value(i);
        return value === null || (this.#memoryMayExpire && this.#expired(value)) ? undefined : { tsn: chain.tsn(i), value };
      }
    }
    if (!this.#hasTables()) return undefined;
    const v = this.levels!.get(nsId, key, snap, borrow);
    // The tables return a fresh object: handed on as it is when it holds a value.
    return v && v.value !== null && !this.#expired(v.value) ? (v as Version) : undefined;
  }

  /**
   * TSN of the newest version of a key if it is newer than `afterTsn`, else 0: validation's
   * question, which skips the tables when none holds anything newer than `afterTsn`.
   */
  changedAfter(nsId: number, key: string, afterTsn: number): number {
    const chain = this.#spaces.get(nsId)?.chains.get(key);
    if (chain && chain.length > 0) {
      const t = chain.lastTsn;
      return t > afterTsn ? t : 0;
    }
    if (!this.#hasTables() || this.levels!.maxTsn <= afterTsn) return 0;
    const t = this.levels!.get(nsId, key, Number.MAX_SAFE_INTEGER)?.tsn ?? 0;
    return t > afterTsn ? t : 0;
  }

  /**
   * How many keys are visible in [start, end) at `snap` (values are not decoded). `onExpiring`,
   * if given, hears each counted key whose version expires later (expiry.ts), with its expiry.
   */
  count(nsId: number, start: string, end: string, snap: number, onExpiring?: (key: string, v: Version, expiresAtMs: number) => void): number {
    // One instant for the whole count: the tables' walk and the correction for keys held
    // here judge expiry against the same clock reading. With two readings, a folded version
    // that expired between them was counted live by the walk and dead by the correction,
    // and its key counted twice (50,000 live keys counted as 53,365).
    const clock = this.wallClockMs;
    const now = clock();
    this.wallClockMs = () => now;
    try {
      return this.#countAt(nsId, start, end, snap, now, onExpiring);
    } finally {
      this.wallClockMs = clock;
    }
  }

  #countAt(nsId: number, start: string, end: string, snap: number, now: number, onExpiring?: (key: string, v: Version, expiresAtMs: number) => void): number {
    // Expiring versions the tables counted, reported once memory has had its say.
    const fromTablesExpiring = onExpiring ? new Map<string, Version>() : undefined;
    const fromTables = this.#hasTables() && start < end
      ? this.levels!.countRange(nsId, start, end, snap, now, fromTablesExpiring && ((k, tsn, value) => void fromTablesExpiring.set(k, { tsn, value })))
      : undefined;
    if (fromTables !== undefined) {
      // The tables' count, corrected for the keys this in-memory table holds a visible
      // version of: that version (newer than any folded one) decides whether they are live.
      let n = fromTables;
      this.#eachInMemory(nsId, start, end, snap, (k, tsn, value, liveHere) => {
        const inTables = this.levels!.get(nsId, k, snap, true)?.value ?? null;
        const liveInTables = inTables !== null && !this.#expired(inTables);
        n += (liveHere ? 1 : 0) - (liveInTables ? 1 : 0);
        fromTablesExpiring?.delete(k);
        if (liveHere && onExpiring && isExpiring(value!)) onExpiring(k, { tsn, value: value! }, expiresAtOf(value!));
      });
      if (onExpiring) for (const [k, v] of fromTablesExpiring!) onExpiring(k, v, expiresAtOf(v.value!));
      return n;
    }
    if (this.#hasTables()) {
      // Tables whose keys overlap (countRange cannot count them one by one): merged entries.
      const PAGE = 4096;
      let n = 0;
      let after: string | undefined;
      for (;;) {
        const rows = this.range(nsId, start, end, snap, false, PAGE, after);
        n += rows.length;
        if (onExpiring) for (const [k, v] of rows) if (isExpiring(v.value)) onExpiring(k, v, expiresAtOf(v.value));
        if (rows.length < PAGE) return n;
        after = rows[rows.length - 1]![0];
      }
    }
    // Memory alone: walk the keys without building entries (a queue's ranges hold many
    // deletes, which this skips at the cost of one lookup each).
    let n = 0;
    this.#eachInMemory(nsId, start, end, snap, (k, tsn, value, live) => {
      if (!live) return;
      n++;
      if (onExpiring && isExpiring(value!)) onExpiring(k, { tsn, value: value! }, expiresAtOf(value!));
    });
    return n;
  }

  /**
   * Calls `visit` for each key of this in-memory table in [start, end) that has a version at
   * `snap`: that version, and whether it is live (neither a delete nor expired).
   */
  #eachInMemory(nsId: number, start: string, end: string, snap: number, visit: (key: string, tsn: number, value: Uint8Array | null, live: boolean) => void): void {
    const space = this.#spaces.get(nsId);
    if (!space) return;
    for (const cur = space.keys.seek(start); cur.item !== undefined && cur.item.key < end; cur.next()) {
      const chain = cur.item;
      const at = chain.at(snap);
      if (at < 0) continue;
      const value = chain.value(at);
      visit(chain.key, chain.tsn(at), value, value !== null && !(this.#memoryMayExpire && this.#expired(value)));
    }
  }

  /**
   * Up to `limit` visible entries in [start, end) at `snap`, ascending or descending.
   * `after`, if given, resumes strictly past that key (in the scan's direction).
   */
  range(nsId: number, start: string, end: string, snap: number, reverse: boolean, limit: number, after?: string): [string, Version][] {
    if (this.#hasTables()) return this.#mergedRange(nsId, start, end, snap, reverse, limit, after);
    const out: [string, Version][] = [];
    this.#liveInMemory(nsId, start, end, snap, reverse, limit, after, (key, tsn, value) => void out.push([key, { tsn, value }]));
    return out;
  }

  /**
   * {@link range} of this in-memory table alone: calls `visit` for up to `limit` keys in
   * [start, end) whose version at `snap` is live, in the scan's direction, resuming strictly
   * past `after`. Walks the chains in the sorted key list, with no lookup per key.
   */
  #liveInMemory(nsId: number, start: string, end: string, snap: number, reverse: boolean, limit: number, after: string | undefined, visit: (key: string, tsn: number, value: Uint8Array) => void): void {
    const space = this.#spaces.get(nsId);
    if (!space || limit <= 0) return;
    let n = 0;
    const take = (chain: Chain): void => {
      const i = chain.at(snap);
      if (i < 0) return;
      const value = chain.value(i);
      if (value === null || (this.#memoryMayExpire && this.#expired(value))) return;
      visit(chain.key, chain.tsn(i), value);
      n++;
    };
    if (!reverse) {
      const cur = space.keys.seek(after !== undefined && after >= start ? after : start);
      if (after !== undefined && cur.item?.key === after) cur.next();
      for (let c = cur.item; c !== undefined && c.key < end && n < limit; cur.next(), c = cur.item) take(c);
    } else {
      const cur = space.keys.seekBefore(after !== undefined && after < end ? after : end);
      for (let c = cur.item; c !== undefined && c.key >= start && n < limit; cur.prev(), c = cur.item) take(c);
    }
  }

  /**
   * {@link range}'s rows as `make` makes them (a list page's entries). When the tables
   * alone answer a forward read from one source (after a compaction, the common case), the
   * rows are made straight from the blocks' bytes (TableReader.scanInto with a maker);
   * otherwise from {@link range}'s [key, version] pairs. `make.lastKey` is the last row's
   * key when `limit` rows were made (where the next page resumes).
   */
  rangeRows<R>(nsId: number, start: string, end: string, snap: number, reverse: boolean, limit: number, after: string | undefined, make: RangeRowMaker<R>): R[] {
    make.lastKey = undefined;
    if (this.#hasTables() && !reverse && limit > 0) {
      // Resume strictly past `after`, as #mergedRange does.
      const from = after !== undefined && after >= start ? after + "\0" : start;
      if (from >= end) return [];
      const single = this.#inMemory(nsId, from, end) ? undefined : this.levels!.singleSource(nsId, from, end, snap);
      if (single !== undefined) {
        const out: R[] = [];
        for (const t of single) if (t.scanInto(nsId, from, end, snap, limit, out, this.#notExpired, true, make)) break;
        return out;
      }
    }
    if (!this.#hasTables()) {
      // Memory alone: rows straight from the chains, with no [key, version] pair between.
      const out: R[] = [];
      let last: string | undefined;
      this.#liveInMemory(nsId, start, end, snap, reverse, limit, after, (key, tsn, value) => {
        out.push(make.fromVersion(key, tsn, value));
        last = key;
      });
      make.lastKey = last;
      return out;
    }
    const rows = this.range(nsId, start, end, snap, reverse, limit, after);
    if (rows.length > 0) make.lastKey = rows[rows.length - 1]![0];
    return rows.map(([k, v]) => make.fromVersion(k, v.tsn, v.value));
  }

  /** Whether this in-memory table holds a key of namespace `nsId` in [start, end). */
  #inMemory(nsId: number, start: string, end: string): boolean {
    const space = this.#spaces.get(nsId);
    if (space === undefined) return false;
    const first = space.keys.seek(start).key;
    return first !== undefined && first < end;
  }

  /** {@link range} over this in-memory table and the tables, merged (merge.ts). */
  #mergedRange(nsId: number, start: string, end: string, snap: number, reverse: boolean, limit: number, after?: string): [string, Version][] {
    const out: [string, Version][] = [];
    if (limit <= 0) return out;
    // Resume strictly past `after`: the next key after k in binary-string order is k + "\0".
    if (after !== undefined) {
      if (!reverse && after >= start) start = after + "\0";
      if (reverse && after < end) end = after;
    }
    if (start >= end) return out;
    const inMemory = this.#inMemory(nsId, start, end);
    if (!inMemory && !reverse) {
      // One source (after a compaction, the common case): the tables append the newest
      // version per key at the snapshot, in order, leaving out deletes and expired values.
      const single = this.levels!.singleSource(nsId, start, end, snap);
      if (single !== undefined) {
        for (const t of single) if (t.scanInto(nsId, start, end, snap, limit, out as [string, TableVersion][], this.#notExpired)) break;
        return out;
      }
    }
    const tables = this.levels!.rangeSources(nsId, start, end, snap, reverse);
    if (!inMemory && tables.length <= 1) {
      // One source read in reverse: it already yields the newest version per key at the
      // snapshot, in order; only deletes are left out.
      for (const e of tables[0] ?? []) {
        if (e.value === null || this.#expired(e.value)) continue;
        out.push([e.key, { tsn: e.tsn, value: e.value }]);
        if (out.length >= limit) break;
      }
      return out;
    }
    const sources: Iterable<TableEntry>[] = inMemory ? [this.#memoryRange(nsId, start, end, snap, reverse), ...tables] : tables;
    // The merge yields each key's newest version; an expired one hides the older ones as a
    // delete does, and is left out here, before the limit (expiry.ts, rule 1).
    for (const e of mergeVisible(sources, { snapshotTsn: snap, reverse })) {
      if (this.#expired(e.value!)) continue;
      out.push([e.key, { tsn: e.tsn, value: e.value! }]);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The newest version ≤ snap of each key of this in-memory table in [start, end), deletes included. */
  *#memoryRange(nsId: number, start: string, end: string, snap: number, reverse: boolean): Generator<TableEntry, void, undefined> {
    const space = this.#spaces.get(nsId);
    if (!space) return;
    const emit = (chain: Chain): TableEntry | undefined => {
      const i = chain.at(snap);
      return i < 0 ? undefined : { nsId, key: chain.key, tsn: chain.tsn(i), value: chain.value(i) };
    };
    if (!reverse) {
      for (const cur = space.keys.seek(start); cur.item !== undefined; cur.next()) {
        if (cur.item.key >= end) return;
        const e = emit(cur.item);
        if (e) yield e;
      }
    } else {
      for (const cur = space.keys.seekBefore(end); cur.item !== undefined; cur.prev()) {
        if (cur.item.key < start) return;
        const e = emit(cur.item);
        if (e) yield e;
      }
    }
  }

  /** A key in [start, end) changed after `afterTsn` (TSN and key), or undefined. */
  changedInRange(nsId: number, start: string, end: string, afterTsn: number): { key: string; tsn: number } | undefined {
    const space = this.#spaces.get(nsId);
    if (space) {
      for (const cur = space.keys.seek(start); cur.item !== undefined; cur.next()) {
        const chain = cur.item;
        if (chain.key >= end) break;
        const t = chain.lastTsn;
        if (t > afterTsn) return { key: chain.key, tsn: t };
      }
    }
    // A table version newer than afterTsn is a change whatever memory holds above it.
    return this.#hasTables() ? this.levels!.changedInRange(nsId, start, end, afterTsn) : undefined;
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
        for (const chain of space.chains.values()) dropped += chain.length;
        this.#spaces.delete(nsId);
        continue;
      }
      let removedKeys = false;
      for (const [key, chain] of space.chains) {
        const i = chain.at(minSnap);
        if (i < 0) continue; // every version is newer than minSnap: all may be read
        if (i === chain.length - 1 && chain.value(i) === null) {
          dropped += chain.length;
          space.chains.delete(key);
          removedKeys = true;
          continue;
        }
        if (i > 0) {
          chain.dropOldest(i);
          dropped += i;
        }
      }
      if (removedKeys) space.forgetDeleted();
    }
    this.versionCount -= dropped;
    return dropped;
  }

  /**
   * Format 2: drops every version at or below `foldedTsn`, now that tables holding the
   * state at that version are open (see the module comment). Every snapshot this process
   * still serves must be at or above it (tail.ts ends the others first). Returns the
   * versions dropped.
   */
  dropFolded(foldedTsn: number): number {
    this.prepared.dropFolded(foldedTsn);
    let dropped = 0;
    for (const [nsId, space] of this.#spaces) {
      let removedKeys = false;
      for (const [key, chain] of space.chains) {
        if (chain.length === 0 || chain.t0 > foldedTsn) continue;
        let n = 0;
        while (n < chain.length && chain.tsn(n) <= foldedTsn) n++;
        dropped += n;
        if (n === chain.length) {
          space.chains.delete(key);
          removedKeys = true;
        } else {
          chain.dropOldest(n);
        }
      }
      if (space.chains.size === 0) this.#spaces.delete(nsId);
      else if (removedKeys) space.forgetDeleted();
    }
    // Namespace bindings too: every snapshot still served is at or above foldedTsn, so of
    // each name only its newest binding at or below it, and those after, can be asked for;
    // a name dropped or renamed away at or below it, and not bound again since, is forgotten
    // (nameChangedAt, resolve and firstBoundAfter answer the same for every version at or
    // above foldedTsn, as after a fresh open, which loads the live bindings only). Kept
    // whole, every name ever created stayed in memory for the process's life: a process
    // creating and dropping a namespace per session or job grew without bound, and
    // listNamespaces(), stats() and each compaction walked them all.
    for (const [name, c] of this.#names) {
      let i = c.tsns.length - 1;
      while (i >= 0 && c.tsns[i]! > foldedTsn) i--;
      if (i < 0) continue;
      if (i === c.tsns.length - 1 && c.ids[i] === null) {
        this.#names.delete(name);
      } else if (i > 0) {
        c.tsns.splice(0, i);
        c.ids.splice(0, i);
      }
    }
    this.versionCount -= dropped;
    return dropped;
  }

  /**
   * Format 2: the versions compaction folds, in table order (namespace id, key), for each
   * key the newest one in (afterTsn, uptoTsn], deletes included, only in namespace ids
   * `keep` accepts. Read synchronously by the caller while nothing else runs.
   */
  *foldEntries(afterTsn: number, uptoTsn: number, keep: (nsId: number) => boolean): Generator<TableEntry, void, undefined> {
    const ids = [...this.#spaces.keys()].filter(keep).sort((a, b) => a - b);
    for (const nsId of ids) {
      const space = this.#spaces.get(nsId)!;
      for (const chain of space.keys) {
        const i = chain.at(uptoTsn);
        if (i < 0 || chain.tsn(i) <= afterTsn) continue;
        yield { nsId, key: chain.key, tsn: chain.tsn(i), value: chain.value(i) };
      }
    }
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
