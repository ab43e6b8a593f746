/**
 * A transaction's bookkeeping, shared by both engines (the local one in tx.ts and commit.ts,
 * etcd's in etcd/transaction.ts and etcd/commit.ts): what it read (keys and ranges, for
 * serializable validation), what it wrote, what it checked, and the rules that build them:
 *
 * - B1. Serializable only: a key read is recorded, whether present or not; a range read is
 *   recorded as [start, end), cut at the last key returned when a limit stopped the scan
 *   (what was not returned was not read). Snapshot isolation records no reads.
 * - B2. A key's last write wins; a `sum` over a pending `set` becomes a `set` of the sum
 *   (keeping its expiry, expiry.ts rule 4), over a pending `delete` or an expired `set` a
 *   `set` of the delta; sums over sums add up. Only a `sum` over nothing stays a `sum`,
 *   which the committer applies to the value at commit time (never a conflict of its own).
 * - B3. Limits: `maxTxWrites` distinct keys and `maxTxBytes` bytes per transaction (LIMIT).
 * - B4. Serializable: the soonest expiry among values read present is kept (expiry.ts
 *   rule 3): the commit fails with CONFLICT if it has passed.
 *
 * Versions are numbers here: TSNs locally, etcd revisions on etcd (both far below 2^53).
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { describeKey, decodeKey } from "./keys.ts";
import { decodeValue, encodeValue } from "./codec.ts";
import { expiresAtOf, isExpired, isExpiring, valueBytesOf, wrapExpiring } from "./expiry.ts";
import type { ReadExpiry } from "./expiry.ts";
import type { Index } from "./index.ts";
import type { Isolation, ListSelector } from "./tx.ts";
import type { TwoPhaseRequest } from "./prepared.ts";

/** A buffered write. */
export type WriteOp =
  | { kind: "set"; value: Uint8Array }
  | { kind: "delete" }
  | { kind: "sum"; delta: number | bigint };

/** A namespace operation a transaction asks for. */
export type NamespaceRequest =
  | { op: "create"; name: string }
  | { op: "drop"; name: string }
  | { op: "rename"; name: string; to: string };

/** Everything the committer needs to validate and write a transaction. */
export interface TxState {
  readVersion: number;
  isolation: Isolation;
  /** A one-operation write from db.set/db.delete: nothing was read, nothing can conflict. */
  blind: boolean;
  reads: Map<string, Set<string>>;
  ranges: { ns: string; start: string; end: string; selector: ListSelector }[];
  writes: Map<string, Map<string, WriteOp>>;
  checks: { ns: string; key: string; version: number | null }[];
  touched: Set<string>;
  namespaceOps: NamespaceRequest[];
  bytes: number;
  writeCount: number;
  /** Serializable: the soonest expiry among the versions read present (expiry.ts, rule 3). */
  readExpiry: ReadExpiry | undefined;
  /**
   * Work decided at the head of history (queues: queuestore.ts): the committer runs it under
   * the writer lock after validation; it may add writes. False: nothing is left to write.
   */
  atHead?: ((index: Index) => boolean) | undefined;
  /**
   * Independent writes that may share one commit record (one version) with the shareable
   * commits next to it in a group commit (db.enqueue: every message its own key). Saves
   * every process the framing, decoding and bookkeeping of a record per message.
   */
  shareable?: boolean;
  /**
   * How many commits this one counts as in stats (`commits`), if not one: a batch of
   * enqueues (queues.ts) counts each message it wrote, as when each was its own commit.
   * Set by atHead.
   */
  commitsCounted?: number;
  /** Called once the commit is written, before it is durable (queues start handlers then). */
  onAppended?: ((tsn: number) => void) | undefined;
  /** Two-phase commit only: a prepare, or the decision on one (prepared.ts). */
  twoPhase?: TwoPhaseRequest;
  /**
   * True once the pin of the transaction's read version was ended (pins.ts: its history was
   * compacted away while this process held no lease). The committer checks it under the
   * writer lock, after its catch-up and before validation: the commit then fails with
   * {@link lostHistoryConflict}, for what changed since its read version may be folded
   * out of sight (a delete's tombstone dropped) and validation would miss it.
   */
  pinEnded?: () => boolean;
}

