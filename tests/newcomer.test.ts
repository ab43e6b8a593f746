/**
 * What a newcomer meets first with the command line: a store they may not read. Each
 * failure must end the command with a clear message and a documented exit code.
 */
import { assert, runtime, test } from "./harness.ts";
import type { FileInfo, Platform } from "txtdb";
// The class cli/store.ts itself sees (the Node leg bundles the sources of cli/ and src/).
import { PortError } from "../src/port.ts";
import { dirState } from "../cli/store.ts";

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
