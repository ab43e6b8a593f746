/**
 * Log records: framing and the commit record's contents.
 *
 * ```
 * frame  := magic:u8 (0xC7) | bodyLength:u32le | crc32c(bodyLength ‖ body):u32le | body
 * body   := CBOR [kind=1, tsn, writes, namespaceOps]
 * writes := flat [namespaceId, keyBytes, valueBytes | null, ...]   (null: delete)
 * namespaceOps := null | flat [op, name, arg, ...]
 *   op 1 create: arg = new namespace id;  op 2 drop: arg = 0;  op 3 rename: arg = new name
 * ```
 *
 * The checksum covers the length, so a torn or flipped length is caught like a torn body.
 *
 * Two-phase commit (prepared.ts) adds a second kind, written only to stores whose manifest
 * is at format 3 (a release that reads up to format 2 refuses such a store with FORMAT
 * before it reads any record, and one that is already running refuses the record itself,
 * never misreads it: its decoder accepts kind 1 with four fields only):
 *
 * ```
 * body     := CBOR [kind=2, tsn, writes, null, twoPhase]
 * twoPhase := [1 (prepare), txid, coordinator | null, preparedAtMs, inDoubtMs,
 *              pwrites, preads, pranges]              (writes: empty; the prepared writes wait in pwrites)
 *           | [2 (commit), txid]                      (writes: the prepared writes, visible at tsn)
 *           | [3 (abort), txid]                       (writes: empty)
 * coordinator := [path, id, lease]
 * pwrites  := flat [namespaceId, keyBytes, valueBytes | null, ...]
 * preads   := flat [namespaceId, keyBytes, ...]
 * pranges  := flat [namespaceId, startBytes, endBytes, ...]
 * ```
 *
 * @module
 */
import { crc32c } from "./crc32c.ts";
import { decodeInternal, encodeInternal } from "./codec.ts";
import { encodedKeyProblem, isWellFormedString } from "./keys.ts";

export const FRAME_MAGIC = 0xc7;
export const FRAME_HEADER_BYTES = 9;
/** A frame larger than this is refused when reading: it can only be garbage. */
export const FRAME_BODY_MAX_BYTES = 1 << 30;
const RECORD_COMMIT = 1;
const RECORD_TWO_PHASE = 2;
/** The newest record kind this release writes and reads. */
const RECORD_KIND_KNOWN_MAX = RECORD_TWO_PHASE;
/** Record kinds a later release may add are small integers; anything else is damage. */
const RECORD_KIND_MAX = 255;

/**
 * A well-formed record of a kind this release does not know: a newer release of txtdb wrote
 * it (the kinds only grow). Readers report FORMAT for it, not CORRUPTION: upgrading this
 * process is the remedy, and nothing is damaged.
 */
export class NewerRecordError extends Error {
  readonly kind: number;
  constructor(kind: number) {
    super(`a record of kind ${kind}, which this release of txtdb does not know`);
    this.kind = kind;
  }
}

/** Namespace operations carried by a commit record. */
export type NamespaceOp =
  | { op: "create"; name: string; id: number }
  | { op: "drop"; name: string }
  | { op: "rename"; name: string; to: string };

/** One write of a commit record: a value's CBOR bytes, or null for a delete. */
export interface RecordWrite {
  nsId: number;
  key: Uint8Array;
  value: Uint8Array | null;
  /**
   * The key as a binary string (keys.ts), when whoever built the write had it: the
   * committing process applies its own records by it instead of converting the bytes back.
   * Never written to the log.
   */
  binary?: string;
}

/** Who coordinates a prepared transaction (see coordinator.ts): where its decision log is. */
export interface CoordinatorRef {
  /** The coordinator store's directory. */
  path: string;
  /** The coordinator store's identity, so a resolver never takes another directory for it. */
  id: string;
  /** The lease file name of the coordinator's process in that store (alive while it runs). */
  lease: string;
}

/** A prepared transaction as its record carries it. */
export interface PrepareOp {
  op: "prepare";
  txid: string;
  coordinator: CoordinatorRef | null;
  preparedAtMs: number;
  /** After this long undecided, a resolver may decide it (abort unless the coordinator committed). */
  inDoubtMs: number;
  writes: RecordWrite[];
  reads: { nsId: number; key: Uint8Array }[];
  ranges: { nsId: number; start: Uint8Array; end: Uint8Array }[];
}

