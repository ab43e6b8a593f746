/**
 * What open() may do to the files of a directory: never delete or overwrite what it did not
 * create, never take a damaged store for a new one, and never serve wrong data when files
 * are deleted or replaced under running processes (a lost lease, a compaction racing a
 * read-only open, a deleted writer.lock).
 */
import * as fs from "node:fs";
import { assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Platform } from "txtdb";
import { defaultPlatform, encodeInternal, frame, LEASES_SETTLE_MS, PortError } from "txtdb/internal";
import type { Runtime } from "./procs.ts";

// Worker processes are started from the Node and Bun legs only (the Deno leg may not spawn,
// nor read the environment procs.ts reads).
const procs = canSpawn ? await import("./procs.ts") : undefined;
const startWorker = (...a: Parameters<NonNullable<typeof procs>["startWorker"]>) => procs!.startWorker(...a);
const killAllWorkers = () => procs?.killAllWorkers();

const R = `[${runtime}]`;
const platform = await defaultPlatform();
const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;

async function count(db: Database | { list: Database["list"] }, prefix: unknown[] = []): Promise<number> {
  let n = 0;
  for await (const _ of db.list("ns", { prefix: prefix as never })) n++;
  return n;
}

function snapshotFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir)) {
    if (name === "writer.lock" || name === "compact.lock") continue; // their holder records change with every holder
    const p = `${dir}/${name}`;
    out[name] = fs.statSync(p).isDirectory() ? "<dir>" : fs.readFileSync(p).toString("base64");
  }
  return out;
}

test(`${R} open() refuses a non-empty directory that is not a store, and touches none of its files`, async () => {
  const dir = tempDir("foreign");
  const files: Record<string, string> = {
    "MANIFEST.tmp": "my temp manifest",
    "ckpt-notes.md": "# notes",
    "ckpt-important.txt": "important",
    "ckpt-1000.index": "tensorflow checkpoint",
    "seg-0000000000.log": "a log of mine",
    "frontier": "the frontier of science",
  };
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(`${dir}/${name}`, text);
  const before = snapshotFiles(dir);
  await assert.rejects(open(dir), code("INVALID_ARGUMENT"));
  await assert.rejects(open(dir, { namespaces: ["ns"] }), (e: unknown) => e instanceof TxtDbError && /not a txtdb store/.test(e.message));
  assert.deepEqual(snapshotFiles(dir), before, "every file is as it was, and no file was added");
});

test(`${R} open() of an existing store never deletes files it does not recognise as its own`, async () => {
  const dir = tempDir("foreign");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  for (let i = 0; i < 30; i++) await db.set("ns", ["k", i], "x".repeat(60));
  await db.compact();
  await db.close();
  const mine = { "ckpt-notes.md": "notes", "ckpt-important.txt": "keep", "seg-0000000000.log": "not a segment", "notes.txt": "n", "seg-1.log": "x" };
  for (const [name, text] of Object.entries(mine)) fs.writeFileSync(`${dir}/${name}`, text);
  const again = await open(dir);
  assert.equal(await count(again), 30);
  await again.close();
  for (const [name, text] of Object.entries(mine)) assert.equal(fs.readFileSync(`${dir}/${name}`, "utf8"), text, `${name} is untouched`);
});

/** The error `open(dir, { readOnly })` rejects with (it must reject). */
async function openError(dir: string, readOnly: boolean): Promise<TxtDbError> {
  try {
    await (await open(dir, { readOnly })).close();
  } catch (e) {
    assert.ok(e instanceof TxtDbError, String(e));
    return e;
  }
  throw new Error(`open(${JSON.stringify(dir)}, { readOnly: ${readOnly} }) succeeded`);
}

/** A lost manifest is the same CORRUPTION for a writable and a read-only open: what is missing, nothing changed, restore from a backup. */
async function assertManifestLost(dir: string): Promise<void> {
  for (const readOnly of [false, true]) {
    const e = await openError(dir, readOnly);
    assert.equal(e.code, "CORRUPTION", `readOnly ${readOnly}: ${e.message}`);
    assert.match(e.message, /has no MANIFEST .*manifest is lost\. Nothing was changed; restore MANIFEST .* from a backup/, `readOnly ${readOnly}`);
    assert.equal((e.details as { file?: string }).file, `${dir}/MANIFEST`);
  }
}

