/**
 * The one error class txtdb throws on purpose, with the stable codes of the public contract.
 *
 * @example
 * ```ts
 * try { await db.set("missing", "k", 1); }
 * catch (e) { if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") { ... } }
 * ```
 * @module
 */

/** Every code a {@link TxtDbError} can carry. Stable: callers branch on them. */
export type ErrorCode =
  | "CONFLICT"
  | "TIMEOUT"
  | "LOCK_TIMEOUT"
  | "DEADLOCK"
  | "NAMESPACE_NOT_FOUND"
  | "NAMESPACE_EXISTS"
  | "INVALID_KEY"
  | "INVALID_VALUE"
  | "INVALID_ARGUMENT"
  | "READ_ONLY"
  | "CLOSED"
  | "CORRUPTION"
  | "LIMIT"
  | "WATCH_OVERFLOW"
  | "FORMAT"
  | "IO"
  | "UNSUPPORTED"
  | "UNAVAILABLE"
  | "NOT_PREPARED";

/**
 * An error raised by txtdb. `code` is stable; `message` says what was attempted, on what,
 * and what to do; `details` carries structured context (for `CONFLICT`: what lost, and the
 * version that won; for `CORRUPTION`: file and offset).
 *
 * @example
 * ```ts
 * const err = new TxtDbError("INVALID_KEY", "Key part 1 is NaN; use a finite number");
 * err.code; // "INVALID_KEY"
 * ```
 */
export class TxtDbError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;
  /** Structured context; shape depends on `code`. */
  readonly details: Record<string, unknown> | undefined;

  /** An error with a stable `code`; `cause` keeps the error that led to it (an IO error's OS error). */
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TxtDbError";
    this.code = code;
    this.details = options?.details;
  }
}

/** True when `e` is a {@link TxtDbError} with the given code. */
export function isTxtDbError(e: unknown, code?: ErrorCode): e is TxtDbError {
  return e instanceof TxtDbError && (code === undefined || e.code === code);
}

/**
 * Guards an invariant. A failed assertion is a bug in txtdb, never an operating failure:
 * it is not a TxtDbError, and nothing catches or retries it.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`txtdb internal assertion failed: ${message}`);
}

/**
 * What a message shows of a value the caller passed, whatever it is: never throws (a bigint
 * or a cyclic object would make JSON.stringify throw, and the caller would get that
 * TypeError instead of its INVALID_ARGUMENT), shows NaN as NaN (JSON says null), and cuts a
 * long string or object to its start.
 */
export function describeInput(v: unknown): string {
  switch (typeof v) {
    case "string":
      return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
    case "bigint":
      return `${v}n`;
    case "function":
      return "a function";
    case "symbol":
      return v.toString();
    case "object": {
      if (v === null) return "null";
      let text: string | undefined;
      try {
        text = JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));
      } catch {
        // cyclic, or a toJSON or getter that throws
      }
      if (text === undefined) return Array.isArray(v) ? "an array" : "an object";
      return text.length > 80 ? `${text.slice(0, 80)}…` : text;
    }
    default:
      return String(v); // number (NaN, Infinity as such), boolean, undefined
  }
}
