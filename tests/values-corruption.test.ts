/**
 * Crafted files (issue 9, item 17): a frame with a valid checksum whose record fields are
 * out of range or of the wrong type is CORRUPTION at open, naming file and offset, never
 * adopted; value bytes that do not decode make reads fail with CORRUPTION naming the
 * namespace and key, and `check()` reports them with file and offset. Frames are built
 * with record.ts's `frame()` (it computes the CRC32C) and written into a real store.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Entry } from "txtdb";
import { binaryToBytes, BlockCache, decodeCommit, decodeInternal, defaultPlatform, encodeInternal, encodeKey, encodeValue, frame, parseFrame, segmentName, TableReader, TableWriter } from "txtdb/internal";
import { foldIntoCheckpoint } from "./valuehelpers.ts";

const R = `[${runtime}]`;

interface Crafted {
  dir: string;
  nsId: number;
  /** The TSN the next record must carry. */
  nextTsn: number;
  /** Segment file and offset where the crafted frame was written. */
  file: string;
  offset: number;
}

/** The published frontier: segment, end offset and TSN (see log.ts). */
function frontier(dir: string): { tsn: number; seg: number; off: number } {
  const b = fs.readFileSync(`${dir}/frontier`);
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  return { tsn: v.getFloat64(0, true), seg: v.getUint32(8, true), off: v.getFloat64(12, true) };
}

/** The id the log gave namespace `name`, read back from its create record. */
function namespaceId(dir: string, seg: number, end: number, name: string): number {
  const data = new Uint8Array(fs.readFileSync(`${dir}/${segmentName(seg)}`)).subarray(0, end);
  for (let at = 0; at < end;) {
    const r = parseFrame(data, at);
    if (r.kind !== "ok") break;
    for (const op of decodeCommit(r.body.slice()).namespaceOps) if (op.op === "create" && op.name === name) return op.id;
    at = r.next;
  }
  throw new Error(`no create record for ${name}`);
}

/** A store holding ns/"a" = 1, closed, with `body(nsId, nextTsn)` framed right past its end. */
async function craft(body: (nsId: number, nextTsn: number) => Uint8Array): Promise<Crafted> {
  const dir = tempDir("crafted");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "a", 1);
  await db.close();
  const fr = frontier(dir);
  const nsId = namespaceId(dir, fr.seg, fr.off, "ns");
  const file = `${dir}/${segmentName(fr.seg)}`;
  const fd = fs.openSync(file, "r+");
  try {
    const f = frame(body(nsId, fr.tsn + 1));
    fs.writeSync(fd, f, 0, f.length, fr.off);
  } finally {
    fs.closeSync(fd);
  }
  return { dir, nsId, nextTsn: fr.tsn + 1, file, offset: fr.off };
}

const key = (k: unknown) => binaryToBytes(encodeKey(k));
const commit = (tsn: unknown, writes: unknown, ops: unknown = null) => encodeInternal([1, tsn, writes, ops]);

