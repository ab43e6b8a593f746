#!/usr/bin/env node
// Large-store benchmark: txtdb beside lmdb-js and better-sqlite3 on one store of N keys.
//
//   node scripts/bench/scale.mjs [--keys=N] [--dist=path] [--keep]
//                                [--engines=txtdb,lmdb,sqlite] [--fill-durability=none|full]
//                                [--timeout-scale=X]
//
// --keys     keys to fill (default 10,000,000; accepts 100000, 1e6, 100k, 1M, 10M). Here
//            (2 cores) N=100k takes ~20 s and N=1M ~1.5 min for the three engines.
// --dist     txtdb's tsup build (default <repo>/dist). It is copied into the run directory
//            first, so that a rebuild of dist/ during the run cannot change or break it; if
//            it has no mod.js, `npx tsup --out-dir <run dir>` builds a private copy.
// --keep     keep the stores (under /tmp/txtdb-bench/scale-*) instead of removing them.
// --engines  run only some engines (the ratios need txtdb and the peer).
// --fill-durability  txtdb's durability for the fill (default "none"; reads use the default).
// --timeout-scale    multiply every child's time limit (defaults: 10 min + 0.4 ms per key
//                    for the fill, 5 min + 0.1 ms per key for each measure).
//
// Each engine is filled with keys ["k", i] (peers: "k" + i zero-padded to 10 digits, whose
// byte order is numeric order) and ~100-byte values { s: <80 chars>, n: i }, 10,000 writes
// per transaction, in ascending key order. txtdb then compacts and closes. Every measure
// then runs in a fresh `node` child process: open + first read; RSS after open and after
// 100,000 uniform random point reads (and their rate); warm reads over a 100k-key subset;
// 1,000-key range scans; a count of the live keys of a range of up to 1M keys (values
// unread, best of 5); an online backup while another process commits a durable write every
// 2 ms (the copy's MB/s, and that process's longest commit during the copy beside its
// longest in the 1.5 s before); four processes opening at once, then reading at once (skipped if
// four times one reader's RSS would not fit in free memory); the bytes on disk. Every value
// read is checked (n === i). A child that fails (out of memory, timeout, an error) is
// recorded in its cell and the run goes on. Progress goes to stderr; the markdown table to
// stdout; JSON to bench-results/scale-<date>-<N>.json (-2, -3... if that exists).
//
// Not controlled: the OS page cache is warm (the files were just written; nothing drops
// it), and other work on the machine shares its cores.

import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createInterface } from "node:readline";
import { getHeapStatistics } from "node:v8";

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), "../..");
const require = createRequire(import.meta.url);

const BATCH = 10_000; // writes per transaction in the fill
const READS = 100_000; // point reads per measure
const SCAN = 1_000; // keys per range scan
const SCANS = 300; // timed range scans (after 10 untimed ones)
const PROCS = 4; // processes opening at once
const COUNT_KEYS = 1_000_000; // keys a count covers (all of them in smaller stores)
const ENGINES = ["txtdb", "lmdb", "sqlite"];
const NAMES = { txtdb: "txtdb", lmdb: "lmdb-js", sqlite: "better-sqlite3" };

// ---------------------------------------------------------------------------------------
// Shared by the parent and the children: keys, values, a seeded PRNG, memory figures.

/** The peers' key for i: byte order = numeric order. */
const peerKey = (i) => "k" + String(i).padStart(10, "0");
const FILLER = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(3);
/** The value of key i: an 80-character string and a number (~90 B of CBOR, ~100 B of JSON). */
const valueOf = (i) => ({ s: (`v${i}-` + FILLER).slice(0, 80), n: i });

/** mulberry32: the same seed gives every engine the same key sequence. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const mib = (bytes) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** RSS, heap and (on Linux) PSS of this process, in MiB. PSS splits shared pages (lmdb's map) among the processes mapping them. */
function memory() {
  const m = process.memoryUsage();
  const out = { rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), externalMiB: mib(m.external) };
  try {
    const pss = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/self/smaps_rollup", "utf8"));
    if (pss) out.pssMiB = mib(Number(pss[1]) * 1024);
  } catch { /* not Linux */ }
  return out;
}

// ---------------------------------------------------------------------------------------
// Child side: one engine, one measure, in a fresh process. Results go to stdout as lines
// "@@<json>"; progress to stderr.

/** Loads an engine's module (timed separately from the open). */
async function load(engine, dist) {
  if (engine === "txtdb") return (await import(pathToFileURL(`${dist}/mod.js`).href)).open;
  if (engine === "lmdb") return require("lmdb").open;
  return require("better-sqlite3");
}

