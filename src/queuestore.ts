/**
 * How queues are stored, and the changes to them that are decided at the head of history.
 *
 * Every queue lives in one internal namespace, {@link QUEUES_NS}, whose name users cannot
 * use (names starting with U+0000 and "txtdb." are reserved: options.ts), so it never shows
 * among theirs. Its keys are tuples (key order is tuple order):
 *
 * | key                                  | value          | what                                 |
 * |--------------------------------------|----------------|--------------------------------------|
 * | `["r", queue, readyAtMs, id]`        | MessageRecord  | waiting: ready once readyAtMs ≤ now  |
 * | `["c", queue, claimedAtMs, id, token]` | ClaimRecord  | handed to one listener (running)     |
 * | `["d", queue, id]`                   | MessageRecord  | dead: past maxAttempts               |
 * | `["k", queue, dedupeKey]`            | DedupeRecord   | a dedupe key and until when it holds |
 * | `["x", queue, untilMs, dedupeKey]`   | true           | the dedupe keys in expiry order      |
 *
 * Rules (each one carried out below, under the writer lock, at the head of history):
 *
 * 1. A message is in exactly one of r, c, d at any version: every move deletes the old
 *    key and writes the new one in one commit.
 * 2. Moves are decided at the head (a {@link HeadWork} runs after validation, in the group
 *    commit): a claim takes what is ready at the head, so two processes claiming at once
 *    never conflict and never get the same message; an ack or a failure acts only if the
 *    claim still carries the acting listener's token (a claim given back after its
 *    visibility timeout and taken by someone else is left alone).
 * 3. Every time in a key (readyAtMs, claimedAtMs) is the wall clock at the head plus a
 *    delay. So a key written by a later commit never lies before the clock of an earlier
 *    head: after a claim at the head at time T found no live `r` key before F, none will
 *    appear there (F ≤ T). Readers start their scans at F (the floor, see queues.ts)
 *    instead of walking the tombstones of every message claimed since the last fold. A
 *    clock that steps back breaks only the floor's shortcut: floors are dropped every
 *    {@link FLOOR_RESET_MS}, so such a message waits at most that long.
 * 4. A commit rewrites at most its budget of message bytes (the lower of `maxTxBytes` and
 *    {@link QUEUE_COMMIT_BYTES_MAX}) beyond its first message: a claim takes fewer
 *    messages than asked, outcomes and retryDead() leave the rest to the next commit. Its
 *    first message always goes, so every message (at most {@link MESSAGE_VALUE_BYTES_MAX})
 *    moves, alone in its commit if it must.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { decodeKeyParts, encodeKey, prefixRange } from "./keys.ts";
import { decodeInternal, encodeInternal } from "./codec.ts";
import type { Index } from "./index.ts";
import { FRAME_BODY_MAX_BYTES } from "./record.ts";
import type { TxState, WriteOp } from "./tx.ts";

/** The internal namespace every queue lives in (a reserved name: options.ts isReservedNamespace). */
export const QUEUES_NS = "\u0000txtdb.queues";

/**
 * Most bytes (keys and values) of the records one commit of queue work rewrites beyond its
 * first: claims, retries, dead-letterings and retryDead() each write a message's whole
 * value again, and one commit is one log record, at most FRAME_BODY_MAX_BYTES (1 GiB).
 * Sixty-four claims of 16 MiB messages in one commit passed it, and the commit failed every
 * time it was tried. The store's `maxTxBytes`, when lower, bounds it too (rule 4).
 */
export const QUEUE_COMMIT_BYTES_MAX = 64 << 20;
/**
 * The longest value (encoded) a message may have: one log record must hold it with its
 * claim's fields, its last error (a few KiB, up to about 100 KiB escaped) and the keys a
 * commit deletes beside it, whatever `maxValueBytes` allows. A longer one could be enqueued
 * and never claimed.
 */
