/**
 * A wall clock tests move by hand: a Platform whose `wallClockMs()` reads a number the test
 * sets, every other member the wrapped platform's own. Expiry is read against the wall clock
 * (src/expiry.ts), so a test can step past an expiry without waiting for it.
 */
import type { Platform } from "txtdb";

/** A clock at `startMs` that the test moves with `advance(ms)`. */
export class ManualClock {
  nowMs: number;

  constructor(startMs = 1_800_000_000_000) {
    this.nowMs = startMs;
  }

  advance(ms: number): void {
    this.nowMs += ms;
  }

  /** `base` with this clock as its wall clock (methods bound to `base`, whose private state they use). */
  platform(base: Platform): Platform {
    return new Proxy(base, {
      get: (target, prop) => {
        if (prop === "wallClockMs") return () => this.nowMs;
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }
}
