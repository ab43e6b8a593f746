/**
 * The command line's pure parts, on every runtime (the Deno leg cannot spawn the CLI):
 * the parser and help (cli/args.ts), progress (cli/output.ts), store figures
 * (cli/figures.ts), the compaction explanation (cli/compact.ts), resumable import's
 * planning (cli/import.ts) and the messages check and doctor print (cli/damage.ts).
 */
import { assert, runtime, test } from "./harness.ts";
import { commandHelp, parseCommandLine, parseMode, usage } from "../cli/args.ts";
import { didYouMean } from "../src/spelling.ts";
import { Progress } from "../cli/output.ts";
import { withoutCheckAdvice } from "../cli/damage.ts";
import { storeFigures } from "../cli/figures.ts";
import type { FiguresInput } from "../cli/figures.ts";
import { explainCompact } from "../cli/compact.ts";
import { BATCH_WRITES_MAX, IMPORT_NS, planBatches, readImport, resumeFrom } from "../cli/import.ts";

const R = `[${runtime}]`;
/** TxtDbError by code and message (the CLI's errors come from the source, not the build). */
const fails = (code: string, message: RegExp) => (e: unknown) => (e as { code?: string }).code === code && message.test((e as Error).message);
async function* lines(text: string) {
  yield* text.split("\n");
}

