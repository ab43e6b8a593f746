/**
 * The frontier file changed under live processes by someone else (issue 9, defect 7): a
 * `: > frontier` or a `cp` over a live store truncates it. Readers must survive (errors
 * are allowed, a crash is not), and the store must work again once a writer rewrites it.
 * A shared mapping of the frontier made every Node and Bun reader die of SIGBUS here.
 * Run from the Node and Bun legs, with reader processes of all three runtimes.
 */
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open, TxtDbError } from "txtdb";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  for (const rt of RUNTIMES) {
    test(`[${runtime}] a ${rt} reader survives the frontier being truncated under it, and sees commits again once a writer rewrites it`, async () => {
      const dir = tempDir("frontier-cut");
      const db0 = await open(dir, { namespaces: ["ns"] });
      await db0.set("ns", "k", 1);
      await db0.close();

      const reader = startWorker(rt, "files-probe", ["reader", dir]);
      await reader.waitFor("ready");
      await reader.waitFor("saw 1");
      const frontier = `${dir}/frontier`;
      const original = fs.readFileSync(frontier);
      // Truncate while the reader reads in a loop: to nothing, to a few bytes, and back to
      // full length with garbage (what a `cp` of another file over it leaves midway).
      for (let round = 0; round < 5; round++) {
        fs.truncateSync(frontier, 0);
        await sleep(30);
        fs.writeFileSync(frontier, original.subarray(0, 10));
        await sleep(30);
        fs.writeFileSync(frontier, new Uint8Array(original.length).fill(0xee));
        await sleep(30);
        fs.truncateSync(frontier, 0);
        await sleep(30);
      }
      assert.equal(reader.child.exitCode, null, `the ${rt} reader died: ${reader.stderr}`);

      // A writer rewrites the frontier on its next commit; the reader follows again.
      const db = await open(dir, { namespaces: ["ns"] });
      await db.set("ns", "k", 2);
      assert.equal(await db.get("ns", "k"), 2);
      await db.close();
      await reader.waitFor("saw 2", 10_000);

      const finished = reader.finish();
      const line = await reader.waitFor("done ", 15_000);
      const exit = await finished;
      assert.equal(exit.signal, null, `the ${rt} reader was killed by ${exit.signal}: ${reader.stderr}`);
      assert.equal(exit.code, 0, `the ${rt} reader exited ${exit.code}: ${reader.stderr}`);
      const done = JSON.parse(line.slice(5)) as { reads: number; errors: number; lastError: string };
      // Most reads while the file is cut fail (CORRUPTION, as they should), and the reader is
      // told to stop soon after it saw 2: a few dozen answered reads is normal (37 of 8,800
      // failed a run of the Bun leg that counted answered reads alone).
      assert.ok(done.reads + done.errors > 100, `the reader read only ${done.reads + done.errors} times`);
      // Errors are allowed, but each must be a clear one.
      if (done.errors > 0) assert.match(done.lastError, /^[A-Z_]+ \S/, done.lastError);
    });
  }
}

