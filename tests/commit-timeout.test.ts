/**
 * A transaction either commits and resolves, or does not commit at all: a `timeoutMs` or an
 * aborted `signal` that fires while the commit waits for the writer lock takes the commit
 * back (TIMEOUT, nothing written); once the commit is being written, the caller learns its
 * outcome instead of a TIMEOUT. A caller who retries after TIMEOUT must never apply twice.
 */
import { assert, runtime, sleep, takeWriterLock, tempDir, test, waitUntil } from "./harness.ts";
import { open, TxtDbError } from "txtdb";

const R = `[${runtime}]`;

/** Holds the store's writer lock through a second open file description, as another process would. */
async function holdWriterLock(dir: string, ms: number): Promise<void> {
  const release = await takeWriterLock(dir);
  await sleep(ms);
  release();
}


type Outcome = { i: number; ok: boolean; code?: string };

async function outcomesMatchStore(dir: string, outcomes: Outcome[]): Promise<{ timeouts: number; committed: number }> {
  const db = await open(dir, { readOnly: true });
  let timeouts = 0;
  let committed = 0;
  for (const o of outcomes) {
    const stored = await db.get("ns", ["t", o.i]);
    if (o.ok) {
      committed++;
      assert.equal(stored, o.i, `transaction ${o.i} resolved, so its write must be in the store`);
    } else {
      assert.equal(o.code, "TIMEOUT", `transaction ${o.i} failed with ${o.code}`);
      timeouts++;
      assert.equal(stored, undefined, `transaction ${o.i} was rejected with TIMEOUT, so it must not have committed`);
    }
  }
  await db.close();
  return { timeouts, committed };
}

test(`${R} transaction() whose timeoutMs passes while its commit waits for the lock does not commit`, async () => {
  const dir = tempDir("tmo");
  const db = await open(dir, { namespaces: ["ns"] });
  const release = await takeWriterLock(dir);
  let failed = 0;
  const runs = Array.from({ length: 200 }, (_, i) =>
    db.transaction((tx) => tx.set("ns", ["t", i], i), { timeoutMs: i % 2 === 0 ? 5 : 60_000 })
      .then(() => ({ i, ok: true }), (e) => (failed++, { i, ok: false, code: (e as TxtDbError).code })),
  );
  // Every 5 ms timeout fires while the lock is still held: wait for them (a loaded machine
  // runs timers late), bounded, then free the lock.
  await waitUntil(() => failed >= 100, 10_000);
  release();
  const outcomes: Outcome[] = await Promise.all(runs);
  await db.close();
  const { timeouts, committed } = await outcomesMatchStore(dir, outcomes);
  assert.equal(timeouts, 100, "every transaction whose timeout passed in the queue ends with TIMEOUT");
  assert.equal(committed, 100, "the others commit once the lock is free");
});

test(`${R} transaction() with timeoutMs never reports TIMEOUT for a transaction that committed`, async () => {
  const dir = tempDir("tmo");
  const db = await open(dir, { namespaces: ["ns"] });
  const busy = holdWriterLock(dir, 40);
  await sleep(1);
  const outcomes: Outcome[] = await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      db.transaction((tx) => tx.set("ns", ["t", i], i), { timeoutMs: 1 + (i % 60) })
        .then(() => ({ i, ok: true }), (e) => ({ i, ok: false, code: (e as TxtDbError).code })),
    ),
  );
  await busy;
  await db.close();
  // Which ones time out depends on this machine's timing; that each outcome matches the store does not.
  await outcomesMatchStore(dir, outcomes);
});

test(`${R} transaction() whose signal aborts while its commit waits for the lock does not commit`, async () => {
  const dir = tempDir("tmo");
  const db = await open(dir, { namespaces: ["ns"] });
  const release = await takeWriterLock(dir);
  const controllers = Array.from({ length: 100 }, () => new AbortController());
  const runs = controllers.map((c, i) =>
    db.transaction((tx) => tx.set("ns", ["t", i], i), { signal: c.signal })
      .then(() => ({ i, ok: true }), (e) => ({ i, ok: false, code: (e as TxtDbError).code })),
  );
  await sleep(10);
  controllers.forEach((c, i) => i % 2 === 0 && c.abort(new Error("caller gave up")));
  release();
  const outcomes: Outcome[] = await Promise.all(runs);
  await db.close();
  const { timeouts, committed } = await outcomesMatchStore(dir, outcomes);
  assert.equal(timeouts, 50, "every aborted transaction ends with TIMEOUT");
  assert.equal(committed, 50, "the others commit once the lock is free");
});

test(`${R} a retry after TIMEOUT applies a transfer exactly once`, async () => {
  const dir = tempDir("tmo");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "balance", 0);
  const busy = holdWriterLock(dir, 25);
  await sleep(1);
  const transfer = (timeoutMs: number) =>
    db.transaction(async (tx) => {
      const b = (await tx.get<number>("ns", "balance")) ?? 0;
      tx.set("ns", "balance", b + 1);
    }, { timeoutMs, maxRetries: 10_000 });
  let applied = 0;
  await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    for (;;) {
      try {
        await transfer(1 + (i % 30));
        applied++;
        return;
      } catch (e) {
        if (!(e instanceof TxtDbError) || e.code !== "TIMEOUT") throw e;
      }
    }
  }));
  await busy;
  assert.equal(applied, 40);
  assert.equal(await db.get("ns", "balance"), 40, "each transfer is applied once, retries after TIMEOUT included");
  await db.close();
});

test(`${R} timeoutMs of 2^31 ms or Infinity does not fire at once`, async () => {
  const dir = tempDir("tmo");
  const db = await open(dir, { namespaces: ["ns"], lockTimeoutMs: 2 ** 31 });
  for (const timeoutMs of [2 ** 31, 2 ** 32 + 5, Infinity]) {
    const v = await db.transaction(async (tx) => {
      await sleep(5); // a 1 ms timer would have fired by now
      tx.set("ns", "k", timeoutMs);
      return timeoutMs;
    }, { timeoutMs });
    assert.equal(v, timeoutMs);
  }
  // The writer lock's timeout too: held briefly elsewhere, the commit waits for it.
  const busy = holdWriterLock(dir, 20);
  await sleep(1);
  await db.set("ns", "after", 1);
  await busy;
  await db.close();
});
