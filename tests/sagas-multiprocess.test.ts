/**
 * Sagas across processes and runtimes: Node, Deno and Bun workers (tests/workers/saga-runner.ts)
 * run the sagas of one store. A runner SIGKILLed in the middle of a step, or of a
 * compensation, has its sagas finished by live runners of the other runtimes (the killed
 * try counts as a try; the step is tried again under its idempotency key); concurrent starts
 * with one idempotency key from three runtimes make one saga; under a load of many sagas
 * with failing tries, spread over three runtimes, no step of a saga ever runs while another
 * does. Runs from the Node and Bun legs (the Deno leg cannot spawn; Deno takes part as a
 * worker).
 */
import { afterEach, assert, canSpawn, tempDir, test } from "./harness.ts";
import { open, Sagas } from "txtdb";
import type { Database, SagaResult } from "txtdb";
import type { Runtime, Worker } from "./procs.ts";

const { killAllWorkers, startWorker } = canSpawn ? await import("./procs.ts") : { killAllWorkers: () => {}, startWorker: undefined };
afterEach(() => killAllWorkers());

const RESUME_AFTER_MS = 300;

async function store(label: string): Promise<{ dir: string; db: Database; sagas: Sagas }> {
  const dir = tempDir(label);
  const db = await open(dir, { namespaces: ["trace"] });
  const sagas = await Sagas.open(db, { namespace: "sagas" });
  return { dir, db, sagas };
}

async function runners(dir: string, runtimes: Runtime[]): Promise<Worker[]> {
  const ws = runtimes.map((r) => startWorker!(r, "saga-runner", [dir, String(RESUME_AFTER_MS)]));
  await Promise.all(ws.map((w) => w.waitFor("ready", 60_000)));
  return ws;
}

async function startOn(w: Worker, tag: string, input: unknown, key?: string): Promise<string> {
  w.send(`start ${tag} ${JSON.stringify(input)}${key === undefined ? "" : ` ${key}`}`);
  const line = await Promise.race([w.waitFor(`started ${tag} `, 60_000), w.waitFor(`error ${tag} `, 60_000)]);
  assert.ok(line.startsWith("started"), `${w.runtime}: ${line}`);
  return line.split(" ")[2]!;
}

/** What the trace namespace says about one saga: tries per step and phase, and violations. */
async function trace(db: Database, id: string): Promise<{ tries: Record<string, number>; violations: unknown[]; busy: unknown }> {
  const tries: Record<string, number> = {};
  for await (const e of db.list<number>("trace", { prefix: ["tries", id] })) {
    const k = e.key as string[];
    tries[`${k[2]}:${k[3]}`] = e.value;
  }
  const violations: unknown[] = [];
  for await (const e of db.list("trace", { prefix: ["violation", id] })) violations.push({ key: e.key, value: e.value });
  return { tries, violations, busy: await db.get("trace", ["busy", id]) };
}

async function finish(ws: Worker[]): Promise<void> {
  for (const w of ws) if (w.child.exitCode === null && w.child.signalCode === null) w.send("exit");
  for (const w of ws) {
    const { code, signal } = await w.exited;
    if (signal === null) assert.equal(code, 0, `${w.runtime} exited ${code}: ${w.stderr}`);
  }
}

const ROUNDS: [Runtime, Runtime[]][] = [["node", ["deno", "bun"]], ["deno", ["bun", "node"]], ["bun", ["node", "deno"]]];

