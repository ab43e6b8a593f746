/**
 * The shared table of locks on named resources: modes and their compatibility, the file
 * format, the grant rule and deadlock detection. Pure functions over a decoded table;
 * locks.ts reads and writes it under the table's flock, and does the waiting.
 *
 * Modes and compatibility (the usual multi-granularity matrix; y = both may be granted
 * to different owners at once):
 *
 * ```
 *          IS   IX   S    SIX  X
 *   IS     y    y    y    y    -
 *   IX     y    y    -    -    -
 *   S      y    -    y    -    -
 *   SIX    y    -    -    -    -
 *   X      -    -    -    -    -
 * ```
 *
 * Strength (what "a held or weaker mode" means): IS < IX < SIX < X and IS < S < SIX. The
 * intention mode a lock takes on each shorter prefix is IS for IS and S, IX for IX, SIX
 * and X.
 *
 * Entries: one per grant or wait, each with a table-wide arrival sequence number
 * (`seq`). An owner (one Database handle, named by its lease) never conflicts with
 * itself: compatibility is checked against the granted entries of other owners only, so
 * holding S and then asking X on the same resource is a conversion, not a self-deadlock.
 *
 * Grant rule (settle), applied by whichever process changes the table, at the end of
 * every change, so a waiter never depends on its own process to be granted:
 *
 * 1. Entries of owners whose lease lock can be taken (dead processes) that block a waiting
 *    entry are dropped first, so a dead holder never blocks anyone beyond the next change
 *    or liveness probe. A dead owner's other entries stay until they block someone, or
 *    until the table is full: then every dead owner's entries go (locks.ts).
 * 2. Per resource, waiting entries are served in queue order: conversions (the owner
 *    already holds something on the resource) by seq, then other requests by seq.
 *    Conversions go first because a holder queued behind a waiter that waits for that
 *    very holder is a deadlock nobody asked for.
 * 3. A waiting entry is granted when it is compatible with every granted entry of other
 *    owners and with every earlier waiting entry of other owners in that order: a request
 *    compatible with the holders still queues behind an earlier incompatible waiter
 *    (first come, first served; no starvation of X by a stream of S).
 * 4. Deadlocks: owner A waits for owner B when one of A's waiting entries is blocked (by
 *    rule 3) by a granted or earlier waiting entry of B. Every cycle of this graph is
 *    broken by marking, in each cycle, the waiting entry that arrived last (highest seq)
 *    as a victim; a victim blocks nobody, and its owner fails that request with
 *    DEADLOCK, keeping what it holds. Edges only appear when a table change adds a
 *    waiting entry or grants one, and every change runs this rule, so a cycle is found
 *    by the very change that closes it.
 *
 * File format (`locks/table`): two slots, A at offset 0 and B at {@link SLOT_BYTES}.
 * A change writes generation g+1 into the slot the current generation g does not occupy
 * (slot = generation mod 2); a reader takes the valid slot with the highest generation.
 * So a writer killed mid-write (or a torn write) leaves the previous table intact: a
 * change happens entirely or not at all, with no fsync (after a power loss every owner
 * is dead, and the table means nothing).
 *
 * ```
 * slot header (32 B): magic u32 | body bytes u32 | generation f64 | crc32c u32 | 12 B zero
 * body: nextSeq f64
 *       owners u16, each: id 8 B | pid u32 | runtime length u8 | runtime
 *       entries u32, each: owner index u16 | mode u8 | flags u8 (1 granted, 2 conversion,
 *         4 victim) | seq f64 | since (wall ms) f64 | resource length u16 | resource
 *         (encoded key) | note length u16 | note (victim: the cycle, JSON)
 * ```
 *
 * @module
 */
import { crc32c } from "./crc32c.ts";

/** A lock mode: intention shared, intention exclusive, shared, shared + intention exclusive, exclusive. */
export type LockMode = "IS" | "IX" | "S" | "SIX" | "X";

/** The modes, indexed by their code in the table. */
export const LOCK_MODES: readonly LockMode[] = ["IS", "IX", "S", "SIX", "X"];

// Mode codes are indexes into LOCK_MODES (IS 0, IX 1, S 2, SIX 3, X 4); the tables below
// and the table file use them. SIX has no name here: no rule singles it out.
const IS = 0;
const IX = 1;
const S = 2;
const X = 4;

