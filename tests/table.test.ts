/**
 * Storage v2 building blocks: sorted tables (writer, reader, format, corruption), the Bloom
 * filter, the block cache and the merge iterators, checked against simple models with
 * seeded random data, on the simulated platform and on this runtime's real one.
 *
 * Replay a failure with TXTDB_SEED=<seed printed in the failure>.
 */
import { assert, envVar, runtime, tempDir, test } from "./harness.ts";
import { SimWorld } from "txtdb/adapters/sim";
import { defaultPlatform } from "txtdb/internal";
// The storage modules are not exported yet: import them from source (bundled on the Node leg).
import { TableReader, TableWriter, TABLE_FOOTER_BYTES, compareEntries } from "../src/table.ts";
import type { TableEntry, TableVersion, TableWriterOptions } from "../src/table.ts";
import { BloomBuilder, BloomFilter, bloomHash } from "../src/bloom.ts";
import { BlockCache } from "../src/blockcache.ts";
import { mergeForCompaction, mergeVisible } from "../src/merge.ts";
import { TxtDbError } from "../src/errors.ts";
import { xxhash32 as checksumOf } from "../src/xxhash32.ts";
import { PortError } from "../src/port.ts";
import type { FileHandle, Platform } from "../src/port.ts";

const R = `[${runtime}]`;

// ---------------------------------------------------------------------------------------
// Helpers: a seeded generator, random entries, a model

class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

const fixedSeed = envVar("TXTDB_SEED");
/** Runs `body` for `count` seeds (or the one in TXTDB_SEED); a failure names its seed. */
function withSeeds(count: number, body: (rng: Rng, seed: number) => void): void {
  const seeds = fixedSeed !== undefined ? [Number(fixedSeed)] : Array.from({ length: count }, () => Math.floor(Math.random() * 2 ** 31));
  for (const seed of seeds) {
    try {
      body(new Rng(seed), seed);
    } catch (e) {
      if (e instanceof Error) e.message = `[seed ${seed}; replay with TXTDB_SEED=${seed}] ${e.message}`;
      throw e;
    }
  }
}

const PREFIXES = ["", "\x02user\x00", "\x02u\x00\x03", "\x00\xff", "\xff\xff\xff"];
function randomKey(rng: Rng): string {
  let k = PREFIXES[rng.int(PREFIXES.length)]!;
  const n = rng.int(6);
  for (let i = 0; i < n; i++) k += String.fromCharCode(rng.next() < 0.3 ? [0, 1, 0xfe, 0xff][rng.int(4)]! : rng.int(256));
  return k;
}

/** Random entries in table order: keys over a few namespaces, 1..versionsMax versions each. */
function randomEntries(rng: Rng, keyCount: number, opts: { versionsMax?: number; valueBytesMax?: number; tsnMax?: number; namespaces?: number[] } = {}): TableEntry[] {
  const namespaces = opts.namespaces ?? [0, 1, 2, 7, 2 ** 32 - 1];
  const seen = new Set<string>();
  const out: TableEntry[] = [];
  for (let i = 0; i < keyCount; i++) {
    const nsId = namespaces[rng.int(namespaces.length)]!;
    const key = randomKey(rng);
    if (seen.has(`${nsId}/${key}`)) continue;
    seen.add(`${nsId}/${key}`);
    const tsns = new Set<number>();
    const versions = 1 + rng.int(opts.versionsMax ?? 3);
    for (let v = 0; v < versions; v++) tsns.add(1 + rng.int(opts.tsnMax ?? 1000));
    for (const tsn of tsns) {
      const value = rng.next() < 0.15 ? null : rng.bytes(rng.int((opts.valueBytesMax ?? 200) + 1));
      out.push({ nsId, key, tsn, value });
    }
  }
  return out.sort((a, b) => compareEntries(a.nsId, a.key, a.tsn, b.nsId, b.key, b.tsn));
}

/** The model of a point read: the first (newest) version of the key with tsn ≤ snap. */
function modelGet(entries: readonly TableEntry[], nsId: number, key: string, snap: number): TableEntry | undefined {
  return entries.find((e) => e.nsId === nsId && e.key === key && e.tsn <= snap);
}

/** The model of a range read: newest visible version per key in [start, end), tombstones included. */
function modelRange(entries: readonly TableEntry[], nsId: number, start: string | undefined, end: string | undefined, snap: number, reverse: boolean): TableEntry[] {
  const out: TableEntry[] = [];
  for (const e of entries) {
    if (e.nsId !== nsId || (start !== undefined && e.key < start) || (end !== undefined && e.key >= end) || e.tsn > snap) continue;
    if (out.length > 0 && out[out.length - 1]!.key === e.key) continue;
    out.push(e);
  }
  return reverse ? out.reverse() : out;
}

const show = (e: TableEntry | undefined) => (e === undefined ? "none" : `${e.nsId}/${JSON.stringify(e.key)}@${e.tsn}=${e.value === null ? "tombstone" : `${e.value.length}B`}`);
function sameEntry(a: { tsn: number; value: Uint8Array | null } | undefined, b: { tsn: number; value: Uint8Array | null } | undefined, what: string): void {
  assert.equal(a === undefined, b === undefined, `${what}: presence`);
  if (a === undefined || b === undefined) return;
  assert.equal(a.tsn, b.tsn, `${what}: tsn`);
  assert.equal(a.value === null, b.value === null, `${what}: tombstone`);
  if (a.value !== null && b.value !== null) {
    assert.equal(a.value.length, b.value.length, `${what}: value length`);
    for (let i = 0; i < a.value.length; i++) if (a.value[i] !== b.value[i]) assert.fail(`${what}: value byte ${i} differs`);
  }
}
function sameList(a: TableEntry[], b: TableEntry[], what: string): void {
  assert.equal(a.length, b.length, `${what}: ${a.length} entries, expected ${b.length}; first got ${show(a[0])}, expected ${show(b[0])}`);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i]!.nsId, b[i]!.nsId, `${what}[${i}] nsId`);
    assert.equal(a[i]!.key, b[i]!.key, `${what}[${i}] key: ${show(a[i])} vs ${show(b[i])}`);
    sameEntry(a[i], b[i], `${what}[${i}]`);
  }
}

function sim(): { platform: Platform; dir: string } {
  const p = new SimWorld(1).process();
  p.mkdir("/d");
  return { platform: p, dir: "/d" };
}

/** A FileHandle that forwards to `f` except for `read`, which `read` replaces. */
function withRead(f: FileHandle, read: (buf: Uint8Array, position: number) => number): FileHandle {
  return {
    path: f.path, read, write: (d, p) => f.write(d, p), append: (d) => f.append(d), truncate: (n) => f.truncate(n), size: () => f.size(),
    info: () => f.info(), sync: () => f.sync(), datasync: () => f.datasync(), tryLock: (x) => f.tryLock(x), unlock: () => f.unlock(), close: () => f.close(),
  };
}

let fileSerial = 0;
/** Writes `entries` to a new table, syncs and closes it; returns its path and the writer's meta. */
function writeTable(platform: Platform, dir: string, entries: Iterable<TableEntry>, options?: TableWriterOptions) {
  const path = `${dir}/t-${++fileSerial}.tbl`;
  const f = platform.open(path, { create: true, exclusive: true });
  const w = new TableWriter(f, options);
  for (const e of entries) w.add(e.nsId, e.key, e.tsn, e.value);
  const meta = w.finish();
  f.datasync();
  f.close();
  return { path, meta };
}

function openTable(platform: Platform, path: string, cache = new BlockCache(1 << 20)): TableReader {
  return TableReader.open(platform.open(path, { readOnly: true }), { cache });
}

/** Flips the bits of `mask` in the byte at `at` of the file at `path`. */
function flipBits(platform: Platform, path: string, at: number, mask: number): void {
  const f = platform.open(path);
  const b = new Uint8Array(1);
  f.read(b, at);
  f.write(new Uint8Array([b[0]! ^ mask]), at);
  f.close();
}

/** A row maker for scanInto that makes each row its key as a binary string. */
const keyRows = { lastKey: undefined as string | undefined, row: (key: Uint8Array, keyLen: number) => String.fromCharCode(...key.subarray(4, keyLen)) };

