/**
 * The frontier mirror (src/mirror.ts): the frontier's copy in System V shared memory that
 * lets a read on `db` probe for freshness without a system call (Node and Bun; Deno works
 * without it). What it must never cost: freshness. A read that begins after a commit
 * resolved in any process, of any runtime, with or without the mirror, sees it.
 */
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open } from "txtdb";
import { defaultPlatform, mirrorKey, MIRROR_TRUST_MS, READER_IDLE_MS } from "txtdb/internal";
import type { SharedMemory } from "txtdb/internal";

const platform = await defaultPlatform();
const shm: SharedMemory | undefined = platform.sharedMemory;

/** Attachments of the segment of `key` (every process's), or undefined if there is none. */
function attachedOf(key: number): number | undefined {
  const id = shm!.get(key, 4096, false, 0o600);
  return id === undefined ? undefined : shm!.stat(id)?.attached;
}

/** The mirror segment's key for the store in `dir`. */
function keyOf(dir: string): number {
  const st = fs.statSync(`${dir}/frontier`);
  return mirrorKey(st.dev, st.ino);
}

/** Deno with --allow-ffi has the mirror too. */
const ffiGranted = runtime === "deno" &&
  (globalThis as unknown as { Deno: { permissions: { querySync(d: { name: string }): { state: string } } } }).Deno.permissions.querySync({ name: "ffi" }).state === "granted";

test(`[${runtime}] the port offers System V shared memory on Node and Bun, and on Deno only with --allow-ffi`, () => {
  if (runtime === "deno" && !ffiGranted) {
    assert.equal(shm, undefined);
    return;
  }
  assert.ok(shm, "no sharedMemory on the platform");
  const key = 0x5f000000 + (process.pid % 0xffffff);
  assert.equal(shm.get(key, 4096, false, 0o600), undefined, "absent without create");
  const id = shm.get(key, 4096, true, 0o600)!;
  try {
    const a = shm.attach(id, 4096);
    const b = shm.attach(id, 4096);
    a.bytes[100] = 42;
    assert.equal(b.bytes[100], 42, "two attachments share their bytes");
    const info = shm.stat(id)!;
    assert.equal(info.mode, 0o600);
    assert.equal(info.bytes, 4096);
    assert.equal(info.attached, 2);
    assert.equal(info.removed, false);
    assert.equal(info.uid, platform.uid);
    b.detach();
    assert.equal(shm.stat(id)!.attached, 1);
    shm.remove(id);
    assert.equal(shm.stat(id)!.removed, true, "marked, still attached once");
    assert.equal(shm.get(key, 4096, false, 0o600), undefined, "a removed segment is not found by its key");
    assert.equal(a.bytes[100], 42, "still readable while attached");
    a.detach();
    assert.equal(shm.stat(id), undefined, "gone with its last detach");
  } finally {
    shm.remove(id);
  }
});