/** Checks a value read for key i. */
function check(engine, v, i) {
  if (v === undefined || v === null || v.n !== i) throw new Error(`${engine}: key ${i} read back ${JSON.stringify(v)}`);
}

/**
 * Opens the store and returns one interface over the three engines:
 * get(i) (a Promise for txtdb), scan(a) (reads keys a..a+999 and returns how many),
 * fillBatch(from, to), afterFill() and close().
 */
async function openEngine(engine, mod, dir, { fill = false, fillDurability = "none" } = {}) {
  if (engine === "txtdb") {
    const db = await mod(dir, fill ? { namespaces: ["bench"], durability: fillDurability } : {});
    return {
      async: true,
      get: (i) => db.get("bench", ["k", i]),
      async scan(a) {
        let n = 0;
        for await (const e of db.list("bench", { start: ["k", a], end: ["k", a + SCAN] })) check(engine, e.value, a + n++);
        return n;
      },
      count: (from, to) => db.count("bench", { start: ["k", from], end: ["k", to] }),
      backup: async (dest) => (await db.backup(dest)).bytes,
      writeOne: (j) => db.set("bench", ["w", j], j),
      fillBatch: (from, to) => db.transaction((tx) => { for (let i = from; i < to; i++) tx.set("bench", ["k", i], valueOf(i)); }),
      async afterFill() {
        const t0 = performance.now();
        const r = await db.compact();
        return { compactMs: performance.now() - t0, compact: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "bigint" ? String(v) : v])) };
      },
      close: () => db.close(),
    };
  }
  if (engine === "lmdb") {
    // lmdb-js defaults: durable commits (overlappingSync on Linux), msgpack values,
    // ordered-binary keys, no compression.
    const db = mod({ path: dir });
    return {
      async: false,
      get: (i) => db.get(peerKey(i)),
      scan(a) {
        let n = 0;
        for (const { value } of db.getRange({ start: peerKey(a), limit: SCAN })) check(engine, value, a + n++);
        return n;
      },
      count: (from, to) => db.getCount({ start: peerKey(from), end: peerKey(to) }),
      // lmdb-js copies the environment (mdb_env_copy2, no compaction) into an empty directory.
      backup: async (dest) => { fs.mkdirSync(dest, { recursive: true }); await db.backup(dest, false); return fs.statSync(path.join(dest, "data.mdb")).size; },
      writeOne: (j) => db.put("w" + j, j),
      fillBatch: (from, to) => db.transaction(() => { for (let i = from; i < to; i++) db.put(peerKey(i), valueOf(i)); }),
      afterFill: async () => ({}),
      close: () => db.close(),
    };
  }
  // better-sqlite3: WAL, synchronous=FULL, a clustered (WITHOUT ROWID) text-keyed table,
  // JSON values parsed on read; other settings (cache_size, mmap_size) at their defaults.
  const db = new mod(`${dir}/kv.sqlite`);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 10000");
  if (fill) db.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  const get = db.prepare("SELECT v FROM kv WHERE k = ?").pluck();
  const range = db.prepare("SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT 1000");
  const put = db.prepare("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)");
  const countRange = db.prepare("SELECT COUNT(*) FROM kv WHERE k >= ? AND k < ?").pluck();
  const batch = fill ? db.transaction((from, to) => { for (let i = from; i < to; i++) put.run(peerKey(i), JSON.stringify(valueOf(i))); }) : null;
  return {
    async: false,
    get: (i) => { const v = get.get(peerKey(i)); return v === undefined ? undefined : JSON.parse(v); },
    scan(a) {
      let n = 0;
      for (const r of range.iterate(peerKey(a))) check(engine, JSON.parse(r.v), a + n++);
      return n;
    },
    count: (from, to) => countRange.get(peerKey(from), peerKey(to)),
    // better-sqlite3's online backup (sqlite3_backup_*, 100 pages per step between event-loop turns).
    backup: async (dest) => { fs.mkdirSync(dest, { recursive: true }); await db.backup(path.join(dest, "kv.sqlite")); return fs.statSync(path.join(dest, "kv.sqlite")).size; },
    writeOne: (j) => put.run("w" + j, String(j)),
    fillBatch: (from, to) => batch(from, to),
    afterFill: async () => ({}),
    close: () => db.close(),
  };
}

const send = (type, data) => fs.writeSync(1, `@@${JSON.stringify({ type, data })}\n`);
const say = (spec, msg) => process.stderr.write(`  [${spec.engine} ${spec.role}] ${msg}\n`);

