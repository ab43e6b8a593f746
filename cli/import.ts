/**
 * `txtdb import`: NDJSON export lines from stdin into a store, checked first, atomic up to
 * one transaction's size, resumable past it.
 *
 * Rules:
 * 1. Every line is checked (JSON, record shape, tags, key and value encodable within the
 *    limits) before the store is opened, so bad input at any line writes nothing, not even
 *    the store directory. The whole input is held in memory meanwhile: the price of
 *    all-or-nothing from a stream that cannot be read twice.
 * 2. Input within one transaction's limits ({@link TX_WRITES_MAX} entries and
 *    {@link TX_BYTES_MAX} bytes of encoded keys and values) is written in one transaction:
 *    all of it or, on any failure, none of it.
 * 3. Larger input is written in order, in transactions of at most {@link BATCH_WRITES_MAX}
 *    entries / {@link BATCH_BYTES_MAX} bytes. Each one also writes, in the same transaction,
 *    a progress marker (namespace {@link IMPORT_NS}, key "progress": the input's digest, its
 *    size, the last input line committed). A crash leaves the store at a batch boundary with
 *    a marker that says exactly which one, so `import --resume` with the same input continues
 *    after it and writes no line twice. The marker's namespace is dropped when the import
 *    finishes; `export` never exports it.
 * 4. An import into a store with an unfinished import's marker is refused unless it says
 *    `--resume` (same input: continue) or `--restart` (write everything again).
 *
 * @module
 */
import { TxtDbError } from "../src/errors.ts";
import type { Database, Key, Transaction } from "../mod.ts";
import { databaseInternals } from "../src/db.ts";
import { ENVELOPE_HEADER_BYTES, EXPIRE_IN_MAX_MS } from "../src/expiry.ts";
import { checkNamespaceName } from "../src/options.ts";
import { fromTagged } from "../src/ndjson.ts";
import { encodeKey } from "../src/keys.ts";
import { encodeValue } from "../src/codec.ts";
import type { Progress } from "./output.ts";

/** Default transaction limits of open(); an import that fits both is written in one transaction. */
export const TX_WRITES_MAX = 100_000;
export const TX_BYTES_MAX = 64 * 1024 * 1024;
const KEY_BYTES_MAX = 2048;
const VALUE_BYTES_MAX = 16 * 1024 * 1024;
/** Past the limits, an import is written in transactions this large (well inside both limits). */
export const BATCH_WRITES_MAX = 10_000;
export const BATCH_BYTES_MAX = 16 * 1024 * 1024;
/** The namespace of an unfinished import's progress marker (reserved: input may not use it). */
export const IMPORT_NS = "txtdb.import";
/** The marker's key in {@link IMPORT_NS}. */
export const MARKER_KEY = "progress";
const RECORD_FIELDS = new Set(["ns", "key", "value", "version", "expiresAtMs"]);

/** One checked input line. */
export interface ImportEntry {
  ns: string;
  key: Key;
  value: unknown;
  /** Encoded key and value bytes (with an expiring value's envelope, as the transaction limit counts them). */
  bytes: number;
  /** The input line number (1-based, blank lines counted). */
  line: number;
  /** When the key expires (ms since the epoch), for an expiring key's line. */
  expiresAtMs?: number;
}

/** The whole input, checked. */
export interface ImportInput {
  entries: ImportEntry[];
  bytes: number;
  /** Identifies the input: a hash of every non-blank line, in order, with their count. */
  digest: string;
}

/** What an unfinished batched import records in the store, in the same transaction as each batch. */
export interface ImportMarker {
  format: 1;
  digest: string;
  entries: number;
  /** Entries committed so far (a prefix of the input). */
  committedEntries: number;
  /** The input line of the last committed entry. */
  committedLine: number;
}

const invalid = (message: string) => new TxtDbError("INVALID_ARGUMENT", message);