if (shm) {
  test(`[${runtime}] the mirror's segment is made by the first open, shared by later ones, and removed by the last close`, async () => {
    const dir = tempDir("mirror-life");
    const a = await open(dir, { namespaces: ["ns"] });
    const key = keyOf(dir);
    assert.equal(attachedOf(key), 1);
    assert.equal(a.stats().frontierMirror, true);
    const b = await open(dir, { readOnly: true });
    assert.equal(attachedOf(key), 2, "a read-only open attaches the same segment");
    await a.set("ns", "k", 1);
    assert.equal(await b.get("ns", "k"), 1);
    await a.close();
    assert.equal(attachedOf(key), 1);
    await b.close();
    assert.equal(attachedOf(key) !== undefined, false, "the last close removes it");
    const info = [...fs.readdirSync(dir)].filter((n) => n.endsWith(".lock")).sort();
    assert.deepEqual(info, ["compact.lock", "mirror.lock", "readers.lock", "writer.lock"]);
    for (const n of ["mirror.lock", "readers.lock"]) assert.equal(fs.statSync(`${dir}/${n}`).mode & 0o777, 0o600);
  });

  test(`[${runtime}] a segment left by a killed process is taken over by the next open, and a scribbled one is never trusted`, async () => {
    const dir = tempDir("mirror-hostile");
    // No fsync, so reads follow commits within the time a reader trusts the mirror.
    const db0 = await open(dir, { namespaces: ["ns"], durability: "none" });
    await db0.set("ns", "k", 1);
    const key = keyOf(dir);
    const id = shm.get(key, 4096, false, 0o600)!;
    // Another attachment of the same segment, as a hostile process of the same user would
    // have: it scribbles over the frontier's copy while commits go on.
    const evil = shm.attach(id, 4096);
    try {
      const db1 = await open(dir, { namespaces: ["ns"], durability: "none" });
      for (let i = 2; i <= 40; i++) {
        if (i % 3 === 0) evil.bytes.fill(0xee, 32, 68); // garbage where the frontier is
        if (i % 3 === 1) evil.bytes[24] = (evil.bytes[24]! | 1); // a write "in flight" forever
        if (i % 3 === 2) evil.bytes.fill(0, 32, 68);
        await db0.set("ns", "k", i);
        assert.equal(await db1.get("ns", "k"), i, `commit ${i} not seen after the mirror was scribbled over`);
        await sleep(MIRROR_TRUST_MS * 2);
        assert.equal(await db1.get("ns", "k"), i);
      }
      await db1.close();
    } finally {
      evil.detach();
    }
    await db0.close();
    assert.equal(attachedOf(key) !== undefined, false);

    // A segment with this store's key but someone else's header: not used, and reads stay right.
    const squat = shm.get(key, 4096, true, 0o600)!;
    const keep = shm.attach(squat, 4096);
    try {
      keep.bytes.fill(0x55, 0, 68);
      const a = await open(dir, { namespaces: ["ns"] });
      const b = await open(dir, { namespaces: ["ns"] });
      await a.set("ns", "k", 100);
      assert.equal(await b.get("ns", "k"), 100);
      assert.equal(keep.bytes[0], 0x55, "a segment that is not ours is not written");
      await a.close();
      await b.close();
    } finally {
      keep.detach();
      shm.remove(squat);
    }
  });
}

if (shm) {
  test(`[${runtime}] a mirror segment removed (ipcrm) under running processes is joined by the next open, not split from: its reads see every commit`, async () => {
    const dir = tempDir("mirror-ipcrm");
    // No fsync: a commit takes less than the 0.25 ms a reader trusts the mirror for, so a
    // reader of another segment would read past the commit without probing the file.
    const writer = await open(dir, { namespaces: ["ns"], durability: "none" });
    const key = keyOf(dir);
    const id = shm.get(key, 4096, false, 0o600)!;
    shm.remove(id); // what `ipcrm -m <id>` does
    assert.equal(shm.get(key, 4096, false, 0o600), undefined, "its key is gone");
    const reader = await open(dir, { namespaces: ["ns"], durability: "none" });
    assert.equal(shm.stat(id)?.attached, 2, "the new open joined the removed segment");
    assert.equal(shm.get(key, 4096, false, 0o600), undefined, "and made no second one");
    for (let i = 1; i <= 300; i++) {
      await writer.set("ns", "k", i);
      assert.equal(await reader.get("ns", "k"), i, `commit ${i} missed by a process that opened after the segment was removed`);
    }
    await writer.close();
    await reader.close();
    assert.equal(shm.stat(id), undefined, "gone with its last process");
  });
}

if (shm) {
  test(`[${runtime}] a process without the mirror (an adapter without shared memory) makes its commits wait for readers of the mirror, who see each one at once`, async () => {
    const dir = tempDir("mirror-without");
    // No fsync: commits are faster than the 0.25 ms a reader trusts the mirror.
    const reader = await open(dir, { namespaces: ["ns"], durability: "none" });
    const without = await open(dir, { namespaces: ["ns"], durability: "none", adapter: { ...platform, sharedMemory: undefined } });
    assert.equal(reader.stats().frontierMirror, true);
    assert.equal(without.stats().frontierMirror, false);
    assert.equal(await reader.get("ns", "k"), undefined); // registers the reader (its first read)
    for (let i = 1; i <= 200; i++) {
      await without.set("ns", "k", i);
      assert.equal(await reader.get("ns", "k"), i, `commit ${i} of the process without the mirror missed`);
    }
    assert.equal(without.stats().mirrorWaits, 200, "each commit waited, a reader being registered");
    assert.equal(reader.stats().mirrorWaits, 0);
    // A reader that stopped reading lets go of readers.lock: commits stop waiting for it, and
    // its next read, which registers again, still sees them.
    await sleep(READER_IDLE_MS * 3);
    for (let i = 201; i <= 210; i++) await without.set("ns", "k", i);
    assert.equal(without.stats().mirrorWaits, 200, "no wait for an idle reader");
    assert.equal(await reader.get("ns", "k"), 210);
    await without.set("ns", "k", 211);
    assert.equal(await reader.get("ns", "k"), 211);
    assert.equal(without.stats().mirrorWaits, 201, "registered again by its read");
    await reader.close();
    // No reader with the mirror left: no wait.
    await without.set("ns", "k", 0);
    assert.equal(without.stats().mirrorWaits, 201);
    await without.close();
  });
}

