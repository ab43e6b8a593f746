/**
 * Leases that cannot be seen: a `leases/` directory renamed, deleted, replaced or unreadable
 * under live processes, and a lease file this user may not open (another user's). Compaction
 * must then keep what the unseen processes' snapshots read (DESIGN invariant 5), and
 * `stats()` and `txtdb doctor` must say which lease cannot be read and why.
 */
import * as fs from "node:fs";
import { assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import type { Database, Platform } from "txtdb";
import { defaultPlatform, LEASES_SETTLE_MS, PortError } from "txtdb/internal";

const R = `[${runtime}]`;
const platform = await defaultPlatform();
const isRoot = platform.uid === 0;

/** Two handles on a new store; `a` holds a snapshot of "old", `b` wrote 100 versions past it. */
async function snapshotUnderWrites(label: string): Promise<{ dir: string; a: Database; b: Database; snap: Awaited<ReturnType<Database["snapshot"]>> }> {
  const dir = tempDir(label);
  const a = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  const b = await open(dir, { segmentBytes: 512, autoCompactBytes: 0 });
  await a.set("ns", "k", "old");
  const snap = await a.snapshot();
  for (let i = 0; i < 100; i++) await b.set("ns", "k", `new${i}`);
  return { dir, a, b, snap };
}

const tamperings: { name: string; skip?: boolean; listable: boolean; tamper: (dir: string) => void; restore: (dir: string) => void }[] = [
  {
    name: "renamed",
    listable: false,
    tamper: (dir) => fs.renameSync(`${dir}/leases`, `${dir}/leases.moved`),
    restore: (dir) => fs.renameSync(`${dir}/leases.moved`, `${dir}/leases`),
  },
  {
    name: "replaced by a file",
    listable: false,
    tamper: (dir) => {
      fs.renameSync(`${dir}/leases`, `${dir}/leases.moved`);
      fs.writeFileSync(`${dir}/leases`, "not a directory");
    },
    restore: (dir) => {
      fs.unlinkSync(`${dir}/leases`);
      fs.renameSync(`${dir}/leases.moved`, `${dir}/leases`);
    },
  },
  {
    // chmod does not stop root, who reads every directory.
    name: "made unreadable (chmod 000)",
    skip: isRoot,
    listable: false,
    tamper: (dir) => fs.chmodSync(`${dir}/leases`, 0),
    restore: (dir) => fs.chmodSync(`${dir}/leases`, 0o700),
  },
  {
    name: "replaced by an empty directory",
    listable: true,
    tamper: (dir) => {
      fs.renameSync(`${dir}/leases`, `${dir}/leases.moved`);
      fs.mkdirSync(`${dir}/leases`, { mode: 0o700 });
    },
    restore: () => {},
  },
];

for (const t of tamperings) {
  test(`${R} leases/ ${t.name} under a live snapshot: compaction folds nothing, and the snapshot reads its version`, { skip: t.skip }, async () => {
    const { dir, a, b, snap } = await snapshotUnderWrites("leases-gone");
    t.tamper(dir);
    try {
      // A directory that lacks this process's lease holds compaction back until every live
      // process has had time to take its lease again (LEASES_SETTLE_MS); one that cannot be
      // listed, for as long as it cannot.
      const runs = 3;
      for (let i = 0; i < runs; i++) {
        const r = await b.compact();
        assert.equal(r.segmentsFolded, 0, `compaction ${i + 1} folded nothing`);
      }
      if (!t.listable) {
        const [u, ...more] = b.stats().unreadableLeases;
        assert.equal(more.length, 0);
        assert.equal(u?.path, `${dir}/leases`);
        assert.match(u!.reason, /cannot be listed \((ENOENT|ENOTDIR|EACCES)/);
      }
      assert.equal(await a.get("ns", "k"), "new99", "the other handle reads the head");
      assert.equal(await snap.get("ns", "k"), "old", "the snapshot still reads its version");
    } finally {
      t.restore(dir);
    }
    assert.deepEqual(b.stats().unreadableLeases, []);
    assert.equal(await snap.get("ns", "k"), "old");
    if (t.listable) {
      // Past the settling time, the other process has its lease back: compaction folds
      // again, and keeps what the snapshot reads.
      await sleep(LEASES_SETTLE_MS + 200);
      const r = await b.compact();
      assert.equal(r.minPinnedVersion, snap.version, "the other process's lease is seen again, with its snapshot's pin");
      assert.equal(await snap.get("ns", "k"), "old");
    }
    snap.release();
    await a.get("ns", "k"); // publishes the released pin
    const r = await b.compact();
    assert.ok(r.segmentsFolded > 0, "with the leases in sight and the snapshot released, compaction folds");
    assert.equal(await a.get("ns", "k"), "new99");
    await a.close();
    await b.close();
  });
}

test(`${R} a process whose lease file was deleted takes a new one within a second, without a compaction to notice, and compaction then keeps what its snapshot reads`, async () => {
  const { dir, a, b, snap } = await snapshotUnderWrites("lease-renew");
  const before = fs.readdirSync(`${dir}/leases`).sort();
  assert.equal(before.length, 2);
  for (const f of before) fs.unlinkSync(`${dir}/leases/${f}`); // a cleaner empties leases/
  await sleep(1_500);
  const after = fs.readdirSync(`${dir}/leases`).filter((f) => f.endsWith(".lease"));
  assert.equal(after.length, 2, `both processes took new leases: ${after.join(", ")}`);
  await sleep(LEASES_SETTLE_MS);
  const r = await b.compact();
  assert.equal(r.minPinnedVersion, snap.version, "the snapshot's pin is seen again");
  assert.equal(await snap.get("ns", "k"), "old");
  snap.release();
  await a.close();
  await b.close();
});


const PLANTED = "00112233aabbccdd.lease";

/** Writes a dead process's lease (unlocked) into the store's leases/. */
function plantDeadLease(dir: string): string {
  const path = `${dir}/leases/${PLANTED}`;
  fs.writeFileSync(path, JSON.stringify({ pid: 999_999, runtime: "node", startedAtMs: 1 }).padEnd(256, " "), { mode: 0o600 });
  return path;
}

/** `base`, on which opening `path` fails with EACCES, as another user's lease of mode 0o600 does. */
function unreadable(base: Platform, path: string): Platform {
  return {
    ...base,
    open(p, options) {
      if (p === path) throw new PortError("EACCES", "open", p);
      return base.open(p, options);
    },
  };
}

test(`${R} a lease this process may not open counts as alive, and stats() names it and says why`, async () => {
  const dir = tempDir("leases-eacces");
  const first = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  const planted = plantDeadLease(dir);
  await first.close();
  const db = await open(dir, { adapter: unreadable(platform, planted), segmentBytes: 512, autoCompactBytes: 0 });
  for (let i = 0; i < 100; i++) await db.set("ns", ["k", i], i);
  const r = await db.compact();
  // It cannot be told dead: its process may read any version past the tables.
  assert.equal(r.segmentsFolded, 0);
  assert.ok(fs.existsSync(planted), "it is not reclaimed");
  const s = db.stats();
  assert.equal(s.unreadableLeases.length, 1);
  assert.equal(s.unreadableLeases[0]!.path, planted);
  assert.match(s.unreadableLeases[0]!.reason, /cannot be opened \(EACCES, permission denied: owned by uid \d+ with mode 0o600/);
  assert.match(db.metrics(), /^txtdb_unreadable_leases\{[^}]*\} 1$/m);
  assert.ok(db.processes().some((p) => p.pid === -1 && p.pinnedVersion === undefined), "processes() lists it, unknown");
  await db.close();
  // Readable, it is a dead process's lease: reclaimed, and compaction folds.
  const again = await open(dir, { segmentBytes: 512, autoCompactBytes: 0 });
  assert.deepEqual(again.stats().unreadableLeases, []);
  const r2 = await again.compact();
  assert.ok(r2.segmentsFolded > 0);
  assert.equal(r2.leasesReclaimed, 1);
  await again.close();
});

test(`${R} txtdb doctor flags another user's lease it cannot read, names it and says what to do (exit 1)`, { skip: !canSpawn || runtime !== "node" }, async () => {
  const { spawnSync } = await import("node:child_process");
  // The store where another user can reach it: as root, doctor runs as nobody, and the
  // planted lease is root's; otherwise the lease is this user's, made unreadable.
  const base = fs.mkdtempSync("/tmp/txtdb-doctor-eacces-");
  fs.chmodSync(base, 0o755);
  const dir = `${base}/store`;
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  await db.close();
  const planted = plantDeadLease(dir);
  const as = isRoot ? { uid: 65534, gid: 65534 } : {};
  if (isRoot) {
    for (const name of ["", ...fs.readdirSync(dir).map((n) => `/${n}`), "/leases"]) fs.chownSync(`${dir}${name}`, 65534, 65534);
    fs.chownSync(planted, 0, 0);
  } else {
    fs.chmodSync(planted, 0);
  }
  try {
    // As root, the CLI runs as nobody, who may not be able to read this checkout (CI clones
    // into a 0700 directory): it runs from a copy of the package (the build, package.json,
    // its one dependency) beside the store.
    let cli = "dist/cli.js";
    if (isRoot) {
      const pkg = `${base}/pkg`;
      fs.cpSync("dist", `${pkg}/dist`, { recursive: true });
      fs.cpSync("package.json", `${pkg}/package.json`);
      fs.cpSync("node_modules/koffi", `${pkg}/node_modules/koffi`, { recursive: true });
      cli = `${pkg}/dist/cli.js`;
    }
    const r = spawnSync(process.execPath, [cli, "doctor", dir], { encoding: "utf8", timeout: 60_000, ...as });
    assert.equal(r.status, 1, `doctor exits 1: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, new RegExp(`warning: the lease ${planted.replace(/[.]/g, "\\.")} cannot be opened \\(EACCES, permission denied: owned by uid \\d+ with mode 0o[0-7]+(; this process runs as uid \\d+|, this process's user)\\)`));
    assert.match(r.stdout, /If its process has ended, remove the file/);
    assert.doesNotMatch(r.stdout, /pid -1/);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test(`${R} processes() gives another process's pin its age, from when that version was pinned, not from when the process started`, async () => {
  const dir = tempDir("leases-pin-age");
  const openedMs = Date.now();
  const a = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  const b = await open(dir, { autoCompactBytes: 0 });
  try {
    await sleep(300); // the process lives longer than its pin
    await a.set("ns", "k", "old");
    const pinnedMs = Date.now();
    const snap = await a.snapshot();
    for (let i = 0; i < 20; i++) await b.set("ns", "k", `new${i}`);
    await sleep(400);
    const [me, ...others] = b.processes();
    assert.equal(typeof me!.pinAgeMs, "number");
    assert.equal(others.length, 1);
    const other = others[0]!;
    assert.equal(other.pinnedVersion, snap.version);
    assert.equal(typeof other.pinAgeMs, "number", "the lease says since when");
    // Since its pin reached the snapshot's version (the write before it), at most.
    assert.ok(other.pinAgeMs! >= Date.now() - pinnedMs - 50 && other.pinAgeMs! <= Date.now() - openedMs - 250, `pinAgeMs ${other.pinAgeMs}`);
    snap.release();
  } finally {
    await a.close();
    await b.close();
  }
});

test(`${R} a lease of an older txtdb (its pin without a start time) reads as that pin, its age unknown; a start time torn from its pin is never paired with it`, async () => {
  const dir = tempDir("leases-old-record");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 5; i++) await db.set("ns", "k", i);
  const { crc32c } = await import("txtdb/internal");
  const path = `${dir}/leases/00112233445566aa.lease`;
  // Held locked through a handle of this process's own: to flock, another process.
  const h = platform.open(path, { create: true, exclusive: true, mode: 0o600 });
  try {
    assert.ok(h.tryLock(true));
    h.write(new TextEncoder().encode(JSON.stringify({ pid: 4242, runtime: "node", startedAtMs: Date.now() - 60_000 }).padEnd(256, " ")), 0);
    // The pin record as releases before the start time wrote it: the pin and its check word, 12 bytes.
    const pinPart = (tsn: number) => {
      const b = new Uint8Array(12);
      const v = new DataView(b.buffer);
      v.setFloat64(0, tsn, true);
      v.setUint32(8, ((((tsn * 2654435761) >>> 0) ^ 0x5eed5eed) >>> 0), true);
      return b;
    };
    const sincePart = (tsn: number, sinceMs: number) => {
      const b = new Uint8Array(20);
      b.set(pinPart(tsn));
      new DataView(b.buffer).setFloat64(12, sinceMs, true);
      const out = new Uint8Array(12);
      out.set(b.subarray(12, 20));
      new DataView(out.buffer).setUint32(8, (crc32c(b) ^ 0x71e5ab1e) >>> 0, true);
      return out;
    };
    const seen = () => db.processes().find((p) => p.pid === 4242);
    h.write(pinPart(2), 256);
    assert.deepEqual({ ...seen(), pid: 0 }, { pid: 0, runtime: "node", pinnedVersion: 2n, pinAgeMs: undefined, self: false });
    assert.equal((await db.compact()).minPinnedVersion, 2n, "its pin holds");
    // The whole record of this release: the pin and since when.
    h.write(sincePart(2, Date.now() - 5_000), 256 + 12);
    const age = seen()!.pinAgeMs!;
    assert.ok(age >= 5_000 && age < 60_000, `pinAgeMs ${age}`);
    // The pin of a later write with the start time of the earlier one (a torn record): the pin, no time.
    h.write(pinPart(3), 256);
    assert.deepEqual([seen()!.pinnedVersion, seen()!.pinAgeMs], [3n, undefined]);
    // A torn pin is no pin at all (its check word fails): the process counts as opening.
    h.write(new Uint8Array([1, 2, 3]), 256);
    assert.equal(seen()!.pinnedVersion, undefined);
  } finally {
    h.close();
    await db.close();
  }
});
