/**
 * A store shared by processes of different users: another user's read-only process that
 * can take no lease, group members writing and compacting together, and the owner's view
 * of them. Each test runs its other users' processes with another uid, so it runs as root
 * only (CI) and skips otherwise.
 */
import * as fs from "node:fs";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

const R = `[${runtime}]`;
// Asked only where processes can be spawned: Deno (which cannot, here) would need --allow-sys to tell.
const isRoot = canSpawn && typeof process.getuid === "function" && process.getuid() === 0;
const skip = !isRoot ? "needs root and child processes (runs other users' processes)" : false;
const NOBODY = 65534;
const OTHER = 65533;
const KEYS = 300;
const key = (i: number) => `k${String(i).padStart(4, "0")}`;

/**
 * A copy of what the worker runs (package.json, dist/, koffi, the built worker) in a directory
 * every user can read: the checkout itself may sit under a directory only its owner may
 * enter (a CI runner's home, a 0700 temporary directory), where another uid cannot load a
 * file of it. Made once per run.
 */
let runnable: string | undefined;
function foreignRunnable(): string {
  if (runnable) return runnable;
  fs.mkdirSync("/tmp/txtdb-tests", { recursive: true });
  fs.chmodSync("/tmp/txtdb-tests", 0o711);
  const root = fs.mkdtempSync("/tmp/txtdb-tests/foreign-run-");
  const from = process.cwd();
  fs.copyFileSync(path.join(from, "package.json"), path.join(root, "package.json"));
  fs.cpSync(path.join(from, "dist"), path.join(root, "dist"), { recursive: true });
  fs.cpSync(path.join(from, "node_modules/koffi"), path.join(root, "node_modules/koffi"), { recursive: true, dereference: true });
  fs.mkdirSync(path.join(root, ".build-tests/workers"), { recursive: true });
  fs.copyFileSync(path.join(from, ".build-tests/workers/foreign-user.js"), path.join(root, ".build-tests/workers/foreign-user.js"));
  // Readable and traversable by all: directories 0755, files 0644 (0755 where executable).
  const open = (p: string) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) {
      fs.chmodSync(p, 0o755);
      for (const e of fs.readdirSync(p)) open(path.join(p, e));
    } else {
      fs.chmodSync(p, st.mode & 0o111 ? 0o755 : 0o644);
    }
  };
  open(root);
  process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));
  return (runnable = root);
}

/** A foreign-user worker (tests/workers/foreign-user.ts) running as `uid`:`gid`. */
class Foreign {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  #buf = "";
  #waiters: { prefix: string; resolve: (json: any) => void }[] = [];
  stderr = "";