/** COMPATIBLE[a][b]: modes a and b may be granted to two owners at once. */
const COMPATIBLE: readonly (readonly boolean[])[] = [
  [true, true, true, true, false],
  [true, true, false, false, false],
  [true, false, true, false, false],
  [true, false, false, false, false],
  [false, false, false, false, false],
];

/** COVERS[a][b]: holding a includes holding b. */
const COVERS: readonly (readonly boolean[])[] = [
  [true, false, false, false, false],
  [true, true, false, false, false],
  [true, false, true, false, false],
  [true, true, true, true, false],
  [true, true, true, true, true],
];

/** True when modes `a` and `b` (codes) may be held by two owners at once. */
export function compatible(a: number, b: number): boolean {
  return COMPATIBLE[a]![b]!;
}

/** True when holding mode `held` includes `asked` (codes). */
export function covers(held: number, asked: number): boolean {
  return COVERS[held]![asked]!;
}

/** The intention mode a lock of mode `m` takes on every shorter prefix (codes). */
export function intentionFor(m: number): number {
  return m === IS || m === S ? IS : IX;
}

/** The code of a mode, or -1 when it is not one. */
export function modeCode(mode: unknown): number {
  return typeof mode === "string" ? LOCK_MODES.indexOf(mode as LockMode) : -1;
}

/** Entry flags. */
export const GRANTED = 1;
export const CONVERSION = 2;
export const VICTIM = 4;

/** One owner: a Database handle, named by its lease id (16 hex digits). */
export interface LockOwner {
  id: string;
  pid: number;
  runtime: string;
}

/** One grant or wait. */
export interface LockEntry {
  seq: number;
  owner: string;
  /** The resource, an encoded key (binary string). */
  resource: string;
  mode: number;
  flags: number;
  /** Wall-clock time of the grant or of the start of the wait (ms since the epoch). */
  sinceWallMs: number;
  /** A victim's cycle (JSON of {@link CycleNote}[]); "" otherwise. */
  note: string;
}

/** One request of a deadlock cycle as the table records it for the victim. */
export interface CycleNote {
  /** The resource as hex of its encoded key. */
  r: string;
  m: LockMode;
  p: number;
  t: string;
}

/** A decoded table. */
export interface LockTable {
  generation: number;
  nextSeq: number;
  owners: Map<string, LockOwner>;
  entries: LockEntry[];
}

/** Longest victim note (a cycle's description), in characters: its length is a u16. */
const NOTE_CHARS_MAX = 16_000;

/** Bytes of one slot: the largest table (entries and their resources) the file holds. */
export const SLOT_BYTES = 1 << 20;
/** Bytes of a slot header. */
export const SLOT_HEADER_BYTES = 32;
const MAGIC = 0x4b4c5854; // "TXLK"

