/**
 * Two-phase commit under hostile and careless use, in one process: the same store through
 * two handles, other participants that hang, return nonsense or carry names the store
 * cannot hold, and damaged decisions in the coordinator's log. Whatever they do, a
 * transaction ends everywhere or nowhere, recovery goes on for the rest, and nothing hangs.
 */
import { assert, runtime, sleep, tempDir, test, outcomeCode } from "./harness.ts";
import { Coordinator, open, TxtDbError } from "txtdb";
import type { Database, TwoPhaseParticipant } from "txtdb";

const R = `[${runtime}]`;

const code = outcomeCode;

/** Settles with `p`, or with "HUNG" after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "HUNG"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<"HUNG">((r) => (timer = setTimeout(() => r("HUNG"), ms)))]).finally(() => clearTimeout(timer));
}

function participant(name: unknown, over: Partial<TwoPhaseParticipant> = {}): TwoPhaseParticipant {
  return {
    name: name as string,
    prepare: async () => {},
    commit: async () => {},
    abort: async () => {},
    inDoubt: async () => [],
    ...over,
  };
}

async function store(label: string): Promise<Database> {
  return await open(tempDir(label), { namespaces: ["n"], durability: "none" });
}

test(`${R} the same store through two handles (a relative and an absolute path) is INVALID_ARGUMENT naming the duplicate, and nothing is prepared`, async () => {
  const a = await store("2pca-same");
  const cwd = (globalThis as unknown as { process?: { cwd(): string } }).process?.cwd?.() ?? (globalThis as unknown as { Deno: { cwd(): string } }).Deno.cwd();
  // The same directory, spelled relative to the working directory.
  const up = cwd.split("/").filter(Boolean).map(() => "..").join("/");
  const a2 = await open(`${up}${a.path}`);
  const coord = await Coordinator.open(tempDir("2pca-same-c"), { recoverIntervalMs: 0 });
  try {
    assert.notEqual(a2.path, a.path);
    let err: unknown;
    await coord.transaction([a, a2], (x, y) => {
      x.set("n", "k1", 1);
      y.set("n", "k2", 2);
    }).catch((e) => (err = e));
    assert.ok(err instanceof TxtDbError && err.code === "INVALID_ARGUMENT", String(err));
    assert.match((err as Error).message, /twice/);
    assert.deepEqual(await a.listPrepared(), []);
    assert.equal(await a.get("n", "k1"), undefined);
  } finally {
    await coord.close();
    await a2.close();
    await a.close();
  }
});

test(`${R} another participant's name the store cannot hold (symbol, function, lone surrogate, huge) never fails the commit decision`, async () => {
  const a = await store("2pca-name");
  const coord = await Coordinator.open(tempDir("2pca-name-c"), { recoverIntervalMs: 0 });
  try {
    const names: unknown[] = [Symbol("p"), () => 1, "bad\ud800name", "x".repeat(20_000_000), ""];
    for (const [i, name] of names.entries()) {
      const got = await coord.transaction([a, participant(name)], (x) => {
        x.set("n", `k${i}`, i);
        return i;
      });
      assert.equal(got, i);
      assert.equal(await a.get("n", `k${i}`), i);
    }
    assert.deepEqual(await a.listPrepared(), []);
  } finally {
    await coord.close();
    await a.close();
  }
});

test(`${R} a damaged decision in the coordinator's log does not stop recovery of the others`, async () => {
  const a = await store("2pca-dmg");
  const cdir = tempDir("2pca-dmg-c");
  await (await Coordinator.open(cdir, { recoverIntervalMs: 0 })).close();
  // A prepared transaction whose commit decision is in the log, as a coordinator that died
  // after its decision leaves it, beside damaged decisions.
  const tx = await a.begin();
  tx.set("n", "k", "committed");
  await tx.prepare("good-txid");
  const raw = await open(cdir);
  await raw.transaction((t) => {
    t.set("decisions", "damaged-1", { outcome: "commit", participants: [a.path] }); // no "others"
    t.set("decisions", "damaged-2", { outcome: "commit", participants: [42, null], others: "x" });
    t.set("decisions", "good-txid", { outcome: "commit", atMs: 0, participants: [a.path], others: [], by: "coordinator" });
  });
  await raw.close();
  const coord = await Coordinator.open(cdir, { recoverIntervalMs: 0 });
  try {
    const r = await coord.recover();
    // The good one was committed by the pass at open; the damaged ones stay, pending.
    assert.deepEqual(r, { committed: 0, aborted: 0, pending: 2 });
    assert.equal(await a.get("n", "k"), "committed");
    assert.deepEqual(await a.listPrepared(), []);
  } finally {
    await coord.close();
    await a.close();
  }
});

test(`${R} another participant whose inDoubt() gives no array is pending, not a TypeError that ends the recovery pass`, async () => {
  for (const bad of [undefined, null, 42, "txid", { length: 1 }]) {
    const coord = await Coordinator.open(tempDir("2pca-nonarray"), { recoverIntervalMs: 0, participants: [participant("bad", { inDoubt: async () => bad as unknown as string[] })] });
    try {
      const r = await coord.recover();
      assert.equal(r.pending, 1, `inDoubt() -> ${String(bad)}: ${JSON.stringify(r)}`);
    } finally {
      await coord.close();
    }
  }
});

test(`${R} other participants that never settle inDoubt(), commit() or abort() hang neither open(), recover(), transaction() nor close()`, async () => {
  const never = () => new Promise<never>(() => {});
  const a = await store("2pca-hang");
  // inDoubt() hangs: open() runs a recovery pass, close() waits for it.
  const c1 = await within(Coordinator.open(tempDir("2pca-hang-c1"), { recoverIntervalMs: 0, prepareTimeoutMs: 300, participants: [participant("h", { inDoubt: never })] }), 20_000);
  assert.notEqual(c1, "HUNG", "Coordinator.open() hung on a participant whose inDoubt() never settles");
  if (c1 === "HUNG") return;
  assert.notEqual(await within(c1.recover(), 20_000), "HUNG");
  assert.notEqual(await within(c1.close(), 20_000), "HUNG", "close() hung");

  const coord = await Coordinator.open(tempDir("2pca-hang-c2"), { recoverIntervalMs: 0, prepareTimeoutMs: 300 });
  try {
    // commit() hangs after the decision: the transaction is committed and resolves.
    const got = await within(coord.transaction([a, participant("h", { commit: never })], (x) => {
      x.set("n", "c", 1);
      return "decided";
    }), 20_000);
    assert.equal(got, "decided", "transaction() hung in its commit phase after the decision");
    assert.equal(await a.get("n", "c"), 1);
    assert.equal(coord.stats().unfinished, 1);
    // abort() hangs after a refused prepare: the transaction rejects, nothing appears.
    const refused = within(coord.transaction([a, participant("h", { prepare: async () => { throw new TxtDbError("INVALID_ARGUMENT", "no"); }, abort: never })], (x) => {
      x.set("n", "r", 1);
    }).then(() => "ok", (e) => (e instanceof TxtDbError ? e.code : String(e))), 20_000);
    assert.equal(await refused, "INVALID_ARGUMENT");
    assert.equal(await a.get("n", "r"), undefined);
    assert.deepEqual(await a.listPrepared(), []);
  } finally {
    assert.notEqual(await within(coord.close(), 20_000), "HUNG", "close() hung");
    await a.close();
  }
});

test(`${R} a participant store closed between its prepare and its commit is committed by recovery; the other store at once`, async () => {
  let a = await store("2pca-close-a");
  const b = await store("2pca-close-b");
  const coord = await Coordinator.open(tempDir("2pca-close-c"), { recoverIntervalMs: 100 });
  try {
    const closer = participant("closer", { prepare: async () => { await sleep(20); await a.close(); } });
    assert.equal(await coord.transaction([a, b, closer], (x, y) => {
      x.set("n", "k", 1);
      y.set("n", "k", 1);
      return "ok";
    }), "ok");
    assert.equal(await b.get("n", "k"), 1);
    for (let i = 0; i < 200 && coord.stats().unfinished > 0; i++) await sleep(50);
    assert.equal(coord.stats().unfinished, 0);
    a = await open(a.path);
    assert.equal(await a.get("n", "k"), 1);
    assert.deepEqual(await a.listPrepared(), []);
    assert.equal(await code(coord.transaction([a, b], () => {}, { signal: AbortSignal.abort() })), "TIMEOUT");
  } finally {
    await coord.close();
    await a.close();
    await b.close();
  }
});

test(`${R} a decision whose outcome cannot be read is never overwritten by an abort (the transaction stays in doubt); one whose outcome can be read is followed`, async () => {
  const cdir = tempDir("2pca-unreadable");
  await (await Coordinator.open(cdir, { recoverIntervalMs: 0 })).close();
  // Txids as coordinators made them before they named their coordinator (lease.counter.random),
  // from a process long gone: followed only where this coordinator's log has their decision.
  const unreadable = "00000000deadbeef.1.0000abcd";
  const readable = "00000000deadbeef.2.0000abcd";
  const raw = await open(cdir);
  await raw.transaction((t) => {
    t.set("decisions", unreadable, "garbage");
    t.set("decisions", readable, { outcome: "commit", participants: 5 }); // other fields damaged
  });
  await raw.close();
  const calls: string[] = [];
  const p = participant("other", {
    inDoubt: async () => [unreadable, readable],
    commit: async (txid: string) => void calls.push(`commit ${txid}`),
    abort: async (txid: string) => void calls.push(`abort ${txid}`),
  });
  const coord = await Coordinator.open(cdir, { recoverIntervalMs: 0, inDoubtTimeoutMs: 1, participants: [p] });
  try {
    await sleep(5);
    const r = await coord.recover();
    // open() made a recovery pass too: the readable decision may be pushed twice (commit is idempotent).
    assert.ok(calls.length >= 1 && calls.every((c) => c === `commit ${readable}`), `calls: ${JSON.stringify(calls)}; ${JSON.stringify(r)}`);
    assert.ok(r.pending >= 1, JSON.stringify(r));
  } finally {
    await coord.close();
  }
  const after = await open(cdir, { readOnly: true });
  try {
    assert.equal(await after.get("decisions", unreadable), "garbage", "the unreadable decision was overwritten");
    assert.deepEqual(await after.get("decisions", readable), { outcome: "commit", participants: 5 });
  } finally {
    await after.close();
  }
});

/** A participant that records what happened to each txid, held in doubt while prepared. */
function ledger(name: string, prepareDelayMs = 0) {
  const state = new Map<string, "prepared" | "committed" | "aborted">();
  const anomalies: string[] = [];
  const p: TwoPhaseParticipant = {
    name,
    prepare: async (txid) => {
      state.set(txid, "prepared");
      await sleep(prepareDelayMs);
    },
    commit: async (txid) => {
      if (state.get(txid) === "aborted") anomalies.push(`commit after abort of ${txid}`);
      state.set(txid, "committed");
    },
    abort: async (txid) => {
      if (state.get(txid) === "committed") anomalies.push(`abort after commit of ${txid}`);
      else state.set(txid, "aborted");
    },
    inDoubt: async () => [...state].filter(([, s]) => s === "prepared").map(([t]) => t),
  };
  return { p, state, anomalies };
}

