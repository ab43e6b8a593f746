/** The simulated platform's crash model: what survives a power loss, and injected faults. */
import { assert, test } from "./harness.ts";
import { SimWorld, SimCrash } from "txtdb/adapters/sim";
import { PortError } from "txtdb/internal";

const bytes = (...xs: number[]) => new Uint8Array(xs);
function contents(world: SimWorld, path: string): number[] | undefined {
  const p = world.process();
  if (!p.stat(path)) return undefined;
  const f = p.open(path);
  const buf = new Uint8Array(f.size());
  f.read(buf, 0);
  return [...buf];
}

test("[sim] power loss drops every byte that was not fsynced, and keeps what was", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const world = new SimWorld(seed);
    const p = world.process();
    p.mkdir("/d");
    const f = p.open("/d/log", { create: true });
    p.syncDir("/d");
    f.append(bytes(1, 2, 3));
    f.datasync();
    f.append(bytes(4, 5, 6));
    const after = contents(world.powerLoss(), "/d/log")!;
    assert.deepEqual(after.slice(0, 3), [1, 2, 3], `seed ${seed}: synced bytes lost`);
    assert.ok(after.length <= 6);
    assert.deepEqual(after.slice(3), [4, 5, 6].slice(0, after.length - 3), `seed ${seed}: survivors are a prefix`);
  }
});

test("[sim] power loss tears unsynced writes at seeded byte positions (some runs keep a partial write)", () => {
  const lengths = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const world = new SimWorld(seed);
    const p = world.process();
    const f = p.open("/log", { create: true });
    p.syncDir("/");
    f.append(new Uint8Array(100).fill(7));
    lengths.add(contents(world.powerLoss(), "/log")!.length);
  }
  assert.ok(lengths.has(0) && lengths.has(100), "both drop and keep occur");
  assert.ok([...lengths].some((n) => n > 0 && n < 100), "torn writes occur");
});

test("[sim] a file created or renamed without a directory fsync can vanish in a power loss", () => {
  const world = new SimWorld(3);
  const p = world.process();
  const f = p.open("/new", { create: true });
  f.append(bytes(1));
  f.sync();
  assert.equal(contents(world.powerLoss(), "/new"), undefined, "creation was not made durable");
  p.syncDir("/");
  const g = p.open("/tmp", { create: true });
  g.append(bytes(2));
  g.sync();
  p.syncDir("/");
  p.rename("/tmp", "/new");
  const lost = world.powerLoss();
  assert.deepEqual(contents(lost, "/new"), [1], "rename was not made durable: old file remains");
  p.syncDir("/");
  assert.deepEqual(contents(world.powerLoss(), "/new"), [2]);
});

test("[sim] the same seed replays the same power-loss outcome", () => {
  const run = (seed: number) => {
    const world = new SimWorld(seed);
    const p = world.process();
    const f = p.open("/log", { create: true });
    p.syncDir("/");
    for (let i = 0; i < 10; i++) f.append(new Uint8Array(10).fill(i));
    return contents(world.powerLoss(), "/log");
  };
  for (const seed of [11, 12, 13]) assert.deepEqual(run(seed), run(seed));
});

test("[sim] injected faults: EIO and ENOSPC at a chosen operation, and a crash stops every process", () => {
  const world = new SimWorld(1);
  const p = world.process();
  const q = world.process();
  const f = p.open("/x", { create: true }); // op 1
  world.failAt(3, "ENOSPC");
  world.failAt(5, "crash");
  f.append(bytes(1)); // op 2
  assert.throws(() => f.append(bytes(2)), (e: unknown) => e instanceof PortError && e.errno === "ENOSPC"); // op 3
  f.append(bytes(3)); // op 4
  assert.throws(() => f.datasync(), SimCrash); // op 5
  assert.equal(world.crashed, true);
  assert.throws(() => q.open("/x"), SimCrash);
  assert.equal(world.counters.syncs, 0);
});

test("[sim] fsync accounting counts syncs, directory syncs and bytes", () => {
  const world = new SimWorld(1);
  const p = world.process();
  const f = p.open("/x", { create: true });
  f.append(bytes(1, 2));
  f.datasync();
  f.sync();
  p.syncDir("/");
  assert.equal(world.counters.syncs, 2);
  assert.equal(world.counters.dirSyncs, 1);
  assert.equal(world.counters.bytesWritten, 2);
});

test("[sim] a killed simulated process releases its locks", () => {
  const world = new SimWorld(1);
  const a = world.process();
  const b = world.process();
  const fa = a.open("/lock", { create: true });
  assert.equal(fa.tryLock(true), true);
  const fb = b.open("/lock");
  assert.equal(fb.tryLock(false), false);
  a.kill();
  assert.equal(fb.tryLock(false), true);
});
