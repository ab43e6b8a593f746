/**
 * db.backup(dest): a consistent copy at one version, online. The copy opens as a normal
 * store, passes check(), and holds exactly the commits at or below the version it reports,
 * while writers in this and other processes (Node, Deno, Bun) keep committing and a
 * compaction runs beside it.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test, dumpStore } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import * as fs from "node:fs";

const R = `[${runtime}]`;

const dump = dumpStore;

/**
 * The writers' keys ["ack", tag, i] are committed in order per tag: in a consistent copy
 * each tag's keys are 0..n-1 with no gap, all at or below the copy's version, and the
 * source's next key of each tag (if any) is above it.
 */
async function checkPrefix(copy: Database, source: Database, version: bigint, tags: string[]): Promise<number> {
  let total = 0;
  for (const tag of tags) {
    let n = 0;
    for await (const e of copy.list<number>("ns", { prefix: ["ack", tag] })) {
      assert.deepEqual(e.key, ["ack", tag, n], `${tag}: keys in the copy are 0..n-1 with no gap`);
      assert.ok(e.version <= version, `${tag} #${n}: version ${e.version} is at or below the backup's ${version}`);
      n++;
    }
    const next = await source.getEntry("ns", ["ack", tag, n]);
    if (next) assert.ok(next.version > version, `${tag} #${n}, missing from the copy, was committed after the backup's version (${next.version} > ${version})`);
    total += n;
  }
  return total;
}

test(`${R} a backup holds tables and log alike: the copy opens, passes check(), and reads what a snapshot at its version reads`, async () => {
  const base = tempDir("backup");
  const db = await open(`${base}/src`, { namespaces: ["ns", "other"], segmentBytes: 4096, autoCompactBytes: 0 });
  for (let i = 0; i < 300; i++) await db.set("ns", ["k", i], { i, pad: "x".repeat(40) });
  await db.compact(); // into tables
  for (let i = 0; i < 300; i += 3) await db.delete("ns", ["k", i]);
  await db.set("other", "a", new Uint8Array([1, 2, 3]));
  await db.transaction((tx) => tx.set("ns", ["k", 1000], 1n));
  await using snap = await db.snapshot();
  const expected: unknown[] = [];
  for (const ns of ["ns", "other"]) for await (const e of snap.list(ns, { prefix: [] })) expected.push([ns, e.key, e.value, e.version]);
  const r = await db.backup(`${base}/copy`);
  assert.equal(r.version, snap.version, "no commit since the snapshot: the backup is at its version");
  assert.ok(r.bytes > 0);
  const readOnly = await open(`${base}/copy`, { readOnly: true });
  assert.deepEqual(await dump(readOnly), expected, "a read-only open reads the copy at once (its frontier is at the copied end)");
  await readOnly.close();
  const copy = await open(`${base}/copy`);
  assert.deepEqual(await dump(copy), expected);
  const report = await copy.check();
  assert.ok(report.ok, JSON.stringify(report.problems));
  // The copy is a store of its own: it takes writes, and the source is untouched by them.
  await copy.set("ns", ["k", 2000], "only in the copy");
  assert.equal(await db.get("ns", ["k", 2000]), undefined);
  await copy.close();
  await db.close();
});

test(`${R} a backup taken while another handle commits and compacts holds a consistent prefix of its commits`, async () => {
  const base = tempDir("backup");
  const db = await open(`${base}/src`, { namespaces: ["ns"], segmentBytes: 8192, autoCompactBytes: 16384 });
  const writer = await open(`${base}/src`, { segmentBytes: 8192, autoCompactBytes: 16384 });
  for (let i = 0; i < 2000; i++) await db.set("ns", ["bulk", i], "y".repeat(200)); // a few MB to copy
  let stop = false;
  let i = 0; // commits resolved
  const writing = (async () => {
    while (!stop) {
      await writer.set("ns", ["ack", "w", i], i);
      i++;
    }
  })();
  const compacting = (async () => {
    while (!stop) {
      await writer.compact();
      await new Promise((r) => setTimeout(r, 2)); // a compaction with nothing to fold resolves in microtasks only
    }
  })();
  while (i < 50) await new Promise((r) => setTimeout(r, 5));
  const r = await db.backup(`${base}/copy`);
  const atBackup = i;
  while (i < atBackup + 50) await new Promise((r) => setTimeout(r, 5));
  stop = true;
  await writing;
  await compacting;
  const copy = await open(`${base}/copy`);
  const n = await checkPrefix(copy, db, r.version, ["w"]);
  assert.ok(n >= 50, `the copy holds the ${n} commits made before it began (at least 50)`);
  assert.equal(await copy.count("ns", { prefix: ["bulk"] }), 2000);
  assert.ok((await copy.check()).ok);
  await copy.close();
  await writer.close();
  await db.close();
});

