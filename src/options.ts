/**
 * Options of `open()` and of transactions: their types, their defaults (all in
 * {@link resolveOptions}), and the checks that turn a bad option or argument into
 * INVALID_ARGUMENT before anything is done.
 *
 * @module
 */
import { describeInput, TxtDbError } from "./errors.ts";
import { isWellFormedString } from "./keys.ts";
import type { Key } from "./keys.ts";
import { didYouMean } from "./spelling.ts";
import type { Platform } from "./port.ts";
import type { Isolation, Limits } from "./tx.ts";
import { WATCH_BUFFER_BYTES_DEFAULT } from "./watch.ts";

/** Durability modes. */
export type Durability = "full" | "relaxed" | "none";

/** Options of {@link open}. */
export interface OpenOptions {
  /** "full" (default): a commit resolves after fsync; "relaxed": fsync at most `relaxedSyncMs` later; "none": no fsync. */
  durability?: Durability;
  /** Default isolation of transactions: "serializable" (default) or "snapshot". */
  isolation?: Isolation;
  /** Open without writing anything; writes fail with READ_ONLY. */
  readOnly?: boolean;
  /** Namespaces to create if missing, atomically with the open. */
  namespaces?: string[];
  /** The Platform to use instead of the one for this runtime (tests use the simulated one). */
  adapter?: Platform;
  /** Permission bits of created files (default 0o600; directories get the matching x bits). */
  mode?: number;
  /**
   * Open a store directory that belongs to another user (default false: refused, root
   * included, since whoever owns a directory can replace its files). Only for a directory
   * whose owner you trust as much as yourself, e.g. a store shared within a group.
   */
  allowForeignOwner?: boolean;
  /** With durability "relaxed": the most a commit's fsync may lag, in ms (default 50). */
  relaxedSyncMs?: number;
  /** How long to wait for the writer lock before LOCK_TIMEOUT, in ms (default 30 000). */
  lockTimeoutMs?: number;
  /** Start a new log segment past this size, in bytes (default 16 MiB). */
  segmentBytes?: number;
  /**
   * Bytes of table blocks this process keeps in memory, shared by every table of the store
   * (default 64 MiB; 0: none, every read goes to the file).
   */
  cacheBytes?: number;
  /** Largest encoded key, in bytes (default 2 KiB). */
  maxKeyBytes?: number;
  /** Largest encoded value, in bytes (default 16 MiB). */
  maxValueBytes?: number;
  /** Largest transaction, in bytes of keys and values (default 64 MiB). */
  maxTxBytes?: number;
  /** Most keys one transaction may write (default 100 000). */
  maxTxWrites?: number;
  /** Most watchers open at once on this database (default 1 000). */
  maxWatchers?: number;
  /** Events a watcher buffers before WATCH_OVERFLOW (default 10 000). */
  watchBufferMax?: number;
  /** Bytes of changes a watcher buffers before WATCH_OVERFLOW (default 64 MiB). */
  watchBufferBytes?: number;
  /** How often watchers poll when the adapter has no file events, in ms (default 10). */
  watchPollMs?: number;
  /**
   * Compact automatically once sealed log segments exceed this many bytes (default 32 MiB;
   * 0: never). Commits not yet folded stay in every process's memory, so this bounds it.
   */
  autoCompactBytes?: number;
  /**
   * A snapshot or transaction unused for this long is released with a warning, so a leaked
   * one cannot pin old versions forever (default 10 minutes; 0: never).
   */
  maxIdleMs?: number;
  /**
   * etcd:// locations only: the bound on every request to the cluster, in ms (default
   * 5 000). Past it, with no quorum or no member answering, the call fails with UNAVAILABLE.
   */
  requestTimeoutMs?: number;
  /** etcd:// locations only: the user to authenticate as (with `password`). */
  username?: string;
  /** etcd:// locations only: the password of `username`. */
  password?: string;
}

/** Options that only mean something for an etcd:// location. */
export const ETCD_ONLY_OPTIONS = ["requestTimeoutMs", "username", "password"] as const;

