/**
 * Safety of a store directory against other users: who owns it, and whether someone
 * planted a symlink or a non-regular file where a store file belongs.
 *
 * Why: a directory another user can write is a directory whose files that user controls.
 * If root (or any user) opens a store there, the other user can put `frontier ->
 * /etc/shadow` or `seg-0000000002.log -> ~/.ssh/authorized_keys` and have us overwrite the
 * target, or link our secrets into their view, or put a FIFO where the MANIFEST is and
 * hang us. The port already refuses to open a final symlink or anything but a regular
 * file (O_NOFOLLOW, O_NONBLOCK + fstat); this file adds the checks made once at open():
 *
 * 1. The store directory, if it exists, belongs to the user this process runs as, unless
 *    the caller says it trusts the owner (`allowForeignOwner`). This holds for root too:
 *    root can write anywhere, which is exactly why it must not work inside a directory
 *    someone else controls.
 * 2. The store directory path itself may be a symlink only if the link belongs to this
 *    user or to root (a link no one else could have planted); the directory it leads to
 *    is then checked as in 1. (`Platform.stat` follows links, so earlier components of
 *    the path, e.g. /tmp -> /private/tmp on macOS, are never an issue.)
 * 3. No store file in it (the names txtdb writes, and everything under `leases/` and `locks/`) is a
 *    symlink, FIFO, socket, device or directory: each is reported by name, with what to do.
 *
 * What is not covered: hard links (an attacker who can write the directory can hard-link
 * a file of ours into it where the kernel allows it; Linux's protected_hardlinks forbids
 * linking files one does not own), and a directory the attacker can write but does not own
 * (e.g. group-writable): owner and symlink checks hold there, but a planted regular file
 * would be read as ours. Keep store directories owner-only (the default mode).
 *
 * @example
 * ```ts
 * import { checkStoreDirectory } from "./dirsafety.ts";
 * checkStoreDirectory(platform, "./data"); // throws INVALID_ARGUMENT if another user owns it
 * checkStoreDirectory(platform, "/srv/shared", { allowForeignOwner: true }); // trusted owner
 * ```
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { ELOOP, ENOTREG, joinPath, PortError } from "./port.ts";
import type { FileInfo, Platform } from "./port.ts";
import { isStoreFileName, LEASES_DIR, LOCKS_DIR } from "./files.ts";

/** Options of {@link checkStoreDirectory}. */
export interface StoreDirectoryCheckOptions {
  /**
   * Accept a store directory (or a symlink to it) that belongs to another user. Only for
   * directories whose owner you trust as much as yourself: they can replace its files.
   */
  allowForeignOwner?: boolean;
}

/** Entries of leases/ looked at, at most: the check is bounded like everything else. */
const LEASE_ENTRIES_MAX = 10_000;

function what(info: FileInfo): string {
  if (info.isSymlink) return "a symlink";
  if (info.isDirectory) return "a directory";
  return "a FIFO, socket or device";
}

/**
 * Refuses a store directory that another user controls, or that holds a symlink or a
 * non-regular file where a store file belongs. Does nothing if `path` does not exist yet
 * (open() then creates it, owned by this process). Where the platform cannot tell this
 * process's uid (`platform.uid` undefined), the owner checks are skipped and a symlinked
 * store directory is refused.
 *
 * Throws `INVALID_ARGUMENT` for an unsuitable directory (wrong owner, a planted link, not a
 * directory) and `CORRUPTION` for a store file that is not a regular file, each naming the
 * path, the owner and what to do.
 *
 * @example
 * ```ts
 * checkStoreDirectory(platform, "/tmp/shared-store"); // as root, dir owned by uid 1000:
 * // TxtDbError INVALID_ARGUMENT: The store directory "/tmp/shared-store" belongs to uid 1000
 * // while this process runs as uid 0; ...
 * ```
 */
