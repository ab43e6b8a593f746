/**
 * Timers that honour any delay. The runtimes' `setTimeout` stores its delay as a signed
 * 32-bit integer: a delay of 2^31 ms or more (`Infinity` among them) fires after 1 ms.
 * A timeout a user sets to "practically never" must not fire at once, so every timer of
 * the core is armed through here.
 *
 * A timer keeps the process alive, as a pending timeout should (a caller awaits it), unless
 * armed with `unref: true` where the runtime allows it: housekeeping such as the idle sweep
 * is never a reason for a script to keep running.
 *
 * @module
 */

/** The longest delay the runtimes' timers take as given (2^31 - 1 ms, ~24.8 days). */
export const TIMER_DELAY_MS_MAX = 2 ** 31 - 1;

/** A timer armed with {@link armTimer}; `cancel()` is idempotent. */
export interface Timer {
  cancel(): void;
}

type RawTimer = ReturnType<typeof setTimeout>;

function unref(t: RawTimer): RawTimer {
  const u = (t as unknown as { unref?: () => void }).unref;
  if (typeof u === "function") u.call(t);
  return t;
}

/**
 * Calls `fn` once after `delayMs` (clamped below at 0). `Infinity` (or NaN) never fires;
 * delays past {@link TIMER_DELAY_MS_MAX} are waited out in steps.
 *
 * @example
 * ```ts
 * const t = armTimer(30 * 86_400_000, () => console.log("a month later"));
 * t.cancel();
 * ```
 */
export function armTimer(delayMs: number, fn: () => void, options: { unref?: boolean } = {}): Timer {
  let raw: RawTimer | undefined;
  let cancelled = false;
  const keep = (t: RawTimer) => (options.unref ? unref(t) : t);
  const arm = (remainingMs: number) => {
    if (cancelled || !(remainingMs < Infinity)) return; // Infinity, NaN: never
    const step = Math.min(Math.max(0, remainingMs), TIMER_DELAY_MS_MAX);
    raw = keep(setTimeout(() => {
      raw = undefined;
      if (remainingMs > TIMER_DELAY_MS_MAX) arm(remainingMs - TIMER_DELAY_MS_MAX);
      else if (!cancelled) fn();
    }, step));
  };
  arm(delayMs);
  return {
    cancel() {
      cancelled = true;
      if (raw !== undefined) clearTimeout(raw);
      raw = undefined;
    },
  };
}

/**
 * Calls `fn` every `everyMs` (clamped to [1, TIMER_DELAY_MS_MAX]) until cancelled.
 *
 * @example
 * ```ts
 * const t = armInterval(1000, () => sweep()); t.cancel();
 * ```
 */
export function armInterval(everyMs: number, fn: () => void, options: { unref?: boolean } = {}): Timer {
  const period = Math.min(Math.max(1, Number.isFinite(everyMs) ? everyMs : TIMER_DELAY_MS_MAX), TIMER_DELAY_MS_MAX);
  const raw = setInterval(fn, period);
  if (options.unref) unref(raw);
  return { cancel: () => clearInterval(raw) };
}

/**
 * Calls `fire` once when `delayMs` passes (undefined: no deadline) or `signal` aborts,
 * whichever comes first; `fire(true, reason)` on abort, `fire(false)` at the deadline.
 * `cancel()` disarms both (call it once the wait ends any other way). A signal that is
 * already aborted is the caller's to check first: nothing fires for it here.
 *
 * @example
 * ```ts
 * const wait = armDeadline(5000, signal, (aborted) => giveUp(aborted));
 * // ... when the awaited thing arrives:
 * wait.cancel();
 * ```
 */
export function armDeadline(delayMs: number | undefined, signal: AbortSignal | undefined, fire: (aborted: boolean, reason?: unknown) => void): Timer {
  // armTimer: a timeout of 2^31 ms or more (or Infinity) must not fire at once.
  const timer = delayMs === undefined ? undefined : armTimer(delayMs, () => fire(false));
  const unlisten = listenAbort(signal, (reason) => fire(true, reason));
  return {
    cancel() {
      timer?.cancel();
      unlisten();
    },
  };
}

/**
 * True when `signal` is aborted. The signal is the caller's: a signal-like object whose
 * `aborted` getter throws counts as aborted, rather than its error escaping an operation.
 */
export function signalAborted(signal: AbortSignal | undefined): boolean {
  if (signal === undefined) return false;
  try {
    return signal.aborted === true;
  } catch {
    return true;
  }
}

/**
 * Calls `onAbort` once, with the abort's reason, when the caller's `signal` aborts; returns
 * what takes the listener off. A signal-like object whose addEventListener throws can never
 * be heard: it counts as aborted, its error the reason (`onAbort` runs in a microtask; a raw
 * error from here escaped the operation). One whose removeEventListener throws (it left the
 * caller's promise unsettled) is left as it is.
 */
export function listenAbort(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): () => void {
  if (signal === undefined) return () => {};
  const listener = () => onAbort(abortReason(signal));
  try {
    signal.addEventListener("abort", listener, { once: true });
  } catch (e) {
    queueMicrotask(() => onAbort(e));
    return () => {};
  }
  return () => {
    try {
      signal.removeEventListener("abort", listener);
    } catch {
      // nothing more to undo
    }
  };
}

/** The abort reason of `signal`; what its `reason` getter throws, if it throws. */
export function abortReason(signal: AbortSignal | undefined): unknown {
  try {
    return signal?.reason;
  } catch (e) {
    return e;
  }
}

/**
 * Settles with `p`, or earlier with the error `onDeadline` gives when `delayMs` passes or
 * the signal aborts (the abort's reason as `cause`); `onDeadline` returning undefined
 * means "keep waiting for `p`".
 *
 * @example
 * ```ts
 * await raceDeadline(work(), 1000, signal, () => ({ error: new Error("too slow") }));
 * ```
 */
export function raceDeadline<T>(p: Promise<T>, delayMs: number | undefined, signal: AbortSignal | undefined, onDeadline: (cause?: unknown) => { error: unknown } | undefined): Promise<T> {
  if (delayMs === undefined && !signal) return p;
  return new Promise<T>((resolve, reject) => {
    let wait: Timer | undefined;
    let settled = false;
    const stop = () => wait?.cancel();
    const fire = (cause?: unknown) => {
      if (settled) return;
      const outcome = onDeadline(cause);
      if (!outcome) return stop();
      settled = true;
      stop();
      reject(outcome.error);
    };
    p.then((v) => {
      if (settled) return;
      settled = true;
      stop();
      resolve(v);
    }, (e) => {
      if (settled) return;
      settled = true;
      stop();
      reject(e);
    });
    if (signalAborted(signal)) return fire(abortReason(signal));
    wait = armDeadline(delayMs, signal, (aborted, reason) => (aborted ? fire(reason) : fire()));
  });
}