/** Two 32-bit FNV-1a hashes with different offsets, as 16 hex digits: tells inputs apart, not an integrity check. */
class Digest {
  #a = 0x811c9dc5;
  #b = 0x01000193 ^ 0x5bd1e995;
  #lines = 0;
  add(line: string): void {
    let a = this.#a;
    let b = this.#b;
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
    }
    a = Math.imul(a ^ 10, 0x01000193);
    b = Math.imul(b ^ 10, 0x01000193);
    [this.#a, this.#b] = [a, b];
    this.#lines++;
  }
  get value(): string {
    return `${(this.#a >>> 0).toString(16).padStart(8, "0")}${(this.#b >>> 0).toString(16).padStart(8, "0")}-${this.#lines}`;
  }
}

/**
 * Why a number in the JSON `text` cannot be kept, or undefined. JSON.parse reads every number
 * as a 64-bit float and says nothing when that changes it: 12345678901234567890 became
 * 12345678901234567000 and 1e400 became Infinity, written as data. An integer must be
 * exact, or be the float's own shortest form (as JSON.stringify, so export, writes 2 ** 60:
 * 1152921504606847000), and no number may overflow; a decimal fraction rounds, as every
 * JSON reader's does.
 */
export function lossyNumber(text: string): string | undefined {
  if (!/\d{16}|\d[eE][+-]?\d{3}/.test(text)) return undefined; // the usual line: nothing to round
  for (const m of text.matchAll(/"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(\.\d+)?([eE][+-]?\d+)?/g)) {
    const t = m[0];
    if (t[0] === '"') continue;
    const n = Number(t);
    if (!Number.isFinite(n)) return `the number ${t} is too large for a 64-bit float (it would read as ${n}); write {"$f64":"${n}"} for it, or {"$bigint":"…"} for a whole number`;
    if (m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(n) && String(n) !== t && BigInt(t) !== BigInt(n)) {
      return `the number ${t} cannot be kept exactly as a 64-bit float (it would read as ${BigInt(n)}); write it as {"$bigint":"${t}"}, or as a string`;
    }
  }
  return undefined;
}

/**
 * The first name that appears twice in one object of the JSON `text` (already parsed, so
 * valid), or undefined. JSON.parse keeps the last of them silently: a line with two
 * "value" fields, or a value object with a name twice, would import what the writer of the
 * line did not see. One pass over the text; names are compared decoded ("a" and "\u0061").
 */
export function duplicateName(text: string): string | undefined {
  const objects: (Set<string> | undefined)[] = []; // undefined: an array
  let nameNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          j++;
          escaped = true;
        } else if (d === 0x22) break;
      }
      const names = objects[objects.length - 1];
      if (names && nameNext) {
        const raw = text.slice(i, j + 1);
        const name = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (names.has(name)) return name;
        names.add(name);
        nameNext = false;
      }
      i = j;
    } else if (c === 0x7b) {
      objects.push(new Set());
      nameNext = true;
    } else if (c === 0x5b) {
      objects.push(undefined);
    } else if (c === 0x7d || c === 0x5d) {
      objects.pop();
      nameNext = false;
    } else if (c === 0x2c) {
      nameNext = objects[objects.length - 1] !== undefined;
    }
  }
  return undefined;
}