test(`${R} open() refuses a crafted record with a bad TSN or wrongly typed fields: CORRUPTION naming file and offset`, async () => {
  const cases: [string, (ns: number, tsn: number) => Uint8Array][] = [
    ["a fractional TSN", (ns, tsn) => commit(tsn + 0.5, [ns, key("x"), encodeValue(1)])],
    ["a negative TSN", (ns) => commit(-5, [ns, key("x"), encodeValue(1)])],
    ["a NaN TSN", (ns) => commit(NaN, [ns, key("x"), encodeValue(1)])],
    ["a TSN past 2^53", (ns) => commit(2 ** 60, [ns, key("x"), encodeValue(1)])],
    ["a TSN of 1e300", (ns) => commit(1e300, [ns, key("x"), encodeValue(1)])],
    ["a string TSN", (ns, tsn) => commit(String(tsn), [ns, key("x"), encodeValue(1)])],
    ["a bigint TSN", (ns, tsn) => commit(BigInt(tsn), [ns, key("x"), encodeValue(1)])],
    ["writes that are not an array", (_ns, tsn) => commit(tsn, "writes")],
    ["a fractional namespace id", (ns, tsn) => commit(tsn, [ns + 0.5, key("x"), encodeValue(1)])],
    ["a negative namespace id", (_ns, tsn) => commit(tsn, [-1, key("x"), encodeValue(1)])],
    ["a key that is a string", (ns, tsn) => commit(tsn, [ns, "x", encodeValue(1)])],
    ["a key with an unknown type tag", (ns, tsn) => commit(tsn, [ns, new Uint8Array([9, 1]), encodeValue(1)])],
    ["a key whose string is not UTF-8", (ns, tsn) => commit(tsn, [ns, new Uint8Array([2, 0xc3, 0]), encodeValue(1)])],
    ["a value that is a number", (ns, tsn) => commit(tsn, [ns, key("x"), 7])],
    ["an empty value", (ns, tsn) => commit(tsn, [ns, key("x"), new Uint8Array(0)])],
    ["a partial write", (ns, tsn) => commit(tsn, [ns, key("x")])],
    ["an unknown namespace operation", (_ns, tsn) => commit(tsn, [], [9, "n", 0])],
    ["a create with a fractional id", (_ns, tsn) => commit(tsn, [], [1, "n", 2.5])],
    ["a rename to a number", (_ns, tsn) => commit(tsn, [], [3, "ns", 5])],
    ["a namespace name that is empty", (_ns, tsn) => commit(tsn, [], [1, "", 9])],
    ["namespace operations that are an empty array", (_ns, tsn) => commit(tsn, [], [])],
    ["a record with an extra field", (ns, tsn) => encodeInternal([1, tsn, [ns, key("x"), encodeValue(1)], null, 0])],
  ];
  for (const [what, body] of cases) {
    const c = await craft(body);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(open(c.dir), (e: unknown) => {
        assert.ok(e instanceof TxtDbError, `${what}: ${String(e)}`);
        assert.equal(e.code, "CORRUPTION", `${what}: ${e.message}`);
        assert.equal(e.details?.file, c.file, what);
        assert.equal(e.details?.offset, c.offset, what);
        return true;
      }, `${what} (open #${attempt + 1}: the damage is reported, never cut off or adopted)`);
    }
  }
});

const GARBAGE: [string, number[]][] = [
  ["a break code", [0xff]],
  ["a reserved token", [0x1c]],
  ["a cut-short array", [0x82, 0x01]],
  ["trailing bytes", [0x01, 0x01]],
  ["a dangling structured-clone reference", [0xd8, 0x1d, 0x00]],
  ["malformed own-entries", [0xd9, 0xb8, 0x79, 0x82, 0x01, 0x02]],
];

async function collect<T>(it: AsyncIterable<Entry<T>>): Promise<Entry<T>[]> {
  const out: Entry<T>[] = [];
  for await (const e of it) out.push(e);
  return out;
}

