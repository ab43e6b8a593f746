/**
 * The storage engine (log segments, sorted tables, the manifest, compaction, the block
 * cache) as an attacker or a careless user drives it, beyond tests/storage-attack.test.ts:
 * what another process's compaction leaves a process holding, and limits a long-lived
 * process reaches. Two handles on one directory act as two processes.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import { BLOCK_SLOT_BYTES, BlockCache, databaseInternals, decodeInternal, defaultPlatform, parseFrame, TableReader, TableWriter } from "txtdb/internal";

const R = `[${runtime}]`;

/** /proc/self/fd: Linux, and readable under Node and Bun (Deno wants --allow-all for /proc/self). */
const procFd = runtime !== "deno" && fs.existsSync("/proc/self/fd");

/** Files of `dir` this process holds open although they were deleted (Linux: /proc/self/fd). */
function deletedFilesHeld(dir: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor of the listing itself, closed meanwhile
    }
    if (target.startsWith(`${dir}/`) && target.endsWith(" (deleted)")) out.push(target);
  }
  return out;
}

test(`${R} a process that reads after another process's compact() (which sealed the active segment) follows the new manifest: it holds no deleted segment or table open and drops the folded versions, with no commit after the compaction`, async () => {
  const dir = tempDir("sealfollow");
  const small = { segmentBytes: 4096, autoCompactBytes: 0 };
  const writer = await open(dir, { namespaces: ["ns"], ...small });
  const reader = await open(dir, small);
  try {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100; i++) await writer.set("ns", ["k", i], `${"v".repeat(200)}${round}`);
      await writer.compact();
    }
    for (let round = 3; round < 8; round++) for (let i = 0; i < 100; i++) await writer.set("ns", ["k", i], `${"v".repeat(200)}${round}`);
    assert.equal(await reader.get("ns", ["k", 7]), `${"v".repeat(200)}7`); // the reader has read every segment: its pin is the head
    const before = reader.stats().versionsHeld;
    assert.ok(before >= 500, `the reader holds the unfolded versions: ${before}`);
    const done = await writer.compact();
    assert.ok(done.segmentsFolded > 10, `the compaction folded the log: ${JSON.stringify(done, (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
    // No commit from here on: the reader learns of the compaction from the frontier alone.
    for (let read = 0; read < 3; read++) {
      assert.equal(await reader.get("ns", ["k", 42]), `${"v".repeat(200)}7`);
      let n = 0;
      for await (const e of reader.list<string>("ns", { prefix: ["k"] }, { reverse: read === 1 })) {
        assert.equal(e.value, `${"v".repeat(200)}7`);
        n++;
      }
      assert.equal(n, 100);
    }
    assert.equal(reader.stats().checkpointVersion, done.checkpointVersion, "the reader follows the manifest the compaction switched to");
    assert.ok(reader.stats().versionsHeld < before, `the reader dropped the folded versions: ${reader.stats().versionsHeld} of ${before} held`);
    // Where /proc/self/fd can be read (the versions above tell on every runtime).
    if (procFd) assert.deepEqual(deletedFilesHeld(dir), [], "files the compaction deleted are still held open, their disk space not given back");
  } finally {
    await reader.close();
    await writer.close();
  }
});

test(`${R} namespaces created and dropped (one per job, or one name again and again) are forgotten once compaction folds their drop, in every process: the index keeps no history of them, and namespace conflicts still hold`, async () => {
  const dir = tempDir("nschurn");
  const small = { segmentBytes: 4096, autoCompactBytes: 0 };
  const a = await open(dir, { namespaces: ["keep"], ...small });
  const b = await open(dir, small);
  try {
    for (let i = 0; i < 300; i++) {
      await a.createNamespace(`job-${i}`);
      await a.set(`job-${i}`, "k", i);
      await a.dropNamespace(`job-${i}`);
      await a.createNamespace("tmp");
      await a.set("tmp", "k", i);
      await a.renameNamespace("tmp", "tmp2");
      await a.dropNamespace("tmp2");
    }
    await a.createNamespace("tmp");
    await a.set("tmp", "k", "last");
    assert.deepEqual(await b.listNamespaces(), ["keep", "tmp"]); // b has read the log: its pin is the head
    await a.compact();
    await b.get("tmp", "k"); // b follows the manifest
    for (const [who, db] of [["a", a], ["b", b]] as const) {
      const index = databaseInternals(db).index;
      for (const name of ["job-0", "job-150", "job-299", "tmp2"]) {
        assert.equal(index.nameChangedAt(name), 0, `${who} still holds the bindings of "${name}", dropped before the folded version`);
      }
      assert.equal(index.resolve("tmp", Number(db.stats().version)) !== undefined, true, `${who} resolves "tmp"`);
      assert.deepEqual(await db.listNamespaces(), ["keep", "tmp"]);
      assert.equal(await db.get("tmp", "k"), "last");
    }
    // A drop after a transaction's snapshot still conflicts across compactions.
    const tx = await b.begin(); // pins this version in b: compaction folds no further
    assert.equal(await tx.get("keep", "x"), undefined);
    await a.dropNamespace("keep");
    await a.createNamespace("keep");
    await a.compact();
    await b.get("keep", "x");
    tx.set("keep", "x", 1);
    await assert.rejects(tx.commit(), (e: unknown) => e instanceof TxtDbError && e.code === "CONFLICT", "a drop after the transaction's snapshot still conflicts");
    await a.compact();
    const c = await open(dir, small);
    assert.deepEqual(await c.listNamespaces(), ["keep", "tmp"]);
    assert.equal(await c.get("tmp", "k"), "last");
    assert.equal((await c.check()).ok, true);
    await c.close();
  } finally {
    await b.close();
    await a.close();
  }
});

test(`${R} the block cache of a process that has opened (and closed) 2^21 tables in its life still opens tables and reads them right: every process opens the tables each compaction writes, so a long-lived one gets there`, async () => {
  const dir = tempDir("tableids");
  const platform = await defaultPlatform();
  const path = `${dir}/t.tbl`;
  const out = platform.open(path, { create: true, exclusive: true });
  const w = new TableWriter(out);
  const key = (i: number) => `k${String(i).padStart(5, "0")}`;
  for (let i = 0; i < 3000; i++) w.add(1, key(i), 10 + i, new TextEncoder().encode(`value ${i} ${"x".repeat(i % 200)}`));
  w.finish();
  out.datasync();
  out.close();
  // The cache a process keeps (tail.ts), after as many table opens and closes as a process
  // calling compact() after each batch makes in a few hours (TableReader.open takes an id,
  // close() drops its blocks): what the opens do to the cache, without the file reads.
  const cache = new BlockCache<Uint8Array>(1 << 16, { slotBytes: BLOCK_SLOT_BYTES });
  for (let i = 0; i < 2 ** 21; i++) cache.dropTable(cache.newTableId());
  const t = TableReader.open(platform.open(path, { readOnly: true }), { cache });
  try {
    for (let pass = 0; pass < 3; pass++) {
      for (const i of [0, 1, 777, 1500, 2999]) {
        const v = t.get(1, key(i), 1e9);
        assert.equal(v && new TextDecoder().decode(v.value!), `value ${i} ${"x".repeat(i % 200)}`);
        assert.equal(v!.tsn, 10 + i);
      }
      assert.equal(t.get(1, key(3000), 1e9), undefined);
      assert.equal([...t.range(1, key(100), key(200), 1e9)].length, 100);
      assert.equal([...t.range(1, undefined, undefined, 1e9, { reverse: true })].length, 3000);
    }
    assert.ok(cache.stats().hits > 0, "blocks are cached and served again");
  } finally {
    t.close();
  }
});

test(`${R} compact() after each batch of keys that only grow (times, counters), or after each write of a few keys, keeps the tables few: they grow with the data, not with the number of compactions (each is an open file in every process)`, async () => {
  const dir = tempDir("smalltables");
  const small = { segmentBytes: 4096, autoCompactBytes: 0 };
  const db = await open(dir, { namespaces: ["events", "hot"], ...small });
  let reader: Awaited<ReturnType<typeof open>> | undefined;
  try {
    let n = 0;
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 50; i++, n++) await db.set("events", ["at", n], { n, round });
      if (round % 10 === 5) await db.delete("events", ["at", n - 7]);
      await db.compact();
    }
    for (let i = 0; i < 200; i++) {
      await db.set("hot", i % 40, i);
      await db.compact();
    }
    reader = await open(dir, small); // another process, opened now: one that reads nothing pins its head meanwhile
    for (const handle of [db, reader]) {
      assert.ok(handle.stats().tables <= 4, `${handle.stats().tables} tables after 260 compactions of ${JSON.stringify(handle.stats().tableBytesByLevel)} bytes`);
      const deleted = new Set([5, 15, 25, 35, 45, 55].map((r) => r * 50 + 50 - 7));
      const want = [...Array(n).keys()].filter((k) => !deleted.has(k));
      for (const reverse of [false, true]) {
        const got: number[] = [];
        for await (const e of handle.list<{ n: number }>("events", { prefix: ["at"] }, { reverse })) got.push(e.value.n);
        assert.deepEqual(got, reverse ? [...want].reverse() : want);
      }
      assert.equal(await handle.count("events", { prefix: ["at"] }), want.length);
      for (let k = 0; k < 40; k++) assert.equal(await handle.get("hot", k), 160 + k);
    }
    assert.equal((await db.check()).ok, true);
  } finally {
    await reader?.close();
    await db.close();
  }
  const again = await open(dir);
  assert.ok(again.stats().tables <= 4);
  assert.equal(await again.count("events", { prefix: ["at"] }), 3000 - 6);
  await again.close();
});

/**
 * Six rounds of six writes then compact(), three more writes and a last compact(), in one
 * process of `world`, which goes on after any compaction fails: what was acknowledged
 * (`model`) and where each compaction's file operations lie (`compactions`, in a run
 * without faults). Returns the open database, or undefined if the store refused to go on.
 */
async function goOnAfterFailedCompactions(world: SimWorld, model: Map<number, number>, compactions: [number, number][]): Promise<Database | undefined> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 256, autoCompactBytes: 0 });
  let k = 0;
  try {
    for (let round = 0; round <= 6; round++) {
      for (let j = 0; j < (round < 6 ? 6 : 3); j++, k++) {
        await db.set("main", (k * 7) % 13, k);
        model.set((k * 7) % 13, k);
      }
      const before = world.counters.ops;
      try {
        await db.compact();
      } catch (e) {
        assert.ok(e instanceof TxtDbError, `compact() failed with ${String(e)}`);
      }
      compactions.push([before, world.counters.ops]);
    }
    return db;
  } catch (e) {
    assert.ok(e instanceof TxtDbError, `a write failed with ${String(e)}`);
    await db.close().catch(() => {});
    return undefined;
  }
}

async function readAll(db: Database): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for await (const e of db.list<number>("main", { prefix: [] })) out.set(e.key as number, e.value);
  return out;
}

test(`${R} [sim] EIO and ENOSPC at every file operation of a compaction, in a process that goes on (writes, compacts again) without reopening: every acknowledged value reads back there and after a reopen`, async () => {
  const probe: [number, number][] = [];
  assert.ok(await goOnAfterFailedCompactions(new SimWorld(11), new Map(), probe));
  for (const [from, to] of probe.slice(2)) {
    for (let at = from + 1; at <= to; at++) {
      for (const kind of ["EIO", "ENOSPC"] as const) {
        const world = new SimWorld(11);
        world.failAt(at, kind);
        const model = new Map<number, number>();
        const db = await goOnAfterFailedCompactions(world, model, []);
        const where = `${kind} at operation ${at} (${world.trace[at - 1] ?? "?"})`;
        if (db) {
          assert.deepEqual(await readAll(db), model, `${where}: the process that went on reads other values than it wrote`);
          await db.close();
        }
        const again = await open("/db", { adapter: world.processCrash().process() });
        assert.deepEqual(await readAll(again), model, `${where}: after a reopen`);
        await again.close();
      }
    }
  }
});

/** Files in the simulated store `/db` that its manifest does not account for. */
function strayFiles(world: SimWorld): string[] {
  const p = world.process();
  const f = p.open("/db/MANIFEST", { readOnly: true });
  const bytes = new Uint8Array(f.size());
  f.read(bytes, 0);
  f.close();
  const frame = parseFrame(bytes, 0);
  assert.equal(frame.kind, "ok");
  const m = decodeInternal((frame as { body: Uint8Array }).body) as { tables?: { name: string }[]; firstSegment?: number };
  const named = new Set((m.tables ?? []).map((t) => t.name));
  return p.readdir("/db").filter((n) => (n.startsWith("tbl-") && !named.has(n)) || n.endsWith(".tmp") || (/^seg-\d{10}\.log$/.test(n) && Number(n.slice(4, 14)) < (m.firstSegment ?? 1)));
}

test(`${R} [sim] a compaction failing at any file operation (EIO, ENOSPC) leaves nothing behind once the same process compacts again: no table, segment or temporary file waits for the store to be reopened`, async () => {
  const probe: [number, number][] = [];
  assert.ok(await goOnAfterFailedCompactions(new SimWorld(12), new Map(), probe));
  for (const [from, to] of probe.slice(3, 6)) {
    for (let at = from + 1; at <= to; at++) {
      for (const kind of ["EIO", "ENOSPC"] as const) {
        const world = new SimWorld(12);
        world.failAt(at, kind);
        const db = await goOnAfterFailedCompactions(world, new Map(), []);
        if (!db) continue; // the store refused to go on (a failed sync): an open cleans up
        assert.deepEqual(strayFiles(world), [], `${kind} at operation ${at} (${world.trace[at - 1] ?? "?"}): left behind after the next compaction`);
        await db.close();
      }
    }
  }
});

test(`${R} a directory (with a file in it) planted under an open store where compaction writes its next table (or that table's temporary file) fails compact() with CORRUPTION naming it and saying to remove it; removed, compaction goes on and nothing is lost`, async () => {
  for (const suffix of [".sst", ".sst.tmp"]) {
    const dir = tempDir("plantdir");
    const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
    try {
      for (let i = 0; i < 40; i++) await db.set("ns", i, `a${i}`);
      await db.compact();
      const frame = parseFrame(new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`)), 0);
      const next = (decodeInternal((frame as { body: Uint8Array }).body) as { nextTable: number }).nextTable;
      const planted = `${dir}/tbl-${String(next).padStart(16, "0")}${suffix}`;
      fs.mkdirSync(planted);
      fs.writeFileSync(`${planted}/theirs`, "not txtdb's"); // a directory in use (an empty one, Deno's rename and unlink remove)
      for (let i = 0; i < 40; i++) await db.set("ns", i, `b${i}`);
      let failure: unknown;
      await db.compact().catch((e) => (failure = e));
      assert.ok(failure instanceof TxtDbError, `compact() with ${planted} a directory: ${String(failure)}`);
      assert.equal(failure.code, "CORRUPTION", failure.message);
      assert.equal((failure.details as { file?: string }).file, planted, failure.message);
      assert.match(failure.message, /is a directory.*remove it/);
      assert.equal(await db.get("ns", 7), "b7");
      assert.equal(fs.readFileSync(`${planted}/theirs`, "utf8"), "not txtdb's", "the directory is left as it was");
      fs.rmSync(planted, { recursive: true });
      assert.ok((await db.compact()).segmentsFolded > 0);
      for (let i = 0; i < 40; i++) assert.equal(await db.get("ns", i), `b${i}`);
      assert.equal((await db.check()).ok, true);
    } finally {
      await db.close();
    }
  }
});
