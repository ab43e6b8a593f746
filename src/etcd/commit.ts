/**
 * Committing a transaction on etcd: one etcd txn whose compares are the transaction's
 * validation and whose success ops are its writes. The rules are numbered in engine.ts's
 * module comment (V1-V8, U1-U6); this file carries them out.
 *
 * Steps of one attempt:
 * 1. The keys whose state at the head matters (the targets of `sum()` and `check()`) are
 *    read at the newest revision (one read-only txn): a sum is computed from that value, a
 *    check is judged on it, and both are pinned by an exact compare (MOD EQUAL the mod
 *    revision read, 0 for a missing key) so the commit lands only if they are still so.
 * 2. Compares: each namespace touched is still bound as at the read revision (MOD EQUAL);
 *    every key written (and, serializable, every key and range read) has no mod revision
 *    above the read revision (MOD LESS readRevision + 1, over a key or a key range); the
 *    commit id is not yet taken (VERSION EQUAL 0). Point and range compares are merged and,
 *    past etcd's 128, folded into covering ranges (more conflicts, never fewer).
 * 3. Ops: the writes (a delete is a tombstone put), the commit id (under the lease), and
 *    deletes of this process's older commit ids that are known to have landed.
 * 4. If the txn fails and its own commit id is there, it landed (a request delivered
 *    twice: U4); if the lease's mark of life is gone, the outcome is unknown (U5). If a
 *    step-1 key moved, the attempt is redone from step 1 (a sum
 *    never fails for another sum); otherwise the failure is a CONFLICT, and one more read
 *    names what lost.
 * 5. A txn whose outcome is unknown is resolved through its commit id (U1-U3).
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { decodeValue, encodeValue } from "../codec.ts";
import { expiresAtOf, isExpired, isExpiring, valueBytesOf, wrapExpiring } from "../expiry.ts";
import { decodeKey, describeKey } from "../keys.ts";
import type { EtcdClient, EtcdCompare, EtcdOp, EtcdOpResult, EtcdTxnResult } from "./client.ts";
import type { EtcdLease } from "./lease.ts";
import type { EtcdKeyValue } from "./wire.ts";
import type { WriteOp } from "../txstate.ts";
import { fixedRevision, isTombstone, parseRevision, TOMBSTONE } from "./layout.ts";
import { armTimer } from "../timers.ts";
import { isLeaseNotFound } from "./failures.ts";
import type { Layout } from "./layout.ts";
import { markDeletedAgain } from "./pins.ts";
import type { EtcdPins } from "./pins.ts";
import { compareBytes, ETCD_TXN_OPS_MAX, successor } from "./reader.ts";
import type { NsBinding } from "./reader.ts";

/** A buffered write: the shared WriteOp (txstate.ts). */
export type EtcdWriteOp = WriteOp;

/** Everything a commit needs; the shape of tx.ts's TxState, with revisions as bigint. */
export interface EtcdCommitRequest {
  /** The revision the transaction read. */
  readRevision: bigint;
  isolation: "serializable" | "snapshot";
  /** A one-operation write (db.set/db.delete): nothing read, nothing can conflict but the namespace's existence. */
  blind?: boolean;
  /** Namespaces as bound at readRevision (those missing are resolved at commit, at readRevision). */
  bindings: ReadonlyMap<string, NsBinding>;
  /** Keys read, per namespace (serializable). */
  reads: ReadonlyMap<string, ReadonlySet<string>>;
  /** Namespaces touched (read, written, or found missing: tx.ts TxReader.nsId). */
  touched?: ReadonlySet<string>;
  /** Ranges read [start, end) (end undefined: to the namespace's end), with what the user asked. */
  ranges: readonly { ns: string; start: string; end: string | undefined; selector?: unknown }[];
  writes: ReadonlyMap<string, ReadonlyMap<string, EtcdWriteOp>>;
  /** `check(ns, key, version)`: the key's version at commit must be `version` (null: absent). */
  checks: readonly { ns: string; key: string; version: bigint | null }[];
  /** Namespace operations (tx.ts NamespaceRequest); the engine runs them, alone (engine.ts). */
  namespaceOps?: readonly ({ op: "create"; name: string } | { op: "drop"; name: string } | { op: "rename"; name: string; to: string })[];
  /** Serializable: the soonest expiry among values read present, with where (expiry.ts rule 3). */
  readExpiry?: { ns: string; key: string; version: bigint; expiresAtMs: number } | undefined;
}

