/**
 * The on-disk tables, the manifest, compaction and the format migration as an attacker or a
 * careless user drives them: table files deleted or replaced (by a symlink, a FIFO, a
 * directory) under a running process, manifests crafted to list a table twice or to name
 * the next table wrongly, and `txtdb migrate` meeting planted files. Every refusal is a
 * TxtDbError with a stable code naming the file, never a port error, a duplicated entry or
 * an overwritten table.
 */
import * as fs from "node:fs";
import { assert, canSpawn, runtime, tempDir, test, waitUntil } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { decodeInternal, defaultPlatform, encodeInternal, frame, migrateStore, parseFrame } from "txtdb/internal";

const R = `[${runtime}]`;
const small = { segmentBytes: 1024, autoCompactBytes: 0 };

/** Makes a FIFO at `path` (Node and Bun legs: the Deno leg may not start processes). */
async function mkfifo(path: string): Promise<void> {
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync("mkfifo", ["-m", "600", path]);
  assert.equal(r.status, 0, `mkfifo ${path}: ${r.stderr}`);
}

/** What may be put where a table (or checkpoint) belongs; a FIFO only where the leg may start mkfifo. */
const PLANTS = ["deleted", "symlink", "directory", ...(canSpawn ? ["fifo"] : [])] as const;
type Plant = (typeof PLANTS)[number];

/** Moves `path` aside (to `path.orig`) and puts `plant` in its place. */
async function plant(path: string, kind: Plant): Promise<void> {
  fs.renameSync(path, `${path}.orig`);
  if (kind === "symlink") fs.symlinkSync(`${path}.orig`, path);
  if (kind === "directory") fs.mkdirSync(path);
  if (kind === "fifo") await mkfifo(path);
}

/** Puts the original file back. */
function restore(path: string): void {
  fs.rmSync(path, { recursive: true, force: true });
  fs.renameSync(`${path}.orig`, path);
}

const tablesOf = (dir: string) => fs.readdirSync(dir).filter((f) => /^tbl-\d{16}\.sst$/.test(f)).sort();

