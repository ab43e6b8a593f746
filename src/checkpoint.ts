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
import { frame, parseFrame } from "./record.ts";
import { binaryToBytes, bytesToBinary } from "./keys.ts";
import type { FileHandle } from "./port.ts";

const KIND_HEADER = 2;
const KIND_ENTRIES = 3;
const ENTRY_FRAME_BYTES = 1 << 20;

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

/** Reads a checkpoint; calls `onEntry` for each entry. Throws CheckpointDamage with the offset. */
export function readCheckpoint(file: FileHandle, onEntry: (e: CheckpointEntry) => void): { header: CheckpointHeader; frames: number; bytes: number } {
  const size = file.size();
  const buf = new Uint8Array(size);
  const got = file.read(buf, 0);
  const data = buf.subarray(0, got);
  let at = 0;
  let header: CheckpointHeader | undefined;
  let frames = 0;
  while (at < data.length) {
    const r = parseFrame(data, at);
    if (r.kind !== "ok") throw new CheckpointDamage(at, r.kind === "bad" ? r.reason : "frame is cut short");
    let raw: unknown;
    try {
      raw = decodeInternal(r.body.slice());
    } catch (e) {
      throw new CheckpointDamage(at, `undecodable frame: ${(e as Error).message}`);
    }
    if (!Array.isArray(raw)) throw new CheckpointDamage(at, "frame is not an array");
    if (frames === 0) {
      const [kind, tsn, nextNsId, flat] = raw as [unknown, unknown, unknown, unknown];
      if (kind !== KIND_HEADER || typeof tsn !== "number" || typeof nextNsId !== "number" || !Array.isArray(flat)) {
        throw new CheckpointDamage(at, "missing checkpoint header");
      }
      const bindings: [string, number][] = [];
      for (let i = 0; i < flat.length; i += 2) bindings.push([String(flat[i]), Number(flat[i + 1])]);
      header = { tsn, nextNsId, bindings };
    } else {
      const [kind, flat] = raw as [unknown, unknown];
      if (kind !== KIND_ENTRIES || !Array.isArray(flat) || flat.length % 4 !== 0) throw new CheckpointDamage(at, "malformed entry frame");
      for (let i = 0; i < flat.length; i += 4) {
        const [nsId, key, tsn, value] = [flat[i], flat[i + 1], flat[i + 2], flat[i + 3]];
        if (typeof nsId !== "number" || !(key instanceof Uint8Array) || typeof tsn !== "number" || !(value instanceof Uint8Array)) {
          throw new CheckpointDamage(at, "malformed entry");
        }
        onEntry({ nsId, key: bytesToBinary(key), tsn, value });
      }
    }
    frames++;
    at = r.next;
  }
  if (!header) throw new CheckpointDamage(0, "empty checkpoint");
  return { header, frames, bytes: data.length };
}
