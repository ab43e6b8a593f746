/**
 * Saga definitions: the public types of sagas (steps, retry policies, what a step receives,
 * what `result()`, `list()` and `watch()` give back), the checks a definition passes, and the
 * retry delays. Pure: no store, no clock (the caller passes the time and the random number).
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { isWellFormedString, toWellFormedString } from "./keys.ts";
import { readFields } from "./options.ts";

/**
 * How often a step (or its compensation) is tried and how long to wait between tries.
 * Every field is optional in a step's `retry`; missing ones come from the `retry` of
 * {@link SagasOptions} (default `{ attempts: 3, minDelayMs: 1_000, maxDelayMs: 30_000 }`).
 */
export interface RetryPolicy {
  /** Tries in all, the first included (3: the first and two retries). An integer from 1 to 1000. */
  attempts: number;
  /** The delay before the first retry, in ms; later ones double (with jitter) up to `maxDelayMs`. */
  minDelayMs: number;
  /** The longest delay between two tries, in ms (at least `minDelayMs`). */
  maxDelayMs: number;
}

/** What a step's `run` and `compensate` receive besides the saga's input. */
export interface SagaContext {
  /** The saga's id (what `start()` returned). */
  readonly sagaId: string;
  /** The saga's name, as given to `define()`. */
  readonly saga: string;
  /** The step's name. */
  readonly step: string;
  /** `"run"` while the step runs, `"compensate"` while it is undone. */
  readonly phase: "run" | "compensate";
  /** This try's number, from 1 (a try cut short by the death of its process counts too). */
  readonly attempt: number;
  /**
   * `"<sagaId>/<step>"`, the same for every try of the step's run and of its compensation:
   * pass it to outside services so that a step run twice (after a crash) acts once.
   */
  readonly idempotencyKey: string;
  /**
   * The outputs of the steps completed so far, by step name (a copy: changing it changes
   * nothing stored). While compensating, the step's own output is there too, unless it
   * could not be stored (see {@link SagaStep.run}).
   */
  readonly results: Readonly<Record<string, unknown>>;
  /** Aborted when the {@link Sagas} handle closes: a long step may stop early (it is tried again elsewhere). */
  readonly signal: AbortSignal;
}

/** One step of a saga, for {@link Sagas.define}. */
export interface SagaStep<I = unknown> {
  /** Unique within the saga; names the step's output in `result().output`. */
  name: string;
  /**
   * Does the step's work; what it returns (anything a value may be) is stored as its output.
   * An output that cannot be stored (not a value, or too big for the saga's record) is not
   * retried, since the run returned and its effect happened: the saga fails with
   * INVALID_VALUE and compensates, this step's own compensation first.
   */
  run: (input: I, ctx: SagaContext) => unknown;
  /** Undoes the step, once it completed, when a later step fails for good. Optional. */
  compensate?: (input: I, ctx: SagaContext) => unknown;
  /** The step's retry policy (missing fields from the handle's default). */
  retry?: Partial<RetryPolicy>;
  /** The compensation's retry policy (default: the step's `retry`). */
  compensateRetry?: Partial<RetryPolicy>;
}

/** The state of a saga. The last three are final. */
export type SagaStatus = "running" | "compensating" | "completed" | "compensated" | "failed";

/** How a step (or compensation) failed, as stored: errors become plain data. */
export interface SagaFailure {
  /** The step whose run or compensation failed. */
  step: string;
  /** Which of the two failed. */
  phase: "run" | "compensate";
  /** Tries made. */
  attempts: number;
  /** The error's `name` ("Error", "TypeError", "TxtDbError", ...). */
  name: string;
  /** The error's message (or the thrown value as text), at most 4,096 characters (a longer one is cut, ending with "…"). */
  message: string;
  /** The error's `code` when it had a string one (a TxtDbError's code, an errno). */
  code?: string;
}