/** Checks gets and ranges of `t` against the model at random keys and snapshots. */
function checkAgainstModel(rng: Rng, t: TableReader, entries: readonly TableEntry[], probes: number): void {
  const tsnMax = entries.reduce((m, e) => Math.max(m, e.tsn), 0) + 2;
  for (let i = 0; i < probes; i++) {
    const known = entries.length > 0 && rng.next() < 0.7;
    const e = known ? entries[rng.int(entries.length)]! : undefined;
    const nsId = e?.nsId ?? [0, 1, 2, 3, 7, 2 ** 32 - 1][rng.int(6)]!;
    const key = e?.key ?? randomKey(rng);
    const snap = rng.next() < 0.2 ? Number.MAX_SAFE_INTEGER : rng.int(tsnMax);
    sameEntry(t.get(nsId, key, snap), modelGet(entries, nsId, key, snap), `get(${nsId}, ${JSON.stringify(key)}, ${snap})`);
  }
  for (let i = 0; i < Math.max(1, probes / 10); i++) {
    const nsId = [0, 1, 2, 3, 7, 2 ** 32 - 1][rng.int(6)]!;
    let start: string | undefined = rng.next() < 0.3 ? undefined : randomKey(rng);
    let end: string | undefined = rng.next() < 0.3 ? undefined : randomKey(rng);
    if (start !== undefined && end !== undefined && start > end) [start, end] = [end, start];
    const snap = rng.int(tsnMax);
    for (const reverse of [false, true]) {
      sameList([...t.range(nsId, start, end, snap, { reverse })], modelRange(entries, nsId, start, end, snap, reverse),
        `range(${nsId}, ${JSON.stringify(start)}, ${JSON.stringify(end)}, ${snap}, reverse=${reverse})`);
    }
    assert.equal(t.countRange(nsId, start, end, snap), modelRange(entries, nsId, start, end, snap, false).filter((e) => e.value !== null).length,
      `countRange(${nsId}, ${JSON.stringify(start)}, ${JSON.stringify(end)}, ${snap})`);
    // scanInto: range() less deletes and refused values, appended up to a limit.
    const limit = rng.next() < 0.5 ? Infinity : 1 + rng.int(20);
    const refused = (v: Uint8Array) => v.length % 3 === 1; // stands for expired values
    const out: [string, TableVersion][] = rng.next() < 0.2 ? [["before", { tsn: 0, value: null }]] : [];
    const already = out.length;
    const full = t.scanInto(nsId, start ?? "", end, snap, limit, out, (v) => !refused(v));
    const want = modelRange(entries, nsId, start, end, snap, false).filter((e) => e.value !== null && !refused(e.value)).slice(0, limit - already);
    const what = `scanInto(${nsId}, ${JSON.stringify(start)}, ${JSON.stringify(end)}, ${snap}, limit ${limit})`;
    sameList(out.slice(already).map(([key, v]) => ({ nsId, key, tsn: v.tsn, value: v.value })), want, what);
    assert.equal(full, out.length >= limit, `${what}: says whether it filled the limit`);
  }
  sameList([...t.entries()], [...entries], "entries()");
}

// ---------------------------------------------------------------------------------------
// Round trips

test(`${R} table round trip: random entries read back as the model says (get, range both ways, snapshots), simulated platform`, () => {
  withSeeds(12, (rng) => {
    const { platform, dir } = sim();
    const entries = randomEntries(rng, 50 + rng.int(1500), { versionsMax: 1 + rng.int(6), valueBytesMax: [0, 20, 300, 3000][rng.int(4)]! });
    const blockBytesTarget = [256, 1024, 4096][rng.int(3)]!;
    const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget });
    const caches = [() => new BlockCache(0), () => new BlockCache(1 << 20), () => new BlockCache(3 * (blockBytesTarget + 512), { slotBytes: blockBytesTarget + 512 })];
    const t = openTable(platform, path, caches[rng.int(3)]!());
    // The content checksum is the writer's to give (a reader opened without the manifest's identity reads only the footer); verify() computes it.
    assert.deepEqual(t.meta, { ...meta, contentSum: undefined }, "the reader's meta equals the writer's");
    assert.equal(meta.entryCount, entries.length);
    assert.equal(meta.tombstoneCount, entries.filter((e) => e.value === null).length);
    assert.equal(meta.keyCount, new Set(entries.map((e) => `${e.nsId}/${e.key}`)).size);
    checkAgainstModel(rng, t, entries, 400);
    assert.deepEqual(t.verify(), { blocks: meta.blockCount, entries: entries.length, bytes: meta.fileBytes, contentSum: meta.contentSum });
    t.close();
  });
});

test(`${R} table round trip on this runtime's real platform, file opened read-only`, async () => {
  const platform = await defaultPlatform();
  const dir = tempDir("table");
  withSeeds(3, (rng) => {
    const entries = randomEntries(rng, 3000, { versionsMax: 4, valueBytesMax: 150 });
    const { path, meta } = writeTable(platform, dir, entries);
    assert.equal(platform.stat(path)!.size, meta.fileBytes);
    const t = openTable(platform, path);
    checkAgainstModel(rng, t, entries, 500);
    t.verify();
    t.close();
  });
});

test(`${R} keys sharing a long prefix (the index's fingerprints start after it): gets and ranges at, inside, before and after it`, () => {
  withSeeds(6, (rng) => {
    const { platform, dir } = sim();
    const prefix = ["\x02user\x00\x02", "\x02u\x00\x03\xc0", "\x00\x00\x00\x00\x00\x00\x00"][rng.int(3)]!;
    const tails = ["", "\x00", "\x01", "\x80", "\xff", "\xff\xff\xff\xff\xff", "\x00\x00\x00\x00\x01"];
    const keys = new Set<string>();
    for (let i = 0; i < 400 + rng.int(800); i++) {
      let k = prefix + tails[rng.int(tails.length)]!;
      for (let n = rng.int(7); n > 0; n--) k += String.fromCharCode(rng.next() < 0.4 ? [0, 0xff][rng.int(2)]! : rng.int(256));
      keys.add(k);
    }
    const entries: TableEntry[] = [];
    for (const key of keys) for (let v = 1 + rng.int(3); v > 0; v--) entries.push({ nsId: 5, key, tsn: 1 + rng.int(50) * 10 + v, value: rng.next() < 0.1 ? null : rng.bytes(rng.int(40)) });
    entries.sort((a, b) => compareEntries(a.nsId, a.key, a.tsn, b.nsId, b.key, b.tsn));
    const { path } = writeTable(platform, dir, entries, { blockBytesTarget: 256 });
    const t = openTable(platform, path, new BlockCache(rng.next() < 0.5 ? 0 : 1 << 20));
    const probes = [...keys].slice(0, 200);
    for (let i = 1; i <= prefix.length; i++) probes.push(prefix.slice(0, i), prefix.slice(0, i - 1) + "\x00", prefix.slice(0, i - 1) + "\xff");
    for (let i = 0; i < 200; i++) probes.push(prefix + String.fromCharCode(rng.int(256), rng.int(256)) + (rng.next() < 0.5 ? "\xff" : ""));
    for (const key of probes) {
      for (const snap of [0, 1 + rng.int(520), Number.MAX_SAFE_INTEGER]) {
        for (const nsId of [4, 5, 6]) sameEntry(t.get(nsId, key, snap), modelGet(entries, nsId, key, snap), `get(${nsId}, ${JSON.stringify(key)}, ${snap})`);
      }
    }
    for (let i = 0; i < 60; i++) {
      let start = probes[rng.int(probes.length)]!, end = probes[rng.int(probes.length)]!;
      if (start > end) [start, end] = [end, start];
      const snap = rng.int(520);
      sameList([...t.range(5, start, end, snap)], modelRange(entries, 5, start, end, snap, false), `range(5, ${JSON.stringify(start)}, ${JSON.stringify(end)}, ${snap})`);
      sameList([...t.range(5, start, end, snap, { reverse: true })], modelRange(entries, 5, start, end, snap, true), `reverse range(5, ${JSON.stringify(start)}, ${JSON.stringify(end)}, ${snap})`);
    }
    t.close();
  });
});

test(`${R} an empty table opens, reads nothing, verifies`, () => {
  const { platform, dir } = sim();
  const { path, meta } = writeTable(platform, dir, []);
  assert.equal(meta.entryCount, 0);
  assert.equal(meta.blockCount, 0);
  assert.equal(meta.minKey, undefined);
  const t = openTable(platform, path);
  assert.deepEqual(t.meta, { ...meta, contentSum: undefined });
  assert.equal(t.get(1, "a", 10), undefined);
  assert.deepEqual([...t.range(1, undefined, undefined, 10)], []);
  assert.deepEqual([...t.range(1, undefined, undefined, 10, { reverse: true })], []);
  assert.deepEqual([...t.entries()], []);
  assert.deepEqual(t.verify(), { blocks: 0, entries: 0, bytes: meta.fileBytes, contentSum: meta.contentSum });
  t.close();
});

