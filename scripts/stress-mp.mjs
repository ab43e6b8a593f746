// A multi-process stress run against a model: processes of any mix of runtimes share one
// store, and each runs tests/workers/stresser.ts (transactions of 1-1,500 keys, sets,
// deletes, range lists checked against what it wrote; at the end every process compares
// the whole namespace with the union of what all of them kept). Small segments and a small
// autoCompactBytes make segments roll and compactions fold them while the others write and
// read. npm test runs a short form (tests/stress-multiprocess.test.ts); this is the long one.
//
//   npm run --silent build && node scripts/build-tests.mjs
//   node scripts/stress-mp.mjs [--seed=1] [--runtimes=node,node,node] [--rounds=250]
//                              [--durability=none|relaxed|full] [--segment-bytes=65536]
//                              [--auto-compact-bytes=100000] [--keep]
//
// Exit 0 when every process agreed with the model. A failing store is kept (its path printed).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt;
const seed = arg("seed", "1"), rounds = arg("rounds", "250"), runtimes = arg("runtimes", "node,node,node").split(",");
const durability = arg("durability", "none"), segmentBytes = arg("segment-bytes", "65536"), autoCompact = arg("auto-compact-bytes", "100000");
const command = {
  node: [process.execPath, [".build-tests/workers/stresser.js"]],
  deno: ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "tests/workers/stresser.ts"]],
  bun: ["node_modules/.bin/bun", ["tests/workers/stresser.ts"]],
};
const dir = mkdtempSync(`${tmpdir()}/txtdb-stress-`);
const codes = await Promise.all(runtimes.map((rt, i) => new Promise((resolve) => {
  const [cmd, base] = command[rt] ?? (() => { throw new Error(`unknown runtime "${rt}" (node, deno or bun)`); })();
  const args = [dir, String(i), String(runtimes.length), seed, rounds, durability, segmentBytes, autoCompact];
  spawn(cmd, [...base, ...args], { stdio: "inherit" }).on("exit", resolve);
})));
const ok = codes.every((c) => c === 0);
console.log(`stress-mp seed=${seed} runtimes=${runtimes.join(",")} rounds=${rounds} durability=${durability} segmentBytes=${segmentBytes} autoCompactBytes=${autoCompact}: ${ok ? "ok" : `FAILED (exit codes ${codes.join(",")})`}`);
if (ok && !process.argv.includes("--keep")) rmSync(dir, { recursive: true, force: true });
else console.log(`store kept at ${dir}`);
process.exit(ok ? 0 : 1);
