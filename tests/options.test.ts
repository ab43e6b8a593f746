/**
 * Bad options and arguments get INVALID_ARGUMENT (a TxtDbError, never a TypeError) and do
 * nothing; durations of 2^31 ms or more mean what they say; names that cannot be stored as
 * given are refused.
 */
import * as fs from "node:fs";
import { assert, runtime, sleep, tempDir, test } from "./harness.ts";
import { Coordinator, open, TxtDbError } from "txtdb";

const R = `[${runtime}]`;
const invalid = (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT";

test(`${R} open() of a URL creates nothing: etcd:// fails clearly without a cluster, other schemes are INVALID_ARGUMENT; "./etcd:..." is a directory`, async () => {
  const base = tempDir("urls");
  const cwd = (globalThis as { Deno?: { cwd(): string } }).Deno?.cwd() ?? (await import("node:process")).cwd();
  const before = fs.readdirSync(cwd).sort();
  // An etcd location: nothing is created locally. No member answering is UNAVAILABLE
  // within requestTimeoutMs; a location without a member is INVALID_ARGUMENT; a local
  // store's option is UNSUPPORTED before any request.
  const started = Date.now();
  await assert.rejects(open("etcd://127.0.0.1:1/app", { requestTimeoutMs: 300 }), (e: unknown) => e instanceof TxtDbError && e.code === "UNAVAILABLE", "closed port");
  assert.ok(Date.now() - started < 5_000, `UNAVAILABLE came within the bound (${Date.now() - started} ms)`);
  await assert.rejects(open("etcd://"), invalid, "etcd:// without a member");
  for (const options of [{ segmentBytes: 1 << 20 }, { cacheBytes: 0 }, { durability: "none" as const }, { maxIdleMs: 5 }, { mode: 0o600 }]) {
    await assert.rejects(open("ETCDS://a:1,b:2/x", options), (e: unknown) => e instanceof TxtDbError && e.code === "UNSUPPORTED", JSON.stringify(options));
  }
  // ...and an etcd option on a directory is INVALID_ARGUMENT, creating nothing.
  for (const options of [{ requestTimeoutMs: 100 }, { username: "u" }, { password: "p" }]) {
    await assert.rejects(open(`${base}/not-etcd`, options), invalid, JSON.stringify(options));
  }
  assert.equal(fs.existsSync(`${base}/not-etcd`), false);
  for (const url of ["http://localhost/x", "file:///tmp/x", "s3://bucket/key"]) {
    await assert.rejects(open(url), (e: unknown) => invalid(e) && /directory path/.test((e as Error).message), url);
  }
  assert.deepEqual(fs.readdirSync(cwd).sort(), before, "no directory named like a scheme was created");
  // A directory whose name merely starts like a URL still opens when written as a path.
  const db = await open(`${base}/etcd:/x`);
  await db.close();
  assert.ok(fs.existsSync(`${base}/etcd:/x`));
});

test(`${R} open() refuses options of the wrong type or range with INVALID_ARGUMENT and creates nothing`, async () => {
  const bad: Record<string, unknown>[] = [
    { readOnly: "true" },
    { readOnly: 1 },
    { segmentBytes: 0 },
    { segmentBytes: 10 },
    { segmentBytes: 1.5 },
    { mode: 0o4777 },
    { mode: 0o2700 },
    { mode: 0o1777 },
    { mode: 0o400 },
    { mode: "0o600" },
    { maxKeyBytes: 0 },
    { maxTxWrites: -1 },
    { watchBufferMax: NaN },
    { lockTimeoutMs: -5 },
    { autoCompactBytes: Infinity },
    { adapter: {} },
    { adapter: null },
    { durability: "sometimes" },
    { namespaces: "ns" },
    { requestTimeoutMs: 0 },
    { requestTimeoutMs: "5s" },
    { username: 5 },
    { durabilty: "none" },
    { readonly: true },
  ];
  for (const options of bad) {
    const dir = `${tempDir("opts")}/store`;
    await assert.rejects(open(dir, options as never), invalid, JSON.stringify(options, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)));
    assert.equal(fs.existsSync(dir), false, `nothing created for ${JSON.stringify(options)}`);
  }
});