test(`${R} a store whose MANIFEST is missing is CORRUPTION for a writable and a read-only open, never a fresh store nor "no store": nothing is deleted`, async () => {
  const dir = tempDir("nomanifest");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  for (let i = 0; i < 300; i++) await db.set("ns", ["k", i], i);
  await db.compact();
  await db.close();
  fs.unlinkSync(`${dir}/MANIFEST`);
  const before = snapshotFiles(dir);
  await assertManifestLost(dir);
  assert.deepEqual(snapshotFiles(dir), before, "the checkpoint and the segments are all still there");
});

test(`${R} a store without a checkpoint whose MANIFEST is missing is CORRUPTION too, also with its leases/ and compact.lock gone (its first segment holds data)`, async () => {
  const dir = tempDir("nomanifest");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  await db.close();
  fs.unlinkSync(`${dir}/MANIFEST`);
  await assertManifestLost(dir);
  fs.rmSync(`${dir}/leases`, { recursive: true });
  fs.rmSync(`${dir}/compact.lock`, { force: true });
  const before = snapshotFiles(dir);
  await assertManifestLost(dir);
  assert.deepEqual(snapshotFiles(dir), before, "nothing changed");
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal({ format: 1, createdAtMs: 1 })));
  const back = await open(dir);
  assert.equal(await back.get("ns", "k"), 1, "with the manifest restored, the data is all there");
  await back.close();
});

test(`${R} a crafted manifest that does not match the files is CORRUPTION and deletes nothing`, async () => {
  const dir = tempDir("crafted");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  for (let i = 0; i < 100; i++) await db.set("ns", ["k", i], i);
  await db.close();
  const original = fs.readFileSync(`${dir}/MANIFEST`);
  const crafted: Record<string, unknown>[] = [
    { format: 1, createdAtMs: 1, firstSegment: 999 },
    { format: 1, createdAtMs: 1, firstSegment: 3, checkpoint: "ckpt-0000000000000001-3.dat", checkpointTsn: 1 },
    { format: 1, createdAtMs: 1, firstSegment: 0.5 },
  ];
  for (const m of crafted) {
    fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal(m)));
    const before = snapshotFiles(dir);
    await assert.rejects(open(dir), code("CORRUPTION"), JSON.stringify(m));
    assert.deepEqual(snapshotFiles(dir), before, `nothing deleted for ${JSON.stringify(m)}`);
  }
  // A manifest claiming a later first segment, with that segment present: the earlier ones hold
  // versions past its checkpoint, so they were never folded: CORRUPTION, nothing deleted.
  const segs = fs.readdirSync(dir).filter((n) => n.startsWith("seg-")).sort();
  assert.ok(segs.length >= 3, "the fill rolled over several segments");
  fs.writeFileSync(`${dir}/ckpt-0000000000000001-3.dat`, "x");
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal({ format: 1, createdAtMs: 1, firstSegment: 3, checkpoint: "ckpt-0000000000000001-3.dat", checkpointTsn: 1 })));
  const before = snapshotFiles(dir);
  await assert.rejects(open(dir), code("CORRUPTION"));
  assert.deepEqual(snapshotFiles(dir), before);
  fs.unlinkSync(`${dir}/ckpt-0000000000000001-3.dat`);
  fs.writeFileSync(`${dir}/MANIFEST`, original);
  const back = await open(dir);
  assert.equal(await count(back), 100);
  await back.close();
});

/** A platform on which this process can take no lease, as another user of a 0o644 store. */
function withoutLeases(base: Platform): Platform {
  return {
    ...base,
    open(path, options) {
      if (path.includes("/leases/")) throw new PortError("EACCES", "open", path);
      return base.open(path, options);
    },
    mkdir(path, mode) {
      if (path.endsWith("/leases")) throw new PortError("EACCES", "mkdir", path);
      return base.mkdir(path, mode);
    },
  };
}