test(`${R} a table of one entry, and one tombstone`, () => {
  const { platform, dir } = sim();
  for (const value of [new Uint8Array([1, 2, 3]), null]) {
    const { path, meta } = writeTable(platform, dir, [{ nsId: 5, key: "k", tsn: 42, value }]);
    assert.deepEqual(meta.minKey, { nsId: 5, key: "k" });
    assert.deepEqual(meta.maxKey, { nsId: 5, key: "k" });
    assert.equal(meta.minTsn, 42);
    assert.equal(meta.maxTsn, 42);
    const t = openTable(platform, path);
    assert.equal(t.get(5, "k", 41), undefined, "not visible below its TSN");
    sameEntry(t.get(5, "k", 42), { tsn: 42, value }, "get at its TSN");
    assert.equal(t.get(5, "j", 100), undefined);
    assert.equal(t.get(4, "k", 100), undefined);
    assert.equal(t.get(6, "k", 100), undefined);
    assert.equal([...t.range(5, undefined, undefined, 100)].length, 1);
    assert.equal([...t.range(5, "k", "k", 100)].length, 0, "[k, k) is empty");
    assert.equal([...t.range(5, "l", undefined, 100, { reverse: true })].length, 0);
    assert.equal([...t.range(5, undefined, "k\x00", 100, { reverse: true })].length, 1);
    t.verify();
    t.close();
  }
});

test(`${R} a huge key and a huge value get blocks of their own and read back`, () => {
  const { platform, dir } = sim();
  const rng = new Rng(7);
  const hugeKey = "\x02" + "k".repeat(20_000) + "\x00";
  const hugeValue = rng.bytes(3 * 2 ** 20);
  const entries: TableEntry[] = [
    { nsId: 1, key: "\x02a\x00", tsn: 1, value: new Uint8Array([1]) },
    { nsId: 1, key: hugeKey, tsn: 2, value: new Uint8Array([2]) },
    { nsId: 1, key: "\x02m\x00", tsn: 3, value: hugeValue },
    { nsId: 1, key: "\x02z\x00", tsn: 4, value: new Uint8Array([4]) },
  ];
  const { path, meta } = writeTable(platform, dir, entries);
  assert.ok(meta.blockCount >= 3, `${meta.blockCount} blocks`);
  const cache = new BlockCache(2 ** 20); // smaller than the huge value's block
  const t = openTable(platform, path, cache);
  sameEntry(t.get(1, hugeKey, 10), entries[1], "huge key");
  sameEntry(t.get(1, "\x02m\x00", 10), entries[2], "huge value");
  assert.ok(cache.stats().rejected >= 1, "the huge block was not cached");
  assert.ok(cache.bytes <= cache.maxBytes);
  sameList([...t.range(1, undefined, undefined, 10)], entries, "range");
  sameList([...t.range(1, undefined, undefined, 10, { reverse: true })], [...entries].reverse(), "reverse range");
  t.verify();
  t.close();
});

test(`${R} thousands of versions of one key span many blocks; every snapshot reads its version`, () => {
  const { platform, dir } = sim();
  const rng = new Rng(11);
  const entries: TableEntry[] = [{ nsId: 1, key: "a", tsn: 5, value: new Uint8Array([0]) }];
  for (let tsn = 3000; tsn >= 2; tsn -= 2) entries.push({ nsId: 1, key: "b", tsn, value: tsn % 10 === 0 ? null : rng.bytes(100) });
  entries.push({ nsId: 1, key: "c", tsn: 1, value: new Uint8Array([9]) });
  const { path, meta } = writeTable(platform, dir, entries);
  assert.ok(meta.blockCount > 30, `${meta.blockCount} blocks`);
  assert.equal(meta.keyCount, 3);
  const t = openTable(platform, path, new BlockCache(8 * 4096));
  for (let snap = 0; snap <= 3002; snap++) {
    sameEntry(t.get(1, "b", snap), modelGet(entries, 1, "b", snap), `get b @${snap}`);
  }
  for (const snap of [0, 1, 2, 3, 1001, 1500, 2999, 3000, 10_000]) {
    for (const reverse of [false, true]) {
      sameList([...t.range(1, undefined, undefined, snap, { reverse })], modelRange(entries, 1, undefined, undefined, snap, reverse), `range @${snap} reverse=${reverse}`);
    }
    // A key whose versions span blocks counts once (or not at all, when its visible one is a delete).
    for (const [start, end] of [[undefined, undefined], ["b", undefined], [undefined, "b"], ["b", "c"], ["a\x00", "b\x00"]] as const) {
      assert.equal(t.countRange(1, start, end, snap), modelRange(entries, 1, start, end, snap, false).filter((e) => e.value !== null).length, `count [${start}, ${end}) @${snap}`);
    }
  }
  t.verify();
  t.close();
});

test(`${R} tombstones are read as versions (value null) and hide nothing older within the table`, () => {
  const { platform, dir } = sim();
  const v = new Uint8Array([7]);
  const entries: TableEntry[] = [
    { nsId: 1, key: "a", tsn: 9, value: null },
    { nsId: 1, key: "a", tsn: 4, value: v },
    { nsId: 1, key: "b", tsn: 3, value: null },
  ];
  const { path, meta } = writeTable(platform, dir, entries);
  assert.equal(meta.tombstoneCount, 2);
  const t = openTable(platform, path);
  sameEntry(t.get(1, "a", 100), { tsn: 9, value: null }, "deleted");
  sameEntry(t.get(1, "a", 8), { tsn: 4, value: v }, "before the delete");
  sameEntry(t.get(1, "b", 3), { tsn: 3, value: null }, "tombstone alone");
  assert.deepEqual([...t.range(1, undefined, undefined, 100)].map((e) => [e.key, e.tsn, e.value]), [["a", 9, null], ["b", 3, null]]);
  t.close();
});

test(`${R} namespace boundaries: equal keys in neighbouring namespaces (0, 1, 2, 2^32-1) never leak into each other's ranges`, () => {
  const { platform, dir } = sim();
  const namespaces = [0, 1, 2, 255, 256, 2 ** 24, 2 ** 32 - 1];
  const entries: TableEntry[] = [];
  for (const nsId of namespaces) for (const key of ["", "\x00", "a", "\xff", "\xff\xff"]) entries.push({ nsId, key, tsn: nsId % 1000 + 1, value: new Uint8Array([nsId & 0xff]) });
  entries.sort((a, b) => compareEntries(a.nsId, a.key, a.tsn, b.nsId, b.key, b.tsn));
  const { path } = writeTable(platform, dir, entries, { blockBytesTarget: 256 });
  const t = openTable(platform, path);
  const snap = Number.MAX_SAFE_INTEGER;
  for (const nsId of [...namespaces, 3, 2 ** 32 - 2]) {
    for (const reverse of [false, true]) {
      sameList([...t.range(nsId, undefined, undefined, snap, { reverse })], modelRange(entries, nsId, undefined, undefined, snap, reverse), `namespace ${nsId} reverse=${reverse}`);
      sameList([...t.range(nsId, "\x00", "\xff", snap, { reverse })], modelRange(entries, nsId, "\x00", "\xff", snap, reverse), `namespace ${nsId} [\\0, \\xff) reverse=${reverse}`);
    }
    for (const key of ["", "a", "\xff\xff", "b"]) sameEntry(t.get(nsId, key, snap), modelGet(entries, nsId, key, snap), `get ${nsId}/${JSON.stringify(key)}`);
  }
  t.close();
});

test(`${R} the writer refuses entries out of order, duplicates and non-binary keys (assertions, not TxtDbError)`, () => {
  const { platform, dir } = sim();
  const cases: [TableEntry, TableEntry][] = [
    [{ nsId: 1, key: "b", tsn: 1, value: null }, { nsId: 1, key: "a", tsn: 1, value: null }],
    [{ nsId: 2, key: "a", tsn: 1, value: null }, { nsId: 1, key: "b", tsn: 1, value: null }],
    [{ nsId: 1, key: "a", tsn: 1, value: null }, { nsId: 1, key: "a", tsn: 2, value: null }],
    [{ nsId: 1, key: "a", tsn: 1, value: null }, { nsId: 1, key: "a", tsn: 1, value: null }],
  ];
  for (const [a, b] of cases) {
    const w = new TableWriter(platform.open(`${dir}/bad-${++fileSerial}`, { create: true }));
    w.add(a.nsId, a.key, a.tsn, a.value);
    assert.throws(() => w.add(b.nsId, b.key, b.tsn, b.value), (e: unknown) => e instanceof Error && !(e instanceof TxtDbError) && /out of order/.test(e.message));
  }
  const w = new TableWriter(platform.open(`${dir}/bad-${++fileSerial}`, { create: true }));
  assert.throws(() => w.add(1, "\u0100", 1, null), /binary string/);
  assert.throws(() => w.add(-1, "a", 1, null), /namespace id/);
  assert.throws(() => w.add(1, "a", 1.5, null), /TSN/);
});