export const MESSAGE_VALUE_BYTES_MAX = FRAME_BODY_MAX_BYTES - (16 << 20);

/** Floors (rule 3) are forgotten this often, so that a clock stepping back delays a message at most this long. */
export const FLOOR_RESET_MS = 5_000;

/** What a failed attempt left behind: the thrown error, in a form that can be stored. */
export interface QueueError {
  /** The error's name (`"Error"`, `"TypeError"`, `"TxtDbError"`, ...). */
  name: string;
  /** Its message. */
  message: string;
  /** Its stack, if it had one (at most 8 KiB). */
  stack?: string;
  /** Its `code`, if it had a string one (a TxtDbError's code, a Node system error's). */
  code?: string;
}

/** A waiting or dead message. */
export interface MessageRecord {
  /** The value, as encodeValue wrote it at enqueue. */
  v: Uint8Array;
  /** Attempts made so far. */
  a: number;
  /** Wall-clock ms of the enqueue. */
  t: number;
  /** The last attempt's error. */
  e?: QueueError;
}

/** A running message: its record, who runs it, and how its failure is handled. */
export interface ClaimRecord extends MessageRecord {
  /** The owner: the lease id of the process's database handle (liveness.ts). */
  o: string;
  /** The claim's token: an ack or a failure acts only if the claim still carries it. */
  k: string;
  /** Wall-clock ms past which the claim may be given back (the visibility timeout). */
  d: number;
  /** maxAttempts of the listener that claimed it. */
  m: number;
  /** First retry delay (ms) and its cap, of that listener. */
  b: number;
  x: number;
}

interface DedupeRecord {
  /** The id of the message enqueued under the key. */
  i: string;
  /** Wall-clock ms until which the key holds. */
  u: number;
}

/** A message a claim took, for the listener that runs it. */
export interface Claimed {
  key: string;
  id: string;
  token: string;
  record: ClaimRecord;
}

/**
 * What a listener reports about a claim it holds (or the sweep found abandoned). `renew`:
 * its handler still runs in this live process; the claim's deadline moves to the head's
 * clock plus `visibilityMs`, so that no sweep gives it to another handler meanwhile.
 */
export type Outcome =
  | { kind: "ack"; key: string; token: string }
  | { kind: "fail"; key: string; token: string; error: QueueError }
  | { kind: "release"; key: string; token: string }
  | { kind: "renew"; key: string; token: string; visibilityMs: number };

/** A claim as the sweep sees it. */
export interface LiveClaim {
  key: string;
  id: string;
  owner: string;
  token: string;
  deadlineMs: number;
}

/** The parts of a key of {@link QUEUES_NS}: [tag, queue, ...]. */
function parts(key: string): unknown[] {
  return decodeKeyParts(key);
}

export function readyKey(queue: string, readyAtMs: number, id: string): string {
  return encodeKey(["r", queue, readyAtMs, id]);
}

/** The first key of `queue`'s r keys at or after `floorMs` (every r key ≥ it has readyAt ≥ floorMs). */
export function readyFrom(queue: string, floorMs: number): string {
  return floorMs > 0 ? encodeKey(["r", queue, floorMs]) : prefixRange(["r", queue])[0];
}

/** The end of `queue`'s r keys. */
export function readyEnd(queue: string): string {
  return prefixRange(["r", queue])[1];
}

/** The range of `queue`'s r keys, for watchers. */
export function readyRange(queue: string): [string, string] {
  return prefixRange(["r", queue]);
}

export function claimFrom(queue: string, floorMs: number): string {
  return floorMs > 0 ? encodeKey(["c", queue, floorMs]) : prefixRange(["c", queue])[0];
}

export function claimEnd(queue: string): string {
  return prefixRange(["c", queue])[1];
}

export function deadRange(queue: string): [string, string] {
  return prefixRange(["d", queue]);
}

export function deadKey(queue: string, id: string): string {
  return encodeKey(["d", queue, id]);
}

