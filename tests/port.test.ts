/**
 * The adapter conformance suite: every adapter — this runtime's and the simulated one —
 * must pass the same checks of the Platform port.
 */
import { assert, runtime, sleep, tempDir, test } from "./harness.ts";
import { defaultPlatform, FileLock, PortError, TxtDbError, ProcessLease, leaseOwnerAlive, readLeaseInfo } from "txtdb/internal";
import type { Platform } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const real = await defaultPlatform();
const adapters: [string, () => { platform: Platform; dir: string }][] = [
  [real.runtime, () => ({ platform: real, dir: tempDir("port") })],
  ["sim", () => {
    const platform = new SimWorld(7).process();
    platform.mkdir("/sim/port");
    return { platform, dir: "/sim/port" };
  }],
];

const bytes = (...xs: number[]) => new Uint8Array(xs);

for (const [name, make] of adapters) {
  test(`[${name}] open() creates owner-only files and read/write/append/truncate/size behave like POSIX`, () => {
    const { platform, dir } = make();
    const f = platform.open(`${dir}/a`, { create: true });
    assert.equal(f.size(), 0);
    assert.equal(f.append(bytes(1, 2, 3)), 0);
    assert.equal(f.append(bytes(4, 5)), 3);
    assert.equal(f.size(), 5);
    f.write(bytes(9), 1);
    const buf = new Uint8Array(8);
    assert.equal(f.read(buf, 0), 5);
    assert.deepEqual([...buf.subarray(0, 5)], [1, 9, 3, 4, 5]);
    assert.equal(f.read(buf, 5), 0, "read at EOF returns 0");
    assert.equal(f.read(new Uint8Array(2), 4), 1, "short read at the tail");
    f.write(bytes(7), 7); // past the end: a hole of zeros
    assert.equal(f.size(), 8);
    assert.equal(f.read(buf, 0), 8);
    assert.deepEqual([...buf], [1, 9, 3, 4, 5, 0, 0, 7]);
    f.truncate(2);
    assert.equal(f.size(), 2);
    f.sync();
    f.datasync();
    f.close();
    assert.deepEqual(platform.stat(`${dir}/a`), { size: 2, isFile: true, isDirectory: false });
    assert.equal(platform.stat(`${dir}/missing`), undefined);
  });

  test(`[${name}] open() without create fails with ENOENT; exclusive create fails with EEXIST`, () => {
    const { platform, dir } = make();
    assert.throws(() => platform.open(`${dir}/none`), (e: unknown) => e instanceof PortError && e.errno === "ENOENT");
    platform.open(`${dir}/x`, { create: true }).close();
    assert.throws(() => platform.open(`${dir}/x`, { create: true, exclusive: true }), (e: unknown) => e instanceof PortError && e.errno === "EEXIST");
  });

  test(`[${name}] readdir, rename (atomic replace), unlink and syncDir`, () => {
    const { platform, dir } = make();
    platform.mkdir(`${dir}/sub/deeper`);
    const f = platform.open(`${dir}/sub/tmp`, { create: true });
    f.append(bytes(1));
    f.sync();
    f.close();
    platform.open(`${dir}/sub/target`, { create: true }).close();
    platform.rename(`${dir}/sub/tmp`, `${dir}/sub/target`);
    platform.syncDir(`${dir}/sub`);
    assert.deepEqual(platform.readdir(`${dir}/sub`).sort(), ["deeper", "target"]);
    assert.equal(platform.stat(`${dir}/sub/target`)!.size, 1);
    platform.unlink(`${dir}/sub/target`);
    platform.unlink(`${dir}/sub/target`); // already gone: no error
    assert.deepEqual(platform.readdir(`${dir}/sub`), ["deeper"]);
  });

  test(`[${name}] flock: shared locks coexist, exclusive excludes, across two handles of one process`, () => {
    const { platform, dir } = make();
    const a = platform.open(`${dir}/l`, { create: true });
    const b = platform.open(`${dir}/l`, { create: true });
    assert.equal(a.tryLock(false), true);
    assert.equal(b.tryLock(false), true, "two shared locks coexist");
    b.unlock();
    assert.equal(b.tryLock(true), false, "exclusive is refused while a shared lock is held");
    a.unlock();
    assert.equal(b.tryLock(true), true);
    assert.equal(a.tryLock(false), false, "shared is refused while an exclusive lock is held");
    b.close(); // closing releases
    assert.equal(a.tryLock(true), true);
    a.close();
  });

  test(`[${name}] FileLock queues in-process waiters: shared holders share, exclusive waits for them`, async () => {
    const { platform, dir } = make();
    const lock = new FileLock(platform, `${dir}/q.lock`);
    const r1 = await lock.acquire(false);
    const r2 = await lock.acquire(false);
    assert.equal(lock.held, true);
    const order: string[] = [];
    const ex = lock.acquire(true).then((r) => { order.push("exclusive"); return r; });
    const sh = lock.acquire(false).then((r) => { order.push("shared-after"); return r; });
    await sleep(5);
    assert.deepEqual(order, [], "exclusive waits for shared holders; later shared waits behind it (FIFO)");
    r1();
    await sleep(2);
    assert.deepEqual(order, []);
    r2();
    const rex = await ex;
    assert.deepEqual(order, ["exclusive"]);
    assert.equal(lock.heldExclusive, true);
    rex();
    (await sh)();
    assert.deepEqual(order, ["exclusive", "shared-after"]);
    lock.close();
  });

  test(`[${name}] a lock wait does not freeze the event loop, and a timeout gives LOCK_TIMEOUT`, async () => {
    const { platform, dir } = make();
    // Two FileLocks on one path are two open file descriptions: they exclude each other
    // exactly as two processes would.
    const holder = new FileLock(platform, `${dir}/w.lock`);
    const waiter = new FileLock(platform, `${dir}/w.lock`);
    const release = await holder.acquire(true);
    let ticks = 0;
    let worstGapMs = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worstGapMs = Math.max(worstGapMs, now - last);
      last = now;
      ticks++;
    }, 1);
    const t0 = performance.now();
    await assert.rejects(waiter.acquire(true, { timeoutMs: 150 }), (e: unknown) => {
      assert.ok(e instanceof TxtDbError);
      assert.equal(e.code, "LOCK_TIMEOUT");
      assert.match(e.message, /Cannot acquire exclusive lock on ".*w\.lock" after \d+ ms/);
      return true;
    });
    clearInterval(timer);
    const waited = performance.now() - t0;
    assert.ok(waited >= 140, `waited ${waited} ms`);
    assert.ok(ticks >= 20, `a 1 ms timer fired only ${ticks} times during a 150 ms lock wait`);
    assert.ok(worstGapMs < 100, `the event loop stalled for ${worstGapMs} ms`);
    release();
    const r = await waiter.acquire(true, { timeoutMs: 1000 });
    r();
    holder.close();
    waiter.close();
  });

  test(`[${name}] an AbortSignal ends a lock wait with LOCK_TIMEOUT, and the lock stays usable`, async () => {
    const { platform, dir } = make();
    const holder = new FileLock(platform, `${dir}/a.lock`);
    const waiter = new FileLock(platform, `${dir}/a.lock`);
    const release = await holder.acquire(false);
    const ac = new AbortController();
    const p = waiter.acquire(true, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error("stop")), 20);
    await assert.rejects(p, (e: unknown) => e instanceof TxtDbError && e.code === "LOCK_TIMEOUT");
    const shared = await waiter.acquire(false, { timeoutMs: 100 });
    shared();
    release();
    await assert.rejects(waiter.acquire(true, { signal: AbortSignal.abort() }), (e: unknown) => e instanceof TxtDbError && e.code === "LOCK_TIMEOUT");
    holder.close();
    waiter.close();
  });

  test(`[${name}] a waiter gets the lock promptly once the other holder releases`, async () => {
    const { platform, dir } = make();
    const holder = new FileLock(platform, `${dir}/p.lock`);
    const waiter = new FileLock(platform, `${dir}/p.lock`);
    const release = await holder.acquire(true);
    let releasedAt = 0;
    setTimeout(() => { releasedAt = performance.now(); release(); }, 30);
    const r = await waiter.acquire(true, { timeoutMs: 2000 });
    const lag = performance.now() - releasedAt;
    r();
    assert.ok(releasedAt > 0);
    assert.ok(lag < 50, `waiter took ${lag} ms after release`);
    holder.close();
    waiter.close();
  });

  test(`[${name}] liveness: a held lease is alive; a released one, or an unlocked file naming a live PID, is dead`, () => {
    const { platform, dir } = make();
    platform.mkdir(`${dir}/leases`);
    const lease = ProcessLease.create(platform, `${dir}/leases`);
    assert.equal(leaseOwnerAlive(platform, lease.path), true);
    assert.equal(readLeaseInfo(platform, lease.path)?.pid, platform.pid);
    // A file that names this (live) process's PID but whose lock nobody holds: PID reuse
    // must not make it look alive.
    const fake = platform.open(`${dir}/leases/fake.lease`, { create: true });
    fake.write(new TextEncoder().encode(JSON.stringify({ pid: platform.pid, runtime: platform.runtime, startedAtMs: 0 })), 0);
    fake.close();
    assert.equal(leaseOwnerAlive(platform, `${dir}/leases/fake.lease`), false);
    lease.release(platform);
    assert.equal(leaseOwnerAlive(platform, lease.path), false);
  });
}

