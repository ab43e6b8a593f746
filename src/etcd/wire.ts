/**
 * The shapes etcd's JSON gateway speaks, and their typed form.
 *
 * The gateway is grpc-gateway over etcd's protobuf API (api/etcdserverpb/rpc.proto): bytes
 * fields are base64, 64-bit integers are decimal strings, and fields at their default
 * value (0, false, empty, the first enum value) are left out altogether, so every decoder
 * here reads a missing field as its default. Field names in replies are the proto's own
 * (`create_revision`, `prev_kv`), which is also what requests send.
 *
 * Numbers: revisions, lease ids and cluster/member ids are `bigint`. Revisions become
 * txtdb versions, which are bigint already, and lease and member ids are random 63/64-bit
 * values that a JS number would round (a lease id such as 7587868384578451222 is past
 * 2^53). Counts and TTLs (a key's version, a range's count, seconds) are numbers: they
 * cannot come near 2^53.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";

/** Bytes as the client takes them: a string stands for its UTF-8 encoding. */
export type EtcdBytes = Uint8Array | string;

const utf8 = new TextEncoder();

/** The bytes of `b` (a string's UTF-8 encoding). */
export function toBytes(b: EtcdBytes): Uint8Array {
  return typeof b === "string" ? utf8.encode(b) : b;
}

/** `b` as the gateway wants a bytes field: base64. */
export function b64(b: EtcdBytes): string {
  return encodeBase64(toBytes(b));
}

/**
 * The end of the range of keys that start with `prefix`: the prefix with its last byte
 * below 0xff incremented and the bytes after it dropped; "\0" (every key) when the prefix
 * is empty or all 0xff, as etcd reads `range_end` "\0".
 *
 * @example
 * ```ts
 * prefixEnd("app/"); // the bytes of "app0"
 * ```
 */
export function prefixEnd(prefix: EtcdBytes): Uint8Array {
  const p = toBytes(prefix);
  for (let i = p.length - 1; i >= 0; i--) {
    if (p[i]! < 0xff) {
      const end = p.slice(0, i + 1);
      end[i]!++;
      return end;
    }
  }
  return new Uint8Array([0]);
}

/** What every reply carries: where it came from and the store revision it saw. */
export interface EtcdHeader {
  /** The store's revision when the request was applied (for a watch progress: all later events come after it). */
  revision: bigint;
  clusterId: bigint;
  memberId: bigint;
  raftTerm: bigint;
}

/** A key with its value and MVCC metadata (etcd's mvccpb.KeyValue). */
export interface EtcdKeyValue {
  key: Uint8Array;
  value: Uint8Array;
  /** The revision of the key's last creation (0n: the key does not exist). */
  createRevision: bigint;
  /** The revision of the key's last modification. */
  modRevision: bigint;
  /** How many times the key was written since its creation (deletion resets it to 0). */
  version: number;
  /** The lease the key is attached to (0n: none). */
  lease: bigint;
}

/** The JSON object type the gateway sends and takes. */
export type Json = { [k: string]: unknown };

/** A decimal int64 string (or a missing field) as bigint. */
export function int64(v: unknown): bigint {
  if (v === undefined || v === null || v === "") return 0n;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  return badReply(`an integer field holds ${JSON.stringify(v)}`);
}

/** A decimal int64 string as a number, for counts and seconds (never near 2^53). */
export function int64Number(v: unknown): number {
  return Number(int64(v));
}

/** A base64 bytes field (missing: empty). */
export function bytesField(v: unknown): Uint8Array {
  if (v === undefined || v === null) return new Uint8Array(0);
  if (typeof v !== "string") return badReply(`a bytes field holds ${JSON.stringify(v)}`);
  return decodeBase64(v);
}

function obj(v: unknown): Json {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : {};
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Decodes a ResponseHeader. */
export function decodeHeader(v: unknown): EtcdHeader {
  const h = obj(v);
  return {
    revision: int64(h.revision),
    clusterId: int64(h.cluster_id),
    memberId: int64(h.member_id),
    raftTerm: int64(h.raft_term),
  };
}

/** Decodes a mvccpb.KeyValue. */
export function decodeKeyValue(v: unknown): EtcdKeyValue {
  const kv = obj(v);
  return {
    key: bytesField(kv.key),
    value: bytesField(kv.value),
    createRevision: int64(kv.create_revision),
    modRevision: int64(kv.mod_revision),
    version: int64Number(kv.version),
    lease: int64(kv.lease),
  };
}

/** Decodes a list of KeyValues (missing: empty). */
export function decodeKeyValues(v: unknown): EtcdKeyValue[] {
  return list(v).map(decodeKeyValue);
}

/** `v` as an object (anything else: empty), for reading gateway replies. */
export function asObject(v: unknown): Json {
  return obj(v);
}

/** `v` as an array (anything else: empty). */
export function asList(v: unknown): unknown[] {
  return list(v);
}

// A reply that breaks the gateway's shapes did not come from etcd 3.4+: fail the request
// the way an unreachable endpoint does, with what arrived.
function badReply(what: string): never {
  throw new TxtDbError("UNAVAILABLE", `Cannot read a reply from etcd: ${what}; check that the endpoint is an etcd v3.4+ client URL`);
}
