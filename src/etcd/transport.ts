/**
 * Requests to an etcd cluster over its JSON gateway: one POST per call, several endpoints,
 * a deadline on every call, failover and the retry rules of client.ts, and the auth token.
 *
 * Endpoint choice: calls go to the endpoint that answered last; a failure moves the
 * preference to the next one, so a dead or frozen member costs one failed attempt, not one
 * per call.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { armTimer } from "../timers.ts";
import { classify, describeThrown, EtcdCompactedError, neverSent } from "./failures.ts";
import type { EtcdFailure } from "./failures.ts";
import type { Json } from "./wire.ts";
import { asObject, int64 } from "./wire.ts";

/** The `fetch` the client calls: the global one unless a test or a proxy passes another. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/**
 * What sending a call twice would do, which decides its retries. `idempotent` (reads,
 * compaction, lease renewal and revocation): nothing more than sending it once, so any
 * failure is resent, to another member, until the deadline. `write`: resent only while it
 * certainly was not applied (connection refused, or etcd's answer says so).
 */
export type CallKind = "idempotent" | "write";

/** Attempts per call at most, whatever the deadline (a bound on a hot failure loop). */
export const ATTEMPTS_PER_CALL_MAX = 32;
/** No attempt starts with less time than this left before the deadline. */
export const ATTEMPT_MS_MIN = 25;
/** Pause after a round in which every endpoint failed: doubles from this... */
export const BACKOFF_MS_MIN = 50;
/** ...up to this. */
export const BACKOFF_MS_MAX = 800;

/** Options of a {@link Transport}. */
export interface TransportOptions {
  /** Base URLs, such as "http://10.0.0.5:2379". */
  endpoints: readonly string[];
  requestTimeoutMs: number;
  username?: string | undefined;
  password?: string | undefined;
  fetch: FetchLike;
}

/** Options of {@link Transport.call}. */
export interface CallOptions {
  /** When the call gives up, on performance.now()'s clock (default: requestTimeoutMs from now). */
  deadline?: number;
  /** Ask this endpoint only (a member's own status), with no failover. */
  only?: string | undefined;
  /** Send etcd's require-leader flag (default true); see {@link Transport.headers}. */
  requireLeader?: boolean;
}

/** One failed attempt, kept for the error message. */
interface Attempt {
  endpoint: string;
  what: string;
}

/** The outcome of one POST to one endpoint. */
type Outcome =
  | { ok: true; body: Json; endpoint: string }
  | { ok: false; kind: "refused" | "timeout" | "broken"; what: string }
  | { ok: false; kind: "etcd"; failure: EtcdFailure; what: string };

const TIMED_OUT = Symbol("etcd request timed out");
const now = () => performance.now();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => armTimer(ms, resolve));
}

/** Sends the client's requests; see the module comment. */
export class Transport {
  readonly endpoints: readonly string[];
  readonly requestTimeoutMs: number;
  readonly #fetch: FetchLike;
  readonly #username: string | undefined;
  readonly #password: string | undefined;
  /** Index of the endpoint calls go to first. */
  #preferred = 0;
  /** The auth token, once authenticated; undefined without credentials or auth off. */
  #token: string | undefined;
  /** The authentication in flight, shared by every call that needs a token. */
  #authenticating: Promise<void> | undefined;
  /** Whether credentials were exchanged for a token at least once (auth may be off). */
  #authenticated = false;
  /** How many times credentials were exchanged for a token (tests read it). */
  authentications = 0;

  constructor(options: TransportOptions) {
    this.endpoints = options.endpoints;
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.#fetch = options.fetch;
    this.#username = options.username;
    this.#password = options.password;
  }

