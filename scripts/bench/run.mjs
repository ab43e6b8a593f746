#!/usr/bin/env node
// `npm run bench`: every workload on txtdb (Node, Deno, Bun) and on the peers, in one run
// on one machine; prints a markdown table with txtdb÷peer ratios and writes JSON to
// bench-results/. `--quick` uses small sizes (under a minute); `--smoke` (used by the
// test command) uses tiny ones and checks only that every workload ran.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, openSync, writeSync, fdatasyncSync, closeSync, rmSync } from "node:fs";
import { build } from "esbuild";

const quick = process.argv.includes("--quick");
const onlyWorkload = process.argv.find((a) => a.startsWith("--workload="))?.slice(11);
const smoke = process.argv.includes("--smoke");
const scale = smoke ? 0.02 : quick ? 0.25 : 1;
mkdirSync("/tmp/txtdb-bench", { recursive: true });
const dir = mkdtempSync("/tmp/txtdb-bench/run-");

function fsyncCostUs() {
  const fd = openSync(`${dir}/fsync-probe`, "w");
  const buf = Buffer.alloc(100, 1);
  const n = smoke ? 20 : 300;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) { writeSync(fd, buf); fdatasyncSync(fd); }
  const us = ((performance.now() - t0) * 1000) / n;
  closeSync(fd);
  return Math.round(us);
}

