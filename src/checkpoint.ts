/**
 * Checkpoints: the state of the store as of one TSN, written by compaction so that the
 * log segments it folds can be deleted.
 *
 * ```
 * ckpt-<tsn>.dat := header frame, then entry frames (same framing and CRC32C as the log)
 * header := CBOR [2, tsn, nextNamespaceId, flat [name, id, ...]]
 * entries := CBOR [3, flat [nsId, keyBytes, tsn, valueBytes, ...]]   (≤ ~1 MiB per frame)
 * ```
 *
 * Entries keep the TSN that wrote them (it is their version), so a checkpoint holds, for
 * each key, the newest version ≤ the checkpoint's TSN; deletes are left out.
 *
 * @module
 */
import { decodeInternal, encodeInternal } from "./codec.ts";
import { frame, FRAME_BODY_MAX_BYTES, FRAME_HEADER_BYTES, parseFrame } from "./record.ts";
import type { FrameResult } from "./record.ts";
import { binaryToBytes, bytesToBinary, encodedKeyProblem, isWellFormedString } from "./keys.ts";
import type { FileHandle } from "./port.ts";

const KIND_HEADER = 2;
const KIND_ENTRIES = 3;
const ENTRY_FRAME_BYTES = 1 << 20;
/** Reads of a checkpoint: a few entry frames at a time (a larger frame is read whole). */
const READ_CHUNK_BYTES = 4 << 20;

export interface CheckpointHeader {
  tsn: number;
  nextNsId: number;
  bindings: [string, number][];
}

export interface CheckpointEntry {
  nsId: number;
  key: string;
  tsn: number;
  value: Uint8Array;
}

export function checkpointName(tsn: number): string {
  return `ckpt-${String(tsn).padStart(16, "0")}.dat`;
}

/** Writes a checkpoint to `file` (which must be empty) and fsyncs it. Returns bytes written. */
export function writeCheckpoint(file: FileHandle, header: CheckpointHeader, entries: Iterable<CheckpointEntry>): number {
  let offset = 0;
  const put = (body: Uint8Array) => {
    const f = frame(body);
    file.write(f, offset);
    offset += f.length;
  };
  put(encodeInternal([KIND_HEADER, header.tsn, header.nextNsId, header.bindings.flat()]));
  let batch: unknown[] = [];
  let bytes = 0;
  for (const e of entries) {
    batch.push(e.nsId, binaryToBytes(e.key), e.tsn, e.value);
    bytes += e.key.length + e.value.length + 16;
    if (bytes >= ENTRY_FRAME_BYTES) {
      put(encodeInternal([KIND_ENTRIES, batch]));
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) put(encodeInternal([KIND_ENTRIES, batch]));
  file.sync();
  return offset;
}

/** A problem found while reading a checkpoint. */
export class CheckpointDamage extends Error {
  readonly offset: number;
  constructor(offset: number, reason: string) {
    super(reason);
    this.offset = offset;
  }
}

/** An integer a TSN or namespace id can be: exact as a number, so BigInt() of it is too. */
function isInteger(n: unknown, min: number): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= min;
}

/**
 * Whether (name, id) can bind a namespace at a version whose next id is `nextNsId`: a
 * non-empty, well-formed name and an id in 1..nextNsId-1. A checkpoint's header and a
 * manifest's bindings are held to it.
 */
export function isNamespaceBinding(name: unknown, id: unknown, nextNsId: number): name is string {
  return typeof name === "string" && name.length > 0 && isWellFormedString(name) && isInteger(id, 1) && id < nextNsId;
}

/** What reading a whole checkpoint found. */
export interface CheckpointRead {
  header: CheckpointHeader;
  /** Frames read, the header's included. */
  frames: number;
  /** Bytes read: the file's size. */
  bytes: number;
}

/**
 * Reads a checkpoint; calls `onEntry` for each entry with the offset of its frame. Checks
 * every field's type and range (a frame with a valid checksum can still hold anything) and
 * throws CheckpointDamage with the offset. Value bytes are left to readers and `check()`.
 */
export function readCheckpoint(file: FileHandle, onEntry: (e: CheckpointEntry, frameOffset: number) => void): CheckpointRead {
  const frames = checkingCheckpoint(file, onEntry);
  for (let r = frames.next(); ; r = frames.next()) if (r.done) return r.value;
}

/**
 * {@link readCheckpoint}, handing on each frame once it is checked, in file order and
 * contiguous from offset 0: `backup()` writes them to its copy as it checks them, so that
 * what it copies is what was checked, read once. A frame's bytes stay valid after the next
 * is yielded (each read fills a new buffer; never modify them).
 */