  /** The endpoint calls try first. */
  get preferred(): string {
    return this.endpoints[this.#preferred]!;
  }

  /** Moves the preference past `endpoint` (it failed). */
  demote(endpoint: string): void {
    if (this.endpoints[this.#preferred] === endpoint) this.#preferred = (this.#preferred + 1) % this.endpoints.length;
  }

  /** Makes `endpoint` the one calls try first (it answered). */
  promote(endpoint: string): void {
    const i = this.endpoints.indexOf(endpoint);
    if (i >= 0) this.#preferred = i;
  }

  /**
   * Headers of a request: the token once there is one, and unless `requireLeader` is
   * false, etcd's require-leader flag. The gateway passes `Grpc-Metadata-*` headers on as
   * gRPC metadata, and with `hasleader: true` a member that has lost its leader answers
   * at once with "etcdserver: no leader" (before the request reaches raft, so a write was
   * certainly not applied) instead of holding the request until its own timeout, and
   * cancels a watch stream rather than leaving it silent. Only a serializable read (and a
   * member's status) wants an answer from a member without a leader.
   */
  headers(requireLeader = true): Record<string, string> {
    const h: Record<string, string> = { "content-type": "application/json" };
    if (this.#token !== undefined) h.authorization = this.#token;
    if (requireLeader) h["grpc-metadata-hasleader"] = "true";
    return h;
  }

  /** Milliseconds from now to a `performance.now()` deadline. */
  static remainingMs(deadline: number): number {
    return deadline - now();
  }

  /** The deadline of a call that starts now. */
  deadline(): number {
    return now() + this.requestTimeoutMs;
  }

  /**
   * POSTs `body` to `path`, with failover, retries per `kind`, and the deadline; resolves
   * with the reply's JSON. Fails with `TxtDbError`: `UNAVAILABLE` when no member answered
   * usefully in time (`details.outcome` says whether a write may have been applied),
   * `LIMIT`, `INVALID_ARGUMENT`, `UNSUPPORTED` or an {@link EtcdCompactedError} when etcd
   * refused it.
   */
  async call(path: string, body: Json, kind: CallKind, options: CallOptions = {}): Promise<Json> {
    const { deadline = this.deadline(), only, requireLeader = true } = options;
    const text = JSON.stringify(body);
    const failures: Attempt[] = [];
    let reauthenticated = false;
    let triedThisRound = 0;
    let rounds = 0;
    for (let attempt = 0; attempt < ATTEMPTS_PER_CALL_MAX; attempt++) {
      if (this.#username !== undefined && !this.#authenticated) await this.#authenticate(deadline, failures);
      const remaining = Transport.remainingMs(deadline);
      // An attempt this close to the deadline could only time out, and a write that times
      // out counts as of unknown outcome although it may never have been sent.
      if (remaining < ATTEMPT_MS_MIN) break;
      // A read may move on, so one frozen member must not eat the whole deadline: it gets
      // a share of what is left per endpoint not yet tried this round. A write gets all of
      // it, since a write that times out is not resent anyway.
      const untried = only !== undefined ? 1 : Math.max(1, this.endpoints.length - triedThisRound);
      const budget = kind === "idempotent" ? Math.max(remaining / untried, Math.min(remaining, 250)) : remaining;
      // `only`: a question for one member (its status), never answered by another.
      const endpoint = only ?? this.preferred;
      const out = await this.#post(endpoint, path, text, budget, this.headers(requireLeader));
      if (out.ok) {
        if (only === undefined) this.promote(endpoint);
        return out.body;
      }
      failures.push({ endpoint, what: out.what });
      let resend: boolean;
      switch (out.kind) {
        case "refused":
          resend = true;
          break;
        case "timeout":
        case "broken":
          resend = kind === "idempotent";
          break;
        case "etcd": {
          const d = classify(out.failure);
          if (d.kind === "auth") {
            if (this.#username === undefined) {
              throw new TxtDbError("INVALID_ARGUMENT", `etcd at ${endpoint} requires authentication for ${path} (${out.failure.message}); pass username and password`, { details: this.#details(endpoint, path, out.failure) });
            }
            if (reauthenticated) throw this.#unavailable(path, "not-applied", failures, "etcd kept refusing fresh auth tokens");
            reauthenticated = true;
            this.#token = undefined;
            this.#authenticated = false;
            attempt--; // a stale token is not a failed attempt of the call
            continue;
          }
          if (d.kind === "compacted") throw new EtcdCompactedError("range", int64(body.revision), 0n, endpoint);
          if (d.kind === "final") {
            throw new TxtDbError(d.code, `etcd at ${endpoint} refused ${path}: ${out.failure.message}; ${d.hint}`, { details: this.#details(endpoint, path, out.failure) });
          }
          resend = d.kind === "retry" || kind === "idempotent";
          break;
        }
      }
      // The endpoint failed either way: the next call (a fence asking whether this write
      // landed, most often) goes to another member first, not to the same frozen one.
      if (only === undefined) this.demote(endpoint);
      if (!resend) throw this.#unavailable(path, "unknown", failures, "a write whose outcome is unknown is not resent");
      if (++triedThisRound >= (only !== undefined ? 1 : this.endpoints.length)) {
        // Every endpoint failed once: wait a little (an election takes about a second)
        // rather than hammer them, then go round again.
        triedThisRound = 0;
        const pause = Math.min(BACKOFF_MS_MIN * 2 ** rounds++, BACKOFF_MS_MAX, Transport.remainingMs(deadline) - ATTEMPT_MS_MIN);
        if (pause <= 0) break;
        await sleep(pause);
      }
    }
    throw this.#unavailable(path, "not-applied", failures, failures.length >= ATTEMPTS_PER_CALL_MAX ? `no useful answer in ${ATTEMPTS_PER_CALL_MAX} attempts` : `no useful answer within requestTimeoutMs (${this.requestTimeoutMs} ms)`);
  }

  /** One POST to one endpoint within `budgetMs`; never throws. */
  async #post(endpoint: string, path: string, text: string, budgetMs: number, headers: Record<string, string>): Promise<Outcome> {
    const ac = new AbortController();
    // Not unref'd: a caller awaits the reply, so the process should wait for it too.
    const timer = armTimer(budgetMs, () => ac.abort(TIMED_OUT));
    try {
      const res = await this.#fetch(endpoint + path, { method: "POST", headers, body: text, signal: ac.signal });
      const reply = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(reply);
      } catch {
        json = undefined;
      }
      if (res.ok && typeof json === "object" && json !== null) return { ok: true, body: json as Json, endpoint };
      const o = asObject(json);
      const message = typeof o.error === "string" ? o.error : typeof o.message === "string" ? o.message : `HTTP ${res.status} ${reply.slice(0, 120)}`;
      const failure: EtcdFailure = { grpcCode: typeof o.code === "number" ? o.code : 0, message, httpStatus: res.status };
      return { ok: false, kind: "etcd", failure, what: message };
    } catch (e) {
      if (ac.signal.aborted && ac.signal.reason === TIMED_OUT) return { ok: false, kind: "timeout", what: `no reply within ${Math.round(budgetMs)} ms` };
      return { ok: false, kind: neverSent(e) ? "refused" : "broken", what: describeThrown(e) };
    } finally {
      timer.cancel();
    }
  }

  /** Exchanges the credentials for a token, once for all the calls waiting on it. */
  async #authenticate(deadline: number, failures: Attempt[]): Promise<void> {
    this.#authenticating ??= (async () => {
      try {
        const reply = await this.#authCall(deadline, failures);
        this.#token = reply;
        this.#authenticated = true;
        this.authentications++;
      } finally {
        this.#authenticating = undefined;
      }
    })();
    await this.#authenticating;
  }

  /** The token for the credentials (undefined: auth is off, so none is needed). */
  async #authCall(deadline: number, failures: Attempt[]): Promise<string | undefined> {
    const text = JSON.stringify({ name: this.#username, password: this.#password ?? "" });
    for (let attempt = 0; attempt < ATTEMPTS_PER_CALL_MAX; attempt++) {
      const remaining = Transport.remainingMs(deadline);
      if (remaining <= 0) break;
      const endpoint = this.preferred;
      // Authenticate goes through raft (the token is assigned on every member), so it can
      // time out like a write; it changes nothing a caller sees, so it is resent freely.
      const out = await this.#post(endpoint, "/v3/auth/authenticate", text, Math.max(remaining / this.endpoints.length, Math.min(remaining, 250)), { "content-type": "application/json", "grpc-metadata-hasleader": "true" });
      if (out.ok) {
        this.promote(endpoint);
        const token = out.body.token;
        return typeof token === "string" && token !== "" ? token : undefined;
      }
      failures.push({ endpoint, what: out.what });
      if (out.kind === "etcd") {
        if (/authentication is not enabled/.test(out.failure.message)) return undefined;
        const d = classify(out.failure);
        if (d.kind === "final") throw new TxtDbError(d.code, `etcd at ${endpoint} refused to authenticate user ${JSON.stringify(this.#username)}: ${out.failure.message}; ${d.hint}`, { details: this.#details(endpoint, "/v3/auth/authenticate", out.failure) });
      }
      this.demote(endpoint);
      if ((attempt + 1) % this.endpoints.length === 0) await sleep(Math.min(BACKOFF_MS_MAX, Math.max(0, Transport.remainingMs(deadline))));
    }
    throw this.#unavailable("/v3/auth/authenticate", "not-applied", failures, `could not authenticate within requestTimeoutMs (${this.requestTimeoutMs} ms)`);
  }

  /**
   * Opens a streaming POST (a watch) on the preferred endpoint, failing over on refused
   * connections and timeouts until `deadline`; resolves once the reply's headers arrived,
   * with the reply, the endpoint, and how to close the stream.
   */
  async openStream(path: string, body: Json, deadline: number, signal: AbortSignal | undefined): Promise<{ res: Response; endpoint: string; abort: (reason?: unknown) => void }> {
    const text = JSON.stringify(body);
    const failures: Attempt[] = [];
    let reauthenticated = false;
    for (let attempt = 0; attempt < ATTEMPTS_PER_CALL_MAX; attempt++) {
      if (this.#username !== undefined && !this.#authenticated) await this.#authenticate(deadline, failures);
      const remaining = Transport.remainingMs(deadline);
      if (remaining <= 0) break;
      if (signal?.aborted) throw signal.reason;
      const endpoint = this.preferred;
      const ac = new AbortController();
      const onAbort = () => ac.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      const budget = Math.max(remaining / this.endpoints.length, Math.min(remaining, 250));
      const timer = armTimer(budget, () => ac.abort(TIMED_OUT));
      const abort = (reason?: unknown) => {
        signal?.removeEventListener("abort", onAbort);
        ac.abort(reason);
      };
      let what: string;
      try {
        const res = await this.#fetch(endpoint + path, { method: "POST", headers: this.headers(), body: text, signal: ac.signal });
        if (res.ok) {
          timer.cancel();
          return { res, endpoint, abort };
        }
        const reply = await res.text().catch(() => "");
        let o: Json = {};
        try {
          o = asObject(JSON.parse(reply));
        } catch { /* not JSON: described below */ }
        const failure: EtcdFailure = { grpcCode: typeof o.code === "number" ? o.code : 0, message: typeof o.error === "string" ? o.error : `HTTP ${res.status} ${reply.slice(0, 120)}`, httpStatus: res.status };
        const d = classify(failure);
        if (d.kind === "auth" && this.#username !== undefined && !reauthenticated) {
          reauthenticated = true;
          this.#token = undefined;
          this.#authenticated = false;
          abort();
          continue;
        }
        if (d.kind === "final" || d.kind === "auth") {
          abort();
          const [code, hint] = d.kind === "final"
            ? [d.code, d.hint]
            : this.#username === undefined
            ? ["INVALID_ARGUMENT" as const, "pass username and password"]
            : ["UNAVAILABLE" as const, "etcd refused a freshly issued auth token; retry later"];
          throw new TxtDbError(code, `etcd at ${endpoint} refused ${path}: ${failure.message}; ${hint}`, { details: this.#details(endpoint, path, failure) });
        }
        what = failure.message;
      } catch (e) {
        if (e instanceof TxtDbError) throw e;
        if (signal?.aborted) throw signal.reason;
        what = ac.signal.reason === TIMED_OUT ? `no reply within ${Math.round(budget)} ms` : describeThrown(e);
      } finally {
        timer.cancel();
      }
      abort();
      failures.push({ endpoint, what });
      this.demote(endpoint);
      if ((attempt + 1) % this.endpoints.length === 0) await sleep(Math.min(BACKOFF_MS_MAX, Math.max(0, Transport.remainingMs(deadline))));
    }
    throw this.#unavailable(path, "not-applied", failures, `could not open a stream within requestTimeoutMs (${this.requestTimeoutMs} ms)`);
  }

  /** Drops the token after a stream reported it invalid, so the next call authenticates. */
  invalidateToken(): void {
    this.#token = undefined;
    this.#authenticated = false;
  }

  #details(endpoint: string, path: string, f: EtcdFailure): Record<string, unknown> {
    return { endpoint, path, grpcCode: f.grpcCode, etcdError: f.message, httpStatus: f.httpStatus };
  }

  /**
   * The UNAVAILABLE error of a call that got no useful answer. `outcome`: "unknown" when a
   * write may have been applied (it reached etcd and the answer was lost or inconclusive),
   * "not-applied" when nothing was (reads, and writes that never reached etcd).
   */
  #unavailable(path: string, outcome: "unknown" | "not-applied", failures: Attempt[], why: string): TxtDbError {
    // The last failure of each endpoint tried, in the order they last failed.
    const last = new Map<string, string>();
    for (const f of failures) {
      last.delete(f.endpoint);
      last.set(f.endpoint, f.what);
    }
    const tried = [...last].map(([endpoint, what]) => `${endpoint}: ${what}`).join("; ");
    const what = outcome === "unknown"
      ? "the write may or may not have been applied: read its keys (or compare their revisions) before writing again"
      : "nothing was applied; check that the endpoints name running etcd members, and retry once the cluster is reachable and has quorum";
    return new TxtDbError(
      "UNAVAILABLE",
      `etcd cluster [${this.endpoints.join(", ")}] did not serve ${path}: ${why} (${tried || "no attempt"}); ${what}`,
      { details: { path, endpoints: [...this.endpoints], outcome, attempts: failures.length, requestTimeoutMs: this.requestTimeoutMs } },
    );
  }
}
