// A/B of a multi-process row (W3 counters or W6 transfers, as `npm run bench` runs them)
// between two builds of txtdb, in alternating rounds, so that the machine's swings (the
// disk's sync time, other load) fall on both alike. Every round starts a fresh store and
// `procs` Node workers of scripts/bench/mp-txtdb.ts bound to one build; each worker warms up
// and waits at the barrier as in the bench. Reports each round and each build's median:
// transactions/s, CPU per transaction (all workers' threads), worst per-process p99,
// per-process spread. The rounds swing by ±30 % here from one to the next: run several (5
// or more) and compare medians.
//
//   node scripts/bench/mp-ab.mjs <w3|w6> <procs> <in flight> <rounds> <baseline dist> <candidate dist> [warm ms] [run ms]
//
// A dist directory must resolve txtdb's own imports as the package does: keep its
// package.json beside it and node_modules above it (e.g. `cp -r dist package.json
// scratch/base/` inside the repository before changing the source; `./dist` after building).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { build } from "esbuild";

const [mode, procsArg, inFlightArg, roundsArg, baseDir, candDir, warmArg, runArg] = process.argv.slice(2);
if (!["w3", "w6"].includes(mode) || !baseDir || !candDir) {
  throw new Error("usage: mp-ab.mjs <w3|w6> <procs> <in flight> <rounds> <baseline dist> <candidate dist> [warm ms] [run ms]");
}
const procs = Number(procsArg), inFlight = Number(inFlightArg), rounds = Number(roundsArg);
const warm = `${Number(warmArg ?? 3000)}ms`, run = `${Number(runArg ?? 3000)}ms`;

const work = fs.mkdtempSync(path.join(os.tmpdir(), "txtdb-mp-ab-"));
const bundle = `${work}/mp-txtdb.js`;
await build({ entryPoints: ["scripts/bench/mp-txtdb.ts"], outfile: bundle, bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning" });
const source = fs.readFileSync(bundle, "utf8");
const builds = [["baseline", baseDir], ["candidate", candDir]].map(([name, dir]) => {
  const mod = path.resolve(dir, "mod.js");
  const worker = `${work}/worker-${name}.mjs`;
  fs.writeFileSync(worker, source.replace(/from "txtdb"/g, `from ${JSON.stringify(mod)}`));
  return { name, mod, worker };
});

function runWorkers(worker, dir) {
  return Promise.all(Array.from({ length: procs }, () => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, mode, dir, run, "1000", String(inFlight), warm, String(procs), `${dir}.barrier`], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1))) : reject(new Error(`worker exited ${code}`))));
  })));
}

const results = { baseline: [], candidate: [] };
try {
  for (let r = 0; r < rounds; r++) {
    for (const b of builds) {
      const dir = fs.mkdtempSync(`${work}/store-`);
      const { open } = await import(b.mod);
      const db = await open(dir, { namespaces: ["b"] });
      if (mode === "w6") await db.transaction((tx) => { for (let i = 0; i < 100; i++) tx.set("b", ["acct", i], 1000); });
      await db.close();
      const res = await runWorkers(b.worker, dir);
      const ops = res.reduce((a, x) => a + x.ops, 0);
      const row = {
        perSec: Math.round(ops / (Math.max(...res.map((x) => x.ms)) / 1000)),
        cpuUs: Math.round(res.reduce((a, x) => a + x.cpuUs, 0) / ops),
        p99Ms: Math.max(...res.map((x) => x.p99us)) / 1000,
        spread: Math.max(...res.map((x) => x.ops / x.ms)) / Math.min(...res.map((x) => x.ops / x.ms)),
      };
      results[b.name].push(row);
      console.log(`round ${r + 1} ${b.name.padEnd(9)} ${String(row.perSec).padStart(6)}/s  ${row.cpuUs} µs CPU per transaction  p99 ${row.p99Ms.toFixed(1)} ms  spread ${row.spread.toFixed(2)}×`);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(`${dir}.barrier`, { recursive: true, force: true });
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b), m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
};
const base = median(results.baseline.map((x) => x.perSec));
for (const [name, rows] of Object.entries(results)) {
  const perSec = median(rows.map((x) => x.perSec));
  console.log(`${name.padEnd(9)} median ${perSec}/s (${(perSec / base).toFixed(2)}× baseline), ${median(rows.map((x) => x.cpuUs))} µs CPU per transaction; rounds: ${rows.map((x) => x.perSec).join(" / ")}`);
}