test(`${R} open reads only the footer, filter and index: a constant number of reads whatever the table's size`, () => {
  const { platform, dir } = sim();
  for (const n of [100, 20_000]) {
    const rng = new Rng(n);
    const { path, meta } = writeTable(platform, dir, randomEntries(rng, n, { versionsMax: 1, valueBytesMax: 100, namespaces: [1] }));
    const f = platform.open(path, { readOnly: true });
    let reads = 0, bytes = 0;
    const counting = withRead(f, (buf, pos) => (reads++, bytes += buf.length, f.read(buf, pos)));
    const t = TableReader.open(counting, { cache: new BlockCache(1 << 20) });
    assert.equal(reads, 3, `${n} keys: ${reads} reads at open`);
    assert.equal(bytes, meta.filterBytes + meta.indexBytes + TABLE_FOOTER_BYTES);
    assert.ok(bytes < meta.fileBytes * 0.2, `open read ${bytes} of ${meta.fileBytes} bytes`);
    reads = 0;
    t.get(1, meta.maxKey!.key, Number.MAX_SAFE_INTEGER);
    assert.equal(reads, 1, "a point read reads one block");
    t.close();
  }
});

// ---------------------------------------------------------------------------------------
// Bloom filter

test(`${R} Bloom filter: no false negatives, and ~1 % false positives at 10 bits per key`, () => {
  const rng = new Rng(1234);
  const keyCount = 20_000;
  const keys = new Set<string>();
  while (keys.size < keyCount) keys.add(randomKey(rng) + String(rng.int(1e9)));
  const b = new BloomBuilder();
  for (const k of keys) b.add(bloomHash(3, k));
  const f = BloomFilter.decode(b.finish());
  assert.ok(f instanceof BloomFilter);
  for (const k of keys) assert.ok(f.mayContain(3, k), "false negative");
  let positives = 0, probes = 0;
  for (let i = 0; i < 200_000; i++) {
    const k = randomKey(rng) + String(rng.int(1e9));
    if (keys.has(k)) continue;
    probes++;
    if (f.mayContain(3, k)) positives++;
  }
  // The same keys in another namespace are different keys.
  let otherNs = 0;
  for (const k of keys) if (f.mayContain(4, k)) otherNs++;
  const rate = positives / probes, rateNs = otherNs / keyCount;
  console.log(`bloom: ${f.bytes} bytes for ${keyCount} keys, false positives ${(rate * 100).toFixed(2)} % (other namespace ${(rateNs * 100).toFixed(2)} %)`);
  assert.ok(rate > 0.002 && rate < 0.015, `false-positive rate ${rate}`);
  assert.ok(rateNs < 0.015, `false-positive rate across namespaces ${rateNs}`);
});

test(`${R} Bloom filter: the reader probes the bits the builder set, for filters of many sizes and probe counts`, () => {
  const rng = new Rng(77);
  for (const bitsPerKey of [1, 3, 10, 13, 64]) {
    for (const keyCount of [1, 5, 97, 5000]) {
      const b = new BloomBuilder(bitsPerKey);
      const hashes = Array.from({ length: keyCount }, () => Math.floor(rng.next() * 2 ** 32));
      for (const h of hashes) b.add(h);
      const f = BloomFilter.decode(b.finish());
      assert.ok(f instanceof BloomFilter);
      for (const h of hashes) assert.ok(f.mayContainHash(h), `false negative for hash ${h} (${bitsPerKey} bits per key, ${keyCount} keys)`);
    }
  }
});

test(`${R} Bloom filter decode refuses malformed encodings with a reason`, () => {
  const good = new BloomBuilder().finish();
  assert.ok(BloomFilter.decode(good) instanceof BloomFilter);
  assert.equal(typeof BloomFilter.decode(good.subarray(0, 4)), "string");
  const badK = good.slice();
  badK[0] = 0;
  assert.equal(typeof BloomFilter.decode(badK), "string");
  assert.equal(typeof BloomFilter.decode(good.subarray(0, good.length - 1)), "string");
});

test(`${R} a table's filter answers absent keys without reading a block`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(5), 2000, { versionsMax: 1, namespaces: [1] });
  const { path } = writeTable(platform, dir, entries);
  const cache = new BlockCache(1 << 20);
  const t = openTable(platform, path, cache);
  const rng = new Rng(6);
  let absent = 0;
  for (let i = 0; i < 5000; i++) {
    const k = randomKey(rng) + "#" + i;
    if (!t.mayContain(1, k)) absent++;
    assert.equal(t.get(1, k, 1e9), undefined);
  }
  const s = cache.stats();
  assert.ok(absent > 4900, `${absent} of 5000 absent keys ruled out by the filter`);
  assert.ok(s.hits + s.misses < 100, `${s.hits + s.misses} block lookups for 5000 absent keys`);
  t.close();
});

// ---------------------------------------------------------------------------------------
// Corruption

function isCorruption(e: unknown, path: string): boolean {
  if (!(e instanceof TxtDbError) || e.code !== "CORRUPTION") return false;
  const d = e.details as { file?: unknown; offset?: unknown } | undefined;
  return d?.file === path && typeof d.offset === "number" && e.message.includes(path) && e.message.includes(`offset ${d.offset}`);
}

/** Opens, verifies and reads all of a (possibly damaged) table; returns the error if any. */
function readAll(platform: Platform, path: string): unknown {
  let t: TableReader | undefined;
  try {
    t = openTable(platform, path, new BlockCache(0));
    t.verify();
    for (const nsId of [0, 1, 2]) [...t.range(nsId, undefined, undefined, Number.MAX_SAFE_INTEGER)];
    return undefined;
  } catch (e) {
    return e;
  } finally {
    t?.close();
  }
}

test(`${R} a flipped bit anywhere in a table (block, filter, index, footer) is CORRUPTION naming the file and offset`, () => {
  const world = new SimWorld(3);
  const p = world.process();
  p.mkdir("/d");
  const entries = randomEntries(new Rng(99), 60, { versionsMax: 2, valueBytesMax: 40, namespaces: [0, 1, 2] });
  const { path, meta } = writeTable(p, "/d", entries, { blockBytesTarget: 512 });
  assert.ok(meta.blockCount >= 3);
  const f = p.open(path);
  const original = new Uint8Array(meta.fileBytes);
  f.read(original, 0);
  const regions = new Map<string, number>();
  for (let at = 0; at < original.length; at++) {
    const bit = at % 8;
    f.write(new Uint8Array([original[at]! ^ (1 << bit)]), at);
    const e = readAll(p, path);
    assert.ok(isCorruption(e, path), `bit ${bit} of byte ${at} flipped: ${e === undefined ? "no error" : String(e)}`);
    const region = String((e as TxtDbError).details!.region);
    regions.set(region, (regions.get(region) ?? 0) + 1);
    f.write(original.subarray(at, at + 1), at);
  }
  assert.deepEqual([...regions.keys()].sort(), ["data block", "filter", "footer", "index"]);
  assert.equal(readAll(p, path), undefined, "the restored table reads");
  f.close();
});

test(`${R} a table opened with the manifest's bounds reads its filter on its first point read only: scans never load it (a damaged filter fails that read, not a scan)`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(12), 300, { versionsMax: 1, valueBytesMax: 30, namespaces: [1] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 512 });
  const first = entries[0]!, last = entries[entries.length - 1]!;
  const bounds = { minKey: { nsId: first.nsId, key: first.key }, maxKey: { nsId: last.nsId, key: last.key } };
  flipBits(platform, path, meta.dataBytes + 3, 0x04); // inside the filter
  const t = TableReader.open(platform.open(path, { readOnly: true }), { cache: new BlockCache(1 << 20), bounds });
  assert.equal(t.residentBytes, 0, "nothing loaded at open");
  const scanned = [...t.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER)];
  assert.equal(scanned.length, new Set(entries.map((e) => e.key)).size, "the scan reads every key without the filter");
  const indexOnly = t.residentBytes;
  assert.ok(indexOnly > 0 && indexOnly < meta.indexBytes + meta.filterBytes, `after the scan: the index only (${indexOnly} bytes resident)`);
  assert.throws(() => t.get(first.nsId, first.key, Number.MAX_SAFE_INTEGER), (e: unknown) => isCorruption(e, path) && (e as TxtDbError).details!.region === "filter");
  assert.throws(() => t.verify(), (e: unknown) => isCorruption(e, path));
  t.close();
  // Undamaged, the first point read loads it, and it counts as resident from then on.
  flipBits(platform, path, meta.dataBytes + 3, 0x04);
  const u = TableReader.open(platform.open(path, { readOnly: true }), { cache: new BlockCache(1 << 20), bounds });
  sameEntry(u.get(first.nsId, first.key, Number.MAX_SAFE_INTEGER), first, "first point read");
  assert.ok(u.residentBytes > indexOnly, "the filter is resident after a point read");
  u.close();
});

