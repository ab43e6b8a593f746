/**
 * Symlinks and other users' directories (issue 9, defect 10). Someone who can write a
 * store directory plants `frontier`, `MANIFEST`, the next segment or `MANIFEST.tmp` as a
 * symlink to a file outside: txtdb must never write through it nor read from it. And a
 * store directory another user owns is refused unless the caller says it trusts them.
 * In-process, so it runs on every runtime, against the real adapter and the simulated one.
 */
import { assert, tempDir, test, runtime } from "./harness.ts";
import * as fs from "node:fs";
import { open, TxtDbError } from "txtdb";
import * as internal from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";
import type { Platform } from "txtdb/internal";

// checkStoreDirectory lives in src/dirsafety.ts; until txtdb/internal re-exports it, the
// test takes it from the source (its errors are then another copy of TxtDbError: the
// assertions below look at `name` and `code`, not the class).
type CheckFn = (platform: Platform, path: string, options?: { allowForeignOwner?: boolean }) => void;
const checkStoreDirectory: CheckFn = "checkStoreDirectory" in internal
  ? (internal as unknown as { checkStoreDirectory: CheckFn }).checkStoreDirectory
  : (await import("../src/dirsafety.ts")).checkStoreDirectory as unknown as CheckFn;

const R = `[${runtime}]`;
const isRoot = runtime !== "deno" ? process.geteuid?.() === 0 : fs.statSync(tempDir("who")).uid === 0;

function txtDbError(code: string, ...patterns: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof Error && e.name === "TxtDbError", `expected a TxtDbError, got ${String(e)}`);
    assert.equal((e as TxtDbError).code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  };
}

/** A file outside the store, as another user's target. */
function outsideFile(content: string | Uint8Array): string {
  const path = `${tempDir("outside")}/victim`;
  fs.writeFileSync(path, content);
  return path;
}

test(`${R} a frontier planted as a symlink is never written through: open() fails with CORRUPTION naming it`, async () => {
  const dir = tempDir("link-frontier");
  await (await open(dir, { namespaces: ["ns"] })).close();
  const victim = outsideFile("SECRET");
  fs.rmSync(`${dir}/frontier`);
  fs.symlinkSync(victim, `${dir}/frontier`);
  await assert.rejects(open(dir), txtDbError("CORRUPTION", /frontier/, /symlink/));
  assert.equal(fs.readFileSync(victim, "utf8"), "SECRET", "the file behind the link is untouched");
});

test(`${R} a MANIFEST planted as a symlink is never read through: open() fails with CORRUPTION naming it`, async () => {
  const dir = tempDir("link-manifest");
  await (await open(dir, { namespaces: ["ns"] })).close();
  // The link leads to a perfectly valid manifest elsewhere: following it would "work".
  const victim = outsideFile(fs.readFileSync(`${dir}/MANIFEST`));
  fs.rmSync(`${dir}/MANIFEST`);
  fs.symlinkSync(victim, `${dir}/MANIFEST`);
  await assert.rejects(open(dir), txtDbError("CORRUPTION", /MANIFEST/, /symlink/));
  await assert.rejects(open(dir, { readOnly: true }), txtDbError("CORRUPTION", /MANIFEST/));
});

test(`${R} the next segment planted as a symlink is never written through at roll-over`, async () => {
  const dir = tempDir("link-segment");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 256 });
  const victim = outsideFile("");
  fs.symlinkSync(victim, `${dir}/seg-0000000002.log`);
  let failure: unknown;
  for (let i = 0; i < 20 && failure === undefined; i++) {
    await db.set("ns", i, "x".repeat(50)).catch((e: unknown) => (failure = e));
  }
  assert.ok(failure, "a commit that has to roll over into the planted link fails");
  txtDbError("CORRUPTION", /seg-0000000002\.log/, /symlink/)(failure);
  assert.equal(fs.readFileSync(victim).length, 0, "nothing was written to the file behind the link");
  await db.close();
  // Once the link is gone, the store rolls over into a segment of its own.
  fs.rmSync(`${dir}/seg-0000000002.log`);
  const again = await open(dir, { segmentBytes: 256 });
  for (let i = 0; i < 10; i++) await again.set("ns", i, "y".repeat(50));
  assert.equal(await again.get("ns", 9), "y".repeat(50));
  assert.equal(fs.lstatSync(`${dir}/seg-0000000002.log`).isFile(), true);
  await again.close();
});

test(`${R} a MANIFEST.tmp planted as a symlink is removed, not written through, when the manifest is replaced`, async () => {
  const dir = tempDir("link-manifest-tmp");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 256 });
  for (let i = 0; i < 20; i++) await db.set("ns", i, "x".repeat(50));
  const victim = outsideFile("SECRET");
  fs.symlinkSync(victim, `${dir}/MANIFEST.tmp`);
  const r = await db.compact();
  assert.ok(r.segmentsFolded > 0, "compaction switched the manifest");
  assert.equal(fs.readFileSync(victim, "utf8"), "SECRET", "the file behind the link is untouched");
  assert.equal(fs.existsSync(`${dir}/MANIFEST.tmp`), false);
  assert.equal(fs.lstatSync(`${dir}/MANIFEST`).isFile(), true);
  await db.close();
  const again = await open(dir);
  assert.equal(await again.get("ns", 19), "x".repeat(50));
  await again.close();
});