test(`${R} two coordinators sharing another participant: neither decides the other's transactions (one used to abort what the other then committed)`, async () => {
  const a = await store("2pca-two-a");
  const mail = ledger("mail", 300); // prepared, in doubt, for 300 ms before the decision
  const x = await Coordinator.open(tempDir("2pca-two-x"), { recoverIntervalMs: 0, participants: [mail.p] });
  const y = await Coordinator.open(tempDir("2pca-two-y"), { recoverIntervalMs: 0, participants: [mail.p] });
  try {
    const running = y.transaction([a, mail.p], (t) => {
      t.set("n", "order", 1);
      return "y";
    });
    await sleep(150);
    assert.equal((await mail.p.inDoubt()).length, 1, "Y's transaction is in doubt at the participant");
    const r = await x.recover(); // X's recovery meets Y's txid: not X's to decide
    assert.deepEqual(r, { committed: 0, aborted: 0, pending: 0 });
    assert.equal(await running, "y");
    assert.deepEqual(mail.anomalies, []);
    assert.deepEqual([...mail.state.values()], ["committed"]);
    assert.equal(await a.get("n", "order"), 1);
    assert.equal(x.stats().recoveredAborted, 0);
  } finally {
    await x.close();
    await y.close();
    await a.close();
  }
});

