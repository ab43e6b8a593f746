/**
 * Format 1 → 2 in place, and back: a store written by the format-1 release
 * (tests/fixtures/v1-store, made by tests/fixtures/make-v1-store.mjs) opens read-only as it
 * is, is upgraded by a writable open, rolls back with `migrateStore(..., { rollback })`
 * (what `txtdb migrate --rollback` runs), and upgrades again, with the same data every
 * time; a crash at every file operation of the upgrade leaves the old store or the new one.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform, open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { databaseInternals, decodeInternal, migrateStore, parseFrame } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const R = `[${runtime}]`;
const FIXTURE = "tests/fixtures/v1-store";
const HEAD = 295n;

function copyFixture(): string {
  const dir = tempDir("v1");
  for (const name of fs.readdirSync(FIXTURE)) fs.copyFileSync(`${FIXTURE}/${name}`, `${dir}/${name}`);
  return dir;
}

function manifestOf(dir: string): Record<string, unknown> {
  const r = parseFrame(new Uint8Array(fs.readFileSync(`${dir}/MANIFEST`)), 0);
  assert.equal(r.kind, "ok");
  return decodeInternal((r as { body: Uint8Array }).body) as Record<string, unknown>;
}

/** What make-v1-store.mjs wrote, read back through every read path. */
async function verifyContent(db: Database, where: string, head: bigint | null = HEAD): Promise<void> {
  assert.deepEqual(await db.listNamespaces(), ["late", "orders", "renamed", "users"], where);
  for (let i = 0; i < 200; i++) {
    const v = await db.get("users", ["u", i]);
    if (i % 3 === 0 || i === 1) assert.equal(v, undefined, `${where}: user ${i} was deleted`);
    else assert.deepEqual(v, { name: `user ${i}`, n: i, tags: ["a", "b"] }, `${where}: user ${i}`);
    assert.deepEqual(await db.get("orders", [i % 7, BigInt(i), i % 2 === 0]), new Uint8Array([i, i + 1]), `${where}: order ${i}`);
  }
  for (let i = 0; i < 20; i++) assert.equal(await db.get("users", ["u", 1000 + i]), `after ${i}`, `${where}: tail write ${i}`);
  assert.deepEqual(await db.get("users", "date"), new Date(1700000000000));
  assert.equal(await db.get("users", "big"), 12345678901234567890n);
  assert.deepEqual(await db.get("renamed", "k"), new Map([["x", 1]]));
  assert.equal(await db.get("late", ["x", 1]), null);
  const users: unknown[] = [];
  for await (const e of db.list("users", { prefix: ["u"] })) users.push(e.key);
  assert.equal(users.length, 200 - 67 - 1 + 20, `${where}: users listed`);
  const reversed: unknown[] = [];
  for await (const e of db.list("users", { prefix: ["u"] }, { reverse: true })) reversed.push(e.key);
  assert.deepEqual(reversed, [...users].reverse(), `${where}: reverse listing`);
  const orders: unknown[] = [];
  for await (const e of db.list("orders", {}, { limit: 1000 })) orders.push(e.key);
  assert.equal(orders.length, 200);
  const e = await db.getEntry("users", ["u", 2]);
  assert.ok(e && e.version > 0n && e.version <= HEAD, `${where}: versions carry over`);
  if (head !== null) assert.equal(db.stats().version, head, `${where}: the head version`);
}

test(`${R} a format-1 store opens read-only as it is, upgrades on a writable open, rolls back and upgrades again, the same data throughout`, async () => {
  const dir = copyFixture();
  assert.equal(manifestOf(dir).format, 1);
  const reader = await open(dir, { readOnly: true });
  await verifyContent(reader, "format 1, read-only");
  assert.equal(manifestOf(dir).format, 1, "a read-only open changes nothing");
  await reader.close();

  const db = await open(dir);
  const m = manifestOf(dir);
  assert.equal(m.format, 2, "a writable open upgraded the store");
  const tables = m.tables as { name: string; level: number }[];
  assert.ok(tables.length >= 1 && tables.every((t) => fs.existsSync(`${dir}/${t.name}`)), JSON.stringify(tables));
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith("ckpt-")), [], "the checkpoint is deleted once the new manifest is durable");
  await verifyContent(db, "upgraded");
  assert.equal((await db.check()).ok, true);
  // Rollback refuses while another process (here: handle) has the store open.
  await assert.rejects(migrateStore(databaseInternals(db).platform, dir, { rollback: true, lockTimeoutMs: 2000 }), (e: unknown) => e instanceof TxtDbError && e.code === "FORMAT" && /open/.test(e.message));
  await db.set("users", "written-in-2", 2); // a commit in the log since the upgrade
  await db.close();

  const back = await migrateStore(await defaultPlatform(), dir, { rollback: true });
  assert.equal(back.format, 1);
  assert.ok(back.change && back.change.written.length === 1 && back.change.deleted.length === tables.length, JSON.stringify(back.change));
  assert.equal(manifestOf(dir).format, 1);
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith("tbl-")), [], "the tables are gone after a rollback");
  const v1 = await open(dir, { readOnly: true });
  await verifyContentAfterWrite(v1, "rolled back");
  await v1.close();

  const again = await open(dir);
  assert.equal(manifestOf(dir).format, 2);
  await verifyContentAfterWrite(again, "upgraded again");
  assert.equal((await again.check()).ok, true);
  for (let i = 0; i < 300; i++) await again.set("users", ["more", i], i);
  await again.compact();
  assert.equal(await again.get("users", ["more", 299]), 299);
  await verifyContentAfterWrite(again, "compacted after the upgrade");
  await again.close();
  const none = await migrateStore(await defaultPlatform(), dir);
  assert.equal(none.change, undefined, "migrating a store already in the current format changes nothing");
});