  constructor(dir: string, role: "reader" | "writer", uid: number, gid: number) {
    const nodeBinary = process.env.TXTDB_NODE ?? "node";
    const root = foreignRunnable();
    this.child = spawn(nodeBinary, [path.join(root, ".build-tests/workers/foreign-user.js"), dir, role, String(KEYS)], { cwd: root, uid, gid, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (d: string) => (this.stderr += d));
    this.child.stdout!.on("data", (d: string) => {
      this.#buf += d;
      let i: number;
      while ((i = this.#buf.indexOf("\n")) >= 0) {
        const line = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        this.lines.push(line);
        const w = this.#waiters.findIndex((w) => line.startsWith(w.prefix + " "));
        if (w >= 0) this.#waiters.splice(w, 1)[0]!.resolve(JSON.parse(line.slice(line.indexOf(" ") + 1)));
      }
    });
  }

  /** The JSON of the next line that starts with `prefix`. */
  next(prefix: string, timeoutMs = 60_000): Promise<any> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "${prefix}" line; stdout: ${this.lines.join("\n")}; stderr: ${this.stderr}`)), timeoutMs);
      this.child.once("exit", () => setTimeout(() => reject(new Error(`exited before "${prefix}"; stdout: ${this.lines.join("\n")}; stderr: ${this.stderr}`)), 50));
      this.#waiters.push({ prefix, resolve: (j) => (clearTimeout(t), resolve(j)) });
    });
  }

  async ask(cmd: string, prefix = cmd.split(" ")[0]!): Promise<any> {
    const p = this.next(prefix);
    this.child.stdin!.write(cmd + "\n");
    return p;
  }

  async end(): Promise<number | null> {
    const exited = new Promise<number | null>((r) => this.child.once("exit", (code) => r(code)));
    this.child.stdin!.end();
    return exited;
  }
}

/** A directory another user can reach: `/tmp/txtdb-tests` traversable, the store's parent `mode`. */
function sharedParent(label: string, mode = 0o755): string {
  const parent = tempDir(label);
  fs.chmodSync("/tmp/txtdb-tests", 0o711);
  fs.chmodSync(parent, mode);
  return parent;
}

async function writeAll(db: Awaited<ReturnType<typeof open>>, tag: string): Promise<void> {
  for (let i = 0; i < KEYS; i += 50) {
    await db.transaction(async (tx) => {
      for (let j = i; j < i + 50; j++) tx.set("ns", key(j), `${tag}-${j}-${"x".repeat(40)}`);
    });
  }
}

for (const order of ["snapshot first", "database first"] as const) {
  test(`${R} another user's read-only process (no lease) keeps its snapshot right or ends it with a TxtDbError after the owner compacts tables away (${order})`, { skip }, async () => {
    const dir = `${sharedParent("users-ro")}/store`;
    const db = await open(dir, { namespaces: ["ns"], mode: 0o644, segmentBytes: 4096, autoCompactBytes: 0 });
    try {
      await writeAll(db, "v0");
      await db.compact();
      await writeAll(db, "v1");
      await db.compact();
      assert.ok(fs.readdirSync(dir).some((n) => n.endsWith(".sst")), "the store has tables");
      const reader = new Foreign(dir, "reader", NOBODY, NOBODY);
      try {
        const ready = await reader.next("ready");
        assert.equal(ready.liveLeases, 1, "the reader holds no lease (leases/ is the owner's, 0o755)");
        const tables = fs.readdirSync(dir).filter((n) => n.endsWith(".sst"));
        await writeAll(db, "v2");
        await db.compact();
        await writeAll(db, "v3");
        await db.compact();
        for (const t of tables) assert.ok(!fs.existsSync(`${dir}/${t}`), `${t} was deleted`);
        const check = (r: any) => {
          if (r.error !== undefined) {
            assert.ok(["CLOSED", "CONFLICT"].includes(r.error), `a clear TxtDbError, not ${r.error}: ${r.message}`);
            assert.match(r.message, /no lease/);
          } else {
            for (let i = 0; i < KEYS; i++) assert.ok(String(r.values[i]).startsWith(`v1-${i}-`), `key ${i} reads ${r.values[i]} in a snapshot of v1`);
          }
        };
        if (order === "database first") {
          const d = await reader.ask("db");
          for (let i = 0; i < KEYS; i++) assert.ok(String(d.values[i]).startsWith(`v3-${i}-`), `db read of key ${i}: ${d.values[i]}`);
        }
        check(await reader.ask("snap"));
        const d = await reader.ask("db");
        for (let i = 0; i < KEYS; i++) assert.ok(String(d.values[i]).startsWith(`v3-${i}-`), `db read of key ${i}: ${d.values[i]}`);
        check(await reader.ask("snap"));
        assert.equal(await reader.end(), 0, reader.stderr);
      } finally {
        reader.child.kill();
      }
    } finally {
      await db.close();
    }
  });
}

test(`${R} another user's read-only process reads the frontier from the file, not a shared-memory mirror of its own that the owner's commits never update`, { skip }, async () => {
  const dir = `${sharedParent("users-mirror")}/store`;
  const first = await open(dir, { namespaces: ["ns"], mode: 0o644 });
  await writeAll(first, "v0");
  await first.close(); // the owner's mirror segment goes with it; mirror.lock's hint is stale
  const reader = new Foreign(dir, "reader", NOBODY, NOBODY);
  try {
    const ready = await reader.next("ready");
    const db = await open(dir);
    try {
      await writeAll(db, "v1");
      const stats = await db.stats();
      // The owner's process may or may not have the mirror; the foreign one must not have one
      // of its own, which no commit of the owner's processes writes.
      assert.equal(ready.mirror, false, `the foreign reader attached a mirror of its own (the owner's has one: ${stats.frontierMirror})`);
      const d = await reader.ask("db");
      for (let i = 0; i < KEYS; i++) assert.ok(String(d.values[i]).startsWith(`v1-${i}-`), `db read of key ${i}: ${d.values[i]}`);
    } finally {
      await db.close();
    }
    assert.equal(await reader.end(), 0, reader.stderr);
  } finally {
    reader.child.kill();
  }
});

