/**
 * The coordinator's decision log, in its own txtdb store: one key per transaction that
 * reached a decision there, in the namespace {@link DECISIONS_NS}, and the store's
 * identity in {@link COORDINATOR_NS}. Both the coordinator (coordinator.ts) and resolvers
 * in participant processes (participant.ts) write it, always in serializable transactions
 * that read the key first: of a coordinator's commit and a resolver's abort, exactly one
 * gets in (the other conflicts, reruns and reads the winner).
 *
 * Presumed abort: a transaction with no decision here is aborted. So the coordinator
 * writes only commit decisions; a resolver writes an abort before it aborts a participant
 * (so that a slow coordinator can no longer commit), unless a commit is already there.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import type { Database } from "./db.ts";

/** The namespace of decisions: key txid, value {@link DecisionValue}. */
export const DECISIONS_NS = "decisions";
/** The namespace of the coordinator store's identity (key "id"). */
export const COORDINATOR_NS = "coordinator";

/** A decision as the coordinator store holds it. */
export interface DecisionValue {
  outcome: "commit" | "abort";
  /** When it was made (wall clock ms). */
  atMs: number;
  /** The txtdb participant stores (directory paths) a commit must reach. */
  participants: string[];
  /** Other participants' names (their `name` property, if any), for diagnostics. */
  others: string[];
  /** "coordinator" or "resolver". */
  by: string;
}

/** True if `v` has the shape of a {@link DecisionValue}. */
export function isDecision(v: unknown): v is DecisionValue {
  if (v === null || typeof v !== "object") return false;
  const d = v as Record<string, unknown>;
  return (d.outcome === "commit" || d.outcome === "abort") && Array.isArray(d.participants);
}

/**
 * The outcome the decision log holds for `txid`: undefined when there is none. An entry
 * that is there but damaged still counts when its outcome can be read (the other fields
 * are for recovery of the coordinator's own participants and for diagnostics); one whose
 * outcome cannot be read is CORRUPTION, never taken for "no decision": writing an abort
 * over what may have been a commit that some stores already applied would break
 * all-or-nothing. The transaction then stays in doubt until someone repairs the entry.
 */
export function outcomeOf(v: unknown, txid: string): "commit" | "abort" | undefined {
  if (v === undefined) return undefined;
  const outcome = v !== null && typeof v === "object" ? (v as Record<string, unknown>).outcome : undefined;
  if (outcome === "commit" || outcome === "abort") return outcome;
  let shown: string;
  try {
    shown = JSON.stringify(v)?.slice(0, 200) ?? String(v);
  } catch {
    shown = typeof v;
  }
  throw new TxtDbError("CORRUPTION", `The decision on transaction "${txid}" in the coordinator's log (namespace "${DECISIONS_NS}") is damaged: ${shown}. It is left as it is and the transaction stays in doubt; set it to { outcome: "commit" } or { outcome: "abort" } (what the stores that already decided it did), or restore the coordinator's store`, {
    details: { txid },
  });
}

/** The coordinator store's identity; undefined if it has none (not a coordinator store). */
export async function coordinatorId(store: Database): Promise<string | undefined> {
  const id = await store.get<unknown>(COORDINATOR_NS, "id").catch((e) => {
    if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") return undefined;
    throw e;
  });
  return typeof id === "string" ? id : undefined;
}

/**
 * The decision on `txid`: a commit if the coordinator recorded one, otherwise an abort,
 * recorded first (so that the coordinator can no longer commit it) and returned.
 */
export async function abortUnlessCommitted(store: Database, txid: string, nowMs: number): Promise<"commit" | "abort"> {
  return await store.transaction(async (tx) => {
    const decided = outcomeOf(await tx.get<unknown>(DECISIONS_NS, txid), txid);
    if (decided !== undefined) return decided;
    const abort: DecisionValue = { outcome: "abort", atMs: nowMs, participants: [], others: [], by: "resolver" };
    tx.set(DECISIONS_NS, txid, abort);
    return "abort";
  }, { maxRetries: 100 });
}