/** What a commit needs from the engine. */
export interface CommitContext {
  client: EtcdClient;
  layout: Layout;
  pins: EtcdPins;
  nowMs(): number;
  /** Resolves namespaces at `revision` (NAMESPACE_NOT_FOUND when unbound). */
  bind(names: readonly string[], revision: bigint): Promise<Map<string, NsBinding>>;
  /** A fresh commit sequence number (unique per lease: the engine's counter). */
  nextCommitSeq(): number;
  /** Commit ids known to have landed, to delete in later commits. */
  landed: Uint8Array[];
  /** Counters for stats(); bounded (numbers only). */
  counts: EtcdCommitCounts;
}

/** What commits did, for `stats()`. */
export interface EtcdCommitCounts {
  /** Commits that landed. */
  commits: number;
  /** Commits that failed with CONFLICT. */
  conflicts: number;
  /** Attempts redone because a summed or checked key moved (V5). */
  headRetries: number;
  /** Lost replies whose commit had landed, learned from its id (U2). */
  lostLanded: number;
  /** Lost replies whose commit was fenced out and sent again (U2). */
  lostFenced: number;
  /** Commits whose outcome could not be learned (U3). */
  unknown: number;
}

/** Most keys one commit may write on etcd: 128 ops less the commit id, and room for housekeeping. */
export const ETCD_TX_WRITES_MAX = 120;
/** Attempts of one commit while only its sums' and checks' keys move (then UNAVAILABLE). */
export const COMMIT_ATTEMPTS_MAX = 64;
/** Fences sent to learn a lost commit's outcome before saying it is unknown (U3). */
export const FENCE_ATTEMPTS_MAX = 3;
/** Attempts after an outcome proved not applied (each with a fresh commit id). */
const RESEND_MAX = 3;
const COMMIT_MARK = "c";
const FENCE_MARK = "f";
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** A "no change after the read revision" span of data keys, before folding. */
interface Span {
  lo: Uint8Array;
  hi: Uint8Array;
  /** The namespace and what the user read there, for CONFLICT details. */
  ns: string;
  key?: string;
  selector?: unknown;
  what: "key written" | "key read" | "range read";
}

function conflict(message: string, details: Record<string, unknown>): TxtDbError {
  return new TxtDbError("CONFLICT", message, { details });
}

/** Adds a sum delta to a stored value, as the local engine does (tx.ts addNumeric). */
function addTo(current: EtcdKeyValue | undefined, delta: number | bigint, ns: string, key: string, nowMs: number): Uint8Array {
  if (!current || isTombstone(current.value) || isExpired(current.value, nowMs)) return encodeValue(delta);
  const base = decodeValue(valueBytesOf(current.value));
  let sum: number | bigint;
  if (typeof base === "number" && typeof delta === "number") sum = base + delta;
  else if (typeof base === "bigint" && typeof delta === "bigint") sum = base + delta;
  else {
    throw new TxtDbError("INVALID_VALUE", `sum() on key ${describeKey(decodeKey(key))} in "${ns}": cannot add a ${typeof delta} to a stored ${base === null ? "null" : typeof base}; sum() needs a number or bigint of the same type`);
  }
  const bytes = encodeValue(sum);
  // The sum keeps the expiry of the value it adds to (expiry.ts, rule 4).
  return isExpiring(current.value) ? wrapExpiring(bytes, expiresAtOf(current.value)) : bytes;
}

