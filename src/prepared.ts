/**
 * The participant side of two-phase commit: the prepared transactions of one store, as
 * every process learns them by tailing the log, and the rules that validate and build the
 * records of the protocol (record.ts, kind 2).
 *
 * Rules, in the order the committer (commit.ts) carries them out under the writer lock,
 * after catching up, so every process applies them to the same history:
 *
 * 1. `tx.prepare(txid)` validates the transaction like a commit (namespaces, written keys,
 *    serializable reads and ranges, checks; a namespace it read and found missing is
 *    NAMESPACE_NOT_FOUND: rule 2 could not hold its absence), and also against every undecided prepared
 *    transaction: a key it writes that one of them wrote or read (or that lies in a range
 *    one of them read), or a key it read or a range it read holding a key one of them
 *    wrote, is CONFLICT with `details.preparedBy`. Sums are computed here, at the head:
 *    the keys stay frozen until the decision, so the value cannot go stale. Then one record
 *    carries its writes (not visible), its reads and ranges, its coordinator and the time.
 * 2. Until it is decided, any other commit that writes a key it wrote or read (or one in a
 *    range it read), or drops or renames a namespace it touched, fails with CONFLICT whose
 *    `details.preparedBy` is its txid. Reads are never blocked: they see the last committed
 *    version, and the prepared writes become visible only with the decision.
 * 3. `commitPrepared(txid)` appends a record carrying the prepared writes, visible at its
 *    own new version; `abortPrepared(txid)` appends one that drops them. No validation is
 *    needed: rule 2 kept every key it wrote or read unchanged.
 * 4. Decisions are final and idempotent: a second commit of a committed txid answers its
 *    version; every other decision on a decided txid, and a commit of an unknown one, is
 *    NOT_PREPARED with `details.state`. An abort of an unknown txid is recorded (presumed
 *    abort): a prepare of that txid arriving later is refused.
 * 5. Compaction folds the log past prepare records: the manifest carries the undecided
 *    ones (with their writes, reads and ranges), and the most recent decisions (at most
 *    {@link DECISIONS_CARRIED_MAX}), so they survive compaction and restarts. A process
 *    loading that manifest replays the log after it, decisions included.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { binaryToBytes, bytesToBinary, decodeKey, describeKey } from "./keys.ts";
import type { Key } from "./keys.ts";
import type { Index } from "./index.ts";
import { decodeCommit, encodeCommit } from "./record.ts";
import type { CommitRecord, CoordinatorRef, PrepareOp } from "./record.ts";
import type { TxState } from "./tx.ts";

/** Decisions each process remembers (and a manifest carries): older ones are forgotten. */
export const DECISIONS_KEPT_MAX = 10_000;
/** Decisions a compaction carries into the manifest (the newest folded ones). */
export const DECISIONS_CARRIED_MAX = 1_000;

/** What a transaction's two-phase part asks of the committer (set on its TxState). */
export type TwoPhaseRequest =
  | { op: "prepare"; txid: string; coordinator: CoordinatorRef | null; inDoubtMs: number; atMs: number }
  | { op: "commit"; txid: string }
  | { op: "abort"; txid: string };

/** An undecided prepared transaction, as this process knows it. */
export interface PreparedTx {
  /** The version of its prepare record. */
  tsn: number;
  op: PrepareOp;
}

/** A decided transaction: its outcome and the version of the decision. */
export interface Decision {
  outcome: "committed" | "aborted";
  tsn: number;
  /** The prepared transaction it decided, until compaction folds the decision. */
  prepared?: PreparedTx;
}

/** A prepared transaction as `db.listPrepared()` shows it. */
export interface PreparedInfo {
  /** The transaction id given to `tx.prepare()`. */
  txid: string;
  /** The coordinator store's directory, or null for a transaction prepared without one. */
  coordinator: string | null;
  /** When it was prepared (wall clock, ms since the epoch). */
  preparedAtMs: number;
  /** How long it has been prepared, in ms. */
  ageMs: number;
  /** True once undecided for longer than its in-doubt timeout (a resolver decides it). */
  inDoubt: boolean;
  /** The keys it writes (blocked for other writers until it is decided). */
  keys: { ns: string; key: Key }[];
  /** The version of its prepare record. */
  version: bigint;
}