/** Options of {@link Database.transaction} and {@link Database.begin}. */
export interface TransactionOptions {
  /** "serializable" or "snapshot" (default: the database's `isolation` option). */
  isolation?: Isolation;
  /** Reruns on CONFLICT (default 10). */
  maxRetries?: number;
  /** Ends the whole transaction (all attempts) with TIMEOUT after this many ms. */
  timeoutMs?: number;
  /** Ends the transaction with TIMEOUT when aborted. */
  signal?: AbortSignal;
}

/** Every option of {@link OpenOptions} with its default filled in (see {@link resolveOptions}). */
export interface Settings {
  readOnly: boolean;
  limits: Limits;
  mode: number;
  durability: Durability;
  isolation: Isolation;
  relaxedSyncMs: number;
  lockTimeoutMs: number;
  segmentBytes: number;
  cacheBytes: number;
  autoCompactBytes: number;
  maxIdleMs: number;
  watchPollMs: number;
  watchBufferMax: number;
  watchBufferBytes: number;
  maxWatchers: number;
}

/** The defaults of every option, in one place. */
export function resolveOptions(options: OpenOptions): Settings {
  return {
    readOnly: options.readOnly === true,
    limits: {
      maxKeyBytes: options.maxKeyBytes ?? 2048,
      maxValueBytes: options.maxValueBytes ?? 16 * 1024 * 1024,
      maxTxBytes: options.maxTxBytes ?? 64 * 1024 * 1024,
      maxTxWrites: options.maxTxWrites ?? 100_000,
    },
    mode: options.mode ?? 0o600,
    durability: options.durability ?? "full",
    isolation: options.isolation ?? "serializable",
    relaxedSyncMs: options.relaxedSyncMs ?? 50,
    lockTimeoutMs: options.lockTimeoutMs ?? 30_000,
    segmentBytes: options.segmentBytes ?? 16 * 1024 * 1024,
    cacheBytes: options.cacheBytes ?? 64 * 1024 * 1024,
    autoCompactBytes: options.autoCompactBytes ?? 32 * 1024 * 1024,
    maxIdleMs: options.maxIdleMs ?? 10 * 60 * 1000,
    watchPollMs: options.watchPollMs ?? 10,
    watchBufferMax: options.watchBufferMax ?? 10_000,
    watchBufferBytes: options.watchBufferBytes ?? WATCH_BUFFER_BYTES_DEFAULT,
    maxWatchers: options.maxWatchers ?? 1000,
  };
}

/** A directory's mode for files of `mode`: x wherever r is (0o600 → 0o700, 0o640 → 0o750). */
export function dirModeOf(mode: number): number {
  return mode | ((mode & 0o444) >> 2);
}

const NAMESPACE_NAME_MAX = 256;

/**
 * What was given where an options object was expected, for the message: describeInput's
 * words, but an array is named as one (an empty array passed every check as "no options",
 * where set() and list() refuse it; describeInput would show it as "[]").
 */
export function describeOptions(x: unknown): string {
  return Array.isArray(x) ? "an array" : describeInput(x);
}

/** An INVALID_ARGUMENT error with `message`. */
export function invalidArg(message: string): TxtDbError {
  return new TxtDbError("INVALID_ARGUMENT", message);
}

/** Smallest `segmentBytes`: below it every commit would start a new file. */
const SEGMENT_BYTES_MIN = 256;
/** Options that are durations: `Infinity` means "never". */
const DURATION_OPTIONS = new Set(["lockTimeoutMs", "maxIdleMs", "relaxedSyncMs", "watchPollMs"]);
/** Options that count bytes or items: positive integers. */
const SIZE_OPTIONS = ["segmentBytes", "maxKeyBytes", "maxValueBytes", "maxTxBytes", "maxTxWrites", "maxWatchers", "watchBufferMax", "watchBufferBytes"] as const;
/** The Platform members open() relies on; an `adapter` lacking one is refused up front. */
const PLATFORM_FUNCTIONS = ["open", "stat", "readdir", "mkdir", "rename", "unlink", "syncDir", "monotonicMs", "wallClockMs", "sleep", "randomBytes", "watchDir"] as const;