/** Merges sorted spans that overlap or touch, then folds them into at most `budget`. */
export function foldSpans(spans: Span[], budget: number): Span[] {
  const sorted = [...spans].sort((a, b) => compareBytes(a.lo, b.lo));
  const merged: Span[] = [];
  for (const s of sorted) {
    const last = merged[merged.length - 1];
    if (last && compareBytes(s.lo, last.hi) <= 0) {
      if (compareBytes(s.hi, last.hi) > 0) last.hi = s.hi;
      if (last.what !== "range read" && (s.what === "range read" || last.key !== s.key)) Object.assign(last, { what: "range read", key: undefined, selector: s.selector ?? last.selector });
      continue;
    }
    merged.push({ ...s });
  }
  if (merged.length <= budget) return merged;
  // Too many for one txn: cover runs of neighbours with one range each. Keys between them
  // join the validation: a change there fails the commit too (a false conflict, never a
  // missed one).
  const per = Math.ceil(merged.length / budget);
  const folded: Span[] = [];
  for (let i = 0; i < merged.length; i += per) {
    const run = merged.slice(i, i + per);
    folded.push({ lo: run[0]!.lo, hi: run[run.length - 1]!.hi, ns: run[0]!.ns, what: "range read", selector: run.length > 1 ? undefined : run[0]!.selector, ...(run.length === 1 && run[0]!.key !== undefined ? { key: run[0]!.key, what: run[0]!.what } : {}) });
  }
  return folded;
}

function isPoint(s: Span): boolean {
  return s.hi.length === s.lo.length + 1 && s.hi[s.hi.length - 1] === 0 && compareBytes(s.hi.subarray(0, s.lo.length), s.lo) === 0;
}

