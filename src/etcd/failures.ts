/**
 * What went wrong talking to etcd, sorted by what the client may do about it.
 *
 * Two questions decide a retry: did the request reach etcd at all, and if it did, could
 * etcd have applied it? A connection that was refused never carried the request; an
 * answer from etcd that rejects the request before proposing it to raft ("too many
 * requests", "raft proposal dropped", an invalid auth token) carries its own proof that
 * nothing was applied. Everything else that fails a write (a timeout, a reset connection,
 * "request timed out", "leader changed") leaves its outcome unknown: the proposal may be
 * in the raft log and be applied later.
 *
 * Error texts are etcd 3.4's (api/v3rpc/rpctypes/error.go); grpc-gateway answers a failed
 * call with an HTTP error status and `{"error", "message", "code"}`, `code` being the
 * gRPC status code, and fails a stream with a line `{"error": {"grpc_code", "message"}}`.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";

/** A failure etcd (or its gateway) reported, as it arrived. */
export interface EtcdFailure {
  /** The gRPC status code (0 when the reply had none). */
  grpcCode: number;
  /** etcd's error text, such as "etcdserver: request timed out". */
  message: string;
  /** The HTTP status of the reply (200 for a failure inside a stream). */
  httpStatus: number;
}

/**
 * How the client treats a failure:
 * - `auth`: the token is missing, expired or stale; authenticate again and resend (etcd
 *   checks the token before proposing, so nothing was applied).
 * - `retry`: transient and certainly not applied; resend, to another member.
 * - `unknown`: transient, but a write may have been applied; reads resend, writes stop.
 * - `final`: resending cannot help; fail with `code`.
 */
export type Disposition =
  | { kind: "auth" }
  | { kind: "retry" }
  | { kind: "unknown" }
  | { kind: "compacted" }
  | { kind: "final"; code: ErrorCode; hint: string };

// gRPC status codes the gateway sends.
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const PERMISSION_DENIED = 7;
const RESOURCE_EXHAUSTED = 8;
const FAILED_PRECONDITION = 9;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;

/** Sorts a failure etcd reported. */
export function classify(f: EtcdFailure): Disposition {
  const m = f.message;
  // Size limits: etcd's --max-request-bytes (default 1.5 MiB), gRPC's own receive limit
  // (that plus 512 KiB, hit by the gateway first for larger requests), --max-txn-ops
  // (default 128), and the backend quota (--quota-backend-bytes, alarm NOSPACE).
  if (/request is too large/.test(m) || /larger than max/.test(m)) return { kind: "final", code: "LIMIT", hint: "the request is larger than etcd's --max-request-bytes (1.5 MiB unless configured); write less per request" };
  if (/too many operations in txn request/.test(m)) return { kind: "final", code: "LIMIT", hint: "the transaction has more compares, or more success or failure operations, than etcd's --max-txn-ops (128 each unless configured); split it or compare over key ranges" };
  if (/duplicate key given in txn request/.test(m)) return { kind: "final", code: "INVALID_ARGUMENT", hint: "a txn branch may put or delete each key once; merge the operations on that key" };
  if (/etcdserver: no space/.test(m)) return { kind: "final", code: "LIMIT", hint: "etcd's storage quota (--quota-backend-bytes) is full; compact and defragment the cluster, then disarm the NOSPACE alarm" };
  if (/required revision has been compacted/.test(m)) return { kind: "compacted" };
  if (/invalid auth token|user name is empty|revision of auth store is old/.test(m) || f.grpcCode === UNAUTHENTICATED) return { kind: "auth" };
  if (/authentication failed|invalid user ID or password/.test(m)) return { kind: "final", code: "INVALID_ARGUMENT", hint: "etcd refused the username and password; check the credentials" };
  if (f.grpcCode === PERMISSION_DENIED || /permission denied/.test(m)) return { kind: "final", code: "INVALID_ARGUMENT", hint: "the etcd user lacks a role that permits this on these keys; grant one (etcdctl role grant-permission)" };
  // Rejected before the proposal reached raft: safe to send again, to any member.
  if (/too many requests|no leader|not capable|raft proposal dropped|unhealthy cluster/.test(m)) return { kind: "retry" };
  // The proposal may be in the log already, or the member stopped in the middle.
  if (/request timed out|leader changed|server stopped|request cancelled|timed out waiting for read index/.test(m)) return { kind: "unknown" };
  if (f.grpcCode === UNAVAILABLE || f.grpcCode === DEADLINE_EXCEEDED || f.httpStatus >= 500) return { kind: "unknown" };
  if (f.grpcCode === RESOURCE_EXHAUSTED) return { kind: "retry" };
  if (/future revision/.test(m)) return { kind: "final", code: "INVALID_ARGUMENT", hint: "the revision asked for is newer than the store's; read at the current revision or an older one" };
  if (f.grpcCode === NOT_FOUND) return { kind: "final", code: "INVALID_ARGUMENT", hint: "etcd does not know it (an expired or revoked lease, most often)" };
  if (f.grpcCode === INVALID_ARGUMENT || f.grpcCode === FAILED_PRECONDITION) return { kind: "final", code: "INVALID_ARGUMENT", hint: "etcd rejected the request as malformed; nothing was applied" };
  if (f.httpStatus === 404) return { kind: "final", code: "UNSUPPORTED", hint: "the endpoint does not serve etcd's v3 JSON gateway; use etcd 3.4 or newer" };
  return { kind: "final", code: "UNAVAILABLE", hint: "etcd failed the request in a way the client does not know; it may or may not have been applied" };
}