/** What {@link Sagas.result} resolves with once the saga has ended. */
export interface SagaResult {
  /** `completed`: every step ran; `compensated`: a step failed and the completed ones were undone; `failed`: a compensation failed too (needs a person). */
  status: "completed" | "compensated" | "failed";
  /** The outputs of the steps that completed, by step name (all of them when `completed`). */
  output?: Record<string, unknown>;
  /** The failure that made the saga compensate (absent when `completed`). */
  error?: SagaFailure;
  /** The compensations that failed after their retries (present, non-empty, only when `failed`). */
  compensationErrors?: SagaFailure[];
}

/** One saga as {@link Sagas.list} and {@link Sagas.watch} show it. */
export interface SagaInfo {
  /** The saga's id. */
  id: string;
  /** Its definition's name. */
  name: string;
  /** Where it stands. */
  status: SagaStatus;
  /** The step being run or compensated (or waiting for its next try); null once the saga has ended. */
  step: string | null;
  /** Tries started on that step (or compensation) so far. */
  attempts: number;
  /** When the saga last changed (wall clock, ms since the epoch). */
  updatedAtMs: number;
  /** When it was started. */
  createdAtMs: number;
  /** The key given to `start()`, or null. */
  idempotencyKey: string | null;
  /** When the next try is due while it waits between tries (wall clock), else null. */
  nextAttemptAtMs: number | null;
  /** The process running it now (claimed, its lease alive or not yet found dead), else null. */
  runner: { pid: number; runtime: string } | null;
}

/** An event of {@link Sagas.watch}: a saga as the commit at `version` left it. */
export interface SagaEvent extends SagaInfo {
  /** The commit that changed the saga (resume with `fromVersion` to miss nothing). */
  version: bigint;
}

/** Options of {@link Sagas.open}. */
export interface SagasOptions {
  /** The namespace that holds the sagas' state (created if missing). Default `"sagas"`. */
  namespace?: string;
  /** The default retry policy of steps and compensations (default 3 tries, 1 s to 30 s). */
  retry?: Partial<RetryPolicy>;
  /** A saga whose runner died is taken over within this many ms of the death (default 5 000). */
  resumeAfterMs?: number;
  /** Sagas this handle runs at once, at most (default 16). */
  concurrency?: number;
}

/** Options of {@link Sagas.start}. */
export interface SagaStartOptions {
  /**
   * One key, one saga: starting again with it (from any process) returns the first saga's id.
   * At most 1024 bytes in UTF-8 (1024 ASCII characters, fewer of others).
   */
  idempotencyKey?: string;
}

/** Options of {@link Sagas.result}. */
export interface SagaResultOptions {
  /** Give up with TIMEOUT after this many ms (default: wait as long as it takes). */
  timeoutMs?: number;
  /** Give up with TIMEOUT when this signal aborts. */
  signal?: AbortSignal;
}

/** What {@link Sagas.list} selects. */
export interface SagaListFilter {
  /** Only sagas in this state. */
  status?: SagaStatus;
  /** Only sagas of this definition. */
  name?: string;
  /** At most this many (oldest first). */
  limit?: number;
}

/** What {@link Sagas.watch} selects. */
export interface SagaWatchFilter {
  /** Only this saga. */
  id?: string;
  /** Only sagas of this definition. */
  name?: string;
  /** Events for commits after this version (exclusive), as `db.watch`. */
  fromVersion?: bigint;
  /** Ends the iteration (as `return()`). */
  signal?: AbortSignal;
}

/** The default retry policy: the figures of the plans txtdb descends from. */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 3, minDelayMs: 1_000, maxDelayMs: 30_000 });
/** Tries of one step, at most: a bound on any retry loop. */
export const ATTEMPTS_MAX = 1_000;
/** Steps of one saga, at most. */
export const STEPS_MAX = 1_000;
/** Characters of a saga or step name, at most. */
export const NAME_CHARS_MAX = 256;
/**
 * Bytes (UTF-8) of an idempotency key, at most: bytes, as the store's key check counts
 * them (the key is part of a store key), so that a key of many-byte characters is refused
 * by this check, with its message, not later by the store's.
 */
export const IDEMPOTENCY_KEY_BYTES_MAX = 1_024;
/** Characters of a {@link SagaFailure}'s message, at most. */
export const MESSAGE_CHARS_MAX = 4_096;
/** The longest delay a policy may ask, in ms (about 24.8 days: what a timer can take). */
export const DELAY_MS_MAX = 2 ** 31 - 1;

