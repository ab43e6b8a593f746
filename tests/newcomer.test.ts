/**
 * What a newcomer meets first with the command line: a store they may not read, a command
 * that gives up waiting for a lock, a misspelt namespace, a number JSON cannot hold, a
 * directory given to import as its stdin. Each failure must end the command
 * with a clear message, advice a shell user can follow, and a documented exit code.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform } from "txtdb/internal";
import type { FileInfo, Platform } from "txtdb";
// The class cli/store.ts itself sees (the Node leg bundles the sources of cli/ and src/).
import { PortError } from "../src/port.ts";
import { dirState, pollingLocks } from "../cli/store.ts";
import { forCommandLine, parseValueArg } from "../cli/commands.ts";
import { readFailuresAsIo } from "../cli/stdin.ts";
import { TxtDbError } from "../src/errors.ts";

const R = `[${runtime}]`;

/** A directory owned by uid 0 that this process (uid 1001) may not read, as an owner-only store of root's looks to another user. */
function unreadableDir(): Platform {
  const dir = { isDirectory: true, isFile: false, isSymlink: false, size: 4096, mtimeMs: 0, uid: 0, ino: 1, dev: 1, mode: 0o700 } as unknown as FileInfo;
  const denied = (op: string) => (path: string): never => {
    throw new PortError("EACCES", op, path);
  };
  return { uid: 1001, stat: () => dir, lstat: denied("lstat"), readdir: denied("readdir") } as unknown as Platform;
}

test(`${R} a store directory the user may not read is an IO error saying whose it is and what to do, not an internal error with a stack`, () => {
  assert.throws(() => dirState(unreadableDir(), "/srv/data"), (e: unknown) => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, "IO", String(e));
    assert.match(err.message!, /^Cannot read "\/srv\/data": lstat failed on "\/srv\/data\/MANIFEST": EACCES; permission denied/);
    assert.match(err.message!, /it belongs to uid 0; this process runs as uid 1001/);
    assert.match(err.message!, /run txtdb as a user who may read the store, such as its owner/);
    return true;
  });
});

test(`${R} the command line's platform waits for locks by polling: no lock it hands out waits in the kernel on a helper thread`, async () => {
  const p = await defaultPlatform();
  const dir = tempDir("newcomer-locks");
  const wrapped = pollingLocks(p);
  const file = wrapped.open(`${dir}/lockfile`, { create: true });
  try {
    assert.equal(file.lockAsync, undefined, "a file's lock");
    assert.ok(file.tryLock(true), "tryLock still works");
    file.unlock();
  } finally {
    file.close();
  }
  if (p.openDirectoryLock) {
    const d = wrapped.openDirectoryLock!(dir);
    try {
      assert.equal(d.lockAsync, undefined, "a directory's lock");
    } finally {
      d.close();
    }
  }
  // The platform itself keeps its kernel waits (the library's own opens use them).
  const own = p.open(`${dir}/lockfile`);
  try {
    if (runtime !== "bun" || own.lockAsync) assert.equal(typeof own.lockAsync, "function");
  } finally {
    own.close();
  }
});

test(`${R} a namespace that does not exist: the command line's message says how to list and create namespaces from the shell, not to call createNamespace()`, () => {
  const e = forCommandLine(new TxtDbError("NAMESPACE_NOT_FOUND", 'Namespace "user" does not exist (at version 7); create it with createNamespace("user") or the namespaces open option', { details: { ns: "user" } })) as TxtDbError;
  assert.equal(e.code, "NAMESPACE_NOT_FOUND");
  assert.equal(e.message, 'Namespace "user" does not exist (at version 7); `txtdb namespaces <dir>` lists the store\'s namespaces, and `txtdb set <dir> <namespace> <key> <value>` creates one with its first key');
  assert.deepEqual(e.details, { ns: "user" });
  const other = new TxtDbError("CONFLICT", "lost");
  assert.equal(forCommandLine(other), other, "other errors pass unchanged");
});

