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
}

/** A decoded commit record. */
export interface CommitRecord {
  tsn: number;
  writes: RecordWrite[];
  namespaceOps: NamespaceOp[];
}

/** Wraps a body in a frame. */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  const view = new DataView(out.buffer);
  out[0] = FRAME_MAGIC;
  view.setUint32(1, body.length, true);
  out.set(body, FRAME_HEADER_BYTES);
  view.setUint32(5, crc32c(body, crc32c(out.subarray(1, 5))), true);
  return out;
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
  return encodeInternal([RECORD_COMMIT, record.tsn, writes, ops]);
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
  if (!Array.isArray(raw) || raw.length !== 4 || raw[0] !== RECORD_COMMIT) throw new Error("record is not a commit record");
  const tsn = raw[1];
  if (!isCount(tsn)) throw new Error(`commit record has version ${describe(tsn)}; versions are integers from 1 to 2^53-1`);
  const flat = raw[2];
  if (!Array.isArray(flat)) throw new Error(`commit record's writes are ${describe(flat)}, not an array`);
  if (flat.length % 3 !== 0) throw new Error("commit record has a partial write");
  const writes: RecordWrite[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const nsId = flat[i];
    const key = flat[i + 1];
    const value = flat[i + 2];
    const n = i / 3;
    if (!isCount(nsId)) throw new Error(`write #${n} has namespace id ${describe(nsId)}; ids are integers from 1`);
    if (!(key instanceof Uint8Array)) throw new Error(`write #${n} has a key of type ${describe(key)}, not bytes`);
    const keyProblem = encodedKeyProblem(key);
    if (keyProblem !== undefined) throw new Error(`write #${n} has a malformed key: ${keyProblem}`);
    if (!(value === null || (value instanceof Uint8Array && value.length > 0))) throw new Error(`write #${n} has a value of type ${describe(value)}, not CBOR bytes or null`);
    writes.push({ nsId, key, value });
  }
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
  return { tsn, writes, namespaceOps };
}

/** A short description of a decoded field for messages: its value if small, else its type. */
function describe(v: unknown): string {
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return v.length <= 40 ? JSON.stringify(v) : `a string of ${v.length} chars`;
  return Array.isArray(v) ? "an array" : v instanceof Uint8Array ? "bytes" : typeof v;
}