/** A checked step, its policies complete. */
export interface StepDef {
  name: string;
  run: (input: unknown, ctx: SagaContext) => unknown;
  compensate: ((input: unknown, ctx: SagaContext) => unknown) | undefined;
  retry: RetryPolicy;
  compensateRetry: RetryPolicy;
}

/** A checked definition. */
export interface SagaDef {
  name: string;
  steps: StepDef[];
  stepNames: string[];
}

export function invalid(message: string): TxtDbError {
  return new TxtDbError("INVALID_ARGUMENT", message);
}

function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? v.slice(0, 80) + "…" : v);
  if (typeof v === "function") return "a function";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return String(v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks a saga (or step) name: a non-empty string of well-formed Unicode, at most {@link NAME_CHARS_MAX} characters. */
export function checkName(what: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > NAME_CHARS_MAX || !isWellFormedString(name)) {
    throw invalid(`${what} must be a non-empty string of well-formed Unicode (no lone surrogates), at most ${NAME_CHARS_MAX} characters; got ${show(name)}`);
  }
  return name;
}

const POLICY_FIELDS = ["attempts", "minDelayMs", "maxDelayMs"];

/** `over` on top of `base`, checked: a complete policy, or INVALID_ARGUMENT naming `where`. */
export function resolvePolicy(where: string, over: unknown, base: RetryPolicy): RetryPolicy {
  if (over === undefined) return base;
  if (!isPlainObject(over)) throw invalid(`${where} must be an object { attempts?, minDelayMs?, maxDelayMs? }; got ${show(over)}`);
  // Each field read once (a getter that throws is INVALID_ARGUMENT): the checks below use the copy.
  const o = readFields(where, over, POLICY_FIELDS, (k) => invalid(`${where} has an unknown field ${show(k)}; the fields are attempts, minDelayMs, maxDelayMs`));
  const p = { ...base };
  if (o.attempts !== undefined) {
    const a = o.attempts;
    if (typeof a !== "number" || !Number.isInteger(a) || a < 1 || a > ATTEMPTS_MAX) {
      throw invalid(`${where}.attempts must be an integer from 1 to ${ATTEMPTS_MAX} (tries in all, the first included); got ${show(a)}`);
    }
    p.attempts = a;
  }
  for (const k of ["minDelayMs", "maxDelayMs"] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > DELAY_MS_MAX) {
      throw invalid(`${where}.${k} must be a number of ms from 0 to ${DELAY_MS_MAX}; got ${show(v)}`);
    }
    p[k] = v;
  }
  if (p.maxDelayMs < p.minDelayMs) {
    // Only one side given: the other follows it, rather than failing on a default.
    if (o.maxDelayMs === undefined) p.maxDelayMs = p.minDelayMs;
    else if (o.minDelayMs === undefined) p.minDelayMs = p.maxDelayMs;
    else throw invalid(`${where}.maxDelayMs (${p.maxDelayMs}) must be at least minDelayMs (${p.minDelayMs})`);
  }
  return Object.freeze(p);
}

const STEP_FIELDS = ["name", "run", "compensate", "retry", "compensateRetry"];

