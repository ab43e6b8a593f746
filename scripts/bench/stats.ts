/** Shared measurement helpers for the bench: bounded latency samples and percentiles. */
export interface Result {
  workload: string;
  engine: string;
  runtime: string;
  ops: number;
  opsPerSec: number;
  p50us?: number;
  p99us?: number;
  note?: string;
}

export class Latencies {
  readonly #samples: Float64Array;
  #n = 0;
  constructor(max: number) {
    this.#samples = new Float64Array(max);
  }
  add(us: number): void {
    if (this.#n < this.#samples.length) this.#samples[this.#n++] = us;
  }
  /** How many samples are held. */
  get count(): number {
    return this.#n;
  }
  /** How many samples exceed `us`. */
  countAbove(us: number): number {
    let n = 0;
    for (let i = 0; i < this.#n; i++) if (this.#samples[i]! > us) n++;
    return n;
  }
  percentile(p: number): number {
    const s = this.#samples.slice(0, this.#n).sort();
    return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10 : 0;
  }
}

export function result(workload: string, engine: string, runtime: string, ops: number, ms: number, lat?: Latencies, note?: string): Result {
  const r: Result = { workload, engine, runtime, ops, opsPerSec: Math.round(ops / (ms / 1000)) };
  if (lat) {
    r.p50us = lat.percentile(50);
    r.p99us = lat.percentile(99);
  }
  if (note) r.note = note;
  return r;
}

/** Runs `n` async operations with `inFlight` at a time, recording each one's latency. */
export async function pool(n: number, inFlight: number, op: (i: number) => Promise<unknown>, lat: Latencies): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      await op(i);
      lat.add((performance.now() - s) * 1000);
    }
  }));
  return performance.now() - t0;
}
