/**
 * The pin this process publishes in its lease (what compaction elsewhere must keep) is
 * written at most once per PIN_PUBLISH_EVERY_MS while it moves with every commit, and in
 * between it is lower than the real one, never higher: a deferred write only makes
 * compaction keep more. Once the commits stop, the deferred write catches up.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test, sleep } from "./harness.ts";
import { open } from "txtdb";
import type { Database, Platform } from "txtdb";
import { defaultPlatform, PIN_PUBLISH_EVERY_MS, readLeasePin } from "txtdb/internal";

const R = `[${runtime}]`;

/** Runs `body` on a fresh store, with the path of this process's lease file in it. */
async function withStore(body: (db: Database, lease: string, platform: Platform) => Promise<void>): Promise<void> {
  const platform = await defaultPlatform();
  const dir = `${tempDir("pins")}/store`;
  const db = await open(dir, { namespaces: ["n"] });
  try {
    const leases = fs.readdirSync(`${dir}/leases`).filter((n) => n.endsWith(".lease"));
    assert.equal(leases.length, 1, "one lease: this process's");
    await body(db, `${dir}/leases/${leases[0]}`, platform);
  } finally {
    await db.close();
  }
}

test(`${R} a pin moving with every commit is written at most once per ${PIN_PUBLISH_EVERY_MS} ms, never above the head, and catches up once commits stop`, async () => {
  await withStore(async (db, lease, platform) => {
    const seen: number[] = [];
    let last = -1;
    const t0 = performance.now();
    let head = 0n;
    while (performance.now() - t0 < 6 * PIN_PUBLISH_EVERY_MS) {
      head = (await db.set("n", "k", seen.length)).version;
      const pin = readLeasePin(platform, lease);
      assert.ok(pin !== undefined, "the lease holds a readable pin");
      assert.ok(pin <= Number(head), `the published pin ${pin} is not above the head ${head}`);
      assert.ok(pin >= last, `the published pin only moves up (${last} -> ${pin})`);
      if (pin !== last) seen.push(pin);
      last = pin;
    }
    const commits = Number(head);
    const elapsed = performance.now() - t0;
    assert.ok(commits > 20, `enough commits to tell (${commits})`);
    // One write at the start, then at most one per interval (a timer's lateness only spaces them more).
    assert.ok(seen.length <= Math.ceil(elapsed / PIN_PUBLISH_EVERY_MS) + 2, `${seen.length} pin writes in ${elapsed.toFixed(0)} ms for ${commits} commits`);
    await sleep(3 * PIN_PUBLISH_EVERY_MS);
    // The pin is the head as of the last publication, which a batch makes before its own
    // commit is visible: the last commit's version, or the one before it.
    const caughtUp = readLeasePin(platform, lease)!;
    assert.ok(caughtUp >= Number(head) - 1 && caughtUp <= Number(head), `the deferred write caught up with the head (pin ${caughtUp}, head ${head})`);
  });
});

test(`${R} a snapshot taken while a pin write is deferred is pinned in the lease at or below its version`, async () => {
  await withStore(async (db, lease, platform) => {
    for (let i = 0; i < 30; i++) await db.set("n", i, i);
    const snap = await db.snapshot();
    try {
      const at = Number(snap.version);
      for (let i = 0; i < 30; i++) await db.set("n", i, -i);
      assert.ok(readLeasePin(platform, lease)! <= at, "compaction elsewhere keeps what the snapshot reads");
      await sleep(3 * PIN_PUBLISH_EVERY_MS);
      assert.equal(readLeasePin(platform, lease), at, "the snapshot holds the pin once the write is made");
      assert.equal(await snap.get("n", 5), 5);
    } finally {
      snap.release();
    }
  });
});

test(`${R} a watcher replaying history from an older version lowers the lease pin at once, even while a write is put off`, async () => {
  await withStore(async (db, lease, platform) => {
    for (let i = 0; i < 30; i++) await db.set("n", i, i);
    await sleep(3 * PIN_PUBLISH_EVERY_MS);
    // Commits within one interval: the pin moves with each (to the version before it, when
    // its batch publishes); the first move is written, the next put off.
    await db.set("n", "a", 1);
    const b = await db.set("n", "b", 2);
    await db.set("n", "c", 3);
    assert.ok(readLeasePin(platform, lease)! < Number(b.version), `the move to the second commit's version is put off (pin ${readLeasePin(platform, lease)})`);
    const it = db.watch("n", { prefix: [] }, { fromVersion: 5n });
    try {
      assert.ok(readLeasePin(platform, lease)! <= 5, `the lease pins the watcher's history at once (pin ${readLeasePin(platform, lease)})`);
      const first = await it.next();
      assert.equal(first.value?.version, 6n, "the watcher replays from the version after fromVersion");
    } finally {
      await it.return?.();
    }
  });
});