test(`${R} a group-shared store (0o660): two users write and compact at once, every file keeps the store's mode`, { skip }, async () => {
  const parent = sharedParent("users-group", 0o777);
  const dir = `${parent}/store`;
  const gid = NOBODY;
  // The store is made by the first user, mode 0o660, group `gid`.
  const maker = new Foreign(dir, "writer", NOBODY, gid);
  await maker.next("ready");
  const other = new Foreign(dir, "writer", OTHER, gid);
  try {
    await other.next("ready");
    const [a, b] = await Promise.all([maker.ask("write a", "wrote"), other.ask("write b", "wrote")]);
    assert.equal(a.error, undefined, JSON.stringify(a));
    assert.equal(b.error, undefined, JSON.stringify(b));
    const [c, d] = await Promise.all([maker.ask("write c", "wrote"), other.ask("write d", "wrote")]);
    assert.equal(c.error, undefined, JSON.stringify(c));
    assert.equal(d.error, undefined, JSON.stringify(d));
    const walk = (p: string): string[] => [p, ...(fs.lstatSync(p).isDirectory() ? fs.readdirSync(p).flatMap((n) => walk(`${p}/${n}`)) : [])];
    const wrong = walk(dir).flatMap((p) => {
      const st = fs.lstatSync(p);
      const want = st.isDirectory() ? 0o770 : 0o660;
      return (st.mode & 0o7777) === want && st.gid === gid ? [] : [`${path.relative(dir, p) || "."}: 0o${(st.mode & 0o7777).toString(8)} gid ${st.gid}`];
    });
    assert.deepEqual(wrong, [], "files not of the store's mode");
    assert.equal(await maker.end(), 0, maker.stderr);
    assert.equal(await other.end(), 0, other.stderr);
  } finally {
    maker.child.kill();
    other.child.kill();
  }
});

const hasFlock = (await import("node:child_process")).spawnSync("flock", ["--version"]).status === 0;

test(`${R} a hostile group member plants files in leases/ and holds writer.lock with flock(1): the owner's compaction goes on, LOCK_TIMEOUT and txtdb doctor name the real holder, not the owner's own earlier record; once it dies the owner commits again`, { skip: skip || (!hasFlock && "no flock(1)") }, async () => {
  const dir = `${sharedParent("users-hostile", 0o777)}/store`;
  const db = await open(dir, { namespaces: ["ns"], mode: 0o660, lockTimeoutMs: 500, segmentBytes: 4096, autoCompactBytes: 0 });
  let holder: ChildProcess | undefined;
  try {
    await writeAll(db, "v0");
    const walk = (p: string): string[] => [p, ...(fs.lstatSync(p).isDirectory() ? fs.readdirSync(p).flatMap((n) => walk(`${p}/${n}`)) : [])];
    for (const p of walk(dir)) fs.lchownSync(p, 0, NOBODY);
    const { spawnSync } = await import("node:child_process");
    const as = { uid: OTHER, gid: NOBODY };
    const plant = spawnSync("sh", ["-c", `echo garbage > leases/0011223344556677.lease; ln -s /etc/passwd leases/8899aabbccddeeff.lease; mkfifo leases/1111111111111111.lease; echo x > leases/2222222222222222.lease-new`], { cwd: dir, ...as });
    assert.equal(plant.status, 0, String(plant.stderr));
    const r = await db.compact();
    assert.ok(r.segmentsFolded > 0, "planted leases do not stop compaction");
    assert.equal((await db.check()).ok, true);
    // The owner commits once more (its record is now in writer.lock), then another user's flock(1) holds the lock.
    await db.set("ns", "a", 1);
    holder = spawn("flock", ["-o", `${dir}/writer.lock`, "sleep", "60"], { ...as, stdio: "ignore" });
    const t0 = Date.now();
    let code = "";
    while (Date.now() - t0 < 10_000) {
      try {
        await db.set("ns", "b", 1);
        await new Promise((res) => setTimeout(res, 20)); // flock has not taken it yet
      } catch (e) {
        code = (e as { code: string }).code;
        assert.equal(code, "LOCK_TIMEOUT");
        assert.match((e as Error).message, new RegExp(`held by pid ${holder.pid} per the kernel's lock table`));
        assert.doesNotMatch((e as Error).message, new RegExp(`it says: pid ${process.pid}`));
        break;
      }
    }
    assert.equal(code, "LOCK_TIMEOUT");
    const cli = path.join(process.cwd(), "dist/cli.js");
    const doctor = spawnSync(process.env.TXTDB_NODE ?? "node", [cli, "doctor", dir], { encoding: "utf8", timeout: 60_000 });
    assert.match(doctor.stdout, new RegExp(`writer lock: held by pid ${holder.pid} per the kernel's lock table`), doctor.stdout + doctor.stderr);
    // No lease of its own: not a txtdb process, and the warning says which pid to end.
    assert.match(doctor.stdout, new RegExp(`warning: pid ${holder.pid} holds the writer lock without being a txtdb commit.*kill ${holder.pid}`), doctor.stdout);
    assert.equal(doctor.status, 1, doctor.stdout);
    assert.doesNotMatch(doctor.stdout, new RegExp(`writer lock: held by pid ${process.pid}`));
    holder.kill("SIGKILL");
    await new Promise((res) => holder!.once("exit", res));
    await db.set("ns", "c", 1); // the kernel let go of its lock
    assert.equal((await db.check()).ok, true);
  } finally {
    holder?.kill("SIGKILL");
    await db.close();
  }
});