/** An empty table (a new store, or a file with no valid slot). */
export function emptyTable(): LockTable {
  return { generation: 0, nextSeq: 1, owners: new Map(), entries: [] };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Thrown by {@link encodeTable} when the table would not fit a slot. */
export class TableFullError extends Error {}

/** Encodes `t` as a slot (header and body) for generation `t.generation`. */
export function encodeTable(t: LockTable): Uint8Array {
  const used = new Set(t.entries.map((e) => e.owner));
  const owners = [...t.owners.values()].filter((o) => used.has(o.id));
  const index = new Map(owners.map((o, i) => [o.id, i]));
  const runtimes = owners.map((o) => encoder.encode(o.runtime.slice(0, 32)));
  const notes = t.entries.map((e) => (e.note ? encoder.encode(e.note) : undefined));
  let size = SLOT_HEADER_BYTES + 8 + 2 + 4;
  for (const r of runtimes) size += 8 + 4 + 1 + r.length;
  for (let i = 0; i < t.entries.length; i++) {
    const resourceBytes = t.entries[i]!.resource.length;
    // Its length is a u16: a longer one would be cut there and misread the rest of the slot.
    if (resourceBytes > 0xffff) throw new TableFullError(`a resource of ${resourceBytes} bytes; the table holds at most 65535 bytes per resource`);
    size += 2 + 1 + 1 + 8 + 8 + 2 + resourceBytes + 2 + (notes[i]?.length ?? 0);
  }
  if (size > SLOT_BYTES) throw new TableFullError(`the lock table needs ${size} bytes; a slot holds ${SLOT_BYTES}`);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = SLOT_HEADER_BYTES;
  v.setFloat64(at, t.nextSeq, true);
  at += 8;
  v.setUint16(at, owners.length, true);
  at += 2;
  owners.forEach((o, i) => (at = writeOwner(out, v, at, o, runtimes[i]!)));
  v.setUint32(at, t.entries.length, true);
  at += 4;
  t.entries.forEach((e, i) => (at = writeEntry(out, v, at, index.get(e.owner)!, e.mode, e.flags, e.seq, e.sinceWallMs, e.resource, notes[i])));
  sealSlot(out, v, size, t.generation);
  return out;
}

/** Writes an owner of a slot's body at `at` (id, pid, runtime); returns where the next part goes. */
function writeOwner(out: Uint8Array, v: DataView, at: number, o: LockOwner, runtime: Uint8Array): number {
  for (let j = 0; j < 8; j++) out[at + j] = parseInt(o.id.slice(2 * j, 2 * j + 2), 16);
  v.setUint32(at + 8, o.pid >>> 0, true);
  out[at + 12] = runtime.length;
  out.set(runtime, at + 13);
  return at + 13 + runtime.length;
}

/** Writes an entry of a slot's body at `at`; returns where the next one goes. */
function writeEntry(out: Uint8Array, v: DataView, at: number, ownerIndex: number, mode: number, flags: number, seq: number, sinceWallMs: number, resource: string, note: Uint8Array | undefined): number {
  v.setUint16(at, ownerIndex, true);
  out[at + 2] = mode;
  out[at + 3] = flags;
  v.setFloat64(at + 4, seq, true);
  v.setFloat64(at + 12, sinceWallMs, true);
  v.setUint16(at + 20, resource.length, true);
  at += 22;
  for (let j = 0; j < resource.length; j++) out[at + j] = resource.charCodeAt(j);
  at += resource.length;
  v.setUint16(at, note?.length ?? 0, true);
  at += 2;
  if (note) out.set(note, at);
  return at + (note?.length ?? 0);
}

/** Writes the header of a slot of `size` bytes (its body already in place) for `generation`. */
function sealSlot(out: Uint8Array, v: DataView, size: number, generation: number): void {
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, size - SLOT_HEADER_BYTES, true);
  v.setFloat64(8, generation, true);
  v.setUint32(16, slotChecksum(out, size - SLOT_HEADER_BYTES), true);
}

/**
 * Encodes one owner's record of its grants (locks.ts: the table rebuilt from them) as a
 * slot in the table's format: `ownerBytes` is the owner's part of the body, made once by
 * {@link encodeRecordOwner}; every entry is granted, with no note. Leaner than
 * {@link encodeTable}: it runs at every change of what a handle holds.
 */
export function encodeRecord(generation: number, ownerBytes: Uint8Array, grants: ReadonlyMap<number, { seq: number; resource: string; mode: number }>, sinceWallMs: number): Uint8Array {
  let size = SLOT_HEADER_BYTES + 8 + 2 + ownerBytes.length + 4;
  let count = 0;
  let nextSeq = 1;
  for (const g of grants.values()) {
    if (g.resource.length > 0xffff) throw new TableFullError(`a resource of ${g.resource.length} bytes; the table holds at most 65535 bytes per resource`);
    size += 22 + g.resource.length + 2;
    count++;
    if (g.seq >= nextSeq) nextSeq = g.seq + 1;
  }
  if (size > SLOT_BYTES) throw new TableFullError(`the record needs ${size} bytes; a slot holds ${SLOT_BYTES}`);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = SLOT_HEADER_BYTES;
  v.setFloat64(at, nextSeq, true);
  v.setUint16(at + 8, count > 0 ? 1 : 0, true);
  at += 10;
  if (count > 0) {
    out.set(ownerBytes, at);
    at += ownerBytes.length;
  }
  v.setUint32(at, count, true);
  at += 4;
  for (const g of grants.values()) at = writeEntry(out, v, at, 0, g.mode, GRANTED, g.seq, sinceWallMs, g.resource, undefined);
  const end = count > 0 ? size : size - ownerBytes.length;
  sealSlot(out, v, end, generation);
  return end === size ? out : out.subarray(0, end);
}

