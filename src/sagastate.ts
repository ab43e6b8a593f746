/**
 * A saga's durable state and the transitions between its states. Pure: the runner
 * (sagas.ts) reads a record in a transaction, applies one of these, and writes the result
 * with {@link writeRecord}, which also keeps the indexes in step.
 *
 * Keys in the sagas' namespace:
 *
 * ```
 * ["saga", id]             SagaRecord                  every saga, ended or not
 * ["run", name, id]        { owner, dueAtMs }          sagas not yet ended: what runners watch
 * ["status", status, id]   name                        list({ status }) without reading every saga
 * ["idem", key]            id                          one idempotency key, one saga
 * ["type", name]           { steps, definedAtMs }      names some process defined (start() from anywhere)
 * ```
 *
 * The states, and the one transition each try ends with:
 *
 * ```
 * running(step i)      ok → running(step i+1), or completed after the last step
 *                      ok, output not storable → compensating(step i itself, or the last
 *                                        completed step below it that has a compensation)
 *                      failed, tries left → running(step i), due after a backoff
 *                      failed for good → compensating(last completed step that has a compensation),
 *                                        or compensated when there is none
 * compensating(step j) ok → compensating(previous step with a compensation), or the end:
 *                           compensated (failed when a compensation failed for good)
 *                      failed, tries left → compensating(step j), due after a backoff
 *                      failed for good → recorded; the earlier compensations still run
 * ```
 *
 * Rules the runner relies on:
 * 1. `attempt` counts tries started, and is written (with `owner`) before the try runs: a
 *    try cut short by its process's death counts, so a step that kills its process is
 *    not tried forever.
 * 2. Only the owner writes a saga that has one; another process takes it over (writes
 *    itself as owner) only once the owner's lease is free (liveness.ts), in a serializable
 *    transaction, so two processes never both believe they own it.
 * 3. The record is written whole by every claim and outcome, and a claim or a failure
 *    makes it a little longer: one whose input (at `start()`) or outputs (a step's success)
 *    left no room for that could be started, or finish its step, and then never be written
 *    again. So those two writes keep {@link recordReserveBytes} of `maxValueBytes` free
 *    (`start()` twice as much, for the outputs to come).
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { encodeValue } from "./codec.ts";
import type { Key } from "./keys.ts";
import type { SagaDef, SagaFailure, SagaInfo, SagaResult, SagaStatus } from "./sagadefs.ts";

/** The version of the record layout, so that a later one can be told apart. */
export const RECORD_FORMAT = 1;

/** A saga as stored under `["saga", id]`. */
export interface SagaRecord {
  format: number;
  id: string;
  name: string;
  /** The step names at start: a runner whose definition differs leaves the saga alone. */
  steps: string[];
  input: unknown;
  status: SagaStatus;
  /** The step being run (running) or compensated (compensating). */
  index: number;
  /** Tries started on that step or compensation (rule 1). */
  attempt: number;
  /** Outputs of completed steps, by step index (undefined where not completed). */
  results: unknown[];
  /** How many steps completed (the first `done` ones). */
  done: number;
  error: SagaFailure | null;
  /** The last failed try's error while the step waits for its next try. */
  lastError?: SagaFailure;
  compensationErrors: SagaFailure[];
  /** The runner's lease id while one holds it (rule 2), else null. */
  owner: string | null;
  ownerPid: number | null;
  ownerRuntime: string | null;
  /** Not to be tried before this (wall clock, ms): a retry's backoff. 0: now. */
  dueAtMs: number;
  idempotencyKey: string | null;
  createdAtMs: number;
  updatedAtMs: number;
}

/**
 * Bytes of `maxValueBytes` a saga's record keeps free once a step's output is in it (rule
 * 3): what the rest of its life adds without a check that could refuse it (a runner's
 * claim, about 40 bytes; a failure, at most about 15 KiB, and a few of them). 64 KiB, or a
 * quarter of a smaller `maxValueBytes`. At `start()`, twice that is kept free: the second
 * half for the steps' outputs, so that a saga whose input was accepted can also carry them.
 */
export function recordReserveBytes(maxValueBytes: number, atStart: boolean): number {
  return (atStart ? 2 : 1) * Math.min(64 * 1024, Math.floor(maxValueBytes / 4));
}

/**
 * Rule 3: INVALID_VALUE unless `rec` leaves its reserve of `maxValueBytes` free; `what`
 * says what made it big (the input, a step's output).
 */