/** The two-phase part of a record: a prepare, or the decision on one. */
export type TwoPhaseOp = PrepareOp | { op: "commit"; txid: string } | { op: "abort"; txid: string };

/** A decoded commit record. */
export interface CommitRecord {
  tsn: number;
  writes: RecordWrite[];
  namespaceOps: NamespaceOp[];
  /** Set on records of two-phase commit only (kind 2). */
  twoPhase?: TwoPhaseOp;
}

/** Longest transaction id of two-phase commit, in UTF-16 code units. */
export const TXID_CHARS_MAX = 200;

/** Wraps a body in a frame. */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  frameInto(out, 0, body);
  return out;
}

/**
 * Writes `body` in a frame into `out` at `at` (FRAME_HEADER_BYTES + its length must fit);
 * returns where the frame ends. A batch of records is framed straight into its buffer, without
 * a copy of each record on the way.
 */
export function frameInto(out: Uint8Array, at: number, body: Uint8Array): number {
  const view = new DataView(out.buffer, out.byteOffset + at, FRAME_HEADER_BYTES);
  out[at] = FRAME_MAGIC;
  view.setUint32(1, body.length, true);
  out.set(body, at + FRAME_HEADER_BYTES);
  view.setUint32(5, crc32c(body, crc32c(out.subarray(at + 1, at + 5))), true);
  return at + FRAME_HEADER_BYTES + body.length;
}

/** What a frame at an offset turned out to be. */
export type FrameResult =
  | { kind: "ok"; body: Uint8Array; next: number }
  | { kind: "incomplete" } // the buffer ends inside the frame
  | { kind: "zero" } // preallocated space: nothing was written here
  | { kind: "bad"; reason: string };

/** Parses the frame at `at` in `buf` (which ends at the end of the readable data). */
export function parseFrame(buf: Uint8Array, at: number): FrameResult {
  if (at < buf.length && buf[at] === 0) return { kind: "zero" };
  if (buf.length - at < FRAME_HEADER_BYTES) return { kind: "incomplete" };
  if (buf[at] !== FRAME_MAGIC) return { kind: "bad", reason: `bad frame magic 0x${buf[at]!.toString(16)}` };
  const view = new DataView(buf.buffer, buf.byteOffset + at, FRAME_HEADER_BYTES);
  const length = view.getUint32(1, true);
  if (length > FRAME_BODY_MAX_BYTES) return { kind: "bad", reason: `frame length ${length} is impossible` };
  const end = at + FRAME_HEADER_BYTES + length;
  if (end > buf.length) return { kind: "incomplete" };
  const body = buf.subarray(at + FRAME_HEADER_BYTES, end);
  const expected = view.getUint32(5, true);
  const actual = crc32c(body, crc32c(buf.subarray(at + 1, at + 5)));
  if (expected !== actual) return { kind: "bad", reason: `checksum mismatch (stored ${expected}, computed ${actual})` };
  return { kind: "ok", body, next: end };
}

/** Encodes a commit record body. */
export function encodeCommit(record: CommitRecord): Uint8Array {
  const writes: unknown[] = [];
  for (const w of record.writes) writes.push(w.nsId, w.key, w.value);
  let ops: unknown[] | null = null;
  if (record.namespaceOps.length > 0) {
    ops = [];
    for (const o of record.namespaceOps) {
      if (o.op === "create") ops.push(1, o.name, o.id);
      else if (o.op === "drop") ops.push(2, o.name, 0);
      else ops.push(3, o.name, o.to);
    }
  }
  const tp = record.twoPhase;
  if (!tp) return encodeInternal([RECORD_COMMIT, record.tsn, writes, ops]);
  let part: unknown[];
  if (tp.op === "prepare") {
    const c = tp.coordinator;
    const pw: unknown[] = [];
    for (const w of tp.writes) pw.push(w.nsId, w.key, w.value);
    const pr: unknown[] = [];
    for (const r of tp.reads) pr.push(r.nsId, r.key);
    const pg: unknown[] = [];
    for (const r of tp.ranges) pg.push(r.nsId, r.start, r.end);
    part = [1, tp.txid, c ? [c.path, c.id, c.lease] : null, tp.preparedAtMs, tp.inDoubtMs, pw, pr, pg];
  } else {
    part = [tp.op === "commit" ? 2 : 3, tp.txid];
  }
  return encodeInternal([RECORD_TWO_PHASE, record.tsn, writes, ops, part]);
}