/** Reads keys `keys` one after the other; returns the rate and latency percentiles. */
async function readAll(engine, db, keys) {
  const lat = new Float64Array(keys.length);
  const t0 = performance.now();
  for (let j = 0; j < keys.length; j++) {
    const s = performance.now();
    let v = db.get(keys[j]);
    if (db.async) v = await v;
    lat[j] = performance.now() - s;
    check(engine, v, keys[j]);
  }
  const ms = performance.now() - t0;
  lat.sort();
  const p = (q) => Math.round(lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] * 1000 * 10) / 10;
  return { reads: keys.length, ms, readsPerSec: Math.round(keys.length / (ms / 1000)), p50us: p(0.5), p99us: p(0.99), startEpochMs: performance.timeOrigin + t0, endEpochMs: performance.timeOrigin + t0 + ms };
}

const randomKeys = (n, N, seed) => { const r = prng(seed); return Array.from({ length: n }, () => Math.floor(r() * N)); };

async function child(spec) {
  const { engine, role, dir, dist, keys: N } = spec;
  const t0 = performance.now();
  const mod = await load(engine, dist);
  const importMs = performance.now() - t0;

  if (role === "fill") {
    fs.mkdirSync(dir, { recursive: true });
    const db = await openEngine(engine, mod, dir, { fill: true, fillDurability: spec.fillDurability });
    const t1 = performance.now();
    let lastReport = t1;
    for (let from = 0; from < N; from += BATCH) {
      await db.fillBatch(from, Math.min(N, from + BATCH));
      const now = performance.now();
      const done = Math.min(N, from + BATCH);
      if (now - lastReport > 10_000 || done === N) {
        lastReport = now;
        say(spec, `${done.toLocaleString("en-US")}/${N.toLocaleString("en-US")} keys, ${((now - t1) / 1000).toFixed(1)} s, rss ${memory().rssMiB} MiB`);
        send("progress", `${done.toLocaleString("en-US")} of ${N.toLocaleString("en-US")} keys written`);
      }
    }
    const fillMs = performance.now() - t1;
    const memAfterFill = memory();
    const extra = await db.afterFill();
    if (extra.compactMs !== undefined) say(spec, `compact: ${(extra.compactMs / 1000).toFixed(1)} s`);
    const t2 = performance.now();
    await db.close();
    send("result", { fillMs, writesPerSec: Math.round(N / (fillMs / 1000)), ...extra, closeMs: performance.now() - t2, memAfterFill, heapLimitMiB: mib(getHeapStatistics().heap_size_limit) });
    return;
  }

  if (role === "open") {
    const first = randomKeys(1, N, 2)[0];
    const t1 = performance.now();
    const db = await openEngine(engine, mod, dir);
    const t2 = performance.now();
    let v = db.get(first);
    if (db.async) v = await v;
    const t3 = performance.now();
    check(engine, v, first);
    const mem = memory();
    await db.close();
    send("result", { importMs, openMs: t2 - t1, firstReadMs: t3 - t2, openFirstReadMs: t3 - t1, mem });
    return;
  }

  if (role === "random") {
    const memBeforeOpen = memory();
    const db = await openEngine(engine, mod, dir);
    const memAfterOpen = memory();
    say(spec, `opened, rss ${memAfterOpen.rssMiB} MiB; ${READS.toLocaleString("en-US")} random reads`);
    const r = await readAll(engine, db, randomKeys(READS, N, 1));
    const memAfterReads = memory();
    await db.close();
    send("result", { ...r, memBeforeOpen, memAfterOpen, memAfterReads });
    return;
  }

  if (role === "warm") {
    // The subset: one key in each of S equal strides of [0, N), at a random place in it.
    const S = Math.min(READS, N);
    const r = prng(3);
    const subset = Array.from({ length: S }, (_, j) => Math.floor((j * N) / S) + Math.floor(r() * Math.floor(N / S)));
    const warmOrder = subset.slice();
    for (let j = warmOrder.length - 1; j > 0; j--) { const k = Math.floor(r() * (j + 1)); [warmOrder[j], warmOrder[k]] = [warmOrder[k], warmOrder[j]]; }
    const db = await openEngine(engine, mod, dir);
    const warmPass = await readAll(engine, db, warmOrder);
    const measured = await readAll(engine, db, Array.from({ length: READS }, () => subset[Math.floor(r() * S)]));
    const mem = memory();
    await db.close();
    send("result", { subset: S, warmPassReadsPerSec: warmPass.readsPerSec, ...measured, mem });
    return;
  }

  if (role === "scan") {
    const r = prng(4);
    const starts = Array.from({ length: SCANS + 10 }, () => Math.floor(r() * (N - SCAN)));
    const db = await openEngine(engine, mod, dir);
    const scanOnce = async (a) => {
      let n = db.scan(a);
      if (db.async) n = await n;
      if (n !== SCAN) throw new Error(`${engine}: scan from ${a} returned ${n} entries, expected ${SCAN}`);
    };
    for (const a of starts.slice(0, 10)) await scanOnce(a); // untimed: JIT warm-up
    const t1 = performance.now();
    for (const a of starts.slice(10)) await scanOnce(a);
    const ms = performance.now() - t1;
    const mem = memory();
    await db.close();
    send("result", { scans: SCANS, ms, scansPerSec: Math.round((SCANS / ms) * 1000 * 10) / 10, keysPerSec: Math.round(((SCANS * SCAN) / ms) * 1000), mem });
    return;
  }

  if (role === "count") {
    // The live keys of a range of up to 1M keys, values unread; best of 5 after one untimed.
    const M = Math.min(N, COUNT_KEYS);
    const db = await openEngine(engine, mod, dir);
    const once = async () => {
      let n = db.count(0, M);
      if (db.async) n = await n;
      if (n !== M) throw new Error(`${engine}: count of [0, ${M}) returned ${n}`);
    };
    await once();
    let best = Infinity;
    for (let k = 0; k < 5; k++) {
      const t1 = performance.now();
      await once();
      best = Math.min(best, performance.now() - t1);
    }
    await db.close();
    send("result", { keys: M, ms: best, keysPerSec: Math.round(M / (best / 1000)) });
    return;
  }

  if (role === "writer") {
    // A durable single-key write every 2 ms until told to stop; reports each commit's
    // latency with its start time (ms since the epoch).
    const db = await openEngine(engine, mod, dir);
    let stop = false;
    createInterface({ input: process.stdin }).on("line", () => (stop = true)).on("close", () => (stop = true));
    send("started", {});
    const starts = [], lats = [];
    for (let j = 0; !stop; j++) {
      const t1 = performance.now();
      let w = db.writeOne(j);
      if (w && typeof w.then === "function") w = await w;
      starts.push(performance.timeOrigin + t1);
      lats.push(performance.now() - t1);
      await new Promise((r) => setTimeout(r, 2));
    }
    await db.close();
    send("result", { starts, lats });
    return;
  }

  if (role === "backup") {
    // An online backup while another process commits: the copy's rate, and that process's
    // longest commit during the backup beside its longest in the 1.5 s before it.
    const writer = spawn(process.execPath, [SELF, "--child", JSON.stringify({ ...spec, role: "writer" })], { stdio: ["pipe", "pipe", "inherit"] });
    let wout = "";
    const started = new Promise((resolve) => writer.stdout.on("data", (d) => { wout += d; if (wout.includes('"started"')) resolve(); }));
    const ended = new Promise((resolve) => writer.on("close", resolve));
    await started;
    const db = await openEngine(engine, mod, dir);
    await new Promise((r) => setTimeout(r, 1500));
    const dest = `${dir}.backup`;
    fs.rmSync(dest, { recursive: true, force: true });
    const b0 = performance.timeOrigin + performance.now();
    const bytes = await db.backup(dest);
    const b1 = performance.timeOrigin + performance.now();
    await new Promise((r) => setTimeout(r, 300));
    writer.stdin.write("stop\n");
    await ended;
    await db.close();
    fs.rmSync(dest, { recursive: true, force: true });
    const w = JSON.parse(wout.split("\n").find((l) => l.includes('"result"')).slice(2)).data;
    let before = 0, during = 0, commitsDuring = 0;
    w.starts.forEach((t, k) => {
      if (t < b0) before = Math.max(before, w.lats[k]);
      else if (t <= b1) { during = Math.max(during, w.lats[k]); commitsDuring++; }
    });
    send("result", { bytes, ms: b1 - b0, MBps: bytes / 1e6 / ((b1 - b0) / 1000), stallBeforeMs: before, stallDuringMs: during, commitsDuring });
    return;
  }

  if (role === "multi") {
    // Barriers with the parent over stdin: "go" when all PROCS children have loaded their
    // module (so the opens coincide), "read" when all have opened (so the reads coincide),
    // "pss" when all have done their reads (so PSS is measured while all PROCS processes
    // map the store).
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    send("ready", {});
    await lines.next();
    const first = randomKeys(1, N, 100 + spec.proc)[0];
    const t1 = performance.now();
    const db = await openEngine(engine, mod, dir);
    let v = db.get(first);
    if (db.async) v = await v;
    const openFirstReadMs = performance.now() - t1;
    check(engine, v, first);
    say(spec, `process ${spec.proc}: opened in ${Math.round(openFirstReadMs)} ms`);
    send("opened", {});
    await lines.next();
    const r = await readAll(engine, db, randomKeys(READS, N, 200 + spec.proc));
    const memAfterReads = memory();
    send("reads", {});
    await lines.next();
    const memAllAlive = memory();
    await db.close();
    send("result", { proc: spec.proc, openFirstReadMs, ...r, memAfterReads, memAllAlive });
    return;
  }
  throw new Error(`unknown role ${role}`);
}