test(`${R} parseCommandLine: help, version and usage forms`, () => {
  assert.deepEqual(parseCommandLine([]), { kind: "usage" });
  assert.deepEqual(parseCommandLine(["--help"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["-h"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["help"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["help", "list"]), { kind: "help", command: "list" });
  assert.deepEqual(parseCommandLine(["list", "--help"]), { kind: "help", command: "list" });
  assert.deepEqual(parseCommandLine(["import", "./d", "-h"]), { kind: "help", command: "import" });
  assert.deepEqual(parseCommandLine(["--version"]), { kind: "version" });
  assert.deepEqual(parseCommandLine(["-V"]), { kind: "version" });
  assert.match(usage(), /exit codes:\n {2}0 .*\n {2}1 .*problems.*\n {2}2 .*usage/);
  assert.match(commandHelp("import"), /--resume/);
  assert.match(commandHelp("list"), /^usage: txtdb list <dir> <namespace> \[prefix\] \[--limit N\] \[--reverse\]/);
});

test(`${R} parseCommandLine: --limit forms, negative numbers as values, -- ends options`, () => {
  const inv = parseCommandLine(["list", "./d", "n", "--limit=2", "--reverse"]);
  assert.ok(inv.kind === "run" && inv.limit === 2 && inv.reverse && inv.dir === "./d" && inv.rest[0] === "n");
  const spaced = parseCommandLine(["list", "./d", "n", "--limit", "0"]);
  assert.ok(spaced.kind === "run" && spaced.limit === 0);
  const neg = parseCommandLine(["set", "./d", "n", "-1.5", "-5"]);
  assert.ok(neg.kind === "run" && neg.rest[1] === "-1.5" && neg.rest[2] === "-5");
  const dash = parseCommandLine(["set", "./d", "n", "--", "--x", "-y"]);
  assert.ok(dash.kind === "run" && dash.rest[1] === "--x" && dash.rest[2] === "-y");
  for (const bad of [["--limit", "x"], ["--limit=-1"], ["--limit=1.5"], ["--limit="], ["--limit"], ["--limit", "--reverse"]]) {
    assert.throws(() => parseCommandLine(["list", "./d", "n", ...bad]), fails("INVALID_ARGUMENT", /--limit/), bad.join(" "));
  }
  assert.throws(() => parseCommandLine(["list", "./d", "n", "--reverse=yes"]), fails("INVALID_ARGUMENT", /--reverse takes no value/));
  assert.throws(() => parseCommandLine(["import", "./d", "--resume", "--restart"]), fails("INVALID_ARGUMENT", /exclude each other/));
});

test(`${R} parseCommandLine: unknown and mistyped commands and options are refused, with "did you mean"`, () => {
  assert.throws(() => parseCommandLine(["lsit", "./d", "n"]), fails("INVALID_ARGUMENT", /Unknown command "lsit"; did you mean "list"\?/));
  assert.throws(() => parseCommandLine(["exprot", "./d"]), fails("INVALID_ARGUMENT", /did you mean "export"/));
  assert.throws(() => parseCommandLine(["stat", "./d"]), fails("INVALID_ARGUMENT", /did you mean "stats"/));
  assert.throws(() => parseCommandLine(["frobnicate", "./d"]), (e: unknown) => fails("INVALID_ARGUMENT", /Unknown command "frobnicate"/)(e) && !/did you mean/.test((e as Error).message));
  assert.throws(() => parseCommandLine(["help", "lsit"]), fails("INVALID_ARGUMENT", /did you mean "list"/));
  assert.throws(() => parseCommandLine(["list", "./d", "n", "--limt=1"]), fails("INVALID_ARGUMENT", /Unknown option "--limt" for `txtdb list`.*did you mean --limit\?/));
  assert.throws(() => parseCommandLine(["import", "./d", "--resum"]), fails("INVALID_ARGUMENT", /did you mean --resume/));
  assert.throws(() => parseCommandLine(["get", "./d", "n", "k", "--limit=1"]), fails("INVALID_ARGUMENT", /Unknown option "--limit" for `txtdb get` \(it takes --mode, --allow-foreign-owner\)/));
  assert.throws(() => parseCommandLine(["--bogus"]), fails("INVALID_ARGUMENT", /Unknown option "--bogus"/));
  assert.throws(() => parseCommandLine(["get", "./d", "n"]), fails("INVALID_ARGUMENT", /needs a key/));
  assert.throws(() => parseCommandLine(["stats"]), fails("INVALID_ARGUMENT", /needs a store directory/));
  assert.equal(didYouMean("namespace", ["namespaces", "list"]), "namespaces");
  assert.equal(didYouMean("xyz", ["namespaces", "list"]), undefined);
});

test(`${R} Progress: lines only when on, at most once a second; the summary always`, () => {
  let now = 0;
  const written: string[] = [];
  const on = new Progress("export", { on: true, write: (l) => written.push(l), nowMs: () => now });
  on.start("at version 3");
  on.update("1 entries");
  now = 999;
  on.update("2 entries");
  now = 1000;
  on.update(() => "3 entries");
  now = 1500;
  on.update("4 entries");
  on.done("4 entries\x1b[2J");
  assert.deepEqual(written, ["export: at version 3…", "export: 3 entries (1.0 s)…", "export: 4 entries\\x1b[2J in 1.5 s"]);
  written.length = 0;
  const off = new Progress("export", { on: false, write: (l) => written.push(l), nowMs: () => (now += 5000) });
  off.start("x");
  off.update("y");
  off.step("z");
  off.done("done");
  assert.deepEqual(written, ["export: done"]);
});

const figuresInput = (over: Partial<FiguresInput> = {}): FiguresInput => ({
  dir: "/d",
  version: 30n,
  namespaces: 2,
  checkpointVersion: 6n,
  firstSegment: 3,
  tables: [],
  files: [
    { name: "MANIFEST", bytes: 100 }, { name: "frontier", bytes: 36 }, { name: "writer.lock", bytes: 128 },
    { name: "ckpt-0000000000000006-3.dat", bytes: 600 }, { name: "ckpt-0000000000000002-2.dat", bytes: 50 },
    { name: "seg-0000000002.log", bytes: 7 }, { name: "seg-0000000003.log", bytes: 300 }, { name: "seg-0000000004.log", bytes: 400 },
  ],
  leaseBytes: 268,
  processes: [
    { pid: 11, runtime: "bun", startedAtMs: 1_000, pinnedVersion: 9n, pinnedSinceMs: 4_000 },
    // A lease of an older release: its pin, without since when.
    { pid: 12, runtime: "deno", startedAtMs: 5_000, pinnedVersion: 25n },
    { pid: 13, runtime: "node" },
  ],
  writerLock: { held: true, holder: { pid: 12, runtime: "deno", sinceWallMs: 9_000 } },
  nowMs: 10_000,
  ...over,
});

test(`${R} storeFigures: a segment file past a gap in the numbers (a stray copy) is a leftover, not the active segment, and not log bytes`, () => {
  const files = [...figuresInput().files, { name: "seg-0000000009.log", bytes: 1_000_000 }];
  const f = storeFigures(figuresInput({ files }));
  assert.deepEqual(f.segments, { live: 2, first: "seg-0000000003.log", active: "seg-0000000004.log" });
  assert.equal(f.bytes.segments, 700);
  assert.equal(f.files.find((x) => x.name === "seg-0000000009.log")?.role, "leftover");
});

test(`${R} storeFigures: a pin that moved past the head read before the leases (a live writer) is 0 commits behind, never a negative count (review helper-72: doctor printed "-45 behind the head")`, () => {
  const f = storeFigures(figuresInput({ processes: [{ pid: 14, runtime: "node", startedAtMs: 1_000, pinnedVersion: 75n, pinnedSinceMs: 9_000 }] }));
  assert.equal(f.processes[0]!.behindHead, 0n);
  assert.deepEqual(f.oldestPin?.behindHead, 0n);
});

test(`${R} storeFigures: bytes by file role, live segments, checkpoint, processes, oldest pin (and for how long) and lock holder; no per-process counters`, () => {
  const f = storeFigures(figuresInput());
  assert.match(f.scope, /store-wide.*per-process counters.*not shown/);
  assert.equal(f.version, 30n);
  assert.deepEqual(f.bytes, { total: 100 + 36 + 128 + 600 + 50 + 7 + 300 + 400 + 268, segments: 700, tables: 0, checkpoint: 600, leftovers: 57, other: 100 + 36 + 128 + 268 });
  assert.deepEqual(f.segments, { live: 2, first: "seg-0000000003.log", active: "seg-0000000004.log" });
  assert.deepEqual(f.checkpoint, { file: "ckpt-0000000000000006-3.dat", version: 6n, bytes: 600 });
  assert.deepEqual(f.files.filter((x) => x.role === "leftover").map((x) => x.name), ["ckpt-0000000000000002-2.dat", "seg-0000000002.log"]);
  assert.deepEqual(f.processes[0], { pid: 11, runtime: "bun", runningMs: 9_000, pinnedVersion: 9n, behindHead: 21n, pinAgeMs: 6_000 });
  assert.deepEqual(f.processes[1], { pid: 12, runtime: "deno", runningMs: 5_000, pinnedVersion: 25n, behindHead: 5n, pinAgeMs: null });
  assert.deepEqual(f.processes[2], { pid: 13, runtime: "node", runningMs: null, pinnedVersion: null, behindHead: null, pinAgeMs: null });
  assert.deepEqual(f.oldestPin, { pid: 11, runtime: "bun", version: 9n, behindHead: 21n, heldMs: 6_000, heldAtMostMs: 9_000 });
  assert.deepEqual(f.writerLock, { held: true, pid: 12, runtime: "deno", heldMs: 1_000 });
  for (const k of ["commits", "conflicts", "commitLatencyUs", "fsyncs", "reads"]) assert.equal(k in f, false, k);
  const idle = storeFigures(figuresInput({ processes: [], writerLock: { held: false }, checkpointVersion: 0n, files: [{ name: "seg-0000000003.log", bytes: 1 }] }));
  assert.equal(idle.oldestPin, null);
  assert.equal(idle.checkpoint, null);
  assert.deepEqual(idle.writerLock, { held: false });
  // Format 2: the tables the manifest names are "table", by level; an unnamed one is being written (never a plain leftover).
  const v2 = storeFigures(figuresInput({
    checkpointVersion: 6n,
    tables: [{ name: "tbl-0000000000000003.sst", level: 0 }, { name: "tbl-0000000000000001.sst", level: 2 }],
    files: [
      { name: "MANIFEST", bytes: 100 }, { name: "compact.lock", bytes: 0 }, { name: "seg-0000000003.log", bytes: 300 },
      { name: "tbl-0000000000000001.sst", bytes: 5000 }, { name: "tbl-0000000000000003.sst", bytes: 700 }, { name: "tbl-0000000000000004.sst.tmp", bytes: 9 },
    ],
  }));
  assert.deepEqual(v2.tables, { count: 2, bytesByLevel: [700, 0, 5000] });
  assert.equal(v2.bytes.tables, 5700);
  assert.deepEqual(v2.files.filter((x) => x.role === "table").map((x) => x.name), ["tbl-0000000000000001.sst", "tbl-0000000000000003.sst"]);
  assert.deepEqual(v2.files.filter((x) => x.role === "table being written").map((x) => x.name), ["tbl-0000000000000004.sst.tmp"]);
  assert.equal(v2.files.find((x) => x.name === "compact.lock")!.role, "compact lock");
  assert.equal(v2.files.filter((x) => x.role === "leftover").length, 0);
});

test(`${R} explainCompact: says why nothing was folded and what to do, naming the pinning process`, () => {
  const result = { segmentsFolded: 0, checkpointVersion: 6n, minPinnedVersion: 9n, leasesReclaimed: 0, bytesBefore: 10, bytesAfter: 10, logBytesFolded: 0, tableBytesWritten: 0 };
  const before = storeFigures(figuresInput());
  const pinned = explainCompact(result, before, figuresInput().processes);
  assert.match(pinned, /nothing folded.*pid 11 \(bun\) pins version 9, 21 commits behind the head.*snapshot, transaction or watcher.*compact again/);
  assert.doesNotMatch(pinned, /pid 12/);
  const opening = explainCompact(result, before, [{ pid: 13, runtime: "node" }]);
  assert.match(opening, /not published its pin yet.*pid 13/);
  const one = storeFigures(figuresInput({ files: [{ name: "seg-0000000003.log", bytes: 300 }] }));
  assert.match(explainCompact(result, one, []), /active segment seg-0000000003\.log \(300 B\).*pins/);
  const atHead = explainCompact({ ...result, checkpointVersion: 30n }, before, []);
  assert.match(atHead, /tables already hold every version up to the head \(30\)/);
  assert.match(explainCompact({ ...result, segmentsFolded: 2, bytesBefore: 4096, bytesAfter: 100, logBytesFolded: 3000, tableBytesWritten: 900 }, before, []), /folded 2 segments \(2\.9 KiB of log\) into tables at version 6, writing 900 B of tables; the store went from 4\.0 KiB to 100 B/);
  assert.match(explainCompact({ ...result, checkpointVersion: 30n, bytesBefore: 9000, bytesAfter: 2048, tableBytesWritten: 1000 }, before, []), /nothing new to fold; tables holding keys whose expiry has passed were rewritten \(1000 B written\): the store went from 8\.8 KiB to 2\.0 KiB/);
});

test(`${R} import: batches in order within the limits; resume continues after the marker's line and refuses other input`, async () => {
  assert.deepEqual(planBatches(Array.from({ length: 2 * BATCH_WRITES_MAX + 5 }, () => ({ bytes: 1 }))), [[0, BATCH_WRITES_MAX], [BATCH_WRITES_MAX, 2 * BATCH_WRITES_MAX], [2 * BATCH_WRITES_MAX, 2 * BATCH_WRITES_MAX + 5]]);
  assert.deepEqual(planBatches([{ bytes: 20e6 }, { bytes: 1 }, { bytes: 1 }]), [[0, 1], [1, 3]], "a batch ends before 16 MiB");
  assert.deepEqual(planBatches(Array.from({ length: 12 }, () => ({ bytes: 1 })), 12), []);
  const text = '{"ns":"a","key":"k1","value":1}\n\n{"ns":"a","key":"k2","value":2}\n{"ns":"b","key":"k3","value":3}\n';
  const input = await readImport(lines(text));
  assert.deepEqual(input.entries.map((e) => e.line), [1, 3, 4]);
  const same = await readImport(lines(text.replace("\n\n", "\n")));
  assert.equal(same.digest, input.digest, "blank lines do not change the digest");
  const other = await readImport(lines(text.replace('"value":2', '"value":22')));
  assert.notEqual(other.digest, input.digest);
  const marker = { format: 1 as const, digest: input.digest, entries: 3, committedEntries: 2, committedLine: 3 };
  assert.equal(resumeFrom(undefined, input, { resume: false, restart: false }), 0);
  assert.equal(resumeFrom(marker, input, { resume: true, restart: false }), 2);
  assert.equal(resumeFrom(marker, input, { resume: false, restart: true }), 0);
  assert.throws(() => resumeFrom(marker, input, { resume: false, restart: false }), fails("INVALID_ARGUMENT", /unfinished import: entries 1 to 2 of 3 \(input lines 1 to 3\).*--resume.*--restart/));
  assert.throws(() => resumeFrom(marker, other, { resume: true, restart: false }), fails("INVALID_ARGUMENT", /not the unfinished import's/));
  assert.throws(() => resumeFrom(undefined, input, { resume: true, restart: false }), fails("INVALID_ARGUMENT", /Nothing to resume/));
  await assert.rejects(readImport(lines(`{"ns":"${IMPORT_NS}","key":"k","value":1}`)), fails("INVALID_ARGUMENT", /line 1: .*reserved/));
});

test(`${R} check and doctor print damage without the advice to run \`txtdb check\`, in each phrasing the library uses`, () => {
  const cases: [string, string][] = [
    ["Log file \"x\" is damaged at offset 19: frame is cut short. Run `txtdb check`; restore from a backup if it persists", "Log file \"x\" is damaged at offset 19: frame is cut short. Restore from a backup if it persists"],
    ["Manifest of \"d\" does not match the files: x. Nothing was changed; restore the store from a backup, or run `txtdb check`", "Manifest of \"d\" does not match the files: x. Nothing was changed; restore the store from a backup"],
    ["Table \"t\" is damaged at offset 0 (footer): r. Its data cannot be trusted; run `txtdb check` and restore the store from a backup if it persists", "Table \"t\" is damaged at offset 0 (footer): r. Its data cannot be trusted; restore the store from a backup if it persists"],
    ["The value of key k in namespace \"n\" cannot be decoded (c): the store is damaged. Run `txtdb check` to find the file and offset; restore from a backup if it persists", "The value of key k in namespace \"n\" cannot be decoded (c): the store is damaged. Restore from a backup if it persists"],
    ["Checkpoint \"c\" is damaged at offset 4: m. Nothing was changed; run `txtdb check`, restore from a backup if it persists", "Checkpoint \"c\" is damaged at offset 4: m. Nothing was changed; restore from a backup if it persists"],
    ["Log segment \"s\" was deleted while this process wrote to it: its commits since are not in the store. Stop the processes using it, restore the store from a backup, and run `txtdb check`", "Log segment \"s\" was deleted while this process wrote to it: its commits since are not in the store. Stop the processes using it, restore the store from a backup"],
    ["Segment s of \"d\" already holds records; nothing was written. Close and reopen the store; run `txtdb check` if it persists", "Segment s of \"d\" already holds records; nothing was written. Close and reopen the store"],
    ["Manifest \"m\" is damaged at offset 0: truncated; restore it from a backup", "Manifest \"m\" is damaged at offset 0: truncated; restore it from a backup"],
  ];
  for (const [message, expected] of cases) assert.equal(withoutCheckAdvice(message), expected);
});

test(`${R} --mode and --allow-foreign-owner: parsed for every command that opens a store, octal bits with the owner's read and write, anything else a usage mistake`, () => {
  const run = (argv: string[]) => parseCommandLine(argv) as { kind: string; mode?: number; allowForeignOwner?: boolean };
  assert.equal(run(["compact", "d", "--mode", "660"]).mode, 0o660);
  assert.equal(run(["set", "d", "n", "k", "1", "--mode=0640"]).mode, 0o640);
  assert.equal(run(["get", "d", "n", "k", "--mode", "0o600"]).mode, 0o600);
  assert.equal(run(["import", "d", "--mode", "777", "--allow-foreign-owner"]).allowForeignOwner, true);
  assert.equal(run(["stats", "d"]).allowForeignOwner, false);
  assert.equal(run(["stats", "d"]).mode, undefined);
  for (const c of [["stats"], ["doctor"], ["locks"], ["queues"], ["check"], ["compact"], ["backup", "x"], ["get", "n", "k"], ["set", "n", "k", "1"], ["delete", "n", "k"], ["list", "n"], ["namespaces"], ["export"], ["import"]]) {
    const inv = run([c[0]!, "d", ...c.slice(1), "--mode", "640", "--allow-foreign-owner"]);
    assert.equal(inv.mode, 0o640, c[0]);
    assert.equal(inv.allowForeignOwner, true, c[0]);
    assert.match(commandHelp(c[0]!), /--mode MODE .*\n.*--allow-foreign-owner/, c[0]);
  }
  for (const bad of ["644x", "999", "400", "0600 ", "1777", "4755", "-1", "", "rw-r-----", "0x1a0"]) {
    assert.throws(() => parseMode(bad), (e: unknown) => e instanceof Error && (e as { code?: string }).code === "INVALID_ARGUMENT" && /--mode needs octal permission bits/.test(e.message), bad);
    assert.throws(() => parseCommandLine(["set", "d", "n", "k", "1", `--mode=${bad}`]), /--mode needs octal/, bad);
  }
  assert.throws(() => parseCommandLine(["compact", "d", "--mode"]), /--mode needs a value/);
  assert.throws(() => parseCommandLine(["compact", "d", "--allow-foreign-owner=yes"]), /takes no value/);
  assert.throws(() => parseCommandLine(["migrate", "d", "--mode", "660"]), /Unknown option "--mode"/);
  assert.match(usage(), /--mode MODE .*\n.*--allow-foreign-owner/);
});