if (canSpawn && shm) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  const writers: { rt: (typeof RUNTIMES)[number]; ffi: boolean }[] = [...RUNTIMES.map((rt) => ({ rt, ffi: false })), { rt: "deno", ffi: true }];
  for (const { rt, ffi } of writers) {
    const how = rt === "deno" && !ffi ? "a writer without it waits" : "the writer updates it";
    test(`[${runtime}] a read on db sees every commit that resolved in a ${rt}${ffi ? " --allow-ffi" : ""} process before the read began (reads through the mirror; ${how})`, async () => {
      const dir = tempDir("mirror-fresh");
      const marker = `${dir}.marker`;
      const db = await open(dir, { namespaces: ["ns"] });
      assert.equal(attachedOf(keyOf(dir)), 1, "this process reads through the mirror");
      const count = 600;
      const writer = startWorker(rt, "mirror-writer", [dir, String(count), marker], { denoFlags: ffi ? ["--allow-ffi"] : [] });
      await writer.waitFor("ready");
      assert.equal(attachedOf(keyOf(dir)), rt === "deno" && !ffi ? 1 : 2, "the writer has the mirror attached unless it is Deno without --allow-ffi");
      writer.send("go");
      let done = false;
      void writer.waitFor("done", 120_000).then(() => (done = true), () => (done = true));
      let checks = 0;
      let behind = 0;
      let last = 0;
      while (!done) {
        // A burst between turns of the event loop (which must turn for the worker's output).
        for (let k = 0; k < 200; k++) {
          let resolved = 0;
          try {
            resolved = Number(fs.readFileSync(marker, "utf8"));
          } catch {
            resolved = 0; // not written yet
          }
          const v = ((await db.get("ns", "c")) as number | undefined) ?? 0;
          checks++;
          if (v < resolved) behind++;
          last = v;
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      assert.equal(behind, 0, `${behind} of ${checks} reads missed a commit the ${rt} writer had resolved before they began`);
      assert.ok(checks > 1000, `only ${checks} reads were checked`);
      assert.equal(await db.get("ns", "c"), count);
      assert.ok(last <= count);
      const exit = await writer.finish();
      assert.equal(exit.code, 0, writer.stderr);
      await db.close();
      fs.rmSync(marker, { force: true });
    });
  }

  test(`[${runtime}] a segment left attached-by-nobody by a killed process is reinitialised by the next open, which then reads right`, async () => {
    const dir = tempDir("mirror-killed");
    const db0 = await open(dir, { namespaces: ["ns"] });
    await db0.set("ns", "c", 1);
    await db0.close();
    const w = startWorker("node", "mirror-writer", [dir, "50", `${dir}.marker`]);
    await w.waitFor("ready");
    const key = keyOf(dir);
    assert.equal(attachedOf(key), 1);
    w.send("go");
    await sleep(50);
    w.kill9();
    await w.exited;
    assert.equal(attachedOf(key), 0, "the killed process's segment stays, attached by nobody");
    const db = await open(dir, { namespaces: ["ns"] });
    const seen = await db.get("ns", "c");
    const b = await open(dir, { namespaces: ["ns"] });
    await b.set("ns", "c", 1000);
    assert.equal(await db.get("ns", "c"), 1000);
    assert.ok(typeof seen === "number");
    await b.close();
    await db.close();
    assert.equal(attachedOf(key) !== undefined, false);
    fs.rmSync(`${dir}.marker`, { force: true });
  });
}