for (const [victim, survivors] of ROUNDS) {
  test(`sagas: a ${victim} runner SIGKILLed mid-step and mid-compensation; ${survivors.join(" and ")} runners finish both sagas, no try overlapping another`, { skip: !canSpawn }, async () => {
    const { dir, db, sagas } = await store(`saga-kill-${victim}`);
    const [doomed] = await runners(dir, [victim]);
    // One saga blocks in its step s2, the other in the compensation of s2 (s3 fails for good).
    const inStep = await startOn(doomed!, "a", { block: "s2" });
    const inCompensation = await startOn(doomed!, "b", { failAt: "s3", blockCompensate: "s2" });
    await doomed!.waitFor(`blocked ${inStep} s2 run`, 60_000);
    await doomed!.waitFor(`blocked ${inCompensation} s2 compensate`, 60_000);
    const others = await runners(dir, survivors);
    // While the doomed runner lives, its sagas stay its own.
    const before = await sagas.get(inStep);
    assert.equal(before?.runner?.runtime, victim);
    assert.equal(before?.step, "s2");
    doomed!.kill9();
    await doomed!.exited;
    const [r1, r2] = await Promise.all([sagas.result(inStep, { timeoutMs: 60_000 }), sagas.result(inCompensation, { timeoutMs: 60_000 })]);
    assert.equal(r1.status, "completed", JSON.stringify(r1));
    const out = r1.output as Record<string, string>;
    assert.equal(out.s1, `s1@${victim}#1`);
    // The killed try counts: the survivor's is try 2, under the same idempotency key.
    assert.match(out.s2!, new RegExp(`^s2@(${survivors.join("|")})#2$`));
    assert.match(out.s3!, new RegExp(`^s3@(${survivors.join("|")})#1$`));
    const t1 = await trace(db, inStep);
    assert.deepEqual(t1.tries, { "s1:run": 1, "s2:run": 1, "s3:run": 1 }, "the blocked try never reached the trace; every other ran once");
    assert.deepEqual(t1.violations, []);
    assert.equal(r2.status, "compensated", JSON.stringify(r2));
    assert.equal(r2.error?.step, "s3");
    assert.equal(r2.error?.attempts, 3);
    const t2 = await trace(db, inCompensation);
    assert.deepEqual(t2.tries, { "s1:run": 1, "s2:run": 1, "s3:run": 3, "s2:compensate": 1, "s1:compensate": 1 });
    assert.deepEqual(t2.violations, []);
    assert.equal(t2.busy, undefined);
    const info = await sagas.get(inCompensation);
    assert.equal(info?.runner, null);
    await finish(others);
    await sagas.close();
    await db.close();
  });
}

test("sagas: one idempotency key started at once from node, deno and bun makes one saga", { skip: !canSpawn }, async () => {
  const { dir, db, sagas } = await store("saga-idem-mp");
  const ws = await runners(dir, ["node", "deno", "bun"]);
  for (let round = 0; round < 8; round++) {
    const key = `order-${round}`;
    const ids = await Promise.all(ws.map((w, i) => startOn(w, `k${round}-${i}`, { sleepMs: 0 }, key)));
    assert.equal(new Set(ids).size, 1, `key ${key} made sagas ${ids.join(", ")}`);
    const r = await sagas.result(ids[0]!, { timeoutMs: 60_000 });
    assert.equal(r.status, "completed");
    assert.deepEqual((await trace(db, ids[0]!)).tries, { "s1:run": 1, "s2:run": 1, "s3:run": 1 });
  }
  assert.equal((await sagas.list()).length, 8);
  await finish(ws);
  await sagas.close();
  await db.close();
});

test("sagas: many sagas with failing tries, run by node, deno and bun at once: all end as they should, no two tries of a saga at once", { skip: !canSpawn }, async () => {
  const { dir, db, sagas } = await store("saga-load-mp");
  const ws = await runners(dir, ["node", "deno", "bun"]);
  const ids: { id: string; input: { flaky?: string[]; failAt?: string; sleepMs: number } }[] = [];
  for (let i = 0; i < 36; i++) {
    const input = { sleepMs: i % 3, ...(i % 4 === 1 ? { flaky: ["s1", "s3"] } : {}), ...(i % 6 === 5 ? { failAt: "s3" } : {}) };
    ids.push({ id: await startOn(ws[i % 3]!, `l${i}`, input), input });
  }
  const results: SagaResult[] = await Promise.all(ids.map(({ id }) => sagas.result(id, { timeoutMs: 120_000 })));
  const ranOn = new Set<string>();
  for (let i = 0; i < ids.length; i++) {
    const { id, input } = ids[i]!;
    const r = results[i]!;
    const t = await trace(db, id);
    assert.deepEqual(t.violations, [], `saga ${id}`);
    for (const v of Object.values(r.output ?? {})) ranOn.add(String(v).split("@")[1]!.split("#")[0]!);
    if (input.failAt) {
      assert.equal(r.status, "compensated");
      // A flaky step's compensation fails its first try as well.
      assert.deepEqual(t.tries, { "s1:run": input.flaky ? 2 : 1, "s2:run": 1, "s3:run": 3, "s2:compensate": 1, "s1:compensate": input.flaky ? 2 : 1 });
    } else {
      assert.equal(r.status, "completed");
      assert.deepEqual(t.tries, { "s1:run": input.flaky ? 2 : 1, "s2:run": 1, "s3:run": input.flaky ? 2 : 1 });
    }
  }
  assert.ok(ranOn.size >= 2, `steps ran on ${[...ranOn].join(", ")} only`);
  await finish(ws);
  await sagas.close();
  await db.close();
});