/** The owner's part of a record's body (see {@link encodeRecord}): id, pid, runtime. */
export function encodeRecordOwner(owner: LockOwner): Uint8Array {
  const runtime = encoder.encode(owner.runtime.slice(0, 32));
  const out = new Uint8Array(8 + 4 + 1 + runtime.length);
  writeOwner(out, new DataView(out.buffer), 0, owner, runtime);
  return out;
}

function slotChecksum(slot: Uint8Array, bodyBytes: number): number {
  return crc32c(slot.subarray(SLOT_HEADER_BYTES, SLOT_HEADER_BYTES + bodyBytes), crc32c(slot.subarray(0, 16)));
}

/**
 * What a slot header says: its generation and body size, or undefined when the bytes are
 * not a slot header (never written, or torn).
 */
export function readSlotHeader(bytes: Uint8Array): { generation: number; bodyBytes: number } | undefined {
  if (bytes.length < SLOT_HEADER_BYTES) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(0, true) !== MAGIC) return undefined;
  const bodyBytes = v.getUint32(4, true);
  const generation = v.getFloat64(8, true);
  if (bodyBytes > SLOT_BYTES - SLOT_HEADER_BYTES || !Number.isSafeInteger(generation) || generation < 1) return undefined;
  return { generation, bodyBytes };
}

/** The generation of a whole slot whose header and checksum are right (its body not parsed); 0 otherwise. */
export function slotGeneration(slot: Uint8Array): number {
  const h = readSlotHeader(slot);
  if (!h || slot.length < SLOT_HEADER_BYTES + h.bodyBytes) return 0;
  const v = new DataView(slot.buffer, slot.byteOffset, slot.byteLength);
  return v.getUint32(16, true) === slotChecksum(slot, h.bodyBytes) ? h.generation : 0;
}

/**
 * Decodes a whole slot (header and body); undefined when its checksum or structure is
 * wrong (a torn or unfinished write), so the reader falls back to the other slot.
 */
export function decodeSlot(slot: Uint8Array): LockTable | undefined {
  if (slotGeneration(slot) === 0) return undefined;
  const h = readSlotHeader(slot)!;
  const v = new DataView(slot.buffer, slot.byteOffset, slot.byteLength);
  const end = SLOT_HEADER_BYTES + h.bodyBytes;
  let at = SLOT_HEADER_BYTES;
  const need = (n: number) => {
    if (at + n > end) throw new RangeError("short lock table");
  };
  try {
    need(10);
    const nextSeq = v.getFloat64(at, true);
    const ownerCount = v.getUint16(at + 8, true);
    at += 10;
    const owners: LockOwner[] = [];
    for (let i = 0; i < ownerCount; i++) {
      need(13);
      let id = "";
      for (let j = 0; j < 8; j++) id += slot[at + j]!.toString(16).padStart(2, "0");
      const pid = v.getUint32(at + 8, true);
      const len = slot[at + 12]!;
      at += 13;
      need(len);
      const runtime = decoder.decode(slot.subarray(at, at + len)).replace(/[^a-z0-9._-]/gi, "?");
      at += len;
      owners.push({ id, pid, runtime });
    }
    need(4);
    const entryCount = v.getUint32(at, true);
    at += 4;
    const entries: LockEntry[] = [];
    for (let i = 0; i < entryCount; i++) {
      need(22);
      const owner = owners[v.getUint16(at, true)];
      const mode = slot[at + 2]!;
      const flags = slot[at + 3]!;
      const seq = v.getFloat64(at + 4, true);
      const sinceWallMs = v.getFloat64(at + 12, true);
      const resLen = v.getUint16(at + 20, true);
      at += 22;
      need(resLen + 2);
      let resource = "";
      for (let j = 0; j < resLen; j++) resource += String.fromCharCode(slot[at + j]!);
      at += resLen;
      const noteLen = v.getUint16(at, true);
      at += 2;
      need(noteLen);
      const note = noteLen ? decoder.decode(slot.subarray(at, at + noteLen)) : "";
      at += noteLen;
      if (!owner || mode > X || !Number.isSafeInteger(seq) || resLen === 0) return undefined;
      entries.push({ seq, owner: owner.id, resource, mode, flags, sinceWallMs, note });
    }
    if (!Number.isSafeInteger(nextSeq)) return undefined;
    return { generation: h.generation, nextSeq, owners: new Map(owners.map((o) => [o.id, o])), entries };
  } catch {
    return undefined;
  }
}