/** Largest TSN and namespace id: beyond it numbers stop being exact (and BigInt() of them lies). */
const NUMBER_MAX = Number.MAX_SAFE_INTEGER;

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 1 && n <= NUMBER_MAX;
}

function isName(s: unknown): s is string {
  return typeof s === "string" && s.length > 0 && isWellFormedString(s);
}

/**
 * Decodes a commit record body, checking every field's type and range: a frame with a
 * valid checksum can still hold anything (a bug, a crafted file), and a record adopted
 * into the index must never fail later reads (a fractional TSN made every `BigInt(tsn)`
 * throw a RangeError). Throws a plain Error saying what is malformed; the caller turns
 * it into CORRUPTION with the file and offset. Value bytes are checked when read (and by
 * `check()`), not here: decoding every value would double the cost of tailing the log.
 */
export function decodeCommit(body: Uint8Array): CommitRecord {
  const raw = decodeInternal(body);
  if (Array.isArray(raw) && Number.isSafeInteger(raw[0]) && raw[0] > RECORD_KIND_KNOWN_MAX && raw[0] <= RECORD_KIND_MAX) throw new NewerRecordError(raw[0] as number);
  const twoPhase = Array.isArray(raw) && raw.length === 5 && raw[0] === RECORD_TWO_PHASE;
  if (!Array.isArray(raw) || (!twoPhase && (raw.length !== 4 || raw[0] !== RECORD_COMMIT))) throw new Error("record is not a commit record");
  const tsn = raw[1];
  if (!isCount(tsn)) throw new Error(`commit record has version ${describe(tsn)}; versions are integers from 1 to 2^53-1`);
  const writes = decodeWrites(raw[2], "write");
  const namespaceOps: NamespaceOp[] = [];
  const ops = raw[3];
  if (ops !== null) {
    if (!Array.isArray(ops) || ops.length === 0 || ops.length % 3 !== 0) throw new Error("commit record has malformed namespace operations");
    for (let i = 0; i < ops.length; i += 3) {
      const [op, name, arg] = [ops[i], ops[i + 1], ops[i + 2]];
      if (!isName(name)) throw new Error(`namespace operation #${i / 3} has name ${describe(name)}, not a non-empty well-formed string`);
      if (op === 1 && isCount(arg)) namespaceOps.push({ op: "create", name, id: arg });
      else if (op === 2 && arg === 0) namespaceOps.push({ op: "drop", name });
      else if (op === 3 && isName(arg)) namespaceOps.push({ op: "rename", name, to: arg });
      else throw new Error(`namespace operation #${i / 3} is malformed (operation ${describe(op)}, argument ${describe(arg)})`);
    }
  }
  if (!twoPhase) return { tsn, writes, namespaceOps };
  if (namespaceOps.length > 0) throw new Error("a two-phase commit record has namespace operations");
  return { tsn, writes, namespaceOps, twoPhase: decodeTwoPhase(raw[4], writes.length) };
}

function decodeWrites(flat: unknown, what: string): RecordWrite[] {
  if (!Array.isArray(flat)) throw new Error(`commit record's ${what}s are ${describe(flat)}, not an array`);
  if (flat.length % 3 !== 0) throw new Error(`commit record has a partial ${what}`);
  const writes: RecordWrite[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const nsId = flat[i];
    const key = flat[i + 1];
    const value = flat[i + 2];
    const n = i / 3;
    checkKey(nsId, key, `${what} #${n}`);
    if (!(value === null || (value instanceof Uint8Array && value.length > 0))) throw new Error(`${what} #${n} has a value of type ${describe(value)}, not CBOR bytes or null`);
    writes.push({ nsId: nsId as number, key: key as Uint8Array, value });
  }
  return writes;
}

