/**
 * txtdb: an embedded, transactional, multi-process MVCC key-value store for Node, Deno
 * and Bun. Many OS processes, of any mix of runtimes, open one directory and read and
 * write it safely.
 *
 * @example
 * ```ts
 * import { open } from "@txtdb/txtdb";
 * await using db = await open("./data", { namespaces: ["accounts"] });
 * await db.set("accounts", "alice", 100);
 * ```
 * @module
 */
export { open, Database } from "./src/db.ts";
export type { OpenOptions, Durability, TransactionOptions, Stats, Distribution, CompactResult, BackupResult, PreparedInfo, PrepareOptions } from "./src/db.ts";
export type { CoordinatorRef } from "./src/record.ts";
export type { TwoPhaseStats } from "./src/prepared.ts";
export type { CheckReport } from "./src/check.ts";
export { Transaction, Snapshot } from "./src/tx.ts";
export { Coordinator } from "./src/coordinator.ts";
export type { TwoPhaseParticipant, CoordinatorOptions, CoordinatedTransactionOptions, CoordinatorStats, RecoveryResult, ParticipantView } from "./src/coordinator.ts";
export { ResourceLock } from "./src/locks.ts";
export type { LockMode, LockOptions, LockInfo, LockStats } from "./src/locks.ts";
export type { Entry, Isolation, ListSelector, ListOptions } from "./src/tx.ts";
export type { SetOptions } from "./src/expiry.ts";
export type { Key, KeyPart } from "./src/keys.ts";
export type { WatchEvent } from "./src/watch.ts";
export type { DeadLetter, EnqueueOptions, EnqueueResult, ListenOptions, QueueError, QueueHandler, QueueMessage, QueueStats } from "./src/queues.ts";
export { Sagas } from "./src/sagas.ts";
export type { SagaListFilter, SagaResultOptions, RetryPolicy, SagaContext, SagaEvent, SagaFailure, SagaInfo, SagaResult, SagasOptions, SagaStatus, SagaStep, SagaStartOptions, SagaWatchFilter } from "./src/sagas.ts";
export { TxtDbError, isTxtDbError } from "./src/errors.ts";
export type { ErrorCode } from "./src/errors.ts";
export type { Platform, FileHandle, LockHandle, Capabilities, OpenOptions as FileOpenOptions, FileInfo, FileIdentity, WatchHandle, RuntimeName, SharedMemory, SharedRegion, SharedSegmentInfo } from "./src/port.ts";
export { PortError } from "./src/port.ts";
export { defaultPlatform, detectRuntime } from "./src/platform.ts";
