/**
 * Watching a key or range through the gateway's `/v3/watch`: a streaming POST whose body
 * is one create request and whose reply is newline-delimited JSON, one WatchResponse per
 * line (`{"result": {...}}`), or `{"error": {...}}` when the stream fails.
 *
 * Rules:
 * 1. Events come in revision order, each revision whole. Without fragmenting etcd sends all
 *    the events of one revision in one response, and a line is parsed whole before any of
 *    its events is handed out. But a watch catching up from history gets up to 1,000
 *    revisions in one response, which for big values made lines past
 *    {@link WATCH_LINE_BYTES_MAX} (LIMIT, after etcd and its gateway built the whole
 *    reply): {@link watchRevisions} asks for fragments (etcd cuts a response at its request
 *    limit, between events), and holds the last revision of a fragment until the next
 *    line completes it. {@link watchStream}, which hands out single events, does not ask.
 * 2. `next` is the revision to resume from: one past the last event handed out, or past a
 *    progress notification's header revision (etcd promises later events come after it),
 *    or past the creation header's revision for a watch started "now".
 * 3. A stream that breaks (member killed, connection reset, an `error` line, the reply
 *    ending) is opened again from `next` on the next endpoint; a start revision etcd has
 *    compacted fails with {@link EtcdCompactedError} (code `WATCH_OVERFLOW`), on the
 *    first stream or any later one; being unable to open a stream again within
 *    requestTimeoutMs fails with `UNAVAILABLE`.
 * 4. The consumer pulls: a line is read only when the last one was consumed, so a slow
 *    consumer holds the stream (TCP) back instead of growing a queue; a line longer than
 *    {@link WATCH_LINE_BYTES_MAX} fails with `LIMIT`.
 *
 * Streams are opened with etcd's require-leader flag (see Transport.headers): a member
 * that loses its leader (partitioned, or the cluster lost quorum) cancels the stream with
 * "no leader" after a few election timeouts, and the watch moves to another member. A
 * member that freezes (SIGSTOP) without closing the connection is not detected: the
 * stream just goes quiet. Progress notifications (`progressNotify`) make such silence
 * visible to the consumer, at the interval etcd is configured with (10 minutes unless
 * `--experimental-watch-progress-notify-interval` says otherwise).
 *
 * When no stream can be opened again in time, the `UNAVAILABLE` error's
 * `details.resumeFrom` is the revision to watch from next.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { armTimer } from "../timers.ts";
import { EtcdCompactedError } from "./failures.ts";
import { classify } from "./failures.ts";
import type { Transport } from "./transport.ts";
import type { EtcdBytes, EtcdKeyValue, Json } from "./wire.ts";
import { asList, asObject, b64, decodeHeader, decodeKeyValue, int64, prefixEnd } from "./wire.ts";

/** The longest watch reply line read (bytes); longer fails with `LIMIT`. */
export const WATCH_LINE_BYTES_MAX = 64 * 1024 * 1024;

/** Options of {@link watchStream} (and `EtcdClient.watch`). */
export interface EtcdWatchOptions {
  /** The end of the range watched, exclusive (default: only `key`). */
  rangeEnd?: EtcdBytes;
  /** Watch every key that starts with `key` (sets `rangeEnd`). */
  prefix?: boolean;
  /** The first revision to report (inclusive); default: changes after the watch starts. */
  startRevision?: bigint;
  /** Report each event's previous key-value too (as `prevKv`). */
  prevKv?: boolean;
  /** Ask etcd for periodic progress notifications (`type: "PROGRESS"`) while quiet. */
  progressNotify?: boolean;
  /** Ends the watch: the iteration finishes (without an error). */
  signal?: AbortSignal;
}

/** A change of one key. */
export interface EtcdChangeEvent {
  type: "PUT" | "DELETE";
  /** The key after the change; for a DELETE, the key with the deletion's revision and no value. */
  kv: EtcdKeyValue;
  /** The key before the change, when `prevKv` was asked for and etcd still had it. */
  prevKv?: EtcdKeyValue;
  /** The revision of the change (`kv.modRevision`). */
  revision: bigint;
}