test(`${R} a bigint, NaN or a cyclic object where an option or argument goes is INVALID_ARGUMENT showing it, never a TypeError from the message`, async () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  // Each of these used to reach JSON.stringify in the message: a bigint or a cycle made it
  // throw its TypeError instead, and NaN showed as null.
  const shows = (re: RegExp) => (e: unknown) => invalid(e) && re.test((e as Error).message);
  for (const [options, re] of [
    [{ lockTimeoutMs: 5n }, /got 5n$/],
    [{ lockTimeoutMs: NaN }, /got NaN$/],
    [{ readOnly: 1n }, /got 1n$/],
    [{ durability: 1n }, /got 1n$/],
    [{ cacheBytes: cyclic }, /got an object$/],
    [{ namespaces: [5n] }, /got 5n$/],
    [{ namespaces: [cyclic] }, /got an object$/],
    [{ namespaces: ["n".repeat(10_000)] }, /got "n{80}…"$/],
  ] as [Record<string, unknown>, RegExp][]) {
    const dir = `${tempDir("opts")}/store`;
    await assert.rejects(open(dir, options as never), shows(re), String(Object.keys(options)));
    assert.equal(fs.existsSync(dir), false);
  }
  await assert.rejects(open(5n as never), shows(/got 5n$/));
  await assert.rejects(Coordinator.open(cyclic as never), shows(/got an object$/));
  const db = await open(tempDir("opts"), { namespaces: ["ns"] });
  await assert.rejects(db.transaction(() => 1, { isolation: 1n as never }), shows(/got 1n$/));
  await assert.rejects(db.transaction(() => 1, { signal: cyclic as never }), shows(/got an object$/));
  await assert.rejects(db.createNamespace(1n as never), shows(/got 1n$/));
  await assert.rejects(db.backup([1n] as never), shows(/got \["1n"\]$/));
  await db.close();
});

test(`${R} transaction() refuses a non-function, bad options and a non-signal with INVALID_ARGUMENT`, async () => {
  const db = await open(tempDir("opts"), { namespaces: ["ns"] });
  await assert.rejects(db.transaction(5 as never), invalid);
  await assert.rejects(db.transaction(null as never), invalid);
  await assert.rejects(db.transaction(() => 1, { signal: "x" as never }), invalid);
  await assert.rejects(db.transaction(() => 1, { signal: {} as never }), invalid);
  await assert.rejects(db.transaction(() => 1, null as never), invalid);
  await assert.rejects(db.transaction(() => 1, { maxRetries: -1 }), invalid);
  await assert.rejects(db.transaction(() => 1, { timeoutMs: -1 }), invalid);
  assert.equal(await db.transaction(() => 7, { signal: new AbortController().signal, timeoutMs: Infinity }), 7);
  await db.close();
});

