/**
 * Locks on named resources across processes and runtimes: Node, Deno and Bun workers
 * (tests/workers/resource-locker.ts) share one store's lock table. The compatibility
 * matrix with holder and requester in different runtimes, the hierarchy, arrival order
 * across three runtimes, a SIGKILLed holder, deadlocks of two and three processes,
 * timeouts that leave no trace, and a random load in a global order (no false deadlock,
 * no broken mutual exclusion). Runs from the Node and Bun legs (the Deno leg cannot spawn;
 * Deno takes part as a worker).
 */
import { afterEach, assert, canSpawn, sleep, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import type { Runtime, Worker } from "./procs.ts";

const { killAllWorkers, startWorker } = canSpawn ? await import("./procs.ts") : { killAllWorkers: () => {}, startWorker: undefined };
afterEach(() => killAllWorkers());

const MODES = ["IS", "IX", "S", "SIX", "X"] as const;
/** The usual matrix, written out independently of the code under test. */
const COMPATIBLE: Record<string, string[]> = { IS: ["IS", "IX", "S", "SIX"], IX: ["IS", "IX"], S: ["IS", "S"], SIX: ["IS"], X: [] };

/** Starts one worker per runtime on the store at `dir` (created first: workers then never race to create it). */
async function workers(dir: string, runtimes: Runtime[]): Promise<Worker[]> {
  await (await open(dir)).close();
  const ws = runtimes.map((r) => startWorker!(r, "resource-locker", [dir]));
  await Promise.all(ws.map((w) => w.waitFor("ready", 30_000)));
  return ws;
}

/** Sends a lock request; resolves with "granted" or the error code, once the worker answers. */
async function lock(w: Worker, id: string, mode: string, resource: unknown, timeoutMs?: number): Promise<{ outcome: string; details: unknown; line: string }> {
  w.send(`lock ${id} ${mode} ${JSON.stringify(resource)}${timeoutMs === undefined ? "" : ` ${timeoutMs}`}`);
  const line = await Promise.race([w.waitFor(`granted ${id} `, 60_000), w.waitFor(`error ${id} `, 60_000)]);
  if (line.startsWith("granted")) return { outcome: "granted", details: undefined, line };
  const [, , code, ...json] = line.split(" ");
  return { outcome: code!, details: JSON.parse(json.join(" ")), line };
}

/** Sends a lock request without waiting for its answer. */
function ask(w: Worker, id: string, mode: string, resource: unknown, timeoutMs?: number): void {
  w.send(`lock ${id} ${mode} ${JSON.stringify(resource)}${timeoutMs === undefined ? "" : ` ${timeoutMs}`}`);
}

function answered(w: Worker, id: string): string | undefined {
  return w.lines.find((l) => l.startsWith(`granted ${id} `) || l.startsWith(`error ${id} `));
}

async function release(w: Worker, id: string): Promise<void> {
  w.send(`release ${id}`);
  await w.waitFor(`released ${id}`);
}

interface Listed {
  resource: unknown;
  mode: string;
  pid: number;
  runtime: string;
  waiting: boolean;
}

async function locksOf(w: Worker): Promise<Listed[]> {
  const before = w.lines.length;
  w.send("locks");
  for (;;) {
    const line = w.lines.slice(before).find((l) => l.startsWith("locks "));
    if (line) return JSON.parse(line.slice(6)) as Listed[];
    await sleep(2);
  }
}

/** Waits until the table shows `n` waiting requests. */
async function waitingCount(w: Worker, n: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if ((await locksOf(w)).filter((l) => l.waiting).length === n) return;
    await sleep(5);
  }
  assert.fail(`the table never showed ${n} waiting requests: ${JSON.stringify(await locksOf(w))}`);
}

async function finish(ws: Worker[]): Promise<void> {
  for (const w of ws) w.send("exit");
  for (const w of ws) {
    const { code } = await w.finish();
    assert.equal(code, 0, `${w.runtime} worker exited ${code}: ${w.stderr}`);
  }
}

test("lock(): the whole compatibility matrix with holder and requester in different runtimes (node, deno, bun)", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-matrix");
  const ws = await workers(dir, ["node", "deno", "bun"]);
  let k = 0;
  for (const held of MODES) {
    for (const asked of MODES) {
      const holder = ws[k % 3]!;
      const requester = ws[(k + 1 + (k >> 2) % 2) % 3]!;
      assert.notEqual(holder.runtime, requester.runtime);
      const resource = ["m", k];
      assert.equal((await lock(holder, `h${k}`, held, resource)).outcome, "granted");
      const r = await lock(requester, `r${k}`, asked, resource, 0);
      const expected = COMPATIBLE[held]!.includes(asked) ? "granted" : "LOCK_TIMEOUT";
      assert.equal(r.outcome, expected, `${held} held by ${holder.runtime}, ${asked} asked by ${requester.runtime}: ${r.line}`);
      if (r.outcome === "granted") await release(requester, `r${k}`);
      await release(holder, `h${k}`);
      k++;
    }
  }
  assert.deepEqual(await locksOf(ws[0]!), [], "every lock was released");
  await finish(ws);
});