/** Reads and checks every line (rule 1); throws INVALID_ARGUMENT (or the key's code) naming the line. */
export async function readImport(lines: AsyncIterable<string>, progress?: Progress): Promise<ImportInput> {
  const entries: ImportEntry[] = [];
  const digest = new Digest();
  let lineNo = 0;
  let bytes = 0;
  for await (const text of lines) {
    lineNo++;
    if (!text.trim()) continue; // blank lines, and a trailing newline's empty rest
    digest.add(text);
    const at: (e: unknown) => never = (e) => {
      if (e instanceof TxtDbError) throw new TxtDbError(e.code, `line ${lineNo}: ${e.message}`, { cause: e });
      throw invalid(`line ${lineNo}: ${e instanceof Error ? e.message : String(e)}`);
    };
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      at(invalid(`not valid JSON (${(e as Error).message})`));
    }
    const lossy = lossyNumber(text);
    if (lossy !== undefined) at(invalid(lossy));
    const twice = duplicateName(text);
    if (twice !== undefined) at(invalid(`the name ${JSON.stringify(twice)} appears twice in one object, and JSON keeps only the last; write it once`));
    if (rec === null || typeof rec !== "object" || Array.isArray(rec)) at(invalid(`expected an object {"ns","key","value"}; got ${JSON.stringify(rec)}`));
    const r = rec as Record<string, unknown>;
    const extra = Object.keys(r).find((k) => !RECORD_FIELDS.has(k));
    if (extra !== undefined) at(invalid(`unknown field ${JSON.stringify(extra)}; a line has "ns", "key", "value" and optionally "version" and "expiresAtMs"`));
    // "version" is what export writes ({"$bigint": digits}); the import writes new versions,
    // but a line whose version is no version at all is not an export line.
    if ("version" in r && !isExportVersion(r.version)) {
      at(invalid(`"version" must be the version export writes ({"$bigint":"<digits>"}) or a whole number; got ${JSON.stringify(r.version)}. It is not written: the import gives its entries new versions`));
    }
    if ("expiresAtMs" in r && !(Number.isSafeInteger(r.expiresAtMs) && (r.expiresAtMs as number) >= 0)) {
      at(invalid(`"expiresAtMs" must be a whole number of milliseconds since the epoch (when the key expires); got ${JSON.stringify(r.expiresAtMs)}`));
    }
    if ("expiresAtMs" in r && (r.expiresAtMs as number) > Date.now() + EXPIRE_IN_MAX_MS) {
      at(invalid(`"expiresAtMs" ${r.expiresAtMs} is more than 100 years away, the longest expiry a key may have; omit it for a key that does not expire`));
    }
    if (typeof r.ns !== "string" || r.ns.length === 0 || r.ns.length > 256) at(invalid(`"ns" must be a namespace name (1 to 256 characters); got ${JSON.stringify(r.ns)}`));
    if (r.ns === IMPORT_NS) at(invalid(`namespace ${JSON.stringify(IMPORT_NS)} is reserved for import's progress marker`));
    // Every check createNamespace() makes (a reserved "\u0000txtdb." name, a lone surrogate),
    // here and not at the write: there it failed after the store was created, without a line number.
    try {
      checkNamespaceName(r.ns);
    } catch (e) {
      at(e);
    }
    if (!("key" in r)) at(invalid(`"key" is missing`));
    if (!("value" in r)) at(invalid(`"value" is missing`));
    try {
      const key = fromTagged(r.key, "key") as Key;
      const value = fromTagged(r.value, "value");
      // An expiring value is stored in its envelope, which the transaction's byte limit counts
      // too: without it, input just under the limit was sent to one transaction that failed with LIMIT.
      const envelope = r.expiresAtMs !== undefined ? ENVELOPE_HEADER_BYTES : 0;
      const size = encodeKey(key, KEY_BYTES_MAX).length + encodeValue(value, VALUE_BYTES_MAX).length + envelope;
      entries.push({ ns: r.ns as string, key, value, bytes: size, line: lineNo, ...(r.expiresAtMs !== undefined ? { expiresAtMs: r.expiresAtMs as number } : {}) });
      bytes += size;
    } catch (e) {
      at(e);
    }
    progress?.update(() => `checked ${entries.length} lines`);
  }
  return { entries, bytes, digest: digest.value };
}

/** True when the input is written in one transaction (rule 2). */
export function fitsOneTransaction(input: ImportInput): boolean {
  return input.entries.length <= TX_WRITES_MAX && input.bytes <= TX_BYTES_MAX;
}

/** The batches of rule 3 from entry `from` on: [start, end) index ranges. */
export function planBatches(entries: readonly { bytes: number }[], from = 0): [number, number][] {
  const out: [number, number][] = [];
  let done = from;
  while (done < entries.length) {
    let end = done;
    let batchBytes = 0;
    while (end < entries.length && end - done < BATCH_WRITES_MAX && (end === done || batchBytes + entries[end]!.bytes <= BATCH_BYTES_MAX)) {
      batchBytes += entries[end++]!.bytes;
    }
    out.push([done, end]);
    done = end;
  }
  return out;
}