/** The time (ms) in an r or c key. */
export function keyTime(key: string): number {
  const t = parts(key)[2];
  if (typeof t !== "number") throw corrupt(key, "its time is not a number");
  return t;
}

/** The message id in an r, c or d key. */
export function keyId(key: string): string {
  const p = parts(key);
  const id = p[0] === "d" ? p[2] : p[3];
  if (typeof id !== "string") throw corrupt(key, "its message id is not a string");
  return id;
}

function corrupt(key: string, why: string): TxtDbError {
  return new TxtDbError("CORRUPTION", `A queue record is damaged (${why}; key ${JSON.stringify(parts(key))}): the store is damaged. Run \`txtdb check\`; restore from a backup if it persists`);
}

/*
 * Records are a small fixed binary layout inside one CBOR byte string (so that check() and
 * every tool that decodes stored values read them as a valid value): every message is
 * encoded at enqueue, claim and settle, and a CBOR encoder call on an object cost more than
 * the rest of a claim.
 *
 *   CBOR byte string header (major type 2: 1, 2, 3 or 5 bytes), then:
 *   u8 kind (1 message, 2 claim) | u32 attempts | f64 enqueuedAtMs | u32 error bytes | error (UTF-8 JSON)
 *   claim only: f64 deadlineMs | u32 maxAttempts | f64 retryMs | f64 retryMaxMs | u8 owner bytes | owner | u8 token bytes | token
 *   the value's own bytes (encodeValue) to the end
 */
const KIND_MESSAGE = 1;
/** What a claim adds to its message's record, at most: 30 bytes of fields, an owner and a token of at most 255 bytes each. */
const CLAIM_FIELDS_BYTES = 30 + 2 * 255;
const KIND_CLAIM = 2;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of a short string; owners and tokens are ASCII, written without an encoder call. */
function shortUtf8(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return utf8.encode(s);
    out[i] = c;
  }
  return out;
}

/** Encodes a message or claim record. */
export function encodeRecord(rec: MessageRecord | ClaimRecord): Uint8Array {
  const claim = "k" in rec ? (rec as ClaimRecord) : undefined;
  const e = rec.e ? utf8.encode(JSON.stringify(rec.e)) : undefined;
  const o = claim ? shortUtf8(claim.o) : undefined;
  const k = claim ? shortUtf8(claim.k) : undefined;
  if ((o?.length ?? 0) > 255 || (k?.length ?? 0) > 255) throw new Error("txtdb internal assertion failed: a claim's owner or token is longer than 255 bytes");
  const body = 17 + (e?.length ?? 0) + (claim ? 30 + o!.length + k!.length : 0) + rec.v.length;
  const header = body < 24 ? 1 : body < 256 ? 2 : body < 65536 ? 3 : 5;
  const out = new Uint8Array(header + body);
  const view = new DataView(out.buffer);
  if (header === 1) out[0] = 0x40 | body;
  else if (header === 2) (out[0] = 0x58), (out[1] = body);
  else if (header === 3) (out[0] = 0x59), view.setUint16(1, body);
  else (out[0] = 0x5a), view.setUint32(1, body);
  let p = header;
  out[p++] = claim ? KIND_CLAIM : KIND_MESSAGE;
  view.setUint32(p, rec.a, true);
  view.setFloat64(p + 4, rec.t, true);
  view.setUint32(p + 12, e?.length ?? 0, true);
  p += 16;
  if (e) out.set(e, p), (p += e.length);
  if (claim) {
    view.setFloat64(p, claim.d, true);
    view.setUint32(p + 8, claim.m, true);
    view.setFloat64(p + 12, claim.b, true);
    view.setFloat64(p + 20, claim.x, true);
    p += 28;
    out[p++] = o!.length;
    out.set(o!, p);
    p += o!.length;
    out[p++] = k!.length;
    out.set(k!, p);
    p += k!.length;
  }
  out.set(rec.v, p);
  return out;
}