test("lock(): a lock on [\"h\", \"x\"] takes the intention lock on [\"h\"] first, seen by every runtime", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-hier");
  const [node, deno, bun] = await workers(dir, ["node", "deno", "bun"]);
  assert.equal((await lock(node!, "x", "X", ["h", "x"])).outcome, "granted");
  const listed = await locksOf(deno!);
  assert.deepEqual(listed.map((l) => [l.resource, l.mode, l.runtime, l.waiting]), [["h", "IX", "node", false], [["h", "x"], "X", "node", false]]);
  assert.equal((await lock(deno!, "s", "S", ["h"], 0)).outcome, "LOCK_TIMEOUT", "S on the parent conflicts with the holder's IX");
  assert.equal((await lock(bun!, "xx", "X", ["h", "x"], 0)).outcome, "LOCK_TIMEOUT");
  assert.equal((await lock(bun!, "is", "IS", ["h"], 0)).outcome, "granted", "IS on the parent is compatible with IX");
  assert.equal((await lock(deno!, "y", "X", ["h", "y"], 0)).outcome, "granted", "a sibling under the same parent");
  assert.equal((await lock(bun!, "deep", "S", ["h", "y", "z"], 0)).outcome, "LOCK_TIMEOUT", "below an X lock");
  await release(deno!, "y");
  assert.equal((await lock(bun!, "deep2", "S", ["h", "y", "z"], 0)).outcome, "granted");
  await release(node!, "x");
  await release(bun!, "is");
  await release(bun!, "deep2");
  assert.deepEqual(await locksOf(node!), []);
  await finish([node!, deno!, bun!]);
});

test("lock(): waiters across three runtimes are served in arrival order, and a compatible request queues behind an earlier incompatible waiter", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-fcfs");
  const ws = await workers(dir, ["node", "deno", "bun", "node"]);
  const [holder, deno, bun, node] = ws as [Worker, Worker, Worker, Worker];
  assert.equal((await lock(holder, "h", "S", "q")).outcome, "granted");
  ask(deno, "d", "X", "q");
  await waitingCount(holder, 1);
  ask(bun, "b", "X", "q");
  await waitingCount(holder, 2);
  ask(node, "n", "S", "q"); // compatible with the S holder, but behind X waiters
  await waitingCount(holder, 3);
  await sleep(50);
  assert.equal(answered(node, "n"), undefined, "the S request overtook earlier X waiters");
  await release(holder, "h");
  await deno.waitFor("granted d ");
  await sleep(30);
  assert.equal(answered(bun, "b"), undefined, "bun was granted while deno held X");
  assert.equal(answered(node, "n"), undefined);
  await release(deno, "d");
  await bun.waitFor("granted b ");
  await sleep(30);
  assert.equal(answered(node, "n"), undefined, "node was granted while bun held X");
  await release(bun, "b");
  await node.waitFor("granted n ");
  await release(node, "n");
  await finish(ws);
});

test("lock(): a SIGKILLed holder's lock is granted to a waiter in another runtime, without waiting for a timeout", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-kill");
  for (const [holderRt, waiterRt] of [["bun", "deno"], ["deno", "node"], ["node", "bun"]] as [Runtime, Runtime][]) {
    const [holder, waiter] = await workers(dir, [holderRt, waiterRt]);
    assert.equal((await lock(holder!, "h", "X", ["k", holderRt])).outcome, "granted");
    ask(waiter!, "w", "S", ["k", holderRt], 30_000);
    await waitingCount(waiter!, 1);
    const t0 = performance.now();
    holder!.kill9();
    await holder!.exited;
    const line = await waiter!.waitFor("granted w ", 30_000);
    const ms = performance.now() - t0;
    console.log(`${holderRt} holder killed: ${waiterRt} waiter granted ${ms.toFixed(1)} ms later (${line})`);
    const listed = await locksOf(waiter!);
    assert.ok(listed.every((l) => l.runtime === waiterRt), `the dead holder's locks are gone: ${JSON.stringify(listed)}`);
    await release(waiter!, "w");
    await finish([waiter!]);
  }
});

