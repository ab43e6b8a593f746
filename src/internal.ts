/**
 * Internals exposed for txtdb's own tests, tools and adapter authors. Not covered by
 * semver: the public contract is mod.ts.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./port.ts";
export * from "./lock.ts";
export * from "./locktable.ts";
export { readTableFrom, PROBE_MS, TABLE_SPIN_MS_MAX } from "./locks.ts";
export * from "./liveness.ts";
export { LEASE_CHECK_EVERY_MS, LEASES_SETTLE_MS } from "./pins.ts";
export * from "./platform.ts";
export * from "./keys.ts";
export * from "./codec.ts";
export { decodeCommon, NOT_COMMON } from "./fastdecode.ts";
export * from "./crc32c.ts";
export * from "./record.ts";
export * from "./log.ts";
export { Index, Chain } from "./index.ts";
export { KEY_CHUNK_MAX, SortedKeys, lowerBound, mergeSorted } from "./sortedkeys.ts";
export * from "./metrics.ts";
export * from "./ndjson.ts";
export * from "./retryturns.ts";
export * from "./dirsafety.ts";
export * from "./holder.ts";
export * from "./timers.ts";
export * from "./table.ts";
export * from "./bloom.ts";
export * from "./blockcache.ts";
export * from "./merge.ts";
export { migrateStore } from "./migrate.ts";
export type { FormatChange } from "./migrate.ts";
export { xxhash32 } from "./xxhash32.ts";
export { Tail } from "./tail.ts";
export { findMirrorSegment, FrontierMirror, MIRROR_TRUST_MS, READER_IDLE_MS } from "./mirror.ts";
export type { AppendedBatch, TailHooks } from "./tail.ts";
export { Meters } from "./stats.ts";
export { databaseInternals } from "./db.ts";
export type { DatabaseInternals } from "./db.ts";
export { retryDelayMs } from "./sagadefs.ts";
export { inspectSagas } from "./sagas.ts";
export type { SagaHealth, StuckSaga } from "./sagas.ts";
export * from "./expiry.ts";
export { PreparedSet, DECISIONS_KEPT_MAX, DECISIONS_CARRIED_MAX } from "./prepared.ts";
export { DECISIONS_NS, COORDINATOR_NS } from "./decisions.ts";
export { RESOLVE_POLL_MS, IN_DOUBT_MS_DEFAULT } from "./participant.ts";
export * from "./etcd/client.ts";
export { EtcdLease, LEASE_RETRY_MS } from "./etcd/lease.ts";
export { EtcdCompactedError } from "./etcd/failures.ts";
export type { EtcdFailure } from "./etcd/failures.ts";
export { WATCH_LINE_BYTES_MAX } from "./etcd/watch.ts";
export type { EtcdChangeEvent, EtcdProgressEvent, EtcdWatchEvent, EtcdWatchOptions } from "./etcd/watch.ts";
export { ATTEMPTS_PER_CALL_MAX } from "./etcd/transport.ts";
export type { FetchLike } from "./etcd/transport.ts";
export { parseEtcdUrl, ETCD_DEFAULT_PORT } from "./etcd/url.ts";
export type { EtcdLocation } from "./etcd/url.ts";
export { prefixEnd } from "./etcd/wire.ts";
export type { EtcdBytes, EtcdHeader, EtcdKeyValue } from "./etcd/wire.ts";
export { encodeBase64, decodeBase64 } from "./etcd/base64.ts";
export { EtcdEngine } from "./etcd/engine.ts";
export type { EtcdCompaction, EtcdEngineOptions, EtcdWatchChange, EtcdWatchSelector } from "./etcd/engine.ts";
export { EtcdReader } from "./etcd/reader.ts";
export type { NsBinding, StoredEntry } from "./etcd/reader.ts";
export { EtcdTransaction } from "./etcd/transaction.ts";
export { COMMIT_ATTEMPTS_MAX, ETCD_TX_WRITES_MAX, FENCE_ATTEMPTS_MAX, foldSpans } from "./etcd/commit.ts";
export type { EtcdCommitCounts, EtcdCommitRequest, EtcdWriteOp } from "./etcd/commit.ts";
export { isTombstone, Layout, TOMBSTONE } from "./etcd/layout.ts";