/** Queue order on one resource: conversions by arrival, then other requests by arrival. */
function queueOrder(a: LockEntry, b: LockEntry): number {
  const ca = a.flags & CONVERSION ? 0 : 1;
  const cb = b.flags & CONVERSION ? 0 : 1;
  return ca - cb || a.seq - b.seq;
}

/** Waiting entries by resource, each list in queue order; granted entries by resource. */
function byResource(t: LockTable): { waiting: Map<string, LockEntry[]>; granted: Map<string, LockEntry[]> } {
  const waiting = new Map<string, LockEntry[]>();
  const granted = new Map<string, LockEntry[]>();
  for (const e of t.entries) {
    if (e.flags & VICTIM) continue;
    const m = e.flags & GRANTED ? granted : waiting;
    let list = m.get(e.resource);
    if (!list) m.set(e.resource, (list = []));
    list.push(e);
  }
  for (const list of waiting.values()) list.sort(queueOrder);
  return { waiting, granted };
}

/**
 * The entries that keep waiting entry `w` waiting: other owners' granted entries on its
 * resource that are incompatible with it, and other owners' waiting entries ahead of it in
 * the queue that are incompatible with it.
 */
export function blockersOf(t: LockTable, w: LockEntry): LockEntry[] {
  const out: LockEntry[] = [];
  for (const e of t.entries) {
    if (e === w || e.resource !== w.resource || e.owner === w.owner || e.flags & VICTIM) continue;
    if (compatible(e.mode, w.mode)) continue;
    if (e.flags & GRANTED || queueOrder(e, w) < 0) out.push(e);
  }
  return out;
}

/** Removes every entry of `owners` (dead ones) and the owners themselves; returns how many entries went. */
export function dropOwners(t: LockTable, owners: ReadonlySet<string>): number {
  const before = t.entries.length;
  t.entries = t.entries.filter((e) => !owners.has(e.owner));
  for (const o of owners) t.owners.delete(o);
  return before - t.entries.length;
}

/**
 * Applies the grant rule and deadlock detection to `t` in place (rules 1 to 4 above).
 * `alive(owner)` says whether an owner's lease is held; it is asked only about owners
 * that block a waiting entry, at most once each. Returns the owners found dead.
 */
export function settle(t: LockTable, nowWallMs: number, alive: (owner: string) => boolean): string[] {
  const dead: string[] = [];
  const known = new Map<string, boolean>();
  const isAlive = (owner: string) => {
    let a = known.get(owner);
    if (a === undefined) {
      a = alive(owner);
      known.set(owner, a);
      if (!a) dead.push(owner);
    }
    return a;
  };
  // At most one pass per entry: each pass grants, victimizes or drops at least one entry.
  for (let pass = 0; pass <= t.entries.length + 1; pass++) {
    const { waiting, granted } = byResource(t);
    let changed = false;
    for (const [resource, queue] of waiting) {
      const holders = granted.get(resource) ?? [];
      const ahead: LockEntry[] = [];
      for (const w of queue) {
        const blockers = [...holders, ...ahead].filter((e) => e.owner !== w.owner && !compatible(e.mode, w.mode));
        const deadBlocker = blockers.find((b) => !isAlive(b.owner));
        if (deadBlocker) {
          changed = true;
          break;
        }
        if (blockers.length === 0) {
          w.flags |= GRANTED;
          w.sinceWallMs = nowWallMs;
          holders.push(w);
          changed = true;
        } else {
          ahead.push(w);
        }
      }
    }
    for (const v of t.entries) if (v.flags & VICTIM) isAlive(v.owner);
    if (dead.length > 0 && dropOwners(t, new Set(dead)) > 0) changed = true;
    if (changed) continue;
    if (!breakOneCycle(t)) return dead;
  }
  return dead;
}

/**
 * Finds one cycle in the wait-for graph of owners and marks its latest-arrived waiting
 * entry as the victim, with the cycle as its note. Returns false when there is none.
 */
