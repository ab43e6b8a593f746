/**
 * A worker of the isolation model check (isolation-attack.test.ts); runs on Node, Deno or Bun.
 *
 *   isoworker <dir> <id> <durationMs> <seed> <maxIdleMs> <histFile> [locker]
 *
 * Runs random transactions (reads, range lists, writes, deletes; serializable and snapshot),
 * snapshots, lists on the database and blind writes against ns/["k", 0..KEYS-1] from
 * several concurrent loops, pausing now and then past `maxIdleMs` (idle releases), while a
 * loop compacts and another reads. The process is kept from the writer lock now and then
 * (its flock attempts refused, as for a process that keeps losing the race for it), so that
 * its commits wait while the others commit and compact; `locker` also holds the writer lock
 * now and then, so that every process's commits wait for it. Every value written is unique
 * ("<id>:<n>"). Writes the history, every attempt with what it read (versions included) and
 * its outcome, to `histFile` as JSON. Prints "ready" once open, "done <counts>" at the end.
 */
import * as fs from "node:fs";
import { open, TxtDbError } from "txtdb";
import type { Database, Platform } from "txtdb";
import { defaultPlatform, FileLock } from "txtdb/internal";
import { args, exit, say } from "./io.ts";
import { writerLockBlockable } from "./lockblock.ts";

export const KEYS = 16;

/** One read: key index, version read (0: absent), value (null: absent). */
export type ReadRec = [number, number, string | null];
/** One range listed: [first key index, end key index (exclusive)], and what it returned. */
export type RangeRec = { from: number; to: number; got: ReadRec[] };
/** One write: key index and value (null: delete). */
export type WriteRec = [number, string | null];

export interface Attempt {
  /** tx: a transaction; snap: a snapshot's reads; blind: db.set/db.delete; dblist: a list on the database. */
  kind: "tx" | "snap" | "blind" | "dblist";
  iso?: "serializable" | "snapshot";
  /** The version read (transactions and snapshots). */
  r?: number;
  reads: ReadRec[];
  ranges: RangeRec[];
  writes: WriteRec[];
  /** "ok" or the TxtDbError code that ended it. */
  outcome: string;
  lostHistory?: boolean;
  /** The commit's version (committed writes). */
  c?: number;
}

const [dir, idArg, durationArg, seedArg, idleArg, histFile, role] = args();
const id = Number(idArg);
const durationMs = Number(durationArg);
const maxIdleMs = Number(idleArg);
let seed = Number(seedArg) >>> 0;

