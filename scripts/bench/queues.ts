/**
 * Bench of durable queues across processes (any runtime). Usage: queues.ts <mode> <dir> [args]
 *   consume <dir> <consumers> <concurrency>     listens to queue "bench" until the producer is done and the
 *                                               queue is empty; notes, per message, the time from the
 *                                               producer's enqueue() call to the handler's start (clocks:
 *                                               performance.timeOrigin + now(), one machine)
 *   produce <dir> <consumers> <n> <inFlight> <pauseMs> [warm]
 *                                               waits for <consumers> listeners, enqueues `warm` untimed
 *                                               messages and waits until they are handled (the JIT warms up
 *                                               in every process), then enqueues n messages, <inFlight> at a
 *                                               time, pausing <pauseMs> after each batch
 * Prints one JSON line: consume { runtime, ops, warmOps, firstMs, lastMs, samplesUs, redelivered } (ops and
 * the times count the timed messages only);
 * produce { runtime, ops, startMs, endMs }.
 */
import { open, detectRuntime } from "txtdb";

type G = { Deno?: { args: string[] }; process?: { argv: string[] } };
const g = globalThis as unknown as G;
const [mode, dir, ...rest] = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const db = await open(dir!, { namespaces: ["ctl"] });
const runtime = detectRuntime();

if (mode === "consume") {
  const [consumers, concurrency] = rest.map(Number);
  const stop = new AbortController();
  const samplesUs: number[] = [];
  const seen = new Set<number>();
  let ops = 0, warmOps = 0, redelivered = 0, firstMs = 0, lastMs = 0;
  const listening = db.listenQueue<{ at: number; i: number }>("bench", (m, msg) => {
    const t = now();
    if (msg.attempt > 1 || seen.has(m.i)) redelivered++;
    seen.add(m.i);
    if (m.i < 0) {
      warmOps++; // a warm-up message (negative i): not timed
      return;
    }
    if (ops === 0) firstMs = t;
    lastMs = t;
    ops++;
    if (samplesUs.length < 200_000) samplesUs.push((t - m.at) * 1000);
  }, { concurrency: concurrency!, signal: stop.signal });
  await db.set("ctl", ["ready", runtime, Math.random()], true);
  void consumers;
  for (;;) {
    await sleep(250);
    const done = await db.get<boolean>("ctl", "done");
    const s = db.queueStats("bench");
    if (done && s.ready + s.delayed + s.running === 0) break;
  }
  stop.abort();
  await listening;
  const st = db.stats();
  console.log(JSON.stringify({ runtime, ops, warmOps, firstMs, lastMs, samplesUs, redelivered, commits: st.commits, batches: st.batches, lockWaitUs: st.lockWaitUs,  fsyncUs: st.fsyncUs }));
} else if (mode === "produce") {
  const [consumers, n, inFlight, pauseMs, warm = 0] = rest.map(Number);
  while ((await db.count("ctl", { prefix: ["ready"] })) < consumers!) await sleep(5);
  /** Enqueues `count` messages numbered from `first` (negative: warm-up), as the row says. */
  const produce = async (count: number, first: number) => {
    for (let i = 0; i < count; i += inFlight!) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(count, i + inFlight!); j++) batch.push(db.enqueue("bench", { at: now(), i: first < 0 ? first - j : j }));
      await Promise.all(batch);
      if (pauseMs! > 0) await sleep(pauseMs!);
    }
  };
  if (warm > 0) {
    await produce(warm, -1);
    for (;;) {
      const s = db.queueStats("bench");
      if (s.ready + s.delayed + s.running === 0) break;
      await sleep(5);
    }
  }
  const startMs = now();
  await produce(n!, 0);
  const endMs = now();
  await db.set("ctl", "done", true);
  console.log(JSON.stringify({ runtime, ops: n, startMs, endMs }));
}
await db.close();