function readManifest(dir: string): Record<string, unknown> {
  const r = parseFrame(new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`)), 0);
  assert.equal(r.kind, "ok");
  return decodeInternal((r as { body: Uint8Array }).body) as Record<string, unknown>;
}

function writeManifest(dir: string, m: Record<string, unknown>): void {
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal(m)));
}

/** The code and details of what `f` rejects with; a non-TxtDbError fails the test, naming it. */
async function refusal(what: string, f: () => Promise<unknown>): Promise<{ code: string; file: string; message: string } | undefined> {
  try {
    await f();
    return undefined;
  } catch (e) {
    assert.ok(e instanceof TxtDbError, `${what}: not a TxtDbError: ${String(e)}`);
    return { code: e.code, file: String((e.details as { file?: unknown } | undefined)?.file), message: e.message };
  }
}

async function listAll(db: Database, reverse = false): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const e of db.list("ns", { prefix: [] }, { reverse })) out.push(e.key);
  return out;
}

test(`${R} a table deleted, or replaced by a symlink, FIFO or directory, under a running process: get, list both ways, count, compact() and check() fail with CORRUPTION naming it (not a port error); put back, it reads again`, async () => {
  for (const kind of PLANTS) {
    const dir = tempDir("tbl-gone");
    const reader = await open(dir, { namespaces: ["ns"], ...small });
    const writer = await open(dir, small);
    try {
      for (let i = 0; i < 100; i++) await writer.set("ns", i, "v" + i);
      assert.equal(await reader.get("ns", 1), "v1"); // the reader follows the manifest before the compaction
      await writer.compact();
      const [table] = tablesOf(dir);
      assert.ok(table, "the compaction wrote a table");
      await plant(`${dir}/${table}`, kind);
      await writer.set("ns", "after", 1); // the reader learns of the new manifest at its next read
      const reads: [string, () => Promise<unknown>][] = [
        ["get", () => reader.get("ns", 5)],
        ["list", () => listAll(reader)],
        ["reverse list", () => listAll(reader, true)],
        ["count", () => reader.count("ns", {})],
        ["compact", () => reader.compact()],
        ["check", () => reader.check()],
      ];
      for (const [what, f] of reads) {
        const r = await refusal(`${kind}: ${what}`, f);
        if (what === "check" && r === undefined) continue; // a report is fine too (checked below)
        assert.ok(r, `${kind}: ${what} succeeded without the table`);
        assert.equal(r.code, "CORRUPTION", `${kind}: ${what}: ${r.message}`);
        assert.ok(r.file.endsWith(table!), `${kind}: ${what} names ${r.file}: ${r.message}`);
      }
      restore(`${dir}/${table}`);
      assert.equal(await reader.get("ns", 5), "v5", `${kind}: the table is back`);
      assert.equal((await listAll(reader, true)).length, 101);
      assert.equal((await reader.check()).ok, true);
    } finally {
      await reader.close();
      await writer.close();
    }
  }
});

/** A store with one level-1 table (and more in the log), closed. */
async function storeWithTable(label: string): Promise<string> {
  const dir = tempDir(label);
  const db = await open(dir, { namespaces: ["ns"], ...small });
  for (let i = 0; i < 200; i++) await db.set("ns", i, "v" + i);
  await db.compact();
  for (let i = 0; i < 50; i++) await db.set("ns", i, "w" + i);
  await db.close();
  return dir;
}

test(`${R} a manifest listing a table twice (in one level, in level 0, in two levels) is CORRUPTION at open and in check(), never entries or counts read twice`, async () => {
  const variants: [string, (t: Record<string, unknown>) => Record<string, unknown>[]][] = [
    ["twice in level 1", (t) => [t, t]],
    ["twice in level 0", (t) => [{ ...t, level: 0 }, { ...t, level: 0 }]],
    ["in level 0 and level 1", (t) => [{ ...t, level: 0 }, t]],
  ];
  for (const [name, tables] of variants) {
    const dir = await storeWithTable("dup");
    const m = readManifest(dir);
    const [t] = m.tables as Record<string, unknown>[];
    // A process that had the store open before the manifest was crafted.
    const running = await open(dir, { readOnly: true });
    writeManifest(dir, { ...m, tables: tables(t!) });
    for (const readOnly of [false, true]) {
      const r = await refusal(name, () => open(dir, { readOnly }).then((db) => db.close()));
      assert.equal(r?.code, "CORRUPTION", `${name}: open (readOnly ${readOnly}): ${r?.message}`);
      assert.ok(r!.file.endsWith("MANIFEST") && /twice/.test(r!.message), `${name}: ${r!.file}: ${r!.message}`);
    }
    const report = await running.check();
    assert.equal(report.ok, false, `${name}: check() of the crafted manifest`);
    assert.ok(report.problems.some((p) => p.file.endsWith("MANIFEST") && /twice/.test(p.message)), `${name}: ${JSON.stringify(report.problems)}`);
    await running.close();
    writeManifest(dir, m);
    const db = await open(dir);
    assert.equal((await listAll(db)).length, 200);
    assert.equal(await db.count("ns", {}), 200);
    await db.close();
  }
});

test(`${R} a manifest whose next table number is below a table it names, or not one a table name can hold, is CORRUPTION: no compaction overwrites a named table or writes a file no open accepts`, async () => {
  const variants: [string, unknown][] = [
    ["a table it names (1)", 1],
    ["zero", 0],
    ["negative", -5],
    ["a fraction", 2.5],
    ["past 16 digits", 1e17],
    ["not a number", "7"],
  ];
  for (const [name, nextTable] of variants) {
    const dir = await storeWithTable("nexttbl");
    const m = readManifest(dir);
    const before = tablesOf(dir).map((t) => [t, fs.readFileSync(`${dir}/${t}`).toString("base64")]);
    writeManifest(dir, { ...m, nextTable });
    const r = await refusal(name, async () => {
      const db = await open(dir);
      try {
        await db.set("ns", "x", 1);
        await db.compact();
      } finally {
        await db.close();
      }
    });
    assert.equal(r?.code, "CORRUPTION", `${name}: ${r?.message}`);
    assert.ok(r!.file.endsWith("MANIFEST") && /next table/.test(r!.message), `${name}: ${r!.message}`);
    assert.deepEqual(tablesOf(dir).map((t) => [t, fs.readFileSync(`${dir}/${t}`).toString("base64")]), before, `${name}: the tables are as they were`);
    writeManifest(dir, m);
    const db = await open(dir);
    assert.equal((await db.check()).ok, true);
    await db.close();
  }
});

test(`${R} \`txtdb migrate\` and \`migrate --rollback\` meeting a symlink, FIFO or directory where a table or the checkpoint belongs fail with CORRUPTION naming it, not a port error, and change nothing`, async () => {
  const platform = await defaultPlatform();
  for (const kind of PLANTS.filter((k) => k !== "deleted")) {
    // Rollback: a table planted.
    const dir = await storeWithTable("mig-plant");
    const [table] = tablesOf(dir);
    await plant(`${dir}/${table}`, kind);
    const manifest = fs.readFileSync(`${dir}/MANIFEST`);
    const r = await refusal(`rollback, ${kind}`, () => migrateStore(platform, dir, { rollback: true }));
    assert.equal(r?.code, "CORRUPTION", `rollback, ${kind}: ${r?.message}`);
    assert.ok(r!.file.endsWith(table!), `rollback, ${kind}: names ${r!.file}`);
    assert.deepEqual(fs.readFileSync(`${dir}/MANIFEST`), manifest, "the manifest is unchanged");
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith("ckpt-")), [], "no checkpoint was written");
    restore(`${dir}/${table}`);
    // Upgrade: the checkpoint of the rolled-back store planted.
    assert.equal((await migrateStore(platform, dir, { rollback: true })).format, 1);
    const [ckpt] = fs.readdirSync(dir).filter((f) => /^ckpt-.*\.dat$/.test(f));
    assert.ok(ckpt, "the rollback wrote a checkpoint");
    await plant(`${dir}/${ckpt}`, kind);
    const u = await refusal(`upgrade, ${kind}`, () => migrateStore(platform, dir));
    assert.equal(u?.code, "CORRUPTION", `upgrade, ${kind}: ${u?.message}`);
    assert.ok(u!.file.endsWith(ckpt!), `upgrade, ${kind}: names ${u!.file}`);
    assert.equal(readManifest(dir).format, 1, "still format 1");
    restore(`${dir}/${ckpt}`);
    assert.equal((await migrateStore(platform, dir)).format, 2);
    const db = await open(dir);
    assert.equal(await db.get("ns", 10), "w10");
    assert.equal(await db.get("ns", 150), "v150");
    await db.close();
  }
});