test(`${R} a damaged data block is CORRUPTION at read time, naming its offset; other blocks still read`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(8), 400, { versionsMax: 1, valueBytesMax: 50, namespaces: [1] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 1024 });
  const at = 1500; // inside the second block
  flipBits(platform, path, at, 0x10);
  const t = openTable(platform, path);
  assert.throws(() => t.verify(), (e: unknown) => isCorruption(e, path) && /block checksum/.test((e as Error).message));
  let good = 0, bad = 0;
  for (const e of entries) {
    try {
      sameEntry(t.get(e.nsId, e.key, 1e9), e, "undamaged read");
      good++;
    } catch (err) {
      assert.ok(isCorruption(err, path), String(err));
      const offset = (err as TxtDbError).details!.offset as number;
      assert.ok(offset <= at && offset > at - 1100, `offset ${offset}: the start of the block holding byte ${at}`);
      bad++;
    }
  }
  assert.ok(good > 0 && bad > 0 && bad < entries.length / 2, `${good} good, ${bad} bad of ${meta.entryCount}`);
  t.close();
});

test(`${R} a truncated table (any length) or one with bytes appended is CORRUPTION at open`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(4), 30, { versionsMax: 1, valueBytesMax: 20 });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 256 });
  const f = platform.open(path);
  const original = new Uint8Array(meta.fileBytes);
  f.read(original, 0);
  for (let size = 0; size < meta.fileBytes; size++) {
    f.truncate(size);
    const e = readAll(platform, path);
    assert.ok(isCorruption(e, path), `truncated to ${size}: ${String(e)}`);
    f.write(original, 0);
  }
  f.write(new Uint8Array(10), meta.fileBytes);
  assert.ok(isCorruption(readAll(platform, path), path), "bytes appended");
  f.truncate(meta.fileBytes);
  assert.equal(readAll(platform, path), undefined);
  f.close();
});

test(`${R} a table of a newer format version is FORMAT, not CORRUPTION`, () => {
  const { platform, dir } = sim();
  const { path, meta } = writeTable(platform, dir, [{ nsId: 1, key: "a", tsn: 1, value: null }]);
  const f = platform.open(path);
  const footer = new Uint8Array(TABLE_FOOTER_BYTES);
  const at = meta.fileBytes - TABLE_FOOTER_BYTES;
  f.read(footer, at);
  footer[20] = 2;
  const dv = new DataView(footer.buffer);
  dv.setUint32(76, checksumOf(footer.subarray(0, 76)), true);
  f.write(footer, at);
  assert.throws(() => openTable(platform, path), (e: unknown) => e instanceof TxtDbError && e.code === "FORMAT");
  f.close();
});


test(`${R} read failures of the file are IO errors with the cause kept; a closed table is CLOSED`, () => {
  const { platform, dir } = sim();
  const { path } = writeTable(platform, dir, randomEntries(new Rng(2), 100, { namespaces: [1] }));
  const f = platform.open(path, { readOnly: true });
  let fail = false;
  const flaky = withRead(f, (buf, pos) => {
    if (fail) throw new PortError("EIO", "read", path);
    return f.read(buf, pos);
  });
  const t = TableReader.open(flaky, { cache: new BlockCache(0) });
  fail = true;
  assert.throws(() => [...t.range(1, undefined, undefined, 1e9)], (e: unknown) => e instanceof TxtDbError && e.code === "IO" && e.cause instanceof PortError && e.message.includes(path));
  fail = false;
  t.close();
  t.close();
  assert.throws(() => t.get(1, "a", 1), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED");
});

// ---------------------------------------------------------------------------------------
// Block cache

test(`${R} block cache: LRU order, byte bound, counters, rejection of oversized entries, dropTable`, () => {
  const c = new BlockCache<string>(100);
  const a = c.newTableId(), b = c.newTableId();
  assert.notEqual(a, b);
  c.set(a, 0, "a0", 40);
  c.set(a, 4096, "a1", 40);
  assert.equal(c.get(a, 0), "a0"); // a0 is now the newest
  c.set(b, 0, "b0", 40); // evicts a1, the least recently used
  assert.equal(c.get(a, 4096), undefined);
  assert.equal(c.get(a, 0), "a0");
  assert.equal(c.get(b, 0), "b0");
  assert.deepEqual(c.stats(), { hits: 3, misses: 1, evictions: 1, rejected: 0, bytes: 80, entries: 2, maxBytes: 100 });
  c.set(b, 8192, "big", 101);
  assert.equal(c.stats().rejected, 1);
  assert.equal(c.get(b, 8192), undefined);
  c.set(b, 0, "b0'", 10); // replacing an entry adjusts the bytes
  assert.equal(c.bytes, 50);
  assert.equal(c.dropTable(a), 1);
  assert.equal(c.bytes, 10);
  assert.equal(c.get(a, 0), undefined);
  assert.throws(() => new BlockCache(-1), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT");
  const none = new BlockCache(0);
  none.set(none.newTableId(), 0, 1, 1);
  assert.equal(none.stats().entries, 0);
});

test(`${R} slab cache: reserve hands out slots within the bound, eviction and dropTable free them, long blocks and a cache without slots get none`, () => {
  const c = new BlockCache(4 * 100 + 10, { slotBytes: 100 });
  const t = c.newTableId();
  const slots: number[] = [];
  for (let i = 0; i < 4; i++) {
    const s = c.reserve(90, 100);
    assert.ok(s >= 0 && !slots.includes(s), `slot ${s} is fresh`);
    c.slotView(s, 90).fill(i + 1);
    c.set(t, i * 4096, i, 100, s);
    slots.push(s);
  }
  assert.equal(c.stats().entries, 4);
  // A fifth block evicts the least recently used (offset 0) and gets its slot.
  const fifth = c.reserve(100, 100);
  assert.equal(fifth, slots[0], "the evicted entry's slot is reused");
  assert.equal(c.get(t, 0), undefined);
  c.set(t, 4 * 4096, 4, 100, fifth);
  assert.ok(c.bytes <= c.maxBytes);
  assert.deepEqual([...c.slotView(slots[1]!, 3)], [2, 2, 2], "other slots keep their bytes");
  assert.equal(c.reserve(101, 101), -1, "a block longer than a slot gets none");
  const s = c.reserve(10, 100); // evicts one more entry to make room
  assert.equal(c.stats().entries, 3);
  c.freeSlot(s); // a block that failed its checksum gives its slot back
  assert.equal(c.dropTable(t), 3);
  assert.equal(c.bytes, 0);
  for (let i = 0; i < 4; i++) c.set(t, i, i, 100, c.reserve(50, 100));
  assert.equal(c.stats().entries, 4, "all four slots are free again after dropTable");
  assert.equal(new BlockCache(1 << 20).reserve(10, 10), -1, "no slab unless slotBytes is set");
  assert.equal(new BlockCache(50, { slotBytes: 100 }).reserve(10, 100), -1, "a bound below one slot holds none");
});

test(`${R} slab cache: values a reader keeps stay intact while later reads reuse the slots (gets, interleaved ranges both ways)`, () => {
  const { platform, dir } = sim();
  const rng = new Rng(33);
  const entries = randomEntries(rng, 3000, { versionsMax: 2, valueBytesMax: 60, namespaces: [1, 2] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 256 });
  assert.ok(meta.blockCount > 100, `${meta.blockCount} blocks`);
  const cache = new BlockCache(4 * 1024, { slotBytes: 1024 }); // four slots: reused all the time
  const t = openTable(platform, path, cache);
  const kept: [TableEntry, ReturnType<TableReader["get"]>][] = [];
  for (let i = 0; i < 3000; i++) {
    const e = entries[rng.int(entries.length)]!;
    const v = t.get(e.nsId, e.key, Number.MAX_SAFE_INTEGER);
    kept.push([e, v]);
    // A borrowed value is right when it is read (and only then is it promised).
    sameEntry(t.get(e.nsId, e.key, Number.MAX_SAFE_INTEGER, true), modelGet(entries, e.nsId, e.key, Number.MAX_SAFE_INTEGER), "borrowed get");
  }
  for (const [e, v] of kept) sameEntry(v, modelGet(entries, e.nsId, e.key, Number.MAX_SAFE_INTEGER), `kept get of ${JSON.stringify(e.key)}`);
  // Two scans and point reads interleaved: every block a scan decodes is its own copy.
  const a = t.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER);
  const b = t.range(2, undefined, undefined, Number.MAX_SAFE_INTEGER, { reverse: true });
  const gotA: TableEntry[] = [], gotB: TableEntry[] = [];
  for (let doneA = false, doneB = false; !doneA || !doneB;) {
    if (!doneA) { const r = a.next(); if (r.done) doneA = true; else gotA.push(r.value); }
    if (!doneB) { const r = b.next(); if (r.done) doneB = true; else gotB.push(r.value); }
    const e = entries[rng.int(entries.length)]!;
    t.get(e.nsId, e.key, Number.MAX_SAFE_INTEGER);
  }
  sameList(gotA, modelRange(entries, 1, undefined, undefined, Number.MAX_SAFE_INTEGER, false), "interleaved range of namespace 1");
  sameList(gotB, modelRange(entries, 2, undefined, undefined, Number.MAX_SAFE_INTEGER, true), "interleaved reverse range of namespace 2");
  // A scan that follows another a few blocks behind hits the blocks the leader cached, while
  // the leader's next blocks take their slots: the follower's entries must still be right.
  const small = new BlockCache(3 * 1200, { slotBytes: 1024 }); // three blocks (each charged 1024 + 96)
  const t2 = openTable(platform, path, small);
  const lead = t2.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER);
  const follow = t2.range(1, undefined, undefined, Number.MAX_SAFE_INTEGER);
  const followed: TableEntry[] = [];
  let ahead = 0;
  for (;;) {
    for (let k = rng.int(4); k > 0 && ahead < 6; k--, ahead++) if (lead.next().done) break;
    const r = follow.next();
    if (r.done) break;
    followed.push(r.value);
    ahead--;
  }
  sameList(followed, modelRange(entries, 1, undefined, undefined, Number.MAX_SAFE_INTEGER, false), "a scan following another");
  assert.ok(small.stats().hits > 50, `the follower hit the leader's blocks: ${JSON.stringify(small.stats())}`);
  t2.close();
  const st = cache.stats();
  assert.ok(st.evictions > 100 && st.entries <= 4 && st.bytes <= st.maxBytes, JSON.stringify(st));
  t.close();
});

