/**
 * System V shared memory for the Node, Bun and Deno adapters, from four libc calls that
 * each runtime binds through its own FFI (koffi, bun:ffi, Deno.dlopen with --allow-ffi). Linux x86-64 and arm64 (glibc): the
 * layout of `struct shmid_ds` read below is theirs; elsewhere the adapters offer none.
 *
 * @module
 */
import { PortError } from "../src/port.ts";
import type { SharedMemory, SharedRegion, SharedSegmentInfo } from "../src/port.ts";

/** The libc calls, as a runtime's FFI binds them. Addresses are bigints; -1n is shmat's failure. */
export interface ShmCalls {
  shmget(key: number, bytes: number, flags: number): number;
  shmat(id: number): bigint;
  shmdt(address: bigint): number;
  /** shmctl(id, cmd, buf): `buf` 112 bytes for IPC_STAT, null for IPC_RMID. */
  shmctl(id: number, cmd: number, buf: Uint8Array | null): number;
  /** errno of the last failed call. */
  errno(): number;
  /** An ArrayBuffer over `bytes` bytes at `address` (no copy). */
  view(address: bigint, bytes: number): ArrayBuffer;
}

const IPC_PRIVATE = 0;
const IPC_CREAT = 0o1000;
const IPC_RMID = 0;
const IPC_STAT = 2;
/** shmctl by index into the kernel's table (Linux): SHM_STAT fills the buffer and returns the id. */
const SHM_STAT = 13;
/** shmctl(0, SHM_INFO): the highest index in use (Linux). */
const SHM_INFO = 14;
/** In shm_perm.mode: marked for removal (Linux). */
const SHM_DEST = 0o1000;
/** sizeof(struct shmid_ds) on 64-bit Linux with glibc, and where its fields lie (shm_perm first). */
const SHMID_DS_BYTES = 112;
const [KEY_AT, UID_AT, MODE_AT, SEGSZ_AT, NATTCH_AT] = [0, 4, 20, 48, 88];

/** Linux errno values the core tells apart, by name. */
const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 2: "ENOENT", 12: "ENOMEM", 13: "EACCES", 17: "EEXIST", 22: "EINVAL", 28: "ENOSPC", 43: "EIDRM" };

/** True where {@link makeSharedMemory}'s layout holds. */
export function sysvShmSupported(platform: string, arch: string): boolean {
  return platform === "linux" && (arch === "x64" || arch === "arm64");
}

/** The port's {@link SharedMemory} over `calls`. */
export function makeSharedMemory(calls: ShmCalls): SharedMemory {
  const fail = (op: string, id: number | string): PortError => {
    const errno = calls.errno();
    return new PortError(ERRNO_NAMES[errno] ?? `errno ${errno}`, op, `shared memory ${id}`);
  };
  const statBuf = new Uint8Array(SHMID_DS_BYTES);
  const statView = new DataView(statBuf.buffer);
  /** statBuf, as filled for segment `id`. */
  const parsed = (id: number): SharedSegmentInfo => {
    const mode = statView.getUint32(MODE_AT, true);
    return {
      id,
      key: statView.getInt32(KEY_AT, true),
      uid: statView.getUint32(UID_AT, true),
      mode: mode & 0o777,
      bytes: Number(statView.getBigUint64(SEGSZ_AT, true)),
      attached: Number(statView.getBigUint64(NATTCH_AT, true)),
      removed: (mode & SHM_DEST) !== 0,
    };
  };
  return {
    create(bytes: number, mode: number): number {
      const id = calls.shmget(IPC_PRIVATE, bytes, (mode & 0o777) | IPC_CREAT);
      if (id >= 0) return id;
      throw fail("shmget(IPC_PRIVATE)", "(new)");
    },
    stat(id: number): SharedSegmentInfo | undefined {
      statBuf.fill(0);
      if (calls.shmctl(id, IPC_STAT, statBuf) !== 0) {
        const e = fail("shmctl(IPC_STAT)", id);
        if (e.errno === "EINVAL" || e.errno === "EIDRM") return undefined;
        throw e;
      }
      return parsed(id);
    },
    list(): SharedSegmentInfo[] {
      statBuf.fill(0);
      const highest = calls.shmctl(0, SHM_INFO, statBuf);
      const out: SharedSegmentInfo[] = [];
      for (let index = 0; index <= highest; index++) {
        statBuf.fill(0);
        const id = calls.shmctl(index, SHM_STAT, statBuf);
        if (id >= 0) out.push(parsed(id)); // an unused slot, or another user's segment: skipped
      }
      return out;
    },
    attach(id: number, bytes: number): SharedRegion {
      const address = calls.shmat(id);
      if (address === -1n || address === 0xffffffffffffffffn) throw fail("shmat", id);
      let attached = true;
      return {
        bytes: new Uint8Array(calls.view(address, bytes)),
        detach(): void {
          if (!attached) return;
          attached = false;
          if (calls.shmdt(address) !== 0) throw fail("shmdt", id);
        },
      };
    },
    remove(id: number): void {
      if (calls.shmctl(id, IPC_RMID, null) !== 0) {
        const e = fail("shmctl(IPC_RMID)", id);
        if (e.errno === "EINVAL" || e.errno === "EIDRM") return; // gone already
        throw e;
      }
    },
  };
}