test(`${R} a key or value on the command line is refused, as import refuses it in a line, when JSON.parse would change it: an integer no 64-bit float holds, a number past its range, a name twice in one object`, () => {
  const refused = (what: string, text: string, message: RegExp) =>
    assert.throws(() => parseValueArg(what, text), (e: unknown) => (e as { code?: string }).code === "INVALID_ARGUMENT" && message.test((e as Error).message), text);
  refused("key", "12345678901234567890", /^The key "12345678901234567890": the number 12345678901234567890 cannot be kept exactly as a 64-bit float \(it would read as 12345678901234567168\); write it as \{"\$bigint":"12345678901234567890"\}/);
  refused("value", '{"id":9007199254740993}', /the number 9007199254740993 cannot be kept exactly/);
  refused("value", "1e400", /the number 1e400 is too large for a 64-bit float \(it would read as Infinity\)/);
  refused("prefix", '["a",-1e999]', /the number -1e999 is too large/);
  refused("value", '{"a":1,"a":2}', /the name "a" appears twice in one object/);
  // What a float holds exactly, or is its own shortest form (as export writes it), is kept.
  assert.equal(parseValueArg("value", "9007199254740991"), 9007199254740991);
  assert.equal(parseValueArg("value", "100000000000000000000"), 1e20);
  assert.equal(parseValueArg("value", "1152921504606847000"), 2 ** 60);
  assert.equal(parseValueArg("value", "0.1000000000000000000001"), 0.1, "a decimal fraction rounds, as in every JSON reader");
  assert.equal(parseValueArg("value", '{"$bigint":"12345678901234567890"}'), 12345678901234567890n);
  assert.equal(parseValueArg("key", "alice"), "alice");
});

test(`${R} a failure to read import's stdin is an IO error saying what to give, not the runtime's own error`, async () => {
  async function* failing() {
    yield "{}";
    throw Object.assign(new Error("Is a directory (os error 21)"), { name: "IsADirectory" });
  }
  const got: string[] = [];
  await assert.rejects(async () => {
    for await (const c of readFailuresAsIo(failing())) got.push(c);
  }, (e: unknown) => (e as { code?: string }).code === "IO" && /^Reading stdin failed: Is a directory \(os error 21\); give the export lines as a file or a pipe/.test((e as Error).message));
  assert.deepEqual(got, ["{}"]);
  const mine = new TxtDbError("INVALID_ARGUMENT", "line 1: bad");
  async function* own() {
    yield 1;
    throw mine;
  }
  await assert.rejects(async () => {
    for await (const _ of readFailuresAsIo(own())) { /* read on */ }
  }, (e: unknown) => e === mine);
});