function checkKey(nsId: unknown, key: unknown, what: string): void {
  if (!isCount(nsId)) throw new Error(`${what} has namespace id ${describe(nsId)}; ids are integers from 1`);
  if (!(key instanceof Uint8Array)) throw new Error(`${what} has a key of type ${describe(key)}, not bytes`);
  const keyProblem = encodedKeyProblem(key);
  if (keyProblem !== undefined) throw new Error(`${what} has a malformed key: ${keyProblem}`);
}

/** True if `s` may be a transaction id: a non-empty well-formed string of at most TXID_CHARS_MAX. */
export function isTxid(s: unknown): s is string {
  return isName(s) && s.length <= TXID_CHARS_MAX;
}

function decodeTwoPhase(part: unknown, writeCount: number): TwoPhaseOp {
  if (!Array.isArray(part) || part.length < 2) throw new Error(`two-phase part is ${describe(part)}, not a list`);
  const [op, txid] = part;
  if (!isTxid(txid)) throw new Error(`two-phase record has transaction id ${describe(txid)}`);
  if (op === 2 && part.length === 2) return { op: "commit", txid };
  if (op === 3 && part.length === 2) {
    if (writeCount > 0) throw new Error("an abort record has writes");
    return { op: "abort", txid };
  }
  if (op !== 1 || part.length !== 8) throw new Error(`two-phase record has operation ${describe(op)} with ${part.length} fields`);
  if (writeCount > 0) throw new Error("a prepare record has visible writes");
  const [, , c, preparedAtMs, inDoubtMs, pw, pr, pg] = part;
  let coordinator: CoordinatorRef | null = null;
  if (c !== null) {
    if (!Array.isArray(c) || c.length !== 3 || !c.every((x) => isName(x))) throw new Error("prepare record has a malformed coordinator");
    coordinator = { path: c[0] as string, id: c[1] as string, lease: c[2] as string };
  }
  if (typeof preparedAtMs !== "number" || !Number.isFinite(preparedAtMs)) throw new Error(`prepare record has time ${describe(preparedAtMs)}`);
  if (typeof inDoubtMs !== "number" || !(inDoubtMs >= 0)) throw new Error(`prepare record has in-doubt timeout ${describe(inDoubtMs)}`);
  const writes = decodeWrites(pw, "prepared write");
  if (!Array.isArray(pr) || pr.length % 2 !== 0) throw new Error("prepare record has malformed reads");
  const reads: PrepareOp["reads"] = [];
  for (let i = 0; i < pr.length; i += 2) {
    checkKey(pr[i], pr[i + 1], `prepared read #${i / 2}`);
    reads.push({ nsId: pr[i] as number, key: pr[i + 1] as Uint8Array });
  }
  if (!Array.isArray(pg) || pg.length % 3 !== 0) throw new Error("prepare record has malformed ranges");
  const ranges: PrepareOp["ranges"] = [];
  for (let i = 0; i < pg.length; i += 3) {
    const [nsId, start, end] = [pg[i], pg[i + 1], pg[i + 2]];
    if (!isCount(nsId) || !(start instanceof Uint8Array) || !(end instanceof Uint8Array)) throw new Error(`prepared range #${i / 3} is malformed`);
    ranges.push({ nsId, start, end });
  }
  return { op: "prepare", txid, coordinator, preparedAtMs, inDoubtMs, writes, reads, ranges };
}

/** A short description of a decoded field for messages: its value if small, else its type. */
function describe(v: unknown): string {
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return v.length <= 40 ? JSON.stringify(v) : `a string of ${v.length} chars`;
  return Array.isArray(v) ? "an array" : v instanceof Uint8Array ? "bytes" : typeof v;
}

/**
 * Why a record at version `tsn` cannot follow `last`, the version before it in the log. Every
 * record takes the next version (commit.ts builds each at the last one plus 1; a commit
 * that joins another's record adds none; two-phase and namespace records are records like
 * any other), and the log after a compaction starts right past the folded version: so a
 * record that skips versions means records are missing (a segment file removed, a range
 * of records cut out), and serving the log would serve a history with a hole.
 */
export function tsnBreak(tsn: number, last: number): string {
  return tsn <= last
    ? `record TSN ${tsn} does not follow ${last}`
    : `record TSN ${tsn} follows ${last}: version${tsn - last > 2 ? `s ${last + 1} to ${tsn - 1} are` : ` ${last + 1} is`} missing from the log (a segment file removed or records cut out)`;
}
