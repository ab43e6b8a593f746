/**
 * Which directories are stores, and opening one the way a command may.
 *
 * Rule: only `set` and `import` create a store, and only in a missing or empty directory (or
 * a half-created store). Every other command refuses a directory that is not a store, and
 * the read-side ones open it read-only, so looking never writes. A directory that holds a
 * store's files but no MANIFEST is a damaged store (CORRUPTION) for every command.
 *
 * @module
 */
import { open, TxtDbError } from "../mod.ts";
import type { Database } from "../mod.ts";
import { Log } from "../src/log.ts";
import { checkManifestLost } from "../src/opening.ts";
import { PortError } from "../src/port.ts";
import type { LockHandle, Platform } from "../src/port.ts";
import { COMMANDS } from "./args.ts";

/** Files a store directory holds; a directory with only these is a store, possibly half-created. */
const STORE_FILE = /^(MANIFEST|MANIFEST\.tmp|frontier|writer\.lock|leases|seg-\d{10}\.log|ckpt-.*)$/;

/** What is at a path, as far as opening a store goes. */
export type DirState = "store" | "missing" | "empty" | "partial" | "file" | "other";

/** What is at `dir`: a store, nothing, an empty or half-created one, a file, or someone else's directory. */
export function dirState(platform: Platform, dir: string): DirState {
  const info = unreadable(platform, dir, undefined, () => platform.stat(dir));
  if (!info) return "missing";
  if (!info.isDirectory) return "file";
  // Whatever MANIFEST is, it is a store's: open() says what is wrong with one that is not a file.
  if (unreadable(platform, dir, info.uid, () => platform.lstat(`${dir}/MANIFEST`))) return "store";
  const names = unreadable(platform, dir, info.uid, () => platform.readdir(dir));
  if (names.length === 0) return "empty";
  return names.every((n) => STORE_FILE.test(n)) ? "partial" : "other";
}

/**
 * `f()`, with a failure to look at `dir` (another user's owner-only store: EACCES) as an IO
 * error that says whose it is and what to do. It came out as the adapter's PortError, which
 * the command line took for a bug of its own: "internal error (please report)" and a stack.
 */
function unreadable<T>(platform: Platform, dir: string, ownerUid: number | undefined, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof PortError)) throw e;
    const denied = e.errno === "EACCES" || e.errno === "EPERM";
    const whose = ownerUid !== undefined && platform.uid !== undefined && ownerUid !== platform.uid
      ? ` (it belongs to uid ${ownerUid}; this process runs as uid ${platform.uid})`
      : "";
    const advice = denied ? `; permission denied${whose}: run txtdb as a user who may read the store, such as its owner` : "";
    throw new TxtDbError("IO", `Cannot read ${JSON.stringify(dir)}: ${e.message}${advice}`, { cause: e });
  }
}

const invalid = (message: string) => new TxtDbError("INVALID_ARGUMENT", message);

/**
 * CORRUPTION when `dir` (in `state`) holds a store's files but no MANIFEST: a store whose
 * manifest is lost is damaged, as open() says, never "no store here" nor a directory to
 * create one in. Reads only.
 */
export function refuseLostManifest(platform: Platform, dir: string, state: DirState): void {
  if (state !== "partial" && state !== "other") return;
  const log = new Log(platform, dir, 0o600, true);
  try {
    checkManifestLost(platform, dir, log);
  } finally {
    log.close();
  }
}

/** The platform of this runtime (loaded once), waiting for locks as {@link pollingLocks} says. */
export async function platform(): Promise<Platform> {
  const { defaultPlatform } = await import("../src/platform.ts");
  return cliPlatform ??= pollingLocks(await defaultPlatform());
}
let cliPlatform: Platform | undefined;

/**
 * `p`, with every lock it hands out waiting by polling (tryLock) instead of in the kernel on
 * a helper thread (lockAsync). Such a wait cannot be cancelled, and on Node it runs on
 * libuv's thread pool, which process.exit() joins: a command that gave up with LOCK_TIMEOUT
 * after 30 s (writer.lock held by a stopped process, or by flock(1)) printed the error and
 * then hung until the holder let go, forever for one that never does. A command is short;
 * polling costs it at most a few milliseconds per wait.
 */
export function pollingLocks(p: Platform): Platform {
  const polled = <H extends LockHandle>(h: H): H => {
    // An own property hides the adapter's (a field on Node and Bun, a method on Deno).
    if (h.lockAsync) Object.defineProperty(h, "lockAsync", { value: undefined, writable: true, configurable: true });
    return h;
  };
  const wrapped: Platform = Object.create(p);
  wrapped.open = (path, options) => polled(p.open(path, options));
  const dirLock = p.openDirectoryLock;
  if (dirLock) wrapped.openDirectoryLock = (path) => polled(dirLock.call(p, path));
  return wrapped;
}

/** How a command opens a store shared by a group: open()'s `mode` and `allowForeignOwner`. */
export interface SharedStoreOptions {
  mode?: number;
  allowForeignOwner?: boolean;
}

/** Opens the store at `dir` as `command` may (see the rule above), creating `namespaces`. */
export async function openFor(command: string, dir: string, namespaces: string[] = [], shared: SharedStoreOptions = {}): Promise<Database> {
  const p = await platform();
  const access = COMMANDS[command]!.access;
  const state = dirState(p, dir);
  const shown = JSON.stringify(dir);
  if (state === "file") throw invalid(`${shown} is a file, not a txtdb store directory`);
  refuseLostManifest(p, dir, state);
  if (access !== "create" && state !== "store") {
    throw invalid(
      `No txtdb store at ${shown} (${state === "missing" ? "no such directory" : "no MANIFEST"}); nothing was created. ` +
        "`txtdb set` or `txtdb import` creates a store",
    );
  }
  if (state === "other") {
    throw invalid(`${shown} is a directory with other files and no txtdb store; refusing to create a store there (use a new or empty directory)`);
  }
  try {
    return await open(dir, {
      adapter: p,
      readOnly: access === "read",
      ...(namespaces.length ? { namespaces } : {}),
      ...(shared.mode !== undefined ? { mode: shared.mode } : {}),
      ...(shared.allowForeignOwner ? { allowForeignOwner: true } : {}),
    });
  } catch (e) {
    // The library names its option; on the command line it is a flag.
    if (e instanceof TxtDbError && e.message.includes("allowForeignOwner: true")) {
      throw new TxtDbError(e.code, e.message.replaceAll("pass allowForeignOwner: true", "pass --allow-foreign-owner"), { cause: e, ...(e.details ? { details: e.details } : {}) });
    }
    throw e;
  }
}