/** Every option of {@link OpenOptions}: the record makes the compiler ask for a new one here. */
const OPEN_OPTIONS: Record<keyof OpenOptions, true> = {
  durability: true, isolation: true, readOnly: true, namespaces: true, adapter: true, mode: true,
  allowForeignOwner: true, relaxedSyncMs: true, lockTimeoutMs: true, segmentBytes: true, cacheBytes: true,
  maxKeyBytes: true, maxValueBytes: true, maxTxBytes: true, maxTxWrites: true, maxWatchers: true,
  watchBufferMax: true, watchBufferBytes: true, watchPollMs: true, autoCompactBytes: true, maxIdleMs: true,
  requestTimeoutMs: true, username: true, password: true,
};
/** Every option of {@link TransactionOptions}. */
const TRANSACTION_OPTIONS: Record<keyof TransactionOptions, true> = { isolation: true, maxRetries: true, timeoutMs: true, signal: true };

/**
 * INVALID_ARGUMENT for an option of `options` that `what` does not have. A misspelt option
 * (`timeoutMS`, `isolaton`) would otherwise be ignored, and the caller would believe a
 * timeout or an isolation applies that does not. The message names the known options and,
 * when one is close, the one probably meant.
 */
export function checkKnownOptions(what: string, options: object, known: readonly string[]): void {
  let names: string[];
  try {
    names = Object.keys(options);
  } catch (e) {
    // A Proxy whose ownKeys trap throws: its error would escape raw.
    throw new TxtDbError("INVALID_ARGUMENT", `${what}: its options object could not be read (${thrownText(e)}); pass a plain object`, { cause: e });
  }
  for (const name of names) if (!known.includes(name)) throw unknownOption(what, name, known);
}

/** INVALID_ARGUMENT for option `name`, which `what` does not have (with the nearest known one). */
function unknownOption(what: string, name: string, known: readonly string[]): TxtDbError {
  const near = didYouMean(name, known);
  return invalidArg(`${what} has no option ${JSON.stringify(name)}${near === undefined ? "" : ` (did you mean ${near}?)`}; its options are ${known.join(", ")}`);
}

/**
 * {@link checkKnownOptions} and {@link readFields} in one pass: the options `options`,
 * each of `known` read once, an unknown one refused as checkKnownOptions does.
 */
export function readKnownOptions(what: string, options: object, known: readonly string[]): Record<string, unknown> {
  return readFields(what, options, known, (name) => unknownOption(what, name, known));
}

