/**
 * The adapter conformance suite: every adapter — this runtime's and the simulated one —
 * must pass the same checks of the Platform port.
 */
import { assert, runtime, sleep, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { defaultPlatform, FileLock, PortError, TxtDbError, ProcessLease, leaseOwnerAlive, readLeaseInfo, readWriterHolder } from "txtdb/internal";
import type { Platform } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const real = await defaultPlatform();
/** Puts a symlink at `path` pointing to `target`, as another user could. */
type PlantLink = (path: string, target: string) => void;
const adapters: [string, () => { platform: Platform; dir: string; link: PlantLink }][] = [
  [real.runtime, () => ({ platform: real, dir: tempDir("port"), link: (path, target) => fs.symlinkSync(target, path) })],
  ["sim", () => {
    const platform = new SimWorld(7).process();
    platform.mkdir("/sim/port");
    return { platform, dir: "/sim/port", link: (path, target) => platform.world.plant(path, "symlink", target) };
  }],
];

const isPortError = (errno: string) => (e: unknown) => e instanceof PortError && e.errno === errno;

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
    const info = platform.stat(`${dir}/a`)!;
    assert.deepEqual(
      { size: info.size, isFile: info.isFile, isDirectory: info.isDirectory, isSymlink: info.isSymlink, mode: info.mode },
      { size: 2, isFile: true, isDirectory: false, isSymlink: false, mode: 0o600 },
    );
    assert.equal(platform.stat(`${dir}/missing`), undefined);
  });

  test(`[${name}] a handle reads and writes the file it opened, even when its path is replaced or removed before its first read or write`, () => {
    const { platform, dir } = make();
    const mine = platform.open(`${dir}/p`, { create: true });
    const other = platform.open(`${dir}/q`, { create: true });
    other.write(bytes(8, 8, 8), 0);
    other.close();
    platform.rename(`${dir}/q`, `${dir}/p`); // the path now names another file
    mine.write(bytes(1, 2, 3), 0);
    const buf = new Uint8Array(3);
    assert.equal(mine.read(buf, 0), 3);
    assert.deepEqual([...buf], [1, 2, 3], "the handle's own file");
    const there = platform.open(`${dir}/p`);
    assert.equal(there.read(buf, 0), 3);
    assert.deepEqual([...buf], [8, 8, 8], "the file at the path was not written");
    there.close();
    mine.close();
    const gone = platform.open(`${dir}/r`, { create: true });
    platform.unlink(`${dir}/r`);
    gone.write(bytes(4, 5), 1);
    assert.equal(gone.read(buf, 0), 3);
    assert.deepEqual([...buf], [0, 4, 5], "an unlinked file is still read and written through its handle");
    gone.close();
    const readOnly = platform.open(`${dir}/p`, { readOnly: true });
    assert.equal(readOnly.read(buf, 0), 3);
    assert.deepEqual([...buf], [8, 8, 8]);
    readOnly.close();
  });

  test(`[${name}] a file or directory the port creates gets exactly the mode asked for, whatever the umask; one already there keeps its own`, () => {
    const { platform, dir } = make();
    if (name !== "sim" && runtime !== "deno") {
      // Deno may not read the umask (--allow-sys); it runs under the same one as the others.
      const umask = (globalThis as unknown as { process: { umask(): number } }).process.umask();
      assert.notEqual(umask & 0o066, 0, `the umask (0o${umask.toString(8)}) takes group or other bits off, or this test proves nothing`);
    }
    for (const options of [{ create: true, mode: 0o666 }, { create: true, exclusive: true, mode: 0o666 }, { create: true, mode: 0o640 }]) {
      const path = `${dir}/f-${options.mode.toString(8)}-${options.exclusive ? "x" : ""}`;
      platform.open(path, options).close();
      assert.equal(platform.stat(path)!.mode, options.mode, `open(${JSON.stringify(options)})`);
    }
    platform.mkdir(`${dir}/d1/d2/d3`, 0o777);
    for (const d of ["d1", "d1/d2", "d1/d2/d3"]) assert.equal(platform.stat(`${dir}/${d}`)!.mode, 0o777, d);
    platform.mkdir(`${dir}/d1/d2/d3/d4`, 0o770);
    assert.equal(platform.stat(`${dir}/d1/d2`)!.mode, 0o777, "a parent already there is left as it is");
    assert.equal(platform.stat(`${dir}/d1/d2/d3/d4`)!.mode, 0o770);
    platform.open(`${dir}/mine`, { create: true }).close();
    platform.open(`${dir}/mine`, { create: true, mode: 0o666 }).close();
    assert.equal(platform.stat(`${dir}/mine`)!.mode, 0o600, "an existing file is opened, not given the mode");
    platform.mkdir(`${dir}/d1`, 0o700);
    assert.equal(platform.stat(`${dir}/d1`)!.mode, 0o777, "an existing directory is left as it is");
  });

  test(`[${name}] stat, lstat and info(): a file's owner is this process, inode and device identify it`, () => {
    const { platform, dir, link } = make();
    assert.equal(typeof platform.uid, "number", "every adapter here can tell its uid");
    const f = platform.open(`${dir}/f`, { create: true, mode: 0o640 });
    f.append(bytes(1, 2, 3));
    const byPath = platform.stat(`${dir}/f`)!;
    const byHandle = f.info();
    assert.deepEqual(byHandle, byPath, "fstat of the handle and stat of its path agree");
    assert.equal(byPath.uid, platform.uid);
    assert.equal(byPath.mode, 0o640);
    assert.equal(byPath.size, 3);
    assert.ok(byPath.ino > 0);
    assert.deepEqual(platform.lstat(`${dir}/f`), byPath, "lstat of a plain file is its stat");
    // A symlink: stat follows it to the file, lstat describes the link itself.
    link(`${dir}/l`, "f");
    assert.deepEqual(platform.stat(`${dir}/l`), byPath);
    const l = platform.lstat(`${dir}/l`)!;
    assert.equal(l.isSymlink, true);
    assert.equal(l.isFile, false);
    assert.notEqual(l.ino, byPath.ino);
    assert.equal(platform.lstat(`${dir}/missing`), undefined);
    // A directory.
    platform.mkdir(`${dir}/d`);
    const d = platform.stat(`${dir}/d`)!;
    assert.equal(d.isDirectory, true);
    assert.equal(d.uid, platform.uid);
    assert.equal(d.mode, 0o700);
    // info() follows the open file, not the path: replaced under it, the handle still
    // describes what it has open.
    const g = platform.open(`${dir}/g`, { create: true });
    platform.rename(`${dir}/g`, `${dir}/f`);
    assert.equal(f.info().ino, byPath.ino);
    assert.notEqual(platform.stat(`${dir}/f`)!.ino, byPath.ino);
    g.close();
    f.close();
  });

  test(`[${name}] open() refuses a final symlink with ELOOP and never writes or creates through it`, () => {
    const { platform, dir, link } = make();
    const t = platform.open(`${dir}/target`, { create: true });
    t.append(bytes(1, 2, 3));
    t.close();
    link(`${dir}/link`, `${dir}/target`);
    for (const options of [{}, { readOnly: true }, { create: true }]) {
      assert.throws(() => platform.open(`${dir}/link`, options), isPortError("ELOOP"), JSON.stringify(options));
    }
    assert.throws(() => platform.open(`${dir}/link`, { create: true, exclusive: true }), isPortError("EEXIST"));
    assert.equal(platform.stat(`${dir}/target`)!.size, 3, "the target is untouched");
    // A dangling link: create must not make the file it points to.
    link(`${dir}/dangling`, `${dir}/nowhere`);
    assert.throws(() => platform.open(`${dir}/dangling`, { create: true }), isPortError("ELOOP"));
    assert.throws(() => platform.open(`${dir}/dangling`, { create: true, exclusive: true }), isPortError("EEXIST"));
    assert.equal(platform.lstat(`${dir}/nowhere`), undefined, "nothing was created through the link");
    // The message says what the path is.
    assert.throws(() => platform.open(`${dir}/link`), (e: unknown) => e instanceof PortError && /symlink/.test(e.message));
  });

  test(`[${name}] open() refuses a directory with ENOTREG, whatever the options`, () => {
    const { platform, dir } = make();
    platform.mkdir(`${dir}/sub`);
    for (const options of [{}, { readOnly: true }, { create: true }]) {
      assert.throws(() => platform.open(`${dir}/sub`, options), isPortError("ENOTREG"), JSON.stringify(options));
    }
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

  test(`[${name}] lockAsync (where the adapter has it) waits off-thread for a lock another handle holds, and is granted on release`, async () => {
    const { platform, dir } = make();
    const a = platform.open(`${dir}/w`, { create: true });
    const b = platform.open(`${dir}/w`, { create: true });
    if (!b.lockAsync) {
      assert.ok(name === "sim", `${name} has no off-thread lock wait`);
      a.close();
      b.close();
      return;
    }
    assert.equal(a.tryLock(true), true);
    let granted = false;
    const waiting = b.lockAsync(true).then(() => (granted = true));
    await sleep(20);
    assert.equal(granted, false, "not granted while another handle holds it");
    a.unlock();
    await waiting;
    assert.equal(a.tryLock(true), false, "b holds it now");
    b.unlock();
    assert.equal(a.tryLock(true), true);
    a.close();
    b.close();
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

  test(`[${name}] FileLock: a kernel wait that returns after this process took and released the lock meanwhile never grants a lock another holder has`, async () => {
    // The shape that let two processes hold the writer lock at once: a waiter here waits in
    // the kernel (lockAsync, off-thread); the other holder releases; this process takes the
    // lock through the same open file description (to the kernel, the same owner as the
    // waiting call, which then "succeeds" at once) and releases it; the other holder takes
    // it again; then the late success arrived and granted the next waiter here too.
    const { platform, dir } = make();
    const other = new FileLock(platform, `${dir}/k.lock`); // another open file description: another process to the kernel
    const here = new FileLock(platform, `${dir}/k.lock`);
    const relOther = other.tryAcquire(true);
    assert.ok(relOther);
    const w1 = here.acquire(true, { timeoutMs: 5000 }); // waits in the kernel where the port can
    await sleep(20);
    relOther();
    const w2 = here.acquire(true, { timeoutMs: 5000 });
    // Give a waiting call off-thread every chance to return before this thread goes on.
    const until = performance.now() + 5;
    while (performance.now() < until) { /* spin: no event-loop turn */ }
    (await w1)();
    (await w2)();
    let relOther2: (() => void) | undefined;
    for (let i = 0; i < 200 && !relOther2; i++) {
      relOther2 = other.tryAcquire(true);
      if (!relOther2) await sleep(5);
    }
    assert.ok(relOther2, "the other holder gets the lock once this process released it");
    let granted = false;
    const w3 = here.acquire(true, { timeoutMs: 5000 }).then((r) => { granted = true; return r; });
    await sleep(100);
    assert.equal(granted, false, "granted here while the other holder holds the lock: two holders of one exclusive lock");
    relOther2();
    (await w3)();
    assert.equal(granted, true);
    other.close();
    here.close();
  });

  test(`[${name}] openDirectoryLock: two handles of one directory exclude each other, apart from the locks of the files in it; a missing path or a file is refused`, () => {
    const { platform, dir } = make();
    assert.ok(platform.openDirectoryLock, `${name} can lock a directory`);
    const a = platform.openDirectoryLock!(dir);
    const b = platform.openDirectoryLock!(dir);
    const file = platform.open(`${dir}/f`, { create: true });
    assert.equal(a.tryLock(true), true);
    assert.equal(b.tryLock(false), false, "the directory's exclusive lock excludes another handle");
    assert.equal(file.tryLock(true), true, "a file's lock is another lock");
    a.unlock();
    assert.equal(b.tryLock(false), true);
    assert.equal(a.tryLock(false), true, "shared locks coexist");
    a.close();
    b.close(); // closing releases
    const c = platform.openDirectoryLock!(dir);
    assert.equal(c.tryLock(true), true);
    c.close();
    file.close();
    assert.throws(() => platform.openDirectoryLock!(`${dir}/missing`), isPortError("ENOENT"));
    assert.throws(() => platform.openDirectoryLock!(`${dir}/f`), isPortError("ENOTDIR"));
  });

  test(`[${name}] FileLock with a guard: the lock file deleted under its holder, another FileLock with the guard takes nothing until the holder released; a waiter then gets it`, async () => {
    const { platform, dir } = make();
    const holder = new FileLock(platform, `${dir}/g.lock`, 0o600, { guardDir: dir });
    const other = new FileLock(platform, `${dir}/g.lock`, 0o600, { guardDir: dir }); // another open file description: another process
    const release = holder.tryAcquire(true);
    assert.ok(release);
    platform.unlink(`${dir}/g.lock`); // a cleaner
    assert.equal(holder.heldAtPath(), true, "the guard still excludes everyone: the lock is not lost");
    assert.equal(other.tryAcquire(true), undefined, "a new lock file at the path does not let a second holder in");
    let granted = false;
    const waiting = other.acquire(true, { timeoutMs: 5000 }).then((r) => { granted = true; return r; });
    await sleep(30);
    assert.equal(granted, false, "no grant while the holder holds the guard");
    release();
    const released = await waiting;
    assert.equal(holder.tryAcquire(true), undefined, "the other holds it now");
    released();
    const again = holder.tryAcquire(true);
    assert.ok(again, "the first holder locks the file the path names now");
    assert.equal(holder.heldAtPath(), true);
    again();
    holder.close();
    other.close();
  });

  test(`[${name}] the holder probe (doctor) with writer.lock deleted under a holder of the writer lock and its guard: held, whether the file is missing or made again`, () => {
    const { platform, dir } = make();
    const holder = new FileLock(platform, `${dir}/writer.lock`, 0o600, { guardDir: dir });
    const release = holder.tryAcquire(true);
    assert.ok(release);
    assert.equal(readWriterHolder(platform, dir).held, true, "held, file in place");
    platform.unlink(`${dir}/writer.lock`); // a cleaner
    const missing = readWriterHolder(platform, dir);
    assert.equal(missing.held, true, "held through the guard, writer.lock missing");
    assert.equal(missing.guard, true, "said to be held through the guard");
    platform.open(`${dir}/writer.lock`, { create: true }).close(); // the next process to come made it again
    assert.equal(readWriterHolder(platform, dir).held, true, "held through the guard, a new writer.lock free");
    release();
    assert.equal(readWriterHolder(platform, dir).held, false, "free once released");
    holder.close();
  });

  test(`[${name}] FileLock with a guard held elsewhere (its lock file free): LOCK_TIMEOUT names the directory whose flock is held, not a holder of the lock file`, async () => {
    const { platform, dir } = make();
    const lock = new FileLock(platform, `${dir}/t.lock`, 0o600, { guardDir: dir });
    lock.describeHolder = () => " (it says: pid 1, node, since 5 ms ago)"; // what the lock file's stale record would say
    const outside = platform.openDirectoryLock!(dir); // another program: `flock <dir> ...`, or a holder whose file was deleted
    assert.equal(outside.tryLock(true), true);
    let thrown: unknown;
    try {
      (await lock.acquire(true, { timeoutMs: 50 }))();
    } catch (e) {
      thrown = e;
    }
    assert.ok(thrown instanceof TxtDbError && thrown.code === "LOCK_TIMEOUT", String(thrown));
    assert.ok((thrown as Error).message.includes(`"${dir}"`), `the message names the locked directory: ${(thrown as Error).message}`);
    assert.ok(!(thrown as Error).message.includes("it says: pid 1"), `the lock file's record names no holder of the guard: ${(thrown as Error).message}`);
    outside.close();
    lock.close();
  });

  test(`[${name}] pause (where the adapter has it) blocks for at least the fraction of a millisecond asked, without keeping the CPU busy`, () => {
    const { platform } = make();
    if (!platform.pause) return;
    type Cpu = { user: number; system: number };
    const cpuNow = (): Cpu | undefined => (globalThis as unknown as { process?: { cpuUsage?: () => Cpu } }).process?.cpuUsage?.();
    const cpu0 = cpuNow();
    const t0 = platform.monotonicMs();
    for (let i = 0; i < 400; i++) {
      const s = platform.monotonicMs();
      platform.pause(0.25);
      assert.ok(platform.monotonicMs() - s >= 0.25, "a pause lasts at least what was asked");
    }
    const elapsedMs = platform.monotonicMs() - t0;
    const cpu1 = cpuNow();
    if (!cpu0 || !cpu1) return;
    const cpuMs = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / 1000;
    // Turning the event loop or spinning for the time would use about all of it.
    assert.ok(cpuMs < elapsedMs / 2, `${cpuMs.toFixed(1)} ms of CPU in ${elapsedMs.toFixed(1)} ms of pauses`);
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

test(`[${runtime}] watchDir wakes for every in-place write, even one made in the wake before (the lock table and the frontier change so)`, async () => {
  if (!real.capabilities.fileEvents) return;
  const dir = tempDir("watch");
  const f = real.open(`${dir}/table`, { create: true });
  f.write(new Uint8Array(16), 0);
  await sleep(20);
  // Each wake writes the file again in place; a watch that drops the event of a file
  // written while (or just after) its callback ran stops the chain. Bun's fs.watch did so
  // at the first link (adapters/bunwatch.ts).
  const LINKS = 50;
  let wakes = 0;
  const w = real.watchDir(dir, () => {
    wakes++;
    if (wakes <= LINKS) f.write(new Uint8Array([wakes % 256]), 0);
  })!;
  await sleep(20);
  f.write(new Uint8Array([255]), 0);
  for (let i = 0; i < 1000 && wakes <= LINKS; i++) await sleep(10);
  w.close();
  f.close();
  assert.ok(wakes > LINKS, `the chain of wakes stopped after ${wakes} of ${LINKS + 1}`);
});

test(`[${runtime}] watchFile wakes for every in-place write of its file, and not for the other files of the directory`, async () => {
  if (!real.capabilities.fileEvents) return;
  assert.equal(typeof real.watchFile, "function", "the runtime's adapter watches single files");
  const dir = tempDir("watchfile");
  const f = real.open(`${dir}/frontier`, { create: true });
  f.write(new Uint8Array(16), 0);
  const other = real.open(`${dir}/seg`, { create: true });
  await sleep(20);
  const LINKS = 50;
  let wakes = 0;
  const w = real.watchFile!(`${dir}/frontier`, () => {
    wakes++;
    if (wakes <= LINKS) f.write(new Uint8Array([wakes % 256]), 0);
  })!;
  assert.ok(w, "an adapter declaring fileEvents returns a watcher of a file");
  await sleep(20);
  f.write(new Uint8Array([255]), 0);
  for (let i = 0; i < 1000 && wakes <= LINKS; i++) await sleep(10);
  assert.ok(wakes > LINKS, `the chain of wakes stopped after ${wakes} of ${LINKS + 1}`);
  // Writes to other files of the directory wake nobody (the point of watching one file).
  await sleep(50);
  const settled = wakes;
  for (let i = 0; i < 20; i++) {
    other.append(new Uint8Array([i]));
    real.open(`${dir}/new-${i}`, { create: true }).close();
    await sleep(2);
  }
  await sleep(100);
  const afterOthers = wakes;
  f.write(new Uint8Array([7]), 0);
  for (let i = 0; i < 200 && wakes === afterOthers; i++) await sleep(5);
  w.close();
  f.close();
  other.close();
  assert.equal(afterOthers, settled, "writes to other files woke the watch of one file");
  assert.ok(wakes > afterOthers, "the watched file's write after them woke it");
});

test(`[${runtime}] a closed watch calls nothing more; many watches opened and closed leave nothing behind`, async () => {
  if (!real.capabilities.fileEvents) return;
  const dir = tempDir("watch");
  for (let i = 0; i < 30; i++) {
    const w = real.watchDir(dir, () => {});
    await sleep(1);
    w?.close();
  }
  let after = 0;
  const w = real.watchDir(dir, () => after++)!;
  await sleep(30);
  w.close();
  const seen = after;
  const f = real.open(`${dir}/late`, { create: true });
  f.append(new Uint8Array([1]));
  f.close();
  await sleep(100);
  assert.equal(after, seen, "a change after close() reached the callback");
});

test(`[${runtime}] files and directories are created owner-only`, async () => {
  const fs = await import("node:fs");
  const dir = tempDir("mode");
  real.mkdir(`${dir}/d/e`);
  real.open(`${dir}/d/f`, { create: true }).close();
  assert.equal(fs.statSync(`${dir}/d/e`).mode & 0o777, 0o700);
  assert.equal(fs.statSync(`${dir}/d/f`).mode & 0o777, 0o600);
});

test(`[${runtime}] the port maps no file into memory: a mapped page of a file someone truncates is a SIGBUS`, () => {
  // A shared mapping of the frontier killed every Node and Bun process of a store whose
  // frontier was truncated (issue 9, defect 7). The port offers none, so the core cannot use one.
  assert.equal((real as unknown as Record<string, unknown>).mapShared, undefined);
  assert.equal((new SimWorld(1).process() as unknown as Record<string, unknown>).mapShared, undefined);
});

test(`[${runtime}] uid is this process's effective uid: the owner of the files it creates`, () => {
  const dir = tempDir("uid");
  fs.writeFileSync(`${dir}/mine`, "x");
  assert.equal(real.uid, fs.statSync(`${dir}/mine`).uid);
  if (runtime !== "deno") assert.equal(real.uid, process.geteuid!());
});

test(`[sim] planted FIFOs, sockets and devices are refused with ENOTREG; chown gives a file to another user`, () => {
  const world = new SimWorld(3);
  const p = world.process();
  p.mkdir("/s");
  for (const kind of ["fifo", "socket", "device"] as const) {
    world.plant(`/s/${kind}`, kind);
    const info = p.stat(`/s/${kind}`)!;
    assert.deepEqual([info.isFile, info.isDirectory, info.isSymlink], [false, false, false]);
    for (const options of [{}, { readOnly: true }, { create: true }]) {
      assert.throws(() => p.open(`/s/${kind}`, options), (e: unknown) => e instanceof PortError && e.errno === "ENOTREG" && e.message.includes(kind));
    }
  }
  p.open("/s/f", { create: true }).close();
  world.chown("/s/f", 0);
  world.chown("/s", 0);
  assert.equal(p.stat("/s/f")!.uid, 0);
  assert.equal(p.stat("/s")!.uid, 0);
  assert.equal(world.process({ uid: 0 }).uid, 0);
});

test(`[sim] openHandleCount counts a process's open handles, so tests can catch a leak`, () => {
  const p = new SimWorld(4).process();
  p.mkdir("/h");
  assert.equal(p.openHandleCount, 0);
  const a = p.open("/h/a", { create: true });
  const b = p.open("/h/a");
  assert.equal(p.openHandleCount, 2);
  a.close();
  a.close();
  assert.equal(p.openHandleCount, 1);
  b.close();
  assert.equal(p.openHandleCount, 0);
});