test(`${R} a manifest whose namespace bindings are malformed (an id that is not a namespace id, a name that is not a string, a name or id bound twice, the next id not past them) is CORRUPTION at open, in check() and for a running process: never a TypeError, a failed assertion or one namespace read as another`, async () => {
  const variants: [string, Record<string, unknown>][] = [
    ["an id as a string", { bindings: ["ns", "1", "b", 2] }],
    ["a fractional id", { bindings: ["ns", 1.5, "b", 2] }],
    ["a negative id", { bindings: ["ns", -1, "b", 2] }],
    ["an id past 2^32 - 1", { bindings: ["ns", 2 ** 40, "b", 2], nextNsId: 2 ** 40 + 1 }],
    ["a name that is an object", { bindings: [{}, 1, "b", 2] }],
    ["an empty name", { bindings: ["", 1, "b", 2] }],
    ["one name bound twice", { bindings: ["ns", 1, "ns", 2] }],
    ["one id bound to two names", { bindings: ["ns", 1, "b", 1] }],
    ["the next id not past the bound ones", { nextNsId: 2 }],
    ["the next id not a number", { nextNsId: "9" }],
  ];
  for (const [name, change] of variants) {
    const dir = tempDir("bindings");
    const db = await open(dir, { namespaces: ["ns", "b"], ...small });
    for (let i = 0; i < 50; i++) await db.set("ns", i, "v" + i);
    await db.compact();
    const running = await open(dir, small);
    assert.equal(await running.get("ns", 3), "v3");
    await db.close();
    const m = readManifest(dir);
    assert.deepEqual(m.bindings, ["ns", 1, "b", 2], "the store binds ns to 1 and b to 2");
    assert.equal(m.nextNsId, 3);
    writeManifest(dir, { ...m, ...change });
    for (const readOnly of [false, true]) {
      const r = await refusal(name, () => open(dir, { readOnly }).then((d) => d.close()));
      assert.equal(r?.code, "CORRUPTION", `${name}: open (readOnly ${readOnly}): ${r?.message}`);
      assert.ok(r!.file.endsWith("MANIFEST") && /namespace/.test(r!.message), `${name}: ${r!.message}`);
    }
    // A running process meets the crafted manifest when it compacts (it reads the manifest on disk).
    const c = await refusal(`${name}: compact`, async () => {
      await running.set("ns", "x", 1);
      await running.compact();
    });
    assert.equal(c?.code, "CORRUPTION", `${name}: compact: ${c?.message}`);
    const report = await running.check();
    assert.ok(!report.ok && report.problems.some((p) => p.file.endsWith("MANIFEST")), `${name}: check(): ${JSON.stringify(report.problems)}`);
    await running.close();
    writeManifest(dir, m);
    const back = await open(dir);
    assert.equal(await back.get("ns", 3), "v3");
    await back.close();
  }
});