/** True for a version as export writes it ({"$bigint": "<digits>"}), or a whole non-negative number. */
function isExportVersion(v: unknown): boolean {
  if (Number.isSafeInteger(v)) return (v as number) >= 0;
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  const digits = (v as Record<string, unknown>).$bigint;
  return keys.length === 1 && typeof digits === "string" && /^[0-9]{1,30}$/.test(digits);
}

/** Parses a stored marker; undefined when it is not one this version wrote. */
export function parseMarker(v: unknown): ImportMarker | undefined {
  if (v === null || typeof v !== "object") return undefined;
  const m = v as Record<string, unknown>;
  const whole = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  if (m.format !== 1 || typeof m.digest !== "string" || !whole(m.entries) || !whole(m.committedEntries) || !whole(m.committedLine)) return undefined;
  return { format: 1, digest: m.digest, entries: m.entries as number, committedEntries: m.committedEntries as number, committedLine: m.committedLine as number };
}

/**
 * The first entry to write, given the store's marker (rule 4). Throws INVALID_ARGUMENT
 * when the store holds an unfinished import and neither flag was given, when --resume
 * finds no marker, or when the input is not the interrupted import's.
 */
export function resumeFrom(marker: ImportMarker | undefined, input: ImportInput, flags: { resume: boolean; restart: boolean }): number {
  if (flags.restart) return 0;
  const lines = (m: ImportMarker) => `entries 1 to ${m.committedEntries} of ${m.entries} (input lines 1 to ${m.committedLine}) were committed`;
  if (!flags.resume) {
    if (!marker) return 0;
    throw invalid(
      `The store holds an unfinished import: ${lines(marker)}. Run \`txtdb import --resume\` with the same input to continue after line ${marker.committedLine}, ` +
        "or `txtdb import --restart` to write every line again",
    );
  }
  if (!marker) throw invalid("Nothing to resume: the store holds no unfinished import (it finished, or never started a second transaction). Run `txtdb import` without --resume");
  if (marker.digest !== input.digest || marker.entries !== input.entries.length) {
    throw invalid(
      `This input is not the unfinished import's (${input.entries.length} entries, digest ${input.digest}; it had ${marker.entries} entries, digest ${marker.digest}). ` +
        "Resume with the same input, or use --restart",
    );
  }
  const entry = input.entries[marker.committedEntries - 1];
  if (marker.committedEntries > 0 && entry?.line !== marker.committedLine) throw invalid("The unfinished import's marker does not match this input's lines; use --restart");
  return marker.committedEntries;
}

/** Reads the store's unfinished-import marker. */
export async function readMarker(db: Database): Promise<ImportMarker | undefined> {
  if (!(await db.listNamespaces()).includes(IMPORT_NS)) return undefined;
  return parseMarker(await db.get(IMPORT_NS, MARKER_KEY));
}

