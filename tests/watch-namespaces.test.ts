/**
 * watch() and namespace drops and renames (issue 9, defect 11): a watcher delivers only keys
 * of the namespace its name denoted when it was asked (at fromVersion, if it denoted one then), every event up to the commit that
 * dropped or renamed that namespace, then ends with NAMESPACE_NOT_FOUND saying where to go
 * on. In one process (every runtime) and from worker processes of every runtime.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { TxtDbError } from "txtdb";
import { drain, take, usingDbs } from "./watchhelpers.ts";

const R = `[${runtime}]`;

function namespaceGone(error: unknown): { ns: string; version: bigint; op: string; to?: string; message: string } {
  assert.ok(error instanceof TxtDbError, `expected a TxtDbError, got ${String(error)}`);
  assert.equal(error.code, "NAMESPACE_NOT_FOUND");
  return { ...(error.details as { ns: string; version: bigint; op: string; to?: string }), message: error.message };
}

test(`${R} watch() ends with NAMESPACE_NOT_FOUND at a drop, after every earlier event, and never sees a re-created namespace of that name`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-ns-drop");
  const db = await open(dir, { namespaces: ["ns"] });
  const writer = await open(dir);
  const ended = drain(db.watch("ns", { prefix: [] }));
  const v1 = (await writer.set("ns", "a", 1)).version;
  await writer.dropNamespace("ns");
  await writer.createNamespace("ns");
  const v2 = (await writer.set("ns", "b", 2)).version;
  const { events, error } = await ended;
  assert.deepEqual(events, [{ version: v1, changes: [{ key: "a", value: 1 }] }]);
  const gone = namespaceGone(error);
  assert.equal(gone.ns, "ns");
  assert.equal(gone.op, "drop");
  assert.equal(gone.to, undefined);
  assert.ok(gone.version > v1 && gone.version < v2, `the drop's version ${gone.version} lies between ${v1} and ${v2}`);
  assert.match(gone.message, /"ns" was dropped at version \d+/);
  assert.ok(gone.message.includes(`fromVersion: ${gone.version}n`), gone.message);
  assert.equal(db.stats().watchers, 0, "the ended watcher is gone");
  // Going on as the message says: the re-created namespace from the drop on.
  const again = await take(db.watch("ns", { prefix: [] }, { fromVersion: gone.version }), 1);
  assert.deepEqual(again, [{ version: v2, changes: [{ key: "b", value: 2 }] }]);
  await writer.close();
  await db.close();
}));

test(`${R} watch() ends with NAMESPACE_NOT_FOUND at a rename and never delivers the new name's writes as keys of the old one`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-ns-rename");
  const db = await open(dir, { namespaces: ["a"] });
  const writer = await open(dir);
  const ended = drain(db.watch("a", { keys: ["k1", "k2"] }));
  const v1 = (await writer.set("a", "k1", 1)).version;
  await writer.renameNamespace("a", "b");
  const v2 = (await writer.set("b", "k2", 2)).version;
  await writer.createNamespace("a");
  await writer.set("a", "k1", "new a");
  const { events, error } = await ended;
  assert.deepEqual(events, [{ version: v1, changes: [{ key: "k1", value: 1 }] }]);
  const gone = namespaceGone(error);
  assert.deepEqual([gone.ns, gone.op, gone.to], ["a", "rename", "b"]);
  assert.ok(gone.version > v1 && gone.version < v2);
  assert.match(gone.message, /"a" was renamed to "b" at version \d+/);
  assert.ok(gone.message.includes(`watch "b" with { fromVersion: ${gone.version}n }`), gone.message);
  // Going on as the message says: the same keys under the new name, nothing repeated or missed.
  const next = await take(db.watch("b", { keys: ["k1", "k2"] }, { fromVersion: gone.version }), 1);
  assert.deepEqual(next, [{ version: v2, changes: [{ key: "k2", value: 2 }] }]);
  await writer.close();
  await db.close();
}));

test(`${R} a watcher replaying fromVersion before a drop delivers the history, then ends at the drop`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-ns-from");
  const db = await open(dir, { namespaces: ["ns"] });
  const v0 = (await db.set("ns", "k", 0)).version;
  const v1 = (await db.set("ns", "k", 1)).version;
  const ended = drain(db.watch("ns", { prefix: [] }, { fromVersion: v0 }));
  const v2 = (await db.set("ns", "k", 2)).version;
  await db.dropNamespace("ns");
  await db.createNamespace("ns");
  await db.set("ns", "k", "after");
  const { events, error } = await ended;
  assert.deepEqual(events.map((e) => [e.version, e.changes[0]!.value]), [[v1, 1], [v2, 2]]);
  const gone = namespaceGone(error);
  assert.equal(gone.op, "drop");
  assert.ok(gone.version > v2);
  await db.close();
}));

test(`${R} a watcher asked after a drop and re-creation, fromVersion before the drop, follows the namespace the name denoted then: its history, then the drop; from there the new one`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-ns-old");
  const db = await open(dir, { namespaces: ["ns", "a"] });
  const v0 = (await db.set("ns", "k", "old namespace")).version;
  await db.dropNamespace("ns");
  await db.createNamespace("ns");
  const v1 = (await db.set("ns", "k", "new namespace")).version;
  // A name that did not exist at fromVersion is resolved when asked: "b", the namespace
  // "a" was, from the rename on (the writes made under the old name were not to "b").
  const va = (await db.set("a", "k", "written as a")).version;
  await db.renameNamespace("a", "b");
  const { events, error } = await drain(db.watch("ns", { prefix: [] }, { fromVersion: v0 - 1n }));
  assert.deepEqual(events.map((e) => [e.version, e.changes[0]!.value]), [[v0, "old namespace"]]);
  const gone = namespaceGone(error);
  assert.equal(gone.op, "drop");
  const it = db.watch("ns", { prefix: [] }, { fromVersion: gone.version });
  const itB = db.watch("b", { prefix: [] }, { fromVersion: v0 - 1n });
  const pending = take(it, 2);
  const pendingB = take(itB, 1);
  const v2 = (await db.set("ns", "k", "live")).version;
  const vb = (await db.set("b", "k", "written as b")).version;
  assert.deepEqual((await pending).map((e) => [e.version, e.changes[0]!.value]), [[v1, "new namespace"], [v2, "live"]]);
  assert.deepEqual((await pendingB).map((e) => [e.version, e.changes[0]!.value]), [[vb, "written as b"]]);
  assert.ok(va < vb);
  await db.close();
}));

/** A worker's output lines for one watcher tag, without the tag. */
function linesOf(lines: string[], tag: string): string[] {
  const out: string[] = [];
  for (const l of lines) {
    const [kind, t, ...rest] = l.split(" ");
    if ((kind === "event" || kind === "ended") && t === tag) out.push(`${kind} ${rest.join(" ")}`);
  }
  return out;
}