test(`${R} a group member's process dies holding its lease and the writer's locks: another member's compaction goes on, even where leases/ is sticky and it may not remove the dead lease`, { skip }, async () => {
  const dir = `${sharedParent("users-dead", 0o777)}/store`;
  const gid = NOBODY;
  const maker = new Foreign(dir, "writer", NOBODY, gid);
  await maker.next("ready");
  assert.equal(await maker.end(), 0, maker.stderr);
  const victim = new Foreign(dir, "writer", OTHER, gid);
  await victim.next("ready");
  const w = await victim.ask("write v", "wrote");
  assert.equal(w.error, undefined, JSON.stringify(w));
  victim.child.kill("SIGKILL");
  await new Promise((res) => victim.child.once("exit", res));
  fs.chmodSync(`${dir}/leases`, 0o1770); // sticky: only a file's or the directory's owner may remove it
  assert.equal(fs.readdirSync(`${dir}/leases`).length, 1, "the dead process's lease is left");
  const third = new Foreign(dir, "writer", OTHER - 1, gid);
  try {
    await third.next("ready");
    const r = await third.ask("write t", "wrote");
    assert.equal(r.error, undefined, `compaction failed: ${JSON.stringify(r)}`);
    assert.ok(Number(r.segmentsFolded) > 0, JSON.stringify(r));
    assert.equal(await third.end(), 0, third.stderr);
  } finally {
    third.child.kill();
  }
  const db = await open(dir, { allowForeignOwner: true, readOnly: true });
  try {
    for (let i = 0; i < KEYS; i++) assert.equal(await db.get("ns", key(i)), `t-${i}`);
    assert.equal((await db.check()).ok, true);
  } finally {
    await db.close();
  }
});

test(`${R} a hostile group member holds a planted lease locked: compaction keeps what it might read, and txtdb doctor names the file, its owner and the holder's pid`, { skip: skip || (!hasFlock && "no flock(1)") }, async () => {
  const dir = `${sharedParent("users-planted", 0o777)}/store`;
  const db = await open(dir, { namespaces: ["ns"], mode: 0o660, segmentBytes: 4096, autoCompactBytes: 0 });
  let holder: ChildProcess | undefined;
  try {
    await writeAll(db, "v0");
    const walk = (p: string): string[] => [p, ...(fs.lstatSync(p).isDirectory() ? fs.readdirSync(p).flatMap((n) => walk(`${p}/${n}`)) : [])];
    for (const p of walk(dir)) fs.lchownSync(p, 0, NOBODY);
    const lease = `${dir}/leases/abcdefabcdefabcd.lease`;
    holder = spawn("flock", ["-o", lease, "sleep", "60"], { uid: OTHER, gid: NOBODY, stdio: "ignore" });
    const t0 = Date.now();
    while (!fs.existsSync(lease) && Date.now() - t0 < 10_000) await new Promise((res) => setTimeout(res, 20));
    await new Promise((res) => setTimeout(res, 200)); // its flock taken
    await writeAll(db, "v1");
    const r = await db.compact();
    assert.equal(r.segmentsFolded, 0, "a live lease with no pin keeps everything");
    const { spawnSync } = await import("node:child_process");
    const doctor = spawnSync(process.env.TXTDB_NODE ?? "node", [path.join(process.cwd(), "dist/cli.js"), "doctor", dir], { encoding: "utf8", timeout: 60_000 });
    assert.equal(doctor.status, 1, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, new RegExp(`warning: the lease ${lease.replace(/[.]/g, "\\.")} is locked but names no process \\(owned by uid ${OTHER}, locked by pid ${holder.pid} per the kernel's lock table\\)`), doctor.stdout);
    holder.kill("SIGKILL");
    await new Promise((res) => holder!.once("exit", res));
    const after = await db.compact();
    assert.ok(after.segmentsFolded > 0 && after.leasesReclaimed === 1, JSON.stringify(after, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
    assert.ok(!fs.existsSync(lease));
  } finally {
    holder?.kill("SIGKILL");
    await db.close();
  }
});
