// The floor of a multi-process commit on this machine: how many commits per second P
// processes, one commit in flight each, reach with only the system calls and waits of a
// commit protocol and no transaction work at all (no encoding, no index, no validation),
// side by side in alternating rounds with better-sqlite3 (the bench's W3 counters: WAL,
// synchronous=FULL) and with txtdb's W3 counters. Whatever a real engine does, it cannot
// beat the skeleton of its own protocol, so this says which multi-process goals a protocol
// can reach here at all.
//
// Skeletons (Node, flock(2) through koffi, the same calls txtdb's adapter makes):
//   group   txtdb's protocol: writer lock → read the tail end → append 100 B → write the
//           tail end → release; then, unless a published durable end already covers it,
//           the sync lock → look again → fdatasync → publish the durable end → release.
//           Waits go to a kernel wait on libuv's pool, as in lock.ts.
//   serial  one fdatasync per commit inside the writer lock (the classic way).
//   combine commit combining: each process posts its record into its slot; whoever takes
//           the writer lock appends every posted record, syncs once and marks them done;
//           the others wait for the release (a shared flock) and find theirs done.
//   parallel as group, but each process fdatasyncs its own append, with no sync lock
//           (concurrent fdatasyncs of the file; the kernel may serve them with one flush).
//   parallelBlocking  parallel, waiting for the writer lock with a blocking flock on the
//           main thread (no helper thread, no event-loop wake-up; a library could block
//           its caller's thread so only for a bounded time).
//
//   node scripts/bench/protocol-floor.mjs [procs=4,8] [rounds=3] [commits per process=2000]
//   FLOOR_KINDS=group,parallel node scripts/bench/protocol-floor.mjs …  (only those skeletons)
//
// Needs .build-bench/mp-txtdb.js (built by `npm run bench`; without it the txtdb row is
// left out). Prints one line per row: median total commits/s, ratio to better-sqlite3,
// fsyncs per commit, spread of per-process rates (max ÷ min).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const self = fileURLToPath(import.meta.url);
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
const SLOT_BYTES = 128, RECORD_BYTES = 100, SLOTS_MAX = 64;

if (process.argv[2] === "--worker") await worker(process.argv.slice(3));
else await main();