test(`${R} a signal or options object whose getters or traps throw is INVALID_ARGUMENT at the call (transaction, watch, lock), never the raw error; nothing is taken`, async () => {
  const db = await open(tempDir("opts"), { namespaces: ["ns"] });
  const boom = () => { throw new Error("boom from a getter"); };
  const hostileSignals: unknown[] = [
    Object.defineProperty({ addEventListener() {}, removeEventListener() {} }, "aborted", { get: boom }),
    Object.defineProperty({ aborted: false, removeEventListener() {} }, "addEventListener", { get: boom }),
    { aborted: false, addEventListener() {} }, // no removeEventListener: a listener could never be taken off
    new Proxy({}, { get: boom }),
  ];
  const hostileOptions: unknown[] = [
    new Proxy({}, { ownKeys: boom }),
    Object.defineProperty({}, "timeoutMs", { get: boom, enumerable: true }),
    Object.defineProperty({}, "signal", { get: boom, enumerable: true }),
  ];
  const notRaw = (what: string) => (e: unknown) => {
    assert.ok(invalid(e), `${what}: ${String(e)}`);
    return true;
  };
  for (const [i, signal] of hostileSignals.entries()) {
    await assert.rejects(db.transaction(() => 1, { signal: signal as AbortSignal }), notRaw(`transaction signal ${i}`));
    assert.throws(() => db.watch("ns", { prefix: [] }, { signal: signal as AbortSignal }), notRaw(`watch signal ${i}`));
    await assert.rejects(db.lock(["r"], "X", { signal: signal as AbortSignal }), notRaw(`lock signal ${i}`));
  }
  for (const [i, options] of hostileOptions.entries()) {
    await assert.rejects(db.transaction(() => 1, options as never), notRaw(`transaction options ${i}`));
    await assert.rejects(db.lock(["r"], "X", options as never), notRaw(`lock options ${i}`));
  }
  assert.deepEqual(db.locks(), [], "no lock was taken");
  assert.equal(db.stats().commits, 1, "only the open's namespace creation committed");
  await db.close();
});

test(`${R} a signal that throws only later (its aborted getter on a second read, addEventListener, removeEventListener) never leaves a call unsettled or a raw error escaping: it counts as aborted`, async () => {
  const db = await open(tempDir("opts"), { namespaces: ["ns"] });
  const secondReadThrows = () => {
    let reads = 0;
    return { get aborted() { if (++reads > 1) throw new Error("aborted read twice"); return false; }, addEventListener() {}, removeEventListener() {} };
  };
  const addThrows = () => ({ aborted: false, addEventListener() { throw new Error("add"); }, removeEventListener() {} });
  const removeThrows = () => ({ aborted: false, reason: undefined, addEventListener() {}, removeEventListener() { throw new Error("remove"); } });
  const settled = async <T>(p: Promise<T>) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pending = new Promise<{ pending: true }>((resolve) => (timer = setTimeout(() => resolve({ pending: true }), 5_000)));
    try {
      return await Promise.race([p.then((v) => ({ v }), (e: unknown) => ({ e })), pending]);
    } finally {
      clearTimeout(timer);
    }
  };
  for (const [name, make] of [["second read throws", secondReadThrows], ["addEventListener throws", addThrows], ["removeEventListener throws", removeThrows]] as const) {
    const r = await settled(db.transaction((tx) => tx.set("ns", name, 1), { signal: make() as unknown as AbortSignal }));
    assert.ok(!("pending" in r), `${name}: transaction() settled`);
    if ("e" in r) assert.ok(r.e instanceof TxtDbError, `${name}: ${String(r.e)}`);
    const w = db.watch("ns", { keys: ["w"] }, { signal: make() as unknown as AbortSignal });
    const write = sleep(20).then(() => db.set("ns", "w", name));
    const n = await settled(w.next());
    await write;
    assert.ok(!("pending" in n), `${name}: watch().next() settled`);
    if ("e" in n) assert.ok(n.e instanceof TxtDbError, `${name}: ${String(n.e)}`);
    await w.return?.();
    const l = await settled(db.lock(["r", name], "X", { signal: make() as unknown as AbortSignal }));
    assert.ok(!("pending" in l), `${name}: lock() settled`);
    if ("e" in l) assert.ok(l.e instanceof TxtDbError, `${name}: ${String(l.e)}`);
    else await (l as { v: { release(): Promise<void> | void } }).v.release();
  }
  await db.close();
});

