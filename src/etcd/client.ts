/**
 * An etcd v3 client over etcd's JSON gateway (etcd 3.4 or newer), in plain TypeScript: the
 * global `fetch`, `TextEncoder`/`TextDecoder` and `AbortController` only, so it runs
 * unchanged on Node, Deno and Bun. It is the ground the etcd backend of `open("etcd://…")`
 * stands on; it does not know txtdb's keys or values.
 *
 * What it does: ranges, puts, deletes, transactions (compares on VALUE, VERSION, CREATE,
 * MOD and LEASE, over one key or a key range; success and failure ops), compaction,
 * watches that resume across members (watch.ts), leases with a keep-alive loop (lease.ts),
 * member status, and username/password auth (a token in the `Authorization` header,
 * fetched again when etcd calls it invalid). `etcds://` locations (url.ts) mean https;
 * certificates are checked against the runtime's trust store, and client certificates are
 * not supported.
 *
 * Numbers: revisions and lease ids are bigint (see wire.ts for why), counts and TTLs are
 * numbers. Keys and values are bytes; a string stands for its UTF-8 encoding.
 *
 * Retry rules (transport.ts carries them out):
 * 1. Every call is bounded by `requestTimeoutMs` (default 5000), failover and retries
 *    included; a watch gets that long to open, or reopen after a break.
 * 2. A call goes to the member that answered last; a failure moves it to the next.
 * 3. Idempotent calls (range, a txn of ranges only, compaction, lease keep-alive,
 *    time-to-live and revoke, authentication, status) are resent on any transient failure,
 *    to the next member, with a pause after each round of all members.
 * 4. Writes (put, delete, a txn with a put or delete, lease grant) are resent only when
 *    they certainly were not applied: the connection was refused (never sent), or etcd
 *    rejected them before proposing them ("too many requests", "raft proposal dropped",
 *    "no leader", a stale auth token). A write whose outcome is unknown (a timeout, a
 *    reset connection, "request timed out", "leader changed") is never resent by the
 *    client: it fails with `UNAVAILABLE` and `details.outcome: "unknown"`, and the caller
 *    must learn what happened (read the keys or their revisions) before writing again.
 * 5. Every request but a serializable read and a status carries etcd's require-leader
 *    flag, so a member without a leader answers "no leader" at once (nothing applied)
 *    rather than holding the request: with no quorum, a write sent to a live member is
 *    reported not applied; one sent to a frozen member times out, outcome unknown.
 * 6. When no member answers usefully in time (unreachable, no quorum), the call fails
 *    with `UNAVAILABLE`, `details.outcome` "not-applied" or "unknown" as above.
 *
 * Limits: etcd's, reported as `LIMIT`: a request over `--max-request-bytes` (1.5 MiB by
 * default; measured on the protobuf, so a value a little under that fails too), a txn
 * with more than `--max-txn-ops` operations (128), a full backend quota. A watch reply
 * line is read up to 64 MiB. A read or watch at a compacted revision fails with
 * {@link EtcdCompactedError} (`WATCH_OVERFLOW` for a watch).
 *
 * @example
 * ```ts
 * const etcd = new EtcdClient({ endpoints: ["http://127.0.0.1:2379"] });
 * const { revision } = await etcd.put("greeting", "hello");
 * const r = await etcd.txn({
 *   compare: [{ key: "greeting", target: "MOD", result: "EQUAL", modRevision: revision }],
 *   success: [{ op: "put", key: "greeting", value: "hello again" }],
 *   failure: [{ op: "range", key: "greeting" }],
 * });
 * etcd.close();
 * ```
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { EtcdCompactedError, isLeaseNotFound } from "./failures.ts";
import { EtcdLease } from "./lease.ts";
import { Transport } from "./transport.ts";
import type { CallKind, CallOptions, FetchLike } from "./transport.ts";
import { watchRevisions, watchStream } from "./watch.ts";
import type { EtcdProgressEvent, EtcdRevisionEvent, EtcdWatchEvent, EtcdWatchOptions } from "./watch.ts";
import type { EtcdBytes, EtcdHeader, EtcdKeyValue, Json } from "./wire.ts";
import { asList, asObject, b64, bytesField, decodeHeader, decodeKeyValue, decodeKeyValues, int64, int64Number, prefixEnd } from "./wire.ts";

/** The default bound on every call, in milliseconds. */
export const ETCD_REQUEST_TIMEOUT_MS_DEFAULT = 5000;