test(`${R} block cache shared by tables stays within its bound under random reads; hits and misses add up; closing a table frees its blocks`, () => {
  const { platform, dir } = sim();
  const rng = new Rng(21);
  const cache = new BlockCache(20 * 4096);
  const tables = [0, 1, 2].map((i) => {
    const entries = randomEntries(new Rng(100 + i), 2000, { versionsMax: 1, valueBytesMax: 100, namespaces: [1] });
    return { entries, t: openTable(platform, writeTable(platform, dir, entries).path, cache) };
  });
  let lookups = 0;
  for (let i = 0; i < 5000; i++) {
    const { entries, t } = tables[rng.int(3)]!;
    const e = entries[rng.int(entries.length)]!;
    sameEntry(t.get(1, e.key, 1e9), e, "get");
    lookups++;
    assert.ok(cache.bytes <= cache.maxBytes, `cache holds ${cache.bytes} > ${cache.maxBytes}`);
  }
  const s = cache.stats();
  assert.equal(s.hits + s.misses, lookups, "one block lookup per get of a present key");
  assert.ok(s.hits > 0 && s.misses > 0 && s.evictions > 0, JSON.stringify(s));
  // A hot set smaller than the cache ends up all hits.
  const hot = tables[0]!;
  for (let i = 0; i < 200; i++) hot.t.get(1, hot.entries[i % 10]!.key, 1e9);
  const before = cache.stats().misses;
  for (let i = 0; i < 200; i++) hot.t.get(1, hot.entries[i % 10]!.key, 1e9);
  assert.equal(cache.stats().misses, before, "a warm hot set misses nothing");
  for (const { t } of tables) t.close();
  assert.equal(cache.stats().entries, 0, "closing every table freed every block");
  assert.equal(cache.bytes, 0);
});

test(`${R} compaction-style scans (entries()) read through the cache without filling it`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(31), 1000, { namespaces: [1] });
  const cache = new BlockCache(1 << 20);
  const t = openTable(platform, writeTable(platform, dir, entries).path, cache);
  assert.equal([...t.entries()].length, entries.length);
  assert.equal(cache.stats().entries, 0);
  [...t.range(1, undefined, undefined, 1e9)];
  assert.equal(cache.stats().entries, t.meta.blockCount, "range() fills the cache");
  [...t.range(1, undefined, undefined, 1e9, { fillCache: false, reverse: true })];
  t.close();
});

// ---------------------------------------------------------------------------------------
// Merge iterators

/** Splits `entries` (table order) into `n` sources at random (each version to one source, sometimes duplicated). */
function splitSources(rng: Rng, entries: readonly TableEntry[], n: number): TableEntry[][] {
  const out: TableEntry[][] = Array.from({ length: n }, () => []);
  for (const e of entries) {
    const i = rng.int(n);
    out[i]!.push(e);
    if (rng.next() < 0.05) {
      const j = rng.int(n);
      if (j !== i) out[j]!.push(e); // the same version in two sources (e.g. memtable and a fresh table)
    }
  }
  return out;
}

test(`${R} mergeVisible equals the model over many sources (arrays and tables), both directions, with limits, scan and heap alike`, () => {
  withSeeds(10, (rng) => {
    const { platform, dir } = sim();
    const entries = randomEntries(rng, 300 + rng.int(700), { versionsMax: 5, valueBytesMax: 30, namespaces: [1, 2] });
    const n = 1 + rng.int(8);
    const parts = splitSources(rng, entries, n);
    const tables = parts.map((p) => (rng.next() < 0.5 ? openTable(platform, writeTable(platform, dir, p, { blockBytesTarget: 512 }).path) : undefined));
    const tsnMax = 1002;
    for (let q = 0; q < 30; q++) {
      const nsId = 1 + rng.int(2);
      const snap = rng.int(tsnMax);
      let start: string | undefined = rng.next() < 0.4 ? undefined : randomKey(rng);
      let end: string | undefined = rng.next() < 0.4 ? undefined : randomKey(rng);
      if (start !== undefined && end !== undefined && start > end) [start, end] = [end, start];
      const reverse = rng.next() < 0.5;
      const limit = rng.next() < 0.5 ? undefined : rng.int(40);
      const sources = parts.map((p, i) => {
        const t = tables[i];
        if (t !== undefined) return t.range(nsId, start, end, snap, { reverse });
        const sel = p.filter((e) => e.nsId === nsId && (start === undefined || e.key >= start) && (end === undefined || e.key < end));
        return reverse ? sel.reverse() : sel; // all versions, newest first within a key: any order is allowed
      });
      const expected = modelRange(entries, nsId, start, end, snap, reverse).filter((e) => e.value !== null).slice(0, limit ?? Infinity);
      const linearSourcesMax = rng.next() < 0.5 ? 0 : 100;
      sameList([...mergeVisible(sources, { snapshotTsn: snap, reverse, ...(limit !== undefined ? { limit } : {}), linearSourcesMax })], expected,
        `merge of ${n} sources ns=${nsId} [${JSON.stringify(start)}, ${JSON.stringify(end)}) @${snap} reverse=${reverse} limit=${limit} heap=${linearSourcesMax === 0}`);
    }
    for (const t of tables) t?.close();
  });
});

test(`${R} mergeVisible stops pulling at its limit and ends every source`, () => {
  let pulled = 0, ended = 0;
  function* source(keys: string[]): Generator<TableEntry> {
    try {
      for (const key of keys) {
        pulled++;
        yield { nsId: 1, key, tsn: 1, value: new Uint8Array(0) };
      }
    } finally {
      ended++;
    }
  }
  const many = Array.from({ length: 1000 }, (_, i) => `k${String(i).padStart(4, "0")}`);
  const got = [...mergeVisible([source(many), source(many), source(many)], { snapshotTsn: 10, limit: 5 })];
  assert.deepEqual(got.map((e) => e.key), many.slice(0, 5));
  assert.ok(pulled < 30, `${pulled} entries pulled for 5`);
  assert.equal(ended, 3);
  assert.deepEqual([...mergeVisible([source(many)], { snapshotTsn: 10, limit: 0 })], []);
});