// ---------------------------------------------------------------------------------------
// Parent side.

/** Why a child failed, in a few words (the full stderr tail goes to the JSON). */
function describeFailure(code, signal, tail, timedOutMs) {
  if (timedOutMs) return `timed out after ${(timedOutMs / 1000).toFixed(timedOutMs < 10_000 ? 1 : 0)} s`;
  if (/heap out of memory|Allocation failed|Array buffer allocation failed|Invalid array length|Map maximum size exceeded|Cannot create a string longer/i.test(tail)) {
    // Children run with no node flags, so they share this process's heap limit unless it
    // was raised on this process's command line (NODE_OPTIONS reaches both).
    const limit = process.execArgv.some((a) => /max[-_]old[-_]space/.test(a)) ? "" : `, limit ${Math.round(getHeapStatistics().heap_size_limit / 2 ** 20)} MiB`;
    return `out of memory (JS heap${limit})`;
  }
  if (signal === "SIGKILL") return "killed by SIGKILL (the kernel's OOM killer?)";
  const lines = tail.split("\n").map((l) => l.trim()).filter(Boolean);
  const err = lines.find((l) => /^(\w*Error|TxtDbError)\b|Error:/.test(l)) ?? lines.at(-1) ?? "";
  return `exit ${code ?? signal}: ${err.slice(0, 160)}`;
}

