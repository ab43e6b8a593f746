/**
 * Platform.identity: which file a path names, asked without the file's timestamps.
 *
 * Why it exists (adapters/statx.ts has the measurements): since Linux 6.13 a stat that
 * reports a file's change time makes the file's next write take a fine-grained timestamp,
 * dirtying its inode, and on ext4 the next fdatasync of the segment then writes the inode
 * table block too. The core checks at every commit that the writer lock file and the
 * segment are the files their paths name; with lstat, every commit's sync wrote one block
 * more. These tests check that the adapters' identity agrees with lstat, and that a commit
 * asks for no lstat or stat at all where the adapter has identity. (That statx without
 * the time fields leaves the file unmarked is the kernel's rule; what it saves is measured
 * by disk writes per commit, which the kernel counts per device: see statx.ts.)
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform, open } from "txtdb";
import type { Platform } from "txtdb";

const R = `[${runtime}]`;
const real = await defaultPlatform();
const isLinux = (await import("node:os")).platform() === "linux";

/** Deno without --allow-ffi has no identity (the core uses lstat there). */
function denoFfi(): boolean {
  const deno = (globalThis as unknown as { Deno?: { permissions: { querySync(p: { name: string }): { state: string } } } }).Deno;
  return deno !== undefined && deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

const expectIdentity = isLinux && (runtime !== "deno" || denoFfi());

test(`${R} identity() is there on Linux (Deno: with --allow-ffi), and agrees with lstat on files, links, directories and missing paths`, () => {
  assert.equal(typeof real.identity === "function", expectIdentity, "identity where statx can be called");
  if (!real.identity) return;
  const dir = tempDir("identity");
  const f = real.open(`${dir}/f`, { create: true });
  f.write(new Uint8Array([1, 2, 3]), 0);
  const info = real.lstat(`${dir}/f`)!;
  assert.deepEqual(real.identity(`${dir}/f`), { isFile: true, ino: info.ino, dev: info.dev });
  const byHandle = f.info();
  assert.equal(real.identity(`${dir}/f`)!.dev, byHandle.dev, "the device is encoded as fstat encodes it");
  fs.symlinkSync("f", `${dir}/l`);
  const l = real.lstat(`${dir}/l`)!;
  assert.deepEqual(real.identity(`${dir}/l`), { isFile: false, ino: l.ino, dev: l.dev }, "a final symlink is not followed");
  real.mkdir(`${dir}/d`);
  const d = real.lstat(`${dir}/d`)!;
  assert.deepEqual(real.identity(`${dir}/d`), { isFile: false, ino: d.ino, dev: d.dev });
  assert.equal(real.identity(`${dir}/missing`), undefined);
  assert.equal(real.identity(`${dir}/missing/deeper`), undefined);
  // Replaced under an open handle: the path names another inode now.
  const g = real.open(`${dir}/g`, { create: true });
  real.rename(`${dir}/g`, `${dir}/f`);
  assert.notEqual(real.identity(`${dir}/f`)!.ino, byHandle.ino);
  assert.equal(real.identity(`${dir}/f`)!.ino, g.info().ino);
  g.close();
  f.close();
  // A name with characters outside ASCII reaches the kernel as UTF-8.
  const odd = `${dir}/é ✓ ${"x".repeat(40)}`;
  real.open(odd, { create: true }).close();
  assert.equal(real.identity(odd)!.ino, real.lstat(odd)!.ino);
});

test(`${R} a commit asks for no lstat or stat where the adapter has identity()`, async () => {
  if (!real.identity) return;
  let counting = false;
  let stats = 0;
  const platform: Platform = Object.create(real);
  platform.lstat = (path: string) => {
    if (counting) stats++;
    return real.lstat(path);
  };
  platform.stat = (path: string) => {
    if (counting) stats++;
    return real.stat(path);
  };
  const db = await open(`${tempDir("identity")}/store`, { adapter: platform, namespaces: ["n"] });
  try {
    for (let i = 0; i < 5; i++) await db.set("n", i, i); // the first commits open the segment and the lock file
    counting = true;
    for (let i = 0; i < 50; i++) await db.set("n", i, i);
    await db.transaction(async (tx) => tx.set("n", "t", ((await tx.get<number>("n", "t")) ?? 0) + 1));
    counting = false;
    assert.equal(stats, 0, "no lstat or stat in 51 commits");
    assert.equal(await db.get("n", 49), 49);
  } finally {
    await db.close();
  }
});