/**
 * True when a fetch failure proves the request never left this process or never reached
 * the server: the connection was refused, the host did not resolve or was unreachable.
 * Runtimes word it differently (Node: `cause.code` ECONNREFUSED; Bun: `code`
 * ECONNREFUSED; Deno: "client error (Connect): tcp connect error"), so both codes and
 * texts are read, along the `cause` chain.
 */
export function neverSent(e: unknown): boolean {
  const codes = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL|ConnectionRefused)$/;
  const texts = /ECONNREFUSED|Connection refused|ConnectionRefused|client error \(Connect\)|ENOTFOUND|EAI_AGAIN|dns error|EHOSTUNREACH|ENETUNREACH|No route to host|Network is unreachable/i;
  let c: unknown = e;
  for (let depth = 0; depth < 6 && c !== undefined && c !== null; depth++) {
    const { code, message } = c as { code?: unknown; message?: unknown };
    if (typeof code === "string" && codes.test(code)) return true;
    if (typeof message === "string" && texts.test(message)) return true;
    c = (c as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Whether `e` is etcd refusing a request because a lease it names does not exist (it
 * expired or was revoked): a put under it, in a txn whose branch ran, or a renewal. Such a
 * request changed nothing.
 */
export function isLeaseNotFound(e: unknown): boolean {
  return e instanceof TxtDbError && /lease not found/.test(String(e.details?.etcdError));
}

/** A one-line description of a thrown fetch failure, with its causes. */
export function describeThrown(e: unknown): string {
  const parts: string[] = [];
  let c: unknown = e;
  for (let depth = 0; depth < 4 && c !== undefined && c !== null; depth++) {
    const { code, message } = c as { code?: unknown; message?: unknown };
    const text = typeof message === "string" ? message : String(c);
    parts.push(typeof code === "string" && !text.includes(code) ? `${text} (${code})` : text);
    c = (c as { cause?: unknown }).cause;
  }
  return parts.join(": ");
}

/**
 * A read or watch at a revision etcd has compacted away. `compactRevision` is the oldest
 * revision still kept when etcd said which (a watch does; a range does not). The code is
 * `WATCH_OVERFLOW` for a watch (resume from a newer revision, after reading the current
 * state) and `INVALID_ARGUMENT` for a read at a revision (read at a newer one).
 *
 * @example
 * ```ts
 * try { for await (const e of client.watch("k", { startRevision: 1n })) {} }
 * catch (e) { if (e instanceof EtcdCompactedError) console.log(e.compactRevision); }
 * ```
 */
export class EtcdCompactedError extends TxtDbError {
  /** The oldest revision etcd still has, when it said (0n: it did not). */
  readonly compactRevision: bigint;
  /** The revision that was asked for. */
  readonly requestedRevision: bigint;

  /** A compacted-history error for a read (`"range"`) or a watch (`"watch"`). */
  constructor(what: "range" | "watch", requestedRevision: bigint, compactRevision: bigint, endpoint: string) {
    const kept = compactRevision > 0n ? `etcd keeps history from revision ${compactRevision} on` : "etcd compacted that history";
    super(
      what === "watch" ? "WATCH_OVERFLOW" : "INVALID_ARGUMENT",
      what === "watch"
        ? `Cannot watch from revision ${requestedRevision} at ${endpoint}: ${kept}; read the current state and watch from its revision + 1`
        : `Cannot read at revision ${requestedRevision} at ${endpoint}: ${kept}; read at a newer revision`,
      { details: { endpoint, requestedRevision, compactRevision } },
    );
    this.compactRevision = compactRevision;
    this.requestedRevision = requestedRevision;
  }
}