export function checkRecordRoom(rec: SagaRecord, maxValueBytes: number, atStart: boolean, what: string): void {
  const reserve = recordReserveBytes(maxValueBytes, atStart);
  const bytes = encodeValue(rec).length;
  if (bytes > maxValueBytes - reserve) {
    const later = atStart ? "its steps' outputs and what its runners add (claims, failures)" : "what its runners add later (claims, failures)";
    throw new TxtDbError("INVALID_VALUE", `${what}: the saga's record would be ${bytes} bytes encoded, and must leave ${reserve} bytes of maxValueBytes (${maxValueBytes}) free for ${later}, so at most ${maxValueBytes - reserve} bytes. Store big data under a key of its own and pass the key, or raise maxValueBytes`);
  }
}

/** What the run index holds for a saga not yet ended. */
export interface RunEntry {
  owner: string | null;
  dueAtMs: number;
}

export const sagaKey = (id: string): Key => ["saga", id];
export const runKey = (name: string, id: string): Key => ["run", name, id];
export const statusKey = (status: SagaStatus, id: string): Key => ["status", status, id];
/** The prefix of the status index's entries of one status: counted by `stats().sagas`. */
export const statusPrefix = (status: SagaStatus): Key => ["status", status];
/** Every status, in the order `stats()` and `txtdb stats` show them. */
export const SAGA_STATUSES: readonly SagaStatus[] = ["running", "compensating", "completed", "compensated", "failed"];
export const idemKey = (key: string): Key => ["idem", key];
export const typeKey = (name: string): Key => ["type", name];

export function isFinal(status: SagaStatus): boolean {
  return status === "completed" || status === "compensated" || status === "failed";
}

const STATUSES: readonly SagaStatus[] = ["running", "compensating", "completed", "compensated", "failed"];

/** A new saga, not yet claimed by a runner. */
export function newRecord(id: string, def: { name: string; stepNames: string[] }, input: unknown, idempotencyKey: string | null, nowMs: number): SagaRecord {
  return {
    format: RECORD_FORMAT,
    id,
    name: def.name,
    steps: [...def.stepNames],
    input,
    status: "running",
    index: 0,
    attempt: 0,
    results: [],
    done: 0,
    error: null,
    compensationErrors: [],
    owner: null,
    ownerPid: null,
    ownerRuntime: null,
    dueAtMs: 0,
    idempotencyKey,
    createdAtMs: nowMs,
    updatedAtMs: nowMs,
  };
}

/** Writes the record and keeps the run and status indexes in step with it. */
export function writeRecord(tx: { set(ns: string, key: Key, value: unknown): void; delete(ns: string, key: Key): void }, ns: string, before: SagaRecord | undefined, rec: SagaRecord): void {
  tx.set(ns, sagaKey(rec.id), rec);
  if (before?.status !== rec.status) {
    if (before) tx.delete(ns, statusKey(before.status, rec.id));
    tx.set(ns, statusKey(rec.status, rec.id), rec.name);
  }
  if (isFinal(rec.status)) {
    if (!before || !isFinal(before.status)) tx.delete(ns, runKey(rec.name, rec.id));
  } else if (!before || before.owner !== rec.owner || before.dueAtMs !== rec.dueAtMs) {
    const entry: RunEntry = { owner: rec.owner, dueAtMs: rec.dueAtMs };
    tx.set(ns, runKey(rec.name, rec.id), entry);
  }
}

/** The highest step index below `from` (inclusive) with a compensation, or -1. */
function compensableAtOrBelow(def: SagaDef, from: number): number {
  for (let i = from; i >= 0; i--) if (def.steps[i]?.compensate) return i;
  return -1;
}

function end(rec: SagaRecord, status: SagaStatus): void {
  rec.status = status;
  rec.owner = null;
  rec.ownerPid = null;
  rec.ownerRuntime = null;
  rec.dueAtMs = 0;
  rec.attempt = 0;
}

/** Compensating goes on below step `from`, or the saga ends. */
function compensateFrom(def: SagaDef, rec: SagaRecord, from: number): void {
  const next = compensableAtOrBelow(def, from);
  rec.attempt = 0;
  rec.dueAtMs = 0;
  if (next < 0) return end(rec, rec.compensationErrors.length > 0 ? "failed" : "compensated");
  rec.status = "compensating";
  rec.index = next;
}

/** The current step (or compensation) succeeded with `output` (ignored when compensating). */
export function stepSucceeded(def: SagaDef, rec: SagaRecord, output: unknown): void {
  delete rec.lastError;
  if (rec.status === "running") {
    rec.results[rec.index] = output;
    rec.done = rec.index + 1;
    rec.index++;
    rec.attempt = 0;
    rec.dueAtMs = 0;
    if (rec.index >= def.steps.length) end(rec, "completed");
  } else {
    compensateFrom(def, rec, rec.index - 1);
  }
}