test(`${R} mergeVisible: the newest source wins over older ones, a newer tombstone hides an older value`, () => {
  const v = (b: number) => new Uint8Array([b]);
  const memtable: TableEntry[] = [{ nsId: 1, key: "a", tsn: 30, value: null }, { nsId: 1, key: "b", tsn: 31, value: v(31) }];
  const newer: TableEntry[] = [{ nsId: 1, key: "a", tsn: 20, value: v(20) }, { nsId: 1, key: "c", tsn: 21, value: null }];
  const older: TableEntry[] = [{ nsId: 1, key: "a", tsn: 10, value: v(10) }, { nsId: 1, key: "b", tsn: 11, value: v(11) }, { nsId: 1, key: "c", tsn: 12, value: v(12) }];
  const read = (snap: number) => [...mergeVisible([memtable, newer, older], { snapshotTsn: snap })].map((e) => `${e.key}${e.tsn}`).join(" ");
  assert.equal(read(100), "b31");
  assert.equal(read(29), "a20 b11");
  assert.equal(read(20), "a20 b11 c12");
  assert.equal(read(10), "a10");
  assert.equal(read(9), "");
});

/** Independent statement of R1–R5 on one key's versions (newest first), for the model test. */
function modelRetain(versions: TableEntry[], pins: number[], keepAllAbove: number, bottom: boolean): TableEntry[] {
  const oldest = Math.min(...pins);
  const readers = [...pins, keepAllAbove, Infinity];
  const kept = versions.filter((v, i) => {
    if (v.tsn > keepAllAbove) return true;
    return readers.some((p) => v.tsn <= p && versions.slice(0, i).every((w) => w.tsn > p));
  });
  return kept.filter((v) => !(bottom && v.value === null && v.tsn <= oldest));
}

test(`${R} mergeForCompaction keeps exactly what the retention rule (R1–R5) keeps, and every pin reads the same before and after`, () => {
  withSeeds(25, (rng) => {
    const { platform, dir } = sim();
    const entries = randomEntries(rng, 100 + rng.int(300), { versionsMax: 8, valueBytesMax: 10, tsnMax: 200, namespaces: [1, 2, 3] });
    const parts = splitSources(rng, entries, 1 + rng.int(7));
    const pins = Array.from({ length: 1 + rng.int(4) }, () => rng.int(220));
    const oldest = Math.min(...pins);
    const keepAllAboveTsn = rng.next() < 0.5 ? undefined : oldest + rng.int(100);
    const bottomLevel = rng.next() < 0.5;
    const useTables = rng.next() < 0.5;
    const sources = parts.map((p) => (useTables ? openTable(platform, writeTable(platform, dir, p, { blockBytesTarget: 256 }).path).entries() : p));
    const out = [...mergeForCompaction(sources, { pins, bottomLevel, linearSourcesMax: rng.next() < 0.5 ? 0 : 100, ...(keepAllAboveTsn !== undefined ? { keepAllAboveTsn } : {}) })];

    // 1. Exactly the rule, applied key by key by the independent model.
    const expected: TableEntry[] = [];
    for (let i = 0; i < entries.length;) {
      let j = i;
      while (j < entries.length && entries[j]!.nsId === entries[i]!.nsId && entries[j]!.key === entries[i]!.key) j++;
      expected.push(...modelRetain(entries.slice(i, j), pins, keepAllAboveTsn ?? oldest, bottomLevel));
      i = j;
    }
    sameList(out, expected, `compaction pins=${pins} H=${keepAllAboveTsn} bottom=${bottomLevel}`);

    // 2. What it is for: every pin, and every snapshot above H or after compaction, reads the same.
    const { path } = writeTable(platform, dir, out);
    const t = openTable(platform, path);
    const snapshots = [...pins, Number.MAX_SAFE_INTEGER];
    for (let s = (keepAllAboveTsn ?? oldest) + 1; s <= 201; s += 7) snapshots.push(s);
    const keys = new Map(entries.map((e) => [`${e.nsId}/${e.key}`, e]));
    for (const snap of snapshots) {
      for (const e of keys.values()) {
        const before = modelGet(entries, e.nsId, e.key, snap);
        const after = t.get(e.nsId, e.key, snap);
        const visible = (x: { value: Uint8Array | null } | undefined) => x !== undefined && x.value !== null;
        assert.equal(visible(after), visible(before), `${show(e)} @${snap}: visibility`);
        if (visible(before)) sameEntry(after, before, `${show(e)} @${snap}`);
      }
    }
    t.close();
  });
});

test(`${R} mergeForCompaction: a tombstone below the oldest pin goes only at the bottom level; one above it stays`, () => {
  const v = new Uint8Array([1]);
  const versions: TableEntry[] = [
    { nsId: 1, key: "a", tsn: 50, value: null },
    { nsId: 1, key: "b", tsn: 8, value: null },
    { nsId: 1, key: "b", tsn: 5, value: v },
    { nsId: 1, key: "c", tsn: 40, value: v },
    { nsId: 1, key: "c", tsn: 30, value: v },
    { nsId: 1, key: "c", tsn: 20, value: v },
    { nsId: 1, key: "c", tsn: 9, value: v },
    { nsId: 1, key: "c", tsn: 3, value: v },
  ];
  const run = (bottomLevel: boolean, keepAllAboveTsn?: number) =>
    [...mergeForCompaction([versions], { pins: [10, 25], bottomLevel, ...(keepAllAboveTsn !== undefined ? { keepAllAboveTsn } : {}) })].map((e) => `${e.key}${e.tsn}`).join(" ");
  assert.equal(run(false), "a50 b8 c40 c30 c20 c9");
  assert.equal(run(true), "a50 c40 c30 c20 c9");
  // H = 45: c30 is neither above H nor the version of pin 10, 25 or H itself (c40), so it goes.
  assert.equal(run(true, 45), "a50 c40 c20 c9");
  assert.throws(() => [...mergeForCompaction([versions], { pins: [10], bottomLevel: true, keepAllAboveTsn: 5 })], /below the oldest pin/);
  assert.throws(() => [...mergeForCompaction([versions], { pins: [], bottomLevel: true })], /at least one pin/);
});

test(`[${runtime}] xxhash32 matches the reference vectors, aligned or not`, async () => {
  const { xxhash32 } = await import("txtdb/internal");
  const text = (s: string) => new TextEncoder().encode(s);
  assert.equal(xxhash32(text("")), 0x02cc5d05);
  assert.equal(xxhash32(text("a")), 0x550d7456);
  assert.equal(xxhash32(text("abc")), 0x32d153ff);
  assert.equal(xxhash32(text("Nobody inspects the spammish repetition")), 0xe2293b2f);
  // The aligned word path and the byte path agree, at every offset and length.
  const data = new Uint8Array(300).map((_, i) => (i * 131 + 7) & 0xff);
  for (let off = 0; off < 4; off++) {
    for (const len of [0, 1, 15, 16, 17, 31, 32, 33, 100, 255]) {
      const view = data.subarray(off, off + len);
      const copy = view.slice();
      assert.equal(xxhash32(view), xxhash32(copy), `offset ${off}, length ${len}`);
    }
  }
});

test(`${R} block cache admission: with room every block gets in; once full, a block gets in on its second miss only, and the reads are right either way`, () => {
  const cache = new BlockCache(10_000);
  assert.equal(cache.admit(1, 0, 4000), true, "room: admitted");
  cache.set(1, 0, "a", 4000);
  assert.equal(cache.admit(1, 4096, 4000), true);
  cache.set(1, 4096, "b", 4000);
  assert.equal(cache.admit(1, 8192, 4000), false, "full: a first miss is not admitted");
  assert.equal(cache.admit(1, 12288, 4000), false);
  assert.equal(cache.admit(1, 8192, 4000), true, "its second miss is");
  assert.equal(cache.admit(1, 8192, 4000), false, "the ghost is used up");
  assert.equal(cache.admit(1, 0, 20_000), false, "larger than the cache: never");
  assert.equal(cache.stats().rejected, 1);
  const roomy = new BlockCache(100_000);
  assert.equal(roomy.admit(1, 0, 4000, true), false, "a scanned block: not on its first miss, room or not");
  assert.equal(roomy.admit(1, 0, 4000, true), true, "on its second");
  // An empty cache remembers about as many scanned blocks as it has slots (256 here), not 64.
  const slab = new BlockCache(1 << 20, { slotBytes: 4096 });
  for (let k = 0; k < 200; k++) slab.admit(2, k * 4096, 4160, true);
  let again = 0;
  for (let k = 0; k < 200; k++) if (slab.admit(2, k * 4096, 4160, true)) again++;
  assert.ok(again >= 80, `${again} of 200 scanned blocks remembered over 200 misses (a 64-slot window keeps ~7)`);
  // Through a table: uniform reads of more blocks than the cache holds stay right and the cache stays bounded.
  const { platform, dir } = sim();
  const entries: TableEntry[] = [];
  for (let i = 0; i < 3000; i++) entries.push({ nsId: 1, key: `\x02${String(i).padStart(6, "0")}\x00`, tsn: i + 1, value: new Uint8Array(60).fill(i & 0xff) });
  const { path } = writeTable(platform, dir, entries);
  const small = new BlockCache(16 * 1024);
  const t = openTable(platform, path, small);
  const rng = new Rng(3);
  const got: TableVersion[] = [];
  for (let r = 0; r < 5000; r++) {
    const i = rng.int(3000);
    const v = t.get(1, entries[i]!.key, 10_000);
    assert.ok(v && v.tsn === i + 1 && v.value![0] === (i & 0xff) && v.value!.length === 60, `read ${r} of key ${i}`);
    got.push(v);
  }
  // Values returned from blocks the cache did not admit are copies: later reads never change them.
  for (let r = 0; r < got.length; r++) assert.ok(got[r]!.value!.every((b) => b === ((got[r]!.tsn - 1) & 0xff)), `value ${r} changed after it was returned`);
  assert.ok(small.stats().bytes <= 16 * 1024);
  t.close();
});

