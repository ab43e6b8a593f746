/**
 * The etcd client (src/etcd/) against a real one-member etcd: reads, writes, transactions
 * with every compare target, watches from the past and their compaction error, leases and
 * their keep-alive, etcd's size limits, auth with token refresh, and the failures a client
 * meets without a cluster: endpoints that refuse, a server that never answers, replies
 * lost after etcd applied a write (through an injected fetch around the real one).
 *
 * Multi-member behaviour (failover, lost quorum, a watch resumed on another member) is in
 * etcd-failover.test.ts.
 */
import * as net from "node:net";
import { assert, runtime, sleep, test } from "./harness.ts";
import { enableAuth } from "./etcdcluster.ts";
import { etcdTests, failsWith, sharedCluster, str, text, uniquePrefix } from "./etcdtests.ts";
import { decodeBase64, encodeBase64, EtcdClient, EtcdCompactedError, parseEtcdUrl, prefixEnd, TxtDbError } from "txtdb/internal";
import type { EtcdCompare, EtcdWatchEvent, FetchLike } from "txtdb/internal";

const R = `[${runtime}]`;
const enc = new TextEncoder();

// --- no cluster needed ---

test(`${R} etcd base64 round-trips every length and byte, and matches the standard alphabet`, () => {
  for (let len = 0; len < 70; len++) {
    const b = Uint8Array.from({ length: len }, (_, i) => (i * 37 + len) & 0xff);
    assert.deepEqual(decodeBase64(encodeBase64(b)), b);
  }
  assert.equal(encodeBase64(enc.encode("foo")), "Zm9v");
  assert.equal(encodeBase64(Uint8Array.of(0xfb, 0xff)), "+/8=");
  assert.deepEqual(decodeBase64("+/8"), Uint8Array.of(0xfb, 0xff));
  const big = Uint8Array.from({ length: 100_003 }, (_, i) => i & 0xff);
  assert.deepEqual(decodeBase64(encodeBase64(big)), big);
  assert.throws(() => decodeBase64("Zm9v!"), (e: unknown) => e instanceof TxtDbError && e.code === "UNAVAILABLE");
});