/**
 * The current try failed with `failure`: retried after `delayMs` while the policy allows
 * (the owner gives the saga up for that time, so whichever runner is free takes it next),
 * else the step fails for good.
 */
export function stepFailed(def: SagaDef, rec: SagaRecord, failure: SagaFailure, nowMs: number, delayMs: number): void {
  const step = def.steps[rec.index]!;
  const policy = rec.status === "running" ? step.retry : step.compensateRetry;
  if (rec.attempt < policy.attempts) {
    rec.owner = null;
    rec.ownerPid = null;
    rec.ownerRuntime = null;
    rec.dueAtMs = nowMs + delayMs;
    rec.lastError = failure;
    return;
  }
  failedForGood(def, rec, failure);
}

/**
 * The current step's run returned, so its effect happened, but its output cannot be stored
 * (not a value, or too big for the record, rule 3). The step fails for good at once: a
 * retry would do the effect again and return an output that could not be stored either.
 * Unlike a failed run, the step itself is undone: compensating starts at this step (its
 * own compensation, if it has one, runs first), then goes on below it. Its output is not
 * kept (`done` does not count the step), so its compensation's `ctx.results` lacks it.
 */
export function outputUnstorable(def: SagaDef, rec: SagaRecord, failure: SagaFailure): void {
  delete rec.lastError;
  rec.error = failure;
  compensateFrom(def, rec, rec.index);
}

/** The current step or compensation has used up its tries. */
export function failedForGood(def: SagaDef, rec: SagaRecord, failure: SagaFailure): void {
  delete rec.lastError;
  if (rec.status === "running") {
    rec.error = failure;
    compensateFrom(def, rec, rec.index - 1);
  } else {
    rec.compensationErrors.push(failure);
    compensateFrom(def, rec, rec.index - 1);
  }
}

/** The policy of the step or compensation the record stands at. */
export function currentPolicy(def: SagaDef, rec: SagaRecord) {
  const step = def.steps[rec.index]!;
  return rec.status === "running" ? step.retry : step.compensateRetry;
}

/** The outputs of the completed steps, by name. */
export function outputsOf(rec: SagaRecord): Record<string, unknown> {
  // Object.fromEntries defines own properties: a step named "__proto__" stays an ordinary key.
  const entries: [string, unknown][] = [];
  for (let i = 0; i < rec.done && i < rec.steps.length; i++) entries.push([rec.steps[i]!, rec.results[i]]);
  return Object.fromEntries(entries);
}

/** The result of an ended saga. */
export function resultOf(rec: SagaRecord): SagaResult {
  const status = rec.status as SagaResult["status"];
  const r: SagaResult = { status, output: outputsOf(rec) };
  if (rec.error) r.error = rec.error;
  if (rec.compensationErrors.length > 0) r.compensationErrors = rec.compensationErrors;
  return r;
}

/** The record as list() and watch() show it. */
export function infoOf(rec: SagaRecord): SagaInfo {
  const ended = isFinal(rec.status);
  return {
    id: rec.id,
    name: rec.name,
    status: rec.status,
    step: ended ? null : rec.steps[rec.index] ?? null,
    attempts: rec.attempt,
    updatedAtMs: rec.updatedAtMs,
    createdAtMs: rec.createdAtMs,
    idempotencyKey: rec.idempotencyKey,
    nextAttemptAtMs: !ended && rec.dueAtMs > 0 && rec.owner === null ? rec.dueAtMs : null,
    runner: rec.owner !== null && rec.ownerPid !== null ? { pid: rec.ownerPid, runtime: rec.ownerRuntime ?? "?" } : null,
  };
}

/** True if `v` looks like a record this code wrote (a namespace shared with other data, or a newer format, is refused). */
export function isRecord(v: unknown): v is SagaRecord {
  if (typeof v !== "object" || v === null) return false;
  const r = v as Partial<SagaRecord>;
  return r.format === RECORD_FORMAT && typeof r.id === "string" && typeof r.name === "string" && Array.isArray(r.steps) &&
    r.steps.every((s) => typeof s === "string") && STATUSES.includes(r.status as SagaStatus) &&
    // A saga not yet ended stands at one of its steps; only an ended one may point past the last.
    Number.isInteger(r.index) && r.index! >= 0 && (isFinal(r.status as SagaStatus) ? r.index! <= r.steps.length : r.index! < r.steps.length) &&
    Number.isInteger(r.attempt) && r.attempt! >= 0 &&
    Number.isInteger(r.done) && Array.isArray(r.results) && Array.isArray(r.compensationErrors) &&
    (r.owner === null || typeof r.owner === "string") && typeof r.dueAtMs === "number";
}
