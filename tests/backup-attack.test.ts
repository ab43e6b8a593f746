/**
 * Online backup, the format migration and check() as a careless user or an attacker would
 * drive them: destinations spelled so they lead into the store, a backup or a migration
 * cut at every file operation, migrations run again, concurrently or on the wrong thing.
 * Nothing may end as a store that opens with the wrong content, and every refusal is a
 * TxtDbError with a stable code.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assert, runtime, tempDir, test, dumpStore } from "./harness.ts";
import { defaultPlatform, open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { decodeInternal, encodeInternal, frame, migrateStore, parseFrame } from "txtdb/internal";
import type { FileHandle, Platform } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const R = `[${runtime}]`;

const dump = dumpStore;

const code = (c: string, re?: RegExp) => (e: unknown) => e instanceof TxtDbError && e.code === c && (!re || re.test(e.message));

test(`${R} backup() refuses a destination inside the store however it is spelled (./dir/x, an absolute path, through a symlink to the store); nothing is written`, async () => {
  const base = tempDir("backup-atk");
  const db = await open(`${base}/src`, { namespaces: ["ns"] });
  try {
    await db.set("ns", "k", 1);
    const before = fs.readdirSync(`${base}/src`).sort();
    fs.symlinkSync(`${base}/src`, `${base}/alias`);
    fs.mkdirSync(`${base}/src-sibling`);
    for (const dest of [`${base}/src/./x`, `${base}/alias/x`, `${base}/alias/deep/er/x`, `${base}/src-sibling/../src/x`]) {
      await assert.rejects(db.backup(dest), code("INVALID_ARGUMENT", /inside/), dest);
    }
    // The store opened by an absolute path, the destination given relative to the working directory.
    await assert.rejects(db.backup(path.relative(process.cwd(), `${base}/src/x`)), code("INVALID_ARGUMENT", /inside/));
    assert.deepEqual(fs.readdirSync(`${base}/src`).sort(), before, "nothing was created in the store");
    // A sibling whose name starts with the store's is outside it.
    const r = await db.backup(`${base}/src-copy`);
    assert.ok(r.version > 0n);
  } finally {
    await db.close();
  }
});

/** A small store in a simulated machine: data in the log, and (with `tables`) in tables too. */
async function simSource(world: SimWorld, tables: boolean): Promise<Database> {
  const db = await open("/src", { adapter: world.process(), namespaces: ["ns"], segmentBytes: 2048, autoCompactBytes: 0 });
  for (let i = 0; i < 12; i++) await db.set("ns", ["k", i], "v".repeat(60) + i);
  if (tables) {
    await db.compact();
    for (let i = 0; i < 5; i++) await db.set("ns", ["late", i], i);
  }
  return db;
}

for (const tables of [false, true]) {
  test(`[sim] a backup killed (or the machine losing power) at every file operation never leaves a destination that opens as a store with other content${tables ? " (tables and log)" : " (log only)"}`, async () => {
    const probe = new SimWorld(500);
    const src0 = await simSource(probe, tables);
    const expected = await dump(src0);
    const startOps = probe.counters.ops;
    await src0.backup("/copy");
    const total = probe.counters.ops - startOps;
    const copy0 = await open("/copy", { adapter: probe.process() });
    assert.deepEqual(await dump(copy0), expected);
    await copy0.close();
    await src0.close();
    let opened = 0, refused = 0, untouched = 0;
    for (let at = 1; at <= total; at++) {
      for (const after of ["kill", "power"] as const) {
        const world = new SimWorld(500);
        const src = await simSource(world, tables);
        world.failAt(world.counters.ops + at, "crash");
        await src.backup("/copy").catch(() => {});
        const where = `crash at backup operation ${at} (${world.trace[world.trace.length - 1] ?? "?"}), then ${after === "kill" ? "the process gone" : "power loss"}`;
        const next = after === "kill" ? world.processCrash() : world.powerLoss();
        const p = next.process();
        if (!p.stat("/copy") || p.readdir("/copy").length === 0) {
          untouched++; // the backup had not begun to write: nothing there to mistake for a store
          continue;
        }
        let copy: Database;
        try {
          copy = await open("/copy", { adapter: p });
        } catch (e) {
          assert.ok(e instanceof TxtDbError, `${where}: refused with a TxtDbError (${String(e)})`);
          refused++;
          continue;
        }
        try {
          assert.deepEqual(await dump(copy), expected, `${where}: a destination that opens holds the whole copy`);
          opened++;
        } finally {
          await copy.close();
        }
      }
    }
    assert.ok(opened > 0 && refused > 0, `both outcomes were seen (opened ${opened}, refused ${refused}, untouched ${untouched})`);
  });
}

