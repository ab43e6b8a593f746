/** Helpers the value tests share. */
import { assert } from "./harness.ts";
import type { Database } from "txtdb";

/** Rolls the log past a few small segments and compacts, so a checkpoint holds every key so far. */
export async function foldIntoCheckpoint(db: Database): Promise<void> {
  const { version } = await db.set("ns", "filler", 0);
  let folded = 0n;
  for (let i = 0; i < 100 && folded < version; i++) {
    await db.set("ns", "filler", "f".repeat(200));
    folded = (await db.compact()).checkpointVersion;
  }
  assert.ok(folded >= version, `compaction wrote a checkpoint through version ${version} (got ${folded})`);
}