test(`${R} every call that takes options refuses an unknown one with INVALID_ARGUMENT naming it and the known ones; calls without options refuse one`, async () => {
  const base = tempDir("opts");
  const db = await open(`${base}/store`, { namespaces: ["ns"] });
  const names = (bad: string, ...known: string[]) => (e: unknown) => {
    assert.ok(invalid(e), String(e));
    const m = (e as Error).message;
    for (const s of [JSON.stringify(bad), ...known]) assert.ok(m.includes(s), `${JSON.stringify(s)} in: ${m}`);
    return true;
  };
  await assert.rejects(db.transaction(() => 1, { timeoutMS: 10 } as never), names("timeoutMS", "did you mean timeoutMs?", "isolation, maxRetries, timeoutMs, signal"));
  await assert.rejects(db.transaction(() => 1, { retries: 3 } as never), names("retries", "maxRetries"));
  await assert.rejects(db.begin({ isolaton: "snapshot" } as never), names("isolaton", "did you mean isolation?"));
  assert.throws(() => db.watch("ns", { prefix: [] }, { from: 1n } as never), names("from", "fromVersion, signal"));
  assert.throws(() => db.watch("ns", { keys: ["a"], signal: undefined } as never), names("signal", "in the options"));
  await assert.rejects(db.lock(["r"], "X", { timeoutMS: 5 } as never), names("timeoutMS", "did you mean timeoutMs?", "timeoutMs, signal"));
  assert.deepEqual(db.locks(), [], "no lock was taken");
  const untyped = db as unknown as Record<"snapshot" | "compact" | "check" | "backup", (...a: unknown[]) => Promise<unknown>>;
  for (const [call, args] of [["snapshot", [{ version: 1n }]], ["compact", [{ full: true }]], ["check", [{ deep: true }]], ["backup", [`${base}/copy`, { overwrite: true }]]] as const) {
    await assert.rejects(untyped[call]!(...args), (e: unknown) => invalid(e) && /takes .*no options/.test((e as Error).message), call);
  }
  assert.equal(fs.existsSync(`${base}/copy`), false, "no backup was made");
  // undefined in place of the options is the same as none.
  (await untyped.snapshot!(undefined) as { release(): void }).release();
  await assert.rejects(Coordinator.open(`${base}/coord`, { prepareTimeoutMS: 5 } as never), names("prepareTimeoutMS", "did you mean prepareTimeoutMs?"));
  assert.equal(fs.existsSync(`${base}/coord`), false, "no coordinator store was created");
  assert.equal(db.stats().commits, 1, "only the open's namespace creation committed");
  await db.close();
});

test(`${R} durations of 2^31 ms or more (or Infinity) wait that long instead of firing at once`, async () => {
  const db = await open(tempDir("opts"), { namespaces: ["ns"], lockTimeoutMs: Infinity, maxIdleMs: Infinity, watchPollMs: 2 ** 31 });
  const snap = await db.snapshot();
  await sleep(10);
  assert.equal(await snap.get("ns", "k"), undefined, "a snapshot with maxIdleMs: Infinity is never released");
  snap.release();
  const r = await db.transaction(async (tx) => {
    await sleep(5);
    tx.set("ns", "k", 1);
    return "done";
  }, { timeoutMs: 2 ** 31 + 1 });
  assert.equal(r, "done");
  await db.close();
});

test(`${R} namespace names with a lone surrogate are refused, well-formed ones round-trip exactly`, async () => {
  const db = await open(tempDir("opts"));
  for (const name of ["a\uD800", "\uDC00b", "x\uDBFF\u0041"]) {
    await assert.rejects(db.createNamespace(name), invalid, JSON.stringify(name));
    await assert.rejects(db.set(name, "k", 1), invalid);
  }
  await assert.rejects(open(tempDir("opts"), { namespaces: ["bad\uD83D"] }), invalid);
  const good = ["😀 emoji", "\u0000nul", "ümlaut", "a\uD83D\uDE00b"];
  for (const name of good) await db.createNamespace(name);
  assert.deepEqual((await db.listNamespaces()).filter((n) => good.includes(n)).sort(), [...good].sort());
  await db.close();
});