test(`${R} a read-only reader that cannot take a lease reads right after another process compacts`, async () => {
  const dir = tempDir("nolease");
  const writer = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  await writer.set("ns", ["k", 0], 0);
  const reader = await open(dir, { readOnly: true, adapter: withoutLeases(platform) });
  assert.equal(await count(reader), 1);
  const snap = await reader.snapshot();
  for (let i = 1; i <= 100; i++) await writer.set("ns", ["k", i], "x".repeat(50));
  const r = await writer.compact();
  assert.ok(r.segmentsFolded > 0, "the compaction folded segments the reader had not read");
  assert.equal(await count(reader), 101, "the reader sees every key");
  assert.equal(await reader.get("ns", ["k", 77]), "x".repeat(50));
  // Its old snapshot cannot be served from files that are gone: it must fail, not answer wrongly.
  await assert.rejects(snap.get("ns", ["k", 0]), (e: unknown) => e instanceof TxtDbError);
  await reader.close();
  await writer.close();
});

test(`${R} deleting leases/ under running processes: readers still read right, compaction waits for leases to be seen again, and they are taken again`, async () => {
  const dir = tempDir("rmleases");
  const writer = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  await writer.set("ns", ["k", 0], 0);
  const reader = await open(dir);
  assert.equal(await count(reader), 1);
  fs.rmSync(`${dir}/leases`, { recursive: true, force: true });
  for (let i = 1; i <= 100; i++) await writer.set("ns", ["k", i], i);
  // No leases in sight: the reader's snapshots could read anything past the tables.
  assert.equal((await writer.compact()).segmentsFolded, 0);
  // A process that opens makes leases/ again; the writer's lease is not in it: compaction
  // folds nothing until every live process has had the time to take a new lease (each
  // checks its own every LEASE_CHECK_EVERY_MS), then folds.
  const late = await open(dir);
  assert.equal(await count(late), 101);
  assert.equal((await writer.compact()).segmentsFolded, 0);
  assert.equal((await writer.compact()).segmentsFolded, 0, "not before the leases settled");
  await sleep(LEASES_SETTLE_MS + 200);
  assert.equal(await count(reader), 101, "the reader reads right, and its pin moves to the head");
  assert.ok((await writer.compact()).segmentsFolded > 0);
  assert.equal(await count(reader), 101, "the reader, which noticed the compaction, reads right");
  assert.equal(fs.readdirSync(`${dir}/leases`).filter((n) => n.endsWith(".lease")).length, 3, "each process has a lease again");
  await late.close();
  await reader.close();
  await writer.close();
});

test(`${R} the mode option applies to leases/ and the lease files`, async () => {
  const dir = tempDir("mode");
  const db = await open(`${dir}/store`, { namespaces: ["ns"], mode: 0o640 });
  assert.equal(fs.statSync(`${dir}/store/leases`).mode & 0o777, 0o750);
  const lease = fs.readdirSync(`${dir}/store/leases`).find((n) => n.endsWith(".lease"))!;
  assert.equal(fs.statSync(`${dir}/store/leases/${lease}`).mode & 0o777, 0o640);
  await db.close();
});

/** Every file and directory under `dir` (itself included), with its permission bits. */
function modesUnder(dir: string, base = dir): Record<string, string> {
  const out: Record<string, string> = dir === base ? { "/": (fs.statSync(dir).mode & 0o777).toString(8) } : {};
  for (const name of fs.readdirSync(dir)) {
    const p = `${dir}/${name}`;
    const st = fs.statSync(p);
    out[p.slice(base.length)] = (st.mode & 0o777).toString(8);
    if (st.isDirectory()) Object.assign(out, modesUnder(p, base));
  }
  return out;
}

/** `modes` with every file at `file` and every directory at `dirMode`. */
function allModes(modes: Record<string, string>, dir: string, file: number, dirMode: number): Record<string, string> {
  return Object.fromEntries(Object.keys(modes).map((p) => [p, (fs.statSync(`${dir}${p === "/" ? "" : p}`).isDirectory() ? dirMode : file).toString(8)]));
}