/**
 * Runs one child; resolves (never rejects) with { ok: true, ...result } or
 * { ok: false, error, stderrTail }. `onMessage(type, data, child)` sees every message.
 */
function runChild(spec, { timeoutMs, stdin = false, onMessage, children } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SELF, "--child", JSON.stringify(spec)], { stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
    children?.push(child);
    let out = "", tail = "", result, progress, timedOutMs = 0;
    child.stdout.on("data", (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (!line.startsWith("@@")) { process.stderr.write(`  [${spec.engine} ${spec.role}] ${line}\n`); continue; }
        const { type, data } = JSON.parse(line.slice(2));
        if (type === "result") result = data;
        if (type === "progress") progress = data;
        onMessage?.(type, data, child);
      }
    });
    child.stderr.on("data", (d) => { process.stderr.write(d); tail = (tail + d).slice(-4000); });
    child.stdin?.on("error", () => { /* the child died; its exit says why */ });
    const timer = setTimeout(() => { timedOutMs = timeoutMs; child.kill("SIGKILL"); }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && result) resolve({ ok: true, ...result });
      else if (child.killedBySibling) resolve({ ok: false, error: "stopped: another of the processes failed" });
      else resolve({ ok: false, error: describeFailure(code, signal, tail, timedOutMs) + (progress ? `, ${progress}` : ""), stderrTail: tail.slice(-1500) });
    });
  });
}

/** PROCS children of one engine at once, with the three barriers of the "multi" role. */
async function runMulti(base, timeoutMs) {
  const children = [];
  const seen = { ready: 0, opened: 0, reads: 0 };
  const next = { ready: "go\n", opened: "read\n", reads: "pss\n" };
  const onMessage = (type) => {
    if (type in seen && ++seen[type] === PROCS) for (const c of children) c.stdin?.write(next[type]);
  };
  const runs = Array.from({ length: PROCS }, (_, proc) => runChild({ ...base, role: "multi", proc }, { timeoutMs, stdin: true, onMessage, children })
    .then((r) => {
      // One failure would leave the others waiting at a barrier: stop them.
      if (!r.ok) for (const c of children) if (c.exitCode === null && c.signalCode === null) { c.killedBySibling = true; c.kill("SIGKILL"); }
      return r;
    }));
  const res = await Promise.all(runs);
  const failed = res.find((r) => !r.ok && !/another of the processes/.test(r.error)) ?? res.find((r) => !r.ok);
  if (failed) return { ok: false, error: failed.error, stderrTail: failed.stderrTail, procs: res };
  const start = Math.min(...res.map((r) => r.startEpochMs)), end = Math.max(...res.map((r) => r.endEpochMs));
  return {
    ok: true,
    procs: res,
    openFirstReadMsMax: Math.max(...res.map((r) => r.openFirstReadMs)),
    openFirstReadMsMin: Math.min(...res.map((r) => r.openFirstReadMs)),
    rssMiBMax: Math.max(...res.map((r) => r.memAfterReads.rssMiB)),
    rssMiBMean: mib((res.reduce((a, r) => a + r.memAfterReads.rssMiB, 0) / PROCS) * 2 ** 20),
    pssMiBTotal: res.every((r) => r.memAllAlive.pssMiB !== undefined) ? mib(res.reduce((a, r) => a + r.memAllAlive.pssMiB, 0) * 2 ** 20) : undefined,
    // All reads of the PROCS processes (started together) over the time they took.
    aggregateReadsPerSec: Math.round((PROCS * READS) / ((end - start) / 1000)),
  };
}

