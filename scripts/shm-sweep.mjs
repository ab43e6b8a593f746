// Removes the frontier-mirror segments (src/mirror.ts) that no process has attached any more,
// owned by this user: what test processes killed with SIGKILL leave behind (a process that
// exits or closes its store removes its own). Run by the test matrix at its end, when every
// test process is gone. Linux only; elsewhere, and where nothing is left, it does nothing.
//
//   node scripts/shm-sweep.mjs        prints how many it removed
import * as fs from "node:fs";
import { createRequire } from "node:module";

/** Returns how many segments it removed. */
export function sweepMirrorSegments() {
  if (process.platform !== "linux") return 0;
  let table;
  try {
    table = fs.readFileSync("/proc/sysvipc/shm", "utf8");
  } catch {
    return 0;
  }
  const uid = process.geteuid?.();
  const rows = table.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/).map(Number));
  // key shmid perms size cpid lpid nattch uid ...
  const candidates = rows.filter((f) => f[3] === 4096 && f[6] === 0 && f[7] === uid);
  if (candidates.length === 0) return 0;
  const koffi = createRequire(import.meta.url)("koffi");
  const lib = koffi.load("libc.so.6");
  const shmat = lib.func("void *shmat(int shmid, void *shmaddr, int shmflg)");
  const shmdt = lib.func("int shmdt(void *shmaddr)");
  const shmctl = lib.func("int shmctl(int shmid, int cmd, void *buf)");
  let removed = 0;
  for (const f of candidates) {
    const p = shmat(f[1], null, 0o10000 /* SHM_RDONLY */);
    if (p === null || koffi.address(p) === 0xffffffffffffffffn) continue;
    const head = new DataView(koffi.view(p, 8));
    const ours = head.getUint32(0, true) === 0x316d7874 && head.getUint32(4, true) === 1; // "txm1", layout 1
    shmdt(p);
    if (ours && shmctl(f[1], 0 /* IPC_RMID */, null) === 0) removed++;
  }
  return removed;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(`removed ${sweepMirrorSegments()} leftover mirror segments`);