test(`${R} a scanned block gets into the cache on its second miss, room or not: a range scanned once leaves the cache empty (no new memory touched), scanned again it is cached, and a third scan reads nothing`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(78), 2000, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 512 });
  const f = platform.open(path, { readOnly: true });
  let reads = 0;
  const cache = new BlockCache(1 << 20, { slotBytes: 4096 });
  const t = TableReader.open(withRead(f, (buf, pos) => (reads++, f.read(buf, pos))), { cache });
  const keys = entries.filter((e) => e.value !== null).map((e) => e.key);
  const scan = () => {
    const rows: string[] = [];
    t.scanInto(1, keys[200]!, keys[600], Number.MAX_SAFE_INTEGER, Infinity, rows, () => true, true, keyRows);
    assert.deepEqual(rows, keys.slice(200, 600));
  };
  scan();
  assert.equal(cache.stats().bytes, 0, "scanned once: nothing cached");
  scan();
  assert.ok(cache.stats().bytes > 0, "scanned twice: its blocks are cached");
  reads = 0;
  scan();
  assert.equal(reads, 0, `a third scan read ${reads} times`);
  // A point read still gets in on its first miss while the cache has room.
  const before = cache.stats().bytes;
  assert.ok(keys.length > 700, `${keys.length} live keys`);
  assert.ok(t.get(1, keys[keys.length - 5]!, Number.MAX_SAFE_INTEGER));
  assert.ok(cache.stats().bytes > before, "the point read's block was cached");
  assert.ok(meta.blockCount > 10);
  t.close();
});

test(`${R} scans read consecutive blocks in runs (one read, not one per block), check each block, and offer each block to the cache (admitted on its second miss)`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(77), 3000, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 512 });
  assert.ok(meta.blockCount >= 40, `${meta.blockCount} blocks`);
  const f = platform.open(path, { readOnly: true });
  let reads = 0;
  const counting = withRead(f, (buf, pos) => (reads++, f.read(buf, pos)));
  // A cache far smaller than the table, already full of other blocks: what runs read is
  // offered to it as a block read alone is (admitted on a second miss).
  const t = TableReader.open(counting, { cache: new BlockCache(4096) });
  const keys = entries.filter((e) => e.value !== null).map((e) => e.key); // one version per key, in key order
  reads = 0;
  const rows: string[] = [];
  t.scanInto(1, "", undefined, Number.MAX_SAFE_INTEGER, Infinity, rows, () => true, true, keyRows);
  assert.equal(rows.length, keys.length, "every key once");
  assert.deepEqual(rows, keys);
  const blocksPerRun = Math.floor((128 * 1024) / 512);
  assert.ok(reads <= Math.ceil(meta.blockCount / Math.min(blocksPerRun, meta.blockCount)) + 2, `${reads} reads for ${meta.blockCount} blocks: blocks were read one by one`);
  reads = 0;
  assert.equal(t.countRange(1, undefined, undefined, Number.MAX_SAFE_INTEGER), keys.length);
  assert.ok(reads <= 3, `${reads} reads to count ${meta.blockCount} blocks`);
  // A page of 10 rows reads about the blocks those rows need, not 128 KiB.
  reads = 0;
  let bytesRead = 0;
  const t2 = TableReader.open(withRead(f, (buf, pos) => (reads++, bytesRead += buf.length, f.read(buf, pos))), { cache: new BlockCache(0) });
  bytesRead = 0;
  const page: string[] = [];
  t2.scanInto(1, keys[100]!, undefined, Number.MAX_SAFE_INTEGER, 10, page, () => true, true, keyRows);
  assert.deepEqual(page, keys.slice(100, 110));
  assert.ok(bytesRead <= 4 * 1024, `a 10-row page read ${bytesRead} bytes`);
  t2.close();
  t.close();
  // A damaged block inside a run: CORRUPTION naming that block's offset, when the scan gets there.
  const at = Math.floor(meta.dataBytes / 2);
  flipBits(platform, path, at, 0x04);
  const t3 = openTable(platform, path, new BlockCache(0));
  const before: string[] = [];
  assert.throws(() => t3.scanInto(1, "", undefined, Number.MAX_SAFE_INTEGER, Infinity, before, () => true, true, keyRows), (e: unknown) => {
    if (!isCorruption(e, path)) return false;
    const offset = (e as TxtDbError).details!.offset as number;
    return offset <= at && offset > at - 1100;
  });
  assert.ok(before.length > 0, "the blocks before the damaged one were read");
  assert.throws(() => t3.countRange(1, undefined, undefined, Number.MAX_SAFE_INTEGER), (e: unknown) => isCorruption(e, path));
  t3.close();
});

test(`${R} two tables with the same table id (two block caches: two stores in one process) never read each other's runs`, () => {
  const { platform, dir } = sim();
  const a = randomEntries(new Rng(5), 2000, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const b = randomEntries(new Rng(6), 2000, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const ta = openTable(platform, writeTable(platform, dir, a, { blockBytesTarget: 512 }).path, new BlockCache(0));
  const tb = openTable(platform, writeTable(platform, dir, b, { blockBytesTarget: 512 }).path, new BlockCache(0));
  const live = (es: TableEntry[]) => es.filter((e) => e.value !== null).map((e) => e.key);
  const got = { a: [] as string[], b: [] as string[] };
  let after = { a: "", b: "" };
  // Pages of 50 rows, alternating between the two tables: each page starts where its table's run may still be in the buffer.
  for (let round = 0; round < 30; round++) {
    for (const [name, t] of [["a", ta], ["b", tb]] as const) {
      const page: string[] = [];
      t.scanInto(1, after[name], undefined, Number.MAX_SAFE_INTEGER, 50, page, () => true, true, keyRows);
      got[name].push(...page);
      if (page.length > 0) after = { ...after, [name]: page[page.length - 1]! + "\0" };
    }
  }
  assert.deepEqual(got.a, live(a));
  assert.deepEqual(got.b, live(b));
  ta.close();
  tb.close();
});

test(`${R} a damaged block a scan offers to the cache gives its slab slot back: scanning it again and again stays CORRUPTION, and the cache stays usable`, () => {
  const { platform, dir } = sim();
  const entries = randomEntries(new Rng(41), 1500, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const { path, meta } = writeTable(platform, dir, entries, { blockBytesTarget: 512 });
  flipBits(platform, path, Math.floor(meta.dataBytes / 2), 0x40);
  // Four slots: a slot lost at each failed check would run the slab dry within a few scans.
  const cache = new BlockCache(4 * (4096 + 256), { slotBytes: 4096 });
  const t = openTable(platform, path, cache);
  for (let round = 0; round < 20; round++) {
    const rows: string[] = [];
    const from = entries[Math.floor(entries.length / 2) - 40]!.key;
    assert.throws(() => t.scanInto(1, from, undefined, Number.MAX_SAFE_INTEGER, Infinity, rows, () => true, true, keyRows), (e: unknown) => isCorruption(e, path), `round ${round}`);
    assert.throws(() => t.countRange(1, from, undefined, Number.MAX_SAFE_INTEGER), (e: unknown) => isCorruption(e, path), `round ${round}`);
  }
  t.close();
  const healthy = randomEntries(new Rng(42), 800, { versionsMax: 1, valueBytesMax: 60, namespaces: [1] });
  const t2 = openTable(platform, writeTable(platform, dir, healthy, { blockBytesTarget: 512 }).path, cache);
  for (let round = 0; round < 3; round++) assert.equal(t2.countRange(1, undefined, undefined, Number.MAX_SAFE_INTEGER), healthy.filter((e) => e.value !== null).length);
  t2.close();
});
