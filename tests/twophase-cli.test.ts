/**
 * The command line and two-phase commit: `txtdb doctor` lists prepared transactions with
 * their age and coordinator, and flags those in doubt past their timeout (exit 1); a
 * writable command's open resolves them against the coordinator's log. Each runtime's CLI.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { Coordinator, open } from "txtdb";

const { runCli } = canSpawn ? await import("./clirun.ts") : { runCli: undefined };

test(`[${runtime}] txtdb doctor lists prepared transactions and flags those in doubt; a writable open resolves them`, { skip: !canSpawn }, async () => {
  for (const rt of ["node", "deno", "bun"] as const) {
    const dir = tempDir("2pc-cli");
    const coordDir = tempDir("2pc-cli-c");
    const coord = await Coordinator.open(coordDir, { recoverIntervalMs: 0 });
    await coord.close(); // its process's lease is released: a prepare naming it is due at once
    const reader = await open(coordDir, { readOnly: true });
    const id = (await reader.get<string>("coordinator", "id"))!;
    await reader.close();
    const db = await open(dir, { namespaces: ["ns"] });
    const waiting = await db.begin();
    waiting.set("ns", "a", 1);
    await waiting.prepare("no-coordinator", { inDoubtTimeoutMs: 3_600_000 });
    await db.close();
    let r = runCli!(rt, ["doctor", dir]);
    assert.equal(r.code, 0, `${rt}: ${r.out}${r.err}`);
    assert.match(r.out, /prepared transactions \(two-phase commit\): 1, 0 in doubt/);
    assert.match(r.out, /no-coordinator: prepared .* ago at version \d+, 1 keys, no coordinator/);
    const again = await open(dir);
    const orphan = await again.begin();
    orphan.set("ns", "b", 1);
    // Prepared with a zero in-doubt timeout naming a coordinator process that is gone; the
    // handle closes before its resolver's first poll.
    await orphan.prepare("orphan", { coordinator: { path: coordDir, id, lease: "0000000000000000.lease" }, inDoubtTimeoutMs: 0 });
    await again.close();
    r = runCli!(rt, ["doctor", dir]);
    assert.equal(r.code, 1, `${rt}: ${r.out}${r.err}`);
    assert.match(r.out, /orphan: .*coordinator .* \(its process is gone\), IN DOUBT/);
    assert.match(r.out, /warning: 1 prepared transaction is in doubt past the timeout/);
    r = runCli!(rt, ["compact", dir]);
    assert.equal(r.code, 0, `${rt}: ${r.out}${r.err}`);
    r = runCli!(rt, ["doctor", dir]);
    assert.doesNotMatch(r.out, /orphan/, `${rt}: the writable open resolved it`);
    const check = await open(dir);
    assert.equal(await check.get("ns", "b"), undefined, "aborted: no commit decision in the coordinator's log");
    assert.deepEqual((await check.listPrepared()).map((p) => p.txid), ["no-coordinator"]);
    await check.abortPrepared("no-coordinator");
    await check.close();
  }
});

test(`[${runtime}] txtdb doctor on a coordinator store counts its decisions and flags a commit decision no store confirmed past the in-doubt timeout`, { skip: !canSpawn }, async () => {
  const coordDir = tempDir("2pc-cli-decisions");
  const coord = await Coordinator.open(coordDir, { recoverIntervalMs: 0 });
  await coord.close();
  const cdb = await open(coordDir);
  const missing = tempDir("2pc-cli-gone"); // a participant path where no store is
  await cdb.set("decisions", "fresh", { outcome: "commit", atMs: Date.now(), participants: [missing], others: [], by: "coordinator" });
  await cdb.set("decisions", "aborted", { outcome: "abort", atMs: Date.now() - 3_600_000, participants: [], others: [], by: "resolver" });
  await cdb.set("decisions", "with-others", { outcome: "commit", atMs: Date.now() - 3_600_000, participants: [], others: ["mail"], by: "coordinator" });
  await cdb.close();
  for (const rt of ["node", "deno", "bun"] as const) {
    const r = runCli!(rt, ["doctor", coordDir]);
    assert.equal(r.code, 0, `${rt}: a fresh commit decision and kept ones are no problem: ${r.out}${r.err}`);
    assert.match(r.out, /coordinator store: 2 commit decisions, 1 abort decisions in its log/);
  }
  const again = await open(coordDir);
  await again.set("decisions", "stale", { outcome: "commit", atMs: Date.now() - 120_000, participants: [missing], others: [], by: "coordinator" });
  await again.close();
  for (const rt of ["node", "deno", "bun"] as const) {
    const r = runCli!(rt, ["doctor", coordDir]);
    assert.equal(r.code, 1, `${rt}: ${r.out}${r.err}`);
    assert.match(r.out, /coordinator store: 3 commit decisions, 1 abort decisions/);
    assert.match(r.out, /stale: commit decided 1\d\d(\.\d)? s ago, not confirmed by every store of/);
    assert.match(r.out, /warning: 1 commit decision waits for participant stores to confirm them/);
    assert.doesNotMatch(r.out, /fresh:|with-others:/);
  }
});