/** Checks `open()` options; INVALID_ARGUMENT for the first bad one. */
export function checkOptions(o: OpenOptions): void {
  if (o === null || typeof o !== "object" || Array.isArray(o)) throw invalidArg(`open() options must be an object such as { namespaces: ["app"] }; got ${describeOptions(o)}`);
  checkKnownOptions("open()", o, Object.keys(OPEN_OPTIONS));
  for (const name of ["readOnly", "allowForeignOwner"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "boolean") {
      throw invalidArg(`Option ${name} must be true or false; got ${describeInput(o[name])}`);
    }
  }
  if (o.mode !== undefined && (!Number.isInteger(o.mode) || o.mode < 0 || o.mode > 0o777 || (o.mode & 0o600) !== 0o600)) {
    throw invalidArg(`Option mode must be permission bits between 0o600 and 0o777 that include owner read and write (no setuid, setgid or sticky bits); got ${typeof o.mode === "number" ? "0o" + o.mode.toString(8) : describeInput(o.mode)}`);
  }
  if (o.adapter !== undefined) {
    const a = o.adapter as unknown as Record<string, unknown> | null;
    const missing = a === null || typeof a !== "object" ? ["(not an object)"] : PLATFORM_FUNCTIONS.filter((f) => typeof a[f] !== "function");
    if (missing.length > 0) throw invalidArg(`Option adapter must be a Platform (see txtdb/internal); it lacks ${missing.join(", ")}`);
  }
  for (const name of SIZE_OPTIONS) {
    const v = (o as Record<string, unknown>)[name];
    if (v !== undefined && (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1)) {
      throw invalidArg(`Option ${name} must be a positive integer; got ${describeInput(v)}`);
    }
  }
  if (o.segmentBytes !== undefined && o.segmentBytes < SEGMENT_BYTES_MIN) {
    throw invalidArg(`Option segmentBytes must be at least ${SEGMENT_BYTES_MIN}; got ${o.segmentBytes}`);
  }
  const oneOf = (name: string, v: unknown, allowed: string[]) => {
    if (v !== undefined && !allowed.includes(v as string)) {
      throw invalidArg(`Option ${name} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}; got ${describeInput(v)}`);
    }
  };
  oneOf("durability", o.durability, ["full", "relaxed", "none"]);
  if (o.requestTimeoutMs !== undefined && !(typeof o.requestTimeoutMs === "number" && Number.isFinite(o.requestTimeoutMs) && o.requestTimeoutMs > 0)) {
    throw invalidArg(`Option requestTimeoutMs must be a positive number of milliseconds; got ${describeInput(o.requestTimeoutMs)}`);
  }
  for (const name of ["username", "password"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "string") throw invalidArg(`Option ${name} must be a string; got ${typeof o[name]}`);
  }
  oneOf("isolation", o.isolation, ["serializable", "snapshot"]);
  if (o.cacheBytes !== undefined && (typeof o.cacheBytes !== "number" || !Number.isSafeInteger(o.cacheBytes) || o.cacheBytes < 0)) {
    throw invalidArg(`Option cacheBytes must be a non-negative integer (bytes of table blocks to keep in memory; 0: none); got ${describeInput(o.cacheBytes)}`);
  }
  for (const name of ["relaxedSyncMs", "lockTimeoutMs", "watchPollMs", "autoCompactBytes", "maxIdleMs"] as const) {
    const v = o[name];
    const ok = typeof v === "number" && v >= 0 && (Number.isFinite(v) || (v === Infinity && DURATION_OPTIONS.has(name)));
    if (v !== undefined && !ok) {
      throw invalidArg(`Option ${name} must be a non-negative number${DURATION_OPTIONS.has(name) ? " of milliseconds (Infinity: never)" : ""}; got ${describeInput(v)}`);
    }
  }
  if (o.namespaces !== undefined && !Array.isArray(o.namespaces)) throw invalidArg("Option namespaces must be an array of names");
  for (const n of o.namespaces ?? []) checkNamespaceName(n);
}

/** A namespace name that can be stored as given, or INVALID_ARGUMENT. */
export function checkNamespaceName(name: unknown): asserts name is string {
  if (typeof name !== "string" || name.length === 0 || name.length > NAMESPACE_NAME_MAX) {
    throw invalidArg(`Namespace name must be a non-empty string of at most ${NAMESPACE_NAME_MAX} characters; got ${describeInput(name)}`);
  }
  checkNotReserved(name);
  // Names are stored as UTF-8: a lone surrogate would be stored as U+FFFD, under another
  // name than the one asked for, and processes would disagree about which namespace it is.
  if (!isWellFormedString(name)) {
    throw invalidArg(`Namespace name ${JSON.stringify(name)} contains a lone surrogate (half of a UTF-16 pair), which cannot be stored as UTF-8; use well-formed Unicode`);
  }
}

/** The prefix of txtdb's own namespace names: U+0000 then "txtdb.". */
export const RESERVED_NAMESPACE_PREFIX = "\u0000txtdb.";

/**
 * Namespace names starting with {@link RESERVED_NAMESPACE_PREFIX} are txtdb's own (the
 * queues live in one): users cannot create, read, write or watch them, and
 * listNamespaces() leaves them out. Other names starting with U+0000 stay the users'.
 */
export function isReservedNamespace(name: string): boolean {
  return name.startsWith(RESERVED_NAMESPACE_PREFIX);
}

/** INVALID_ARGUMENT for a reserved namespace name (see {@link isReservedNamespace}). */
export function checkNotReserved(name: string): void {
  if (isReservedNamespace(name)) {
    throw invalidArg(`Namespace name ${JSON.stringify(name)} is reserved: names starting with U+0000 and "txtdb." belong to txtdb itself (queues); choose another name`);
  }
}

