/**
 * File descriptors after failed roll-overs (issue 9, defect 13): ENOSPC at the start of a
 * new segment made every failed commit leak one open file (25 → 1,912 descriptors, still
 * open after close()), because creating the segment again replaced the handle of the
 * first attempt without closing it, and a failed directory fsync dropped the new one.
 * Counted on the simulated platform (every runtime) and, on Node and Bun, in /proc/self/fd.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open } from "txtdb";
import { defaultPlatform, PortError } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";
import { withFaults } from "txtdb/adapters/faults";
import type { FaultStep } from "txtdb/adapters/faults";
import type { Platform } from "txtdb/internal";

const R = `[${runtime}]`;
const ATTEMPTS = 40;

/**
 * Opens a store on `platform` with tiny segments; arms a fault on the next segment's
 * creation (`step` on its file, or the directory fsync that makes it durable); commits until
 * one fails there, then ATTEMPTS more that all must fail at the same roll-over; then lets
 * one succeed. Returns the open-file counts along the way.
 */
async function failRollOvers(base: Platform, dir: string, step: FaultStep, count: () => number) {
  let next: string | undefined;
  const platform = withFaults(base, (s, path) => {
    if (next !== undefined && s === step && (step === "beforeDirSync" || path.endsWith(next))) {
      throw new PortError("ENOSPC", s, path);
    }
  });
  const before = count();
  const db = await open(dir, { adapter: platform, namespaces: ["ns"], segmentBytes: 256 });
  await db.set("ns", "first", 1);
  const segments = base.readdir(dir).filter((n) => /^seg-\d{10}\.log$/.test(n)).sort();
  next = `seg-${String(segments.length + 1).padStart(10, "0")}.log`;
  let atFirstFailure: number | undefined;
  for (let i = 0; i < 50 && atFirstFailure === undefined; i++) {
    await db.set("ns", ["fill", i], "x".repeat(60)).catch((e: unknown) => {
      assert.ok(e instanceof Error && /ENOSPC/.test(e.message), String(e));
      atFirstFailure = count();
    });
  }
  assert.ok(atFirstFailure !== undefined, `no commit rolled over into ${next}`);
  let failures = 0;
  for (let i = 0; i < ATTEMPTS; i++) {
    try {
      await db.set("ns", ["fail", i], "y".repeat(60));
    } catch (e) {
      failures++;
      assert.ok(e instanceof Error && /ENOSPC/.test(e.message), String(e));
    }
  }
  const afterFailures = count();
  next = undefined;
  await db.set("ns", "after", 1);
  assert.equal(await db.get("ns", "after"), 1, "the store works once space is back");
  await db.close();
  return { before, atFirstFailure, afterFailures, afterClose: count(), failures };
}

for (const step of ["beforeWrite", "beforeDirSync"] as const) {
  test(`${R} a roll-over failing with ENOSPC (${step}) leaks no file handle, per commit or after close() (sim)`, async () => {
    const world = new SimWorld(21);
    const p = world.process();
    p.mkdir("/db");
    const r = await failRollOvers(p, "/db", step, () => p.openHandleCount);
    assert.equal(r.failures, ATTEMPTS, "every commit that had to roll over failed");
    assert.ok(r.afterFailures <= r.atFirstFailure! + 1, `open handles went from ${r.atFirstFailure} to ${r.afterFailures} over ${ATTEMPTS} failed commits`);
    assert.equal(r.afterClose, r.before, `handles still open after close(): ${r.afterClose}`);
  });
}

// /proc/self/fd: Linux, and readable under Node and Bun (Deno wants --allow-all for /proc/self).
const procFd = runtime !== "deno" && fs.existsSync("/proc/self/fd");
test(`${R} a roll-over failing with ENOSPC leaks no file descriptor on the real adapter (/proc/self/fd)`, { skip: !procFd && "needs /proc/self/fd" }, async () => {
  const count = () => fs.readdirSync("/proc/self/fd").length;
  const r = await failRollOvers(await defaultPlatform(), tempDir("fdleak"), "beforeWrite", count);
  assert.equal(r.failures, ATTEMPTS);
  assert.ok(r.afterFailures <= r.atFirstFailure! + 1, `descriptors went from ${r.atFirstFailure} to ${r.afterFailures} over ${ATTEMPTS} failed commits`);
  // A watcher or timer of the runtime may come and go; a leak would be ATTEMPTS.
  assert.ok(r.afterClose <= r.before + 2, `descriptors still open after close(): ${r.before} before open, ${r.afterClose} after close`);
});