test("lock(): a two-process deadlock (node, deno) fails exactly the request that began waiting last with DEADLOCK; the other goes on", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-dl2");
  const [node, deno] = await workers(dir, ["node", "deno"]);
  assert.equal((await lock(node!, "a", "X", "r1")).outcome, "granted");
  assert.equal((await lock(deno!, "b", "X", "r2")).outcome, "granted");
  ask(node!, "a2", "X", "r2");
  await waitingCount(node!, 1);
  const r = await lock(deno!, "b2", "X", "r1");
  assert.equal(r.outcome, "DEADLOCK", r.line);
  const cycle = (r.details as { cycle: { resource: unknown; mode: string; pid: number; runtime: string }[] }).cycle;
  assert.deepEqual(cycle.map((c) => [c.resource, c.mode, c.runtime]), [["r1", "X", "deno"], ["r2", "X", "node"]]);
  await sleep(50);
  assert.equal(answered(node!, "a2"), undefined, "the other waiter keeps waiting (the victim keeps what it holds)");
  await release(deno!, "b");
  await node!.waitFor("granted a2 ");
  assert.ok(!node!.lines.some((l) => l.includes("DEADLOCK")), "exactly one DEADLOCK");
  await release(node!, "a");
  await release(node!, "a2");
  await finish([node!, deno!]);
});

test("lock(): a three-process deadlock across node, deno and bun is found once; the others go on", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-dl3");
  const ws = await workers(dir, ["node", "deno", "bun"]);
  const [node, deno, bun] = ws as [Worker, Worker, Worker];
  for (const [w, r] of [[node, "r1"], [deno, "r2"], [bun, "r3"]] as [Worker, string][]) assert.equal((await lock(w, "own", "X", [r, "x"])).outcome, "granted");
  ask(node, "next", "X", ["r2", "x"]);
  await waitingCount(node, 1);
  ask(deno, "next", "S", ["r3", "x"]);
  await waitingCount(node, 2);
  const r = await lock(bun, "next", "X", ["r1", "x"]);
  assert.equal(r.outcome, "DEADLOCK", r.line);
  const cycle = (r.details as { cycle: { resource: unknown; mode: string; runtime: string }[] }).cycle;
  assert.deepEqual(cycle.map((c) => [c.resource, c.mode, c.runtime]), [[["r1", "x"], "X", "bun"], [["r2", "x"], "X", "node"], [["r3", "x"], "S", "deno"]]);
  await release(bun, "own");
  await deno.waitFor("granted next ");
  await release(deno, "own");
  await release(deno, "next");
  await node.waitFor("granted next ");
  for (const w of ws) assert.equal(w.lines.filter((l) => l.includes(" DEADLOCK ")).length, w === bun ? 1 : 0);
  await release(node, "own");
  await release(node, "next");
  assert.deepEqual(await locksOf(bun), []);
  await finish(ws);
});

test("lock(): a timed-out or aborted wait leaves the queue at once, and what queued behind it goes on", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-timeout");
  const [holder, a, b] = await workers(dir, ["bun", "node", "deno"]);
  assert.equal((await lock(holder!, "h", "S", "t")).outcome, "granted");
  const timedOut = lock(a!, "x", "X", "t", 300);
  await waitingCount(holder!, 1);
  ask(b!, "s", "S", "t"); // compatible with the holder, queued behind the X waiter
  await waitingCount(holder!, 2);
  const r = await timedOut;
  assert.equal(r.outcome, "LOCK_TIMEOUT", r.line);
  const line = await b!.waitFor("granted s ", 10_000);
  assert.ok(line, "the S request behind the timed-out X waiter was granted without the holder releasing");
  const listed = await locksOf(holder!);
  assert.ok(listed.every((l) => !l.waiting), `no waiting entry is left: ${JSON.stringify(listed)}`);
  assert.deepEqual(listed.map((l) => [l.resource, l.mode, l.runtime]).sort(), [["t", "S", "bun"], ["t", "S", "deno"]]);
  await release(holder!, "h");
  await release(b!, "s");
  await finish([holder!, a!, b!]);
});

test("lock(): under a random load in a global order across node, deno and bun there is no deadlock, no error and no broken mutual exclusion", { skip: !canSpawn }, async () => {
  const dir = tempDir("rlock-load");
  const checkDir = tempDir("rlock-load-check");
  const ws = await workers(dir, ["node", "deno", "bun", "node"]);
  ws.forEach((w, i) => w.send(`load 150 ${1000 + i} ${checkDir}`));
  const results = await Promise.all(ws.map((w) => w.waitFor("load ", 240_000)));
  for (const [i, line] of results.entries()) {
    const r = JSON.parse(line.slice(5)) as { violations: number; errors: number; deadlocks: number; locksTaken: number; waits: number };
    assert.equal(r.violations, 0, `${ws[i]!.runtime}: mutual exclusion broken: ${line}`);
    assert.equal(r.errors, 0, `${ws[i]!.runtime}: ${ws[i]!.lines.filter((l) => l.startsWith("loaderror")).join("; ")}`);
    assert.equal(r.deadlocks, 0, `${ws[i]!.runtime}: a false deadlock`);
    assert.ok(r.locksTaken > 100, line);
  }
  const waits = results.reduce((a, l) => a + (JSON.parse(l.slice(5)) as { waits: number }).waits, 0);
  assert.ok(waits > 0, "the load contended (some requests waited)");
  await finish(ws);
});