/** Two-phase figures of `stats()`. */
export interface TwoPhaseStats {
  /** Prepared transactions of this store not yet decided. */
  prepared: number;
  /** Of those, how many are past their in-doubt timeout. */
  inDoubt: number;
  /** Age of the oldest undecided prepared transaction, in ms (0: none). */
  oldestPreparedAgeMs: number;
  /** Transactions this process prepared. */
  preparesMade: number;
  /** Prepared transactions this process committed (commitPrepared). */
  preparedCommitted: number;
  /** Prepared transactions this process aborted (abortPrepared). */
  preparedAborted: number;
  /** In-doubt transactions this process's resolver decided (either way). */
  inDoubtResolved: number;
}

function conflictWith(p: PreparedTx, ns: string, key: string, what: string): TxtDbError {
  const k = decodeKey(key);
  return new TxtDbError(
    "CONFLICT",
    `Transaction conflict: ${what} ${describeKey(k)} in namespace "${ns}" is held by prepared transaction "${p.op.txid}" (prepared at version ${p.tsn}) until it is committed or aborted; retry the transaction`,
    { details: { ns, key: k, version: BigInt(p.tsn), preparedBy: p.op.txid } },
  );
}

/** Thrown (as a TxtDbError) when a decision meets a transaction that is not prepared. */
export function notPrepared(txid: string, state: "committed" | "aborted" | "unknown", what: string, version?: number): TxtDbError {
  const why = state === "unknown"
    ? `no transaction "${txid}" is prepared (never prepared, or decided so long ago that it was forgotten)`
    : `transaction "${txid}" was already ${state}${version !== undefined ? ` at version ${version}` : ""}`;
  return new TxtDbError("NOT_PREPARED", `Cannot ${what}: ${why}`, {
    details: { txid, state, ...(version !== undefined ? { version: BigInt(version) } : {}) },
  });
}

interface Holders {
  /** key → txids that wrote or read it (undecided only). */
  keys: Map<string, Set<string>>;
  /** key → the txid that wrote it (one at most: rule 1 refuses a second). */
  written: Map<string, string>;
}

/** The prepared transactions and recent decisions of one store, in one process. */
export class PreparedSet {
  readonly #open = new Map<string, PreparedTx>();
  /** Insertion (= decision version) order: the oldest are forgotten first. */
  readonly #decided = new Map<string, Decision>();
  readonly #byNs = new Map<number, Holders>();
  /** Called when a prepare is applied (the resolver starts watching: participant.ts). */
  onPrepare: (() => void) | undefined;

  /** Undecided prepared transactions. */
  get size(): number {
    return this.#open.size;
  }