/** Commits `req`; resolves with the commit's revision. See the module comment. */
export async function commit(ctx: CommitContext, req: EtcdCommitRequest): Promise<bigint> {
  const { layout } = ctx;
  const R = req.readRevision;
  let writeCount = 0;
  for (const m of req.writes.values()) writeCount += m.size;
  if (writeCount === 0 && req.checks.length === 0) return R; // read-only: never conflicts
  if (writeCount > ETCD_TX_WRITES_MAX) {
    throw new TxtDbError("LIMIT", `Transaction writes ${writeCount} keys; on etcd a transaction writes at most ${ETCD_TX_WRITES_MAX} (etcd's --max-txn-ops is 128 per txn); split it into smaller transactions`);
  }
  const serializable = req.isolation === "serializable" && req.blind !== true;
  if (serializable && req.readExpiry && req.readExpiry.expiresAtMs <= ctx.nowMs()) {
    const e = req.readExpiry;
    throw conflict(`Transaction conflict: key ${describeKey(decodeKey(e.key))} in namespace "${e.ns}", read at version ${e.version}, expired (at ${new Date(e.expiresAtMs).toISOString()}) before this transaction committed; retry the transaction`, {
      ns: e.ns,
      key: decodeKey(e.key),
      version: e.version,
      expired: true,
      expiresAtMs: e.expiresAtMs,
    });
  }
  // Namespaces: every one written, checked or read.
  const names = new Set<string>([...req.writes.keys(), ...req.checks.map((c) => c.ns)]);
  if (serializable) for (const ns of [...req.reads.keys(), ...req.ranges.map((r) => r.ns)]) names.add(ns);
  const bindings = new Map(req.bindings);
  const missing = [...names].filter((n) => !bindings.has(n));
  if (missing.length > 0) for (const [n, b] of await ctx.bind(missing, R)) bindings.set(n, b);
  // V1 for namespaces found missing: still unbound at the commit, or it conflicts (a read
  // that found one missing, then a creation of it by another commit: neither saw the other).
  const absent: string[] = [];
  if (!req.blind) {
    for (const ns of req.touched ?? []) {
      if (bindings.has(ns)) continue;
      try {
        for (const [n, b] of await ctx.bind([ns], R)) bindings.set(n, b);
      } catch (e) {
        if (!(e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND")) throw e;
        absent.push(ns);
      }
    }
  }
  const idOf = (ns: string) => bindings.get(ns)!.id;

  // Spans that must not have changed since R (V2, V3).
  const spans: Span[] = [];
  if (!req.blind) {
    for (const [ns, m] of req.writes) {
      for (const [key, op] of m) {
        if (op.kind === "sum") continue; // V5: sums are pinned by an exact compare instead
        const k = layout.dataKey(idOf(ns), key);
        spans.push({ lo: k, hi: successor(k), ns, key, what: "key written" });
      }
    }
  }
  if (serializable) {
    for (const [ns, keys] of req.reads) {
      for (const key of keys) {
        const k = layout.dataKey(idOf(ns), key);
        spans.push({ lo: k, hi: successor(k), ns, key, what: "key read" });
      }
    }
    for (const r of req.ranges) {
      const [lo, hi] = layout.dataRange(idOf(r.ns), r.start, r.end);
      if (compareBytes(lo, hi) < 0) spans.push({ lo, hi, ns: r.ns, selector: r.selector, what: "range read" });
    }
  }
  // Keys judged at the head: sums and checks (V4, V5).
  const headKeys = new Map<string, { ns: string; key: string; etcdKey: Uint8Array }>();
  for (const [ns, m] of req.writes) for (const [key, op] of m) if (op.kind === "sum") headKeys.set(`${ns}\0${key}`, { ns, key, etcdKey: layout.dataKey(idOf(ns), key) });
  for (const c of req.checks) headKeys.set(`${c.ns}\0${c.key}`, { ns: c.ns, key: c.key, etcdKey: layout.dataKey(idOf(c.ns), c.key) });
  const head = [...headKeys.values()];

  // V9: unless blind, the compaction mark is still at or below R (see engine.ts).
  const guardMark = req.blind !== true;
  const fixed = bindings.size + absent.length + head.length + 1 + (guardMark ? 1 : 0); // bindings, exact compares, the commit id, the mark
  const budget = ETCD_TXN_OPS_MAX - fixed;
  if (budget < 1 && spans.length > 0) {
    throw new TxtDbError("LIMIT", `Transaction touches ${bindings.size} namespaces and sums or checks ${head.length} keys; on etcd these take one compare each, and a txn has at most ${ETCD_TXN_OPS_MAX}; split it`);
  }
  const folded = foldSpans(spans, Math.max(1, budget));
  if (fixed + folded.length > ETCD_TXN_OPS_MAX) {
    throw new TxtDbError("LIMIT", `Transaction needs ${fixed + folded.length} compares on etcd (namespaces, sums, checks, reads); a txn has at most ${ETCD_TXN_OPS_MAX}; split it`);
  }
  const compares: EtcdCompare[] = [];
  for (const [ns, b] of bindings) {
    const key = layout.nsKey(ns);
    // V1: a blind write needs only the namespace to exist with the same id.
    compares.push(req.blind ? { key, target: "VALUE", result: "EQUAL", value: String(b.id) } : { key, target: "MOD", result: "EQUAL", modRevision: b.mod });
  }
  for (const ns of absent) compares.push({ key: layout.nsKey(ns), target: "VERSION", result: "EQUAL", version: 0 });
  if (guardMark) compares.push({ key: layout.mark, target: "VALUE", result: "LESS", value: fixedRevision(R + 1n) });
  for (const s of folded) compares.push(isPoint(s) ? { key: s.lo, target: "MOD", result: "LESS", modRevision: R + 1n } : { key: s.lo, rangeEnd: s.hi, target: "MOD", result: "LESS", modRevision: R + 1n });

  let markRestored = false;
  for (let resend = 0; ; resend++) {
    let attempt = 0;
    for (;;) {
      attempt++;
      // Step 1: the head's state of sum and check keys.
      const now = ctx.nowMs();
      const current = new Map<string, EtcdKeyValue | undefined>();
      for (let i = 0; i < head.length; i += ETCD_TXN_OPS_MAX) {
        const chunk = head.slice(i, i + ETCD_TXN_OPS_MAX);
        const r = await ctx.client.txn({ success: chunk.map((h) => ({ op: "range" as const, key: h.etcdKey })) });
        chunk.forEach((h, j) => {
          const res = r.responses[j];
          current.set(`${h.ns}\0${h.key}`, res?.op === "range" ? res.kvs[0] : undefined);
        });
      }
      for (const c of req.checks) {
        const kv = current.get(`${c.ns}\0${c.key}`);
        const actual = kv && !isTombstone(kv.value) && !isExpired(kv.value, now) ? kv.modRevision : null;
        if (actual !== c.version) {
          const k = decodeKey(c.key);
          throw conflict(`check() failed: key ${describeKey(k)} in namespace "${c.ns}" is at version ${actual ?? "absent"}, expected ${c.version ?? "absent"}`, { ns: c.ns, key: k, version: actual });
        }
      }
      const exact: EtcdCompare[] = head.map((h) => ({ key: h.etcdKey, target: "MOD", result: "EQUAL", modRevision: current.get(`${h.ns}\0${h.key}`)?.modRevision ?? 0n }));
      // Step 3: ops.
      const ops: EtcdOp[] = [];
      for (const [ns, m] of req.writes) {
        for (const [key, op] of m) {
          const value = op.kind === "set" ? op.value : op.kind === "delete" ? TOMBSTONE : addTo(current.get(`${ns}\0${key}`), op.delta, ns, key, now);
          ops.push({ op: "put", key: layout.dataKey(idOf(ns), key), value });
        }
      }
      const lease = await ctx.pins.lease();
      const commitKey = layout.commitKey(lease.id, ctx.nextCommitSeq());
      ops.push({ op: "put", key: commitKey, value: COMMIT_MARK, lease: lease.id });
      const cleanup = ctx.landed.splice(0, Math.max(0, Math.min(8, ETCD_TXN_OPS_MAX - ops.length)));
      for (const k of cleanup) ops.push({ op: "delete", key: k });
      const txn = {
        compare: [...compares, ...exact, { key: commitKey, target: "VERSION" as const, result: "EQUAL" as const, version: 0 }],
        success: ops,
        // The failure branch ends with the reads of U4 and U5 (ownOutcomeReads), then V9's
        // mark: a mark deleted outside txtdb fails the compare whatever the transaction did.
        failure: [
          ...head.map((h) => ({ op: "range" as const, key: h.etcdKey, keysOnly: true })),
          ...ownOutcomeReads(layout, commitKey, lease.id),
          ...(guardMark ? [{ op: "range" as const, key: layout.mark, keysOnly: true }] : []),
        ],
      };
      let outcome: { landed: true; revision: bigint } | { landed: false; moved: boolean; markGone: boolean } | "not-applied" | undefined;
      let r: EtcdTxnResult | undefined;
      try {
        r = await ctx.client.txn(txn);
        ctx.pins.saw(r.revision);
      } catch (e) {
        if (isLeaseNotFound(e)) {
          // The lease ended before its keep-alive noticed; etcd refused the whole txn
          // (nothing applied): take a new lease and send again.
          ctx.pins.leaseGone(lease);
          outcome = "not-applied";
        } else if (!(e instanceof TxtDbError) || e.code !== "UNAVAILABLE" || e.details?.outcome !== "unknown") {
          ctx.landed.push(...cleanup); // not known deleted: a later commit tries again
          throw e;
        } else {
          outcome = await resolveUnknown(ctx, commitKey, lease, e);
        }
      }
      if (outcome === undefined) {
        // Judged outside the catch above: a lease that ended (U5) is an outcome to report,
        // not a lost reply to fence.
        const responses = r!.responses;
        let own: bigint | undefined;
        try {
          own = r!.succeeded ? undefined : ownOutcome(ctx, responses, head.length, lease, "The commit's", "read the keys", { commitKey: utf8d.decode(commitKey) });
        } catch (e) {
          ctx.landed.push(...cleanup); // the failure branch ran: their deletes did not
          throw e;
        }
        if (r!.succeeded) outcome = { landed: true, revision: r!.revision };
        else if (own !== undefined) outcome = { landed: true, revision: own };
        else {
          // Step 4: did a sum's or check's key move since step 1?
          const moved = head.some((h, j) => {
            const res = responses[j];
            const now = res?.op === "range" ? res.kvs[0]?.modRevision ?? 0n : 0n;
            return now !== (current.get(`${h.ns}\0${h.key}`)?.modRevision ?? 0n);
          });
          const mark = responses[head.length + 2];
          outcome = { landed: false, moved, markGone: guardMark && mark?.op === "range" && mark.count === 0 };
        }
      }
      if (outcome === "not-applied" || !outcome.landed) ctx.landed.push(...cleanup); // their deletes did not run
      if (outcome === "not-applied") break; // resend with a fresh commit id
      if (outcome.landed) {
        ctx.landed.push(commitKey);
        ctx.counts.commits++;
        return outcome.revision;
      }
      if (outcome.markGone) {
        // The store's mark was deleted outside txtdb: put back at a revision no cleanup
        // passed (pins.ts rule 8), V9 means what it did, and the commit is sent again (at
        // most once: a mark gone again at once is being deleted by something else).
        if (markRestored) throw markDeletedAgain(layout.mark);
        markRestored = true;
        await ctx.pins.restoreMark();
        continue;
      }
      if (!outcome.moved) {
        ctx.counts.conflicts++;
        throw await diagnose(ctx, R, bindings, absent, folded, req.blind === true);
      }
      ctx.counts.headRetries++;
      if (attempt >= COMMIT_ATTEMPTS_MAX) {
        throw new TxtDbError("UNAVAILABLE", `Cannot commit: the keys this transaction sums or checks changed before each of ${COMMIT_ATTEMPTS_MAX} attempts (heavy contention); nothing was written; retry later`, { details: { outcome: "not-applied" } });
      }
      // Contention on a summed key: back off a little, with jitter, and redo step 1.
      await new Promise<void>((r) => void armTimer(Math.random() * Math.min(50, 2 * attempt), r));
    }
    if (resend + 1 >= RESEND_MAX) {
      throw new TxtDbError("UNAVAILABLE", `Cannot commit: etcd did not answer ${RESEND_MAX} times, each proved not applied; nothing was written; retry`, { details: { outcome: "not-applied" } });
    }
  }
}

/**
 * U4, U5: the reads a commit or namespace txn's failure branch ends with: its own commit id,
 * and the lease's mark of life. A request delivered twice (a retrying proxy, a resent
 * connection) lands once and fails its id compare the second time; if the reply is the
 * second's, the id says it landed. An id read absent proves nothing once the lease ended,
 * since ending it deleted the id of a delivery that had landed: the mark says whether it did.
 */
export function ownOutcomeReads(layout: Layout, commitKey: Uint8Array, lease: bigint): EtcdOp[] {
  return [{ op: "range", key: commitKey }, { op: "range", key: layout.aliveKey(lease), keysOnly: true }];
}

/**
 * What the {@link ownOutcomeReads} of a failed txn, at `at` in its responses, say: the
 * revision it landed at (an earlier delivery), or undefined (it did not land). With the
 * lease ended, UNAVAILABLE with outcome "unknown" (`what`: "The commit's", ...; `check`:
 * what to look at before retrying), and the lease is let go.
 */
export function ownOutcome(ctx: Pick<CommitContext, "pins" | "counts">, responses: readonly EtcdOpResult[], at: number, lease: EtcdLease, what: string, check: string, details: Record<string, unknown> = {}): bigint | undefined {
  const id = responses[at];
  const kv = id?.op === "range" ? id.kvs[0] : undefined;
  if (kv && utf8d.decode(kv.value) === COMMIT_MARK) {
    ctx.counts.lostLanded++;
    return kv.modRevision;
  }
  const alive = responses[at + 1];
  if (alive?.op === "range" && alive.count === 0) {
    ctx.pins.leaseGone(lease);
    ctx.counts.unknown++;
    throw new TxtDbError("UNAVAILABLE", `${what} outcome is unknown: it failed, and the process's lease ended before the failure was read, so whether an earlier delivery of it landed can no longer be learned (a proxy or load balancer that sends requests again can deliver one twice); ${check} before retrying`, {
      details: { outcome: "unknown", ...details },
    });
  }
  return undefined;
}

/**
 * U1-U3: a commit txn whose reply was lost. A fence txn takes the commit id if it is
 * still free; once the fence holds it, the lost txn can never land (its compare wants the
 * id free). The fence's own answer says which happened. A fence whose reply is lost too is
 * sent again (at most {@link FENCE_ATTEMPTS_MAX} times): that is safe, since a fence that
 * landed leaves "f", which the next one reads.
 */
async function resolveUnknown(ctx: CommitContext, commitKey: Uint8Array, lease: EtcdLease, cause: TxtDbError): Promise<{ landed: true; revision: bigint } | "not-applied"> {
  let last: unknown;
  for (let attempt = 0; attempt < FENCE_ATTEMPTS_MAX; attempt++) {
    let r;
    try {
      r = await ctx.client.txn({
        compare: [{ key: commitKey, target: "VERSION", result: "EQUAL", version: 0 }],
        success: [{ op: "put", key: commitKey, value: FENCE_MARK, lease: lease.id }],
        failure: [{ op: "range", key: commitKey }],
      });
    } catch (e) {
      if (isLeaseNotFound(e)) {
        // The lease ended while the outcome was unknown (an outage past its TTL). Ending
        // it deleted the id if the commit had landed, and the lost txn can no longer land
        // (it puts the id under that lease): what happened cannot be read any more.
        ctx.pins.leaseGone(lease);
        ctx.counts.unknown++;
        throw new TxtDbError("UNAVAILABLE", `The commit's outcome is unknown: etcd did not answer the commit (${cause.message}), and the process's lease ended before it could learn whether it landed (it can no longer land now); read the keys before retrying`, {
          cause: e,
          details: { outcome: "unknown", commitKey: utf8d.decode(commitKey) },
        });
      }
      if (!(e instanceof TxtDbError) || e.code !== "UNAVAILABLE") throw e;
      last = e;
      continue;
    }
    ctx.pins.saw(r.revision);
    if (r.succeeded) {
      ctx.counts.lostFenced++;
      return "not-applied"; // the fence stays (under the lease): the lost txn can never land
    }
    const res = r.responses[0];
    const kv = res?.op === "range" ? res.kvs[0] : undefined;
    const mark = kv ? utf8d.decode(kv.value) : undefined;
    if (kv && mark === COMMIT_MARK) {
      ctx.counts.lostLanded++;
      return { landed: true, revision: kv.modRevision };
    }
    if (mark === FENCE_MARK) {
      ctx.counts.lostFenced++;
      return "not-applied"; // an earlier fence of ours landed
    }
    ctx.counts.unknown++;
    // The id vanished (the lease ended and took it): nothing can be learned any more.
    throw new TxtDbError("UNAVAILABLE", `The commit's outcome is unknown: its id ${utf8d.decode(commitKey)} is gone (the process's lease ended before the outcome was read); read the keys before retrying`, { details: { outcome: "unknown" } });
  }
  ctx.counts.unknown++;
  throw new TxtDbError("UNAVAILABLE", `The commit's outcome is unknown: etcd did not answer the commit (${cause.message}) nor ${FENCE_ATTEMPTS_MAX} checks of whether it landed (last: ${(last as Error)?.message ?? String(last)}); it may or may not have been applied; read the keys before retrying`, {
    cause: last,
    details: { outcome: "unknown", commitKey: utf8d.decode(commitKey) },
  });
}

/** Step 4: names what lost, by the newest change after R in each compared span. */
async function diagnose(ctx: CommitContext, R: bigint, bindings: Map<string, NsBinding>, absent: readonly string[], spans: Span[], blind: boolean): Promise<TxtDbError> {
  const { layout } = ctx;
  const names = [...bindings.keys(), ...absent];
  const ops: EtcdOp[] = [
    { op: "range", key: layout.mark },
    ...names.map((ns) => ({ op: "range" as const, key: layout.nsKey(ns) })),
    ...spans.map((s) => ({ op: "range" as const, key: s.lo, rangeEnd: s.hi, keysOnly: true, limit: 1, sortOrder: "DESCEND" as const, sortTarget: "MOD" as const })),
  ];
  const results = [];
  for (let i = 0; i < ops.length; i += ETCD_TXN_OPS_MAX) results.push(...(await ctx.client.txn({ success: ops.slice(i, i + ETCD_TXN_OPS_MAX) })).responses);
  const markKv = results.shift();
  const mark = markKv?.op === "range" && markKv.kvs[0] ? parseRevision(markKv.kvs[0].value) : 0n;
  if (!blind && mark > R) {
    return conflict(`Transaction conflict: its snapshot (version ${R}) was compacted away (up to ${mark}) before it committed, as happens when this process's lease was lost; what it read can no longer be validated; retry the transaction`, {
      version: R,
      compactedTo: mark,
      compacted: true,
    });
  }
  for (let i = 0; i < names.length; i++) {
    const ns = names[i]!;
    const res = results[i];
    const kv = res?.op === "range" ? res.kvs[0] : undefined;
    if (i >= bindings.size) {
      if (kv) return conflict(`Transaction conflict: namespace "${ns}", found missing, was created by the commit at version ${kv.modRevision}; retry the transaction`, { ns, version: kv.modRevision });
      continue;
    }
    if (blind && (!kv || Number(utf8d.decode(kv.value)) !== bindings.get(ns)!.id)) {
      return new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist any more; it was dropped or renamed`, { details: { ns } });
    }
    if (!blind && (!kv || kv.modRevision !== bindings.get(ns)!.mod)) {
      return conflict(`Transaction conflict: namespace "${ns}" was created, dropped or renamed${kv ? ` by the commit at version ${kv.modRevision}` : ""}; retry the transaction`, { ns, version: kv?.modRevision ?? null });
    }
  }
  const idToNs = new Map([...bindings].map(([ns, b]) => [b.id, ns]));
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i]!;
    const res = results[names.length + i];
    const kv = res?.op === "range" ? res.kvs[0] : undefined;
    if (!kv || kv.modRevision <= R) continue;
    const rest = utf8d.decode(kv.key.subarray(layout.dataPrefix.length, layout.dataPrefix.length + 16));
    const ns = idToNs.get(parseInt(rest, 16)) ?? s.ns;
    const key = decodeKey(layout.keyOf(0, kv.key));
    if (s.what === "range read") {
      return conflict(`Transaction conflict: key ${describeKey(key)} in a range read from namespace "${ns}" was changed by the commit at version ${kv.modRevision}; retry the transaction`, { ns, range: s.selector, key, version: kv.modRevision });
    }
    return conflict(`Transaction conflict: ${s.what} ${describeKey(key)} in namespace "${ns}" was changed by the commit at version ${kv.modRevision}; retry the transaction`, { ns, key, version: kv.modRevision });
  }
  return conflict("Transaction conflict: a key this transaction read or wrote was changed after its snapshot; retry the transaction", {});
}

/** The bytes of a commit id's mark (for tests and diagnostics). */
export const COMMIT_MARKS = { commit: utf8.encode(COMMIT_MARK), fence: utf8.encode(FENCE_MARK) };