/** Checks `define(name, steps)` and completes the policies from `defaults`. */
export function checkDefinition(name: unknown, steps: unknown, defaults: RetryPolicy): SagaDef {
  const sagaName = checkName("A saga's name", name);
  if (!Array.isArray(steps) || steps.length === 0) {
    throw invalid(`define(${show(name)}) needs a non-empty array of steps { name, run, compensate?, retry? }; got ${show(steps)}`);
  }
  if (steps.length > STEPS_MAX) throw invalid(`define(${show(name)}) has ${steps.length} steps; at most ${STEPS_MAX}`);
  const seen = new Set<string>();
  const out: StepDef[] = [];
  steps.forEach((step: unknown, i) => {
    const where = `define(${show(name)}) step ${i}`;
    if (!isPlainObject(step)) throw invalid(`${where} must be an object { name, run, compensate?, retry? }; got ${show(step)}`);
    // Each field read once (a getter that throws is INVALID_ARGUMENT): the checks below use the copy.
    const s = readFields(where, step, STEP_FIELDS, (k) => invalid(`${where} has an unknown field ${show(k)}; a step has ${STEP_FIELDS.join(", ")}`));
    const stepName = checkName(`${where}: the name`, s.name);
    if (seen.has(stepName)) throw invalid(`define(${show(name)}): two steps are named ${show(stepName)}; step names must be unique`);
    seen.add(stepName);
    if (typeof s.run !== "function") throw invalid(`${where} (${show(stepName)}): run must be a function (input, ctx) => output; got ${show(s.run)}`);
    if (s.compensate !== undefined && typeof s.compensate !== "function") {
      throw invalid(`${where} (${show(stepName)}): compensate must be a function (input, ctx) or absent; got ${show(s.compensate)}`);
    }
    const retry = resolvePolicy(`${where} (${show(stepName)}) retry`, s.retry, defaults);
    const compensateRetry = resolvePolicy(`${where} (${show(stepName)}) compensateRetry`, s.compensateRetry, retry);
    out.push({
      name: stepName,
      run: s.run as StepDef["run"],
      compensate: s.compensate as StepDef["compensate"],
      retry,
      compensateRetry,
    });
  });
  return { name: sagaName, steps: out, stepNames: out.map((s) => s.name) };
}

/**
 * The wait before the try after try number `attempt` (1 for the first retry) failed: the
 * exponential `minDelayMs * 2^(attempt-1)`, plus up to half of it again as jitter
 * (`random` in [0, 1)), never above `maxDelayMs`. So the n-th retry waits within
 * [min(max, min·2^(n-1)), min(max, 1.5·min·2^(n-1))].
 */
export function retryDelayMs(policy: RetryPolicy, attempt: number, random: number): number {
  const base = policy.minDelayMs * 2 ** Math.min(Math.max(0, attempt - 1), 52);
  return Math.min(policy.maxDelayMs, base * (1 + random / 2));
}

/** At most `max` characters of `s`, `more` (the mark of a cut) included; well-formed (a cut never leaves half of a pair). */
function storable(s: string, max: number, more = ""): string {
  return toWellFormedString(s.length > max ? s.slice(0, max - more.length) + more : s);
}

/** A failure's message as stored: at most {@link MESSAGE_CHARS_MAX} characters, well-formed. */
export function storableMessage(message: string): string {
  return storable(message, MESSAGE_CHARS_MAX, "…");
}

/** What `read` gives as text, or `fallback` when reading or converting it throws (a hostile getter, `toString`). */
function textOf(read: () => unknown, fallback: string): string {
  try {
    const v = read();
    return typeof v === "string" ? v : String(v);
  } catch {
    return fallback;
  }
}

/**
 * A thrown value as stored data. It must always be storable: a failure that could not be
 * written would lose the error and leave the try counted as cut short by a crash. So the
 * text is made well-formed (no lone surrogates) and short, and getters that throw are
 * survived.
 */
export function failureOf(e: unknown, step: string, phase: "run" | "compensate", attempts: number): SagaFailure {
  let name = "Error";
  let message: string;
  let code: string | undefined;
  if (e instanceof Error) {
    name = storable(textOf(() => e.name, "Error"), NAME_CHARS_MAX);
    message = textOf(() => e.message, "(the error's message could not be read)");
    try {
      const c = (e as { code?: unknown }).code;
      if (typeof c === "string") code = storable(c, NAME_CHARS_MAX);
    } catch {
      // a code getter that throws: no code
    }
  } else {
    try {
      message = typeof e === "string" ? e : JSON.stringify(e) ?? String(e);
    } catch {
      message = textOf(() => String(e), "(a thrown value that cannot be shown as text)");
    }
  }
  // A failure is kept in the saga's record: a huge message must not make the record too big
  // to write. At most MESSAGE_CHARS_MAX characters, the "…" of a cut included.
  message = storable(message, MESSAGE_CHARS_MAX, "…");
  const f: SagaFailure = { step, phase, attempts, name, message };
  if (code !== undefined) f.code = code;
  return f;
}