test(`${R} a value that does not decode fails every read with CORRUPTION naming namespace and key; check() reports file and offset`, async () => {
  for (const [what, bytes] of GARBAGE) {
    const c = await craft((ns, tsn) => commit(tsn, [ns, key(["bad", 1]), new Uint8Array(bytes)]));
    const db = await open(c.dir);
    const corrupt = (e: unknown) => {
      assert.ok(e instanceof TxtDbError, `${what}: ${String(e)}`);
      assert.equal(e.code, "CORRUPTION", `${what}: ${e.message}`);
      assert.match(e.message, /key \["bad",1\] in namespace "ns"/);
      assert.match(e.message, /damaged/);
      assert.deepEqual(e.details, { ns: "ns", key: ["bad", 1] });
      return true;
    };
    await assert.rejects(db.get("ns", ["bad", 1]), corrupt, what);
    await assert.rejects(db.getEntry("ns", ["bad", 1]), corrupt, what);
    await assert.rejects(db.getMany("ns", ["a", ["bad", 1]]), corrupt, what);
    await assert.rejects(collect(db.list("ns", { prefix: ["bad"] })), corrupt, what);
    {
      await using snap = await db.snapshot();
      await assert.rejects(snap.get("ns", ["bad", 1]), corrupt, what);
    }
    await assert.rejects(db.transaction((tx) => tx.get("ns", ["bad", 1])), corrupt, what);
    await assert.rejects(db.transaction((tx) => tx.sum("ns", ["bad", 1], 1)), corrupt, `${what}: sum() reads the stored value at commit`);
    const it = db.watch("ns", { prefix: [] }, { fromVersion: BigInt(c.nextTsn - 1) });
    await assert.rejects(it.next(), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION", `${what}: watch`);
    assert.equal(await db.get("ns", "a"), 1, "other keys still read");
    const report = await db.check();
    assert.equal(report.ok, false, `${what}: check() must not say ok`);
    const p = report.problems.find((x) => /undecodable value/.test(x.message));
    assert.ok(p, `${what}: ${JSON.stringify(report.problems)}`);
    assert.equal(p.file, c.file);
    assert.equal(p.offset, c.offset);
    assert.match(p.message, /\["bad",1\]/);
    await db.close();
  }
});

test(`${R} check() decodes every value in a table and reports the ones that do not decode, with the block's offset`, async () => {
  const dir = tempDir("crafted");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  await db.set("ns", "a", 1);
  await db.set("ns", "b", { ok: true });
  for (let i = 0; i < 200; i++) await db.set("ns", ["pad", i], "x".repeat(40)); // several blocks
  await foldIntoCheckpoint(db);
  await db.close();
  // Rewrite the table with b's value replaced by garbage (checksums recomputed: a valid table).
  const platform = await defaultPlatform();
  const name = fs.readdirSync(dir).find((f) => f.startsWith("tbl-"))!;
  const table = `${dir}/${name}`;
  const reader = TableReader.open(platform.open(table, { readOnly: true }), { cache: new BlockCache(0) });
  const entries = [...reader.entries()].map((e) => ({ ...e, value: e.key === encodeKey("b") ? new Uint8Array([0xff]) : e.value?.slice() ?? null }));
  reader.close();
  fs.unlinkSync(table);
  const file = platform.open(table, { create: true, exclusive: true });
  const writer = new TableWriter(file);
  for (const e of entries) writer.add(e.nsId, e.key, e.tsn, e.value);
  const meta = writer.finish();
  file.datasync();
  file.close();
  // The manifest records the rewritten table as its own, as if txtdb had written the bad value
  // itself: what is tested here is the value, not the table's identity (table.ts rule 9).
  const m = parseFrame(new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`)), 0) as { body: Uint8Array };
  const manifest = decodeInternal(m.body) as { tables: Record<string, unknown>[] };
  for (const t of manifest.tables) if (t.name === name) Object.assign(t, { bytes: meta.fileBytes, footerSum: meta.footerSum, contentSum: meta.contentSum });
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal(manifest)));
  // The block holding b: the one whose range covers it.
  const check = TableReader.open(platform.open(table, { readOnly: true }), { cache: new BlockCache(0) });
  let damagedAt = -1, current = 0;
  for (const e of check.entries({ onBlock: (o) => (current = o) })) if (e.key === encodeKey("b")) damagedAt = current;
  check.close();
  assert.ok(damagedAt >= 0, "found b in the table");
  const again = await open(dir);
  assert.equal(await again.get("ns", "a"), 1);
  await assert.rejects(again.get("ns", "b"), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /"b" in namespace "ns"/.test(e.message));
  // A list page is decoded straight from the table's blocks: the same error, naming the key.
  const listed: unknown[] = [];
  await assert.rejects(
    (async () => { for await (const e of again.list("ns", { start: "a", end: "c" })) listed.push(e.key); })(),
    (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /"b" in namespace "ns"/.test(e.message),
  );
  assert.deepEqual(listed, [], "the page that holds b fails whole");
  assert.deepEqual((await collect(again.list("ns", { prefix: ["pad"] }, { limit: 3 }))).map((e) => e.key), [["pad", 0], ["pad", 1], ["pad", 2]]);
  const report = await again.check();
  assert.equal(report.ok, false);
  const p = report.problems.find((x) => /undecodable value/.test(x.message));
  assert.ok(p, JSON.stringify(report.problems));
  assert.equal(p.file, table);
  assert.equal(p.offset, damagedAt);
  await again.close();
});

test(`${R} a hostile file's __proto__ keys never reach a prototype`, async () => {
  const text = (s: string) => [0x60 + s.length, ...[...s].map((ch) => ch.charCodeAt(0))];
  const polluted = [0xd9, 0xdf, 0xff, 0x83, 0x19, 0xe0, 0x01, 0x81, ...text("polluted"), 0x01];
  const values: [string, number[]][] = [
    ["own-entries", [0xd9, 0xb8, 0x79, 0x82, ...text("__proto__"), ...polluted]],
    ["record", [0xd9, 0xdf, 0xff, 0x83, 0x19, 0xe0, 0x00, 0x81, ...text("__proto__"), ...polluted]],
    ["map", [0xa1, ...text("__proto__"), ...polluted]],
  ];
  const c = await craft((ns, tsn) => commit(tsn, values.flatMap(([name, bytes]) => [ns, key(name), new Uint8Array(bytes)])));
  const db = await open(c.dir);
  const own = (await db.get<Record<string, unknown>>("ns", "own-entries"))!;
  assert.ok(Object.hasOwn(own, "__proto__"));
  assert.equal(Object.getPrototypeOf(own), Object.prototype);
  assert.equal((own as { polluted?: unknown }).polluted, undefined);
  assert.deepEqual(Object.keys((await db.get<object>("ns", "record"))!), ["__proto_"]);
  assert.ok((await db.get("ns", "map")) instanceof Map);
  assert.equal(({} as { polluted?: unknown }).polluted, undefined, "Object.prototype is clean");
  assert.equal((await db.check()).ok, true);
  await db.close();
});

test(`${R} check() does not report a segment past the frontier that a crash left as zeros (a new segment whose first write was torn)`, async () => {
  const dir = tempDir("crafted");
  const db = await open(dir, { namespaces: ["ns"] });
  await db.set("ns", "a", 1);
  await db.close();
  fs.writeFileSync(`${dir}/${segmentName(frontier(dir).seg + 1)}`, new Uint8Array(4096));
  const again = await open(dir);
  assert.deepEqual((await again.check()).problems, []);
  await again.set("ns", "b", 2);
  assert.equal((await again.check()).ok, true);
  assert.deepEqual(await again.getMany("ns", ["a", "b"]), [1, 2]);
  await again.close();
});

test(`${R} a record of a kind a newer release would write is FORMAT, not CORRUPTION: at open, and for a process that reads it while running; a damaged record stays CORRUPTION`, async () => {
  const newer = (kind: number) => (ns: number, tsn: number) => encodeInternal([kind, tsn, [ns, key("x"), encodeValue(1)], null]);
  const c = await craft(newer(3));
  await assert.rejects(open(c.dir), (e: unknown) => {
    assert.ok(e instanceof TxtDbError, String(e));
    assert.equal(e.code, "FORMAT", e.message);
    assert.match(e.message, /record of kind 3.*newer release of txtdb wrote to this store.*Upgrade txtdb/);
    assert.equal(e.details?.file, c.file);
    assert.equal(e.details?.offset, c.offset);
    return true;
  });
  // A kind past any a release would add is damage.
  const junk = await craft(newer(1000));
  await assert.rejects(open(junk.dir), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION");
  // A process already running reads the record once the frontier covers it.
  const dir = tempDir("crafted-running");
  const writer = await open(dir, { namespaces: ["ns"] });
  await writer.set("ns", "a", 1);
  const reader = await open(dir, { readOnly: true });
  assert.equal(await reader.get("ns", "a"), 1);
  await writer.close();
  const fr = frontier(dir);
  const nsId = namespaceId(dir, fr.seg, fr.off, "ns");
  const body = frame(newer(4)(nsId, fr.tsn + 1));
  const fd = fs.openSync(`${dir}/${segmentName(fr.seg)}`, "r+");
  try {
    fs.writeSync(fd, body, 0, body.length, fr.off);
    // Publish it, as the newer writer's sync would: the frontier's end and durable end move past it.
    const f = new Uint8Array(fs.readFileSync(`${dir}/frontier`)).subarray(0, 36);
    const v = new DataView(f.buffer, f.byteOffset, 36);
    v.setFloat64(0, fr.tsn + 1, true);
    v.setFloat64(12, fr.off + body.length, true);
    v.setFloat64(24, fr.off + body.length, true);
    const { crc32c } = await import("txtdb/internal");
    v.setUint32(32, crc32c(f.subarray(0, 32)), true);
    const ffd = fs.openSync(`${dir}/frontier`, "r+");
    fs.writeSync(ffd, f, 0, 36, 0);
    fs.closeSync(ffd);
  } finally {
    fs.closeSync(fd);
  }
  await assert.rejects(reader.get("ns", "a"), (e: unknown) => e instanceof TxtDbError && e.code === "FORMAT" && /record of kind 4/.test(e.message));
  await reader.close();
});