await build({ entryPoints: ["scripts/bench/txtdb.ts", "scripts/bench/extras.ts", "scripts/bench/mp-txtdb.ts", "scripts/bench/locks.ts", "scripts/bench/queues.ts", "scripts/bench/twophase.ts", "scripts/bench/etcd.ts"], outdir: ".build-bench", bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning" });

function runJson(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: smoke ? 120_000 : 900_000, killSignal: "SIGKILL" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${(r.stderr ?? "").slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}

/** Runs `procs` worker processes at once and returns their JSON results. */
/** A bench worker that runs longer than this is killed and the run fails, naming it. */
const WORKER_TIMEOUT_MS = smoke ? 60_000 : 300_000;

function runParallel(specs) {
  return Promise.all(specs.map(([cmd, args]) => new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bench worker did not finish within ${WORKER_TIMEOUT_MS} ms: ${cmd} ${args.join(" ")}`));
    }, WORKER_TIMEOUT_MS);
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out.trim().split("\n").at(-1)));
      else reject(new Error(`${cmd} ${args.join(" ")} exited ${code}`));
    });
  })));
}

const txtdbCmd = {
  node: (a) => [process.execPath, [".build-bench/mp-txtdb.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/mp-txtdb.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/mp-txtdb.ts", ...a]],
};

/** Commit attempts (acknowledged + retried) per group commit, over bench workers' results. */
const attemptsPerGroupCommit = (res) => (res.reduce((a, r) => a + r.ops + r.retries, 0) / res.reduce((a, r) => a + r.batches, 0)).toFixed(1);

/** CPU time per timed transaction, all workers' threads together, where every worker's runtime reported it. */
const cpuPerTx = (res) => (res.every((r) => typeof r.cpuUs === "number") ? `; ${Math.round(res.reduce((a, r) => a + r.cpuUs, 0) / res.reduce((a, r) => a + r.ops, 0))} µs CPU per transaction` : "");

/** Per-process rates (ops/s) of one run: their spread says whether one process starved the others. */
const spread = (res) => {
  const rates = res.map((r) => r.ops / (r.ms / 1000));
  return (Math.max(...rates) / Math.min(...rates)).toFixed(2);
};
const plural = (procs) => `${procs} process${procs > 1 ? "es" : ""}`;

/**
 * Counters (W3) and bank transfers (W6) from several processes at once, with 1 and 16
 * transactions in flight per process, on txtdb, better-sqlite3 and lmdb-js (both one at a
 * time per process: see mp-lmdb.mjs); every run's result is verified (no lost update, money kept). A row's note
 * gives the spread of per-process rates (max ÷ min) and the worst per-process p99 of a
 * transaction (retries included). W6 on txtdb mixes runtimes: node, deno, bun, node, ...
 */
async function multiProcess() {
  const rows = [];
  const { open } = await import("txtdb");
  let Database;
  try { Database = (await import("better-sqlite3")).default; } catch { /* peer unavailable */ }
  let lmdbOpen;
  try { lmdbOpen = (await import("lmdb")).open; } catch { /* peer unavailable */ }
  // lmdb-js's map, fixed and the same in every process (see mp-lmdb.mjs).
  const LMDB_MAP_SIZE = 2 ** 30;
  // Every worker, txtdb's and the peers', warms up untimed for `warm`, waits at the barrier
  // until all have, then runs its timed phase for `run` (barrier.mjs parsePhase): durations,
  // not counts, because a txtdb process reaches its JIT's steady state only after ~12,000
  // transactions when four share two cores (CPU per transaction ~240 µs over the first
  // 4,000, ~100 µs after), and the rows are to measure the store, not the compiler. A
  // txtdb worker whose timed run has fewer than 16 in flight then warms up again in that
  // shape, for twice `warm` (mp-txtdb.ts says why); the peers' warm-up already has their
  // timed shape (one at a time).
  const warm = `${Math.max(40, Math.round(5000 * scale))}ms`;
  const run = `${Math.max(60, Math.round(4000 * scale))}ms`;
  const mixed = [txtdbCmd.node, txtdbCmd.deno, txtdbCmd.bun];
  for (const mode of ["w3", "w6"]) {
    const label = mode === "w3" ? "W3 counters" : "W6 bank transfers";
    for (const procs of mode === "w3" ? [1, 4, 8] : [4, 8]) {
      for (const inFlight of [1, 16]) {
        const workload = `${label}, ${plural(procs)}, ${inFlight} in flight each`;
        if (onlyWorkload && !workload.includes(onlyWorkload)) continue;
        const path = `${dir}/${mode}-${procs}-${inFlight}`;
        const db = await open(path, { namespaces: ["b"] });
        if (mode === "w6") await db.transaction((tx) => { for (let i = 0; i < 100; i++) tx.set("b", ["acct", i], 1000); });
        const start = (engine) => [String(warm), String(procs), `${path}.barrier-${engine}`];
        const cmds = Array.from({ length: procs }, (_, i) => (mode === "w6" ? mixed[i % 3] : txtdbCmd.node)([mode, path, run, "1000", String(inFlight), ...start("txtdb")]));
        const res = await runParallel(cmds);
        let sum = 0;
        for await (const e of db.list("b", { prefix: mode === "w6" ? ["acct"] : [] })) sum += e.value;
        await db.close();
        /** What the counters must sum to: every transaction of every worker, warm-up included. */
        const expectedOf = (res) => (mode === "w3" ? res.reduce((a, r) => a + r.warmOps + r.ops, 0) : 100_000);
        /** Total timed transactions per second: all workers' timed ops over the longest timed phase. */
        const rate = (res) => Math.round(res.reduce((a, r) => a + r.ops, 0) / (Math.max(...res.map((r) => r.ms)) / 1000));
        const expected = expectedOf(res);
        if (sum !== expected) throw new Error(`${workload} txtdb: sum ${sum}, expected ${expected}: LOST UPDATES`);
        const ops = res.reduce((a, r) => a + r.ops, 0);
        const fsyncs = res.reduce((a, r) => a + r.fsyncs, 0);
        rows.push({ workload, engine: "txtdb", runtime: mode === "w6" ? "mixed" : "node", ops, opsPerSec: rate(res), p99us: Math.max(...res.map((r) => r.p99us)),
          note: `verified; per-process spread ${spread(res)}×; ${(ops / fsyncs).toFixed(1)} commits per fsync; ${attemptsPerGroupCommit(res)} attempts per group commit; ${res.reduce((a, r) => a + r.conflicts, 0)} conflicts${cpuPerTx(res)}` });
        if (lmdbOpen && inFlight === 1) {
          const lpath = `${dir}/${mode}-${procs}-${inFlight}.lmdb`;
          const l = lmdbOpen({ path: lpath, mapSize: LMDB_MAP_SIZE });
          if (mode === "w6") await l.transaction(() => { for (let i = 0; i < 100; i++) l.put(["acct", i], 1000); });
          await l.close();
          const r2 = await runParallel(Array.from({ length: procs }, () => [process.execPath, ["scripts/bench/mp-lmdb.mjs", mode, lpath, run, "1000", ...start("lmdb")]]));
          const v = lmdbOpen({ path: lpath, mapSize: LMDB_MAP_SIZE });
          let t = 0;
          for (const { value } of v.getRange(mode === "w6" ? { start: ["acct"], end: ["acct", 1000] } : {})) t += value;
          await v.close();
          if (t !== expectedOf(r2)) throw new Error(`${workload} lmdb-js: sum ${t}, expected ${expectedOf(r2)}`);
          rows.push({ workload, engine: "lmdb-js", runtime: "node", ops: r2.reduce((a, r) => a + r.ops, 0), opsPerSec: rate(r2), p99us: Math.max(...r2.map((r) => r.p99us)), note: `verified; per-process spread ${spread(r2)}×; transactionSync: one at a time` });
        }
        if (Database && inFlight === 1) {
          const file = `${dir}/${mode}-${procs}.sqlite`;
          const s = new Database(file);
          s.pragma("journal_mode = WAL");
          s.exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)");
          if (mode === "w6") { const ins = s.prepare("INSERT INTO kv (k, v) VALUES (?, 1000)"); for (let i = 0; i < 100; i++) ins.run(1e6 + i); }
          s.close();
          const r2 = await runParallel(Array.from({ length: procs }, () => [process.execPath, ["scripts/bench/mp-sqlite.mjs", mode, file, run, "1000", ...start("sqlite")]]));
          const v = new Database(file);
          const total = v.prepare("SELECT COALESCE(SUM(v), 0) AS t FROM kv").get().t;
          v.close();
          if (total !== expectedOf(r2)) throw new Error(`${workload} sqlite: sum ${total}, expected ${expectedOf(r2)}`);
          rows.push({ workload, engine: "better-sqlite3", runtime: "node", ops: r2.reduce((a, r) => a + r.ops, 0), opsPerSec: rate(r2), p99us: Math.max(...r2.map((r) => r.p99us)), note: `verified; per-process spread ${spread(r2)}×; synchronous: one transaction at a time` });
        }
        if (inFlight === 16) {
          // The peers run one transaction at a time per process: the 16-in-flight rows are
          // compared with their same-run 1-in-flight figures.
          for (const engine of ["lmdb-js", "better-sqlite3"]) {
            const one = rows.find((r) => r.engine === engine && r.workload === `${label}, ${plural(procs)}, 1 in flight each`);
            if (one) rows.push({ ...one, workload, note: `${one.note} (the 1-in-flight run above)` });
          }
        }
      }
    }
  }
  return rows;
}

const locksCmd = {
  node: (a) => [process.execPath, [".build-bench/locks.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/locks.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/locks.ts", ...a]],
};

/** The p-th percentile of `xs` (µs), rounded. */
const pct = (xs, p) => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]);
};

/**
 * Locks on named resources (db.lock): uncontended acquire + release in one process on each
 * runtime (goal ≥ 20k/s), the handover of one X lock between two processes (goal p95 ≤ 1 ms,
 * p99 ≤ 10 ms), and the time a deadlock takes to be found (from the request that closes the
 * cycle to its DEADLOCK).
 */
async function lockRows() {
  const rows = [];
  const n = Math.max(200, Math.round(20_000 * scale));
  for (const rt of ["node", "deno", "bun"]) {
    const path = `${dir}/locks-${rt}`;
    const [r] = await runParallel([locksCmd[rt](["uncontended", path, String(n)])]);
    rows.push({ workload: "locks: uncontended acquire + release (X on a 2-part resource), one process", engine: "txtdb", runtime: rt, ops: r.ops, opsPerSec: Math.round(r.ops / (r.ms / 1000)), note: "goal ≥ 20k/s; two table changes per lock (flock, identity check, two reads, two writes: the owner's record, the table)" });
  }
  const hops = Math.max(100, Math.round(5_000 * scale));
  for (const [a, b] of [["node", "node"], ["node", "deno"], ["bun", "deno"]]) {
    const path = `${dir}/locks-pp-${a}-${b}`;
    const { open } = await import("txtdb");
    await (await open(path)).close();
    const res = await runParallel([locksCmd[a](["pingpong", path, String(hops), `${path}/stamp`]), locksCmd[b](["pingpong", path, String(hops), `${path}/stamp`])]);
    const samples = res.flatMap((r) => r.samplesUs);
    const ms = Math.max(...res.map((r) => r.ms));
    rows.push({ workload: "locks: handover of an X lock between two processes", engine: "txtdb", runtime: `${a}+${b}`, ops: samples.length, opsPerSec: Math.round((2 * hops) / (ms / 1000)), p50us: pct(samples, 50), p99us: pct(samples, 99), note: `release to the other process's grant: p95 ${pct(samples, 95)} µs, max ${pct(samples, 100)} µs; goal p95 ≤ 1,000 µs, p99 ≤ 10,000 µs` });
  }
  const cycles = Math.max(50, Math.round(2_000 * scale));
  for (const rt of ["node", "deno", "bun"]) {
    const [r] = await runParallel([locksCmd[rt](["deadlock", `${dir}/locks-dl-${rt}`, String(cycles)])]);
    rows.push({ workload: "locks: deadlock detection (two owners, from the closing request to its DEADLOCK)", engine: "txtdb", runtime: rt, ops: r.ops, opsPerSec: Math.round(r.ops / (r.ms / 1000)), p50us: pct(r.samplesUs, 50), p99us: pct(r.samplesUs, 99), note: "found by the table change that closes the cycle" });
  }
  return rows;
}

const queuesCmd = {
  node: (a) => [process.execPath, [".build-bench/queues.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/queues.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/queues.ts", ...a]],
};

/**
 * Queues (db.enqueue / db.listenQueue), durable (durability "full"): the throughput of four
 * consumer processes fed by one producer (goal ≥ 10k messages/s in total), on Node alone and
 * on a Node+Deno+Bun mix; and the latency from the producer's enqueue() call to a handler's
 * start in another process, at a paced rate (goal p50 ≤ 2 ms, p99 ≤ 20 ms). Every run checks
 * that each message was handled once.
 */
async function queueRows() {
  const rows = [];
  const n = Math.max(400, Math.round(40_000 * scale));
  // Untimed messages first, handled before the timed ones are enqueued: as the commit rows,
  // these measure steady state, not the JIT compiling the queue paths in five processes.
  const warm = Math.max(40, Math.round(5_000 * scale));
  const runs = [
    { label: "queues: throughput, 1 producer + 4 consumer processes", consumers: ["node", "node", "node", "node"], n, inFlight: 1024, pauseMs: 0, concurrency: 256, warm },
    { label: "queues: throughput, 1 producer + 4 consumer processes", consumers: ["node", "deno", "bun", "node"], n, inFlight: 1024, pauseMs: 0, concurrency: 256, warm },
    { label: "queues: latency enqueue() → handler in another process, paced", consumers: ["node", "node", "node", "node"], n: Math.max(100, Math.round(2_000 * scale)), inFlight: 1, pauseMs: 2, concurrency: 16, warm: Math.max(20, Math.round(200 * scale)) },
  ];
  let k = 0;
  for (const r of runs) {
    const path = `${dir}/queues-${k++}`;
    const res = await runParallel([
      ...r.consumers.map((rt) => queuesCmd[rt](["consume", path, String(r.consumers.length), String(r.concurrency)])),
      queuesCmd.node(["produce", path, String(r.consumers.length), String(r.n), String(r.inFlight), String(r.pauseMs), String(r.warm)]),
    ]);
    const producer = res.at(-1);
    const consumers = res.slice(0, -1);
    const handled = consumers.reduce((a, c) => a + c.ops, 0);
    const redelivered = consumers.reduce((a, c) => a + c.redelivered, 0);
    const warmHandled = consumers.reduce((a, c) => a + c.warmOps, 0);
    if (handled !== r.n || warmHandled !== r.warm || redelivered !== 0) throw new Error(`${r.label}: ${handled} handled of ${r.n} (warm-up ${warmHandled} of ${r.warm}), ${redelivered} redelivered`);
    const lastMs = Math.max(...consumers.map((c) => c.lastMs));
    const samples = consumers.flatMap((c) => c.samplesUs);
    const runtime = [...new Set(r.consumers)].join("+");
    const perConsumer = consumers.map((c) => c.ops).join("/");
    if (r.pauseMs === 0) {
      rows.push({ workload: r.label, engine: "txtdb", runtime, ops: handled, opsPerSec: Math.round(handled / ((lastMs - producer.startMs) / 1000)), note: `messages handled/s from the first enqueue to the last handler, after ${r.warm} untimed ones; producer alone ${Math.round(r.n / ((producer.endMs - producer.startMs) / 1000))}/s (${r.inFlight} in flight); per consumer ${perConsumer}; concurrency ${r.concurrency}; each once; goal ≥ 10k/s` });
    } else {
      rows.push({ workload: r.label, engine: "txtdb", runtime, ops: handled, opsPerSec: Math.round(handled / ((lastMs - producer.startMs) / 1000)), p50us: pct(samples, 50), p99us: pct(samples, 99), note: `one enqueue at a time, ${r.pauseMs} ms apart; p95 ${pct(samples, 95)} µs; ops/s not meaningful; goal p50 ≤ 2,000 µs, p99 ≤ 20,000 µs` });
    }
  }
  return rows;
}

const twophaseCmd = {
  node: (a) => [process.execPath, [".build-bench/twophase.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/twophase.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/twophase.ts", ...a]],
};

/**
 * Two-phase commit (Coordinator over two stores) beside single-store transactions in the
 * same process and run, one at a time and 16 in flight, on each runtime: transactions/s,
 * and fsyncs per transaction counted through the platform (every store, manifests and
 * directories included). Each transaction moves 1 between its own two keys (no conflicts).
 */
async function twoPhaseRows() {
  const rows = [];
  const n = Math.max(50, Math.round(2_000 * scale));
  for (const rt of ["node", "deno", "bun"]) {
    const path = `${dir}/2pc-${rt}`;
    mkdirSync(path, { recursive: true });
    const [r] = await runParallel([twophaseCmd[rt]([path, String(n)])]);
    for (const x of r.rows) {
      const what = x.kind === "single" ? "one store: db.transaction" : "two stores: coord.transaction";
      rows.push({
        workload: `2pc: a transfer (2 keys), ${what}, ${x.inFlight} in flight`,
        engine: "txtdb",
        runtime: rt,
        ops: x.ops,
        opsPerSec: Math.round(x.ops / (x.ms / 1000)),
        note: `${(x.fsyncs / x.ops).toFixed(2)} fsyncs per transaction${x.kind === "2pc" ? " (a prepare in each store, the decision, a commit in each store; shared by group commit when in flight)" : ""}`,
      });
    }
  }
  return rows;
}

const etcdCmd = {
  node: (a) => [process.execPath, [".build-bench/etcd.js", ...a]],
  deno: (a) => ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "--allow-net", "scripts/bench/etcd.ts", ...a]],
  bun: (a) => ["node_modules/.bin/bun", ["scripts/bench/etcd.ts", ...a]],
};

/** A free loopback TCP port. */
async function freePort() {
  const { createServer } = await import("node:net");
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The etcd backend beside the local engine, in the same run: a 1-member etcd cluster on
 * loopback (its data directory beside the local stores, on the same disk), the same
 * workloads (etcd.ts) on a directory and on an etcd:// location, from each runtime.
 * Without an `etcd` binary the rows say so.
 */
async function etcdRows() {
  const which = spawnSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" });
  const bin = which.stdout.trim();
  if (!bin) return [{ workload: "etcd backend", engine: "txtdb on etcd", runtime: "-", ops: 0, note: "no etcd binary (Debian: apt-get install etcd-server)" }];
  const [client, peer] = [await freePort(), await freePort()];
  const data = `${dir}/etcd-data`;
  const etcd = spawn(bin, ["--name", "bench", "--data-dir", data, "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`, "--initial-cluster", `bench=http://127.0.0.1:${peer}`, "--log-level", "error"], { stdio: "ignore" });
  try {
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${client}/health`);
        if (r.ok && (await r.json()).health === "true") break;
      } catch { /* not up yet */ }
      if (i > 100) throw new Error("etcd did not become healthy within 10 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const n = Math.max(100, Math.round(3_000 * scale));
    const names = { sequential: "db.set, one at a time (durable commits)", inflight64: "db.set, 64 in flight", txn: "db.transaction read-modify-write of one key, one at a time", reads: "db.get of a random key" };
    const rows = [];
    for (const rt of ["node", "deno", "bun"]) {
      const local = `${dir}/etcd-local-${rt}`;
      mkdirSync(local, { recursive: true });
      const [l] = await runParallel([etcdCmd[rt]([local, String(n)])]);
      const [e] = await runParallel([etcdCmd[rt]([`etcd://127.0.0.1:${client}/bench-${rt}`, String(n)])]);
      for (const [engine, res] of [["txtdb", l], ["txtdb on etcd", e]]) {
        for (const x of res.rows) {
          rows.push({ workload: `etcd vs directory: ${names[x.kind]}`, engine, runtime: rt, ops: x.ops, opsPerSec: Math.round(x.ops / (x.ms / 1000)), p50us: x.p50us, p99us: x.p99us, note: engine === "txtdb" ? "a store in a directory" : "1-member etcd 3.4 on loopback, same disk" });
        }
      }
    }
    return rows;
  } finally {
    etcd.kill("SIGKILL");
  }
}

const fsyncUs = fsyncCostUs();
// `--sections=single,mp,extras,locks,queues,2pc,etcd` runs only those parts (default: all); `--workload=<substring>`
// only the multi-process workloads whose name contains it.
const sections = (process.argv.find((a) => a.startsWith("--sections="))?.slice(11) ?? "single,mp,extras,locks,queues,2pc,etcd").split(",");
const results = [
  ...(sections.includes("single") ? [
    ...runJson(process.execPath, [".build-bench/txtdb.js", dir, String(scale)]),
    ...runJson("node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/txtdb.ts", dir, String(scale)]),
    ...runJson("node_modules/.bin/bun", ["scripts/bench/txtdb.ts", dir, String(scale)]),
    ...runJson(process.execPath, ["scripts/bench/peers.mjs", dir, String(scale)]),
    ...runJson(process.execPath, ["scripts/bench/w1-alternating.mjs", dir, String(scale)]),
  ] : []),
  ...(sections.includes("mp") ? await multiProcess() : []),
  ...(sections.includes("locks") ? await lockRows() : []),
  ...(sections.includes("queues") ? await queueRows() : []),
  ...(sections.includes("2pc") ? await twoPhaseRows() : []),
  ...(sections.includes("etcd") ? await etcdRows() : []),
  ...(sections.includes("extras") ? runJson(process.execPath, ["--expose-gc", ".build-bench/extras.js", dir, String(smoke ? 0.002 : scale)]) : []),
];
rmSync(dir, { recursive: true, force: true });

const workloads = [...new Set(results.filter((r) => r.ops > 0).map((r) => r.workload))];
const fmt = (n) => (n === undefined ? "" : n.toLocaleString("en-US"));
const lines = [
  `txtdb bench — ${new Date().toISOString().slice(0, 10)}, ${smoke ? "smoke" : quick ? "quick" : "full"} scale, write+fdatasync of 100 B: ${fsyncUs} µs`,
  "",
  "| workload | engine | runtime | ops/s | p50 µs | p99 µs | txtdb (node) ÷ this | note |",
  "|---|---|---|---:|---:|---:|---:|---|",
];
for (const w of workloads) {
  const rows = results.filter((r) => r.workload === w);
  const mine = rows.find((r) => r.engine === "txtdb" && (r.runtime.startsWith("node") || r.runtime === "mixed"));
  for (const r of rows) {
    const ratio = mine && r !== mine && r.opsPerSec ? (mine.opsPerSec / r.opsPerSec).toFixed(2) + "×" : "";
    lines.push(`| ${w} | ${r.engine} | ${r.runtime} | ${fmt(r.opsPerSec)} | ${fmt(r.p50us)} | ${fmt(r.p99us)} | ${ratio} | ${r.note ?? ""} |`);
  }
}
for (const r of results.filter((r) => r.ops === 0)) lines.push(`| ${r.workload} | ${r.engine} | ${r.runtime} | — | | | | ${r.note} |`);
console.log(lines.join("\n"));
mkdirSync("bench-results", { recursive: true });
writeFileSync(`bench-results/${smoke ? "smoke" : quick ? "quick" : "full"}.json`, JSON.stringify({ date: new Date().toISOString(), fsyncUs, scale, results }, null, 2));
if (smoke) {
  const missing = ["txtdb/node", "txtdb/deno", "txtdb/bun"].filter((k) => !results.some((r) => `${r.engine}/${r.runtime}` === k && r.ops > 0));
  if (missing.length) { console.error(`bench smoke: no results from ${missing.join(", ")}`); process.exit(1); }
}