/** The version in a worker's "ended" line, checked to lie between the writes around the operation. */
function endedAt(line: string | undefined, expected: Record<string, string>, after: bigint, before: bigint): bigint {
  assert.ok(line?.startsWith("ended NAMESPACE_NOT_FOUND "), `expected an ended line, got ${line}`);
  const details = JSON.parse(line!.slice("ended NAMESPACE_NOT_FOUND ".length)) as Record<string, string>;
  const { version, ...rest } = details;
  assert.deepEqual(rest, expected);
  const v = BigInt(version!);
  assert.ok(v > after && v < before, `version ${v} lies between ${after} and ${before}`);
  return v;
}

// The Deno leg cannot spawn (and procs.ts reads the environment, which it may not either).
if (canSpawn) {
  const { killAllWorkers, RUNTIMES, startWorker } = await import("./procs.ts");
  afterEach(() => killAllWorkers());
  for (const rt of RUNTIMES) {
    test(`${R} watchers in a ${rt} process end at a drop or rename of their namespace, deliver nothing of another namespace, and go on under the new name`, () => usingDbs(async (open) => {
      const dir = tempDir(`watch-ns-${rt}`);
      const db = await open(dir, { namespaces: ["d", "r", "f", "n"] });
      const f0 = (await db.set("f", "k", 0)).version;
      const f1 = (await db.set("f", "k", 1)).version;
      const n0 = (await db.set("n", "k", "old")).version;
      await db.dropNamespace("n");
      await db.createNamespace("n");
      const n1 = (await db.set("n", "k", "new")).version;
      // D: drop and re-create; R: rename, followed; F: replaying from before a drop; N: asked
      // after a drop and re-creation, replaying from before it, following the drop.
      const w = startWorker(rt, "watch-ns", [dir, "D:d:-:0", "R:r:-:1", `F:f:${f0}:0`, `N:n:${n0 - 1n}:1`]);
      try {
        await w.waitFor("watching");
        const d1 = (await db.set("d", "k", 1)).version;
        await db.dropNamespace("d");
        await db.createNamespace("d");
        const d2 = (await db.set("d", "k", 2)).version;
        const r1 = (await db.set("r", "k", 1)).version;
        await db.renameNamespace("r", "r2");
        const r2 = (await db.set("r2", "k", 2)).version;
        const f2 = (await db.set("f", "k", 2)).version;
        await db.dropNamespace("f");
        const n2 = (await db.set("n", "k", "live")).version;
        for (const line of ["ended D", "event R r2", "ended F", `event N n ${n2}`]) await w.waitFor(line, 10_000);
        assert.equal((await w.finish()).code, 0, w.stderr);
        const dLines = linesOf(w.lines, "D");
        const dDrop = endedAt(dLines[1], { ns: "d", op: "drop" }, d1, d2);
        assert.deepEqual(dLines, [
          `event d ${d1} [{"key":"k","value":1}]`,
          `ended NAMESPACE_NOT_FOUND {"ns":"d","version":"${dDrop}","op":"drop"}`,
        ]);
        const rLines = linesOf(w.lines, "R");
        const rRename = endedAt(rLines[1], { ns: "r", op: "rename", to: "r2" }, r1, r2);
        assert.deepEqual(rLines, [
          `event r ${r1} [{"key":"k","value":1}]`,
          `ended NAMESPACE_NOT_FOUND {"ns":"r","version":"${rRename}","op":"rename","to":"r2"}`,
          `event r2 ${r2} [{"key":"k","value":2}]`,
        ]);
        const fLines = linesOf(w.lines, "F");
        const fDrop = endedAt(fLines[2], { ns: "f", op: "drop" }, f2, n2);
        assert.deepEqual(fLines, [
          `event f ${f1} [{"key":"k","value":1}]`,
          `event f ${f2} [{"key":"k","value":2}]`,
          `ended NAMESPACE_NOT_FOUND {"ns":"f","version":"${fDrop}","op":"drop"}`,
        ]);
        const nLines = linesOf(w.lines, "N");
        const nDrop = endedAt(nLines[1], { ns: "n", op: "drop" }, n0, n1);
        assert.deepEqual(nLines, [
          `event n ${n0} [{"key":"k","value":"old"}]`,
          `ended NAMESPACE_NOT_FOUND {"ns":"n","version":"${nDrop}","op":"drop"}`,
          `event n ${n1} [{"key":"k","value":"new"}]`,
          `event n ${n2} [{"key":"k","value":"live"}]`,
        ]);
      } finally {
        killAllWorkers();
      }
    }));
  }
}
