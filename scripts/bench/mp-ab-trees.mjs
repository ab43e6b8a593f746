// A/B of a multi-process row between two source trees of txtdb (each built: `npm run build`
// there), in alternating rounds whose order flips every round. Unlike mp-ab.mjs (Node workers
// bound to two dist directories), W6 runs the bench's mix of runtimes, Node, Deno and Bun
// workers of scripts/bench/mp-txtdb.ts, each from its tree (Deno and Bun from the source,
// Node from the tree's dist), so a change to an adapter or to what only Deno or Bun runs is
// measured too. Reports each round's transactions/s, worst p99 and CPU per transaction by
// runtime, then the medians.
//
//   node scripts/bench/mp-ab-trees.mjs <tree A> <tree B> <w3|w6> <procs> <in flight> <rounds> [warm] [run]
//
// e.g. `git worktree add ../txtdb-base <commit>`, build both, then
// `node scripts/bench/mp-ab-trees.mjs ../txtdb-base . w6 8 1 4`.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { build } from "esbuild";
import * as path from "node:path";
const [treeA, treeB, mode, procsArg, inFlight, roundsArg, warm = "3000ms", run = "4000ms"] = process.argv.slice(2);
if (!treeA || !treeB || !["w3", "w6"].includes(mode)) throw new Error("usage: mp-ab-trees.mjs <tree A> <tree B> <w3|w6> <procs> <in flight> <rounds> [warm] [run]");
const [A, B] = [treeA, treeB].map((t) => path.resolve(t));
const procs = Number(procsArg), rounds = Number(roundsArg);
const denoBin = path.resolve("node_modules/.bin/deno"), bunBin = path.resolve("node_modules/.bin/bun");
const work = fs.mkdtempSync("/tmp/txtdb-mp-ab-trees-");
// The Node worker, bundled once, bound to each tree's dist (as mp-ab.mjs binds its workers).
const bundle = `${work}/mp.js`;
await build({ entryPoints: [new URL("./mp-txtdb.ts", import.meta.url).pathname], outfile: bundle, bundle: true, format: "esm", platform: "node", target: "node20", packages: "external", logLevel: "warning" });
const source = fs.readFileSync(bundle, "utf8");
const trees = [["A", A], ["B", B]].map(([name, tree]) => {
  const worker = `${work}/worker-${name}.mjs`;
  fs.writeFileSync(worker, source.replace(/from "txtdb"/g, `from ${JSON.stringify(`${tree}/dist/mod.js`)}`));
  return { name, tree, worker };
});
const RUNTIMES = ["node", "deno", "bun"];

/** The command of worker `i` (W6 mixes runtimes as the bench does: node, deno, bun, node, ...). */
function workerCommand(t, i, args) {
  const rt = mode === "w6" ? RUNTIMES[i % 3] : "node";
  if (rt === "node") return { rt, cmd: process.execPath, args: [t.worker, ...args] };
  if (rt === "deno") return { rt, cmd: denoBin, args: ["run", "--quiet", "--allow-read", "--allow-write", "scripts/bench/mp-txtdb.ts", ...args] };
  return { rt, cmd: bunBin, args: ["scripts/bench/mp-txtdb.ts", ...args] };
}

/** One round of tree `t`: a fresh store, `procs` workers warmed up and timed together. */
async function round(t) {
  const dir = fs.mkdtempSync(`${work}/store-`);
  const { open } = await import(`${t.tree}/dist/mod.js`);
  const db = await open(`${dir}/s`, { namespaces: ["b"] });
  if (mode === "w6") await db.transaction((tx) => { for (let i = 0; i < 100; i++) tx.set("b", ["acct", i], 1000); });
  await db.close();
  const args = [mode, `${dir}/s`, run, "1000", inFlight, warm, String(procs), `${dir}/barrier`];
  const out = await Promise.all(Array.from({ length: procs }, (_, i) => new Promise((resolve, reject) => {
    const { rt, cmd, args: argv } = workerCommand(t, i, args);
    const child = spawn(cmd, argv, { cwd: t.tree, stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.on("exit", (code) => (code === 0 ? resolve({ rt, ...JSON.parse(text.trim().split("\n").at(-1)) }) : reject(new Error(`${rt} worker exited ${code}`))));
  })));
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}

const perSecOf = { A: [], B: [] };
try {
  for (let r = 0; r < rounds; r++) {
    for (const t of r % 2 === 0 ? trees : [...trees].reverse()) {
      const out = await round(t);
      const ops = out.reduce((a, x) => a + x.ops, 0);
      const perSec = Math.round(ops / (Math.max(...out.map((x) => x.ms)) / 1000));
      const cpuUs = Object.fromEntries(RUNTIMES.map((rt) => {
        const xs = out.filter((x) => x.rt === rt && typeof x.cpuUs === "number");
        return [rt, xs.length ? Math.round(xs.reduce((a, x) => a + x.cpuUs, 0) / xs.reduce((a, x) => a + x.ops, 0)) : null];
      }));
      perSecOf[t.name].push(perSec);
      console.log(`round ${r + 1} ${t.name} ${perSec}/s  worst p99 ${(Math.max(...out.map((x) => x.p99us)) / 1000).toFixed(1)} ms  CPU per transaction ${JSON.stringify(cpuUs)} µs  conflicts ${out.reduce((a, x) => a + x.conflicts, 0)}`);
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`A median ${median(perSecOf.A)}/s, B median ${median(perSecOf.B)}/s: B/A ${(median(perSecOf.B) / median(perSecOf.A)).toFixed(3)}`);