/** Apparent and allocated bytes of a directory tree. */
function diskUsage(dir) {
  let apparent = 0, allocated = 0, files = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      if (e.isDirectory()) walk(p);
      else { apparent += st.size; allocated += st.blocks * 512; files++; }
    }
  };
  walk(dir);
  return { ok: true, apparentBytes: apparent, allocatedBytes: allocated, files };
}

/**
 * Copies the txtdb build into the run directory (or builds one there when `dist` has no
 * mod.js), beside a package.json whose `imports` map `#platform-dist` (the build loads its
 * adapter through it) and a node_modules link for koffi (the one package the build imports).
 */
function prepareTxtdb(dist, root) {
  const pkg = path.join(root, "txtdb-pkg");
  fs.mkdirSync(pkg, { recursive: true });
  const copy = path.join(pkg, "dist");
  const info = { source: dist };
  if (fs.existsSync(path.join(dist, "mod.js"))) {
    info.builtAt = fs.statSync(path.join(dist, "mod.js")).mtime.toISOString();
    fs.cpSync(dist, copy, { recursive: true });
  } else {
    process.stderr.write(`[scale] ${dist}/mod.js is missing: building a private copy with npx tsup --out-dir ${copy}\n`);
    const r = spawnSync("npx", ["tsup", "--out-dir", copy], { cwd: REPO, stdio: ["ignore", 2, 2] });
    if (r.status !== 0 || !fs.existsSync(path.join(copy, "mod.js"))) throw new Error(`tsup build into ${copy} failed (${r.status ?? r.signal})`);
    info.source = `built from ${REPO} into ${copy}`;
    info.builtAt = new Date().toISOString();
  }
  // The mapping of the package the build came from, else the one this repository uses.
  let platformDist = { deno: "./dist/adapters/deno.js", bun: "./dist/adapters/bun.js", default: "./dist/adapters/node.js" };
  try { platformDist = JSON.parse(fs.readFileSync(path.join(path.dirname(dist), "package.json"), "utf8")).imports["#platform-dist"] ?? platformDist; } catch { /* keep the default */ }
  const imports = { "#platform-dist": platformDist };
  fs.writeFileSync(path.join(pkg, "package.json"), JSON.stringify({ name: "txtdb-bench-copy", private: true, type: "module", imports }, null, 2));
  const nm = [path.join(path.dirname(dist), "node_modules"), path.join(REPO, "node_modules")].find((p) => fs.existsSync(path.join(p, "koffi")));
  if (!nm) throw new Error("no node_modules with koffi next to the txtdb build or in the repository");
  fs.symlinkSync(nm, path.join(pkg, "node_modules"));
  return { dist: copy, info };
}

function parseCount(s) {
  const m = /^([\d_.,e+]+)\s*([kKmM]?)$/.exec(String(s).trim());
  if (!m) return NaN;
  return Math.round(Number(m[1].replace(/[_,]/g, "")) * (m[2] === "" ? 1 : /k/i.test(m[2]) ? 1e3 : 1e6));
}

const short = (n) => (n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n));