/** A progress notification: every later event has a revision above `revision`. */
export interface EtcdProgressEvent {
  type: "PROGRESS";
  revision: bigint;
}

/** What a watch reports. */
export type EtcdWatchEvent = EtcdChangeEvent | EtcdProgressEvent;

/**
 * Every change of one revision, together: what {@link watchRevisions} reports, so that a
 * consumer knows where a revision ends without waiting for the next one.
 */
export interface EtcdRevisionEvent {
  type: "REVISION";
  revision: bigint;
  events: EtcdChangeEvent[];
}

/** Splits a byte stream into lines, bounded. */
class LineReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = "";

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  /** The next line, or undefined when the stream ended. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line.trim() === "") continue;
        return line;
      }
      const { done, value } = await this.#reader.read();
      if (done) {
        const rest = this.#buffer + this.#decoder.decode();
        this.#buffer = "";
        return rest.trim() === "" ? undefined : rest;
      }
      this.#buffer += this.#decoder.decode(value, { stream: true });
      if (this.#buffer.length > WATCH_LINE_BYTES_MAX) {
        throw new TxtDbError("LIMIT", `A watch reply line passed ${WATCH_LINE_BYTES_MAX} bytes; watch a narrower range or write smaller revisions`);
      }
    }
  }

  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }
}

/** A stream that broke: the watch resumes on another member. */
class StreamBroken extends Error {}

/** Pause before reopening a stream that broke before creation: doubles from this... */
const REOPEN_PAUSE_MS_MIN = 50;
/** ...up to this. */
const REOPEN_PAUSE_MS_MAX = 800;

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = armTimer(ms, done);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      t.cancel();
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * Watches `key` (or a range) from `options.startRevision`, resuming across members; see
 * the module comment.
 *
 * @example
 * ```ts
 * for await (const e of watchStream(transport, "app/", { prefix: true, startRevision: 5n })) {
 *   if (e.type !== "PROGRESS") console.log(e.type, e.revision);
 * }
 * ```
 */
export async function* watchStream(transport: Transport, key: EtcdBytes, options: EtcdWatchOptions = {}, closed?: AbortSignal): AsyncGenerator<EtcdWatchEvent, void, undefined> {
  for await (const e of watchCore(transport, key, options, closed, false)) {
    if (e.type !== "REVISION") yield e;
  }
}

/**
 * {@link watchStream}, one item per revision: all the changes a revision made to the keys
 * watched come as one {@link EtcdRevisionEvent} (rule 1 makes a revision whole), so a
 * consumer can act on a revision as soon as it arrives.
 *
 * @example
 * ```ts
 * for await (const r of watchRevisions(transport, "app/", { prefix: true, startRevision: 5n })) {
 *   if (r.type === "REVISION") console.log(r.revision, r.events.length);
 * }
 * ```
 */
export function watchRevisions(transport: Transport, key: EtcdBytes, options: EtcdWatchOptions = {}, closed?: AbortSignal): AsyncGenerator<EtcdRevisionEvent | EtcdProgressEvent, void, undefined> {
  return watchCore(transport, key, options, closed, true) as AsyncGenerator<EtcdRevisionEvent | EtcdProgressEvent, void, undefined>;
}