/** Options of {@link EtcdClient}. */
export interface EtcdClientOptions {
  /** Members' client URLs: "http://host:port", "https://host:port", or "host:port" (http). */
  endpoints: readonly string[];
  /** The bound on every call, retries included (default 5000 ms). */
  requestTimeoutMs?: number;
  /** With `password`: authenticate as this etcd user. */
  username?: string;
  password?: string;
  /** The `fetch` to use (default: the global one); tests pass one that fails on purpose. */
  fetch?: FetchLike;
}

/** Options of a range read. */
export interface EtcdRangeOptions {
  /** The end of the range, exclusive; "\0" means every key from `key` on. */
  rangeEnd?: EtcdBytes;
  /** Read every key that starts with `key` (sets `rangeEnd`). */
  prefix?: boolean;
  /** Read the store as it was at this revision (default: the newest). */
  revision?: bigint;
  /** At most this many keys (default: no limit); `more` says whether there were more. */
  limit?: number;
  /** Serve the read from the member's own state, without a quorum round: faster, maybe stale. */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  sortOrder?: "NONE" | "ASCEND" | "DESCEND";
  sortTarget?: "KEY" | "VERSION" | "CREATE" | "MOD" | "VALUE";
}

/** The result of a range read. */
export interface EtcdRangeResult {
  header: EtcdHeader;
  /** The store revision the read saw. */
  revision: bigint;
  kvs: EtcdKeyValue[];
  /** How many keys the range holds (all of them, not only the `limit` returned). */
  count: number;
  /** Whether keys beyond `limit` exist. */
  more: boolean;
}

/** Options of a put. */
export interface EtcdPutOptions {
  /** Attach the key to this lease (it is deleted when the lease ends). */
  lease?: bigint;
  /** Return the key-value the put replaced. */
  prevKv?: boolean;
}

/** The result of a put. */
export interface EtcdPutResult {
  header: EtcdHeader;
  /** The revision of the put. */
  revision: bigint;
  prevKv?: EtcdKeyValue;
}

/** Options of a delete. */
export interface EtcdDeleteOptions {
  rangeEnd?: EtcdBytes;
  prefix?: boolean;
  prevKv?: boolean;
}

/** The result of a delete. */
export interface EtcdDeleteResult {
  header: EtcdHeader;
  revision: bigint;
  deleted: number;
  prevKvs: EtcdKeyValue[];
}

/** How a compare relates the key's field (left) to the given value (right). */
export type EtcdCompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL";

/**
 * A condition of a txn, on one key or, with `rangeEnd`/`prefix`, on every key of a range
 * (all must satisfy it). A missing key has version, create and mod revision and lease 0,
 * and fails every VALUE compare.
 */
export type EtcdCompare =
  & { key: EtcdBytes; rangeEnd?: EtcdBytes; prefix?: boolean; result: EtcdCompareResult }
  & (
    | { target: "VALUE"; value: EtcdBytes }
    | { target: "VERSION"; version: number | bigint }
    | { target: "CREATE"; createRevision: bigint }
    | { target: "MOD"; modRevision: bigint }
    | { target: "LEASE"; lease: bigint }
  );

/** An operation of a txn. */
export type EtcdOp =
  | ({ op: "range"; key: EtcdBytes } & EtcdRangeOptions)
  | ({ op: "put"; key: EtcdBytes; value: EtcdBytes } & EtcdPutOptions)
  | ({ op: "delete"; key: EtcdBytes } & EtcdDeleteOptions);