async function main() {
  const opt = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const N = parseCount(opt("keys") ?? "10M");
  if (!Number.isSafeInteger(N) || N < 10_000) throw new Error(`--keys must be an integer of at least 10000 (got ${opt("keys")})`);
  const keep = process.argv.includes("--keep");
  const distArg = path.resolve(opt("dist") ?? path.join(REPO, "dist"));
  const engines = (opt("engines") ?? ENGINES.join(",")).split(",").map((e) => e.trim()).filter(Boolean);
  for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`unknown engine ${e} (know ${ENGINES.join(", ")})`);
  const fillDurability = opt("fill-durability") ?? "none";
  const timeoutScale = Number(opt("timeout-scale") ?? 1);
  // Time limits: generous, growing with N (1M keys: 17 min to fill, 7 min per measure).
  const fillTimeoutMs = timeoutScale * (600_000 + N * 0.4);
  const readTimeoutMs = timeoutScale * (300_000 + N * 0.1);

  fs.mkdirSync("/tmp/txtdb-bench", { recursive: true });
  const root = fs.mkdtempSync("/tmp/txtdb-bench/scale-");
  const log = (msg) => process.stderr.write(`[scale] ${msg}\n`);
  log(`${N.toLocaleString("en-US")} keys; engines ${engines.join(", ")}; stores under ${root}${keep ? " (kept)" : ""}`);

  const results = {};
  let txtdbBuild;
  const began = Date.now();
  try {
    for (const engine of engines) {
      const r = (results[engine] = {});
      let dist;
      if (engine === "txtdb") {
        try {
          txtdbBuild = prepareTxtdb(distArg, root);
          dist = txtdbBuild.dist;
        } catch (e) {
          r.fill = { ok: false, error: `no build: ${e.message}` };
          continue;
        }
      }
      const base = { engine, dir: path.join(root, engine), dist, keys: N, fillDurability };
      log(`${NAMES[engine]}: fill`);
      r.fill = await runChild({ ...base, role: "fill" }, { timeoutMs: fillTimeoutMs });
      if (!r.fill.ok) { log(`${NAMES[engine]}: fill failed: ${r.fill.error}`); continue; }
      r.disk = diskUsage(base.dir);
      for (const role of ["open", "random", "warm", "scan", "count", "backup"]) {
        log(`${NAMES[engine]}: ${role}`);
        r[role] = await runChild({ ...base, role }, { timeoutMs: readTimeoutMs });
        if (!r[role].ok) log(`${NAMES[engine]}: ${role} failed: ${r[role].error}`);
      }
      // Four copies of a reader whose memory grows with N (today's txtdb holds its whole
      // index in each process) could push the machine into the kernel's OOM killer.
      const oneRss = r.random.ok ? r.random.memAfterReads.rssMiB : 0;
      const freeMiB = os.freemem() / 2 ** 20;
      if (PROCS * oneRss > 0.8 * freeMiB) {
        r.multi = { ok: false, error: `skipped: ${PROCS} × ${Math.round(oneRss)} MiB (one reader's RSS) > 80% of ${Math.round(freeMiB)} MiB free` };
        log(`${NAMES[engine]}: ${PROCS} processes ${r.multi.error}`);
        continue;
      }
      log(`${NAMES[engine]}: ${PROCS} processes at once`);
      r.multi = await runMulti(base, readTimeoutMs);
      if (!r.multi.ok) log(`${NAMES[engine]}: ${PROCS} processes failed: ${r.multi.error}`);
    }
  } finally {
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  }

  // The table: one row per measure; ↑ higher is better, ↓ lower is better.
  const int = (n) => Math.round(n).toLocaleString("en-US");
  const dec = (n) => n.toLocaleString("en-US", { maximumFractionDigits: n < 10 ? 2 : 1, minimumFractionDigits: n < 10 ? 2 : 1 });
  const rows = [
    [`fill ${N.toLocaleString("en-US")} keys (10k writes per transaction), s`, "↓", "fill", (s) => s.fillMs / 1000, dec],
    ["compact after the fill (txtdb only), s", "↓", "fill", (s) => (s.compactMs === undefined ? null : s.compactMs / 1000), dec],
    ["open + first read, ms", "↓", "open", (s) => s.openFirstReadMs, dec],
    ["RSS after open, MiB", "↓", "random", (s) => s.memAfterOpen.rssMiB, dec],
    ["random point reads/s (100k keys uniform over N)", "↑", "random", (s) => s.readsPerSec, int],
    ["RSS after 100k random reads, MiB", "↓", "random", (s) => s.memAfterReads.rssMiB, dec],
    ["warm reads/s (100k-key subset, after one pass)", "↑", "warm", (s) => s.readsPerSec, int],
    ["1,000-key range scans/s", "↑", "scan", (s) => s.scansPerSec, dec],
    [`count of ${short(Math.min(N, COUNT_KEYS))} keys (values unread), ms`, "↓", "count", (s) => s.ms, dec],
    ["online backup while another process commits, MB/s", "↑", "backup", (s) => s.MBps, dec],
    ["  that process's longest commit during the backup, ms", "↓", "backup", (s) => s.stallDuringMs, dec],
    ["  its longest commit in the 1.5 s before, ms", "↓", "backup", (s) => s.stallBeforeMs, dec],
    [`${PROCS} processes at once: open + first read, ms (fastest)`, "↓", "multi", (s) => s.openFirstReadMsMin, dec],
    [`${PROCS} processes at once: open + first read, ms (slowest)`, "↓", "multi", (s) => s.openFirstReadMsMax, dec],
    [`${PROCS} processes at once: RSS after 100k random reads, MiB (largest)`, "↓", "multi", (s) => s.rssMiBMax, dec],
    [`${PROCS} processes at once: PSS of all ${PROCS}, MiB`, "↓", "multi", (s) => s.pssMiBTotal ?? null, dec],
    [`${PROCS} processes at once: random reads/s, all ${PROCS} reading together`, "↑", "multi", (s) => s.aggregateReadsPerSec, int],
    ["bytes on disk (allocated), MiB", "↓", "disk", (s) => mib(s.allocatedBytes), dec],
  ];
  const notes = [];
  const valueOfCell = (engine, step, fn) => {
    const r = results[engine];
    if (!r) return { text: "not run" };
    const s = r[step];
    if (!s) return { text: r.fill && !r.fill.ok ? "— (fill failed)" : "not run" };
    if (!s.ok) {
      let k = notes.findIndex((n) => n === `${NAMES[engine]} ${step}: ${s.error}`);
      if (k < 0) k = notes.push(`${NAMES[engine]} ${step}: ${s.error}`) - 1;
      return { text: `${s.error.startsWith("skipped") ? "skipped" : "failed"} [${k + 1}]` };
    }
    const v = fn(s);
    return v === null || v === undefined ? { text: "n/a" } : { v };
  };
  const ratio = (dir, mine, peer) => {
    if (mine.v === undefined || peer.v === undefined || mine.v === 0 || peer.v === 0) return "";
    const x = dir === "↑" ? mine.v / peer.v : peer.v / mine.v;
    return `${x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)}×`;
  };
  const date = new Date().toISOString().slice(0, 10);
  const versions = {};
  try { versions.lmdb = JSON.parse(fs.readFileSync(path.join(REPO, "node_modules/lmdb/package.json"), "utf8")).version; } catch { /* absent */ }
  try { versions.betterSqlite3 = JSON.parse(fs.readFileSync(path.join(REPO, "node_modules/better-sqlite3/package.json"), "utf8")).version; } catch { /* absent */ }
  const head = spawnSync("git", ["-C", REPO, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim();
  const lines = [
    `txtdb scale bench — ${date}, ${N.toLocaleString("en-US")} keys of ~100 B, node ${process.version}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${txtdbBuild ? `txtdb build ${txtdbBuild.info.source} (${txtdbBuild.info.builtAt}), ` : ""}repo at ${head}; lmdb-js ${versions.lmdb}, better-sqlite3 ${versions.betterSqlite3}`,
    "",
    "| measure | | txtdb | lmdb-js | better-sqlite3 | txtdb÷lmdb | txtdb÷sqlite |",
    "|---|:-:|---:|---:|---:|---:|---:|",
  ];
  for (const [label, dir, step, fn, fmt] of rows) {
    const cells = ENGINES.map((e) => valueOfCell(e, step, fn));
    const show = (c) => (c.v === undefined ? c.text : fmt(c.v));
    lines.push(`| ${label} | ${dir} | ${cells.map(show).join(" | ")} | ${ratio(dir, cells[0], cells[1])} | ${ratio(dir, cells[0], cells[2])} |`);
  }
  lines.push(
    "",
    "↑ higher is better, ↓ lower is better. The ratio columns read > 1 when txtdb is better: txtdb ÷ peer on ↑ rows, peer ÷ txtdb on ↓ rows.",
    `txtdb fills with durability "${fillDurability}" (10k-write transactions), then compacts and closes; it reads with the default durability. lmdb-js: defaults (durable commits). better-sqlite3: WAL, synchronous=FULL, a WITHOUT ROWID table keyed by "k" + 10-digit i, JSON values.`,
    "Each measure runs in a fresh node process; the OS page cache is warm (not dropped). RSS counts lmdb's mapped file pages it touched; PSS splits shared pages among the processes.",
    ...notes.map((n, k) => `[${k + 1}] ${n}`),
  );
  console.log(lines.join("\n"));

  const outDir = path.join(REPO, "bench-results");
  fs.mkdirSync(outDir, { recursive: true });
  let outFile = path.join(outDir, `scale-${date}-${short(N)}.json`);
  for (let k = 2; fs.existsSync(outFile); k++) outFile = path.join(outDir, `scale-${date}-${short(N)}-${k}.json`);
  fs.writeFileSync(outFile, JSON.stringify({
    date: new Date().toISOString(), keys: N, batch: BATCH, reads: READS, scanKeys: SCAN, scans: SCANS, procs: PROCS, fillDurability,
    host: { node: process.version, cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), platform: process.platform },
    versions, txtdbBuild: txtdbBuild?.info, repoHead: head, elapsedMs: Date.now() - began, results, table: lines,
  }, null, 2));
  log(`wrote ${path.relative(process.cwd(), outFile)} (${((Date.now() - began) / 1000).toFixed(0)} s in all)`);
}

if (process.argv[2] === "--child") {
  await child(JSON.parse(process.argv[3]));
  process.exit(0); // lmdb-js or a leftover timer must not keep the child alive
} else {
  await main();
}