  /** The undecided prepared transactions, oldest first. */
  list(): PreparedTx[] {
    return [...this.#open.values()].sort((a, b) => a.tsn - b.tsn);
  }

  /** The undecided prepared transaction `txid`, if any. */
  get(txid: string): PreparedTx | undefined {
    return this.#open.get(txid);
  }

  /** The decision on `txid`, if this process remembers one. */
  decision(txid: string): Decision | undefined {
    return this.#decided.get(txid);
  }

  // --- applying records (Index.apply / Index.undo call these) ---

  apply(record: CommitRecord): void {
    const tp = record.twoPhase!;
    if (tp.op === "prepare") {
      if (this.#open.has(tp.txid) || this.#decided.has(tp.txid)) return; // never validated so: ignored
      this.#add({ tsn: record.tsn, op: tp });
      this.onPrepare?.();
      return;
    }
    if (this.#decided.has(tp.txid)) return;
    const p = this.#open.get(tp.txid);
    if (p) this.#remove(p);
    this.#decided.set(tp.txid, { outcome: tp.op === "commit" ? "committed" : "aborted", tsn: record.tsn, ...(p ? { prepared: p } : {}) });
    if (this.#decided.size > DECISIONS_KEPT_MAX) {
      for (const [txid, d] of this.#decided) {
        if (this.#decided.size <= DECISIONS_KEPT_MAX) break;
        if (d.tsn !== record.tsn) this.#decided.delete(txid);
      }
    }
  }

  /** Takes back what apply(record) did; `record` is the newest applied. */
  undo(record: CommitRecord): void {
    const tp = record.twoPhase!;
    if (tp.op === "prepare") {
      const p = this.#open.get(tp.txid);
      if (p && p.tsn === record.tsn) this.#remove(p);
      return;
    }
    const d = this.#decided.get(tp.txid);
    if (!d || d.tsn !== record.tsn) return;
    this.#decided.delete(tp.txid);
    if (d.prepared) this.#add(d.prepared);
  }

  /** A compaction folded everything up to `foldedTsn`: decided transactions' writes are in the tables. */
  dropFolded(foldedTsn: number): void {
    for (const d of this.#decided.values()) if (d.tsn <= foldedTsn && d.prepared) delete d.prepared;
  }

  #holders(nsId: number): Holders {
    let h = this.#byNs.get(nsId);
    if (!h) this.#byNs.set(nsId, (h = { keys: new Map(), written: new Map() }));
    return h;
  }

  #add(p: PreparedTx): void {
    this.#open.set(p.op.txid, p);
    const hold = (nsId: number, key: string) => {
      const h = this.#holders(nsId);
      let set = h.keys.get(key);
      if (!set) h.keys.set(key, (set = new Set()));
      set.add(p.op.txid);
    };
    for (const w of p.op.writes) {
      const key = bytesToBinary(w.key);
      hold(w.nsId, key);
      this.#holders(w.nsId).written.set(key, p.op.txid);
    }
    for (const r of p.op.reads) hold(r.nsId, bytesToBinary(r.key));
  }

  #remove(p: PreparedTx): void {
    this.#open.delete(p.op.txid);
    const release = (nsId: number, key: string) => {
      const h = this.#byNs.get(nsId);
      const set = h?.keys.get(key);
      if (!h || !set) return;
      set.delete(p.op.txid);
      if (set.size === 0) h.keys.delete(key);
      if (h.written.get(key) === p.op.txid) h.written.delete(key);
      if (h.keys.size === 0) this.#byNs.delete(nsId);
    };
    for (const w of p.op.writes) release(w.nsId, bytesToBinary(w.key));
    for (const r of p.op.reads) release(r.nsId, bytesToBinary(r.key));
  }

  // --- validation (rules 1, 2) ---

  /** The undecided prepared transaction (other than `self`) that holds `key` of `nsId`: wrote it, read it, or read a range holding it. */
  #holderOf(nsId: number, key: string, self?: string): PreparedTx | undefined {
    const set = this.#byNs.get(nsId)?.keys.get(key);
    if (set) for (const txid of set) if (txid !== self) return this.#open.get(txid);
    for (const p of this.#open.values()) {
      if (p.op.txid === self || p.op.ranges.length === 0) continue;
      for (const r of p.op.ranges) {
        if (r.nsId !== nsId) continue;
        if (key >= bytesToBinary(r.start) && key < bytesToBinary(r.end)) return p;
      }
    }
    return undefined;
  }

  /** The undecided prepared transaction (other than `self`) that wrote `key` of `nsId`. */
  #writerOf(nsId: number, key: string, self?: string): PreparedTx | undefined {
    const txid = this.#byNs.get(nsId)?.written.get(key);
    return txid !== undefined && txid !== self ? this.#open.get(txid) : undefined;
  }

  /** True if an undecided prepared transaction touches namespace `nsId`. */
  #touching(nsId: number): PreparedTx | undefined {
    const h = this.#byNs.get(nsId);
    if (h) for (const set of h.keys.values()) for (const txid of set) return this.#open.get(txid);
    for (const p of this.#open.values()) if (p.op.ranges.some((r) => r.nsId === nsId)) return p;
    return undefined;
  }