/** A format-2 store with tables, deletes and commits in the log, in a simulated machine. */
async function simTablesStore(world: SimWorld): Promise<unknown[]> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["ns", "gone"], segmentBytes: 2048, autoCompactBytes: 0 });
  for (let i = 0; i < 15; i++) await db.set("ns", ["k", i], "w".repeat(50) + i);
  await db.set("gone", "x", 1);
  for (let i = 0; i < 15; i += 4) await db.delete("ns", ["k", i]);
  await db.compact();
  await db.dropNamespace("gone");
  for (let i = 0; i < 4; i++) await db.set("ns", ["tail", i], i);
  const expected = await dump(db);
  await db.close();
  return expected;
}

test(`${R} two backups into one destination at once: one makes the copy, the other is INVALID_ARGUMENT and removes nothing (a failing backup used to delete the finished one)`, async () => {
  const dir = tempDir("bka");
  const db = await open(dir, { namespaces: ["ns"] });
  for (let i = 0; i < 100; i++) await db.set("ns", i, { i });
  await db.compact();
  await db.set("ns", "tail", 1);
  const dest = `${tempDir("bka-dest")}/copy`;
  const outcomes = await Promise.allSettled([db.backup(dest), db.backup(dest)]);
  const ok = outcomes.filter((o) => o.status === "fulfilled");
  const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
  assert.equal(ok.length, 1, `one backup is made: ${failed.map((f) => String(f.reason)).join("; ")}`);
  assert.equal(failed.length, 1);
  assert.ok(failed[0]!.reason instanceof TxtDbError && failed[0]!.reason.code === "INVALID_ARGUMENT", String(failed[0]!.reason));
  // A file another program put there is not the failed backup's to delete either.
  const other = `${tempDir("bka-dest")}/other`;
  fs.mkdirSync(other);
  await db.backup(other);
  fs.writeFileSync(`${other}/notes.txt`, "mine");
  await assert.rejects(db.backup(other), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT");
  assert.equal(fs.readFileSync(`${other}/notes.txt`, "utf8"), "mine");
  await db.close();
  for (const d of [dest, other]) {
    const copy = await open(d, { readOnly: true });
    assert.equal(await copy.get("ns", "tail"), 1, `${d} holds the whole store`);
    assert.deepEqual(await copy.get("ns", 99), { i: 99 });
    assert.equal((await copy.check()).ok, true);
    await copy.close();
  }
});

test(`${R} backup() of a store whose MANIFEST was made a sparse 5 GiB file under the open database is CORRUPTION naming it, and copies nothing; with trailing bytes past its frame, the copy holds the frame alone and opens`, async () => {
  const dir = tempDir("bka-manifest");
  const db = await open(dir, { namespaces: ["ns"] });
  try {
    await db.set("ns", "k", 1);
    const manifest = `${dir}/MANIFEST`;
    const original = fs.readFileSync(manifest);
    fs.truncateSync(manifest, 5 * 2 ** 30); // sparse: no disk used
    const dest = `${tempDir("bka-manifest-dest")}/copy`;
    await assert.rejects(db.backup(dest), code("CORRUPTION", /MANIFEST/));
    assert.equal(fs.existsSync(`${dest}/MANIFEST`), false, "no manifest in the destination");
    fs.truncateSync(manifest, original.length + 100); // the frame, then 100 zero bytes
    const dest2 = `${tempDir("bka-manifest-dest")}/copy`;
    await db.backup(dest2);
    assert.deepEqual(fs.readFileSync(`${dest2}/MANIFEST`), original, "the copy's manifest is the frame alone");
    const copy = await open(dest2, { readOnly: true });
    assert.equal(await copy.get("ns", "k"), 1);
    await copy.close();
    fs.writeFileSync(manifest, original);
  } finally {
    await db.close();
  }
});

test("[sim] `txtdb migrate --rollback` cut at every file operation (process killed or power lost), then reopened and run again: the same content every time", async () => {
  const probe = new SimWorld(900);
  const expected = await simTablesStore(probe);
  const startOps = probe.counters.ops;
  const r = await migrateStore(probe.process(), "/db", { rollback: true });
  assert.equal(r.format, 1);
  const total = probe.counters.ops - startOps;
  for (let at = 1; at <= total; at++) {
    for (const after of ["kill", "power"] as const) {
      const world = new SimWorld(900);
      await simTablesStore(world);
      world.failAt(world.counters.ops + at, "crash");
      await migrateStore(world.process(), "/db", { rollback: true }).catch(() => {});
      const where = `crash at rollback operation ${at} (${world.trace[world.trace.length - 1] ?? "?"}), then ${after === "kill" ? "the process gone" : "power loss"}`;
      const next = after === "kill" ? world.processCrash() : world.powerLoss();
      {
        // After a power loss too: the frontier file is not fsynced, but a read-only open with
        // nobody else alive makes a dead writer's records durable and shows them (tail.ts rule 11).
        const ro = await open("/db", { adapter: next.process(), readOnly: true });
        assert.deepEqual(await dump(ro), expected, `${where}: read-only open`);
        await ro.close();
      }
      const again = await migrateStore(next.process(), "/db", { rollback: true });
      assert.equal(again.format, 1, `${where}: the rollback run again ends in format 1`);
      const rw = await open("/db", { adapter: next.process() }); // upgrades again
      assert.deepEqual(await dump(rw), expected, `${where}: after running it again and upgrading`);
      const report = await rw.check();
      assert.ok(report.ok, `${where}: check(): ${JSON.stringify(report.problems)}`);
      await rw.close();
    }
  }
});

test(`${R} backup() of a store whose log has a TSN gap (a sealed segment cut back to its first record, the next segment whole) is CORRUPTION naming the segment, and leaves no copy: never a backup with a hole in its history`, async () => {
  const dir = tempDir("bka-gap");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
  try {
    for (let i = 0; i < 40; i++) await db.set("ns", i, "v".repeat(100) + i);
    const segs = fs.readdirSync(dir).filter((n) => /^seg-\d{10}\.log$/.test(n)).sort();
    assert.ok(segs.length >= 4, `several segments: ${segs}`);
    const bytes = new Uint8Array(fs.readFileSync(`${dir}/${segs[2]}`));
    const firstEnd = 9 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(1, true);
    assert.ok(firstEnd < bytes.length, "the segment holds more than one record");
    fs.truncateSync(`${dir}/${segs[2]}`, firstEnd); // its other records are gone; the next segment goes on after them
    const dest = `${tempDir("bka-gap-dest")}/copy`;
    const e = await db.backup(dest).then(() => undefined, (err: unknown) => err);
    assert.ok(e instanceof TxtDbError, `backup() is refused, not ${String(e)}`);
    assert.equal(e.code, "CORRUPTION", e.message);
    assert.equal((e.details as { file?: string }).file, `${dir}/${segs[3]}`, e.message);
    assert.match(e.message, /missing/);
    assert.equal(fs.existsSync(`${dest}/MANIFEST`), false, "no copy");
  } finally {
    await db.close();
  }
});

test(`${R} backup() of a store whose table has a bit flipped in a data block, its filter or index, is cut short or lost bytes in its middle is CORRUPTION naming the table and the offset, and leaves nothing at the destination: never a backup carrying the damage as good`, async () => {
  const damages: [string, (bytes: Uint8Array) => Uint8Array, RegExp][] = [
    ["a bit flipped in a data block", (b) => (b[Math.floor(b.length / 2)]! ^= 0x10, b), /block checksum/],
    ["a bit flipped in the last bytes before the footer (the index)", (b) => (b[b.length - 80 - 10]! ^= 0x01, b), /index/],
    ["cut short by 10 bytes", (b) => b.subarray(0, b.length - 10), /magic|truncated/],
    ["100 bytes gone from its middle, the footer whole", (b) => new Uint8Array([...b.subarray(0, 1000), ...b.subarray(1100)]), /do not add up|truncated/],
  ];
  for (const [what, damage, reason] of damages) {
    const dir = tempDir("bka-tbl");
    const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
    try {
      // Several blocks of data (4 KiB each), in one table.
      await db.transaction(async (tx) => {
        for (let i = 0; i < 400; i++) tx.set("ns", i, "v".repeat(100) + i);
      });
      await db.compact();
      await db.set("ns", "late", 1);
      const tables = fs.readdirSync(dir).filter((n) => /^tbl-\d{16}\.sst$/.test(n));
      assert.equal(tables.length, 1, `one table: ${tables}`);
      const table = `${dir}/${tables[0]}`;
      const bytes = new Uint8Array(fs.readFileSync(table));
      assert.ok(bytes.length > 40_000, `a table of many blocks: ${bytes.length} bytes`);
      fs.writeFileSync(table, damage(bytes));
      const dest = `${tempDir("bka-tbl-dest")}/copy`;
      const e = await db.backup(dest).then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof TxtDbError, `${what}: backup() is refused, not ${String(e)}`);
      assert.equal(e.code, "CORRUPTION", `${what}: ${e.message}`);
      const d = e.details as { file?: string; offset?: number };
      assert.equal(d.file, table, `${what}: names the table: ${e.message}`);
      assert.equal(typeof d.offset, "number", `${what}: gives the offset`);
      assert.match(e.message, reason, what);
      assert.match(e.message, /Nothing was backed up/, what);
      if (what.includes("data block")) {
        // The offset is the damaged block's: it starts at or before the flipped byte, at most a block before it.
        const flipped = Math.floor(bytes.length / 2);
        assert.ok(d.offset! <= flipped && d.offset! > flipped - 8192, `${what}: offset ${d.offset} is the block holding ${flipped}`);
        assert.match(e.message, new RegExp(`block at ${d.offset}`), what);
      }
      // Nothing open() would take for a store: the destination is gone or empty.
      assert.deepEqual(fs.existsSync(dest) ? fs.readdirSync(dest) : [], [], `${what}: nothing left at the destination`);
    } finally {
      await db.close();
    }
  }
});