export function checkStoreDirectory(platform: Platform, path: string, options: StoreDirectoryCheckOptions = {}): void {
  const allowForeign = options.allowForeignOwner === true;
  const uid = platform.uid;
  const link = io(() => platform.lstat(path), path);
  if (!link) return;
  if (link.isSymlink) {
    const trusted = uid !== undefined && (link.uid === uid || link.uid === 0 || allowForeign);
    if (!trusted) {
      throw new TxtDbError(
        "INVALID_ARGUMENT",
        `The store directory "${path}" is a symlink owned by uid ${link.uid}${uid === undefined ? "" : ` while this process runs as uid ${uid}`}; ` +
          `another user could point it anywhere. Open the directory it leads to by its real path, ` +
          `or pass allowForeignOwner: true if you trust uid ${link.uid}`,
        { details: { path, ownerUid: link.uid, processUid: uid } },
      );
    }
  }
  const dir = link.isSymlink ? io(() => platform.stat(path), path) : link;
  if (!dir) {
    throw new TxtDbError("INVALID_ARGUMENT", `The store directory "${path}" is a symlink to nothing; remove it or point it at a directory`, { details: { path } });
  }
  if (!dir.isDirectory) {
    throw new TxtDbError("INVALID_ARGUMENT", `"${path}" is not a directory; open() needs a store directory (a new path, or one txtdb created)`, { details: { path } });
  }
  if (uid !== undefined && dir.uid !== uid && !allowForeign) {
    throw new TxtDbError(
      "INVALID_ARGUMENT",
      `The store directory "${path}" belongs to uid ${dir.uid} while this process runs as uid ${uid}; ` +
        `its owner can replace the store's files (plant links, swap files) under this process. ` +
        `Run as uid ${dir.uid}, move the store to a directory you own, or, if you trust uid ${dir.uid}, ` +
        `pass allowForeignOwner: true`,
      { details: { path, ownerUid: dir.uid, processUid: uid } },
    );
  }
  for (const name of io(() => platform.readdir(path), path)) {
    if (name === LEASES_DIR || name === LOCKS_DIR) {
      const leases = joinPath(path, name);
      const info = io(() => platform.lstat(leases), leases);
      if (!info) continue; // removed meanwhile
      if (!info.isDirectory) throw plantedFile(leases, info, "a directory");
      const entries = io(() => platform.readdir(leases), leases);
      for (const lease of entries.slice(0, LEASE_ENTRIES_MAX)) {
        const leasePath = joinPath(leases, lease);
        const l = io(() => platform.lstat(leasePath), leasePath);
        if (l && !l.isFile) throw plantedFile(leasePath, l, "a regular file");
      }
      continue;
    }
    if (!isStoreFileName(name)) continue;
    const filePath = joinPath(path, name);
    const info = io(() => platform.lstat(filePath), filePath);
    if (info && !info.isFile) throw plantedFile(filePath, info, "a regular file");
  }
}

function plantedFile(path: string, info: FileInfo, expected: string): TxtDbError {
  return new TxtDbError(
    "CORRUPTION",
    `Store file "${path}" is ${what(info)} (owned by uid ${info.uid}), where txtdb only ever puts ${expected}; ` +
      `someone else put it there. txtdb will not follow or open it: remove it (and check who can write the directory), then open again`,
    { details: { file: path, offset: 0, ownerUid: info.uid } },
  );
}

/**
 * The clear error for a store file the port refused to open because it is a symlink or
 * not a regular file, or undefined for any other error (the caller rethrows that as is).
 *
 * @example
 * ```ts
 * try { platform.open(path); } catch (e) { throw storeFileError(e, path) ?? e; }
 * ```
 */
export function storeFileError(e: unknown, path: string): TxtDbError | undefined {
  if (!(e instanceof PortError) || (e.errno !== ENOTREG && e.errno !== ELOOP)) return undefined;
  const is = e.errno === ELOOP ? "a symlink" : "not a regular file (a directory, FIFO, socket or device)";
  return new TxtDbError(
    "CORRUPTION",
    `Store file "${path}" is ${is}, where txtdb only ever puts a regular file; someone else put it there. ` +
      `txtdb will not follow or open it: remove it (and check who can write the directory), then try again`,
    { cause: e, details: { file: path, offset: 0 } },
  );
}

function io<T>(f: () => T, path: string): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PortError) throw new TxtDbError("IO", `Checking the store directory failed on "${path}": ${e.message}`, { cause: e });
    throw e;
  }
}