test(`[${runtime}] the default adapter is this runtime's`, () => {
  assert.equal(real.runtime, runtime);
  assert.equal(real.capabilities.sharedWithOtherProcesses, true);
});

test(`[${runtime}] watchDir reports a change in the directory, or declares no file events`, async () => {
  const dir = tempDir("watch");
  let changes = 0;
  const w = real.watchDir(dir, () => changes++);
  if (!real.capabilities.fileEvents) {
    assert.equal(w, undefined);
    return;
  }
  assert.ok(w, "an adapter declaring fileEvents returns a watcher");
  await sleep(20);
  const f = real.open(`${dir}/x`, { create: true });
  f.append(new Uint8Array([1]));
  f.close();
  for (let i = 0; i < 200 && changes === 0; i++) await sleep(5);
  w.close();
  assert.ok(changes > 0, "no change event within 1 s");
});

test(`[${runtime}] files and directories are created owner-only`, async () => {
  const fs = await import("node:fs");
  const dir = tempDir("mode");
  real.mkdir(`${dir}/d/e`);
  real.open(`${dir}/d/f`, { create: true }).close();
  assert.equal(fs.statSync(`${dir}/d/e`).mode & 0o777, 0o700);
  assert.equal(fs.statSync(`${dir}/d/f`).mode & 0o777, 0o600);
});

test(`[${runtime}] mapShared: another handle's writes show in the mapping at once (Node, Bun); Deno and sim declare none`, () => {
  if (runtime === "deno") {
    assert.equal(real.mapShared, undefined, "the Deno adapter has no FFI, so no mmap");
    return;
  }
  assert.equal(typeof real.mapShared, "function");
  const dir = tempDir("map");
  const f = real.open(`${dir}/m`, { create: true });
  f.write(new Uint8Array(64), 0);
  const m = real.mapShared!(`${dir}/m`, 64)!;
  assert.ok(m, "mapping an existing file works");
  const other = real.open(`${dir}/m`);
  other.write(new Uint8Array([7, 8, 9]), 10);
  assert.deepEqual([...m.bytes.subarray(10, 13)], [7, 8, 9]);
  other.write(new Uint8Array([1]), 63);
  assert.equal(m.bytes[63], 1);
  m.close();
  m.close(); // idempotent
  other.close();
  f.close();
  assert.equal(real.mapShared!(`${dir}/missing`, 64), undefined, "a missing file maps to undefined");
  assert.equal(new SimWorld(1).process().mapShared, undefined);
});
