/**
 * What the command line prints: text made safe for a terminal, tagged JSON, and progress.
 *
 * Rules:
 * 1. Text from the store or the user (namespace names, keys, paths, error messages) never
 *    reaches the terminal raw: control characters could move the cursor, recolour or
 *    retitle the terminal, or hide text. JSON output escapes them as \u00XX (still JSON);
 *    human-readable lines escape them too.
 * 2. Data goes to stdout; progress and messages go to stderr, so `txtdb export > file` and
 *    pipes get only data. Progress is shown only when asked (`--progress`) or when stderr is
 *    a terminal, as whole lines at most once a second (never `\r` tricks that would garble a
 *    terminal showing stdout too).
 *
 * @module
 */
import { toTagged } from "../src/ndjson.ts";

/**
 * Characters a terminal may act on or that hide text: C0 controls (ESC starts colour,
 * cursor and title sequences), DEL, C1 controls (0x9b is a one-byte CSI on some
 * terminals), and the bidirectional marks and overrides that reorder what a reader sees.
 */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
// JSON.stringify already escapes C0; these are the rest, escaped the JSON way so output stays JSON.
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
const UNSAFE_ANY = new RegExp(UNSAFE.source);
const hex = (c: string, width: number) => c.charCodeAt(0).toString(16).padStart(width, "0");

/** A human-readable line with every unsafe character written as an escape (\n, \x1b, \u202e). */
export function safe(s: string): string {
  return s.replace(UNSAFE, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : c < "\u0100" ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`));
}

/** JSON text with the characters JSON.stringify leaves raw escaped (still the same JSON). */
export function safeJson(text: string): string {
  return text.replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`);
}

/** A value as one line of tagged JSON, safe for a terminal. */
export function json(v: unknown): string {
  return safeJson(JSON.stringify(toTagged(v)));
}

/** Pretty JSON for reports (bigints as decimal strings), safe for a terminal. */
export function report(v: unknown): string {
  return safeJson(JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
}

/** A name for a human-readable line: as is when harmless, else as a JSON string, so it stays unambiguous. */
export function name(s: string): string {
  return UNSAFE_ANY.test(s) || s.startsWith('"') || s.trim() !== s || s === "" ? json(s) : s;
}

/** Seconds with one decimal: `1.5 s`. */
export function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

/**
 * A duration for a person, coarser as it grows: `12.3 s`, `5 min 3 s`, `3 h 12 min`, `2 d 4 h`
 * (a pin or a lock held for hours reads at a glance).
 */
export function duration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  if (whole < 86400) return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
  return `${Math.floor(whole / 86400)} d ${Math.floor((whole % 86400) / 3600)} h`;
}

/** Bytes for a person: `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) [v, i] = [v / 1024, i + 1];
  return `${v.toFixed(1)} ${units[i]}`;
}

/** Progress lines are at most this often. */
export const PROGRESS_EVERY_MS = 1_000;

/**
 * Progress of one long command on stderr (rule 2). When off, only {@link done}'s summary is
 * written. `write` and `nowMs` are injected so the throttling is testable without a clock.
 *
 * @example
 * ```ts
 * const p = new Progress("export", { on: true, write: (l) => console.error(l), nowMs: () => performance.now() });
 * p.start("at version 12");
 * p.update(`${n} entries`);
 * p.done(`${n} entries`);
 * ```
 */
export class Progress {
  readonly #label: string;
  readonly #on: boolean;
  readonly #write: (line: string) => void;
  readonly #nowMs: () => number;
  readonly #startMs: number;
  #lastMs: number;

  constructor(label: string, options: { on: boolean; write: (line: string) => void; nowMs: () => number }) {
    this.#label = label;
    this.#on = options.on;
    this.#write = options.write;
    this.#nowMs = options.nowMs;
    this.#startMs = this.#lastMs = options.nowMs();
  }

  /** True when progress lines are written. */
  get on(): boolean {
    return this.#on;
  }

  /** The first line: what starts (progress only). */
  start(what: string): void {
    if (this.#on) this.#write(safe(`${this.#label}: ${what}…`));
  }

  /** A line of progress, written when at least PROGRESS_EVERY_MS passed since the last one. */
  update(what: string | (() => string)): void {
    if (!this.#on) return;
    const now = this.#nowMs();
    if (now - this.#lastMs < PROGRESS_EVERY_MS) return;
    this.#lastMs = now;
    this.#write(safe(`${this.#label}: ${typeof what === "string" ? what : what()} (${seconds(now - this.#startMs)})…`));
  }

  /** A step of the work, written unthrottled (progress only). */
  step(what: string): void {
    if (this.#on) this.#write(safe(`${this.#label}: ${what} (${seconds(this.#nowMs() - this.#startMs)})`));
  }

  /** The summary: always written (it is the command's message, not progress). */
  done(summary: string): void {
    this.#write(safe(`${this.#label}: ${summary}${this.#on ? ` in ${seconds(this.#nowMs() - this.#startMs)}` : ""}`));
  }
}