test(`${R} parseEtcdUrl reads members, default port, prefix and etcds://, and rejects the malformed`, () => {
  assert.deepEqual(parseEtcdUrl("etcd://10.0.0.5:2379,10.0.0.6,[::1]:3000/myapp"), {
    endpoints: ["http://10.0.0.5:2379", "http://10.0.0.6:2379", "http://[::1]:3000"],
    prefix: "myapp/",
    tls: false,
  });
  assert.deepEqual(parseEtcdUrl("etcds://db.example.com:2379/a/b/"), { endpoints: ["https://db.example.com:2379"], prefix: "a/b/", tls: true });
  assert.equal(parseEtcdUrl("etcd://h").prefix, "");
  for (const bad of ["http://h:1/x", "etcd://", "etcd://h:99999/x", "etcd://u:p@h/x", "etcd://h/x?y=1", "etcd://h:1,,h:2/x"]) {
    assert.throws(() => parseEtcdUrl(bad), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT", bad);
  }
});

test(`${R} prefixEnd increments the last byte below 0xff`, () => {
  assert.deepEqual(prefixEnd("a/"), enc.encode("a0"));
  assert.deepEqual(prefixEnd(Uint8Array.of(1, 0xff, 0xff)), Uint8Array.of(2));
  assert.deepEqual(prefixEnd(""), Uint8Array.of(0));
});

test(`${R} EtcdClient rejects bad options and arguments with INVALID_ARGUMENT before sending anything`, async () => {
  let sent = 0;
  const fetch: FetchLike = () => {
    sent++;
    return Promise.reject(new Error("not reached"));
  };
  assert.throws(() => new EtcdClient({ endpoints: [] }), /at least one endpoint/);
  assert.throws(() => new EtcdClient({ endpoints: ["h:1"], requestTimeoutMs: 0 }), /requestTimeoutMs/);
  assert.throws(() => new EtcdClient({ endpoints: ["h:1"], username: "root" }), /both username and password/);
  const c = new EtcdClient({ endpoints: ["127.0.0.1:1"], fetch });
  await failsWith("INVALID_ARGUMENT", () => c.grantLease(0));
  await failsWith("INVALID_ARGUMENT", () => c.range("k", { revision: -1n }));
  await failsWith("INVALID_ARGUMENT", () => c.range("k", { limit: 1.5 }));
  assert.equal(sent, 0);
  c.close();
  await failsWith("CLOSED", () => c.range("k"));
});

test(`${R} endpoints that refuse connections: UNAVAILABLE within requestTimeoutMs, naming each endpoint, for reads and writes`, async () => {
  // Ports nothing listens on: bound and closed again.
  const ports = await Promise.all([closedPort(), closedPort()]);
  const c = new EtcdClient({ endpoints: ports.map((p) => `127.0.0.1:${p}`), requestTimeoutMs: 1500 });
  const read = await failsWith("UNAVAILABLE", () => c.range("k"));
  assert.ok(read.ms < 1500 + 1000, `a read took ${read.ms} ms`);
  for (const p of ports) assert.match(read.error.message, new RegExp(`127\\.0\\.0\\.1:${p}`));
  const write = await failsWith("UNAVAILABLE", () => c.put("k", "v"));
  assert.equal(write.error.details?.outcome, "not-applied", "a refused connection never carried the write");
  c.close();
});

test(`${R} a server that accepts connections and never answers: UNAVAILABLE within requestTimeoutMs, never a hang`, async () => {
  const sockets: net.Socket[] = [];
  const srv = net.createServer((s) => sockets.push(s)); // accepts, reads nothing, answers nothing
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const c = new EtcdClient({ endpoints: [`127.0.0.1:${port}`], requestTimeoutMs: 800 });
    const read = await failsWith("UNAVAILABLE", () => c.range("k"));
    assert.ok(read.ms < 800 + 1500, `a read took ${read.ms} ms`);
    const write = await failsWith("UNAVAILABLE", () => c.put("k", "v"));
    assert.ok(write.ms < 800 + 1500, `a write took ${write.ms} ms`);
    assert.equal(write.error.details?.outcome, "unknown", "a write sent and unanswered may have been applied");
    assert.match(write.error.message, /may or may not have been applied/);
    const watch = await failsWith("UNAVAILABLE", async () => {
      for await (const _ of c.watch("k")) { /* nothing comes */ }
    });
    assert.ok(watch.ms < 800 + 1500, `a watch took ${watch.ms} ms to give up`);
    c.close();
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => srv.close(resolve));
  }
});

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// --- one real member ---

