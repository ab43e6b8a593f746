/**
 * An attack on locks on named resources (`db.lock()`): damaged and hostile files in the
 * store's `locks/` directory, the table file deleted or cut while locks are held and waited
 * for, processes killed while they hold or wait, aborts at every moment, odd timeouts, odd
 * resources and modes, release and close in every order, many waiters, deadlocks of
 * conversions across processes, and the stats counters. Every bad input must fail with a
 * TxtDbError and a stable code, and nothing may hang or leak. In-process tests run on Node,
 * Deno and Bun; tests with child processes run from the Node and Bun legs (Deno cannot
 * spawn; it takes part as a child).
 */
import * as fs from "node:fs";
import process from "node:process";
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test, waitUntil, leaseOpensFailing } from "./harness.ts";
import { defaultPlatform, open, TxtDbError } from "txtdb";
import { PortError } from "txtdb/internal";
import { decodeSlot, encodeTable, SLOT_BYTES } from "txtdb/internal";
import type { Database, LockMode, Platform, ResourceLock } from "txtdb";
import type { Runtime, Worker } from "./procs.ts";

const { killAllWorkers, startWorker } = canSpawn ? await import("./procs.ts") : { killAllWorkers: () => {}, startWorker: undefined };
afterEach(() => killAllWorkers());

const R = `[${runtime}]`;

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "granted";
  } catch (e) {
    if (e instanceof TxtDbError) return e.code;
    return `not a TxtDbError: ${String(e)}`;
  }
}