test(`${R} a commit decision stays until every other participant confirmed it, however long one is down (decisionRetentionMs is for aborts; the decision used to go, and recovery then aborted the participant)`, async () => {
  const a = await store("2pca-ret-a");
  const cdir = tempDir("2pca-ret-c");
  const mail = ledger("mail");
  let down = false;
  const flaky: TwoPhaseParticipant = {
    name: "mail",
    prepare: (txid) => mail.p.prepare(txid),
    commit: async (txid) => {
      if (down) throw new Error("mail is down");
      await mail.p.commit(txid);
    },
    abort: async (txid) => {
      if (down) throw new Error("mail is down");
      await mail.p.abort(txid);
    },
    inDoubt: async () => {
      if (down) throw new Error("mail is down");
      return await mail.p.inDoubt();
    },
  };
  const coord = await Coordinator.open(cdir, { recoverIntervalMs: 0, decisionRetentionMs: 50, participants: [flaky] });
  try {
    const sent = coord.transaction([a, flaky], (t) => {
      t.set("n", "order", 1);
      down = true; // from now on its commit, abort and inDoubt fail (its prepare still answers)
    });
    await sent;
    assert.equal(await a.get("n", "order"), 1);
    await sleep(200); // past decisionRetentionMs
    for (let i = 0; i < 3; i++) assert.equal((await coord.recover()).pending >= 1, true);
    assert.equal(coord.stats().unfinished, 1, "the decision is not confirmed by mail");
    assert.equal(coord.stats().decisionsLogged, 1, "the commit decision stays while mail is down");
    down = false;
    await coord.recover();
    assert.deepEqual(mail.anomalies, []);
    assert.deepEqual([...mail.state.values()], ["committed"], "mail committed, as store a did");
    assert.equal(coord.stats().unfinished, 0);
    assert.equal(coord.stats().decisionsLogged, 0, "confirmed by every participant: the decision goes");
  } finally {
    await coord.close();
    await a.close();
  }
});