/** Writes checked input into an open store (rules 2 to 4); returns the summary line. */
export async function writeImport(db: Database, input: ImportInput, flags: { resume: boolean; restart: boolean }, progress: Progress): Promise<string> {
  const { entries } = input;
  const marker = await readMarker(db);
  const start = resumeFrom(marker, input, flags);
  const existing = new Set(await db.listNamespaces());
  // Another process may create the same namespace meanwhile (another import, the application):
  // that is what was wanted, not a reason to fail with NAMESPACE_EXISTS.
  const ensure = async (ns: string) => {
    try {
      await db.createNamespace(ns);
    } catch (e) {
      if (!(e instanceof TxtDbError && e.code === "NAMESPACE_EXISTS")) throw e;
    }
  };
  for (const ns of new Set(entries.map((e) => e.ns))) if (!existing.has(ns)) await ensure(ns);
  const clock = databaseInternals(db).platform;
  let expired = 0;
  const expiredNote = () => (expired > 0 ? `; ${expired} had expired already (expiresAtMs past) and were left out` : "");
  if (!marker && fitsOneTransaction(input)) {
    expired = await db.transaction((tx) => putAll(tx, entries, 0, entries.length, () => clock.wallClockMs()));
    return `imported ${entries.length} entries in one transaction${expiredNote()}`;
  }
  if (!existing.has(IMPORT_NS)) await ensure(IMPORT_NS);
  const batches = planBatches(entries, start);
  if (start > 0) progress.step(`resuming after input line ${entries[start - 1]!.line} (${start} of ${entries.length} entries were committed)`);
  // Each batch reads the marker in its own (serializable) transaction and goes on only if it
  // is the one this import left (or found, before its first batch): two imports run at once
  // into one store otherwise both passed rule 4's check at the start and then interleaved
  // their batches, writing lines twice and, with different inputs, a mixture of both; the
  // one that lost then failed with a NAMESPACE_NOT_FOUND about "txtdb.import".
  let expect = marker;
  let raced: TxtDbError | undefined;
  const lostRace = (from: number, found: string) =>
    (raced = new TxtDbError(
      "INVALID_ARGUMENT",
      `Another import is writing this store at the same time (the import marker ${found}), so this one stopped: ` +
        `${from === start ? "this run wrote nothing" : `entries ${start + 1} to ${from} of this input are written`}. ` +
        "Wait for the other import to end, then run this one again (`--resume` if the store holds an unfinished import, `--restart` to write every line again)",
    ));
  for (const [from, to] of batches) {
    const last = entries[to - 1]!;
    const next: ImportMarker = { format: 1, digest: input.digest, entries: entries.length, committedEntries: to, committedLine: last.line };
    try {
      expired += await db.transaction(async (tx) => {
        let now: ImportMarker | undefined;
        try {
          now = parseMarker(await tx.get(IMPORT_NS, MARKER_KEY));
        } catch (e) {
          if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") throw lostRace(from, "was removed: the other import ended");
          throw e;
        }
        if (JSON.stringify(now) !== JSON.stringify(expect)) throw lostRace(from, now ? `says ${now.committedEntries} of ${now.entries} entries of input ${now.digest}` : "is gone");
        tx.set(IMPORT_NS, MARKER_KEY, next);
        return putAll(tx, entries, from, to, () => clock.wallClockMs());
      });
      expect = next;
    } catch (e) {
      if (e === raced) throw e;
      const written = from === 0 ? "nothing was written" : `entries 1 to ${from} (input lines 1 to ${entries[from - 1]!.line}) are written`;
      const why = e instanceof TxtDbError ? `${e.code}: ${e.message}` : String(e);
      throw new TxtDbError(
        e instanceof TxtDbError ? e.code : "IO",
        `import failed at input line ${entries[from]!.line} (${why}); ${written}, the rest is not. ` +
          (from === 0 ? "Run the import again" : "Fix the cause and run `txtdb import --resume` with the same input to continue"),
        { cause: e },
      );
    }
    progress.step(`committed input lines ${entries[from]!.line} to ${last.line} (${to} of ${entries.length} entries)`);
  }
  // The last batch's marker says "all committed"; dropping it ends the import (a crash just
  // before leaves a marker that --resume finishes at once).
  await db.dropNamespace(IMPORT_NS);
  const resumed = start > 0 ? `, resumed after ${start} entries,` : "";
  return `imported ${entries.length} entries${resumed} in ${batches.length} transactions (more than one transaction's limits: ${TX_WRITES_MAX} entries, ${TX_BYTES_MAX / 1024 / 1024} MiB)${expiredNote()}`;
}

/**
 * Writes entries `from` to `to` into `tx`; an expiring one keeps its absolute expiry (the
 * time left, from the clock read just before its own set(), which counts `expireIn` from
 * its own clock read: one clock read for the whole batch made the last entries of a large
 * import expire later than their line said, by the time encoding the batch took, 0.6 s for
 * 100 000 entries). Returns how many were left out because they had expired: they read as
 * absent in the source too, so importing them would bring them back.
 */
function putAll(tx: Transaction, entries: readonly ImportEntry[], from: number, to: number, nowMs: () => number): number {
  let expired = 0;
  for (let i = from; i < to; i++) {
    const e = entries[i]!;
    if (e.expiresAtMs === undefined) {
      tx.set(e.ns, e.key, e.value);
      continue;
    }
    const now = nowMs();
    if (e.expiresAtMs <= now) expired++;
    else tx.set(e.ns, e.key, e.value, { expireIn: e.expiresAtMs - now });
  }
  return expired;
}
