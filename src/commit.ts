/**
 * Validation of optimistic transactions and the group committer.
 *
 * Under the writer lock, the committer has caught up on every commit any process made,
 * so the index holds the head of history. Each transaction of the batch is validated
 * against that head (first committer wins), given the next TSN, and applied tentatively
 * so the next transaction of the same batch sees it. Then the whole batch goes to the
 * log in one append and one sync.
 *
 * Conflict rules (a newer version of a key means: TSN > the transaction's readVersion):
 * - any namespace the transaction touched was created, dropped or renamed since → CONFLICT
 * - a key it set or deleted has a newer version → CONFLICT (both isolation levels)
 * - serializable only: a key it read, or a key in a range it read, has a newer version
 * - `check(ns, key, v)`: the key's version at the head is not v → CONFLICT
 * - `sum()` writes never conflict: the sum is computed here, at the head
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { binaryToBytes, decodeKey, describeKey } from "./keys.ts";
import { encodeValue } from "./codec.ts";
import type { Index } from "./index.ts";
import type { CommitRecord, NamespaceOp, RecordWrite } from "./record.ts";
import { addNumeric, decodeStored } from "./tx.ts";
import type { TxState } from "./tx.ts";

function conflict(message: string, details: Record<string, unknown>): TxtDbError {
  return new TxtDbError("CONFLICT", message, { details });
}

function keyConflict(ns: string, key: string, version: number, what: string): TxtDbError {
  const k = decodeKey(key);
  return conflict(`Transaction conflict: ${what} ${describeKey(k)} in namespace "${ns}" was changed by the commit at version ${version}; retry the transaction`, {
    ns,
    key: k,
    version: BigInt(version),
  });
}

/** Validates `s` against the index head; returns the error that rejects it, if any. */
export function validate(s: TxState, index: Index): TxtDbError | undefined {
  const head = index.lastTsn;
  const after = s.readVersion;
  // Namespace operations: existence at the head.
  const exists = (name: string) => index.resolve(name, head) !== undefined;
  const pendingNames = new Map<string, boolean>(); // effects of earlier ops in this same transaction
  const has = (name: string) => pendingNames.get(name) ?? exists(name);
  for (const op of s.namespaceOps) {
    if (op.op === "create") {
      if (has(op.name)) return new TxtDbError("NAMESPACE_EXISTS", `Cannot create namespace "${op.name}": it already exists`, { details: { ns: op.name } });
      pendingNames.set(op.name, true);
    } else {
      if (!has(op.name)) return new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot ${op.op} namespace "${op.name}": it does not exist`, { details: { ns: op.name } });
      if (op.op === "rename") {
        if (has(op.to)) return new TxtDbError("NAMESPACE_EXISTS", `Cannot rename namespace "${op.name}" to "${op.to}": "${op.to}" already exists`, { details: { ns: op.to } });
        pendingNames.set(op.to, true);
      }
      pendingNames.set(op.name, false);
    }
  }
  for (const ns of s.touched) {
    const changed = index.nameChangedAt(ns);
    if (!s.blind && changed > after) {
      return conflict(`Transaction conflict: namespace "${ns}" was created, dropped or renamed by the commit at version ${changed}; retry the transaction`, {
        ns,
        version: BigInt(changed),
      });
    }
    if (!exists(ns)) {
      return new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist any more; it was dropped or renamed`, { details: { ns } });
    }
  }
  if (s.blind) return undefined;
  for (const [ns, writes] of s.writes) {
    const id = index.resolve(ns, head)!;
    for (const [key, op] of writes) {
      if (op.kind === "sum") continue;
      const t = index.latestTsn(id, key);
      if (t > after) return keyConflict(ns, key, t, "key written");
    }
  }
  if (s.isolation === "serializable") {
    for (const [ns, keys] of s.reads) {
      const id = index.resolve(ns, head)!;
      for (const key of keys) {
        const t = index.latestTsn(id, key);
        if (t > after) return keyConflict(ns, key, t, "key read");
      }
    }
    for (const r of s.ranges) {
      const id = index.resolve(r.ns, head)!;
      const hit = index.changedInRange(id, r.start, r.end, after);
      if (hit) {
        return conflict(
          `Transaction conflict: key ${describeKey(decodeKey(hit.key))} in a range read from namespace "${r.ns}" was changed by the commit at version ${hit.tsn}; retry the transaction`,
          { ns: r.ns, range: r.selector, key: decodeKey(hit.key), version: BigInt(hit.tsn) },
        );
      }
    }
  }
  for (const c of s.checks) {
    const id = index.resolve(c.ns, head)!;
    const v = index.get(id, c.key, head);
    const actual = v ? v.tsn : null;
    if (actual !== c.version) {
      const k = decodeKey(c.key);
      return conflict(
        `check() failed: key ${describeKey(k)} in namespace "${c.ns}" is at version ${actual ?? "absent"}, expected ${c.version ?? "absent"}`,
        { ns: c.ns, key: k, version: actual === null ? null : BigInt(actual) },
      );
    }
  }
  return undefined;
}

/** Builds the commit record of a validated transaction at `tsn` (sums computed at the head). */
export function buildRecord(s: TxState, index: Index, tsn: number): CommitRecord {
  const head = index.lastTsn;
  const namespaceOps: NamespaceOp[] = [];
  let nextId = index.nextNsId;
  for (const op of s.namespaceOps) {
    if (op.op === "create") namespaceOps.push({ op: "create", name: op.name, id: nextId++ });
    else if (op.op === "drop") namespaceOps.push({ op: "drop", name: op.name });
    else namespaceOps.push({ op: "rename", name: op.name, to: op.to });
  }
  const writes: RecordWrite[] = [];
  for (const [ns, ops] of s.writes) {
    const id = index.resolve(ns, head)!;
    for (const [key, op] of ops) {
      let value: Uint8Array | null;
      if (op.kind === "set") value = op.value;
      else if (op.kind === "delete") value = null;
      else {
        const current = index.get(id, key, head);
        value = encodeValue(current ? addNumeric(decodeStored(current.value, ns, key), op.delta, `key ${describeKey(decodeKey(key))} in "${ns}"`) : op.delta);
      }
      writes.push({ nsId: id, key: binaryToBytes(key), value });
    }
  }
  return { tsn, writes, namespaceOps };
}