/** Decodes a record of an r, c or d key, checking its shape (a damaged file must not pass as a message). */
export function decodeRecord(key: string, bytes: Uint8Array): MessageRecord & Partial<ClaimRecord> {
  try {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const b0 = bytes[0] ?? 0;
    const ai = b0 & 0x1f;
    if ((b0 & 0xe0) !== 0x40 || (ai > 23 && ai !== 24 && ai !== 25 && ai !== 26)) throw new Error("it is not a CBOR byte string");
    const header = ai < 24 ? 1 : ai === 24 ? 2 : ai === 25 ? 3 : 5;
    const length = ai < 24 ? ai : ai === 24 ? view.getUint8(1) : ai === 25 ? view.getUint16(1) : view.getUint32(1);
    if (header + length !== bytes.length) throw new Error("its length does not match");
    const kind = bytes[header];
    if (kind !== KIND_MESSAGE && kind !== KIND_CLAIM) throw new Error(`unknown record kind ${kind}`);
    let p = header + 1;
    const a = view.getUint32(p, true);
    const t = view.getFloat64(p + 4, true);
    const elen = view.getUint32(p + 12, true);
    p += 16;
    if (p + elen > bytes.length) throw new Error("the error runs past the record");
    const rec: MessageRecord & Partial<ClaimRecord> = { v: bytes, a, t };
    if (elen > 0) {
      const parsed: unknown = JSON.parse(fromUtf8.decode(bytes.subarray(p, p + elen)));
      const pe = parsed as Record<string, unknown> | null;
      if (pe === null || typeof pe !== "object" || typeof pe.name !== "string" || typeof pe.message !== "string") throw new Error("the error is not an error record");
      // Copied field by field: a parsed "__proto__" key stays an own property of nothing.
      const err: QueueError = { name: pe.name, message: pe.message };
      if (typeof pe.stack === "string") err.stack = pe.stack;
      if (typeof pe.code === "string") err.code = pe.code;
      rec.e = err;
      p += elen;
    }
    if (kind === KIND_CLAIM) {
      if (p + 30 > bytes.length) throw new Error("the claim runs past the record");
      rec.d = view.getFloat64(p, true);
      rec.m = view.getUint32(p + 8, true);
      rec.b = view.getFloat64(p + 12, true);
      rec.x = view.getFloat64(p + 20, true);
      p += 28;
      const olen = bytes[p++]!;
      rec.o = fromUtf8.decode(bytes.subarray(p, p + olen));
      p += olen;
      const klen = bytes[p++] ?? 0;
      rec.k = fromUtf8.decode(bytes.subarray(p, p + klen));
      p += klen;
    }
    if (p > bytes.length) throw new Error("the record is cut short");
    rec.v = bytes.subarray(p);
    return rec;
  } catch (e) {
    throw corrupt(key, `it does not decode: ${(e as Error)?.message ?? String(e)}`);
  }
}

function asClaim(key: string, rec: MessageRecord & Partial<ClaimRecord>): ClaimRecord {
  if (typeof rec.o !== "string" || typeof rec.k !== "string" || typeof rec.d !== "number" || typeof rec.m !== "number" || typeof rec.b !== "number" || typeof rec.x !== "number") {
    throw corrupt(key, "it is not a claim record");
  }
  return rec as ClaimRecord;
}

function messageOnly(rec: MessageRecord, attempts: number, error: QueueError | undefined): MessageRecord {
  const out: MessageRecord = { v: rec.v, a: attempts, t: rec.t };
  if (error) out.e = error;
  return out;
}

/** The delay before attempt `attempts + 1`, after `attempts` failed: exponential from `firstMs` up to `maxMs`, with jitter. */
export function backoffMs(attempts: number, firstMs: number, maxMs: number, random: number): number {
  // The exponent is capped: 2 ** 1024 is Infinity, and 0 × Infinity (retryDelayMs 0) NaN.
  const base = firstMs === 0 ? 0 : Math.min(maxMs, firstMs * 2 ** Math.min(64, Math.max(0, attempts - 1)));
  return Math.round(base * (0.5 + random / 2));
}

