/**
 * Turns for retries that lost a conflict on the same key, within one process.
 *
 * Transactions that conflict on a hot key all read it at one snapshot. Rerun together they
 * join one group commit, and all but one lose again, round after round, until their
 * retries run out. Queued here, they rerun one at a time, each on the state its
 * predecessor committed, and most win at their first retry. Retries on different keys do
 * not wait for each other.
 *
 * A wait is bounded: the holder of a turn could itself be waiting for its caller (a
 * transaction run inside another's function); past the bound a retry goes ahead without
 * its turn, which is only the behaviour without turns.
 *
 * @module
 */
import { describeKey } from "./keys.ts";
import type { TxtDbError } from "./errors.ts";
import { armDeadline, signalAborted } from "./timers.ts";
import type { Timer } from "./timers.ts";

/** Gives up the turn; idempotent. */
export type LeaveTurn = () => void;

/** Longest a retry waits for its turn before it goes ahead anyway. */
export const RETRY_TURN_MAX_WAIT_MS = 1000;

/** The name of the key (or range, or namespace) a CONFLICT was about, as a queue name. */
export function conflictSubject(e: TxtDbError): string {
  const d = e.details ?? {};
  const what = "range" in d ? ["range", d.range] : "key" in d ? ["key", d.key] : ["ns"];
  return `${String(d.ns)}\u0000${describeKey(what)}`;
}

export class RetryTurns {
  /** Per subject, the promise the next arrival waits on (resolved when the last one leaves). */
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Waits for the turn on `subject`, at most `maxWaitMs` and no longer than `signal` stays
   * unaborted (the caller then sees the abort); resolves with how to leave the turn.
   */
  async enter(subject: string, maxWaitMs: number, signal?: AbortSignal): Promise<LeaveTurn> {
    const before = this.#tails.get(subject);
    let open!: () => void;
    const mine = new Promise<void>((resolve) => (open = resolve));
    this.#tails.set(subject, mine);
    const leave: LeaveTurn = () => {
      open();
      if (this.#tails.get(subject) === mine) this.#tails.delete(subject);
    };
    if (before && !signalAborted(signal)) {
      let wait: Timer | undefined;
      await Promise.race([
        before,
        new Promise<void>((resolve) => {
          wait = armDeadline(maxWaitMs, signal, () => resolve());
        }),
      ]);
      wait?.cancel();
    }
    return leave;
  }

  /** How many subjects have a queue (for tests). */
  get size(): number {
    return this.#tails.size;
  }
}
