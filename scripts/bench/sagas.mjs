#!/usr/bin/env node
// Sagas on Node, against the tsup build (run `npx tsup` first):
//   1. throughput: sagas of three no-op steps, one process, by durability ("full", "none");
//   2. takeover: a runner is SIGKILLed in the middle of a step; how long until another
//      process (a live runner with the default resumeAfterMs, 5 s) has finished the saga.
// `node scripts/bench/sagas.mjs [--sagas=N] [--kills=N]`. Prints one line per figure.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { open, Sagas } from "../../dist/mod.js";

const arg = (name, d) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? d);

if (process.argv[2] === "--child") {
  // A runner: defines "bench"; step "slow" blocks on its first try (to be killed there).
  const [, , , dir, resumeAfterMs] = process.argv;
  const db = await open(dir);
  const sagas = await Sagas.open(db, { resumeAfterMs: Number(resumeAfterMs) });
  sagas.define("bench", [
    { name: "slow", run: (input, ctx) => (ctx.attempt === 1 && input.block ? (console.log(`blocked ${ctx.sagaId}`), new Promise(() => {})) : "ok") },
  ]);
  console.log("ready");
  process.stdin.resume();
  process.stdin.on("data", async (d) => {
    for (const line of String(d).split("\n").filter(Boolean)) {
      const id = await sagas.start("bench", { block: true }, { idempotencyKey: line });
      console.log(`started ${id}`);
    }
  });
} else {
  mkdirSync("/tmp/txtdb-bench", { recursive: true });
  const n = arg("sagas", 2000);
  for (const durability of ["full", "none"]) {
    const dir = mkdtempSync("/tmp/txtdb-bench/sagas-");
    const db = await open(dir, { durability });
    const sagas = await Sagas.open(db, { concurrency: 64 });
    sagas.define("three", [{ name: "a", run: () => 1 }, { name: "b", run: () => 2 }, { name: "c", run: () => 3 }]);
    const t0 = performance.now();
    const ids = await Promise.all(Array.from({ length: n }, (_, i) => sagas.start("three", i)));
    await Promise.all(ids.map((id) => sagas.result(id)));
    const s = (performance.now() - t0) / 1000;
    console.log(`sagas of 3 steps, durability ${durability}: ${n} in ${s.toFixed(2)} s = ${Math.round(n / s)} sagas/s (${Math.round((n * 5) / s)} commits/s)`);
    await sagas.close();
    await db.close();
  }

  const child = (dir) => {
    const c = spawn(process.execPath, [new URL(import.meta.url).pathname, "--child", dir, "5000"], { stdio: ["pipe", "pipe", "inherit"] });
    const lines = [];
    const waiters = [];
    let buf = "";
    c.stdout.setEncoding("utf8").on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(l);
        for (const w of waiters.splice(0)) w();
      }
    });
    c.waitFor = async (p) => {
      for (;;) {
        const l = lines.find((x) => x.startsWith(p));
        if (l) return l;
        await new Promise((r) => waiters.push(r));
      }
    };
    return c;
  };
  const takeovers = [];
  for (let k = 0; k < arg("kills", 5); k++) {
    const dir = mkdtempSync("/tmp/txtdb-bench/sagas-kill-");
    const doomed = child(dir);
    await doomed.waitFor("ready");
    doomed.stdin.write(`k${k}\n`);
    const id = (await doomed.waitFor("blocked ")).split(" ")[1];
    const survivor = child(dir);
    await survivor.waitFor("ready");
    const db = await open(dir);
    const sagas = await Sagas.open(db);
    // Let the survivor load the saga and find its runner alive: the kill then comes while it
    // waits for its next look at the runner's lease (the path a real takeover takes).
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = performance.now();
    doomed.kill("SIGKILL");
    const r = await sagas.result(id);
    const ms = performance.now() - t0;
    if (r.status !== "completed") throw new Error(JSON.stringify(r));
    takeovers.push(ms);
    survivor.kill("SIGKILL");
    await sagas.close();
    await db.close();
  }
  takeovers.sort((a, b) => a - b);
  console.log(`takeover after SIGKILL (resumeAfterMs 5000): ${takeovers.map((t) => Math.round(t)).join(", ")} ms (max ${Math.round(takeovers.at(-1))})`);
}