if (canSpawn) {
  const { spawn } = await import("node:child_process");
  const { CLI, runCli } = await import("./clirun.ts");

  test(`${R} txtdb set on a store whose writer lock another process holds exits 2 with LOCK_TIMEOUT after 30 s, on every runtime, rather than hang until the holder lets go`, async () => {
    const dir = `${tempDir("newcomer-lock-timeout")}/d`;
    assert.equal(runCli("node", ["set", dir, "n", "k", "1"]).code, 0);
    // Held by this process, for longer than the commands may take: as by a stopped holder.
    const p = await defaultPlatform();
    const holder = p.open(`${dir}/writer.lock`);
    assert.ok(holder.tryLock(true), "this test holds writer.lock");
    try {
      const runs = (["node", "deno", "bun"] as const).map((rt) =>
        new Promise<{ rt: string; code: number | null; err: string; ms: number }>((resolve) => {
          const [cmd, base] = CLI[rt];
          const t0 = performance.now();
          const child = spawn(cmd, [...base, "set", dir, "n", "k", "2"], { stdio: ["ignore", "ignore", "pipe"] });
          let err = "";
          child.stderr!.on("data", (d) => (err += d));
          // Well past the 30 s lock timeout: a command still running then hangs.
          const kill = setTimeout(() => child.kill("SIGKILL"), 50_000);
          child.on("exit", (code) => {
            clearTimeout(kill);
            resolve({ rt, code, err, ms: performance.now() - t0 });
          });
        })
      );
      for (const r of await Promise.all(runs)) {
        assert.equal(r.code, 2, `${r.rt}: exit code after ${Math.round(r.ms)} ms (null: killed, still running at 50 s); stderr: ${r.err}`);
        assert.match(r.err, /^txtdb: LOCK_TIMEOUT: .*writer\.lock/, r.rt);
        assert.doesNotMatch(r.err, /\n\s+at /, `${r.rt}: no stack trace`);
      }
    } finally {
      holder.close();
    }
    // The lock free again, the store takes the write.
    assert.equal(runCli("node", ["set", dir, "n", "k", "3"]).code, 0);
  });

  test(`${R} txtdb get, list, delete and export of a namespace that does not exist say how to list and create one from the shell, on every runtime`, () => {
    const dir = `${tempDir("newcomer-ns")}/d`;
    assert.equal(runCli("node", ["set", dir, "users", "alice", "1"]).code, 0);
    for (const rt of ["node", "deno", "bun"] as const) {
      for (const args of [["get", dir, "user", "alice"], ["list", dir, "user"], ["delete", dir, "user", "alice"], ["export", dir, "user"]]) {
        const r = runCli(rt, args);
        assert.equal(r.code, 2, `${rt} ${args[0]}: ${r.err}`);
        assert.match(r.err, /^txtdb: NAMESPACE_NOT_FOUND: Namespace "user" does not exist.*; `txtdb namespaces <dir>` lists the store's namespaces, and `txtdb set <dir> <namespace> <key> <value>` creates one/, `${rt} ${args[0]}`);
        assert.doesNotMatch(r.err, /createNamespace|open option/, `${rt} ${args[0]}`);
      }
    }
  });

  test(`${R} txtdb set of two integer keys past 2^53 that one float holds is refused, rather than write the second over the first`, () => {
    const dir = `${tempDir("newcomer-bigint")}/d`;
    for (const rt of ["node", "deno", "bun"] as const) {
      const r = runCli(rt, ["set", dir, "users", "12345678901234567891", '"second"']);
      assert.equal(r.code, 2, `${rt}: ${r.err}`);
      assert.match(r.err, /^txtdb: INVALID_ARGUMENT: The key "12345678901234567891": .*\{"\$bigint":"12345678901234567891"\}/, rt);
    }
    assert.equal(runCli("node", ["set", dir, "users", '{"$bigint":"12345678901234567890"}', '"first"']).code, 0);
    assert.equal(runCli("node", ["set", dir, "users", '{"$bigint":"12345678901234567891"}', '"second"']).code, 0);
    const listed = runCli("node", ["list", dir, "users"]).out.trim().split("\n");
    assert.deepEqual(listed.map((l) => JSON.parse(l).value), ["first", "second"]);
  });

  test(`${R} txtdb import with a directory as stdin (the file's name left out) exits 2 saying so and creates no store, on every runtime`, async () => {
    const fs = await import("node:fs");
    const { spawnSync } = await import("node:child_process");
    const work = tempDir("newcomer-stdin-dir");
    fs.mkdirSync(`${work}/backups`);
    const stdin = fs.openSync(`${work}/backups`, "r");
    try {
      for (const rt of ["node", "deno", "bun"] as const) {
        const [cmd, base] = CLI[rt];
        const r = spawnSync(cmd, [...base, "import", `${work}/${rt}`], { stdio: [stdin, "pipe", "pipe"], encoding: "utf8", timeout: 60_000 });
        assert.equal(r.status, 2, `${rt}: ${r.stderr}`);
        assert.match(r.stderr, /^txtdb: (INVALID_ARGUMENT: stdin is a directory|IO: Reading stdin failed: .*); give the export lines as a file or a pipe/, rt);
        assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, `${rt}: no stack trace`);
        assert.equal(fs.existsSync(`${work}/${rt}`), false, `${rt}: no store created`);
      }
    } finally {
      fs.closeSync(stdin);
    }
  });
}