/**
 * CONFLICT for a transaction whose read version's history is gone (compacted away while
 * this process held no lease to pin it): retryable, like any transaction whose reads can no
 * longer be validated. `when` says what ended it and where ("was ended", "was ended while its
 * commit waited for the writer lock, …").
 */
export function lostHistoryConflict(when = "was ended"): TxtDbError {
  return new TxtDbError("CONFLICT", `Transaction ${when}: another process compacted away the history it reads while this process held no lease to pin it; retry it`, { details: { lostHistory: true } });
}

export function newTxState(readVersion: number, isolation: Isolation, blind: boolean): TxState {
  return {
    readVersion,
    isolation,
    blind,
    reads: new Map(),
    ranges: [],
    writes: new Map(),
    checks: [],
    touched: new Set(),
    namespaceOps: [],
    bytes: 0,
    writeCount: 0,
    readExpiry: undefined,
  };
}

/** Limits enforced on keys, values and transactions. */
export interface Limits {
  maxKeyBytes: number;
  maxValueBytes: number;
  maxTxBytes: number;
  maxTxWrites: number;
  /** Where `maxTxWrites` comes from, when not the option (etcd's per-txn limit). */
  maxTxWritesWhy?: string;
}

/**
 * `tx.check()`'s version: a bigint from 1 (every committed version is: the first commit of a
 * store is 1, an etcd revision too) up to 2^53 - 1 (it is compared as a number), or null
 * for "absent"; INVALID_ARGUMENT otherwise. A version of 0 or below was taken, and could
 * only ever fail the commit with CONFLICT, which reads as another writer's doing.
 */
export function checkVersionArg(version: unknown): asserts version is bigint | null {
  if (version === null) return;
  if (typeof version !== "bigint") throw new TxtDbError("INVALID_ARGUMENT", `check() needs a bigint version or null, got ${typeof version}`);
  if (version < 1n || version > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new TxtDbError("INVALID_ARGUMENT", `check() needs a version a commit can have (from 1n to ${Number.MAX_SAFE_INTEGER}n), or null for "the key is absent"; got ${version}n`);
  }
}

/** Adds two sum operands of the same numeric type, or fails with INVALID_VALUE. */
export function addNumeric(base: unknown, delta: number | bigint, where: string, baseIs = "a stored"): number | bigint {
  if (typeof base === "number" && typeof delta === "number") return base + delta;
  if (typeof base === "bigint" && typeof delta === "bigint") return base + delta;
  throw new TxtDbError(
    "INVALID_VALUE",
    `sum() on ${where}: cannot add a ${typeof delta} to ${baseIs} ${base === null ? "null" : typeof base}; sum() needs a number or bigint of the same type`,
  );
}


/** B1: records a key read (serializable only). */
export function recordRead(s: TxState, ns: string, key: string): void {
  if (s.isolation !== "serializable") return;
  let set = s.reads.get(ns);
  if (!set) s.reads.set(ns, (set = new Set()));
  set.add(key);
}

/** B4: a serializable read saw a version present that expires at `expiresAtMs`. */
export function noteExpiring(s: TxState, ns: string, key: string, tsn: number, expiresAtMs: number): void {
  if (s.isolation !== "serializable") return;
  const soonest = s.readExpiry;
  if (soonest === undefined || expiresAtMs < soonest.expiresAtMs) s.readExpiry = { ns, key, tsn, expiresAtMs };
}

/**
 * B1: records the range [start, end) read by a scan that returned `keys` (in scan order);
 * when the scan stopped at `limit`, only up to the last key returned counts as read.
 */
export function recordRange(s: TxState, ns: string, start: string, end: string, sel: ListSelector, keys: readonly string[], limit: number, reverse: boolean): void {
  // limit 0 reads no key: nothing of the range was seen (it used to record all of it).
  if (s.isolation !== "serializable" || limit === 0) return;
  let rs = start, re = end;
  if (keys.length >= limit && keys.length > 0) {
    const last = keys[keys.length - 1]!;
    if (reverse) rs = last;
    else re = last + "\x00";
  }
  s.ranges.push({ ns, start: rs, end: re, selector: sel });
}

/** The bytes a pending write at `key` counts for (as its callers add them: a sum counts 16). */
function opBytes(key: string, op: WriteOp): number {
  return key.length + (op.kind === "set" ? op.value.length : op.kind === "sum" ? 16 : 0);
}