/**
 * The checks of `db.transaction(fn, options)`, shared by both engines and by
 * `coord.transaction()` (named by `what`); returns the settings with their defaults.
 */
export function checkTransactionOptions(fn: unknown, options: TransactionOptions, what = "transaction()", fnName = `${what}'s argument`): { isolation: Isolation | undefined; maxRetries: number; timeoutMs: number | undefined; signal: AbortSignal | undefined } {
  checkFunction(fnName, fn);
  if (options === null || typeof options !== "object" || Array.isArray(options)) throw invalidArg(`${what} options must be an object such as { maxRetries: 10 }; got ${describeOptions(options)}`);
  // Each option read once (a getter that throws is INVALID_ARGUMENT, and one that answers
  // differently at each read cannot pass the checks with one value and run with another).
  const o = readKnownOptions(what, options, Object.keys(TRANSACTION_OPTIONS));
  checkIsolation(o.isolation);
  checkSignal(o.signal);
  const maxRetries = o.maxRetries ?? 10;
  if (!Number.isInteger(maxRetries) || (maxRetries as number) < 0) throw invalidArg(`maxRetries must be a non-negative integer; got ${describeInput(maxRetries)}`);
  // A number, not just anything `>= 0` accepts: a string "5" passed that test, and the
  // deadline became a string concatenation (now + "5") that fired at once.
  if (o.timeoutMs !== undefined && !(typeof o.timeoutMs === "number" && o.timeoutMs >= 0)) {
    throw invalidArg(`timeoutMs must be a non-negative number of milliseconds; got ${describeInput(o.timeoutMs)}`);
  }
  return { isolation: o.isolation as Isolation | undefined, maxRetries: maxRetries as number, timeoutMs: o.timeoutMs as number | undefined, signal: o.signal as AbortSignal | undefined };
}

/** A function, or INVALID_ARGUMENT. */
export function checkFunction(what: string, f: unknown): void {
  if (typeof f !== "function") throw invalidArg(`${what} must be a function; got ${f === null ? "null" : typeof f}`);
}

/** What a thrown value says, for a message (never throws itself). */
function thrownText(e: unknown): string {
  try {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } catch {
    return "a value that cannot be shown";
  }
}

/**
 * The fields of an options object `o` (an object), each read once: the caller then works
 * from this copy, so that a getter runs once and a value cannot change between its check
 * and its use. A field not in `allowed` is `unknown(field)`; a getter (or a Proxy) that
 * throws is INVALID_ARGUMENT naming the field, with the thrown error as its cause, never
 * the raw error. Fields left undefined are absent from the copy.
 *
 * @example
 * ```ts
 * const o = readFields("enqueue()", options, ["delayMs"], (k) => invalidArg(`unknown option ${k}`));
 * ```
 */