test(`${R} mode 0o660 gives every file and directory of the store exactly 0o660 and 0o770 under the umask, and the store keeps it whatever mode later opens pass`, async () => {
  const dir = `${tempDir("mode660")}/store`;
  const creator = await open(dir, { namespaces: ["ns"], mode: 0o660, segmentBytes: 512, autoCompactBytes: 0 });
  await creator.set("ns", "k", 0);
  const lock = await creator.lock(["r"], "X");
  lock.release();
  await creator.close();
  // Opened without mode (owner-only by default), and with another: the segments, tables and
  // manifest these processes write follow the store, not their options.
  for (const mode of [undefined, 0o600]) {
    const db = await open(dir, { segmentBytes: 512, autoCompactBytes: 0, ...(mode === undefined ? {} : { mode }) });
    for (let i = 0; i < 50; i++) await db.set("ns", ["k", i], "x".repeat(20));
    assert.ok((await db.compact()).segmentsFolded > 0);
    const modes = modesUnder(dir);
    assert.ok(Object.keys(modes).some((p) => p.endsWith(".sst")) && Object.keys(modes).some((p) => p.endsWith(".lease")));
    assert.deepEqual(modes, allModes(modes, dir, 0o660, 0o770), `opened with mode ${mode}`);
    await db.close();
  }
  // Files chmod-ed by hand to 0o640 (directories 0o750): a running process follows from its
  // next read of the MANIFEST.
  const db = await open(dir, { segmentBytes: 512, autoCompactBytes: 0 });
  for (const [p] of Object.entries(modesUnder(dir))) {
    const path = `${dir}${p === "/" ? "" : p}`;
    fs.chmodSync(path, fs.statSync(path).isDirectory() ? 0o750 : 0o640);
  }
  for (let i = 0; i < 50; i++) await db.set("ns", ["j", i], "x".repeat(20));
  assert.ok((await db.compact()).segmentsFolded > 0);
  const modes = modesUnder(dir);
  assert.deepEqual(modes, allModes(modes, dir, 0o640, 0o750));
  await db.close();
});

test(`${R} a MANIFEST chmod-ed with execute, setuid or sticky bits gives new files none of them (0o4755 → 0o644)`, async () => {
  const dir = tempDir("modebits");
  const creator = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  await creator.close();
  fs.chmodSync(`${dir}/MANIFEST`, 0o4755);
  const db = await open(dir, { segmentBytes: 512, autoCompactBytes: 0 });
  for (let i = 0; i < 50; i++) await db.set("ns", ["k", i], "x".repeat(20));
  assert.ok((await db.compact()).segmentsFolded > 0);
  const written = fs.readdirSync(dir).filter((n) => /^(seg-.*\.log|tbl-.*\.sst|MANIFEST)$/.test(n) && fs.statSync(`${dir}/${n}`).mtimeMs > 0);
  for (const n of written) {
    if (n === "MANIFEST" || n === "seg-0000000001.log") continue; // not written anew, or made before the chmod
    assert.equal((fs.statSync(`${dir}/${n}`).mode & 0o7777).toString(8), "644", n);
  }
  assert.equal((fs.statSync(`${dir}/MANIFEST`).mode & 0o7777).toString(8), "644", "the switched manifest too");
  await db.close();
});

test(`${R} writer.lock deleted while processes run: commits of two processes still exclude each other`, { skip: !canSpawn }, async () => {
  const dir = tempDir("rmlock");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "hot", 0);
  await db.close();
  const runtimes: Runtime[] = ["node", "bun"];
  try {
    const first = startWorker(runtimes[0]!, "dbworker", ["counter", dir, "1500", "serializable", "rmw"]);
    await first.waitFor("ready");
    // A tmp cleaner removes the lock file while the first process runs (it keeps its handle).
    fs.unlinkSync(`${dir}/writer.lock`);
    const second = startWorker(runtimes[1]!, "dbworker", ["counter", dir, "1500", "serializable", "rmw"]);
    await second.waitFor("done", 120_000);
    await first.waitFor("done", 120_000);
    await Promise.all([first.finish(), second.finish()]);
  } finally {
    killAllWorkers();
  }
  const after = await open(dir);
  assert.equal(await after.get("ns", "hot"), 3000, "no increment was lost");
  assert.equal((await after.check()).ok, true);
  await after.close();
});