test(`${R} a manifest whose level 0 is not newest first, or whose deeper level holds tables with overlapping keys, is CORRUPTION at open and in check(), never an older version read as the newest`, async () => {
  const dir = tempDir("levels");
  // Automatic compaction only folds: three folds leave three level-0 tables, each holding every key.
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 1024, durability: "none" });
  for (let round = 0; round < 3; round++) {
    const before = db.stats().compactions;
    for (let i = 0; i < 40; i++) await db.set("ns", i, "r" + round);
    assert.ok((await waitUntil(() => db.stats().compactions > before, 10_000)) >= 0, `round ${round} started an automatic compaction`);
  }
  await db.close();
  const m = readManifest(dir);
  const tables = m.tables as { name: string; level: number }[];
  const l0 = tables.filter((t) => t.level === 0);
  assert.ok(l0.length >= 2, `several level-0 tables: ${JSON.stringify(tables.map((t) => `${t.level}:${t.name}`))}`);
  const check = await open(dir);
  const newest = await check.get("ns", 5);
  await check.close();
  const variants: [string, unknown[]][] = [
    ["level 0 oldest first", [...l0].reverse().concat(tables.filter((t) => t.level > 0))],
    ["level-0 tables listed as one level-1 run", tables.map((t) => ({ ...t, level: t.level === 0 ? 1 : t.level + 1 }))],
  ];
  for (const [name, crafted] of variants) {
    const running = await open(dir);
    writeManifest(dir, { ...m, tables: crafted });
    const r = await refusal(name, async () => {
      const d = await open(dir, { readOnly: true });
      try {
        return await d.get("ns", 5);
      } finally {
        await d.close();
      }
    });
    assert.equal(r?.code, "CORRUPTION", `${name}: open: ${r?.message ?? "it read " + newest}`);
    assert.ok(r!.file.endsWith("MANIFEST") && /level/.test(r!.message), `${name}: ${r!.file}: ${r!.message}`);
    const report = await running.check();
    assert.ok(!report.ok && report.problems.some((p) => p.file.endsWith("MANIFEST") && /level/.test(p.message)), `${name}: check(): ${JSON.stringify(report.problems)}`);
    await running.close();
    writeManifest(dir, m);
  }
  const back = await open(dir);
  assert.equal(await back.get("ns", 5), newest);
  assert.equal(newest, "r2");
  await back.close();
});

/** 20 GiB: far past anything txtdb reads whole, and no disk (the files are sparse). */
const HUGE_BYTES = 20 * 2 ** 30;

/** A store of one commit, closed, and its durable end (in the frontier file) in its one segment. */
async function oneCommitStore(label: string): Promise<{ dir: string; end: number }> {
  const dir = tempDir(label);
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", "v");
  await db.close();
  const frontier = fs.readFileSync(`${dir}/frontier`);
  return { dir, end: new DataView(frontier.buffer, frontier.byteOffset).getFloat64(24, true) };
}

/** Every file of `dir` with its size and modification time (a 20 GiB sparse file is not read to compare). */
function fileStates(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir)) {
    if (name === "writer.lock" || name === "leases") continue; // stamped by every open, and leases come and go
    const st = fs.statSync(`${dir}/${name}`);
    out[name] = `${st.size}@${st.mtimeMs}`;
  }
  return out;
}

test(`${R} a MANIFEST larger than any txtdb writes (a sparse file of 20 GiB) is CORRUPTION naming it at every open and in \`txtdb migrate\`, never an allocation error; nothing changes`, async () => {
  const dir = tempDir("manifest-huge");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "k", "v");
  await db.close();
  fs.truncateSync(`${dir}/MANIFEST`, HUGE_BYTES);
  const before = fileStates(dir);
  const platform = await defaultPlatform();
  for (const [what, f] of [
    ["open()", () => open(dir)],
    ["read-only open()", () => open(dir, { readOnly: true })],
    ["migrate", () => migrateStore(platform, dir, {})],
  ] as const) {
    const r = await refusal(what, f);
    assert.equal(r?.code, "CORRUPTION", `${what}: ${r?.message}`);
    assert.equal(r?.file, `${dir}/MANIFEST`, what);
    assert.match(r!.message, /more than any manifest txtdb writes/, what);
  }
  assert.deepEqual(fileStates(dir), before, "nothing changed");
  // The largest size txtdb could write is read only as far as its header says (zeros: none).
  fs.truncateSync(`${dir}/MANIFEST`, 0);
  fs.truncateSync(`${dir}/MANIFEST`, 9 + 2 ** 30);
  const r = await refusal("open() of a 1 GiB manifest of zeros", () => open(dir, { readOnly: true }));
  assert.equal(r?.code, "CORRUPTION", r?.message);
});