async function verifyContentAfterWrite(db: Database, where: string): Promise<void> {
  assert.equal(await db.get("users", "written-in-2"), 2, `${where}: the commit made after the upgrade`);
  assert.ok(db.stats().version > HEAD);
  await verifyContent(db, where, null); // everything else as the fixture holds it
}

test(`${R} a newer format than this release knows is refused with FORMAT, nothing changed`, async () => {
  const dir = copyFixture();
  const db = await open(dir);
  await db.close();
  const { encodeInternal, frame } = await import("txtdb/internal");
  const m = manifestOf(dir);
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal({ ...m, format: 4 })));
  const before = fs.readdirSync(dir).sort();
  await assert.rejects(open(dir), (e: unknown) => e instanceof TxtDbError && e.code === "FORMAT" && /format version 4/.test(e.message));
  await assert.rejects(open(dir, { readOnly: true }), (e: unknown) => e instanceof TxtDbError && e.code === "FORMAT");
  assert.deepEqual(fs.readdirSync(dir).sort(), before);
});

// --- crash safety of the upgrade, on the simulated platform ---

/** Puts the fixture into a simulated world, durably. */
function plantFixture(world: SimWorld): void {
  const p = world.process();
  p.mkdir("/db", 0o700);
  for (const name of fs.readdirSync(FIXTURE)) {
    const f = p.open(`/db/${name}`, { create: true, mode: 0o600 });
    f.write(new Uint8Array(fs.readFileSync(`${FIXTURE}/${name}`)), 0);
    f.sync();
    f.close();
  }
  p.syncDir("/db");
}

test("[sim] a crash (or torn write) at every file operation of the format upgrade, then power loss: the old store or the new one, whole", async () => {
  const probe = new SimWorld(7000);
  plantFixture(probe);
  const setup = probe.counters.ops;
  const db0 = await open("/db", { adapter: probe.process() });
  await db0.close();
  const total = probe.counters.ops - setup;
  assert.ok(probe.trace.some((t) => t.startsWith("rename /db/MANIFEST.tmp")), "the upgrade switches manifests");
  let sawOld = 0, sawNew = 0;
  for (let at = 1; at <= total; at++) {
    for (const kind of ["crash", "tear"] as const) {
      const world = new SimWorld(7000 + 17 * at + (kind === "tear" ? 1 : 0));
      plantFixture(world);
      world.failAt(world.counters.ops + at, kind);
      await open("/db", { adapter: world.process() }).then((db) => db.close()).catch(() => {});
      const where = `${kind} at upgrade operation ${at} (${world.trace[world.trace.length - 1] ?? "?"})`;
      const after = world.powerLoss();
      const format = (() => {
        const f = after.process().open("/db/MANIFEST", { readOnly: true });
        const buf = new Uint8Array(f.size());
        f.read(buf, 0);
        f.close();
        const r = parseFrame(buf, 0);
        assert.equal(r.kind, "ok", `${where}: the manifest survives whole`);
        return (decodeInternal((r as { body: Uint8Array }).body) as { format: number }).format;
      })();
      if (format === 1) sawOld++;
      else sawNew++;
      let db: Database;
      try {
        db = await open("/db", { adapter: after.process(), readOnly: format === 1 && at % 2 === 0 });
      } catch (e) {
        assert.fail(`${where}: reopen failed: ${String(e)}`);
      }
      await verifyContent(db, where);
      const report = await db.check();
      assert.ok(report.ok, `${where}: check(): ${JSON.stringify(report.problems)}`);
      await db.close();
    }
  }
  assert.ok(sawOld > 0 && sawNew > 0, `crashes left both outcomes (old ${sawOld}, new ${sawNew})`);
});

test(`${R} a rollback that meets a damaged table fails with CORRUPTION and leaves the directory as it was: no half-written checkpoint (review helper-72 found its .tmp left behind)`, async () => {
  const dir = tempDir("rollback-damaged");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 200; i++) await db.set("ns", i, "v".repeat(100));
  await db.compact();
  const platform = databaseInternals(db).platform;
  await db.close();
  const table = fs.readdirSync(dir).find((f) => f.startsWith("tbl-"))!;
  const bytes = fs.readFileSync(`${dir}/${table}`);
  bytes[10] = bytes[10]! ^ 0x01; // a data block: the footer and index still read, the merge does not
  fs.writeFileSync(`${dir}/${table}`, bytes);
  const before = fs.readdirSync(dir).sort();
  await assert.rejects(migrateStore(platform, dir, { rollback: true }), (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION");
  assert.deepEqual(fs.readdirSync(dir).sort(), before, "no file left or taken away");
});