/** The result of one operation of a txn, in the order of the ops. */
export type EtcdOpResult =
  | { op: "range"; kvs: EtcdKeyValue[]; count: number; more: boolean }
  | { op: "put"; prevKv?: EtcdKeyValue }
  | { op: "delete"; deleted: number; prevKvs: EtcdKeyValue[] };

/** A txn: if every compare holds, the success ops run, else the failure ops; atomically. */
export interface EtcdTxn {
  compare?: EtcdCompare[];
  success?: EtcdOp[];
  failure?: EtcdOp[];
}

/** The result of a txn. */
export interface EtcdTxnResult {
  header: EtcdHeader;
  /** The store revision after the txn (its own, when it wrote). */
  revision: bigint;
  /** Whether the compares held (so the success ops ran). */
  succeeded: boolean;
  responses: EtcdOpResult[];
}

/** A lease as granted. */
export interface EtcdGrantedLease {
  id: bigint;
  ttlSeconds: number;
}

/** What etcd says of a lease. */
export interface EtcdLeaseInfo {
  id: bigint;
  /** Seconds left; -1 when the lease expired or never existed. */
  ttlSeconds: number;
  grantedTtlSeconds: number;
  keys: Uint8Array[];
}

/** One member's status. */
export interface EtcdStatus {
  header: EtcdHeader;
  endpoint: string;
  version: string;
  memberId: bigint;
  /** The member id of the leader this member knows (0n: none). */
  leader: bigint;
  dbSize: number;
  raftIndex: bigint;
  raftTerm: bigint;
}

const SORT_ORDER = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
const SORT_TARGET = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;

