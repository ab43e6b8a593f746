/**
 * The frontier mirror (src/mirror.ts): the frontier's copy in System V shared memory that
 * lets a read on `db` probe for freshness without a system call (Node and Bun; Deno works
 * without it). What it must never cost: freshness. A read that begins after a commit
 * resolved in any process, of any runtime, with or without the mirror, sees it.
 */
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open } from "txtdb";
import { crc32c, defaultPlatform, findMirrorSegment, MIRROR_TRUST_MS, READER_IDLE_MS } from "txtdb/internal";
import type { FileInfo, SharedMemory } from "txtdb/internal";

const platform = await defaultPlatform();
const shm: SharedMemory | undefined = platform.sharedMemory;

/** The frontier file of the store in `dir`, as the mirror's header names it. */
function frontierOf(dir: string): FileInfo {
  const st = fs.statSync(`${dir}/frontier`);
  return { dev: st.dev, ino: st.ino } as FileInfo;
}

/** The store's mirror segment (id, attachments in every process), or undefined if it has none. */
function segmentOf(dir: string): { id: number; attached: number } | undefined {
  return findMirrorSegment(shm!, platform.uid!, frontierOf(dir));
}

/** Attachments of the store's mirror segment, or undefined if it has none. */
function attachedOf(dir: string): number | undefined {
  return segmentOf(dir)?.attached;
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
  const id = shm.create(4096, 0o600);
  try {
    const a = shm.attach(id, 4096);
    const b = shm.attach(id, 4096);
    a.bytes[100] = 42;
    assert.equal(b.bytes[100], 42, "two attachments share their bytes");
    const info = shm.stat(id)!;
    assert.equal(info.id, id);
    assert.equal(info.mode, 0o600);
    assert.equal(info.bytes, 4096);
    assert.equal(info.attached, 2);
    assert.equal(info.removed, false);
    assert.equal(info.uid, platform.uid);
    assert.ok(shm.list().some((x) => x.id === id && x.attached === 2), "list() has it");
    b.detach();
    assert.equal(shm.stat(id)!.attached, 1);
    shm.remove(id);
    assert.equal(shm.stat(id)!.removed, true, "marked, still attached once");
    assert.ok(shm.list().some((x) => x.id === id && x.removed), "list() still has it while attached");
    const c = shm.attach(id, 4096);
    assert.equal(c.bytes[100], 42, "a removed segment can still be attached by its id while it lives");
    c.detach();
    a.detach();
    assert.equal(shm.stat(id), undefined, "gone with its last detach");
  } finally {
    shm.remove(id);
  }
});

if (shm) {
  test(`[${runtime}] the mirror's segment is made by the first open, shared by later ones, and gone with the last close`, async () => {
    const dir = tempDir("mirror-life");
    const a = await open(dir, { namespaces: ["ns"] });
    assert.equal(attachedOf(dir), 1);
    assert.equal(a.stats().frontierMirror, true);
    const b = await open(dir, { readOnly: true });
    assert.equal(attachedOf(dir), 2, "a read-only open attaches the same segment");
    await a.set("ns", "k", 1);
    assert.equal(await b.get("ns", "k"), 1);
    await a.close();
    assert.equal(attachedOf(dir), 1);
    await b.close();
    assert.equal(attachedOf(dir), undefined, "gone with the last close");
    const info = [...fs.readdirSync(dir)].filter((n) => n.endsWith(".lock")).sort();
    assert.deepEqual(info, ["compact.lock", "mirror.lock", "readers.lock", "writer.lock"]);
    for (const n of ["mirror.lock", "readers.lock"]) assert.equal(fs.statSync(`${dir}/${n}`).mode & 0o777, 0o600);
  });

  test(`[${runtime}] a scribbled mirror is never trusted, a forged frontier in it is never read as the log's, and a garbled hint still finds the segment`, async () => {
    const dir = tempDir("mirror-hostile");
    // No fsync, so reads follow commits within the time a reader trusts the mirror.
    const db0 = await open(dir, { namespaces: ["ns"], durability: "none" });
    await db0.set("ns", "k", 1);
    const id = segmentOf(dir)!.id;
    // Another attachment of the same segment, as a hostile process of the same user would
    // have: it scribbles over the frontier's copy while commits go on.
    const evil = shm.attach(id, 4096);
    try {
      // mirror.lock names the segment; garbage there makes the next open look for it.
      fs.writeFileSync(`${dir}/mirror.lock`, new Uint8Array(8).fill(0x77));
      const db1 = await open(dir, { namespaces: ["ns"], durability: "none" });
      assert.equal(segmentOf(dir)!.attached, 3, "the open found the segment without the hint");
      const forged = new Uint8Array(36);
      const fv = new DataView(forged.buffer);
      fv.setFloat64(0, 1e6, true); // a version far ahead, at an offset past the log's end
      fv.setUint32(8, 1, true);
      fv.setFloat64(12, 99_999_999, true);
      fv.setUint32(20, 1, true);
      fv.setFloat64(24, 99_999_999, true);
      fv.setUint32(32, crc32c(forged.subarray(0, 32)), true); // with its checksum right
      for (let i = 2; i <= 60; i++) {
        if (i % 4 === 0) evil.bytes.fill(0xee, 32, 68); // garbage where the frontier is
        if (i % 4 === 1) evil.bytes[24] = (evil.bytes[24]! | 1); // a write "in flight" forever
        if (i % 4 === 2) evil.bytes.fill(0, 32, 68);
        if (i % 4 === 3) evil.bytes.set(forged, 32);
        await db0.set("ns", "k", i);
        assert.equal(await db1.get("ns", "k"), i, `commit ${i} not seen after the mirror was scribbled over`);
        if (i % 4 === 3) {
          // Right after a read (within the time it trusts the mirror), over the commit's own write.
          evil.bytes.set(forged, 32);
          assert.equal(await db1.get("ns", "k"), i, `a forged frontier in the mirror was read as the log's`);
        }
        await sleep(MIRROR_TRUST_MS * 2);
        assert.equal(await db1.get("ns", "k"), i);
      }
      await db1.close();
    } finally {
      evil.detach();
    }
    await db0.close();
    assert.equal(attachedOf(dir), undefined);
  });

  test(`[${runtime}] another program's segment is never written, and this store's segment of another layout makes a process go without the mirror, not beside it`, async () => {
    const dir = tempDir("mirror-foreign");
    const db0 = await open(dir, { namespaces: ["ns"] });
    const file = frontierOf(dir);
    await db0.close();
    // Another program's segment that looks like a candidate: this user's, 4 KiB, removed, attached.
    const other = shm.create(4096, 0o600);
    const keep = shm.attach(other, 4096);
    shm.remove(other);
    // And one naming this store in a layout this release does not use (as an older release would).
    const older = shm.create(4096, 0o600);
    const old = shm.attach(older, 4096);
    shm.remove(older);
    try {
      keep.bytes.fill(0x55);
      const ov = new DataView(old.bytes.buffer, old.bytes.byteOffset, 64);
      ov.setUint32(0, 0x316d7874, true); // "txm1"
      ov.setUint32(4, 1, true); // layout 1
      ov.setFloat64(8, file.dev, true);
      ov.setFloat64(16, file.ino, true);
      const a = await open(dir, { namespaces: ["ns"], durability: "none" });
      const b = await open(dir, { namespaces: ["ns"], durability: "none" });
      assert.equal(a.stats().frontierMirror, false, "another release has this store's mirror: none here");
      assert.equal(shm.stat(older)!.attached, 1, "nobody joined it");
      for (let i = 1; i <= 50; i++) {
        await a.set("ns", "k", i);
        assert.equal(await b.get("ns", "k"), i);
      }
      await a.close();
      await b.close();
      old.detach();
      // With it gone, this release makes its own.
      const c = await open(dir, { namespaces: ["ns"] });
      assert.equal(c.stats().frontierMirror, true);
      await c.close();
      assert.ok(keep.bytes.every((x) => x === 0x55), "another program's segment was written");
      assert.equal(shm.stat(other)!.attached, 1, "and left attached by its owner only");
    } finally {
      keep.detach();
      try {
        old.detach();
      } catch {
        // detached above
      }
    }
  });
}