test(`${R} commit() or prepare() called inside coord.transaction()'s function is INVALID_ARGUMENT, and nothing commits anywhere (a store committed alone)`, async () => {
  const a = await store("2pca-fn-a");
  const b = await store("2pca-fn-b");
  const coord = await Coordinator.open(tempDir("2pca-fn-c"), { recoverIntervalMs: 0 });
  try {
    for (const call of ["commit", "prepare"] as const) {
      const outcome = await code(coord.transaction([a, b], async (x, y) => {
        x.set("n", call, 1);
        y.set("n", call, 1);
        await (call === "commit" ? x.commit() : x.prepare("mine"));
      }));
      assert.equal(outcome, "INVALID_ARGUMENT", call);
      assert.equal(await a.get("n", call), undefined, `${call}: nothing in a`);
      assert.equal(await b.get("n", call), undefined, `${call}: nothing in b`);
      assert.deepEqual(await a.listPrepared(), [], `${call}: nothing left prepared`);
      await a.set("n", call, 2); // its keys are free
    }
  } finally {
    await coord.close();
    await a.close();
    await b.close();
  }
});

test(`${R} Coordinator.open() of a store with data of its own is INVALID_ARGUMENT and writes nothing (it used to take the store over, and recovery read its values as decisions)`, async () => {
  const dir = tempDir("2pca-takeover");
  const db = await open(dir, { namespaces: ["approvals"] });
  await db.set("approvals", "a-1", { outcome: "abort", atMs: 0, participants: [] });
  await db.close();
  const err = await Coordinator.open(dir, { recoverIntervalMs: 0 }).then(async (c) => {
    await c.close();
    return undefined;
  }, (e: unknown) => e);
  assert.ok(err instanceof TxtDbError && err.code === "INVALID_ARGUMENT" && /data of its own/.test(err.message), String(err));
  const after = await open(dir, { readOnly: true });
  try {
    assert.deepEqual(await after.listNamespaces(), ["approvals"], "no namespace was added");
    assert.deepEqual(await after.get("approvals", "a-1"), { outcome: "abort", atMs: 0, participants: [] });
  } finally {
    await after.close();
  }
  // The same with data in a namespace named like the coordinator's.
  const dir2 = tempDir("2pca-takeover-2");
  const db2 = await open(dir2, { namespaces: ["decisions"] });
  await db2.set("decisions", "approval-18", { outcome: "abort", atMs: 0, participants: [] });
  await db2.close();
  const err2 = await Coordinator.open(dir2, { recoverIntervalMs: 0 }).then(async (c) => {
    await c.close();
    return undefined;
  }, (e: unknown) => e);
  assert.ok(err2 instanceof TxtDbError && err2.code === "INVALID_ARGUMENT", String(err2));
  const after2 = await open(dir2, { readOnly: true });
  try {
    assert.deepEqual(await after2.listNamespaces(), ["decisions"]);
    assert.deepEqual(await after2.get("decisions", "approval-18"), { outcome: "abort", atMs: 0, participants: [] });
  } finally {
    await after2.close();
  }
  // A coordinator's own store opens again, and an empty directory becomes one.
  const cdir = tempDir("2pca-takeover-c");
  await (await Coordinator.open(cdir, { recoverIntervalMs: 0 })).close();
  await (await Coordinator.open(cdir, { recoverIntervalMs: 0 })).close();
});