function breakOneCycle(t: LockTable): boolean {
  // Edges: owner -> [blocking owner, the waiting entry that makes the edge], in the order
  // blockersOf gives them for each waiting entry in table order (which decides the cycle
  // found first). Blockers are looked for per resource, not by a scan of the whole table
  // for each waiting entry: that was quadratic in the table (10,000 waiting handles, or a
  // crafted table: ~20 s per change, every process held up behind the table's flock).
  const { waiting, granted } = byResource(t);
  const position = new Map<LockEntry, number>();
  t.entries.forEach((e, i) => position.set(e, i));
  const blockers = new Map<LockEntry, LockEntry[]>();
  for (const [resource, queue] of waiting) {
    const holders = granted.get(resource) ?? [];
    for (let i = 0; i < queue.length; i++) {
      const w = queue[i]!;
      const out: LockEntry[] = [];
      const consider = (e: LockEntry) => {
        if (e.owner !== w.owner && !compatible(e.mode, w.mode)) out.push(e);
      };
      for (const h of holders) consider(h);
      for (let j = 0; j < i; j++) consider(queue[j]!); // ahead of w in queue order
      if (out.length > 1) out.sort((a, b) => position.get(a)! - position.get(b)!);
      blockers.set(w, out);
    }
  }
  const edges = new Map<string, [string, LockEntry][]>();
  for (const w of t.entries) {
    if (w.flags & (GRANTED | VICTIM)) continue;
    for (const b of blockers.get(w) ?? []) {
      let list = edges.get(w.owner);
      if (!list) edges.set(w.owner, (list = []));
      list.push([b.owner, w]);
    }
  }
  if (edges.size === 0) return false;
  const state = new Map<string, 1 | 2>(); // 1: on the path, 2: done
  const path: { owner: string; via: LockEntry | undefined }[] = [];
  // Depth first, on a stack of its own: a chain of waits as long as the table can hold (a
  // crafted table, or thousands of handles) must not overflow the call stack.
  const visit = (root: string): LockEntry[] | undefined => {
    const frames: { owner: string; edges: [string, LockEntry][]; next: number }[] = [{ owner: root, edges: edges.get(root) ?? [], next: 0 }];
    state.set(root, 1);
    while (frames.length > 0) {
      const f = frames[frames.length - 1]!;
      if (f.next === f.edges.length) {
        state.set(f.owner, 2);
        frames.pop();
        if (frames.length > 0) path.pop(); // the edge that led to f
        continue;
      }
      const [next, via] = f.edges[f.next++]!;
      const s = state.get(next);
      if (s === 2) continue;
      path.push({ owner: f.owner, via });
      if (s === 1) {
        const start = path.findIndex((p) => p.owner === next);
        return path.slice(start).map((p) => p.via!);
      }
      state.set(next, 1);
      frames.push({ owner: next, edges: edges.get(next) ?? [], next: 0 });
    }
    return undefined;
  };
  for (const owner of edges.keys()) {
    if (state.has(owner)) continue;
    const cycle = visit(owner);
    if (!cycle) continue;
    const victim = cycle.reduce((a, b) => (b.seq > a.seq ? b : a));
    const from = cycle.indexOf(victim);
    const ordered = [...cycle.slice(from), ...cycle.slice(0, from)];
    const note: CycleNote[] = ordered.map((e) => {
      const o = t.owners.get(e.owner);
      let hex = "";
      for (let i = 0; i < e.resource.length; i++) hex += e.resource.charCodeAt(i).toString(16).padStart(2, "0");
      return { r: hex, m: LOCK_MODES[e.mode]!, p: o?.pid ?? -1, t: o?.runtime ?? "?" };
    });
    // Bounded: the note must fit its u16 length, however long the cycle or its resources.
    // Kept from the front while the JSON array of them fits (each note's length summed,
    // not the whole array stringified once per dropped note: quadratic in a long cycle).
    let chars = 2; // "[" and "]"
    let keep = 0;
    while (keep < note.length) {
      const more = JSON.stringify(note[keep]).length + (keep > 0 ? 1 : 0);
      if (keep > 0 && chars + more > NOTE_CHARS_MAX) break;
      chars += more;
      keep++;
    }
    note.length = Math.max(1, keep);
    victim.flags |= VICTIM;
    victim.note = JSON.stringify(note).slice(0, NOTE_CHARS_MAX);
    return true;
  }
  return false;
}