test(`${R} a log segment extended to 20 GiB after a bad frame past the durable end is CORRUPTION naming it at a writable open (not a torn tail cut, nor an allocation error); a read-only open reads what was published`, async () => {
  const { dir, end } = await oneCommitStore("segment-huge");
  const seg = `${dir}/seg-0000000001.log`;
  const fd = fs.openSync(seg, "r+");
  fs.writeSync(fd, new Uint8Array([0xc7, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), 0, 9, end); // a frame of impossible length
  fs.closeSync(fd);
  fs.truncateSync(seg, HUGE_BYTES);
  const r = await refusal("open()", () => open(dir));
  assert.equal(r?.code, "CORRUPTION", r?.message);
  assert.equal(r?.file, seg);
  assert.equal(fs.statSync(seg).size, HUGE_BYTES, "nothing was cut");
  const reader = await open(dir, { readOnly: true });
  try {
    assert.equal(await reader.get("ns", "k"), "v");
  } finally {
    await reader.close();
  }
});

test(`${R} a format-1 checkpoint extended to 20 GiB is CORRUPTION naming it at a read-only and a writable open (the upgrade), never an allocation error`, async () => {
  const dir = tempDir("ckpt-huge");
  const db = await open(dir, { namespaces: ["ns"] });
  for (let i = 0; i < 3; i++) await db.set("ns", i, "v" + i);
  await db.compact();
  await db.close();
  await migrateStore(await defaultPlatform(), dir, { rollback: true });
  const ckpt = fs.readdirSync(dir).find((n) => n.startsWith("ckpt-"))!;
  const reader = await open(dir, { readOnly: true });
  assert.equal(await reader.get("ns", 1), "v1", "the format-1 store reads");
  await reader.close();
  fs.truncateSync(`${dir}/${ckpt}`, HUGE_BYTES);
  for (const readOnly of [true, false]) {
    const r = await refusal(`open({ readOnly: ${readOnly} })`, () => open(dir, { readOnly }));
    assert.equal(r?.code, "CORRUPTION", r?.message);
    assert.equal(r?.file, `${dir}/${ckpt}`);
  }
  assert.equal(fs.statSync(`${dir}/${ckpt}`).size, HUGE_BYTES, "nothing was cut");
});

test(`${R} compact() with a stray higher-numbered segment file in the directory (pre-created, or left by hand) folds only sealed segments: the segment writers append to is never folded or deleted, and every commit after it survives a reopen`, async () => {
  const dir = tempDir("compact-stray-seg");
  const db = await open(dir, { namespaces: ["ns"], ...small });
  try {
    for (let i = 0; i < 20; i++) await db.set("ns", i, "v".repeat(100) + i);
    const stray = `${dir}/seg-0000000099.log`;
    fs.writeFileSync(stray, new Uint8Array(0));
    await db.compact();
    for (let i = 20; i < 30; i++) await db.set("ns", i, "w" + i);
    assert.equal(await db.get("ns", 25), "w25");
    fs.rmSync(stray);
  } finally {
    await db.close();
  }
  const again = await open(dir, { readOnly: true });
  try {
    for (let i = 0; i < 30; i++) assert.equal(await again.get("ns", i), i < 20 ? "v".repeat(100) + i : "w" + i, `key ${i} after a reopen`);
    const report = await again.check();
    assert.ok(report.ok, JSON.stringify(report.problems));
  } finally {
    await again.close();
  }
});

/** The byte offsets where each whole frame of the log file `path` ends. */
function frameEnds(path: string): number[] {
  const bytes = new Uint8Array(fs.readFileSync(path));
  const out: number[] = [];
  for (let at = 0; ;) {
    const r = parseFrame(bytes, at);
    if (r.kind !== "ok") return out;
    at = r.next;
    out.push(at);
  }
}

test(`${R} a TSN gap in the log (a sealed segment cut back to its first record, the next segment whole) is CORRUPTION naming the segment for a running process catching up, at open, and in check(), never a history served with a hole`, async () => {
  const dir = tempDir("tsn-gap");
  const writer = await open(dir, { namespaces: ["ns"], ...small });
  let reader: Database | undefined;
  try {
    await writer.set("ns", "first", 0);
    reader = await open(dir, { readOnly: true });
    assert.equal(await reader.get("ns", "first"), 0);
    for (let i = 0; i < 40; i++) await writer.set("ns", i, "v".repeat(100) + i);
    const segs = fs.readdirSync(dir).filter((n) => /^seg-\d{10}\.log$/.test(n)).sort();
    assert.ok(segs.length >= 4, `several segments: ${segs}`);
    const cut = `${dir}/${segs[2]}`;
    const ends = frameEnds(cut);
    assert.ok(ends.length > 1, "the segment holds several records");
    fs.truncateSync(cut, ends[0]!); // its other records are gone; the next segment goes on after them
    const gapFile = `${dir}/${segs[3]}`;
    const r = await refusal("a catching-up read", () => reader!.get("ns", 39));
    assert.equal(r?.code, "CORRUPTION", r?.message);
    assert.equal(r?.file, gapFile, r?.message);
    assert.match(r!.message, /missing/);
    const report = await writer.check();
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => p.file === gapFile && /missing/.test(p.message)), JSON.stringify(report.problems));
  } finally {
    await reader?.close();
    await writer.close();
  }
  for (const readOnly of [true, false]) {
    const r = await refusal(`open({ readOnly: ${readOnly} })`, () => open(dir, { readOnly }));
    assert.equal(r?.code, "CORRUPTION", r?.message);
  }
});

