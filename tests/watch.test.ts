/** watch(): overflow of a slow watcher (the API-level watch tests are in tests/conformance.ts, for every engine). */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";

const R = `[${runtime}]`;

test(`${R} a watcher that falls behind its buffer gets WATCH_OVERFLOW naming where to resume`, async () => {
  const dir = tempDir("watch3");
  const db = await open(dir, { namespaces: ["ns"], watchBufferMax: 5 });
  const it = db.watch("ns", { prefix: [] });
  for (let i = 0; i < 20; i++) await db.set("ns", i, i);
  await new Promise((r) => setTimeout(r, 50));
  let seen = 0;
  await assert.rejects((async () => { for await (const _ of it) seen++; })(), (e: unknown) =>
    e instanceof TxtDbError && e.code === "WATCH_OVERFLOW" && typeof e.details?.resumeFrom === "bigint");
  assert.ok(seen <= 5);
  assert.equal(db.stats().watchers, 0);
  await assert.rejects(async () => db.watch("missing", { prefix: [] }), (e: unknown) => e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND");
  await db.close();
});