/** Every file of `dir` and its bytes (base64), to show nothing was written. */
function filesOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir)) out[name] = fs.statSync(path.join(dir, name)).isDirectory() ? "<dir>" : fs.readFileSync(path.join(dir, name)).toString("base64");
  return out;
}

test(`${R} a backup interrupted before it completed (its BACKUP-UNFINISHED marker left, tables copied, no MANIFEST yet) is refused by writable and read-only opens as an unfinished backup to delete and take again, never called a store whose manifest is lost to restore from a backup; nothing is written`, async () => {
  const src = tempDir("bk-unfinished-src");
  const db = await open(src, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 200; i++) await db.set("ns", i, "v".repeat(100));
  await db.compact();
  const dest = path.join(tempDir("bk-unfinished"), "copy");
  await db.backup(dest);
  await db.close();
  // What a backup killed after copying the tables leaves: the marker, the tables, no manifest.
  fs.writeFileSync(path.join(dest, "BACKUP-UNFINISHED"), "");
  fs.rmSync(path.join(dest, "MANIFEST"));
  const before = filesOf(dest);
  assert.ok(Object.keys(before).some((n) => n.endsWith(".sst")), "the copy holds a table");
  for (const readOnly of [false, true]) {
    await assert.rejects(open(dest, { readOnly }), code("INVALID_ARGUMENT", /holds an unfinished backup .*delete the directory and back up again/), `readOnly: ${readOnly}`);
    assert.deepEqual(filesOf(dest), before, `readOnly: ${readOnly}: nothing was written`);
  }
  // A store that ran (its leases, lock files) whose MANIFEST is lost is judged as damaged,
  // whatever stray marker lies there (review helper-73): never "delete the directory".
  const ran = tempDir("bk-unfinished-store");
  const live = await open(ran, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 50; i++) await live.set("ns", i, "v".repeat(100));
  await live.compact();
  await live.close();
  fs.writeFileSync(path.join(ran, "BACKUP-UNFINISHED"), "");
  fs.rmSync(path.join(ran, "MANIFEST"));
  await assert.rejects(open(ran), code("CORRUPTION", /manifest is lost/));
  // The marker alone (killed right after making it) says the same.
  const bare = path.join(tempDir("bk-unfinished-bare"), "copy");
  fs.mkdirSync(bare);
  fs.writeFileSync(path.join(bare, "BACKUP-UNFINISHED"), "");
  await assert.rejects(open(bare), code("INVALID_ARGUMENT", /unfinished backup/));
  assert.deepEqual(fs.readdirSync(bare), ["BACKUP-UNFINISHED"]);
});

