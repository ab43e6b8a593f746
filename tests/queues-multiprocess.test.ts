/**
 * Queues across processes and runtimes: Node, Deno and Bun listeners
 * (tests/workers/queue-listener.ts) on one queue. Every message handled exactly once when
 * nobody dies; never two handlers on one message at a time (a marker file created
 * exclusively per running message: no clocks); none lost when a listener is SIGKILLed in
 * the middle of its handlers (they are redelivered, to the survivors); delays honoured
 * (no handler starts before its message's delay passed, by the wall clock every process
 * shares); failures retried in another process. Runs from the Node and Bun legs (the Deno
 * leg cannot spawn; Deno takes part as a worker).
 */
import { afterEach, assert, canSpawn, sleep, tempDir, test, waitUntil } from "./harness.ts";
import { open } from "txtdb";
import * as fs from "node:fs";
import type { Runtime, Worker } from "./procs.ts";

const { killAllWorkers, startWorker } = canSpawn ? await import("./procs.ts") : { killAllWorkers: () => {}, startWorker: undefined };
afterEach(() => killAllWorkers());

async function listeners(dir: string, markers: string, runtimes: Runtime[], concurrency: number, visibilityMs?: number): Promise<Worker[]> {
  const ws = runtimes.map((r) => startWorker!(r, "queue-listener", [dir, "jobs", String(concurrency), markers, ...(visibilityMs ? [String(visibilityMs)] : [])]));
  await Promise.all(ws.map((w) => w.waitFor("ready", 30_000)));
  return ws;
}

/** The lines of every worker starting with `word`, split. */
function linesOf(ws: Worker[], word: string): string[][] {
  return ws.flatMap((w) => w.lines.filter((l) => l.startsWith(word + " ")).map((l) => l.split(" ")));
}

async function stopAll(ws: Worker[]): Promise<void> {
  for (const w of ws) {
    if (w.child.exitCode !== null || w.child.signalCode !== null) continue;
    const { code } = await w.finish();
    assert.equal(code, 0, `${w.runtime} listener exited ${code}: ${w.stderr}`);
  }
}