test(`${R} a sync-failure mark scribbled over (garbage bytes in the frontier file) refuses commits with CORRUPTION naming the frontier file and saying what to do; a writable reopen verifies the tail and the store goes on`, async () => {
  const dir = tempDir("sync-mark-garbled");
  const db = await open(dir, { namespaces: ["ns"] });
  try {
    await db.set("ns", "a", 1);
    const frontier = `${dir}/frontier`;
    assert.ok(fs.statSync(frontier).size >= 112, "the frontier file holds the tail state and the mark");
    const fd = fs.openSync(frontier, "r+");
    fs.writeSync(fd, new Uint8Array(8).fill(0x55), 0, 8, 104); // the mark's 8 bytes: neither zeros nor a pid and its complement
    fs.closeSync(fd);
    const r = await refusal("a commit", () => db.set("ns", "b", 2));
    assert.equal(r?.code, "CORRUPTION", r?.message);
    assert.equal(r?.file, frontier);
    assert.ok(r!.message.includes(`"${frontier}"`), r!.message);
    assert.match(r!.message, /open it writable again/);
    assert.equal(await db.get("ns", "a"), 1, "reads go on");
  } finally {
    await db.close();
  }
  const again = await open(dir);
  try {
    await again.set("ns", "b", 2);
    assert.equal(await again.get("ns", "a"), 1);
    assert.equal(await again.get("ns", "b"), 2);
    assert.ok((await again.check()).ok);
  } finally {
    await again.close();
  }
});

test(`${R} the whole frontier file scribbled over (the frontier and the sync-failure mark): a writable open refuses with CORRUPTION and cuts nothing (it used to cut the log to its start); with the file deleted, an open rebuilds it from the log`, async () => {
  const dir = tempDir("frontier-scribbled");
  const db = await open(dir, { namespaces: ["ns"] });
  for (let i = 0; i < 5; i++) await db.set("ns", ["k", i], i);
  await db.close();
  const seg = `${dir}/seg-0000000001.log`;
  const segBytes = new Uint8Array(fs.readFileSync(seg));
  const frontier = `${dir}/frontier`;
  const fd = fs.openSync(frontier, "r+");
  fs.writeSync(fd, new Uint8Array(36).fill(0x41), 0, 36, 0); // the frontier's checksum fails
  fs.writeSync(fd, new Uint8Array(8).fill(0x42), 0, 8, 104); // the mark: garbled
  fs.closeSync(fd);
  const r = await refusal("a writable open", () => open(dir));
  assert.equal(r?.code, "CORRUPTION", r?.message);
  assert.equal(r?.file, frontier);
  assert.match(r!.message, /Nothing was cut/);
  const ro = await refusal("a read-only open", () => open(dir, { readOnly: true }));
  assert.equal(ro?.code, "CORRUPTION", `a read-only open showed the store as empty: ${ro?.message}`);
  assert.equal(ro?.file, frontier);
  assert.deepEqual(new Uint8Array(fs.readFileSync(seg)), segBytes, "the log is untouched");
  fs.unlinkSync(frontier);
  const again = await open(dir);
  try {
    for (let i = 0; i < 5; i++) assert.equal(await again.get("ns", ["k", i]), i);
    await again.set("ns", "after", 1);
    assert.ok((await again.check()).ok);
  } finally {
    await again.close();
  }
});

test(`${R} the frontier file cut to nothing under an open store (\`: > frontier\`, which takes any sync-failure mark with it): commits are refused with CORRUPTION naming the file, reads go on, and a writable reopen goes on with every commit`, async () => {
  const dir = tempDir("frontier-cut");
  const db = await open(dir, { namespaces: ["ns"] });
  try {
    await db.set("ns", "a", 1);
    const frontier = `${dir}/frontier`;
    fs.truncateSync(frontier, 0);
    const r = await refusal("a commit", () => db.set("ns", "b", 2));
    assert.equal(r?.code, "CORRUPTION", r?.message);
    assert.equal(r?.file, frontier);
    assert.equal(await db.get("ns", "a"), 1, "reads go on");
  } finally {
    await db.close();
  }
  const again = await open(dir);
  try {
    assert.equal(await again.get("ns", "a"), 1);
    assert.equal(await again.get("ns", "b"), undefined, "the refused commit is nowhere");
    await again.set("ns", "b", 2);
    assert.equal(await again.get("ns", "b"), 2);
    assert.ok((await again.check()).ok);
  } finally {
    await again.close();
  }
});