/**
 * Changes decided at the head: collected by a caller, run by the committer under the writer
 * lock after validation (TxState.atHead). Reads the index at its head; writes go into the
 * transaction's writes for {@link QUEUES_NS}.
 */
export class HeadWork {
  readonly #state: TxState;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #steps: ((w: HeadWriter) => void)[] = [];
  readonly #budget: number;

  /** `budgetBytes`: rule 4 (only moves of written messages heed it; an enqueue is sized by its caller). */
  constructor(state: TxState, now: () => number, random: () => number, budgetBytes = QUEUE_COMMIT_BYTES_MAX) {
    this.#state = state;
    this.#now = now;
    this.#random = random;
    this.#budget = Math.min(budgetBytes, QUEUE_COMMIT_BYTES_MAX);
    state.atHead = (index) => this.#run(index);
  }

  /**
   * Adds a step; steps run in order, each seeing the head as the index holds it (not earlier
   * steps' writes). Steps may run more than once, at a newer head (see #run): a step sets
   * what it reports anew each time rather than adding to what an earlier run left.
   */
  add(step: (w: HeadWriter) => void): void {
    this.#steps.push(step);
  }

  #run(index: Index): boolean {
    const head = index.lastTsn;
    const nsId = index.resolve(QUEUES_NS, head);
    if (nsId === undefined) throw new TxtDbError("NAMESPACE_NOT_FOUND", "The queues' namespace does not exist at the head; retry");
    // Afresh at every run: a batch whose writer lock turned out lost before its append is
    // put back and runs here again (commit.ts, LOCK_LOST_REQUEUES_MAX). What the earlier
    // run decided was never written; kept, it would be written beside this run's, and a
    // message enqueued once would be there twice, or claimed twice (an orphan claim that
    // no handler runs, given back as a failed attempt: dead after maxAttempts).
    const writes = new Map<string, WriteOp>();
    this.#state.writes.set(QUEUES_NS, writes);
    const w = new HeadWriter(index, nsId, head, Math.floor(this.#now()), this.#random, writes, this.#budget);
    for (const step of this.#steps) step(w);
    if (writes.size === 0) this.#state.writes.delete(QUEUES_NS);
    for (const m of this.#state.writes.values()) if (m.size > 0) return true;
    return this.#state.namespaceOps.length > 0 || this.#state.checks.length > 0;
  }
}

/** The head of history as a {@link HeadWork} step sees it, and where its writes go. */
export class HeadWriter {
  readonly index: Index;
  readonly nsId: number;
  readonly head: number;
  /** The wall clock at the head (integer ms), the same for every step of one commit. */
  readonly nowMs: number;
  readonly random: () => number;
  readonly #writes: Map<string, WriteOp>;
  readonly #budget: number;
  /** Bytes (keys and values) this commit's sets wrote so far (rule 4). */
  #bytes = 0;

  constructor(index: Index, nsId: number, head: number, nowMs: number, random: () => number, writes: Map<string, WriteOp>, budgetBytes = QUEUE_COMMIT_BYTES_MAX) {
    this.index = index;
    this.nsId = nsId;
    this.head = head;
    this.nowMs = nowMs;
    this.random = random;
    this.#writes = writes;
    this.#budget = budgetBytes;
  }

  /** Rule 4: may this commit rewrite a record of about `bytes` more? Always for its first. */
  #room(bytes: number): boolean {
    return this.#bytes === 0 || this.#bytes + bytes <= this.#budget;
  }

  get(key: string): Uint8Array | undefined {
    const w = this.#writes.get(key);
    if (w) return w.kind === "set" ? w.value : undefined;
    return this.index.get(this.nsId, key, this.head)?.value;
  }

  range(start: string, end: string, limit: number): [string, Uint8Array][] {
    return this.index.range(this.nsId, start, end, this.head, false, limit).map(([k, v]) => [k, v.value]);
  }

  set(key: string, value: Uint8Array): void {
    this.#writes.set(key, { kind: "set", value });
    this.#bytes += key.length + value.length;
  }

  delete(key: string): void {
    this.#writes.set(key, { kind: "delete" });
  }

  /** Writes a message into `queue`, ready `delayMs` from the head's clock; false if its dedupe key still holds. */
  enqueue(queue: string, id: string, value: Uint8Array, delayMs: number, dedupe: { key: string; windowMs: number } | undefined): boolean {
    const now = this.nowMs;
    if (dedupe) {
      const kk = encodeKey(["k", queue, dedupe.key]);
      const held = this.get(kk);
      if (held) {
        const rec = decodeInternal(held) as DedupeRecord | null;
        if (rec && typeof rec.u === "number" && rec.u > now) return false;
      }
      const until = now + dedupe.windowMs;
      this.set(kk, encodeInternal({ i: id, u: until } satisfies DedupeRecord));
      this.set(encodeKey(["x", queue, until, dedupe.key]), encodeInternal(true));
    }
    this.set(readyKey(queue, now + delayMs, id), encodeRecord({ v: value, a: 0, t: now }));
    return true;
  }

  /**
   * Claims up to `n` ready messages of `queue` from `floorMs` on; returns them, the floor for
   * the next scan, and whether the commit's budget (rule 4) stopped it before `n`.
   */
  claim(queue: string, n: number, floorMs: number, owner: string, tokenOf: () => string, opts: { visibilityMs: number; maxAttempts: number; retryMs: number; retryMaxMs: number }): { claimed: Claimed[]; floorMs: number; full: boolean } {
    const now = this.nowMs;
    const rows = this.range(readyFrom(queue, floorMs), encodeKey(["r", queue, now + 1]), n);
    const claimed: Claimed[] = [];
    let full = false;
    let last: string | undefined;
    for (const [rk, bytes] of rows) {
      // Rule 4. A claim record is its message's plus a few dozen bytes (owner, token, deadline).
      if (!this.#room(bytes.length + CLAIM_FIELDS_BYTES)) {
        full = true;
        break;
      }
      const rec = decodeRecord(rk, bytes);
      const id = keyId(rk);
      const token = tokenOf();
      // Written out field by field: an object spread of the message record was most of a claim's time.
      const claim: ClaimRecord = { v: rec.v, a: rec.a + 1, t: rec.t, o: owner, k: token, d: now + opts.visibilityMs, m: opts.maxAttempts, b: opts.retryMs, x: opts.retryMaxMs };
      if (rec.e) claim.e = rec.e;
      const ck = encodeKey(["c", queue, now, id, token]);
      this.delete(rk);
      this.set(ck, encodeRecord(claim));
      claimed.push({ key: ck, id, token, record: claim });
      last = rk;
    }
    // Rule 3: fewer found than asked means nothing ready is left before now; else nothing
    // before the last taken (before the first found, when the budget took none).
    const upTo = last ?? rows[0]?.[0];
    const floor = (rows.length < n && !full) || upTo === undefined ? now : Math.min(now, keyTime(upTo));
    return { claimed, floorMs: floor, full };
  }

  /**
   * Acts on a listener's report about a claim, if the claim still carries its token (rule 2).
   * False when the commit's budget has no room for the message it would write (rule 4): the
   * report waits for the next commit.
   */
  settle(o: Outcome): boolean {
    // The claim's key ends with its token: if it is there, the claim is still this one.
    if (o.kind === "ack") {
      // Written in this commit already: deleted (a failure from the sweep), or renewed (set).
      const w = this.#writes.get(o.key);
      if (w ? w.kind === "set" : this.index.get(this.nsId, o.key, this.head, true) !== undefined) this.delete(o.key);
      return true;
    }
    const bytes = this.get(o.key);
    if (!bytes) return true;
    // The message written back is at most its claim record's size plus the error's.
    if (!this.#room(bytes.length)) return false;
    const rec = asClaim(o.key, decodeRecord(o.key, bytes));
    if (rec.k !== o.token) return true;
    if (o.kind === "renew") {
      // The same key (its time is the claim's, its token the holder's): only the deadline moves, never back.
      const renewed: ClaimRecord = { ...rec, d: Math.max(rec.d, this.nowMs + o.visibilityMs) };
      this.set(o.key, encodeRecord(renewed));
      return true;
    }
    const parts = decodeKeyParts(o.key);
    const queue = parts[1] as string;
    const id = keyId(o.key);
    this.delete(o.key);
    if (o.kind === "release") {
      // Given back unstarted (the listener stopped): the attempt does not count.
      this.set(readyKey(queue, this.nowMs, id), encodeRecord(messageOnly(rec, rec.a - 1, rec.e)));
      return true;
    }
    if (rec.a >= rec.m) {
      this.set(deadKey(queue, id), encodeRecord(messageOnly(rec, rec.a, o.error)));
    } else {
      const delay = backoffMs(rec.a, rec.b, rec.x, this.random());
      this.set(readyKey(queue, this.nowMs + delay, id), encodeRecord(messageOnly(rec, rec.a, o.error)));
    }
    return true;
  }

  /** Every live claim of `queue` from `floorMs` on (at most `max`), and the floor for the next scan. */
  claims(queue: string, floorMs: number, max: number): { claims: LiveClaim[]; floorMs: number } {
    const rows = this.range(claimFrom(queue, floorMs), claimEnd(queue), max);
    const claims = rows.map(([k, bytes]) => {
      const rec = asClaim(k, decodeRecord(k, bytes));
      return { key: k, id: keyId(k), owner: rec.o, token: rec.k, deadlineMs: rec.d };
    });
    const first = rows[0];
    return { claims, floorMs: first ? Math.min(this.nowMs, keyTime(first[0])) : this.nowMs };
  }

  /** Deletes up to `max` dedupe keys of `queue` whose window has passed. */
  forgetDedupeKeys(queue: string, max: number): number {
    const [start] = prefixRange(["x", queue]);
    const rows = this.range(start, encodeKey(["x", queue, this.nowMs + 1]), max);
    for (const [xk] of rows) {
      const p = decodeKeyParts(xk);
      const until = p[2], key = p[3];
      this.delete(xk);
      if (typeof key !== "string") continue;
      const kk = encodeKey(["k", queue, key]);
      const held = this.get(kk);
      const rec = held ? (decodeInternal(held) as DedupeRecord | null) : null;
      // A later enqueue under the same key wrote a newer window: that one stays.
      if (rec && rec.u === until) this.delete(kk);
    }
    return rows.length;
  }

  /**
   * Moves dead messages of `queue` back to ready with their attempts reset: one (`id`) or up
   * to `max`, as the commit's budget allows (rule 4). `more`: some were left for another commit.
   */
  retryDead(queue: string, id: string | undefined, max: number): { moved: number; more: boolean } {
    const keys = id !== undefined ? [deadKey(queue, id)] : this.range(...deadRange(queue), max).map(([k]) => k);
    let moved = 0;
    for (const dk of keys) {
      const bytes = this.get(dk);
      if (!bytes) continue;
      if (!this.#room(bytes.length)) return { moved, more: true };
      const rec = decodeRecord(dk, bytes);
      this.delete(dk);
      this.set(readyKey(queue, this.nowMs, keyId(dk)), encodeRecord(messageOnly(rec, 0, rec.e)));
      moved++;
    }
    return { moved, more: keys.length === max };
  }
}