test("queues: Node, Deno and Bun listeners handle every message exactly once, one handler at a time, delays honoured", { skip: !canSpawn }, async () => {
  const dir = tempDir("q-mp");
  const markers = tempDir("q-mp-markers");
  await (await open(dir)).close();
  const ws = await listeners(dir, markers, ["node", "deno", "bun"], 4);
  const db = await open(dir, { namespaces: ["orders"] });
  const N = 240;
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    const delayMs = i % 6 === 0 ? 50 + (i % 5) * 40 : 0;
    const value = { i, holdMs: i % 3, ...(delayMs ? { notBefore: Date.now() + delayMs } : {}) };
    if (i % 4 === 1) {
      pending.push(db.transaction((tx) => {
        tx.set("orders", i, true);
        tx.enqueue("jobs", value, delayMs ? { delayMs } : {});
      }));
    } else {
      pending.push(db.enqueue("jobs", value, delayMs ? { delayMs } : {}));
    }
    if (i % 20 === 19) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const waited = await waitUntil(() => linesOf(ws, "done").length >= N, 120_000, 20);
  assert.ok(waited >= 0, `only ${linesOf(ws, "done").length} of ${N} handled; stderr: ${ws.map((w) => w.stderr).join(" | ")}`);
  await sleep(300); // a duplicate delivery, if any, has time to show
  const done = linesOf(ws, "done").map((l) => Number(l[1]));
  assert.equal(done.length, N, "no message handled twice");
  assert.deepEqual([...new Set(done)].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(linesOf(ws, "collision"), [], "never two handlers on one message at once");
  assert.deepEqual(linesOf(ws, "early"), [], "no handler before its delay");
  const byRuntime = ws.map((w) => w.lines.filter((l) => l.startsWith("done ")).length);
  assert.ok(byRuntime.filter((n) => n > 0).length >= 2, `work spread over the runtimes: ${byRuntime.join(", ")}`);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
  await stopAll(ws);
});

test("queues: a listener SIGKILLed mid-handler loses nothing: its messages go to the survivors, one handler at a time", { skip: !canSpawn }, async () => {
  for (const victimRuntime of ["deno", "node", "bun"] as const) {
    const dir = tempDir("q-kill");
    const markers = tempDir("q-kill-markers");
    await (await open(dir)).close();
    const order: Runtime[] = [victimRuntime, ...(["node", "deno", "bun"] as const).filter((r) => r !== victimRuntime)];
    const ws = await listeners(dir, markers, order, 3);
    const victim = ws[0]!;
    const db = await open(dir);
    const N = 60;
    // Handlers long enough (400 ms) that the one whose start was just seen is surely still
    // running at the kill, however late its lines are read on a busy machine (60 ms was not:
    // a CI run saw every started handler done).
    for (let i = 0; i < N; i++) await db.enqueue("jobs", { i, holdMs: 400 });
    await victim.waitFor("start ", 60_000);
    await sleep(20);
    victim.kill9();
    await victim.exited;
    await sleep(200); // the lines it wrote before its death, still in the pipe
    // What it was running when it died: started, not done (from all its lines).
    const running = new Set(victim.lines.filter((l) => l.startsWith("start ")).map((l) => l.split(" ")[1]));
    for (const l of victim.lines.filter((l) => l.startsWith("done "))) running.delete(l.split(" ")[1]);
    const victimPid = victim.lines[0]!.split(" ")[2];
    const inFlight = [...running].map(Number);
    assert.ok(inFlight.length > 0, "the victim was killed while running handlers");
    const survivors = ws.slice(1);
    const doneAll = () => new Set([...linesOf(ws, "done")].map((l) => Number(l[1])));
    const waited = await waitUntil(() => doneAll().size >= N, 120_000, 20);
    assert.ok(waited >= 0, `${victimRuntime} killed: only ${doneAll().size} of ${N} handled; stats ${JSON.stringify(db.queueStats("jobs"))}`);
    for (const i of inFlight) {
      const again = linesOf(survivors, "done").filter((l) => Number(l[1]) === i);
      assert.equal(again.length, 1, `message ${i}, running in the killed ${victimRuntime} process, was handled once by a survivor`);
      assert.ok(Number(again[0]![2]) >= 2, `message ${i} came back as a later attempt`);
    }
    // Collisions only with the dead process's markers (its handlers were cut short).
    for (const c of linesOf(survivors, "collision")) assert.equal(c[2], victimPid, `message ${c[1]}: two live handlers at once`);
    const doneBySurvivors = linesOf(survivors, "done").map((l) => Number(l[1]));
    assert.equal(new Set(doneBySurvivors).size, doneBySurvivors.length, "no message handled twice by the survivors");
    await waitUntil(() => {
      const s = db.queueStats("jobs");
      return s.running + s.ready + s.delayed === 0;
    }, 30_000, 20);
    assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
    await db.close();
    await stopAll(survivors);
  }
});

test("queues: a message that fails in one process is retried, with its attempt count, in any process, then succeeds", { skip: !canSpawn }, async () => {
  const dir = tempDir("q-retry");
  const markers = tempDir("q-retry-markers");
  await (await open(dir)).close();
  const ws = await listeners(dir, markers, ["bun", "deno", "node"], 2);
  const db = await open(dir);
  const N = 30;
  for (let i = 0; i < N; i++) await db.enqueue("jobs", { i, failUntil: 3 });
  const waited = await waitUntil(() => linesOf(ws, "done").length >= N, 120_000, 20);
  assert.ok(waited >= 0, `only ${linesOf(ws, "done").length} of ${N} handled`);
  for (const l of linesOf(ws, "done")) assert.equal(l[2], "3", `message ${l[1]} succeeded at attempt 3`);
  assert.equal(linesOf(ws, "fail").length, 2 * N, "two failed attempts each");
  assert.deepEqual(linesOf(ws, "collision"), []);
  await sleep(100);
  assert.deepEqual(db.queueStats("jobs"), { ready: 0, delayed: 0, running: 0, dead: 0 });
  await db.close();
  await stopAll(ws);
  assert.deepEqual(fs.readdirSync(markers), []);
});