function normalizeEndpoint(e: string): string {
  const m = /^(https?:\/\/)?([^/]+?)\/*$/.exec(e.trim());
  if (!m) throw new TxtDbError("INVALID_ARGUMENT", `The etcd endpoint ${JSON.stringify(e)} is not http(s)://host:port or host:port`);
  return `${m[1] ?? "http://"}${m[2]}`;
}

function rangeRequest(key: EtcdBytes, o: EtcdRangeOptions): Json {
  const r: Json = { key: b64(key) };
  const end = o.prefix ? prefixEnd(key) : o.rangeEnd;
  if (end !== undefined) r.range_end = b64(end);
  if (o.revision !== undefined) r.revision = checkRevision(o.revision, "revision").toString();
  if (o.limit !== undefined) {
    if (!Number.isSafeInteger(o.limit) || o.limit < 0) throw new TxtDbError("INVALID_ARGUMENT", `A range limit must be a whole number >= 0, not ${o.limit}`);
    r.limit = String(o.limit);
  }
  if (o.serializable) r.serializable = true;
  if (o.keysOnly) r.keys_only = true;
  if (o.countOnly) r.count_only = true;
  if (o.sortOrder) r.sort_order = SORT_ORDER[o.sortOrder];
  if (o.sortTarget) r.sort_target = SORT_TARGET[o.sortTarget];
  return r;
}

function putRequest(key: EtcdBytes, value: EtcdBytes, o: EtcdPutOptions): Json {
  const r: Json = { key: b64(key), value: b64(value) };
  if (o.lease !== undefined && o.lease !== 0n) r.lease = o.lease.toString();
  if (o.prevKv) r.prev_kv = true;
  return r;
}

function deleteRequest(key: EtcdBytes, o: EtcdDeleteOptions): Json {
  const r: Json = { key: b64(key) };
  const end = o.prefix ? prefixEnd(key) : o.rangeEnd;
  if (end !== undefined) r.range_end = b64(end);
  if (o.prevKv) r.prev_kv = true;
  return r;
}

function checkRevision(v: bigint, what: string): bigint {
  if (typeof v !== "bigint" || v < 0n) throw new TxtDbError("INVALID_ARGUMENT", `${what} must be a bigint >= 0n, not ${String(v)}`);
  return v;
}

function compareRequest(c: EtcdCompare): Json {
  const r: Json = { key: b64(c.key), result: c.result, target: c.target };
  const end = c.prefix ? prefixEnd(c.key) : c.rangeEnd;
  if (end !== undefined) r.range_end = b64(end);
  switch (c.target) {
    case "VALUE":
      r.value = b64(c.value);
      break;
    case "VERSION":
      r.version = String(c.version);
      break;
    case "CREATE":
      r.create_revision = checkRevision(c.createRevision, "createRevision").toString();
      break;
    case "MOD":
      r.mod_revision = checkRevision(c.modRevision, "modRevision").toString();
      break;
    case "LEASE":
      r.lease = c.lease.toString();
      break;
    default:
      throw new TxtDbError("INVALID_ARGUMENT", `A txn compare's target must be VALUE, VERSION, CREATE, MOD or LEASE, not ${JSON.stringify((c as { target: unknown }).target)}`);
  }
  return r;
}

function opRequest(o: EtcdOp): Json {
  switch (o.op) {
    case "range":
      return { request_range: rangeRequest(o.key, o) };
    case "put":
      return { request_put: putRequest(o.key, o.value, o) };
    case "delete":
      return { request_delete_range: deleteRequest(o.key, o) };
    default:
      throw new TxtDbError("INVALID_ARGUMENT", `A txn op must be range, put or delete, not ${JSON.stringify((o as { op: unknown }).op)}`);
  }
}

function opResult(raw: unknown): EtcdOpResult {
  const r = asObject(raw);
  if (r.response_range !== undefined) {
    const x = asObject(r.response_range);
    return { op: "range", kvs: decodeKeyValues(x.kvs), count: int64Number(x.count), more: x.more === true };
  }
  if (r.response_put !== undefined) {
    const x = asObject(r.response_put);
    return x.prev_kv !== undefined ? { op: "put", prevKv: decodeKeyValue(x.prev_kv) } : { op: "put" };
  }
  const x = asObject(r.response_delete_range);
  return { op: "delete", deleted: int64Number(x.deleted), prevKvs: decodeKeyValues(x.prev_kvs) };
}

/**
 * A client of one etcd cluster; see the module comment for what it does and its retry
 * rules. Cheap to create; `close()` ends its watches and lease loops.
 *
 * @example
 * ```ts
 * const etcd = new EtcdClient({ endpoints: ["127.0.0.1:2379"], requestTimeoutMs: 2000 });
 * await etcd.put("k", "v");
 * const { kvs } = await etcd.range("k");
 * etcd.close();
 * ```
 */
export class EtcdClient {
  readonly #transport: Transport;
  readonly #closed = new AbortController();
  readonly #leases = new Set<EtcdLease>();

  constructor(options: EtcdClientOptions) {
    if (!options || !Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new TxtDbError("INVALID_ARGUMENT", "An etcd client needs at least one endpoint (endpoints: [\"http://host:2379\", ...])");
    }
    const timeout = options.requestTimeoutMs ?? ETCD_REQUEST_TIMEOUT_MS_DEFAULT;
    if (!(timeout > 0) || !Number.isFinite(timeout)) throw new TxtDbError("INVALID_ARGUMENT", `requestTimeoutMs must be a finite number of milliseconds > 0, not ${timeout}`);
    if ((options.username === undefined) !== (options.password === undefined)) {
      throw new TxtDbError("INVALID_ARGUMENT", "Pass both username and password to authenticate with etcd, or neither");
    }
    const f = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (typeof f !== "function") throw new TxtDbError("UNSUPPORTED", "This runtime has no global fetch; pass one as the fetch option");
    this.#transport = new Transport({
      endpoints: [...new Set(options.endpoints.map(normalizeEndpoint))],
      requestTimeoutMs: timeout,
      username: options.username,
      password: options.password,
      fetch: (url, init) => f(url, init),
    });
  }

  /** The endpoints, normalized (http://host:port). */
  get endpoints(): readonly string[] {
    return this.#transport.endpoints;
  }

  /** The bound on every call, in milliseconds. */
  get requestTimeoutMs(): number {
    return this.#transport.requestTimeoutMs;
  }

  /** How many times this client exchanged its credentials for a token (first use, and each refresh). */
  get authentications(): number {
    return this.#transport.authentications;
  }

  async #call(path: string, body: Json, kind: CallKind, options: CallOptions = {}): Promise<Json> {
    if (this.#closed.signal.aborted) throw new TxtDbError("CLOSED", `Cannot call ${path}: the etcd client was closed`);
    return await this.#transport.call(path, body, kind, options);
  }

  /**
   * Reads `key`, or a range of keys with `rangeEnd` or `prefix`, at the newest revision or
   * at `revision`.
   *
   * @example
   * ```ts
   * const { kvs, revision } = await etcd.range("app/", { prefix: true, limit: 100 });
   * ```
   */
  async range(key: EtcdBytes, options: EtcdRangeOptions = {}): Promise<EtcdRangeResult> {
    // A serializable read is one a member answers alone, leader or not.
    const r = await this.#call("/v3/kv/range", rangeRequest(key, options), "idempotent", { requireLeader: options.serializable !== true });
    const header = decodeHeader(r.header);
    return { header, revision: header.revision, kvs: decodeKeyValues(r.kvs), count: int64Number(r.count), more: r.more === true };
  }

  /**
   * Writes `value` at `key`. Not resent when its outcome is unknown (see the module comment).
   *
   * @example
   * ```ts
   * const { revision } = await etcd.put("k", new Uint8Array([1, 2, 3]));
   * ```
   */
  async put(key: EtcdBytes, value: EtcdBytes, options: EtcdPutOptions = {}): Promise<EtcdPutResult> {
    const r = await this.#call("/v3/kv/put", putRequest(key, value, options), "write");
    const header = decodeHeader(r.header);
    const out: EtcdPutResult = { header, revision: header.revision };
    if (r.prev_kv !== undefined) out.prevKv = decodeKeyValue(r.prev_kv);
    return out;
  }

  /**
   * Deletes `key`, or a range with `rangeEnd` or `prefix`.
   *
   * @example
   * ```ts
   * const { deleted } = await etcd.deleteRange("app/", { prefix: true });
   * ```
   */
  async deleteRange(key: EtcdBytes, options: EtcdDeleteOptions = {}): Promise<EtcdDeleteResult> {
    const r = await this.#call("/v3/kv/deleterange", deleteRequest(key, options), "write");
    const header = decodeHeader(r.header);
    return { header, revision: header.revision, deleted: int64Number(r.deleted), prevKvs: decodeKeyValues(r.prev_kvs) };
  }

  /**
   * Runs a transaction: the success ops if every compare holds, else the failure ops. A
   * txn of range ops only is a read (resent freely); any put or delete makes it a write.
   *
   * @example
   * ```ts
   * const r = await etcd.txn({
   *   compare: [{ key: "k", target: "VERSION", result: "EQUAL", version: 0 }], // k does not exist
   *   success: [{ op: "put", key: "k", value: "first" }],
   * });
   * r.succeeded; // true the first time
   * ```
   */
  async txn(txn: EtcdTxn): Promise<EtcdTxnResult> {
    const compare = (txn.compare ?? []).map(compareRequest);
    const success = (txn.success ?? []).map(opRequest);
    const failure = (txn.failure ?? []).map(opRequest);
    const ops = [...(txn.success ?? []), ...(txn.failure ?? [])];
    const writes = ops.some((o) => o.op !== "range");
    // etcd serves a txn of serializable ranges only from the member alone, as a range.
    const serializable = !writes && ops.length > 0 && ops.every((o) => o.op === "range" && o.serializable === true);
    const r = await this.#call("/v3/kv/txn", { compare, success, failure }, writes ? "write" : "idempotent", { requireLeader: !serializable });
    const header = decodeHeader(r.header);
    return { header, revision: header.revision, succeeded: r.succeeded === true, responses: asList(r.responses).map(opResult) };
  }

  /**
   * Compacts history up to `revision`: reads and watches before it fail afterwards.
   * Compacting at or below the current compaction is no error.
   *
   * @example
   * ```ts
   * await etcd.compact(revision, { physical: true });
   * ```
   */
  async compact(revision: bigint, options: { physical?: boolean } = {}): Promise<void> {
    const body: Json = { revision: checkRevision(revision, "revision").toString() };
    if (options.physical) body.physical = true;
    try {
      await this.#call("/v3/kv/compaction", body, "idempotent");
    } catch (e) {
      // "required revision has been compacted": done already (by us, on a lost reply, or by another).
      if (e instanceof EtcdCompactedError) return;
      throw e;
    }
  }

  /**
   * Watches `key` (or a range, with `rangeEnd` or `prefix`) from `startRevision`: every
   * change in revision order, resumed on another member when a stream breaks. See watch.ts.
   *
   * @example
   * ```ts
   * const ac = new AbortController();
   * for await (const e of etcd.watch("app/", { prefix: true, startRevision: 1n, signal: ac.signal })) {
   *   if (e.type === "PUT") console.log(new TextDecoder().decode(e.kv.key));
   * }
   * ```
   */
  watch(key: EtcdBytes, options: EtcdWatchOptions = {}): AsyncGenerator<EtcdWatchEvent, void, undefined> {
    if (this.#closed.signal.aborted) throw new TxtDbError("CLOSED", "Cannot watch: the etcd client was closed");
    if (options.startRevision !== undefined) checkRevision(options.startRevision, "startRevision");
    return watchStream(this.#transport, key, options, this.#closed.signal);
  }

  /**
   * {@link EtcdClient.watch}, one item per revision: every change a revision made to the
   * keys watched, together (see watch.ts, `watchRevisions`).
   *
   * @example
   * ```ts
   * for await (const r of etcd.watchRevisions("app/", { prefix: true, startRevision: 1n })) {
   *   if (r.type === "REVISION") console.log(r.revision, r.events.length);
   * }
   * ```
   */
  watchRevisions(key: EtcdBytes, options: EtcdWatchOptions = {}): AsyncGenerator<EtcdRevisionEvent | EtcdProgressEvent, void, undefined> {
    if (this.#closed.signal.aborted) throw new TxtDbError("CLOSED", "Cannot watch: the etcd client was closed");
    if (options.startRevision !== undefined) checkRevision(options.startRevision, "startRevision");
    return watchRevisions(this.#transport, key, options, this.#closed.signal);
  }

  /**
   * Grants a lease of `ttlSeconds` (a whole number >= 1); nothing keeps it alive (see
   * {@link EtcdClient.lease}).
   *
   * @example
   * ```ts
   * const { id } = await etcd.grantLease(10);
   * ```
   */
  async grantLease(ttlSeconds: number): Promise<EtcdGrantedLease> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) throw new TxtDbError("INVALID_ARGUMENT", `A lease TTL must be a whole number of seconds >= 1, not ${ttlSeconds}`);
    const r = await this.#call("/v3/lease/grant", { TTL: String(ttlSeconds) }, "write");
    if (typeof r.error === "string" && r.error !== "") throw new TxtDbError("UNAVAILABLE", `etcd did not grant a lease: ${r.error}`);
    return { id: int64(r.ID), ttlSeconds: int64Number(r.TTL) };
  }

  /**
   * Renews lease `id` once; resolves with its new TTL in seconds, 0 when etcd no longer has
   * it (expired or revoked).
   *
   * @example
   * ```ts
   * if ((await etcd.keepAliveOnce(id)) === 0) console.log("lease gone");
   * ```
   */
  async keepAliveOnce(id: bigint, deadline?: number): Promise<number> {
    if (this.#closed.signal.aborted) throw new TxtDbError("CLOSED", "Cannot renew a lease: the etcd client was closed");
    // The gateway serves the keep-alive stream one request per POST: one reply line.
    const r = await this.#transport.call("/v3/lease/keepalive", { ID: id.toString() }, "idempotent", { deadline: deadline ?? this.#transport.deadline() });
    if (r.error !== undefined) {
      const e = asObject(r.error);
      throw new TxtDbError("UNAVAILABLE", `etcd did not renew lease ${id}: ${typeof e.message === "string" ? e.message : JSON.stringify(r.error)}; it renews again until the TTL runs out`);
    }
    return int64Number(asObject(r.result).TTL);
  }

  /**
   * Revokes lease `id`, deleting the keys attached to it. A lease etcd no longer has is no
   * error.
   *
   * @example
   * ```ts
   * await etcd.revokeLease(id);
   * ```
   */
  async revokeLease(id: bigint): Promise<void> {
    try {
      await this.#call("/v3/lease/revoke", { ID: id.toString() }, "idempotent");
    } catch (e) {
      if (isLeaseNotFound(e)) return;
      throw e;
    }
  }

  /**
   * What etcd says of lease `id`: seconds left (-1: gone), and with `keys`, its keys.
   *
   * @example
   * ```ts
   * const { ttlSeconds, keys } = await etcd.leaseTimeToLive(id, { keys: true });
   * ```
   */
  async leaseTimeToLive(id: bigint, options: { keys?: boolean } = {}): Promise<EtcdLeaseInfo> {
    const r = await this.#call("/v3/lease/timetolive", { ID: id.toString(), keys: options.keys === true }, "idempotent");
    return { id: int64(r.ID), ttlSeconds: int64Number(r.TTL), grantedTtlSeconds: int64Number(r.grantedTTL), keys: asList(r.keys).map(bytesField) };
  }

  /**
   * Grants a lease of `ttlSeconds` and keeps it alive until `stop()`, `revoke()` or
   * `close()`; `lost` resolves if it cannot be kept. See lease.ts.
   *
   * @example
   * ```ts
   * const lease = await etcd.lease(5, { onLost: (e) => console.error(e.message) });
   * await etcd.put("k", "v", { lease: lease.id });
   * ```
   */
  async lease(ttlSeconds: number, options: { onLost?: (e: TxtDbError) => void } = {}): Promise<EtcdLease> {
    const sentAt = performance.now();
    const granted = await this.grantLease(ttlSeconds);
    const lease = new EtcdLease(
      granted.id,
      granted.ttlSeconds,
      sentAt,
      (id, deadline) => this.keepAliveOnce(id, Math.min(deadline, this.#transport.deadline())),
      async (id) => {
        this.#leases.delete(lease);
        await this.revokeLease(id);
      },
      (e) => {
        this.#leases.delete(lease);
        options.onLost?.(e);
      },
    );
    this.#leases.add(lease);
    return lease;
  }

  /**
   * The status of one member (default: every call's current first choice): its version,
   * id, the leader it knows, its raft index. Asks that member only.
   *
   * @example
   * ```ts
   * const s = await etcd.status("http://127.0.0.1:2379");
   * const isLeader = s.leader === s.memberId;
   * ```
   */
  async status(endpoint?: string): Promise<EtcdStatus> {
    const only = endpoint === undefined ? undefined : normalizeEndpoint(endpoint);
    // A member without a leader still tells its status (leader 0n): no require-leader flag.
    const r = await this.#call("/v3/maintenance/status", {}, "idempotent", { only, requireLeader: false });
    const header = decodeHeader(r.header);
    return {
      header,
      endpoint: only ?? this.#transport.preferred,
      version: typeof r.version === "string" ? r.version : "",
      memberId: header.memberId,
      leader: int64(r.leader),
      dbSize: int64Number(r.dbSize),
      raftIndex: int64(r.raftIndex),
      raftTerm: int64(r.raftTerm),
    };
  }

  /** Ends every watch and lease loop of this client; later calls fail with `CLOSED`. Leases are not revoked (they expire). */
  close(): void {
    this.#closed.abort();
    for (const l of this.#leases) l.stop();
    this.#leases.clear();
  }
}