test(`${R} read-only opens racing another process's compactions never fail and never go back in time`, { skip: !canSpawn }, async () => {
  const dir = tempDir("rorace");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.close();
  const compactor = startWorker("node", "compactor", [dir, "60"]);
  try {
    await compactor.waitFor("ready");
    let last = 0;
    let opens = 0;
    while (!compactor.lines.includes("done")) {
      const ro = await open(dir, { readOnly: true });
      const n = await count(ro, ["c"]);
      assert.ok(n >= last, `a later open saw ${n} keys after an earlier one saw ${last}`);
      assert.equal(n % 20, 0, "each open sees whole transactions");
      last = n;
      await ro.close();
      opens++;
      await sleep(0); // let the worker's output in (awaits of settled promises never do)
    }
    assert.ok(opens > 10, `opened ${opens} times during the compactions`);
    await compactor.finish();
  } finally {
    killAllWorkers();
  }
});

test(`${R} check() whose runs keep meeting another process's compaction makes its last run in compact.lock, which no compaction passes, and reports the healthy store clean (writable and read-only handles)`, { skip: !canSpawn }, async () => {
  // Placed, not raced: at tables a check opens, it asks a worker process to compact and
  // waits for it (through files: the wait is synchronous, this event loop stopped), so its
  // unlocked runs have tables deleted under them. Its last run holds compact.lock shared
  // (a probe of the lock tells those firings apart): there the worker's compaction must
  // wait until the check ends, and the manifest stays put.
  const { withFaults } = await import("txtdb/adapters/faults");
  const { FileLock } = await import("txtdb/internal");
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (const mode of ["writable", "readonly"] as const) {
    const dir = tempDir("checklocked");
    const signals = tempDir("checklocked-signals");
    const writer = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
    for (let i = 0; i < 60; i++) await writer.set("ns", ["k", i], "v".repeat(100));
    await writer.compact();
    for (let i = 0; i < 60; i++) await writer.set("ns", ["k", i], "w".repeat(100)); // for the first compaction to fold
    await writer.close(); // its pin would hold back the compactions
    const worker = startWorker("node", "compact-on-signal", [dir, signals]);
    const probe = new FileLock(platform, `${dir}/compact.lock`);
    let checking = false;
    const firings: { locked: boolean; moved: boolean; done: boolean }[] = [];
    const manifest = () => fs.readFileSync(`${dir}/MANIFEST`).toString("base64");
    const hooked = withFaults(platform, (step, path) => {
      if (step !== "beforeOpen" || !checking || !path.endsWith(".sst") || firings.length >= 8) return;
      const free = probe.tryAcquire(true); // the worker is idle here: only the check can hold it
      free?.();
      const n = firings.length + 1;
      const before = manifest();
      fs.writeFileSync(`${signals}/go-${n}`, "");
      const deadline = Date.now() + (free ? 30_000 : 1_000);
      while (!fs.existsSync(`${signals}/done-${n}`) && Date.now() < deadline) Atomics.wait(wait, 0, 0, 2);
      const done = fs.existsSync(`${signals}/done-${n}`);
      firings.push({ locked: !free, moved: manifest() !== before, done });
      if (!free) checking = false; // one held-back compaction is enough; the rest of the run goes on undisturbed
    });
    const db = mode === "readonly" ? await open(dir, { readOnly: true, adapter: hooked }) : await open(dir, { adapter: hooked });
    try {
      await worker.waitFor("ready");
      checking = true;
      const report = await db.check();
      checking = false;
      const seen = JSON.stringify(firings);
      assert.deepEqual(report.problems, [], `${mode}: the last run, in compact.lock, found the store clean (${seen})`);
      assert.equal(report.ok, true);
      assert.ok(firings.filter((f) => !f.locked && f.moved).length >= 2, `${mode}: compactions switched the manifest under the unlocked runs: ${seen}`);
      const locked = firings.filter((f) => f.locked);
      assert.equal(locked.length, 1, `${mode}: the last run held compact.lock: ${seen}`);
      assert.deepEqual(locked[0], { locked: true, moved: false, done: false }, `${mode}: no compaction passed the locked run: ${seen}`);
      // Let go, the held-back compaction runs.
      const last = firings.length;
      for (let i = 0; i < 3000 && !fs.existsSync(`${signals}/done-${last}`); i++) await sleep(10);
      assert.ok(fs.existsSync(`${signals}/done-${last}`), `${mode}: the compaction held back by the check ran once it ended`);
      fs.writeFileSync(`${signals}/stop`, "");
      await worker.finish();
      assert.equal((await db.check()).ok, true);
    } finally {
      checking = false;
      killAllWorkers();
      probe.close();
      await db.close();
    }
  }
});