/** The frames of a log segment or checkpoint: where each starts, and where the last ends. */
function frameStarts(bytes: Uint8Array): { starts: number[]; end: number } {
  const starts: number[] = [];
  let at = 0;
  for (let r = parseFrame(bytes, at); r.kind === "ok"; r = parseFrame(bytes, at)) {
    starts.push(at);
    at = r.next;
  }
  return { starts, end: at };
}

/**
 * A format-1 store (its folded data in one checkpoint, as release 0.1.0 wrote it), made by
 * rolling a format-2 store back (`txtdb migrate --rollback`), with commits in the log after
 * its checkpoint; open read-only, which keeps it in format 1 (a writable open upgrades it).
 * Its checkpoint holds several entry frames (about 1 MiB each) and spans more than one read
 * (4 MiB).
 */
async function formatOneStore(dir: string): Promise<{ db: Database; checkpoint: string; version: number }> {
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  await db.transaction((tx) => {
    for (let i = 0; i < 5000; i++) tx.set("ns", ["k", i], "c".repeat(1000) + i);
  });
  await db.compact();
  for (let i = 0; i < 30; i++) await db.set("ns", ["tail", i], i);
  await db.close();
  const rolled = await migrateStore(await defaultPlatform(), dir, { rollback: true });
  assert.equal(rolled.format, 1);
  const manifest = decodeInternal((parseFrame(new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`)), 0) as { body: Uint8Array }).body) as { format: number; checkpoint: string; checkpointTsn: number };
  assert.equal(manifest.format, 1);
  return { db: await open(dir, { readOnly: true }), checkpoint: `${dir}/${manifest.checkpoint}`, version: manifest.checkpointTsn };
}

test(`${R} backup() of a format-1 store whose checkpoint has a bit flipped, is cut short, holds a garbled frame (a good checksum over what is no entry frame), has zeros past its end or is another store's is CORRUPTION naming the checkpoint and the offset, and leaves nothing at the destination: never a backup carrying the damage as good`, async () => {
  const { db, checkpoint, version } = await formatOneStore(tempDir("bka-ckpt"));
  try {
    const original = new Uint8Array(fs.readFileSync(checkpoint));
    const { starts, end } = frameStarts(original);
    assert.equal(end, original.length, "the checkpoint is whole frames");
    assert.ok(starts.length >= 5 && original.length > 4 * 2 ** 20, `a header and several entry frames over 4 MiB: ${starts.length} frames, ${original.length} bytes`);
    const last = starts[starts.length - 1]!;
    const flipAt = starts[2]! + 5000;
    const foreign = fs.readFileSync("tests/fixtures/v1-store/ckpt-0000000000000272-7.dat");
    assert.notEqual(version, 272, "the fixture's checkpoint holds another version than this store's");
    const damages: [string, Uint8Array, number, RegExp][] = [
      ["a bit flipped in its third frame", (() => {
        const b = original.slice();
        b[flipAt]! ^= 0x08;
        return b;
      })(), starts[2]!, /checksum mismatch/],
      ["cut short by 10 bytes", original.subarray(0, original.length - 10), last, /cut short/],
      ["its last frame replaced by one with a good checksum that is no entry frame", new Uint8Array([...original.subarray(0, last), ...frame(encodeInternal([3, "no entries"]))]), last, /malformed entry frame/],
      ["64 KiB of zeros past its end", new Uint8Array([...original, ...new Uint8Array(65536)]), original.length, /zeros/],
      ["another store's checkpoint (of version 272) copied over its name", foreign, 0, new RegExp(`holds version 272 where the manifest says ${version}`)],
    ];
    for (const [what, bytes, offset, reason] of damages) {
      // In place, under the open handle (which loaded the checkpoint when it opened): damage
      // that came later, as a disk's does, is what a backup alone can meet.
      fs.writeFileSync(checkpoint, bytes);
      const dest = `${tempDir("bka-ckpt-dest")}/copy`;
      const e = await db.backup(dest).then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof TxtDbError, `${what}: backup() is refused, not ${String(e)}`);
      assert.equal(e.code, "CORRUPTION", `${what}: ${e.message}`);
      assert.deepEqual(e.details, { file: checkpoint, offset }, `${what}: names the checkpoint and the offset: ${e.message}`);
      assert.match(e.message, reason, what);
      assert.match(e.message, /Nothing was backed up/, what);
      // Nothing open() would take for a store: the destination is empty (the directory the backup made stays, as for a table).
      assert.deepEqual(fs.existsSync(dest) ? fs.readdirSync(dest) : [], [], `${what}: nothing left at the destination`);
    }
    // Whole again, it is copied as it is, and the copy holds the store.
    fs.writeFileSync(checkpoint, original);
    const dest = `${tempDir("bka-ckpt-dest")}/copy`;
    const r = await db.backup(dest);
    assert.equal(r.version, BigInt(version) + 30n);
    assert.deepEqual(new Uint8Array(fs.readFileSync(`${dest}/${path.basename(checkpoint)}`)), original, "the checkpoint's copy is the same bytes");
    const copy = await open(dest, { readOnly: true });
    try {
      assert.deepEqual(await dump(copy), await dump(db));
      assert.equal((await copy.check()).ok, true);
    } finally {
      await copy.close();
    }
  } finally {
    await db.close();
  }
});

/**
 * `base` with every read of a log segment or a checkpoint seen while `reads.armed` is set:
 * a read of bytes read before (by any handle) gets one of them flipped, as a disk that
 * misreads, or a file changed between two reads, would give; `reads.again` counts them.
 */
function misreadingTwice(base: Platform): { adapter: Platform; reads: { armed: boolean; again: string[] } } {
  const reads = { armed: false, again: [] as string[] };
  const seen = new Map<string, [number, number][]>(); // path: the ranges read
  const wrapRead = (h: FileHandle) => (buf: Uint8Array, position: number): number => {
    const n = h.read(buf, position);
    if (!reads.armed || !/\.(log|dat)$/.test(h.path) || n === 0) return n;
    const ranges = seen.get(h.path) ?? [];
    seen.set(h.path, ranges);
    for (const [from, to] of ranges) {
      const start = Math.max(from, position), end = Math.min(to, position + n);
      if (start < end) {
        reads.again.push(`${path.basename(h.path)} ${start}..${end}`);
        buf[start - position]! ^= 0x20;
        break;
      }
    }
    ranges.push([position, position + n]);
    return n;
  };
  const adapter = new Proxy(base, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === "open") {
        return (p: string, options?: Parameters<Platform["open"]>[1]) => {
          const h = target.open(p, options);
          return new Proxy(h, {
            get(t, q) {
              if (q === "read") return wrapRead(t);
              const w = Reflect.get(t, q, t) as unknown;
              return typeof w === "function" ? (w as (...a: unknown[]) => unknown).bind(t) : w;
            },
          });
        };
      }
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Platform;
  return { adapter, reads };
}

test(`${R} backup() reads each log segment and a format-1 checkpoint once, copying the very bytes it checks: bytes that read differently a second time (a disk misreading, a file changed between two reads) neither fail a healthy backup nor reach the copy unchecked`, async () => {
  for (const format of [2, 1]) {
    const dir = tempDir("bka-once");
    const { adapter, reads } = misreadingTwice(await defaultPlatform());
    let db: Database;
    if (format === 2) {
      // Tables, and a log of several segments past them (records larger than a chunk among them).
      db = await open(dir, { adapter, namespaces: ["ns"], segmentBytes: 64 * 1024, autoCompactBytes: 0 });
      for (let i = 0; i < 50; i++) await db.set("ns", ["t", i], "t".repeat(100));
      await db.compact();
      for (let i = 0; i < 400; i++) await db.set("ns", ["k", i], "v".repeat(i % 50 === 0 ? 1_500_000 : 700) + i);
    } else {
      await (await formatOneStore(dir)).db.close();
      db = await open(dir, { adapter, readOnly: true });
    }
    try {
      const segments = fs.readdirSync(dir).filter((n) => n.endsWith(".log"));
      assert.ok(format === 1 || segments.length >= 5, `format ${format}: ${segments.length} segments`);
      const expected = await dump(db);
      reads.armed = true;
      const dest = `${tempDir("bka-once-dest")}/copy`;
      await db.backup(dest);
      reads.armed = false;
      const copy = await open(dest, { readOnly: true });
      try {
        const report = await copy.check();
        assert.ok(report.ok, `format ${format}: the copy holds no byte the backup did not check: ${JSON.stringify(report.problems)}`);
        assert.deepEqual(await dump(copy), expected, `format ${format}`);
      } finally {
        await copy.close();
      }
      assert.deepEqual(reads.again, [], `format ${format}: no byte of a segment or checkpoint was read twice`);
    } finally {
      await db.close();
    }
  }
});

test(`${R} backup() of a store whose segment has a bit flipped in a record (within a 1 MiB read, across two reads, in a record larger than a read), zeros over a record, or is cut inside a record is CORRUPTION naming the segment and the offset, and leaves nothing at the destination`, async () => {
  const dir = tempDir("bka-seg");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  try {
    for (let i = 0; i < 2000; i++) await db.set("ns", ["k", i], "v".repeat(700) + i);
    await db.set("ns", "large", "L".repeat(1_500_000));
    for (let i = 0; i < 10; i++) await db.set("ns", ["after", i], i);
    const segs = fs.readdirSync(dir).filter((n) => n.endsWith(".log"));
    assert.equal(segs.length, 1, `one segment: ${segs}`);
    const segment = `${dir}/${segs[0]}`;
    const original = new Uint8Array(fs.readFileSync(segment));
    const { starts, end } = frameStarts(original);
    const MiB = 2 ** 20;
    const across = starts.findIndex((s, i) => s < MiB && (starts[i + 1] ?? end) > MiB);
    assert.ok(across > 0, "a record lies across the first 1 MiB boundary");
    const large = starts.findIndex((s, i) => (starts[i + 1] ?? end) - s > MiB);
    assert.ok(large > across, "the large record comes later");
    const flipped = (at: number) => {
      const b = original.slice();
      b[at]! ^= 0x04;
      return b;
    };
    const damages: [string, Uint8Array, number, RegExp][] = [
      ["a bit flipped in a record within the first read", flipped(starts[100]! + 50), starts[100]!, /checksum mismatch/],
      ["a bit flipped in a record across two reads, after the boundary", flipped(MiB + 3), starts[across]!, /checksum mismatch/],
      ["a bit flipped in the record larger than a read", flipped(starts[large]! + MiB + 10), starts[large]!, /checksum mismatch/],
      ["zeros over a record", (() => {
        const b = original.slice();
        b.fill(0, starts[500]!, starts[501]!);
        return b;
      })(), starts[500]!, /zeros where records should be/],
      ["cut inside the large record", original.subarray(0, starts[large]! + 1000), starts[large]! + 1000, /ends at/],
    ];
    for (const [what, bytes, offset, reason] of damages) {
      fs.writeFileSync(segment, bytes);
      const dest = `${tempDir("bka-seg-dest")}/copy`;
      const e = await db.backup(dest).then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof TxtDbError, `${what}: backup() is refused, not ${String(e)}`);
      assert.equal(e.code, "CORRUPTION", `${what}: ${e.message}`);
      assert.deepEqual(e.details, { file: segment, offset }, `${what}: names the segment and the offset: ${e.message}`);
      assert.match(e.message, reason, what);
      assert.match(e.message, /nothing was backed up/, what);
      assert.deepEqual(fs.existsSync(dest) ? fs.readdirSync(dest) : [], [], `${what}: nothing left at the destination`);
    }
    fs.writeFileSync(segment, original);
    const dest = `${tempDir("bka-seg-dest")}/copy`;
    await db.backup(dest);
    assert.deepEqual(new Uint8Array(fs.readFileSync(`${dest}/${segs[0]}`)), original.subarray(0, end), "the copy is the segment up to the frontier");
  } finally {
    await db.close();
  }
});