if (shm) {
  test(`[${runtime}] a process without the mirror (an adapter without shared memory) makes its commits wait for readers of the mirror, who see each one at once`, async () => {
    const dir = tempDir("mirror-without");
    // No fsync: commits are faster than the 0.25 ms a reader trusts the mirror.
    const reader = await open(dir, { namespaces: ["ns"], durability: "none" });
    // Its waits pause the thread (Platform.pause): turning the event loop for them kept a
    // core busy, ~520 µs of CPU per commit of a Deno writer without FFI beside Node readers.
    let pauses = 0;
    const pausing = platform.pause ? { pause: (ms: number) => (pauses++, platform.pause!(ms)) } : {};
    const without = await open(dir, { namespaces: ["ns"], durability: "none", adapter: { ...platform, sharedMemory: undefined, ...pausing } });
    assert.equal(reader.stats().frontierMirror, true);
    assert.equal(without.stats().frontierMirror, false);
    assert.equal(await reader.get("ns", "k"), undefined); // registers the reader (its first read)
    for (let i = 1; i <= 200; i++) {
      await without.set("ns", "k", i);
      assert.equal(await reader.get("ns", "k"), i, `commit ${i} of the process without the mirror missed`);
    }
    assert.equal(without.stats().mirrorWaits, 200, "each commit waited, a reader being registered");
    if (platform.pause) assert.ok(pauses >= 200, `the waits paused (${pauses} pauses), not turned the event loop`);
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
      assert.equal(attachedOf(dir), 1, "this process reads through the mirror");
      const count = 600;
      const writer = startWorker(rt, "mirror-writer", [dir, String(count), marker], { denoFlags: ffi ? ["--allow-ffi"] : [] });
      await writer.waitFor("ready");
      assert.equal(attachedOf(dir), rt === "deno" && !ffi ? 1 : 2, "the writer has the mirror attached unless it is Deno without --allow-ffi");
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

  test(`[${runtime}] a process killed with the mirror attached leaves no segment behind (and a terminated worker thread's goes with its process); the next open makes one and reads right`, async () => {
    const dir = tempDir("mirror-killed");
    const db0 = await open(dir, { namespaces: ["ns"] });
    await db0.set("ns", "c", 1);
    await db0.close();
    const w = startWorker("node", "mirror-writer", [dir, "50", `${dir}.marker`]);
    await w.waitFor("ready");
    const id = segmentOf(dir)!.id;
    assert.equal(shm.stat(id)!.attached, 1);
    w.send("go");
    await sleep(50);
    w.kill9();
    await w.exited;
    assert.equal(shm.stat(id), undefined, "the killed process's segment went with it");
    const db = await open(dir, { namespaces: ["ns"] });
    const seen = await db.get("ns", "c");
    const b = await open(dir, { namespaces: ["ns"] });
    assert.equal(attachedOf(dir), 2);
    await b.set("ns", "c", 1000);
    assert.equal(await db.get("ns", "c"), 1000);
    assert.ok(typeof seen === "number");
    await b.close();
    await db.close();
    assert.equal(attachedOf(dir), undefined);
    fs.rmSync(`${dir}.marker`, { force: true });
  });
}