async function* watchCore(transport: Transport, key: EtcdBytes, options: EtcdWatchOptions, closed: AbortSignal | undefined, byRevision: boolean): AsyncGenerator<EtcdWatchEvent | EtcdRevisionEvent, void, undefined> {
  const signal = options.signal;
  if (signal?.aborted || closed?.aborted) return;
  // One controller ends whatever stream is open: the caller's signal, the client closing,
  // or the consumer leaving the loop (finally below).
  const stop = new AbortController();
  const onStop = () => stop.abort();
  signal?.addEventListener("abort", onStop, { once: true });
  closed?.addEventListener("abort", onStop, { once: true });
  const rangeEnd = options.prefix ? prefixEnd(key) : options.rangeEnd;
  let next: bigint | undefined = options.startRevision; // undefined: "now", until the first header says which
  try {
    // Since when no stream has been good (created): opening one, the first time or again
    // after a break, gets requestTimeoutMs from then, not per attempt.
    let brokenSince: number | undefined = performance.now();
    let reopens = 0;
    let broken: StreamBroken | undefined;
    for (;;) {
      if (stop.signal.aborted) return;
      const create: Json = { key: b64(key) };
      if (rangeEnd !== undefined) create.range_end = b64(rangeEnd);
      if (next !== undefined) create.start_revision = next.toString();
      if (options.prevKv) create.prev_kv = true;
      if (options.progressNotify) create.progress_notify = true;
      if (byRevision) create.fragment = true; // rule 1
      const deadline = (brokenSince ?? performance.now()) + transport.requestTimeoutMs;
      let opened;
      try {
        opened = await transport.openStream("/v3/watch", { create_request: create }, deadline, stop.signal);
      } catch (e) {
        if (stop.signal.aborted) return;
        if (e instanceof TxtDbError && e.code === "UNAVAILABLE" && next !== undefined) {
          // Say where to pick up: a new watch from `next` misses nothing and repeats nothing.
          throw new TxtDbError("UNAVAILABLE", `${e.message}; watch again from revision ${next} to miss nothing`, { cause: e, details: { ...e.details, resumeFrom: next } });
        }
        throw e;
      }
      const { res, endpoint, abort } = opened;
      const lines = new LineReader(res.body!);
      const onAbort = () => abort();
      stop.signal.addEventListener("abort", onAbort, { once: true });
      let created = false;
      // Rule 1: the events of the revision a fragment ended in, waiting for the next line. A
      // stream that breaks drops them: `next` was not moved past their revision.
      let carry: EtcdChangeEvent[] = [];
      // The creation reply must come within what is left of the deadline: a frozen member
      // answers the HTTP request (its kernel does) but never the watch.
      const createTimer = armTimer(Math.max(0, deadline - performance.now()), () => abort(new StreamBroken("no watch creation reply in time")));
      try {
        for (;;) {
          let line: string | undefined;
          try {
            line = await lines.next();
          } catch (e) {
            if (stop.signal.aborted) return;
            if (e instanceof TxtDbError) throw e;
            throw new StreamBroken(`the stream from ${endpoint} broke: ${String((e as Error)?.message ?? e)}`);
          }
          if (line === undefined) throw new StreamBroken(`the stream from ${endpoint} ended`);
          let msg: Json;
          try {
            msg = asObject(JSON.parse(line));
          } catch {
            throw new StreamBroken(`the stream from ${endpoint} sent a line that is not JSON`);
          }
          if (msg.error !== undefined) {
            const err = asObject(msg.error);
            const message = typeof err.message === "string" ? err.message : JSON.stringify(msg.error);
            const d = classify({ grpcCode: typeof err.grpc_code === "number" ? err.grpc_code : 0, message, httpStatus: 200 });
            if (d.kind === "auth") transport.invalidateToken();
            if (d.kind === "final") throw new TxtDbError(d.code, `The watch at ${endpoint} failed: ${message}; ${d.hint}`, { details: { endpoint, etcdError: message } });
            throw new StreamBroken(`the stream from ${endpoint} failed: ${message}`);
          }
          const result = asObject(msg.result);
          const header = decodeHeader(result.header);
          if (result.canceled === true) {
            const compact = int64(result.compact_revision);
            if (compact > 0n) throw new EtcdCompactedError("watch", next ?? 0n, compact, endpoint);
            const reason = typeof result.cancel_reason === "string" ? result.cancel_reason : "";
            const d = classify({ grpcCode: 0, message: reason, httpStatus: 200 });
            if (d.kind === "final") throw new TxtDbError(d.code, `etcd at ${endpoint} cancelled the watch: ${reason}; ${d.hint}`, { details: { endpoint, etcdError: reason } });
            if (d.kind === "auth") transport.invalidateToken();
            throw new StreamBroken(`etcd at ${endpoint} cancelled the watch${reason ? `: ${reason}` : ""}`);
          }
          if (!created) {
            // The first reply of a stream is the creation; only then is the stream good.
            created = true;
            createTimer.cancel();
            brokenSince = undefined;
            reopens = 0;
            transport.promote(endpoint);
            if (next === undefined) next = header.revision + 1n;
            if (result.created === true) continue;
          }
          const events = asList(result.events);
          if (events.length === 0) {
            // A progress notification (or an empty reply): nothing before header.revision + 1 is still to come.
            if (header.revision + 1n > (next ?? 0n)) next = header.revision + 1n;
            if (options.progressNotify && header.revision > 0n) yield { type: "PROGRESS", revision: header.revision };
            continue;
          }
          const batch: EtcdChangeEvent[] = events.map((raw) => {
            const ev = asObject(raw);
            const kv = decodeKeyValue(ev.kv);
            const out: EtcdChangeEvent = { type: ev.type === "DELETE" ? "DELETE" : "PUT", kv, revision: kv.modRevision };
            if (ev.prev_kv !== undefined) out.prevKv = decodeKeyValue(ev.prev_kv);
            return out;
          });
          if (byRevision) {
            // One reply may hold several revisions (catching up from history): split it.
            let group: EtcdChangeEvent[] = carry;
            carry = [];
            for (const e of batch) {
              if (next !== undefined && e.revision < next) continue;
              if (group.length > 0 && group[0]!.revision !== e.revision) {
                yield { type: "REVISION", revision: group[0]!.revision, events: group };
                next = group[0]!.revision + 1n;
                group = [];
              }
              group.push(e);
            }
            if (result.fragment === true) carry = group; // its revision may go on in the next line
            else if (group.length > 0) yield { type: "REVISION", revision: group[0]!.revision, events: group };
          } else {
            for (const e of batch) {
              // A resumed stream starts at `next`, so nothing handed out comes again.
              if (next !== undefined && e.revision < next) continue;
              yield e;
            }
          }
          const last = carry.length > 0 ? carry[0]!.revision : batch[batch.length - 1]!.revision + 1n;
          if (next === undefined || last > next) next = last;
        }
      } catch (e) {
        if (!(e instanceof StreamBroken)) throw e;
        if (stop.signal.aborted) return;
        transport.demote(endpoint);
        brokenSince ??= performance.now();
        broken = e;
      } finally {
        createTimer.cancel();
        stop.signal.removeEventListener("abort", onAbort);
        lines.cancel();
        abort();
      }
      // A stream that failed before it was created ("no leader" on every member, say) is
      // not opened again at once: pause, doubling, within what is left of the deadline.
      const pauseMs = Math.min(REOPEN_PAUSE_MS_MIN * 2 ** reopens++, REOPEN_PAUSE_MS_MAX, (brokenSince ?? performance.now()) + transport.requestTimeoutMs - performance.now());
      if (pauseMs > 0) await pause(pauseMs, stop.signal);
      if (stop.signal.aborted) return;
      if (performance.now() >= (brokenSince ?? performance.now()) + transport.requestTimeoutMs) {
        const resume = next === undefined ? "" : `; watch again from revision ${next} to miss nothing`;
        throw new TxtDbError("UNAVAILABLE", `etcd cluster [${transport.endpoints.join(", ")}] could not serve the watch within requestTimeoutMs (${transport.requestTimeoutMs} ms) (last: ${broken?.message ?? "unknown"})${resume}`, {
          details: { endpoints: [...transport.endpoints], resumeFrom: next, requestTimeoutMs: transport.requestTimeoutMs },
        });
      }
    }
  } finally {
    signal?.removeEventListener("abort", onStop);
    closed?.removeEventListener("abort", onStop);
    stop.abort();
  }
}