test(`${R} backup() refuses a destination that is not empty, not a directory, a symlink or inside the store; nothing is written`, async () => {
  const base = tempDir("backup");
  const db = await open(`${base}/src`, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  const invalid = (re: RegExp) => (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT" && re.test(e.message);
  fs.mkdirSync(`${base}/full`);
  fs.writeFileSync(`${base}/full/keep.txt`, "mine");
  await assert.rejects(db.backup(`${base}/full`), invalid(/not empty/));
  assert.deepEqual(fs.readdirSync(`${base}/full`), ["keep.txt"]);
  fs.writeFileSync(`${base}/file`, "a file");
  await assert.rejects(db.backup(`${base}/file`), invalid(/not a directory/));
  fs.mkdirSync(`${base}/target`);
  fs.symlinkSync(`${base}/target`, `${base}/link`);
  await assert.rejects(db.backup(`${base}/link`), invalid(/symlink/));
  assert.deepEqual(fs.readdirSync(`${base}/target`), []);
  await assert.rejects(db.backup(`${base}/src/inside`), invalid(/inside/));
  await assert.rejects(db.backup(`${base}/src`), invalid(/inside|store directory/));
  await assert.rejects(db.backup(""), invalid(/destination/));
  // An empty directory is fine.
  fs.mkdirSync(`${base}/empty`);
  const r = await db.backup(`${base}/empty`);
  const copy = await open(`${base}/empty`);
  assert.equal(await copy.get("ns", "k"), 1);
  assert.equal((await copy.getEntry("ns", "k"))!.version, r.version);
  await copy.close();
  await db.close();
  await assert.rejects(db.backup(`${base}/late`), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED");
});

test(`${R} a backup cut short (store files, no MANIFEST) is never opened as a store`, async () => {
  const base = tempDir("backup");
  const db = await open(`${base}/src`, { namespaces: ["ns"] });
  await db.set("ns", "k", 1);
  await db.backup(`${base}/copy`);
  await db.close();
  fs.unlinkSync(`${base}/copy/MANIFEST`);
  await assert.rejects(open(`${base}/copy`), (e: unknown) => e instanceof TxtDbError && /MANIFEST/.test(e.message));
});

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  test(`${R} a backup taken while Node, Deno and Bun processes commit holds a consistent prefix of each one's commits`, async () => {
    const base = tempDir("backup");
    const db = await open(`${base}/src`, { namespaces: ["ns"], segmentBytes: 16384 });
    for (let i = 0; i < 1000; i++) await db.set("ns", ["bulk", i], "z".repeat(300));
    const workers = RUNTIMES.map((rt) => startWorker(rt, "dbworker", ["ackloop", `${base}/src`, rt]));
    await Promise.all(workers.map((w) => w.waitFor("ack 20", 30_000)));
    const r = await db.backup(`${base}/copy`);
    await Promise.all(workers.map((w) => w.waitFor(`ack ${Number(w.lines.filter((l) => l.startsWith("ack ")).length) + 20}`, 30_000)));
    for (const w of workers) w.kill9();
    await Promise.all(workers.map((w) => w.exited));
    const copy = await open(`${base}/copy`);
    const n = await checkPrefix(copy, db, r.version, [...RUNTIMES]);
    assert.ok(n >= 60, `${n} worker commits in the copy`);
    assert.ok((await copy.check()).ok);
    await copy.close();
    await db.close();
  });
}
