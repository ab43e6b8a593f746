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

/** Decodes a commit record body; throws a plain Error describing what is malformed. */
export function decodeCommit(body: Uint8Array): CommitRecord {
  const raw = decodeInternal(body);
  if (!Array.isArray(raw) || raw[0] !== RECORD_COMMIT || typeof raw[1] !== "number" || !Array.isArray(raw[2])) {
    throw new Error("record is not a commit record");
  }
  const flat = raw[2] as unknown[];
  if (flat.length % 3 !== 0) throw new Error("commit record has a partial write");
  const writes: RecordWrite[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const nsId = flat[i];
    const key = flat[i + 1];
    const value = flat[i + 2];
    if (typeof nsId !== "number" || !(key instanceof Uint8Array) || !(value === null || value instanceof Uint8Array)) {
      throw new Error("commit record has a malformed write");
    }
    writes.push({ nsId, key, value });
  }
  const namespaceOps: NamespaceOp[] = [];
  const ops = raw[3];
  if (ops !== null && ops !== undefined) {
    if (!Array.isArray(ops) || ops.length % 3 !== 0) throw new Error("commit record has malformed namespace operations");
    for (let i = 0; i < ops.length; i += 3) {
      const [op, name, arg] = [ops[i], ops[i + 1], ops[i + 2]];
      if (typeof name !== "string") throw new Error("namespace operation without a name");
      if (op === 1 && typeof arg === "number") namespaceOps.push({ op: "create", name, id: arg });
      else if (op === 2) namespaceOps.push({ op: "drop", name });
      else if (op === 3 && typeof arg === "string") namespaceOps.push({ op: "rename", name, to: arg });
      else throw new Error(`unknown namespace operation ${String(op)}`);
    }
  }
  return { tsn: raw[1] as number, writes, namespaceOps };
}