  /**
   * Rule 2 for an ordinary commit (and rule 1's first half for a prepare): the error if one
   * of its writes, or a namespace it drops or renames, is held by a prepared transaction.
   */
  blocks(s: TxState, index: Index, self?: string): TxtDbError | undefined {
    if (this.#open.size === 0) return undefined;
    const head = index.lastTsn;
    for (const op of s.namespaceOps) {
      if (op.op === "create") continue;
      const id = index.resolve(op.name, head);
      const p = id === undefined ? undefined : this.#touching(id);
      if (p) {
        return new TxtDbError("CONFLICT", `Transaction conflict: namespace "${op.name}" is touched by prepared transaction "${p.op.txid}" until it is committed or aborted; retry`, {
          details: { ns: op.name, version: BigInt(p.tsn), preparedBy: p.op.txid },
        });
      }
    }
    for (const [ns, writes] of s.writes) {
      const id = index.resolve(ns, head);
      if (id === undefined) continue; // validate() reported it
      for (const key of writes.keys()) {
        const p = this.#holderOf(id, key, self);
        if (p) return conflictWith(p, ns, key, "key written");
      }
    }
    return undefined;
  }

  /** Rule 1's second half: a prepare's reads, checks and ranges against prepared writes. */
  #readsBlocked(s: TxState, index: Index, self: string): TxtDbError | undefined {
    if (this.#open.size === 0) return undefined;
    const head = index.lastTsn;
    for (const [ns, keys] of s.reads) {
      const id = index.resolve(ns, head)!;
      for (const key of keys) {
        const p = this.#writerOf(id, key, self);
        if (p) return conflictWith(p, ns, key, "key read");
      }
    }
    for (const c of s.checks) {
      const p = this.#writerOf(index.resolve(c.ns, head)!, c.key, self);
      if (p) return conflictWith(p, c.ns, c.key, "key checked");
    }
    for (const r of s.ranges) {
      const id = index.resolve(r.ns, head)!;
      for (const [txid, p] of this.#open) {
        if (txid === self) continue;
        for (const w of p.op.writes) {
          if (w.nsId !== id) continue;
          const key = bytesToBinary(w.key);
          if (key >= r.start && key < r.end) return conflictWith(p, r.ns, key, "key in a range read");
        }
      }
    }
    return undefined;
  }

  /**
   * Validates a two-phase request (after validate() for a prepare); returns the error that
   * rejects it, or undefined. An abort of an already aborted txid is no error, but nothing
   * is written for it: `skip` says so.
   */
  validate(s: TxState, index: Index, validateCommit: (s: TxState, index: Index) => TxtDbError | undefined): { error?: TxtDbError; skip?: number } {
    const req = s.twoPhase!;
    const decided = this.#decided.get(req.txid);
    if (req.op === "prepare") {
      if (this.#open.has(req.txid) || decided) {
        const state = decided?.outcome ?? "prepared";
        return {
          error: new TxtDbError("INVALID_ARGUMENT", `Cannot prepare transaction "${req.txid}": that id was already ${state}${state === "aborted" ? " (a coordinator or resolver gave up on it)" : ""}; use a new transaction id`, {
            details: { txid: req.txid, state },
          }),
        };
      }
      const error = validateCommit(s, index) ?? missingNamespaceRead(s, index, req.txid) ?? this.blocks(s, index, req.txid) ?? this.#readsBlocked(s, index, req.txid);
      return error ? { error } : {};
    }
    if (this.#open.has(req.txid)) return {};
    if (req.op === "commit") return { error: notPrepared(req.txid, decided?.outcome ?? "unknown", `commit prepared transaction "${req.txid}"`, decided?.tsn) };
    if (!decided) return {}; // rule 4: an unknown txid's abort is recorded
    if (decided.outcome === "aborted") return { skip: decided.tsn };
    return { error: notPrepared(req.txid, "committed", `abort prepared transaction "${req.txid}"`, decided.tsn) };
  }

  /** The record of a validated two-phase request at `tsn`; `prepared` builds a prepare's writes (sums computed at the head). */
  build(s: TxState, index: Index, tsn: number, build: (s: TxState, index: Index, tsn: number) => CommitRecord): CommitRecord {
    const req = s.twoPhase!;
    if (req.op === "commit") return { tsn, writes: this.#open.get(req.txid)!.op.writes, namespaceOps: [], twoPhase: { op: "commit", txid: req.txid } };
    if (req.op === "abort") return { tsn, writes: [], namespaceOps: [], twoPhase: { op: "abort", txid: req.txid } };
    const { writes } = build(s, index, tsn);
    const head = index.lastTsn;
    const reads: PrepareOp["reads"] = [];
    const seen = new Set<string>();
    const addRead = (nsId: number, key: string) => {
      const tag = `${nsId}:${key}`;
      if (seen.has(tag)) return;
      seen.add(tag);
      reads.push({ nsId, key: binaryToBytes(key) });
    };
    for (const [ns, keys] of s.reads) for (const key of keys) addRead(index.resolve(ns, head)!, key);
    for (const c of s.checks) addRead(index.resolve(c.ns, head)!, c.key);
    const ranges = s.ranges.map((r) => ({ nsId: index.resolve(r.ns, head)!, start: binaryToBytes(r.start), end: binaryToBytes(r.end) }));
    return {
      tsn,
      writes: [],
      namespaceOps: [],
      twoPhase: { op: "prepare", txid: req.txid, coordinator: req.coordinator, preparedAtMs: req.atMs, inDoubtMs: req.inDoubtMs, writes, reads, ranges },
    };
  }

  // --- the manifest (rule 5) ---

  /** What a manifest folding up to `foldedTsn` carries; undefined when there is nothing. */
  carry(foldedTsn: number): ManifestTwoPhase | undefined {
    const prepared: Uint8Array[] = [];
    for (const p of this.list()) {
      if (p.tsn <= foldedTsn) prepared.push(encodeCommit({ tsn: p.tsn, writes: [], namespaceOps: [], twoPhase: p.op }));
    }
    const folded = [...this.#decided].filter(([, d]) => d.tsn <= foldedTsn).slice(-DECISIONS_CARRIED_MAX);
    const decisions: (string | number)[] = [];
    for (const [txid, d] of folded) decisions.push(txid, d.outcome === "committed" ? d.tsn : -d.tsn);
    if (prepared.length === 0 && decisions.length === 0) return undefined;
    return { prepared, decisions };
  }

  /** Loads what a manifest carried (into an empty set). Throws a plain Error if it is malformed. */
  load(carried: ManifestTwoPhase | undefined): void {
    if (!carried) return;
    if (!Array.isArray(carried.prepared) || !Array.isArray(carried.decisions) || carried.decisions.length % 2 !== 0) throw new Error("its two-phase part is malformed");
    const d = carried.decisions;
    for (let i = 0; i < d.length; i += 2) {
      const [txid, signed] = [d[i], d[i + 1]];
      if (typeof txid !== "string" || typeof signed !== "number" || !Number.isSafeInteger(signed) || signed === 0) throw new Error(`its decision #${i / 2} is malformed`);
      this.#decided.set(txid, { outcome: signed > 0 ? "committed" : "aborted", tsn: Math.abs(signed) });
    }
    for (const body of carried.prepared) {
      if (!(body instanceof Uint8Array)) throw new Error("a prepared transaction it carries is not bytes");
      const r = decodeCommit(body);
      if (r.twoPhase?.op !== "prepare") throw new Error("a prepared transaction it carries is not a prepare record");
      this.#add({ tsn: r.tsn, op: r.twoPhase });
    }
  }
}

/**
 * Rule 1: a prepare that read a namespace it found missing is refused. Rule 2 holds keys and
 * ranges until the decision, not a namespace's absence: its creation by another commit
 * meanwhile would go unseen (a serializable anomaly), so the prepare is not made at all.
 */
function missingNamespaceRead(s: TxState, index: Index, txid: string): TxtDbError | undefined {
  if (s.blind) return undefined;
  const head = index.lastTsn;
  for (const ns of s.touched) {
    if (index.resolve(ns, head) !== undefined) continue;
    return new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot prepare transaction "${txid}": it read namespace "${ns}", which does not exist, and a prepared transaction holds the keys and ranges it read until its decision, not a namespace's absence. Create the namespace first, or roll back`, {
      details: { ns, txid },
    });
  }
  return undefined;
}

/** The manifest's two-phase part: undecided prepare records (encoded) and recent decisions. */
export interface ManifestTwoPhase {
  /** Prepare record bodies (record.ts) of the transactions undecided at the folded version. */
  prepared: Uint8Array[];
  /** Flat [txid, version, ...]: a positive version is a commit, a negative one an abort. */
  decisions: (string | number)[];
}