test(`${R} the frontier file deleted under an open store: a writable open meanwhile refuses with CORRUPTION and creates nothing (it used to make a new one, and the two processes missed each other's commits); the open store goes on, and once it is closed an open rebuilds the file from the log`, async () => {
  const dir = tempDir("frontier-deleted");
  const first = await open(dir, { namespaces: ["ns"] });
  try {
    await first.set("ns", "a", 1);
    const frontier = `${dir}/frontier`;
    fs.unlinkSync(frontier);
    const r = await refusal("a writable open", () => open(dir));
    assert.equal(r?.code, "CORRUPTION", r?.message);
    assert.equal(r?.file, frontier);
    assert.ok(!fs.existsSync(frontier), "no new frontier file was made");
    await first.set("ns", "b", 2);
    assert.equal(await first.get("ns", "b"), 2);
  } finally {
    await first.close();
  }
  const again = await open(dir);
  try {
    assert.equal(await again.get("ns", "a"), 1);
    assert.equal(await again.get("ns", "b"), 2);
    assert.ok((await again.check()).ok);
  } finally {
    await again.close();
  }
});

test(`${R} a torn tail past the durable end is cut at a writable open even with a stray higher-numbered segment holding whole records (a copy left by hand, past a missing number): only the segments the log goes on into count, and the stray file is left alone`, async () => {
  const { dir, end } = await oneCommitStore("torn-stray-seg");
  const seg = `${dir}/seg-0000000001.log`;
  const stray = `${dir}/seg-0000000050.log`;
  fs.copyFileSync(seg, stray);
  const strayBytes = new Uint8Array(fs.readFileSync(stray));
  const fd = fs.openSync(seg, "r+");
  fs.writeSync(fd, new Uint8Array([0xc7, 100, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]), 0, 12, end); // a frame of 100 bytes cut short: a torn write
  fs.closeSync(fd);
  fs.truncateSync(seg, end + 12);
  const reopened = await open(dir);
  try {
    assert.equal(await reopened.get("ns", "k"), "v");
    await reopened.set("ns", "k2", "v2");
    assert.equal(await reopened.get("ns", "k2"), "v2");
  } finally {
    await reopened.close();
  }
  assert.ok(fs.existsSync(stray), "the stray file is left alone");
  assert.deepEqual(new Uint8Array(fs.readFileSync(stray)), strayBytes, "unchanged");
});

/** Puts `bytes` under `path` as a copy would that leaves a new file there (a new inode: a process with the old one open reads on). */
function replaceFile(path: string, bytes: Uint8Array): void {
  fs.writeFileSync(`${path}.new`, bytes);
  fs.renameSync(`${path}.new`, path);
}

/** The names of the tables the manifest of `dir` names. */
const namedTables = (dir: string) => (readManifest(dir).tables as { name: string }[]).map((t) => t.name);

test(`${R} an older table of this store copied over a table the manifest names (every checksum in it valid) is CORRUPTION naming it at open, in check() and in backup(), never its old values read as the newest; put back, it reads again`, async () => {
  const dir = tempDir("tbl-older");
  const running = await open(dir, { namespaces: ["ns"], ...small });
  let original: Uint8Array, table: string;
  let other: Database | undefined;
  try {
    await running.transaction(async (tx) => {
      for (let i = 0; i < 200; i++) tx.set("ns", i, "v" + i);
    });
    await running.compact();
    const olderNames = namedTables(dir);
    const older = olderNames.map((n) => new Uint8Array(fs.readFileSync(`${dir}/${n}`)));
    assert.equal(older.length, 1);
    // A process that follows the first compaction's manifest and opens the next one's tables only after the swap.
    other = await open(dir, { readOnly: true });
    assert.equal(await other.get("ns", 5), "v5");
    await running.transaction(async (tx) => {
      for (let i = 0; i < 200; i++) tx.set("ns", i, "w" + i);
    });
    assert.equal(await other.get("ns", 5), "w5"); // its pin moves on, so the next compaction folds the "w" values
    await running.compact();
    const named = namedTables(dir);
    assert.equal(named.length, 1);
    table = named[0]!;
    assert.ok(!olderNames.includes(table), `the second compaction wrote a new table: ${olderNames} then ${table}`);
    original = new Uint8Array(fs.readFileSync(`${dir}/${table}`));
    replaceFile(`${dir}/${table}`, older[0]!);
    await running.set("ns", "after", 1); // the other process reads the new manifest at its next read
    const g = await refusal("get", () => other!.get("ns", 5)); // before the fix: "v5", the older table's value, as the newest
    assert.equal(g?.code, "CORRUPTION", `get() in a process adopting the manifest: ${g?.message}`);
    assert.ok(g!.file.endsWith(table) && /not the table/.test(g!.message), g!.message);
    const report = await running.check();
    assert.equal(report.ok, false, "check() of the swapped table");
    assert.ok(report.problems.some((p) => p.file.endsWith(table) && /not the table/.test(p.message)), JSON.stringify(report.problems));
    const dest = `${tempDir("tbl-older-dest")}/copy`;
    const b = await refusal("backup", () => running.backup(dest));
    assert.equal(b?.code, "CORRUPTION", `backup(): ${b?.message}`);
    assert.ok(b!.file.endsWith(table) && /not the table/.test(b!.message) && /Nothing was backed up/.test(b!.message), b!.message);
    assert.deepEqual(fs.existsSync(dest) ? fs.readdirSync(dest) : [], [], "nothing left at the destination");
  } finally {
    await running.close();
    await other?.close();
  }
  for (const readOnly of [false, true]) {
    const r = await refusal("open", () => open(dir, { readOnly }).then(async (db) => {
      try {
        return await db.get("ns", 5); // before the fix: "v5", the older table's value, read as the newest
      } finally {
        await db.close();
      }
    }));
    assert.equal(r?.code, "CORRUPTION", `open (readOnly ${readOnly}): ${r?.message}`);
    assert.ok(r!.file.endsWith(table) && /not the table/.test(r!.message) && /restore the store from a backup/.test(r!.message), r!.message);
  }
  replaceFile(`${dir}/${table}`, original);
  const db = await open(dir);
  try {
    assert.equal(await db.get("ns", 5), "w5");
    assert.equal((await db.check()).ok, true);
  } finally {
    await db.close();
  }
});