/** B3: LIMIT if a transaction of `bytes` counted bytes passes `maxTxBytes` (every way of writing counts the same). */
export function checkTxBytes(bytes: number, maxTxBytes: number): void {
  if (bytes > maxTxBytes) {
    throw new TxtDbError("LIMIT", `Transaction exceeds ${maxTxBytes} bytes (maxTxBytes); split it into smaller transactions`);
  }
}

/** B3: buffers `op` at `key`, within the transaction's limits. */
export function putWrite(s: TxState, limits: Limits, ns: string, key: string, op: WriteOp, addedBytes: number): void {
  let m = s.writes.get(ns);
  if (!m) s.writes.set(ns, (m = new Map()));
  const prior = m.get(key);
  if (!prior) {
    if (s.writeCount + 1 > limits.maxTxWrites) {
      throw new TxtDbError("LIMIT", `Transaction writes more than ${limits.maxTxWrites} keys (${limits.maxTxWritesWhy ?? "maxTxWrites"}); split it into smaller transactions`);
    }
  }
  // The write replaces the key's pending one (B2: the last write wins), so its bytes leave
  // the count: a key set, or summed, again and again used to add up to a LIMIT for a
  // transaction whose record holds one value.
  const bytes = s.bytes - (prior ? opBytes(key, prior) : 0) + Math.max(addedBytes, opBytes(key, op));
  checkTxBytes(bytes, limits.maxTxBytes);
  if (!prior) s.writeCount++;
  s.bytes = bytes;
  m.set(key, op);
}

/** A sum's delta: a finite number or a bigint (INVALID_VALUE otherwise). */
export function checkDelta(delta: unknown): asserts delta is number | bigint {
  if (!(typeof delta === "bigint" || (typeof delta === "number" && Number.isFinite(delta)))) {
    throw new TxtDbError("INVALID_VALUE", `sum() needs a finite number or a bigint delta, got ${String(delta)}`);
  }
}

/** B2: the write a `sum(delta)` at `key` (encoded) becomes, given the pending write there. */
export function sumOp(prior: WriteOp | undefined, delta: number | bigint, ns: string, key: string, nowMs: number): WriteOp {
  checkDelta(delta);
  const where = `key ${describeKey(decodeKey(key))} in "${ns}"`;
  if (!prior) return { kind: "sum", delta };
  // What is added to here is this transaction's own earlier write, not a stored value: the
  // message said "a stored bigint" of a key that held nothing, which sent the caller to
  // look for a value that was not there.
  if (prior.kind === "sum") return { kind: "sum", delta: addNumeric(prior.delta, delta, where, "the delta of this transaction's earlier sum() on it, a") };
  if (prior.kind === "delete" || isExpired(prior.value, nowMs)) return { kind: "set", value: encodeValue(delta) };
  // The sum keeps the expiry of the value it adds to (expiry.ts, rule 4).
  let base: unknown;
  try {
    base = decodeValue(valueBytesOf(prior.value));
  } catch (e) {
    throw new TxtDbError("CORRUPTION", `The pending value of ${where} cannot be decoded`, { cause: e });
  }
  const sum = encodeValue(addNumeric(base, delta, where, "the value this transaction set it to, a"));
  return { kind: "set", value: isExpiring(prior.value) ? wrapExpiring(sum, expiresAtOf(prior.value)) : sum };
}

/**
 * What a transaction sees at a key where it wrote `op`, over `base` (the stored bytes the
 * snapshot holds there, undefined if absent): the stored bytes, or undefined if absent.
 */
export function overlayWrite(op: WriteOp, base: Uint8Array | undefined, ns: string, key: string, nowMs: number): Uint8Array | undefined {
  if (op.kind === "delete") return undefined;
  if (op.kind === "set") return isExpired(op.value, nowMs) ? undefined : op.value;
  if (base === undefined) return encodeValue(op.delta);
  let v: unknown;
  try {
    v = decodeValue(valueBytesOf(base));
  } catch (e) {
    throw new TxtDbError("CORRUPTION", `The value of key ${describeKey(decodeKey(key))} in namespace "${ns}" cannot be decoded: the store is damaged`, { cause: e });
  }
  return encodeValue(addNumeric(v, op.delta, `key ${describeKey(decodeKey(key))}`));
}