test(`${R} participants whose getters or Proxy traps throw, and the coordinator's own store as a participant, are INVALID_ARGUMENT (raw errors escaped; the own store retried until CONFLICT)`, async () => {
  const cdir = tempDir("2pca-hostile-c");
  const coord = await Coordinator.open(cdir, { recoverIntervalMs: 0 });
  const a = await store("2pca-hostile-a");
  try {
    const throwing = { get prepare(): never { throw new Error("getter"); }, commit: async () => {}, abort: async () => {}, inDoubt: async () => [] };
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    for (const [label, list] of [["a throwing getter", [a, throwing]], ["a revoked Proxy", [a, proxy]], ["a revoked Proxy as the list", proxy]] as const) {
      const err = await coord.transaction(list as unknown as Database[], () => {}).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof TxtDbError && err.code === "INVALID_ARGUMENT", `${label}: ${String(err)}`);
    }
    await assert.rejects(Coordinator.open(tempDir("2pca-hostile-c2"), { participants: [throwing as unknown as TwoPhaseParticipant] }), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT");
    const own = await open(cdir);
    try {
      const err = await coord.transaction([a, own], () => {}).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof TxtDbError && err.code === "INVALID_ARGUMENT" && /own store/.test(err.message), String(err));
    } finally {
      await own.close();
    }
    // The same store through a symlink to its directory: listed twice, not "already prepared".
    const { symlinkSync } = await import("node:fs");
    const link = `${tempDir("2pca-hostile-link")}/a`;
    symlinkSync(a.path, link);
    const a2 = await open(link);
    try {
      const err = await coord.transaction([a, a2], () => {}).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof TxtDbError && err.code === "INVALID_ARGUMENT" && /twice/.test(err.message), String(err));
    } finally {
      await a2.close();
    }
    assert.deepEqual(await a.listPrepared(), []);
  } finally {
    await coord.close();
    await a.close();
  }
});