test(`${R} check() while another process compacts never reports a healthy store as damaged (a table or segments deleted under it), from a writable and a read-only handle`, { skip: !canSpawn }, async () => {
  // The read-only handle takes compact.lock shared through a read-only open of the file the
  // compactor created (its last attempt, once the manifest moved under the first ones).
  for (const mode of ["writable", "readonly"]) {
    const dir = tempDir("checkrace");
    const writer = await open(dir, { namespaces: ["ns"] });
    const db = mode === "readonly" ? await open(dir, { readOnly: true }) : writer;
    const compactor = startWorker("node", "compactor", [dir, "80"]);
    try {
      await compactor.waitFor("ready");
      let checks = 0;
      const reports: string[] = [];
      while (!compactor.lines.includes("done")) {
        const report = await db.check();
        checks++;
        if (!report.ok && reports.length < 5) reports.push(JSON.stringify(report.problems.slice(0, 2)));
        await sleep(0); // let the worker's output in
      }
      assert.deepEqual(reports, [], `${mode}: of ${checks} checks during the compactions, these reported damage`);
      assert.ok(checks > 10, `${mode}: checked ${checks} times during the compactions`);
      await compactor.finish();
    } finally {
      killAllWorkers();
      if (db !== writer) await db.close();
      await writer.close();
    }
  }
});

test(`${R} a process that holds the store open and reads nothing does not hold compaction back: its head moves on by itself (writable and read-only)`, { skip: !canSpawn }, async () => {
  for (const mode of ["writable", "readonly"]) {
    const dir = tempDir("idlehead");
    const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
    await db.set("ns", "k", 0);
    const idler = startWorker(runtime, "idler", mode === "readonly" ? [dir, "readonly"] : [dir]);
    try {
      await idler.waitFor("ready");
      for (let i = 1; i <= 200; i++) await db.set("ns", "k", "v".repeat(100) + i);
      const head = (await db.snapshot()).version;
      // Two lease checks (LEASE_CHECK_EVERY_MS) and a margin for a loaded machine.
      let folded: bigint | undefined;
      for (let waited = 0; waited < 20_000; waited += 500) {
        await sleep(500);
        const r = await db.compact();
        folded = r.minPinnedVersion;
        if (folded >= head) break;
      }
      assert.ok(folded !== undefined && folded >= head, `${mode}: the idle process still pins version ${folded} of ${head}`);
      assert.equal(db.stats().versionsHeld, 0, `${mode}: no old version is held in memory`);
      await idler.finish();
    } finally {
      killAllWorkers();
      await db.close();
    }
  }
});

test(`${R} a store opened by a relative path keeps working after process.chdir(): db.path is absolute, and commits and compaction stay in its directory`, async () => {
  const base = tempDir("relpath");
  const elsewhere = tempDir("relpath-elsewhere");
  const here = process.cwd();
  process.chdir(base);
  let db: Database | undefined;
  try {
    db = await open("./rel/store", { namespaces: ["ns"], segmentBytes: 4096, autoCompactBytes: 0 });
    assert.equal(db.path, `${fs.realpathSync(base)}/rel/store`);
    // Repeated "/" and "." segments do not stay in db.path (they used to).
    const twice = await open(".//rel/./store/", { namespaces: ["ns"] });
    assert.equal(twice.path, db.path);
    await twice.close();
    process.chdir(elsewhere);
    for (let i = 0; i < 100; i++) await db.set("ns", ["k", i], "v".repeat(100));
    await db.compact();
    assert.equal(fs.existsSync(`${elsewhere}/rel`), false, "nothing written under the new working directory");
    await db.close();
    db = undefined;
    const fresh = await open(`${base}/rel/store`);
    assert.equal(await count(fresh), 100);
    assert.equal((await fresh.check()).ok, true);
    await fresh.close();
  } finally {
    await db?.close();
    process.chdir(here);
  }
});