export function readFields(what: string, o: object, allowed: readonly string[], unknown: (field: string) => TxtDbError): Record<string, unknown> {
  let keys: string[];
  try {
    keys = Object.keys(o);
  } catch (e) {
    throw new TxtDbError("INVALID_ARGUMENT", `${what}: its options object could not be read (${thrownText(e)}); pass a plain object`, { cause: e });
  }
  for (const k of keys) if (!allowed.includes(k)) throw unknown(k);
  const out: Record<string, unknown> = {};
  for (const k of allowed) {
    let v: unknown;
    try {
      v = (o as Record<string, unknown>)[k];
    } catch (e) {
      throw new TxtDbError("INVALID_ARGUMENT", `${what}: reading option ${JSON.stringify(k)} threw (${thrownText(e)}); pass plain values, not getters that throw`, { cause: e });
    }
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** An AbortSignal (or undefined), or INVALID_ARGUMENT. */
export function checkSignal(signal: unknown): void {
  if (signal === undefined) return;
  if (!isSignalLike(signal)) throw invalidArg(`signal must be an AbortSignal; got ${describeInput(signal)}`);
}

/**
 * True for an object that reads as an AbortSignal (`aborted` a boolean, `addEventListener`
 * a function). An object whose getters throw is not one: its error would otherwise escape
 * raw, at the check or later, from inside an operation.
 */
export function isSignalLike(signal: unknown): boolean {
  if (signal === null || typeof signal !== "object") return false;
  try {
    const s = signal as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown };
    return typeof s.aborted === "boolean" && typeof s.addEventListener === "function" && typeof s.removeEventListener === "function";
  } catch {
    return false;
  }
}

/**
 * The checks of `db.begin(options)`, shared by both engines; returns the isolation asked
 * for (undefined: the database's).
 */
export function checkBeginOptions(options: { isolation?: Isolation }): Isolation | undefined {
  // null used to fail with a TypeError reading its isolation.
  if (options === null || typeof options !== "object" || Array.isArray(options)) throw invalidArg(`begin() options must be an object such as { isolation: "snapshot" }; got ${describeOptions(options)}`);
  checkKnownOptions("begin()", options, ["isolation"]);
  checkIsolation(options.isolation);
  return options.isolation;
}

/** "serializable", "snapshot" or undefined (the default), or INVALID_ARGUMENT. */
export function checkIsolation(isolation: unknown): void {
  if (isolation !== undefined && isolation !== "serializable" && isolation !== "snapshot") {
    throw invalidArg(`isolation must be "serializable" or "snapshot"; got ${describeInput(isolation)}`);
  }
}

/** Options of `db.watch()`. */
export interface WatchOptions {
  /** Events for versions after this one (exclusive), from the history the store still holds. */
  fromVersion?: bigint;
  /** Aborting it ends the watcher as `return()` does. */
  signal?: AbortSignal;
}

/**
 * INVALID_ARGUMENT for a watch() `fromVersion` past the newest version of the store (read
 * fresh, so every commit that resolved anywhere is counted): no version of this store it
 * is. It comes from another store, or from this one before it was restored from an older
 * backup; waiting for it would skip, without a word, every commit up to it.
 */
export function fromVersionAhead(fromVersion: bigint, newest: bigint): TxtDbError {
  return invalidArg(`watch() fromVersion ${fromVersion} is past this store's newest version ${newest}, so it is no version of this store: it comes from another store, or from before this one was restored from an older backup. Resume from a version this store reported (an event's or a commit's), or leave fromVersion out to watch from now`);
}

/**
 * The checks of `db.watch()`'s selector and options, shared by both engines, so that a call
 * one engine refuses is not quietly taken by the other: options must be an object of known
 * options, and the selector must have exactly one of keys and prefix and nothing else (a
 * `fromVersion` put in the selector by mistake used to be ignored). Returns copies, each
 * field read once (a getter that throws is INVALID_ARGUMENT, not its error): the engines
 * work from them.
 */
export function checkWatchArguments(sel: unknown, opts: WatchOptions): { sel: { keys: Key[] } | { prefix: Key | readonly never[] }; opts: WatchOptions } {
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) throw invalidArg(`watch() options must be an object such as { fromVersion: 0n }; got ${describeOptions(opts)}`);
  const o = readKnownOptions("watch()", opts, ["fromVersion", "signal"]) as WatchOptions;
  checkSignal(o.signal);
  if (sel === null || typeof sel !== "object" || ("keys" in sel) === ("prefix" in sel)) {
    throw invalidArg(`watch() needs { keys: [...] } or { prefix } (one of them); got ${sel === null || typeof sel !== "object" ? String(sel) : `an object with ${"keys" in sel ? "both" : "neither"}`}`);
  }
  const keyed = "keys" in sel;
  const s = readFields("watch() selector", sel, ["keys", "prefix"], (name) => invalidArg(`watch() selector has no field ${JSON.stringify(name)}; a selector is { keys: [...] } or { prefix }${name === "fromVersion" || name === "signal" ? ` (${name} goes in the options, the third argument)` : ""}`));
  if (o.fromVersion !== undefined && (typeof o.fromVersion !== "bigint" || o.fromVersion < 0n)) {
    throw invalidArg(`watch() fromVersion must be a non-negative bigint; got ${String(o.fromVersion)}`);
  }
  if (keyed && !Array.isArray(s.keys)) throw invalidArg("watch() keys must be an array of keys");
  return { sel: keyed ? { keys: s.keys as Key[] } : { prefix: s.prefix as Key }, opts: o };
}