/** An in-memory participant that can fail its commit, or be down altogether. */
function flakyParticipant(name?: string) {
  const p = {
    prepared: new Set<string>(), committed: new Set<string>(), aborted: new Set<string>(),
    failCommit: false, down: false,
    prepare: async (txid: string) => {
      if (p.down) throw new Error("down");
      p.prepared.add(txid);
    },
    commit: async (txid: string) => {
      if (p.down || p.failCommit) throw new Error("commit fails");
      if (p.prepared.delete(txid)) p.committed.add(txid);
    },
    abort: async (txid: string) => {
      if (p.down) throw new Error("down");
      if (p.prepared.delete(txid)) p.aborted.add(txid);
    },
    inDoubt: async () => {
      if (p.down) throw new Error("down");
      return [...p.prepared];
    },
    ...(name === undefined ? {} : { name }),
  };
  return p;
}

for (const named of [false, true]) {
  test(`${R} ${named ? "named" : "unnamed"} other participants given to Coordinator.open() in another order than to transaction(): a commit decision one of them has not confirmed is never taken as confirmed by another (it was, and that one was then aborted)`, async () => {
    const s = await store(`2pca-order-${named}`);
    const a = flakyParticipant(named ? "a" : undefined), b = flakyParticipant(named ? "b" : undefined);
    const coord = await Coordinator.open(tempDir(`2pca-order-c-${named}`), { participants: [a, b], recoverIntervalMs: 0, inDoubtTimeoutMs: 100 });
    try {
      b.failCommit = true;
      await coord.transaction([s, b], (x) => void x.set("n", "k", "committed"));
      const [txid] = [...b.prepared];
      assert.ok(txid !== undefined, "b holds the transaction prepared");
      b.down = true;
      await coord.recover(); // b unreachable: a answers, as "participant 0" and under its name
      assert.equal(coord.stats().decisionsLogged, 1, "the decision stays while b has not confirmed it");
      b.down = false;
      b.failCommit = false;
      await sleep(200); // past inDoubtTimeoutMs
      await coord.recover();
      await coord.recover();
      assert.equal(await s.get("n", "k"), "committed");
      assert.ok(b.committed.has(txid!) && !b.aborted.has(txid!), `b committed, as s did (committed ${[...b.committed]}, aborted ${[...b.aborted]})`);
      if (named) assert.equal(coord.stats().decisionsLogged, 0, "confirmed by b: gone");
    } finally {
      await coord.close();
      await s.close();
    }
  });
}

test(`${R} a txid made before txids named their coordinator, in doubt at another participant after an upgrade, is still decided (presumed abort once its process is gone), not left in doubt for ever`, async () => {
  const p = flakyParticipant("legacy");
  const old = "0123456789abcdef.1.deadbeef";
  p.prepared.add(old);
  const coord = await Coordinator.open(tempDir("2pca-oldtxid"), { participants: [p], recoverIntervalMs: 0, inDoubtTimeoutMs: 50 });
  try {
    await sleep(100);
    await coord.recover();
    assert.deepEqual([...p.aborted], [old]);
  } finally {
    await coord.close();
  }
});

test(`${R} stats().unfinished forgets a decision another handle finished and deleted`, async () => {
  const cdir = tempDir("2pca-drift-c");
  const s = await store("2pca-drift-s");
  const mail = flakyParticipant("mail");
  const p1 = await Coordinator.open(cdir, { recoverIntervalMs: 0, inDoubtTimeoutMs: 50 });
  const p2 = await Coordinator.open(cdir, { recoverIntervalMs: 0, inDoubtTimeoutMs: 50, participants: [mail] });
  try {
    mail.failCommit = true;
    await p2.transaction([s, mail], (x) => void x.set("n", "k", 1));
    await sleep(100); // past the in-doubt timeout: p1 takes up p2's unfinished decision too
    await p1.recover();
    assert.equal(p1.stats().unfinished, 1, "p1 cannot reach mail: pending");
    mail.failCommit = false;
    await p2.recover();
    assert.equal(p2.stats().decisionsLogged, 0, "p2 reached mail: the decision is gone");
    await p1.recover();
    assert.equal(p1.stats().unfinished, 0, "p1 no longer counts it");
  } finally {
    await p1.close();
    await p2.close();
    await s.close();
  }
});