/** One skeleton process: `n` commits of `kind` in store `dir`; prints its JSON result. */
async function worker([kind, dir, nArg, idArg, procsArg]) {
  const koffi = require("koffi");
  const libc = koffi.load("libc.so.6");
  const flock = libc.func("int flock(int fd, int operation)");
  const n = Number(nArg), id = Number(idArg), procs = Number(procsArg);
  const open = (name) => fs.openSync(`${dir}/${name}`, "r+");
  const writer = open("writer.lock"), syncLock = open("sync.lock"), seg = open("seg"), state = open("state"), slots = open("slots");
  const waitLock = (fd, op) => new Promise((resolve, reject) => flock.async(fd, op, (e, r) => (e ? reject(e) : resolve(r))));
  const lock = async (fd) => {
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) await waitLock(fd, LOCK_EX);
  };
  const word = Buffer.alloc(8), durable = Buffer.alloc(8), record = Buffer.alloc(RECORD_BYTES, 1);
  const readWord = (buf, at) => (fs.readSync(state, buf, 0, 8, at), buf.readDoubleLE(0));
  const writeWord = (buf, value, at) => (buf.writeDoubleLE(value), fs.writeSync(state, buf, 0, 8, at));
  // state: [0] tail end, [8] durable end, [16 + 8 i] last sequence of slot i committed
  let fsyncs = 0;
  const mySlot = Buffer.alloc(SLOT_BYTES, 1), posted = Buffer.alloc(SLOT_BYTES * procs), done = Buffer.alloc(8 * procs), batch = Buffer.alloc(RECORD_BYTES * procs);
  /** Writer lock, append at the tail end, move the end, release: resolves with this record's end. */
  async function appendRecord(takeWriterLock) {
    await takeWriterLock();
    const end = readWord(word, 0);
    fs.writeSync(seg, record, 0, RECORD_BYTES, end);
    writeWord(word, end + RECORD_BYTES, 0);
    flock(writer, LOCK_UN);
    return end + RECORD_BYTES;
  }
  async function syncOwnAppend(takeWriterLock) {
    const mine = await appendRecord(takeWriterLock);
    if (readWord(durable, 8) >= mine) return;
    fs.fdatasyncSync(seg);
    fsyncs++;
    if (readWord(durable, 8) < mine) writeWord(durable, mine, 8);
  }
  const commit = {
    async group() {
      const mine = await appendRecord(() => lock(writer));
      if (readWord(durable, 8) >= mine) return;
      await lock(syncLock);
      if (readWord(durable, 8) < mine) {
        const upTo = readWord(word, 0);
        fs.fdatasyncSync(seg);
        fsyncs++;
        writeWord(durable, upTo, 8);
      }
      flock(syncLock, LOCK_UN);
    },
    async serial() {
      await lock(writer);
      const end = readWord(word, 0);
      fs.writeSync(seg, record, 0, RECORD_BYTES, end);
      fs.fdatasyncSync(seg);
      fsyncs++;
      writeWord(word, end + RECORD_BYTES, 0);
      flock(writer, LOCK_UN);
    },
    // Each process syncs its own append, without the sync lock: concurrent fdatasyncs of
    // the file, which the kernel may serve with one device flush.
    parallel: () => syncOwnAppend(() => lock(writer)),
    // parallel, waiting for the writer lock on the main thread (a blocking flock: one
    // context switch, no helper thread and no event-loop wake-up; a library could do this
    // only for a bounded time).
    parallelBlocking: () => syncOwnAppend(() => flock(writer, LOCK_EX)),
    async combine(seq) {
      mySlot.writeDoubleLE(seq, 0);
      fs.writeSync(slots, mySlot, 0, SLOT_BYTES, id * SLOT_BYTES);
      for (;;) {
        if (flock(writer, LOCK_EX | LOCK_NB) === 0) {
          fs.readSync(slots, posted, 0, posted.length, 0);
          fs.readSync(state, done, 0, done.length, 16);
          let end = readWord(word, 0), count = 0;
          for (let j = 0; j < procs; j++) {
            const s = posted.readDoubleLE(j * SLOT_BYTES);
            if (s > done.readDoubleLE(j * 8)) {
              posted.copy(batch, count++ * RECORD_BYTES, j * SLOT_BYTES, j * SLOT_BYTES + RECORD_BYTES);
              done.writeDoubleLE(s, j * 8);
            }
          }
          if (count > 0) {
            fs.writeSync(seg, batch, 0, count * RECORD_BYTES, end);
            end += count * RECORD_BYTES;
            fs.fdatasyncSync(seg);
            fsyncs++;
            writeWord(word, end, 0);
            fs.writeSync(state, done, 0, done.length, 16);
          }
          flock(writer, LOCK_UN);
          return; // posted before the lock was taken, so it was in this batch or an earlier one
        }
        await waitLock(writer, LOCK_SH);
        flock(writer, LOCK_UN);
        if (readWord(word, 16 + id * 8) >= seq) return;
      }
    },
  }[kind];
  for (let i = 1; i <= 200; i++) await commit(-i); // warm-up (combine: negative sequences are never "done")
  const { barrier } = await import("./barrier.mjs");
  await barrier(`${dir}/barrier`, procs, `${kind}-${id}`);
  fsyncs = 0;
  const t0 = performance.now();
  for (let seq = 1; seq <= n; seq++) {
    await commit(seq);
    await new Promise(setImmediate); // as a caller awaiting its commit would yield
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ops: n, ms, fsyncs, batches: 0 }));
}

