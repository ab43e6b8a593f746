// A/B of locks on named resources (as `npm run bench -- --sections=locks` runs them) between
// two checkouts of txtdb, in alternating rounds, so that the machine's swings fall on both
// alike: uncontended acquire + release in one process of runtime a, then the handover of an
// X lock between a process of runtime a and one of runtime b, from the baseline checkout,
// then from the candidate. Reports each round and each checkout's medians.
//
//   node scripts/bench/locks-ab.mjs <runtime a> <runtime b> <rounds> <baseline checkout> <candidate checkout> [uncontended n] [handovers]
//
// A checkout is a whole tree with node_modules (a link to this one's will do) and, for a
// Node side, its bench bundle built (`npm run bench -- --sections=locks` once there), e.g.
// `git worktree add ../base <commit> && ln -s "$PWD/node_modules" ../base/`.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const [a, b, roundsArg, baseRoot, candRoot, nArg, hopsArg] = process.argv.slice(2);
if (!a || !b || !baseRoot || !candRoot) throw new Error("usage: locks-ab.mjs <runtime a> <runtime b> <rounds> <baseline checkout> <candidate checkout> [uncontended n] [handovers]");
const rounds = Number(roundsArg), n = String(Number(nArg ?? 20_000)), hops = String(Number(hopsArg ?? 2_000));

function command(root, runtime, args) {
  if (runtime === "deno") return [path.join(root, "node_modules/.bin/deno"), ["run", "--quiet", "--allow-read", "--allow-write", path.join(root, "scripts/bench/locks.ts"), ...args]];
  if (runtime === "bun") return [path.join(root, "node_modules/.bin/bun"), [path.join(root, "scripts/bench/locks.ts"), ...args]];
  return [process.execPath, [path.join(root, ".build-bench/locks.js"), ...args]];
}

function runOne([bin, args], cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1))) : reject(new Error(`${bin} exited ${code}`))));
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
};
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y), m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
};
const results = { baseline: [], candidate: [] };
const work = fs.mkdtempSync(path.join(os.tmpdir(), "txtdb-locks-ab-"));
try {
  for (let r = 0; r < rounds; r++) {
    for (const [name, root] of [["baseline", path.resolve(baseRoot)], ["candidate", path.resolve(candRoot)]]) {
      const dir = fs.mkdtempSync(`${work}/store-`);
      const u = await runOne(command(root, a, ["uncontended", `${dir}/u`, n]), root);
      const out = await Promise.all([a, b].map((rt) => runOne(command(root, rt, ["pingpong", `${dir}/pp`, hops, `${dir}/stamp`]), root)));
      const samples = out.flatMap((x) => x.samplesUs ?? []);
      const row = { perSec: Math.round(u.ops / (u.ms / 1000)), p50: pct(samples, 50), p95: pct(samples, 95), handoversPerSec: Math.round((2 * Number(hops)) / (Math.max(...out.map((x) => x.ms)) / 1000)) };
      results[name].push(row);
      console.log(`round ${r + 1} ${name.padEnd(9)} ${a} uncontended ${row.perSec}/s  ${a}+${b} handover p50 ${row.p50} µs  p95 ${row.p95} µs  ${row.handoversPerSec} handovers/s`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
for (const [name, rows] of Object.entries(results)) {
  const m = (k) => median(rows.map((x) => x[k]));
  console.log(`${name.padEnd(9)} medians: uncontended ${m("perSec")}/s, handover p50 ${m("p50")} µs, p95 ${m("p95")} µs, ${m("handoversPerSec")} handovers/s`);
}