// --- checkStoreDirectory, on the simulated platform (every runtime) ---

test(`${R} checkStoreDirectory refuses a directory another user owns unless allowForeignOwner, naming both uids`, () => {
  const world = new SimWorld(11);
  const me = world.process();
  me.mkdir("/srv/mine");
  checkStoreDirectory(me, "/srv/mine"); // mine: fine
  checkStoreDirectory(me, "/srv/absent"); // not there yet: open() creates it, as mine
  const theirs = world.process({ uid: 2000 });
  theirs.mkdir("/srv/theirs");
  assert.throws(() => checkStoreDirectory(me, "/srv/theirs"), txtDbError("INVALID_ARGUMENT", /belongs to uid 2000 while this process runs as uid 1000/, /allowForeignOwner/));
  checkStoreDirectory(me, "/srv/theirs", { allowForeignOwner: true });
  // Root is no exception: root working in a directory a user controls is the attack.
  const root = world.process({ uid: 0 });
  assert.throws(() => checkStoreDirectory(root, "/srv/mine"), txtDbError("INVALID_ARGUMENT", /belongs to uid 1000 while this process runs as uid 0/));
  checkStoreDirectory(root, "/srv/mine", { allowForeignOwner: true });
});

test(`${R} checkStoreDirectory refuses a store directory reached by another user's symlink, accepts one's own`, () => {
  const world = new SimWorld(12);
  const me = world.process();
  me.mkdir("/srv/real");
  world.plant("/srv/link", "symlink", "/srv/real"); // planted by uid 1000 (me)
  checkStoreDirectory(me, "/srv/link");
  world.chown("/srv/link", 2000);
  assert.throws(() => checkStoreDirectory(me, "/srv/link"), txtDbError("INVALID_ARGUMENT", /symlink owned by uid 2000/));
  world.plant("/srv/dangling", "symlink", "/srv/nowhere");
  world.chown("/srv/dangling", 0);
  assert.throws(() => checkStoreDirectory(me, "/srv/dangling"), txtDbError("INVALID_ARGUMENT", /symlink to nothing/));
  me.open("/srv/file", { create: true }).close();
  assert.throws(() => checkStoreDirectory(me, "/srv/file"), txtDbError("INVALID_ARGUMENT", /not a directory/));
});

test(`${R} checkStoreDirectory refuses a symlink, FIFO or directory planted as a store file or lease, naming it`, () => {
  const world = new SimWorld(13);
  const me = world.process();
  const planted: [string, "symlink" | "fifo" | "socket" | "device"][] = [
    ["frontier", "symlink"],
    ["MANIFEST", "fifo"],
    ["seg-0000000003.log", "socket"],
    ["writer.lock", "device"],
    ["MANIFEST.tmp", "symlink"],
    ["ckpt-0000000000000042-3.dat.tmp", "symlink"],
    ["leases/abc.lease", "fifo"],
  ];
  for (const [name, kind] of planted) {
    const dir = `/s/${name.replace(/\W/g, "_")}`;
    me.mkdir(`${dir}/leases`);
    me.open(`${dir}/notes.txt`, { create: true }).close();
    world.plant(`${dir}/unrelated-link`, "symlink", "/etc/passwd"); // not a store file: not our business
    checkStoreDirectory(me, dir);
    world.plant(`${dir}/${name}`, kind, "/etc/shadow");
    assert.throws(() => checkStoreDirectory(me, dir), txtDbError("CORRUPTION", new RegExp(name.replace(/\./g, "\\.")), /remove it/), `${name} as ${kind}`);
  }
});

// --- checkStoreDirectory on the real file system, where this test runs as root ---

test(`${R} checkStoreDirectory, run as root, refuses a real directory owned by another user`, { skip: !isRoot && "needs root to give a directory away" }, async () => {
  const platform = await internal.defaultPlatform();
  assert.equal(platform.uid, 0);
  const dir = tempDir("foreign");
  checkStoreDirectory(platform, dir);
  fs.chownSync(dir, 65534, 65534);
  assert.throws(() => checkStoreDirectory(platform, dir), txtDbError("INVALID_ARGUMENT", /belongs to uid 65534 while this process runs as uid 0/));
  checkStoreDirectory(platform, dir, { allowForeignOwner: true });
  fs.chownSync(dir, 0, 0);
  fs.symlinkSync("/etc/passwd", `${dir}/frontier`);
  assert.throws(() => checkStoreDirectory(platform, dir), txtDbError("CORRUPTION", /frontier" is a symlink/));
});