async function errorOf(p: Promise<unknown>): Promise<TxtDbError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TxtDbError, `expected a TxtDbError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected a rejection, the lock was granted");
}

/** Resolves with what `p` settled as, or "pending" after `ms`. */
async function stateAfter(p: Promise<unknown>, ms = 40): Promise<string> {
  let s = "pending";
  p.then(() => (s = "granted"), (e: unknown) => (s = e instanceof TxtDbError ? e.code : String(e)));
  await sleep(ms);
  return s;
}

type OpenedHandle = ReturnType<Platform["open"]>;

/** `real`, with every handle its open() makes passed through `wrap` (the rest bound to it as is). */
function wrapOpens(real: Platform, wrap: (h: OpenedHandle, path: string, options: Parameters<Platform["open"]>[1]) => OpenedHandle): Platform {
  return new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === "open") {
        return (path: string, options?: Parameters<Platform["open"]>[1]) => wrap((v as Platform["open"]).call(target, path, options), path, options);
      }
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Platform;
}

async function handles(label: string, n: number): Promise<Database[]> {
  const dir = tempDir(label);
  const out: Database[] = [];
  for (let i = 0; i < n; i++) out.push(await open(dir));
  return out;
}

async function closeAll(dbs: Database[]): Promise<void> {
  for (const db of dbs) await db.close();
}

// --- release, close, stats ---

test(`${R} a lock released by close() says so: released is true, release() does nothing`, async () => {
  const [a, b] = await handles("close-released", 2);
  const l = await a!.lock(["r"], "X");
  assert.equal(l.released, false);
  await a!.close();
  assert.equal(l.released, true, "close() released the lock, so its ResourceLock must say released");
  l.release();
  l.release();
  assert.equal(await outcome(b!.lock(["r"], "X", { timeoutMs: 0 })), "granted");
  await closeAll([b!]);
});

test(`${R} close() while requests wait (one half-granted): each fails with CLOSED, what queued behind them goes on`, async () => {
  const [a, b, c] = await handles("close-waiting", 3);
  const la = await a.lock(["g", "x"], "X");
  const w1 = b.lock(["g", "x"], "S", { timeoutMs: Infinity }); // IS on ["g"] granted, waits on ["g", "x"]
  const lc = await c.lock(["h"], "S");
  const w2 = b.lock(["h"], "X");
  const w3 = c.lock(["g", "x"], "S", { timeoutMs: 20_000 }); // queued behind b's S: compatible, so granted with it
  assert.deepEqual([await stateAfter(w1), await stateAfter(w2), await stateAfter(w3)], ["pending", "pending", "pending"]);
  const closing = b.close();
  assert.deepEqual([await outcome(w1), await outcome(w2)], ["CLOSED", "CLOSED"]);
  await closing;
  const e = await errorOf(w1);
  assert.match(e.message, /closed/);
  la.release();
  (await w3).release();
  lc.release();
  assert.equal(await outcome(c.lock(["g"], "X", { timeoutMs: 1_000 }).then((l) => l.release())), "granted");
  assert.equal(await outcome(a.lock(["h"], "X", { timeoutMs: 1_000 }).then((l) => l.release())), "granted");
  assert.deepEqual(a.locks(), []);
  assert.equal(await outcome(b.lock(["z"], "X")), "CLOSED");
  assert.throws(() => b.locks(), (err: unknown) => err instanceof TxtDbError && err.code === "CLOSED");
  await closeAll([a, c]);
});

test(`${R} the table overwritten with garbage while a lock is held: the holder's next change puts it back`, async () => {
  const dir = tempDir("table-garbage");
  const [a, b] = [await open(dir), await open(dir)];
  const la = await a.lock(["acct", 1], "X");
  fs.writeFileSync(`${dir}/locks/table`, new Uint8Array(3 * 2 ** 20).fill(0xa5));
  const la2 = await a.lock(["acct", 2], "S");
  assert.equal(await outcome(b.lock(["acct", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got S while a holds X");
  assert.equal(await outcome(b.lock(["acct"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got X on the parent while a holds IX");
  la.release();
  la2.release();
  assert.equal(await outcome(b.lock(["acct"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b]);
});

// --- odd resources ---

test(`${R} a resource whose encoding does not fit the table's 16-bit length is refused, and the table stays intact`, async () => {
  const dir = tempDir("hugekey");
  const a = await open(dir, { maxKeyBytes: 1 << 20 });
  const b = await open(dir, { maxKeyBytes: 1 << 20 });
  const small = await a.lock(["small"], "X");
  const huge = "k".repeat(70_000);
  const e = await errorOf(a.lock([huge], "X"));
  assert.ok(["INVALID_KEY", "LIMIT"].includes(e.code), `code ${e.code}: ${e.message}`);
  // The table still holds a's lock on "small": b may not take it.
  assert.equal(await outcome(b.lock(["small"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  assert.deepEqual(b.locks().map((l) => l.resource), ["small"]);
  small.release();
  await closeAll([a, b]);
});

// --- the table file damaged, deleted, replaced ---

test(`${R} the table file deleted while locks are held: old and new handles still exclude each other`, async () => {
  const dir = tempDir("table-deleted");
  const [a, b] = [await open(dir), await open(dir)];
  const la = await a.lock(["r"], "X");
  const lb = await b.lock(["other"], "S");
  fs.unlinkSync(`${dir}/locks/table`);
  // A handle opened after the deletion, and the handles that had the old file open, must
  // all use one table: a's X on "r" is re-asserted at its next change at the latest.
  const c = await open(dir);
  const lc = await c.lock(["q"], "X"); // c creates a new table file
  lb.release(); // b changes the table: must be the file c uses
  const la2 = await a.lock(["r2"], "X"); // a changes the table
  assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got X on r while a holds it");
  assert.equal(await outcome(b.lock(["r2"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got S on r2 while a holds X");
  assert.equal(await outcome(a.lock(["q"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "a got S on q while c holds X");
  la.release();
  la2.release();
  lc.release();
  assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b, c]);
});

test(`${R} the table file cut to nothing while locks are held and waited for: the holder's next change puts its lock back, the waiter queues again and gets it`, async () => {
  const dir = tempDir("table-cut");
  const [a, b, c] = [await open(dir), await open(dir), await open(dir)];
  const la = await a.lock(["r", 1], "X");
  const waiting = b.lock(["r", 1], "X", { timeoutMs: 20_000 });
  assert.ok((await waitUntil(() => a.locks().some((l) => l.waiting), 5_000)) >= 0);
  // The cut loses every entry. A holder's grants come back at its next change (here at
  // once, before b looks again); a holder that changes nothing is not seen until it does.
  fs.truncateSync(`${dir}/locks/table`, 0);
  const la2 = await a.lock(["s"], "S");
  await sleep(30); // b notices its entry is gone and queues again, behind a's X
  assert.equal(await stateAfter(waiting), "pending", "b was granted X while a holds it");
  assert.equal(await outcome(c.lock(["r", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got S while a holds X");
  la.release();
  const lb = await waiting;
  assert.equal(await outcome(c.lock(["r", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got S while b holds X");
  lb.release();
  la2.release();
  assert.equal(await outcome(c.lock(["r", 1], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b, c]);
});

/** Damages the lock table from outside, as a careless user or a cleaner might. */
function damageTable(dir: string, how: "deleted" | "cut" | "garbage"): void {
  const table = `${dir}/locks/table`;
  if (how === "deleted") fs.unlinkSync(table);
  else if (how === "cut") fs.truncateSync(table, 0);
  else fs.writeFileSync(table, new Uint8Array(3 * 2 ** 20).map((_, i) => (i * 131 + 7) & 255));
}

for (const how of ["deleted", "cut", "garbage"] as const) {
  test(`${R} the table ${how} while a holder changes nothing: another handle is still refused (the table is rebuilt from the holders' records)`, async () => {
    const dir = tempDir(`table-lost-${how}`);
    const [a, b, c] = [await open(dir), await open(dir), await open(dir)];
    // a's grant came from its own change; b's from a's release (b waited for it).
    const la = await a.lock(["acct", 1], "X");
    const lq = await a.lock(["q"], "X");
    const waited = b.lock(["q"], "X", { timeoutMs: 10_000 });
    assert.ok((await waitUntil(() => a.locks().some((l) => l.waiting), 5_000)) >= 0);
    lq.release();
    const lb = await waited;
    damageTable(dir, how);
    // Before anyone changes the table, locks() shows what the owners' records hold.
    const listed = (db: Database) => db.locks().filter((l) => !l.waiting).map((l) => [l.resource, l.mode]).sort();
    const held = [[["acct", 1], "X"], ["acct", "IX"], ["q", "X"]].sort();
    assert.deepEqual(listed(c), held, "locks() from a handle that holds nothing");
    assert.deepEqual(listed(a), held, "locks() from a holder");
    // Neither a nor b changes the table from here on: only c does.
    assert.equal(await outcome(c.lock(["acct", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got S on a resource a holds X on");
    assert.equal(await outcome(c.lock(["acct"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got X on the parent while a holds IX");
    assert.equal(await outcome(c.lock(["q"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "c got X on a resource b holds X on (granted to b while it waited)");
    assert.deepEqual(listed(c), held);
    la.release();
    lb.release();
    assert.equal(await outcome(c.lock(["acct", 1], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
    assert.equal(await outcome(c.lock(["q"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
    assert.deepEqual(c.locks(), []);
    await closeAll([a, b, c]);
  });
}

test(`${R} the table deleted as a waiter records the grant a release made it, and another handle asks for the lock then: the waiter records under the table's flock, so that handle's rebuild keeps the grant and refuses it: one X holder`, async () => {
  const dir = tempDir("record-race");
  const real = await defaultPlatform();
  let hook: (() => void) | undefined;
  // The platform of handle b: just before a write to its lease's record (at 4 KiB and
  // past), the hook runs, as another process might at that instant.
  const adapter = wrapOpens(real, (h, path) => {
    if (!path.includes("/locks/") || !path.includes(".lease")) return h; // made as .lease-new, then renamed
    return new Proxy(h, {
      get(ht, hp) {
        const hv = Reflect.get(ht, hp, ht) as unknown;
        if (hp === "write") {
          return (data: Uint8Array, position: number) => {
            if (hook && position >= 4096) {
              const f = hook;
              hook = undefined;
              f();
            }
            return (hv as (d: Uint8Array, p: number) => void).call(ht, data, position);
          };
        }
        return typeof hv === "function" ? (hv as (...a: unknown[]) => unknown).bind(ht) : hv;
      },
    });
  });
  const a = await open(dir);
  const b = await open(dir, { adapter });
  const c = await open(dir);
  const la = await a.lock(["q"], "X");
  const waited = b.lock(["q"], "X", { timeoutMs: 20_000 });
  assert.ok((await waitUntil(() => a.locks().some((l) => l.waiting), 5_000)) >= 0);
  let cGot: Promise<string> | undefined;
  hook = () => {
    // b has seen its grant and is recording it: the table goes, and c asks for X. (When a
    // grant was taken without the flock, c's change rebuilt the table right then, from a
    // record without b's grant, and got X; b then had to find its grant gone.)
    damageTable(dir, "deleted");
    cGot = outcome(c.lock(["q"], "X", { timeoutMs: 0 }).then((l) => l.release()));
  };
  la.release(); // grants b in the table; b's look at the table takes it (and runs the hook)
  assert.ok((await waitUntil(() => cGot !== undefined, 5_000)) >= 0, "the hook ran");
  assert.equal(await cGot, "LOCK_TIMEOUT", "c got X beside b's grant");
  const lb = await waited;
  assert.deepEqual(b.locks().filter((l) => !l.waiting).map((l) => [l.resource, l.mode]), [["q", "X"]]);
  assert.equal(await outcome(c.lock(["q"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "the rebuilt table holds b's X");
  lb.release();
  assert.equal(await outcome(c.lock(["q"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b, c]);
});

/** Handle b waits for X on "q" behind handle a's X (b's wait seen in the table). */
async function waiterBehind(label: string, timeoutMs: number): Promise<{ dir: string; a: Database; b: Database; la: ResourceLock; waited: Promise<ResourceLock> }> {
  const dir = tempDir(label);
  const a = await open(dir);
  const b = await open(dir);
  const la = await a.lock(["q"], "X");
  const waited = b.lock(["q"], "X", { timeoutMs });
  assert.ok((await waitUntil(() => a.locks().some((l) => l.waiting), 5_000)) >= 0);
  return { dir, a, b, la, waited };
}

/**
 * Runs `during` while this process holds the flock of `dir`'s locks/, as another process
 * inside a change of the table would. `first` runs just before the flock is taken, in the
 * same turn of the event loop (no handle can look at the table in between).
 */
async function whileTableFlockHeld<T>(dir: string, during: () => Promise<T>, first = () => {}): Promise<T> {
  const platform = await defaultPlatform();
  first();
  const flock = platform.openDirectoryLock!(`${dir}/locks`);
  try {
    assert.ok(flock.tryLock(true), "the flock of locks/ is free");
    return await during();
  } finally {
    flock.close();
  }
}

test(`${R} a waiter takes the grant a release made it only under the table's flock: while another holds that flock, it does not go on (rule 2 of src/locks.ts: a rebuild, which holds the flock, never reads a record being written)`, async () => {
  const { dir, a, b, la, waited } = await waiterBehind("grant-under-flock", 20_000);
  // a's release grants b in the table; then the flock is taken (as another process's change would).
  await whileTableFlockHeld(dir, async () => {
    assert.deepEqual(b.locks().filter((l) => l.resource === "q").map((l) => [l.mode, l.waiting]), [["X", false]], "the table shows b's grant");
    assert.equal(await stateAfter(waited, 100), "pending", "b went on with its grant while another held the table's flock");
  }, () => la.release());
  const lb = await waited;
  assert.equal(await outcome(a.lock(["q"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  lb.release();
  await closeAll([a, b]);
});

test(`${R} a waiter granted in the table that times out while another holds the table's flock: LOCK_TIMEOUT names no holder (the one that blocked it gave the lock back) and says the flock was busy`, async () => {
  const { dir, a, b, la, waited } = await waiterBehind("grant-untaken-timeout", 300);
  // a's release grants b in the table; the flock keeps b from taking it.
  const e = await whileTableFlockHeld(dir, () => errorOf(waited), () => la.release());
  assert.equal(e.code, "LOCK_TIMEOUT");
  assert.deepEqual((e.details as { blockers: unknown[] }).blockers, [], `a holder named while nobody holds "q": ${e.message}`);
  assert.doesNotMatch(e.message, /holds X/, e.message);
  assert.match(e.message, /flock .* stayed busy/, e.message);
  // Nothing is left held: b's timed-out grant goes at its next change.
  assert.equal(await outcome(a.lock(["q"], "X", { timeoutMs: 2_000 }).then((l) => l.release())), "granted");
  await closeAll([a, b]);
});

test(`${R} a waiter whose table flock stays held (a process stopped inside a change) does not spin for it at every probe: after one spin it tries once per probe, and goes on when the flock comes free (it kept a core busy for as long)`, async () => {
  const { dir, a, b, la, waited } = await waiterBehind("flock-stuck-cpu", 20_000);
  // a's release grants b in the table; b needs the flock to take the grant, every probe.
  const used = await whileTableFlockHeld(dir, async () => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(1_000);
    const cpu = process.cpuUsage(cpu0);
    return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0 };
  }, () => la.release());
  // A spin at every probe is ~100 % of a core; single tries, a few %.
  assert.ok(used.cpuMs < 0.4 * used.wallMs, `${Math.round(used.cpuMs)} ms of CPU in ${Math.round(used.wallMs)} ms while the flock was held`);
  const lb = await waited;
  assert.equal(await outcome(a.lock(["q"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  lb.release();
  await closeAll([a, b]);
});

test(`${R} a request whose change of the table finds the table's flock busy until it times out: LOCK_TIMEOUT says the flock stayed busy (it said only "not granted within N ms", naming nobody)`, async () => {
  const dir = tempDir("table-busy-timeout");
  const a = await open(dir);
  (await a.lock(["warm"], "X")).release(); // locks/ made, a registered
  const e = await whileTableFlockHeld(dir, () => errorOf(a.lock(["q"], "X", { timeoutMs: 100 })));
  assert.equal(e.code, "LOCK_TIMEOUT");
  assert.match(e.message, /the lock table's flock \(of ".*"\) stayed busy, so it could not be asked for: another process is inside a change/, e.message);
  assert.equal(await outcome(a.lock(["q"], "X", { timeoutMs: 2_000 }).then((l) => l.release())), "granted");
  await a.close();
});

test(`${R} a record of grants that is garbage, or names another owner, adds nothing and breaks nothing`, async () => {
  const dir = tempDir("record-garbage");
  const [a, b] = [await open(dir), await open(dir)];
  const la = await a.lock(["r"], "X");
  const leases = fs.readdirSync(`${dir}/locks`).filter((n) => n.endsWith(".lease"));
  assert.equal(leases.length, 1);
  // Overwrite a's record (at 4 KiB in its lease) with garbage: a rebuild cannot use it.
  const fd = fs.openSync(`${dir}/locks/${leases[0]}`, "r+");
  fs.writeSync(fd, new Uint8Array(256).fill(0x5a), 0, 256, 4096);
  fs.closeSync(fd);
  fs.unlinkSync(`${dir}/locks/table`);
  assert.equal(await outcome(b.lock(["other"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  // a's next change puts its grant back (as before records), and from then on it excludes b.
  const la2 = await a.lock(["s"], "S");
  assert.equal(await outcome(b.lock(["r"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  la.release();
  la2.release();
  assert.equal(await outcome(b.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b]);
});

test(`${R} garbage, a huge file, a directory, a symlink where the table belongs: TxtDbError with a stable code, never a hang`, async () => {
  for (const damage of ["garbage", "huge", "directory", "symlink", "fifo-dir-locks"] as const) {
    const dir = tempDir(`table-${damage}`);
    const db = await open(dir);
    fs.mkdirSync(`${dir}/locks`, { recursive: true });
    const table = `${dir}/locks/table`;
    if (damage === "garbage") fs.writeFileSync(table, new Uint8Array(5000).map((_, i) => (i * 131 + 7) & 255));
    if (damage === "huge") {
      fs.writeFileSync(table, "");
      fs.truncateSync(table, 64 * 2 ** 20);
    }
    if (damage === "directory") fs.mkdirSync(table);
    if (damage === "symlink") fs.symlinkSync(`${dir}/elsewhere`, table);
    if (damage === "fifo-dir-locks") {
      fs.rmSync(`${dir}/locks`, { recursive: true });
      fs.writeFileSync(`${dir}/locks`, "not a directory");
    }
    const got = await outcome(db.lock(["r"], "X", { timeoutMs: 2_000 }).then((l) => l.release()));
    if (damage === "garbage" || damage === "huge") assert.equal(got, "granted", `${damage}: a table with no valid slot is an empty table`);
    else assert.ok(["CORRUPTION", "IO", "INVALID_ARGUMENT"].includes(got), `${damage}: ${got}`);
    if (damage === "symlink") assert.equal(fs.existsSync(`${dir}/elsewhere`), false, "the symlink was followed");
    let listed: string;
    try {
      db.locks();
      listed = "ok";
    } catch (e) {
      listed = e instanceof TxtDbError ? e.code : `not a TxtDbError: ${String(e)}`;
    }
    assert.ok(["ok", "CORRUPTION", "IO", "INVALID_ARGUMENT"].includes(listed), `${damage}: locks() ${listed}`);
    await db.close();
  }
});

// --- leases ---

test(`${R} a handle's lease is never taken for a dead owner's while it is being made (another handle's sweep right then)`, async () => {
  const dir = tempDir("lease-race");
  const real = await defaultPlatform();
  let hook: (() => void) | undefined;
  // The platform of handle a: right after it creates a file in locks/ (its lease), the
  // hook runs, as another process might at that instant.
  const adapter = wrapOpens(real, (h, path, options) => {
    if (hook && options?.create && options.exclusive && path.includes("/locks/")) {
      const f = hook;
      hook = undefined;
      f();
    }
    return h;
  });
  const a = await open(dir, { adapter });
  const [b, c] = [await open(dir), await open(dir)];
  let swept: Promise<unknown> | undefined;
  hook = () => (swept = b.lock(["other"], "S")); // b's first lock sweeps dead owners' leases in locks/
  const la = await a.lock(["r"], "X");
  assert.ok(swept, "the hook ran");
  (await swept).release();
  assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "a's X was dropped as a dead owner's");
  assert.deepEqual(c.locks().map((l) => [l.resource, l.mode]), [["r", "X"]]);
  la.release();
  await closeAll([a, b, c]);
});

test(`${R} a lease that cannot be opened now (EMFILE, EACCES) is not a dead owner's: its locks stay`, async () => {
  const dir = tempDir("lease-emfile");
  // The platform of handle c: opens of other owners' leases fail while failing.errno is set.
  const { adapter, failing } = leaseOpensFailing(await defaultPlatform());
  const a = await open(dir);
  const c = await open(dir, { adapter });
  const la = await a.lock(["r", 1], "X");
  for (const errno of ["EMFILE", "EACCES", "EIO"]) {
    failing.errno = errno;
    assert.equal(await outcome(c.lock(["r", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", `${errno}: a's X was dropped as a dead owner's`);
    const w = c.lock(["r"], "X", { timeoutMs: 50 });
    assert.equal(await outcome(w), "LOCK_TIMEOUT", `${errno}: a's IX was dropped as a dead owner's`);
    failing.errno = undefined;
    assert.deepEqual(c.locks().map((l) => [l.resource, l.mode, l.waiting]), [["r", "IX", false], [["r", 1], "X", false]], errno);
  }
  la.release();
  assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, c]);
});

test(`${R} a release whose write of the table fails (EIO) is tried again on its own: a waiter in another handle gets the lock without the releasing handle taking another lock`, async () => {
  const dir = tempDir("release-eio");
  const failing = { on: false };
  const adapter = wrapOpens(await defaultPlatform(), (h, path) => {
    if (!path.endsWith("/locks/table")) return h;
    return new Proxy(h, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === "write") {
          return (...args: unknown[]) => {
            if (failing.on) throw new PortError("EIO", "write", path);
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  });
  const a = await open(dir, { adapter });
  const b = await open(dir);
  const la = await a.lock(["r"], "X");
  const wb = b.lock(["r"], "X", { timeoutMs: 3_000 });
  assert.equal(await stateAfter(wb), "pending");
  failing.on = true;
  la.release(); // its change fails: the release is pending in a
  await sleep(30);
  failing.on = false;
  assert.equal(await outcome(wb.then((l) => l.release())), "granted", "b waited for a's next change");
  await closeAll([a, b]);
});

// --- aborts and timeouts ---

test(`${R} an abort at every moment leaves nothing held by nobody`, async () => {
  const [a, b, c] = await handles("abort-moments", 3);
  // before the call
  const ac0 = new AbortController();
  ac0.abort(new Error("before"));
  assert.equal(await outcome(b.lock(["r", "x"], "X", { signal: ac0.signal })), "LOCK_TIMEOUT");
  // while queued, on the second step (the first, IX on ["r"], was granted)
  const la = await a.lock(["r", "x"], "X");
  const ac1 = new AbortController();
  const w1 = b.lock(["r", "x"], "X", { signal: ac1.signal, timeoutMs: Infinity });
  assert.equal(await stateAfter(w1), "pending");
  ac1.abort();
  assert.equal(await outcome(w1), "LOCK_TIMEOUT");
  // right as granted: the release grants b's entry in the table, the abort comes in the same turn
  const ac2 = new AbortController();
  const w2 = b.lock(["r", "x"], "X", { signal: ac2.signal });
  assert.equal(await stateAfter(w2), "pending");
  la.release();
  ac2.abort();
  const r2 = await outcome(w2.then((l) => l.release()));
  assert.ok(["granted", "LOCK_TIMEOUT"].includes(r2), r2);
  // abort after the grant does nothing
  const ac3 = new AbortController();
  const l3 = await b.lock(["r", "x"], "X", { signal: ac3.signal });
  ac3.abort();
  assert.equal(l3.released, false);
  assert.equal(await outcome(c.lock(["r", "x"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  l3.release();
  // nothing of b's is left: c takes X on the resource and on its parent
  assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 1_000 }).then((l) => l.release())), "granted");
  assert.deepEqual(c.locks(), []);
  const s = b.stats();
  assert.equal(s.resourceLocksHeld, 0);
  assert.equal(s.resourceLocksWaiting, 0);
  await closeAll([a, b, c]);
});

test(`${R} timeoutMs: negative, NaN, a string, null are INVALID_ARGUMENT; 0, tiny, Infinity, huge behave`, async () => {
  const [a, b] = await handles("timeouts", 2);
  for (const t of [-1, -0.5, NaN, -Infinity, "10", null, true, 10n] as unknown[]) {
    const e = await errorOf(a.lock(["r"], "X", { timeoutMs: t as number }));
    assert.equal(e.code, "INVALID_ARGUMENT", `timeoutMs ${String(t)}: ${e.code}`);
    assert.match(e.message, /timeoutMs/);
  }
  const la = await a.lock(["r"], "X");
  for (const t of [0, -0, 0.001, 1, 1.5]) assert.equal(await outcome(b.lock(["r"], "X", { timeoutMs: t })), "LOCK_TIMEOUT", `timeoutMs ${t}`);
  for (const t of [Infinity, Number.MAX_VALUE, 2 ** 31, 2 ** 53]) {
    const ac = new AbortController();
    const w = b.lock(["r"], "X", { timeoutMs: t, signal: ac.signal });
    assert.equal(await stateAfter(w, 20), "pending", `timeoutMs ${t} fired at once`);
    ac.abort();
    assert.equal(await outcome(w), "LOCK_TIMEOUT");
  }
  la.release();
  assert.deepEqual(b.locks(), []);
  assert.equal(b.stats().resourceLocksWaiting, 0);
  await closeAll([a, b]);
});

test(`${R} bad modes, options, signals and resources: TxtDbError with a stable code and nothing taken`, async () => {
  const [a, b] = await handles("bad-input", 2);
  const cases: [unknown, unknown, unknown, string][] = [
    [["r"], "x", undefined, "INVALID_ARGUMENT"],
    [["r"], "", undefined, "INVALID_ARGUMENT"],
    [["r"], undefined, undefined, "INVALID_ARGUMENT"],
    [["r"], 4, undefined, "INVALID_ARGUMENT"],
    [["r"], Symbol("X"), undefined, "INVALID_ARGUMENT"],
    [["r"], { toString: () => "X" }, undefined, "INVALID_ARGUMENT"],
    [["r"], "X", null, "INVALID_ARGUMENT"],
    [["r"], "X", 5, "INVALID_ARGUMENT"],
    [["r"], "X", { signal: {} }, "INVALID_ARGUMENT"],
    [["r"], "X", { signal: null }, "INVALID_ARGUMENT"],
    [[], "X", undefined, "INVALID_ARGUMENT"],
    [["a\ud800"], "X", undefined, "INVALID_KEY"],
    [[undefined], "X", undefined, "INVALID_KEY"],
    [[null], "X", undefined, "INVALID_KEY"],
    [[{}], "X", undefined, "INVALID_KEY"],
    [["ok", () => 1], "X", undefined, "INVALID_KEY"],
    [[NaN], "X", undefined, "INVALID_KEY"],
    [["k".repeat(5000)], "X", undefined, "INVALID_KEY"],
    [Array.from({ length: 5000 }, () => "p"), "X", undefined, "INVALID_KEY"],
  ];
  for (const [resource, mode, options, code] of cases) {
    const e = await errorOf(a.lock(resource as never, mode as LockMode, options as never));
    assert.equal(e.code, code, `lock(${String(resource)}, ${String(mode)}): ${e.code} ${e.message}`);
    assert.ok(e.message.length > 10);
  }
  // odd but valid: bytes, bigints, numbers, an empty string, a lone part or a tuple of one are one resource
  for (const resource of [new Uint8Array([0, 1, 255]), 10n ** 30n, -0, "", "a", ["a", new Uint8Array(0), 0n, 1.5, ""]] as unknown[]) {
    const l = await a.lock(resource as never, "X");
    assert.equal(await outcome(b.lock(resource as never, "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", `${String(resource)}`);
    l.release();
  }
  const one = await a.lock("a", "X");
  assert.equal(await outcome(b.lock(["a"], "IS", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  one.release();
  assert.deepEqual(a.locks(), []);
  assert.equal(a.stats().resourceLocksHeld, 0);
  await closeAll([a, b]);
});

/** The generations in the table file's two slots (0: not a valid slot). */
function slotGenerations(dir: string): [number, number] {
  const bytes = fs.readFileSync(`${dir}/locks/table`);
  return [0, 1].map((slot) => {
    const at = slot * SLOT_BYTES;
    const body = bytes.length >= at + 32 ? new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(4, true) : 0;
    const t = bytes.length >= at + 32 + body ? decodeSlot(bytes.subarray(at, at + 32 + body)) : undefined;
    return t?.generation ?? 0;
  }) as [number, number];
}

/** Damages one slot of the table in place: garbage over its first 8 KiB, or the file cut short inside it. */
function damageSlot(dir: string, slot: 0 | 1, how: "garbage" | "cut"): void {
  const fd = fs.openSync(`${dir}/locks/table`, "r+");
  try {
    if (how === "garbage") fs.writeSync(fd, new Uint8Array(8192).map((_, i) => (i * 131 + 7) & 255), 0, 8192, slot * SLOT_BYTES);
    else fs.ftruncateSync(fd, slot * SLOT_BYTES + 16);
  } finally {
    fs.closeSync(fd);
  }
}

/** Takes S locks of `a` on ["pad", i] until the newest table is in slot `slot`; returns them. */
async function padUntilNewestIn(dir: string, a: Database, slot: 0 | 1): Promise<{ release(): void }[]> {
  const pads = [];
  do pads.push(await a.lock(["pad", pads.length], "S"));
  while (Math.max(...slotGenerations(dir)) % 2 !== slot);
  return pads;
}

for (const [slot, how] of [[0, "garbage"], [1, "garbage"], [1, "cut"]] as const) {
  test(`${R} ${how === "cut" ? "the file cut short inside the second slot" : `garbage written in place over the ${slot === 0 ? "first" : "second"} slot`}, which held the last change (a grant): the other slot's older table is not taken for the table, another handle is still refused`, async () => {
    const dir = tempDir(`slot-${slot}-${how}`);
    const [a, b] = [await open(dir), await open(dir)];
    const pads = await padUntilNewestIn(dir, a, slot === 0 ? 1 : 0); // a's grant of r then goes to `slot`
    const lr = await a.lock(["r"], "X");
    const generations = slotGenerations(dir);
    assert.ok(generations[slot] > generations[1 - slot]! && generations[1 - slot]! > 0, `the grant went to slot ${slot}: ${generations}`);
    damageSlot(dir, slot, how);
    assert.equal(await outcome(b.lock(["r"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got S on r while a holds X (taken from the table before a's grant)");
    assert.equal(await outcome(b.lock(["pad", 0], "S", { timeoutMs: 0 }).then((l) => l.release())), "granted");
    assert.deepEqual(slotGenerations(dir).map((g) => g > generations[slot]!), [true, true], "the rebuilt table is in both slots, numbered on");
    lr.release();
    for (const l of pads) l.release();
    assert.equal(await outcome(b.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
    assert.deepEqual(b.locks(), []);
    await closeAll([a, b]);
  });
}

for (const slot of [0, 1] as const) {
  test(`${R} garbage over the ${slot === 0 ? "first" : "second"} slot, which held a release: the older table's grant of the released lock does not come back to block others`, async () => {
    const dir = tempDir(`release-lost-${slot}`);
    const [a, b] = [await open(dir), await open(dir)];
    const pads = await padUntilNewestIn(dir, a, slot); // the grant goes to the other slot, the release to `slot`
    (await a.lock(["r"], "X")).release();
    damageSlot(dir, slot, "garbage");
    assert.equal(await outcome(b.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted", "b was refused a lock nobody holds");
    for (const l of pads) l.release();
    assert.deepEqual(b.locks(), []);
    await closeAll([a, b]);
  });
}

test(`${R} the first table of an older release (generation 1 in the second slot alone) is taken as it is, but not once garbage covers the first slot`, async () => {
  const dir = tempDir("older-release-table");
  await (await open(dir)).close();
  fs.mkdirSync(`${dir}/locks`, { recursive: true });
  const fd = fs.openSync(`${dir}/locks/table`, "w");
  const first = encodeTable({ generation: 1, nextSeq: 1, owners: new Map(), entries: [] });
  fs.writeSync(fd, first, 0, first.length, SLOT_BYTES);
  fs.closeSync(fd);
  const [a, b] = [await open(dir), await open(dir)];
  const lr = await a.lock(["r"], "X"); // generation 2, in the first slot
  assert.deepEqual(slotGenerations(dir), [2, 1]);
  damageSlot(dir, 0, "garbage");
  assert.equal(await outcome(b.lock(["r"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got S on r while a holds X (taken from the older release's table)");
  lr.release();
  assert.equal(await outcome(b.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  await closeAll([a, b]);
});

test(`${R} the table lost while a live holder's lease cannot be opened (EMFILE, EACCES): no rebuild without its grants, the request is refused, then granted once the lease opens`, async () => {
  const dir = tempDir("rebuild-unreadable-record");
  const { adapter, failing } = leaseOpensFailing(await defaultPlatform());
  const [a, c] = [await open(dir), await open(dir, { adapter })];
  (await c.lock(["z"], "S")).release(); // c has its own lease
  for (const errno of ["EMFILE", "EACCES"]) {
    const la = await a.lock(["r"], "X");
    fs.unlinkSync(`${dir}/locks/table`);
    failing.errno = errno;
    assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 50 })), "LOCK_TIMEOUT", `${errno}: c got X on r while a holds it (rebuilt without a's record)`);
    failing.errno = undefined;
    assert.equal(await outcome(c.lock(["r"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", `${errno}: a's grant was lost`);
    la.release();
    assert.equal(await outcome(c.lock(["r"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted");
  }
  await closeAll([a, c]);
});

test(`${R} a table written from outside that lists a grant its owner gave back: the owner's next change takes the stray out, and others get the lock`, async () => {
  const dir = tempDir("stray-grant");
  const [a, b] = [await open(dir), await open(dir)];
  const lq = await a.lock(["q"], "X");
  const [g0, g1] = slotGenerations(dir);
  const bytes = fs.readFileSync(`${dir}/locks/table`);
  const at = g0 > g1 ? 0 : SLOT_BYTES;
  const withQ = decodeSlot(bytes.subarray(at, at + 32 + new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(4, true)))!;
  lq.release();
  // A valid table in both slots, newer than any, in which a still holds q (an older table's entries).
  const even = Math.max(...slotGenerations(dir)) + 2 - (Math.max(...slotGenerations(dir)) % 2);
  const fd = fs.openSync(`${dir}/locks/table`, "r+");
  for (const generation of [even, even + 1]) {
    const slot = encodeTable({ ...withQ, generation });
    fs.writeSync(fd, slot, 0, slot.length, (generation % 2) * SLOT_BYTES);
  }
  fs.closeSync(fd);
  assert.equal(await outcome(b.lock(["q"], "X", { timeoutMs: 0 })), "LOCK_TIMEOUT", "the table says a holds q: b cannot know better");
  const lz = await a.lock(["z"], "S"); // a's change: q is neither held nor waited for by a
  assert.equal(await outcome(b.lock(["q"], "X", { timeoutMs: 0 }).then((l) => l.release())), "granted", "a's stray entry was left in the table");
  lz.release();
  assert.deepEqual(a.locks(), []);
  await closeAll([a, b]);
});

// --- other processes: death, conversions, cycles ---

async function lockers(dir: string, runtimes: Runtime[]): Promise<Worker[]> {
  await (await open(dir)).close();
  const ws = runtimes.map((r) => startWorker!(r, "resource-locker", [dir]));
  await Promise.all(ws.map((w) => w.waitFor("ready", 30_000)));
  return ws;
}

function ask(w: Worker, id: string, mode: string, resource: unknown, timeoutMs?: number): Promise<string> {
  w.send(`lock ${id} ${mode} ${JSON.stringify(resource)}${timeoutMs === undefined ? "" : ` ${timeoutMs}`}`);
  return Promise.race([w.waitFor(`granted ${id} `, 60_000), w.waitFor(`error ${id} `, 60_000)]).then((line) => (line.startsWith("granted") ? "granted" : line.split(" ")[2]!));
}

function pidOf(w: Worker): number {
  return Number(w.lines.find((l) => l.startsWith("ready "))!.split(" ")[2]);
}

test(`${R} the entries of killed processes never fill the table: locks that blocked nobody go with their owner`, { skip: !canSpawn }, async () => {
  const dir = tempDir("dead-fill");
  for (const rt of ["node", "bun"] as Runtime[]) {
    // Each process fills about half the table's slot (1 MiB) with locks that block nobody, then dies.
    const w = startWorker!(rt, "lock-filler", [dir, "9", "60000"]);
    assert.match(await w.waitFor("held", 30_000), /^held 9$/);
    w.kill9();
    await w.exited;
  }
  // Both owners are dead; their entries blocked nobody so far. A new lock must still go in.
  const db = await open(dir);
  assert.equal(await outcome(db.lock(["x".repeat(1900)], "X", { timeoutMs: 5_000 }).then((l) => l.release())), "granted");
  assert.deepEqual(db.locks(), []);
  await db.close();
});

test(`${R} a process killed while holding, another killed while waiting: the next waiter gets the lock, no waiter entry leaks`, { skip: !canSpawn }, async () => {
  const dir = tempDir("kill-hold-wait");
  const [holder, waiter] = await lockers(dir, ["bun", "node"]);
  assert.equal(await ask(holder!, "h", "X", ["r", "x"]), "granted");
  const w1 = ask(waiter!, "w", "S", ["r", "x"]);
  const db = await open(dir);
  assert.ok((await waitUntil(() => db.locks().some((l) => l.waiting), 10_000)) >= 0);
  const mine = db.lock(["r", "x"], "X", { timeoutMs: 30_000 });
  assert.ok((await waitUntil(() => db.locks().filter((l) => l.waiting).length === 2, 10_000)) >= 0);
  waiter!.kill9(); // the waiter ahead of db dies first
  await waiter!.exited;
  void w1.catch(() => {});
  holder!.kill9();
  await holder!.exited;
  const l = await mine;
  assert.deepEqual(db.locks().map((i) => [i.resource, i.mode, i.waiting]), [["r", "IX", false], [["r", "x"], "X", false]]);
  l.release();
  assert.deepEqual(db.locks(), []);
  await db.close();
});

test(`${R} the table deleted, then garbled, while processes of other runtimes hold locks and change nothing: this process is refused until they release`, { skip: !canSpawn }, async () => {
  const dir = tempDir("table-lost-mp");
  const [holder, waiter] = await lockers(dir, ["deno", "bun"]);
  assert.equal(await ask(holder!, "h", "X", ["r", "x"]), "granted");
  assert.equal(await ask(holder!, "q", "X", ["q"]), "granted");
  const w = ask(waiter!, "w", "X", ["q"]);
  const db = await open(dir);
  assert.ok((await waitUntil(() => db.locks().some((l) => l.waiting), 10_000)) >= 0);
  holder!.send("release q");
  assert.equal(await w, "granted"); // granted to the waiter by the holder's change
  for (const how of ["deleted", "garbage"] as const) {
    damageTable(dir, how);
    assert.equal(await outcome(db.lock(["r", "x"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", `${how}: got S while a deno process holds X`);
    assert.equal(await outcome(db.lock(["q"], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", `${how}: got S while a bun process holds X`);
  }
  const mine = db.lock(["r", "x"], "X", { timeoutMs: 30_000 });
  holder!.send("release h");
  await (await mine).release();
  waiter!.send("release w");
  assert.equal(await outcome(db.lock(["q"], "X", { timeoutMs: 10_000 }).then((l) => l.release())), "granted");
  await db.close();
});

// --- the whole locks/ directory deleted (rm -rf) under holders: rule 7 of src/locks.ts ---

for (const how of ["deleted", "deleted and made again empty"] as const) {
  test(`${R} locks/ ${how} while another handle holds X: a new handle is refused until the holder releases, then granted`, async () => {
    const dir = tempDir("locksdir-inproc");
    const [a, b] = [await open(dir), await open(dir)];
    const la = await a.lock(["acct", 1], "X");
    fs.rmSync(`${dir}/locks`, { recursive: true, force: true });
    if (how !== "deleted") fs.mkdirSync(`${dir}/locks`);
    // A handle that never locked before, and one more that did: neither may get what a holds.
    assert.equal(await outcome(b.lock(["acct", 1], "S", { timeoutMs: 0 })), "LOCK_TIMEOUT", "b got S while a holds X (its lease and record went with the directory)");
    assert.equal(await outcome(b.lock(["acct", 1], "X", { timeoutMs: 200 })), "LOCK_TIMEOUT", "b got X within 200 ms while a holds X");
    const c = await open(dir);
    assert.equal(await outcome(c.lock(["acct"], "X", { timeoutMs: 100 })), "LOCK_TIMEOUT", "c got X on the parent while a holds IX");
    assert.deepEqual(c.locks().filter((l) => !l.waiting).map((l) => [l.resource, l.mode]).sort(), [[["acct", 1], "X"], ["acct", "IX"]].sort());
    const waiting = c.lock(["acct", 1], "X", { timeoutMs: 10_000 });
    assert.equal(await stateAfter(waiting, 60), "pending");
    la.release();
    (await waiting).release();
    assert.equal(await outcome(b.lock(["acct"], "X", { timeoutMs: 5_000 }).then((l) => l.release())), "granted");
    await closeAll([a, b, c]);
  });
}

/**
 * A holder in another process (another runtime), `locks/` deleted under it with rm -rf
 * (and made again empty with `remake`), the holder stopped (SIGSTOP) so that it cannot
 * register again at first: a newcomer process and a new handle here are refused while it
 * is stopped, still refused once it goes on (its grant back in the new directory), and
 * granted once it releases, or once it is killed.
 */
async function locksDirDeletedUnderHolder(holderRuntime: Runtime, newcomerRuntime: Runtime, remake: boolean, end: "release" | "kill"): Promise<void> {
  const dir = tempDir("locksdir-mp");
  const [holder, newcomer] = await lockers(dir, [holderRuntime, newcomerRuntime]);
  assert.equal(await ask(holder!, "h", "X", ["acct", 7]), "granted");
  assert.equal(await ask(holder!, "i", "S", ["idle"]), "granted");
  holder!.send("release i"); // it also holds nothing else meanwhile: X alone
  await holder!.waitFor("released i");
  holder!.child.kill("SIGSTOP");
  try {
    fs.rmSync(`${dir}/locks`, { recursive: true, force: true });
    if (remake) fs.mkdirSync(`${dir}/locks`, { mode: 0o700 });
    const db = await open(dir);
    const e = await errorOf(db.lock(["acct", 7], "X", { timeoutMs: 0 }));
    assert.equal(e.code, "LOCK_TIMEOUT", `a new handle got X while a stopped ${holderRuntime} process holds it`);
    assert.match(e.message, /deleted or replaced/, e.message);
    assert.equal(await ask(newcomer!, "n1", "X", ["acct", 7], 300), "LOCK_TIMEOUT", `a ${newcomerRuntime} process got X while a stopped ${holderRuntime} process holds it`);
    assert.equal(await outcome(db.lock(["acct"], "S", { timeoutMs: 100 })), "LOCK_TIMEOUT", "a new handle got S on the parent");
    holder!.child.kill("SIGCONT");
    // Going on, the holder registers in the new directory with its grant: still refused.
    assert.equal(await ask(newcomer!, "n2", "X", ["acct", 7], 300), "LOCK_TIMEOUT", `a ${newcomerRuntime} process got X once the ${holderRuntime} holder went on`);
    const other = await errorOf(db.lock(["acct", 7], "S", { timeoutMs: 100 }));
    assert.equal(other.code, "LOCK_TIMEOUT");
    assert.match(other.message, /holds X/, `the holder is named once back: ${other.message}`);
    const waits = ask(newcomer!, "n3", "X", ["acct", 7], 20_000);
    await sleep(50);
    if (end === "release") holder!.send("release h");
    else {
      holder!.kill9();
      await holder!.exited;
    }
    assert.equal(await waits, "granted", `the ${newcomerRuntime} process gets X once the holder ${end === "release" ? "released" : "died"}`);
    newcomer!.send("release n3");
    await newcomer!.waitFor("released n3");
    assert.equal(await outcome(db.lock(["acct", 7], "X", { timeoutMs: 10_000 }).then((l) => l.release())), "granted");
    await db.close();
  } finally {
    holder!.child.kill("SIGCONT");
  }
}

test(`${R} locks/ deleted (rm -rf) while a stopped deno process holds X: a bun process and a new handle are refused until it releases`, { skip: !canSpawn }, async () => {
  await locksDirDeletedUnderHolder("deno", "bun", false, "release");
});

test(`${R} locks/ deleted and made again empty while a stopped bun process holds X: a node process and a new handle are refused until it releases`, { skip: !canSpawn }, async () => {
  await locksDirDeletedUnderHolder("bun", "node", true, "release");
});

test(`${R} locks/ deleted (rm -rf) while a stopped node process holds X: the others are refused until it is killed`, { skip: !canSpawn }, async () => {
  await locksDirDeletedUnderHolder("node", "deno", false, "kill");
});

/**
 * A random load of node, deno and bun processes (resource-locker's `load`: a global lock
 * order, so no real deadlock) while `damage` hits the table every 3 ms: no broken mutual
 * exclusion, no error (a DEADLOCK there is one no consistent table gives).
 */
async function loadUnderDamage(name: string, damage: (table: string, n: number) => void): Promise<void> {
  const dir = tempDir(name);
  const checkDir = tempDir(`${name}-check`);
  const ws = await lockers(dir, ["node", "deno", "bun"]);
  ws.forEach((w, i) => w.send(`load 150 ${2000 + i} ${checkDir}`));
  const done = Promise.all(ws.map((w) => w.waitFor("load ", 240_000)));
  let finished = false;
  void done.then(() => (finished = true), () => (finished = true));
  let damages = 0;
  const table = `${dir}/locks/table`;
  while (!finished) {
    try {
      damage(table, damages);
      damages++;
    } catch {
      // not there right now (deleted, and no change since): next time
    }
    await sleep(3);
  }
  for (const [i, line] of (await done).entries()) {
    const r = JSON.parse(line.slice(5)) as { violations: number; errors: number; deadlocks: number; locksTaken: number };
    assert.equal(r.violations, 0, `${ws[i]!.runtime}: mutual exclusion broken: ${line}`);
    assert.equal(r.errors, 0, `${ws[i]!.runtime}: ${ws[i]!.lines.filter((l) => l.startsWith("loaderror")).join("; ")}`);
    assert.ok(r.locksTaken > 100, line);
  }
  assert.ok(damages > 20, `the table was damaged ${damages} times`);
}

test(`${R} a random load of node, deno and bun processes while the table is deleted or cut to nothing every few ms: no broken mutual exclusion, no error`, { skip: !canSpawn }, async () => {
  await loadUnderDamage("table-lost-load", (table, n) => {
    if (n % 2 === 0) fs.unlinkSync(table);
    else fs.truncateSync(table, 0);
  });
});

test(`${R} a random load of node, deno and bun processes while locks/ is deleted (rm -rf), or deleted and made again empty, every few ms: no broken mutual exclusion, no error`, { skip: !canSpawn }, async () => {
  await loadUnderDamage("locksdir-lost-load", (table, n) => {
    const locksDir = table.slice(0, table.lastIndexOf("/"));
    fs.rmSync(locksDir, { recursive: true, force: true });
    if (n % 2 === 1) fs.mkdirSync(locksDir, { mode: 0o700 });
  });
});

test(`${R} a random load of node, deno and bun processes while garbage is written over the table's start every few ms (the file replaced, or overwritten in place): no broken mutual exclusion, no error`, { skip: !canSpawn }, async () => {
  const garbage = new Uint8Array(8192).map((_, i) => (i * 131 + 7) & 255);
  await loadUnderDamage("table-garbage-load", (table, n) => {
    if (n % 2 === 0) fs.writeFileSync(table, garbage); // the file cut, then 8 KiB of garbage: the first slot's start
    else {
      const fd = fs.openSync(table, "r+"); // in place: the second slot keeps an older table
      try {
        fs.writeSync(fd, garbage, 0, garbage.length, 0);
      } finally {
        fs.closeSync(fd);
      }
    }
  });
});

test(`${R} S then X in two processes at once (node, deno): one DEADLOCK, the other gets X, nothing hangs`, { skip: !canSpawn }, async () => {
  const dir = tempDir("convert-race");
  const ws = await lockers(dir, ["node", "deno"]);
  assert.deepEqual(await Promise.all(ws.map((w) => ask(w, "s", "S", ["acct", 7]))), ["granted", "granted"]);
  const both = ws.map((w) => ask(w, "x", "X", ["acct", 7], 30_000));
  const first = await Promise.race(both.map((p, i) => p.then((o) => [i, o] as const)));
  assert.equal(first[1], "DEADLOCK", `the first answer is ${first[1]}`);
  const victim = ws[first[0]]!;
  victim.send("release s");
  await victim.waitFor("released s");
  assert.equal(await both[1 - first[0]]!, "granted");
  for (const w of ws) w.send("exit");
  await Promise.all(ws.map((w) => w.exited));
});

test(`${R} S then X in three handles at once: two DEADLOCKs (the later requests), the first gets X once the others let go`, async () => {
  const dbs = await handles("convert3", 4);
  const [a, b, c, d] = dbs as [Database, Database, Database, Database];
  const shared = await Promise.all([a, b, c].map((db) => db.lock(["doc"], "S")));
  const xa = a.lock(["doc"], "X", { timeoutMs: 20_000 });
  assert.equal(await stateAfter(xa), "pending");
  const eb = await errorOf(b.lock(["doc"], "X", { timeoutMs: 20_000 }));
  const ec = await errorOf(c.lock(["doc"], "X", { timeoutMs: 20_000 }));
  assert.deepEqual([eb.code, ec.code], ["DEADLOCK", "DEADLOCK"]);
  const cycle = (eb.details as { cycle: { resource: unknown; mode: string }[] }).cycle;
  assert.deepEqual(cycle.map((x) => [x.resource, x.mode]), [["doc", "X"], ["doc", "X"]]);
  assert.match(eb.message, /deadlock/);
  assert.equal(await stateAfter(xa), "pending");
  shared[1]!.release();
  assert.equal(await stateAfter(xa), "pending");
  shared[2]!.release();
  const x = await xa;
  assert.equal(await outcome(d.lock(["doc"], "IS", { timeoutMs: 0 })), "LOCK_TIMEOUT");
  x.release();
  shared[0]!.release();
  assert.deepEqual([a, b, c].map((db) => db.stats().deadlocks), [0, 1, 1]);
  assert.deepEqual([a, b, c].map((db) => [db.stats().resourceLocksHeld, db.stats().resourceLocksWaiting]), [[0, 0], [0, 0], [0, 0]]);
  assert.deepEqual(d.locks(), []);
  await closeAll(dbs);
});

test(`${R} many waiters from many handles are served in arrival order; counters add up`, async () => {
  const n = 60;
  const dbs = await handles("many", n + 1);
  const first = await dbs[0]!.lock(["hot"], "X");
  const order: number[] = [];
  const waits: Promise<void>[] = [];
  for (let i = 1; i <= n; i++) {
    const mode: LockMode = i % 3 === 0 ? "X" : "S";
    waits.push(
      dbs[i]!.lock(["hot"], mode, { timeoutMs: 60_000 }).then(async (l) => {
        order.push(i);
        await sleep(1);
        l.release();
      }),
    );
    // each request joins the queue before the next is made
    assert.ok((await waitUntil(() => dbs[i]!.stats().resourceLocksWaiting === 1, 10_000)) >= 0);
  }
  assert.equal(dbs[0]!.locks().filter((l) => l.waiting).length, n);
  first.release();
  await Promise.all(waits);
  // grants come in batches of S between X's; within the queue nothing overtakes an earlier X
  for (let i = 1; i <= n; i++) {
    if (i % 3 !== 0) continue;
    const at = order.indexOf(i);
    for (let j = 1; j < i; j++) assert.ok(order.indexOf(j) < at, `${j} was served after the X of ${i}`);
    for (let j = i + 1; j <= n; j++) assert.ok(order.indexOf(j) > at, `${j} was served before the X of ${i}`);
  }
  for (let i = 1; i <= n; i++) {
    const s = dbs[i]!.stats();
    assert.deepEqual([s.resourceLocksHeld, s.resourceLocksWaiting, s.resourceLockWaits, s.resourceLockTimeouts, s.deadlocks], [0, 0, 1, 0, 0], `handle ${i}`);
  }
  assert.deepEqual(dbs[0]!.locks(), []);
  await closeAll(dbs);
});