test(`${R} a table of another store with the very same shape (keys, value sizes, versions: same size and footer) copied over a table the manifest names is CORRUPTION in check() and backup(), which read its whole content; a manifest written before tables had an identity reads as before, and a malformed identity is CORRUPTION`, async () => {
  const make = async (dir: string, value: string) => {
    const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
    await db.transaction(async (tx) => {
      for (let i = 0; i < 300; i++) tx.set("ns", i, value + i);
    });
    await db.compact();
    return db;
  };
  const dirA = tempDir("tbl-foreign-a"), dirB = tempDir("tbl-foreign-b");
  const a = await make(dirA, "a");
  await (await make(dirB, "b")).close();
  const [table] = namedTables(dirA);
  assert.deepEqual(namedTables(dirB), [table], "the same table names");
  const theirs = new Uint8Array(fs.readFileSync(`${dirB}/${table}`));
  const ours = new Uint8Array(fs.readFileSync(`${dirA}/${table}`));
  assert.equal(theirs.length, ours.length, "the same size");
  assert.deepEqual(theirs.subarray(theirs.length - 80), ours.subarray(ours.length - 80), "the same footer");
  try {
    replaceFile(`${dirA}/${table}`, theirs);
    const report = await a.check();
    assert.equal(report.ok, false, "check() of the foreign table");
    assert.ok(report.problems.some((p) => p.file.endsWith(table!) && /content checksum/.test(p.message)), JSON.stringify(report.problems));
    const dest = `${tempDir("tbl-foreign-dest")}/copy`;
    const b = await refusal("backup", () => a.backup(dest));
    assert.equal(b?.code, "CORRUPTION", `backup(): ${b?.message}`);
    assert.ok(b!.file.endsWith(table!) && /content checksum/.test(b!.message), b!.message);
    assert.deepEqual(fs.existsSync(dest) ? fs.readdirSync(dest) : [], [], "nothing left at the destination");
  } finally {
    await a.close();
    replaceFile(`${dirA}/${table}`, ours);
  }
  // A manifest as written before tables had an identity: opens and reads as before (nothing to check against).
  const m = readManifest(dirA);
  const tables = m.tables as Record<string, unknown>[];
  assert.ok(tables.every((t) => typeof t.bytes === "number" && typeof t.footerSum === "number" && typeof t.contentSum === "number"), JSON.stringify(tables));
  writeManifest(dirA, { ...m, tables: tables.map(({ bytes: _b, footerSum: _f, contentSum: _c, ...t }) => t) });
  let db = await open(dirA);
  try {
    assert.equal(await db.get("ns", 5), "a5");
    assert.equal((await db.check()).ok, true);
  } finally {
    await db.close();
  }
  // A malformed identity (a size that is not a number, one half missing) is refused, not read as "no check".
  for (const bad of [{ bytes: "12", footerSum: 1 }, { footerSum: 1 }, { bytes: 12, footerSum: 1, contentSum: -1 }]) {
    writeManifest(dirA, { ...m, tables: tables.map(({ bytes: _b, footerSum: _f, contentSum: _c, ...t }) => ({ ...t, ...bad })) });
    const r = await refusal("open", () => open(dirA).then((d) => d.close()));
    assert.equal(r?.code, "CORRUPTION", `${JSON.stringify(bad)}: ${r?.message}`);
    assert.ok(r!.file.endsWith("MANIFEST") && /identity/.test(r!.message), r!.message);
  }
  writeManifest(dirA, m);
  db = await open(dirA);
  try {
    assert.equal(await db.get("ns", 5), "a5");
  } finally {
    await db.close();
  }
});