etcdTests(`${R} etcd client`, () => {
  // Progress notifications every second, so the progress test waits ~1 s, not etcd's 10 min.
  const one = sharedCluster(1, { args: ["--experimental-watch-progress-notify-interval", "1s"] });
  const client = async (options: { requestTimeoutMs?: number; fetch?: FetchLike } = {}) => new EtcdClient({ endpoints: (await one.get()).endpoints, requestTimeoutMs: 5000, ...options });

  test(`${R} put and range: one key, prefixes, limit and more, counts, reads at a past revision`, async () => {
    const c = await client();
    const p = uniquePrefix("kv");
    const first = await c.put(`${p}a`, "1");
    await c.put(`${p}b`, "2");
    await c.put(`${p}c`, enc.encode("3"));
    const last = await c.put(`${p}a`, "1b", { prevKv: true });
    assert.deepEqual(text(last.prevKv), [`${p}a`, "1"]);
    assert.ok(last.revision > first.revision);

    const a = await c.range(`${p}a`);
    assert.equal(a.count, 1);
    assert.deepEqual(text(a.kvs[0]), [`${p}a`, "1b"]);
    assert.equal(a.kvs[0]!.version, 2);
    assert.equal(a.kvs[0]!.createRevision, first.revision);
    assert.equal(a.kvs[0]!.modRevision, last.revision);
    assert.equal(a.kvs[0]!.lease, 0n);
    assert.equal(typeof a.revision, "bigint");

    const all = await c.range(p, { prefix: true });
    assert.deepEqual(all.kvs.map((kv) => text(kv)), [[`${p}a`, "1b"], [`${p}b`, "2"], [`${p}c`, "3"]]);
    const limited = await c.range(p, { prefix: true, limit: 2 });
    assert.equal(limited.kvs.length, 2);
    assert.equal(limited.count, 3);
    assert.equal(limited.more, true);
    const between = await c.range(`${p}b`, { rangeEnd: `${p}c` });
    assert.deepEqual(between.kvs.map((kv) => str(kv.key)), [`${p}b`]);
    const desc = await c.range(p, { prefix: true, sortOrder: "DESCEND", sortTarget: "KEY", keysOnly: true, serializable: true });
    assert.deepEqual(desc.kvs.map((kv) => str(kv.key)), [`${p}c`, `${p}b`, `${p}a`]);
    assert.equal(desc.kvs[0]!.value.length, 0, "keysOnly");
    assert.equal((await c.range(p, { prefix: true, countOnly: true })).count, 3);

    const past = await c.range(`${p}a`, { revision: first.revision });
    assert.deepEqual(text(past.kvs[0]), [`${p}a`, "1"]);
    await failsWith("INVALID_ARGUMENT", () => c.range(`${p}a`, { revision: last.revision + 1000n }));

    const del = await c.deleteRange(p, { prefix: true, prevKv: true });
    assert.equal(del.deleted, 3);
    assert.deepEqual(del.prevKvs.map((kv) => str(kv.key)).sort(), [`${p}a`, `${p}b`, `${p}c`]);
    assert.equal((await c.range(p, { prefix: true })).count, 0);
    assert.equal((await c.range("no-such-key")).kvs.length, 0);
    c.close();
  });

  test(`${R} txn compares on VALUE, VERSION, CREATE, MOD and LEASE, each result, over keys and ranges; a failed compare runs the failure ops`, async () => {
    const c = await client();
    const p = uniquePrefix("txn");
    const lease = await c.grantLease(30);
    const x = await c.put(`${p}x`, "v1", { lease: lease.id });
    await c.put(`${p}x`, "v2", { lease: lease.id });
    const y = await c.put(`${p}y`, "w");
    const kx = `${p}x`;
    const holds = async (compare: EtcdCompare[]) => (await c.txn({ compare })).succeeded;

    // Every target with every result, on one key (x: value v2, version 2, created at x.revision, leased).
    const cases: [EtcdCompare[], boolean][] = [
      [[{ key: kx, target: "VALUE", result: "EQUAL", value: "v2" }], true],
      [[{ key: kx, target: "VALUE", result: "NOT_EQUAL", value: "v2" }], false],
      [[{ key: kx, target: "VALUE", result: "GREATER", value: "v1" }], true],
      [[{ key: kx, target: "VALUE", result: "LESS", value: "v1" }], false],
      [[{ key: kx, target: "VERSION", result: "EQUAL", version: 2 }], true],
      [[{ key: kx, target: "VERSION", result: "GREATER", version: 2n }], false],
      [[{ key: kx, target: "VERSION", result: "LESS", version: 3 }], true],
      [[{ key: kx, target: "VERSION", result: "NOT_EQUAL", version: 2 }], false],
      [[{ key: kx, target: "CREATE", result: "EQUAL", createRevision: x.revision }], true],
      [[{ key: kx, target: "CREATE", result: "LESS", createRevision: x.revision }], false],
      [[{ key: kx, target: "MOD", result: "GREATER", modRevision: x.revision }], true],
      [[{ key: kx, target: "MOD", result: "EQUAL", modRevision: x.revision }], false],
      [[{ key: kx, target: "LEASE", result: "EQUAL", lease: lease.id }], true],
      [[{ key: kx, target: "LEASE", result: "NOT_EQUAL", lease: lease.id }], false],
      // A missing key: version, create revision and lease 0, and no VALUE compare holds.
      [[{ key: `${p}missing`, target: "VERSION", result: "EQUAL", version: 0 }], true],
      [[{ key: `${p}missing`, target: "CREATE", result: "EQUAL", createRevision: 0n }], true],
      [[{ key: `${p}missing`, target: "VALUE", result: "NOT_EQUAL", value: "z" }], false],
      // Range compares: every key of the range must satisfy it.
      [[{ key: p, prefix: true, target: "MOD", result: "LESS", modRevision: y.revision + 1n }], true],
      [[{ key: p, prefix: true, target: "MOD", result: "LESS", modRevision: y.revision }], false],
      [[{ key: p, prefix: true, target: "VERSION", result: "GREATER", version: 0 }], true],
      [[{ key: kx, rangeEnd: `${p}z`, target: "CREATE", result: "GREATER", createRevision: 0n }], true],
      // A conjunction: one false compare fails the whole txn.
      [[{ key: kx, target: "VALUE", result: "EQUAL", value: "v2" }, { key: `${p}y`, target: "VALUE", result: "EQUAL", value: "nope" }], false],
    ];
    for (const [compare, expected] of cases) assert.equal(await holds(compare), expected, JSON.stringify(compare, (_, v) => (typeof v === "bigint" ? String(v) : v)));

    // Success and failure ops, with their results in order.
    const won = await c.txn({
      compare: [{ key: kx, target: "VERSION", result: "EQUAL", version: 2 }],
      success: [{ op: "put", key: kx, value: "v3", prevKv: true }, { op: "range", key: p, prefix: true }, { op: "delete", key: `${p}y`, prevKv: true }],
      failure: [{ op: "put", key: `${p}lost`, value: "!" }],
    });
    assert.equal(won.succeeded, true);
    assert.equal(won.responses.length, 3);
    const [put, range, del] = won.responses;
    assert.ok(put?.op === "put" && text(put.prevKv)?.[1] === "v2");
    assert.ok(range?.op === "range" && range.count === 2 && text(range.kvs[0])?.[1] === "v3", "a range in a txn sees the txn's own put");
    assert.ok(del?.op === "delete" && del.deleted === 1 && text(del.prevKvs[0])?.[1] === "w");

    const lost = await c.txn({
      compare: [{ key: kx, target: "MOD", result: "EQUAL", modRevision: x.revision }],
      success: [{ op: "put", key: kx, value: "must not happen" }],
      failure: [{ op: "put", key: `${p}fallback`, value: "yes" }, { op: "range", key: kx }],
    });
    assert.equal(lost.succeeded, false);
    assert.equal(lost.responses.length, 2);
    assert.ok(lost.responses[1]?.op === "range" && text(lost.responses[1].kvs[0])?.[1] === "v3");
    assert.deepEqual(text((await c.range(`${p}fallback`)).kvs[0]), [`${p}fallback`, "yes"]);
    assert.equal(str((await c.range(kx)).kvs[0]!.value), "v3");
    await c.revokeLease(lease.id);
    c.close();
  });

  test(`${R} etcd's size limits fail with LIMIT and write nothing: a value over 1.5 MiB, a txn of 129 ops or 129 compares`, async () => {
    const c = await client();
    const p = uniquePrefix("limit");
    const big = await failsWith("LIMIT", () => c.put(`${p}big`, new Uint8Array(1600 * 1024)));
    assert.match(big.error.message, /request is too large/);
    assert.match(big.error.message, /max-request-bytes/);
    // Larger still: the gRPC receive limit answers before etcd's own check.
    await failsWith("LIMIT", () => c.put(`${p}bigger`, new Uint8Array(3 * 1024 * 1024)));
    const ops = Array.from({ length: 129 }, (_, i) => ({ op: "put" as const, key: `${p}${i}`, value: "x" }));
    const many = await failsWith("LIMIT", () => c.txn({ success: ops }));
    assert.match(many.error.message, /max-txn-ops/);
    // The bound is per list: 129 compares fail too, and a key written twice in one branch is refused.
    const compares = ops.map((o) => ({ key: o.key, target: "VERSION" as const, result: "EQUAL" as const, version: 0 }));
    await failsWith("LIMIT", () => c.txn({ compare: compares, success: [{ op: "put", key: `${p}one`, value: "x" }] }));
    const twice = await failsWith("INVALID_ARGUMENT", () => c.txn({ success: [{ op: "put", key: `${p}k`, value: "1" }, { op: "delete", key: `${p}k` }] }));
    assert.match(twice.error.message, /duplicate key/);
    assert.equal((await c.range(p, { prefix: true })).count, 0);
    // Just under both limits works.
    await c.put(`${p}ok`, new Uint8Array(1024 * 1024));
    assert.equal((await c.txn({ compare: compares.slice(0, 128), success: ops.slice(0, 128), failure: ops.slice(0, 128) })).succeeded, true);
    c.close();
  });

  test(`${R} watch from a past revision delivers every event in revision order, with prev_kv, then live ones`, async () => {
    const c = await client();
    const p = uniquePrefix("watch");
    const first = await c.put(`${p}a`, "1");
    await c.put(`${p}b`, "1");
    await c.put(`${p}a`, "2");
    await c.deleteRange(`${p}b`);
    await c.txn({ success: [{ op: "put", key: `${p}c`, value: "1" }, { op: "put", key: `${p}d`, value: "1" }] }); // one revision, two events
    await c.put("outside-the-prefix", "x");
    const ac = new AbortController();
    const seen: EtcdWatchEvent[] = [];
    for await (const e of c.watch(p, { prefix: true, startRevision: first.revision, prevKv: true, signal: ac.signal })) {
      seen.push(e);
      if (seen.length === 6) await c.put(`${p}live`, "now");
      if (seen.length === 7) ac.abort();
    }
    const summary = seen.map((e) => (e.type === "PROGRESS" ? "P" : `${e.type} ${str(e.kv.key).slice(p.length)}=${str(e.kv.value)}${e.prevKv ? ` (was ${str(e.prevKv.value)})` : ""}`));
    assert.deepEqual(summary, ["PUT a=1", "PUT b=1", "PUT a=2 (was 1)", "DELETE b= (was 1)", "PUT c=1", "PUT d=1", "PUT live=now"]);
    const revs = seen.map((e) => e.revision);
    for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! >= revs[i - 1]!, "revision order");
    assert.equal(seen[4]!.revision, seen[5]!.revision, "a txn's events share its revision");
    c.close();
  });

  test(`${R} watch with progressNotify reports progress while quiet; break and abort end it at once`, async () => {
    const c = await client();
    const p = uniquePrefix("progress");
    const { revision } = await c.put(`${p}k`, "v");
    const t0 = performance.now();
    for await (const e of c.watch(p, { prefix: true, startRevision: revision + 1n, progressNotify: true })) {
      assert.equal(e.type, "PROGRESS");
      assert.ok(e.revision >= revision);
      break; // ends the stream
    }
    assert.ok(performance.now() - t0 < 10_000);
    const ac = new AbortController();
    const t1 = performance.now();
    setTimeout(() => ac.abort(), 100);
    for await (const _ of c.watch(`${p}never`, { signal: ac.signal })) assert.fail("no event expected");
    assert.ok(performance.now() - t1 < 3000, "an aborted watch ends promptly");
    c.close();
  });

  test(`${R} a compacted start revision fails the watch with EtcdCompactedError (WATCH_OVERFLOW), and a read there with INVALID_ARGUMENT`, async () => {
    const c = await client();
    const p = uniquePrefix("compact");
    const old = await c.put(`${p}k`, "1");
    const now = await c.put(`${p}k`, "2");
    await c.compact(now.revision, { physical: true });
    await c.compact(now.revision); // again: no error
    try {
      for await (const _ of c.watch(`${p}k`, { startRevision: old.revision })) assert.fail("no event from compacted history");
      assert.fail("the watch ended without an error");
    } catch (e) {
      assert.ok(e instanceof EtcdCompactedError, String(e));
      assert.equal(e.code, "WATCH_OVERFLOW");
      assert.equal(e.compactRevision, now.revision);
      assert.equal(e.requestedRevision, old.revision);
      assert.match(e.message, /watch from its revision \+ 1/);
    }
    const read = await failsWith("INVALID_ARGUMENT", () => c.range(`${p}k`, { revision: old.revision }));
    assert.ok(read.error instanceof EtcdCompactedError);
    // From the compaction revision on, history is there.
    for await (const e of c.watch(`${p}k`, { startRevision: now.revision })) {
      assert.ok(e.type === "PUT" && str(e.kv.value) === "2");
      break;
    }
    c.close();
  });

  test(`${R} leases: keep-alive holds the key past its TTL, expiry deletes it, revoke deletes at once, loss is reported`, async () => {
    const c = await client();
    const p = uniquePrefix("lease");
    const kept = await c.lease(2);
    assert.equal(kept.ttlSeconds, 2);
    await c.put(`${p}kept`, "v", { lease: kept.id });
    const info = await c.leaseTimeToLive(kept.id, { keys: true });
    assert.deepEqual(info.keys.map(str), [`${p}kept`]);
    assert.equal(info.grantedTtlSeconds, 2);

    const revoked = await c.lease(30);
    await c.put(`${p}revoked`, "v", { lease: revoked.id });
    await revoked.revoke();
    assert.equal((await c.range(`${p}revoked`)).count, 0, "revoke deletes the lease's keys");
    await c.revokeLease(revoked.id); // again: no error

    // Another client revokes a lease this one keeps alive: the next renewal finds it gone.
    const victim = await c.lease(2);
    const lost = victim.lost.then((e) => e);
    const other = await client();
    await other.revokeLease(victim.id);
    const loss = await lost;
    assert.equal(loss.code, "UNAVAILABLE");
    assert.equal(loss.details?.reason, "expired");
    assert.ok(victim.isLost);

    await sleep(3500); // past the TTL of 2 s
    assert.equal((await c.range(`${p}kept`)).count, 1, "the kept lease's key outlives its TTL");
    assert.ok(kept.renewals >= 3, `renewals: ${kept.renewals}`);
    assert.equal(kept.isLost, false);

    kept.stop();
    const t0 = performance.now();
    while ((await c.range(`${p}kept`)).count === 1) {
      assert.ok(performance.now() - t0 < 6000, "an unrenewed lease expires within its TTL (+ etcd's slack)");
      await sleep(200);
    }
    assert.equal((await c.leaseTimeToLive(kept.id)).ttlSeconds, -1);
    assert.equal(await c.keepAliveOnce(kept.id), 0);
    other.close();
    c.close();
  });

  test(`${R} a write whose reply is lost after etcd applied it: UNAVAILABLE with outcome unknown, sent once; a read is resent`, async () => {
    let calls = 0;
    let loseNext = false;
    const fetch: FetchLike = async (url, init) => {
      calls++;
      const res = await globalThis.fetch(url, init);
      if (loseNext) {
        loseNext = false;
        await res.text();
        throw Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }) });
      }
      return res;
    };
    const c = await client({ fetch });
    const p = uniquePrefix("lost");
    loseNext = true;
    calls = 0;
    const { error } = await failsWith("UNAVAILABLE", () => c.put(`${p}k`, "v"));
    assert.equal(calls, 1, "a write of unknown outcome is not resent");
    assert.equal(error.details?.outcome, "unknown");
    assert.equal((await c.range(`${p}k`)).kvs[0]?.version, 1, "etcd applied it exactly once");

    loseNext = true;
    calls = 0;
    const r = await c.range(`${p}k`);
    assert.equal(r.count, 1);
    assert.equal(calls, 2, "a read is resent");
    c.close();
  });

  test(`${R} a lease whose renewals cannot reach etcd is reported lost ("unrenewed") by the end of its TTL`, async () => {
    let down = false;
    const fetch: FetchLike = (url, init) => {
      if (down) return Promise.reject(Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error(`connect ECONNREFUSED ${url}`), { code: "ECONNREFUSED" }) }));
      return globalThis.fetch(url, init);
    };
    const c = await client({ fetch, requestTimeoutMs: 1000 });
    const lease = await c.lease(2);
    await sleep(800); // one renewal at ~667 ms
    assert.ok(lease.renewals >= 1);
    down = true;
    const t0 = performance.now();
    const loss = await lease.lost;
    const ms = performance.now() - t0;
    assert.equal(loss.details?.reason, "unrenewed");
    assert.match(loss.message, /within its TTL of 2 s/);
    assert.ok(ms <= 2000 + 1000, `the loss was reported ${ms} ms after etcd became unreachable`);
    c.close();
  });

  test(`${R} a refused endpoint before a live one: reads and writes go to the live one`, async () => {
    const cluster = await one.get();
    const c = new EtcdClient({ endpoints: [`127.0.0.1:${await closedPort()}`, ...cluster.endpoints], requestTimeoutMs: 3000 });
    const p = uniquePrefix("failover");
    await c.put(`${p}k`, "v");
    assert.equal((await c.range(`${p}k`)).count, 1);
    c.close();
  });

  test(`${R} a write that times out on a frozen member moves the next call to another member (a fence must not ask the frozen one again)`, async () => {
    const cluster = await one.get();
    const frozen = "127.0.0.1:9"; // never connected: the fetch below hangs there until aborted
    const asked: string[] = [];
    const fetch: FetchLike = (url, init) => {
      asked.push(String(url));
      if (!String(url).includes(frozen)) return globalThis.fetch(url, init);
      return new Promise((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true }));
    };
    const c = new EtcdClient({ endpoints: [frozen, ...cluster.endpoints], requestTimeoutMs: 800, fetch });
    const p = uniquePrefix("frozen");
    const { error } = await failsWith("UNAVAILABLE", () => c.put(`${p}k`, "v"));
    assert.equal(error.details?.outcome, "unknown", "a write that timed out may have been applied");
    await c.put(`${p}k`, "w");
    assert.equal(asked.filter((u) => u.includes(frozen)).length, 1, `the frozen member was asked once: ${asked.join(", ")}`);
    assert.equal((await c.range(`${p}k`)).kvs[0]?.version, 1);
    c.close();
  });

  test(`${R} stop the shared cluster`, async () => {
    await one.stop();
  });
});

