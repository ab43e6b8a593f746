/**
 * The writer lock's holder record: the write a commit leaves out, and the rule that makes
 * leaving it out safe (holder.ts): it is written once per HOLDER_RESTAMP_MS by a process that
 * takes the lock again and again, and at once after anyone else's record went into the file.
 */
import * as fs from "node:fs";
import { assert, runtime, sleep, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import { defaultPlatform, HOLDER_RECORD_BYTES, HOLDER_RESTAMP_MS, parseHolderRecord } from "txtdb/internal";

const R = `[${runtime}]`;

/** A platform that counts the writes to files whose path includes `part`. */
async function countingWrites(part: string): Promise<{ adapter: Awaited<ReturnType<typeof defaultPlatform>>; writes: () => number }> {
  const { withFaults } = await import("txtdb/adapters/faults");
  let n = 0;
  const adapter = withFaults(await defaultPlatform(), (step, path) => {
    if (step === "beforeWrite" && path.includes(part)) n++;
  });
  return { adapter, writes: () => n };
}

test(`${R} a process taking the writer lock again and again writes its holder record once per HOLDER_RESTAMP_MS, and again at its next take once another record is in the file`, async () => {
  const dir = tempDir("holder-restamp");
  const { adapter, writes } = await countingWrites("/writer.lock");
  const db = await open(dir, { adapter, namespaces: ["ns"] });
  try {
    await sleep(HOLDER_RESTAMP_MS + 20);
    const before = writes();
    const t0 = performance.now();
    const commits = 300;
    for (let i = 0; i < commits; i++) await db.set("ns", "k", i);
    const elapsedMs = performance.now() - t0;
    const written = writes() - before;
    const bound = 2 * Math.ceil(elapsedMs / HOLDER_RESTAMP_MS) + 2; // once per commit before the rule
    assert.ok(written >= 1 && written <= bound, `${written} holder records for ${commits} commits in ${Math.round(elapsedMs)} ms (1 to ${bound})`);
    const read = () => parseHolderRecord(fs.readFileSync(`${dir}/writer.lock`).subarray(0, HOLDER_RECORD_BYTES));
    assert.equal(read()?.pid, adapter.pid);
    // Another process's record (as it writes it, holding the lock) goes into the file.
    const foreign = new TextEncoder().encode(JSON.stringify({ pid: 4_000_000, runtime: "node", sinceWallMs: Date.now() }).padEnd(HOLDER_RECORD_BYTES - 1, " ") + "\n");
    const fd = fs.openSync(`${dir}/writer.lock`, "r+");
    fs.writeSync(fd, foreign, 0, foreign.length, 0);
    fs.closeSync(fd);
    assert.equal(read()?.pid, 4_000_000);
    const t1 = Date.now();
    await db.set("ns", "k", "after");
    const h = read();
    assert.equal(h?.pid, adapter.pid, "the next take writes this process's record again");
    assert.ok(h!.sinceWallMs >= t1 - 5, `since ${h!.sinceWallMs}, taken at ${t1}`);
  } finally {
    await db.close();
  }
});
