/**
 * Retry turns (src/retryturns.ts): reruns that lost on one key go one at a time, in order;
 * other keys do not wait; a wait is bounded and ends when the transaction's signal aborts.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { conflictSubject, RetryTurns, TxtDbError } from "txtdb/internal";

const R = `[${runtime}]`;

test(`${R} retry turns: one at a time per key, in arrival order; other keys do not wait`, async () => {
  const turns = new RetryTurns();
  const order: string[] = [];
  const hold = async (subject: string, name: string, ms: number) => {
    const leave = await turns.enter(subject, 10_000);
    order.push(`${name}+`);
    await sleep(ms);
    order.push(`${name}-`);
    leave();
  };
  await Promise.all([hold("k", "a", 20), hold("k", "b", 5), hold("k", "c", 1), hold("other", "x", 1)]);
  // x holds a different key: it starts at once, alongside a.
  assert.deepEqual(order.slice(0, 2), ["a+", "x+"]);
  const k = order.filter((e) => !e.startsWith("x"));
  assert.deepEqual(k, ["a+", "a-", "b+", "b-", "c+", "c-"]);
  assert.equal(turns.size, 0, "queues are forgotten once empty");
});

test(`${R} retry turns: a wait ends at its bound, and at once when the signal aborts`, async () => {
  const turns = new RetryTurns();
  const leaveFirst = await turns.enter("k", 1000);
  let t0 = performance.now();
  const leaveBounded = await turns.enter("k", 30);
  const waited = performance.now() - t0;
  assert.ok(waited >= 25 && waited < 1000, `bounded wait took ${waited} ms`);
  const ac = new AbortController();
  t0 = performance.now();
  setTimeout(() => ac.abort(), 20);
  const leaveAborted = await turns.enter("k", 5000, ac.signal);
  const aborted = performance.now() - t0;
  assert.ok(aborted < 1000, `an aborted wait took ${aborted} ms`);
  leaveFirst();
  leaveBounded();
  leaveAborted();
  leaveAborted(); // idempotent
  assert.equal(turns.size, 0);
});

test(`${R} retry turns: a CONFLICT names its key, range or namespace as the queue`, () => {
  const key = new TxtDbError("CONFLICT", "x", { details: { ns: "a", key: ["acct", 1], version: 3n } });
  const sameKey = new TxtDbError("CONFLICT", "y", { details: { ns: "a", key: ["acct", 1], version: 9n } });
  const otherNs = new TxtDbError("CONFLICT", "x", { details: { ns: "b", key: ["acct", 1], version: 3n } });
  const range = new TxtDbError("CONFLICT", "x", { details: { ns: "a", range: { prefix: ["acct"] }, key: ["acct", 1], version: 3n } });
  const ns = new TxtDbError("CONFLICT", "x", { details: { ns: "a", version: 3n } });
  assert.equal(conflictSubject(key), conflictSubject(sameKey), "the version does not matter");
  const all = new Set([conflictSubject(key), conflictSubject(otherNs), conflictSubject(range), conflictSubject(ns)]);
  assert.equal(all.size, 4);
});