etcdTests(`${R} etcd auth`, () => {
  // Tokens expire after 2 s idle, so the refresh path runs within the test.
  const authed = sharedCluster(1, { args: ["--auth-token-ttl", "2"] });
  const PASSWORD = "s3cret-for-tests";

  test(`${R} auth: no credentials and a wrong password fail with INVALID_ARGUMENT; the right ones work, watches included, and an expired token is refreshed`, async () => {
    const cluster = await authed.get();
    await enableAuth(cluster.endpoints[0]!, PASSWORD);
    const anonymous = new EtcdClient({ endpoints: cluster.endpoints });
    const noAuth = await failsWith("INVALID_ARGUMENT", () => anonymous.put("k", "v"));
    assert.match(noAuth.error.message, /pass username and password/);
    const wrong = new EtcdClient({ endpoints: cluster.endpoints, username: "root", password: "wrong" });
    const bad = await failsWith("INVALID_ARGUMENT", () => wrong.range("k"));
    assert.match(bad.error.message, /refused the username and password/);

    const c = new EtcdClient({ endpoints: cluster.endpoints, username: "root", password: PASSWORD });
    const { revision } = await c.put("k", "v");
    assert.equal(str((await c.range("k")).kvs[0]!.value), "v");
    assert.equal(c.authentications, 1);
    for await (const e of c.watch("k", { startRevision: revision })) {
      assert.ok(e.type === "PUT" && str(e.kv.value) === "v");
      break;
    }
    await sleep(3000); // the token expires
    await c.put("k", "v2");
    assert.equal(c.authentications, 2, "the expired token was exchanged for a new one");
    assert.equal(str((await c.range("k")).kvs[0]!.value), "v2");
    anonymous.close();
    wrong.close();
    c.close();
  });

  test(`${R} stop the auth cluster`, async () => {
    await authed.stop();
  });
});
