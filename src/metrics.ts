/**
 * Fixed-size histograms and the Prometheus text exposition. Memory is constant however
 * many operations are recorded: there is no per-operation history.
 *
 * @module
 */

/** Buckets per power of two: ~19 % relative error on percentiles. */
const SUB_BUCKETS = 4;
/** Covers 1 µs … 2^40 µs (≈ 12 days); larger values land in the last bucket. */
const BUCKETS = 40 * SUB_BUCKETS;

/**
 * A log-bucketed histogram of non-negative values (microseconds, or counts).
 *
 * @example
 * ```ts
 * const h = new Histogram(); h.record(120); h.percentile(99); // ≈ 128
 * ```
 */
export class Histogram {
  readonly #counts = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  record(value: number): void {
    const v = value > 1 ? value : 1;
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log2(v) * SUB_BUCKETS));
    this.#counts[i]!++;
    this.count++;
    this.sum += value;
    if (value > this.max) this.max = value;
  }

  /** The upper bound of the bucket holding the p-th percentile (0 when empty). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const target = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= target) return Math.min(this.max, Math.round(2 ** ((i + 1) / SUB_BUCKETS) * 10) / 10);
    }
    return this.max;
  }

  /** p50/p90/p99/max and count, for stats(). */
  summary(): { count: number; p50: number; p90: number; p99: number; max: number } {
    return { count: this.count, p50: this.percentile(50), p90: this.percentile(90), p99: this.percentile(99), max: Math.round(this.max * 10) / 10 };
  }
}

/** One metric for the exposition. */
export interface Metric {
  name: string;
  help: string;
  type: "counter" | "gauge" | "summary";
  value?: number;
  /** Several values of one metric told apart by labels (e.g. sagas by status), instead of `value`. */
  samples?: { labels: Record<string, string>; value: number }[];
  histogram?: Histogram;
  /** Scale applied to histogram values (e.g. 1e-6 to expose µs as seconds). */
  scale?: number;
}

/** Makers of counters and gauges whose names start with `prefix` (e.g. `txtdb_`). */
export function metricMakers(prefix: string): {
  counter: (name: string, help: string, value: number) => Metric;
  gauge: (name: string, help: string, value: number) => Metric;
} {
  return {
    counter: (name, help, value) => ({ name: `${prefix}${name}`, help, type: "counter", value }),
    gauge: (name, help, value) => ({ name: `${prefix}${name}`, help, type: "gauge", value }),
  };
}

/** Renders metrics in the Prometheus text exposition format (version 0.0.4). */
export function renderPrometheus(metrics: Metric[], labels: Record<string, string>): string {
  const lbl = (extra: Record<string, string> = {}) => {
    const all = { ...labels, ...extra };
    const parts = Object.entries(all).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
    return parts.length ? `{${parts.join(",")}}` : "";
  };
  const out: string[] = [];
  for (const m of metrics) {
    out.push(`# HELP ${m.name} ${m.help}`);
    out.push(`# TYPE ${m.name} ${m.type}`);
    if (m.histogram) {
      const s = m.scale ?? 1;
      for (const q of [0.5, 0.9, 0.99]) out.push(`${m.name}${lbl({ quantile: String(q) })} ${m.histogram.percentile(q * 100) * s}`);
      out.push(`${m.name}_sum${lbl()} ${m.histogram.sum * s}`);
      out.push(`${m.name}_count${lbl()} ${m.histogram.count}`);
    } else if (m.samples) {
      for (const x of m.samples) out.push(`${m.name}${lbl(x.labels)} ${x.value}`);
    } else {
      out.push(`${m.name}${lbl()} ${m.value ?? 0}`);
    }
  }
  return out.join("\n") + "\n";
}