/** mulberry32: a small seeded generator, so that a failing run can be replayed. */
function rand(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (n: number) => Math.floor(rand() * n);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The platform, with the writer lock refusable while `starved.on`: this process then waits
 * for the lock as one that keeps losing the race for it would, while the others commit and
 * compact.
 */
const platform = await defaultPlatform();
const { adapter: starvable, blocked: starved } = writerLockBlockable(platform);
const db: Database = await open(dir!, {
  namespaces: ["ns"],
  maxIdleMs,
  segmentBytes: 1024,
  autoCompactBytes: 0,
  adapter: starvable,
});
const history: Attempt[] = [];
let n = 0;
const fresh = () => `${id}:${n++}`;
const deadline = performance.now() + durationMs;
const counts: Record<string, number> = {};
const count = (what: string) => void (counts[what] = (counts[what] ?? 0) + 1);

/** A short pause, now and then longer than maxIdleMs (the idle sweep then releases the pin). */
async function pause(): Promise<void> {
  const x = rand();
  if (x < 0.6) return;
  await sleep(x < 0.93 ? pick(3) : maxIdleMs + pick(2 * maxIdleMs));
}

function outcomeOf(e: unknown, a: Attempt): void {
  if (!(e instanceof TxtDbError)) throw e;
  a.outcome = e.code;
  if ((e.details as { lostHistory?: boolean } | undefined)?.lostHistory === true) a.lostHistory = true;
  if (!["CONFLICT", "TIMEOUT", "CLOSED"].includes(e.code)) throw e;
}

type Reader = {
  getEntry(ns: string, key: unknown): Promise<{ value: unknown; version: bigint } | undefined>;
  list(ns: string, sel: { start: unknown; end: unknown }): AsyncIterableIterator<{ key: unknown; value: unknown; version: bigint }>;
};

async function readSome(r: Reader, a: Attempt, ops: number): Promise<void> {
  for (let i = 0; i < ops; i++) {
    if (rand() < 0.6) {
      const k = pick(KEYS);
      const e = await r.getEntry("ns", ["k", k]);
      a.reads.push([k, e ? Number(e.version) : 0, e ? (e.value as string) : null]);
    } else {
      const from = pick(KEYS);
      const to = from + 1 + pick(KEYS - from);
      const got: ReadRec[] = [];
      for await (const e of r.list("ns", { start: ["k", from], end: ["k", to] })) {
        got.push([(e.key as [string, number])[1], Number(e.version), e.value as string]);
        if (rand() < 0.1) await pause();
      }
      a.ranges.push({ from, to, got });
    }
    await pause();
  }
}

async function transaction(iso: "serializable" | "snapshot"): Promise<void> {
  const a: Attempt = { kind: "tx", iso, reads: [], ranges: [], writes: [], outcome: "ok" };
  history.push(a);
  const tx = await db.begin({ isolation: iso });
  a.r = Number(tx.readVersion);
  try {
    await readSome(tx as unknown as Reader, a, 1 + pick(3));
    const writes = 1 + pick(2);
    for (let i = 0; i < writes; i++) {
      const k = pick(KEYS);
      const v = rand() < 0.5 ? null : fresh();
      if (v === null) tx.delete("ns", ["k", k]);
      else tx.set("ns", ["k", k], v);
      // Last write of a key wins: the record keeps the one committed.
      const j = a.writes.findIndex(([x]) => x === k);
      if (j >= 0) a.writes.splice(j, 1);
      a.writes.push([k, v]);
    }
    await pause();
    const t0 = performance.now();
    a.c = Number((await tx.commit()).version);
    if (performance.now() - t0 > 2 * maxIdleMs) count("slow commit ok");
  } catch (e) {
    tx.rollback();
    outcomeOf(e, a);
  }
  count(`tx ${iso} ${a.outcome}${a.lostHistory ? " lostHistory" : ""}`);
}

async function snapshotReads(): Promise<void> {
  const a: Attempt = { kind: "snap", reads: [], ranges: [], writes: [], outcome: "ok" };
  history.push(a);
  const snap = await db.snapshot();
  a.r = Number(snap.version);
  try {
    await readSome(snap as unknown as Reader, a, 1 + pick(4));
  } catch (e) {
    outcomeOf(e, a);
  } finally {
    snap.release();
  }
  count(`snap ${a.outcome}`);
}

async function blindWrite(): Promise<void> {
  const k = pick(KEYS);
  const v = rand() < 0.5 ? null : fresh();
  const a: Attempt = { kind: "blind", reads: [], ranges: [], writes: [[k, v]], outcome: "ok" };
  history.push(a);
  a.c = Number((v === null ? await db.delete("ns", ["k", k]) : await db.set("ns", ["k", k], v)).version);
  count("blind");
}

async function dbList(): Promise<void> {
  const a: Attempt = { kind: "dblist", reads: [], ranges: [], writes: [], outcome: "ok" };
  history.push(a);
  const got: ReadRec[] = [];
  try {
    for await (const e of db.list("ns", { start: ["k", 0], end: ["k", KEYS] })) {
      got.push([(e.key as [string, number])[1], Number(e.version), e.value as string]);
      if (rand() < 0.2) await pause();
    }
  } catch (e) {
    outcomeOf(e, a);
  }
  a.ranges.push({ from: 0, to: KEYS, got });
  count(`dblist ${a.outcome}`);
}

async function loop(): Promise<void> {
  while (performance.now() < deadline) {
    const x = rand();
    if (x < 0.45) await transaction("serializable");
    else if (x < 0.65) await transaction("snapshot");
    else if (x < 0.8) await snapshotReads();
    else if (x < 0.92) await blindWrite();
    else await dbList();
  }
}

/** Reads on the database every few ms: other work of the process, which learns of compactions. */
async function reading(): Promise<void> {
  while (performance.now() < deadline) {
    const k = pick(KEYS);
    const e = await db.getEntry<string>("ns", ["k", k]);
    if (e !== undefined && typeof e.value !== "string") throw new Error(`k${k} holds ${String(e.value)}`);
    await sleep(pick(5));
  }
}

async function compacting(): Promise<void> {
  while (performance.now() < deadline) {
    const r = await db.compact();
    count(r.segmentsFolded > 0 ? "compact folded" : "compact");
    await sleep(10 + pick(40));
  }
}

/** Keeps this process from the writer lock now and then. */
async function starving(): Promise<void> {
  while (performance.now() < deadline) {
    await sleep(50 + pick(150));
    starved.on = true;
    await sleep(4 * maxIdleMs + pick(8 * maxIdleMs));
    starved.on = false;
    count("starved");
  }
}

/** Holds the writer lock through a second handle now and then: commits wait for it meanwhile. */
async function locking(): Promise<void> {
  const lock = new FileLock(platform, `${dir}/writer.lock`);
  try {
    while (performance.now() < deadline) {
      await sleep(100 + pick(200));
      const release = await lock.acquire(true);
      await sleep(maxIdleMs + pick(3 * maxIdleMs));
      release();
      count("lock held");
    }
  } finally {
    lock.close();
  }
}

say("ready");
try {
  await Promise.all([loop(), loop(), loop(), reading(), compacting(), ...(role === "locker" ? [locking()] : []), starving()]);
} catch (e) {
  console.error(e);
  fs.writeFileSync(histFile!, JSON.stringify(history));
  exit(1);
}
await db.close();
fs.writeFileSync(histFile!, JSON.stringify(history));
say(`done ${JSON.stringify(counts)}`);
exit(0);