// The frontier file is never synced: after a power loss it may lag the log by the commits of
// its last seconds, or be gone (tail.ts rule 11). Here the loss is staged on real files: the
// log is synced, and the frontier file put back to what it held after the third commit, or
// emptied, or deleted.
for (const loss of ["behind", "emptied", "deleted"] as const) {
  test(`[${runtime}] frontier file ${loss} (what a power loss can leave): a read-only open shows every commit once nobody else is alive, and a backup through it holds them; with another process alive it shows the frontier's state`, async () => {
    const dir = tempDir("frontier-lost");
    const db = await open(dir, { namespaces: ["ns"] });
    let old: Uint8Array | undefined;
    for (let i = 0; i < 10; i++) {
      await db.set("ns", ["k", i], i);
      if (i === 2) old = fs.readFileSync(`${dir}/frontier`);
    }
    await db.close();
    const frontier = `${dir}/frontier`;
    const lose = () => {
      if (loss === "behind") fs.writeFileSync(frontier, old!);
      if (loss === "emptied") fs.writeFileSync(frontier, "");
      if (loss === "deleted") fs.rmSync(frontier);
    };
    const keys = async (d: string, options = {}) => {
      const ro = await open(d, { readOnly: true, ...options });
      try {
        return (await ro.listNamespaces()).includes("ns") ? await ro.count("ns", { prefix: ["k"] }) : 0;
      } finally {
        await ro.close();
      }
    };

    // Another process alive (its lease): it could be between an append and its sync, so the
    // records past the frontier are not shown.
    const other = await open(dir, { readOnly: true });
    lose();
    if (loss === "deleted") {
      // With the file gone, a live writer would be publishing into the deleted one: this open
      // cannot tell how far the log is durable, and says so (an empty store would be a lie).
      await assert.rejects(keys(dir), (e: unknown) => e instanceof TxtDbError && e.code === "IO" && /frontier file .* is missing/.test(e.message));
    } else {
      const shownWithOther = await keys(dir);
      assert.ok(shownWithOther === (loss === "behind" ? 3 : 0), `with another process alive: ${shownWithOther} keys`);
    }
    await other.close();

    const ro = await open(dir, { readOnly: true });
    try {
      assert.equal(await ro.count("ns", { prefix: ["k"] }), 10, "every commit, though the frontier file was " + loss);
      assert.equal(await ro.get("ns", ["k", 9]), 9);
      assert.ok((await ro.check()).ok, JSON.stringify((await ro.check()).problems));
      const copy = await ro.backup(`${dir}-copy`);
      assert.equal(copy.version, 11n, "the backup holds the namespace's creation and the ten sets");
    } finally {
      await ro.close();
    }
    assert.equal(await keys(`${dir}-copy`), 10, "the copy holds every commit");
    assert.equal(fs.existsSync(frontier) ? fs.readFileSync(frontier).length : -1, loss === "behind" ? old!.length : loss === "emptied" ? 0 : -1, "the read-only open wrote nothing");
    const rw = await open(dir);
    assert.equal(await rw.count("ns", { prefix: ["k"] }), 10, "a writable open after it: the same commits");
    await rw.close();
  });
}

// Freshness (API.md): a read sees every commit that resolved before it began, in any process.
// Only the frontier says which did: with it garbled, a second handle used to answer "nothing
// new" and return the value from before a commit that had resolved.
test(`[${runtime}] a read fails with CORRUPTION when the frontier file is garbled, instead of answering from before a commit that resolved; a writer's next commit writes it again`, async () => {
  const dir = tempDir("frontier-garbled");
  const writer = await open(dir, { namespaces: ["ns"] });
  const reader = await open(dir);
  try {
    await writer.set("ns", "k", 1);
    assert.equal(await reader.get("ns", "k"), 1);
    await writer.set("ns", "k", 2); // resolved: every read that begins after it must see 2
    const frontier = `${dir}/frontier`;
    const bytes = fs.readFileSync(frontier);
    for (let i = 0; i < 36; i++) bytes[i] ^= 0x5a;
    fs.writeFileSync(frontier, bytes);
    await assert.rejects(reader.get("ns", "k"), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /frontier file .*\(garbled\)/.test(e.message) && (e.details as { offset: number }).offset === 0);
    await assert.rejects(reader.snapshot(), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION");
    await writer.set("ns", "k", 3);
    assert.equal(await reader.get("ns", "k"), 3, "the writer's commit wrote the frontier again");
    // Cut short: the same, for a read that must look at the file.
    await writer.set("ns", "k", 4);
    fs.writeFileSync(frontier, fs.readFileSync(frontier).subarray(0, 10));
    await assert.rejects(reader.get("ns", "k"), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION" && /frontier file .* cut short/.test(e.message));
  } finally {
    await reader.close();
    await writer.close();
  }
});