function runAll(specs) {
  return Promise.all(specs.map(([cmd, args]) => new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1))) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}`))));
  })));
}

async function main() {
  const procsList = (process.argv[2] ?? "4,8").split(",").map(Number);
  const rounds = Number(process.argv[3] ?? 3);
  const n = Number(process.argv[4] ?? 2000);
  if (procsList.some((p) => !(p >= 1 && p <= SLOTS_MAX))) throw new Error(`procs must be 1..${SLOTS_MAX}`);
  const haveTxtdb = fs.existsSync(".build-bench/mp-txtdb.js");
  fs.mkdirSync("/tmp/txtdb-bench", { recursive: true });
  const row = {
    sqlite: async (dir, procs) => {
      const file = `${dir}/db.sqlite`;
      const Database = require("better-sqlite3");
      const s = new Database(file);
      s.pragma("journal_mode = WAL");
      s.exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)");
      s.close();
      return runAll(Array.from({ length: procs }, () => [process.execPath, ["scripts/bench/mp-sqlite.mjs", "w3", file, String(n), "1000", "200", String(procs), `${dir}/barrier`]]));
    },
    ...(haveTxtdb
      ? {
        txtdb: async (dir, procs) => {
          const { open } = await import(new URL("../../dist/mod.js", import.meta.url).href);
          const db = await open(`${dir}/store`, { namespaces: ["b"] });
          await db.close();
          return runAll(Array.from({ length: procs }, () => [process.execPath, [".build-bench/mp-txtdb.js", "w3", `${dir}/store`, String(n), "1000", "1", "200", String(procs), `${dir}/barrier`]]));
        },
      }
      : {}),
    ...Object.fromEntries((process.env.FLOOR_KINDS ?? "group,serial,combine,parallel,parallelBlocking").split(",").map((kind) => [kind, async (dir, procs) => {
      for (const f of ["writer.lock", "sync.lock"]) fs.writeFileSync(`${dir}/${f}`, "");
      fs.writeFileSync(`${dir}/seg`, Buffer.alloc(64 << 20)); // preallocated, as txtdb's segments are
      fs.writeFileSync(`${dir}/state`, Buffer.alloc(16 + 8 * SLOTS_MAX));
      fs.writeFileSync(`${dir}/slots`, Buffer.alloc(SLOT_BYTES * SLOTS_MAX));
      const fd = fs.openSync(`${dir}/seg`, "r+");
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      return runAll(Array.from({ length: procs }, (_, i) => [process.execPath, [self, "--worker", kind, dir, String(n), String(i), String(procs)]]));
    }])),
  };
  for (const procs of procsList) {
    const results = Object.fromEntries(Object.keys(row).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, run] of Object.entries(row)) {
        const dir = fs.mkdtempSync(`/tmp/txtdb-bench/floor-${name}-`);
        try {
          const res = await run(dir, procs);
          const rates = res.map((x) => x.ops / (x.ms / 1000));
          results[name].push({ total: rates.reduce((a, b) => a + b, 0), spread: Math.max(...rates) / Math.min(...rates), fsyncsPerOp: res.reduce((a, x) => a + (x.fsyncs ?? 0), 0) / res.reduce((a, x) => a + x.ops, 0) });
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const sqlite = median(results.sqlite.map((x) => x.total));
    for (const [name, xs] of Object.entries(results)) {
      const total = median(xs.map((x) => x.total));
      const fsyncs = name === "sqlite" ? "" : `  ${median(xs.map((x) => x.fsyncsPerOp)).toFixed(2)} fsyncs/commit`;
      console.log(`${procs} processes, 1 in flight  ${name.padEnd(8)} ${Math.round(total).toLocaleString("en-US").padStart(7)} commits/s  ${(total / sqlite).toFixed(2)}x better-sqlite3  spread ${median(xs.map((x) => x.spread)).toFixed(2)}${fsyncs}  (rounds: ${xs.map((x) => Math.round(x.total)).join(", ")})`);
    }
  }
}