export function* checkingCheckpoint(
  file: FileHandle,
  onEntry: (e: CheckpointEntry, frameOffset: number) => void = () => {},
): Generator<{ offset: number; bytes: Uint8Array }, CheckpointRead, undefined> {
  const size = file.size();
  // Read in chunks, never whole: a checkpoint is as large as the store, and a damaged one (a
  // sparse file of many gigabytes, say) failed with an allocation error instead of damage.
  let data = new Uint8Array(0);
  let dataAt = 0; // the file offset of data[0]
  /**
   * The frame at file offset `at` (in `data`, or starting in its last bytes): when `data`
   * does not hold it whole, the bytes of it already read are kept and the file is read on
   * from the end of `data`, so that no byte is read twice.
   */
  const frameAt = (at: number): FrameResult => {
    for (;;) {
      const r = parseFrame(data, at - dataAt);
      const end = dataAt + data.length;
      if (r.kind !== "incomplete" || end >= size) return r;
      const kept = data.subarray(at - dataAt);
      // A chunk, or the whole frame once its header says it is longer (never past the file's end).
      const length = kept.length >= FRAME_HEADER_BYTES ? new DataView(kept.buffer, kept.byteOffset).getUint32(1, true) : 0;
      const buf = new Uint8Array(Math.min(size - at, Math.max(READ_CHUNK_BYTES, FRAME_HEADER_BYTES + Math.min(length, FRAME_BODY_MAX_BYTES))));
      buf.set(kept);
      const got = file.read(buf.subarray(kept.length), end);
      data = buf.subarray(0, kept.length + got);
      dataAt = at;
      if (got === 0) return parseFrame(data, 0); // the file ended early: the frame is cut short
    }
  };
  let at = 0;
  let header: CheckpointHeader | undefined;
  let frames = 0;
  while (at < size) {
    const r = frameAt(at);
    if (r.kind !== "ok") throw new CheckpointDamage(at, r.kind === "bad" ? r.reason : r.kind === "zero" ? "zeros where a frame should be" : "frame is cut short");
    let raw: unknown;
    try {
      raw = decodeInternal(r.body.slice());
    } catch (e) {
      throw new CheckpointDamage(at, `undecodable frame: ${(e as Error).message}`);
    }
    if (!Array.isArray(raw)) throw new CheckpointDamage(at, "frame is not an array");
    if (frames === 0) {
      const [kind, tsn, nextNsId, flat] = raw as [unknown, unknown, unknown, unknown];
      if (kind !== KIND_HEADER || raw.length !== 4 || !isInteger(tsn, 0) || !isInteger(nextNsId, 1) || !Array.isArray(flat) || flat.length % 2 !== 0) {
        throw new CheckpointDamage(at, "missing or malformed checkpoint header");
      }
      const bindings: [string, number][] = [];
      for (let i = 0; i < flat.length; i += 2) {
        const [name, id] = [flat[i], flat[i + 1]];
        if (!isNamespaceBinding(name, id, nextNsId)) {
          throw new CheckpointDamage(at, `malformed namespace binding #${i / 2}`);
        }
        bindings.push([name, id]);
      }
      header = { tsn, nextNsId, bindings };
    } else {
      const [kind, flat] = raw as [unknown, unknown];
      if (kind !== KIND_ENTRIES || raw.length !== 2 || !Array.isArray(flat) || flat.length % 4 !== 0) throw new CheckpointDamage(at, "malformed entry frame");
      for (let i = 0; i < flat.length; i += 4) {
        const [nsId, key, tsn, value] = [flat[i], flat[i + 1], flat[i + 2], flat[i + 3]];
        if (!isInteger(nsId, 1) || !(key instanceof Uint8Array) || !isInteger(tsn, 1) || tsn > header!.tsn || !(value instanceof Uint8Array) || value.length === 0) {
          throw new CheckpointDamage(at, `malformed entry #${i / 4}`);
        }
        const keyProblem = encodedKeyProblem(key);
        if (keyProblem !== undefined) throw new CheckpointDamage(at, `entry #${i / 4} has a malformed key: ${keyProblem}`);
        onEntry({ nsId, key: bytesToBinary(key), tsn, value }, at);
      }
    }
    frames++;
    yield { offset: at, bytes: data.subarray(at - dataAt, r.next) };
    at = dataAt + r.next;
  }
  if (!header) throw new CheckpointDamage(0, "empty checkpoint");
  return { header, frames, bytes: at };
}
