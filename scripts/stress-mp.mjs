// A multi-process stress run of the built package against a model: N Node processes share
// one store and each, for R rounds, commits transactions of 1-1,500 keys, single sets,
// deletes of its own keys, and lists / counts of random ranges (forward or reverse), checking
// that every key it wrote and did not delete is there, in order, once. At the end every
// process lists the whole namespace (forward, reverse, in pages) against the union of what
// all of them kept. Small segments and a small autoCompactBytes make segments roll and
// compactions fold them while the others write and read.
//
//   npm run --silent build
//   node scripts/stress-mp.mjs [--seed=1] [--procs=3] [--rounds=250] [--durability=none|relaxed|full]
//                              [--segment-bytes=65536] [--auto-compact-bytes=100000] [--keep]
//
// Exit 0 when every process agreed with the model. A failing store is kept (its path printed).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt;
const dist = new URL("../dist/mod.js", import.meta.url).href;
const { open } = await import(dist);

if (process.argv[2] === "--child") {
  const [, , , dir, idS, nS, seedS, roundsS, durability, segS, acS] = process.argv;
  const id = Number(idS), N = Number(nS), ROUNDS = Number(roundsS);
  let seed = Number(seedS) * 100 + id;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const ri = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[ri(a.length)];
  const db = await open(dir, { durability, namespaces: ["t", "done"], autoCompactBytes: Number(acS), segmentBytes: Number(segS) });
  const mine = new Set(); // keys this process wrote and did not delete (key = n * N + id)
  let errors = 0;
  const fail = (m) => {
    if (++errors <= 5) console.log(`FAIL process ${id} seed=${seedS}: ${m}`);
  };
  for (let r = 0; r < ROUNDS; r++) {
    const op = ri(10);
    if (op < 4) {
      const n = pick([1, 3, 200, 1500]);
      const base = ri(200_000);
      const ks = Array.from({ length: n }, (_, i) => (base + i) * N + id);
      await db.transaction((tx) => { for (const k of ks) tx.set("t", ["k", k], id); }, { isolation: "snapshot" });
      for (const k of ks) mine.add(k);
    } else if (op < 6) {
      const k = ri(200_000) * N + id;
      await db.set("t", ["k", k], id);
      mine.add(k);
    } else if (op < 7 && mine.size > 0) {
      const arr = [...mine];
      const del = Array.from({ length: 1 + ri(50) }, () => arr[ri(arr.length)]);
      await db.transaction((tx) => { for (const k of del) tx.delete("t", ["k", k]); }, { isolation: "snapshot" });
      for (const k of del) mine.delete(k);
    } else {
      const a = ri(200_000) * N, b = a + pick([10, 1_000, 100_000]) * N, reverse = ri(2) === 0;
      const got = [];
      for await (const e of db.list("t", { start: ["k", a], end: ["k", b] }, { reverse })) got.push(e.key[1]);
      for (let i = 1; i < got.length; i++) {
        if (reverse ? !(got[i] < got[i - 1]) : !(got[i] > got[i - 1])) { fail(`list [${a},${b}) reverse=${reverse}: ${got[i - 1]} then ${got[i]}`); break; }
      }
      const seen = new Set(got);
      for (const k of mine) {
        if (k >= a && k < b && !seen.has(k)) { fail(`own key ${k} missing from list [${a},${b}) reverse=${reverse}; get: ${JSON.stringify(await db.getEntry("t", ["k", k]))}`); break; }
      }
      for (const k of got) if (k % N === id && !mine.has(k)) { fail(`deleted own key ${k} listed`); break; }
    }
  }
  await db.set("done", ["d", id], [...mine]);
  const t0 = Date.now();
  while ((await db.count("done", {})) < N) {
    if (Date.now() - t0 > 60_000) { console.log(`process ${id}: the others did not finish within 60 s`); process.exit(2); }
    await new Promise((r) => setTimeout(r, 20));
  }
  const all = new Set();
  for await (const e of db.list("done", {})) for (const k of e.value) all.add(k);
  const expected = [...all].sort((x, y) => x - y);
  for (const reverse of [false, true]) {
    const got = [];
    for await (const e of db.list("t", {}, { reverse })) got.push(e.key[1]);
    const exp = reverse ? [...expected].reverse() : expected;
    if (got.length !== exp.length) fail(`final list reverse=${reverse}: ${got.length} keys, expected ${exp.length}`);
    for (let i = 0; i < Math.max(got.length, exp.length); i++) if (got[i] !== exp[i]) { fail(`final list reverse=${reverse} #${i}: ${got[i]}, expected ${exp[i]}`); break; }
  }
  const c = await db.count("t", {});
  if (c !== expected.length) fail(`final count ${c}, expected ${expected.length}`);
  console.log(`process ${id}: kept ${mine.size} keys, ${expected.length} in all, ${errors} errors`);
  await db.close();
  process.exit(errors ? 1 : 0);
}

const seed = arg("seed", "1"), procs = arg("procs", "3"), rounds = arg("rounds", "250");
const durability = arg("durability", "none"), segmentBytes = arg("segment-bytes", "65536"), autoCompact = arg("auto-compact-bytes", "100000");
const dir = mkdtempSync(`${tmpdir()}/txtdb-stress-`);
const self = fileURLToPath(import.meta.url);
const codes = await Promise.all(Array.from({ length: Number(procs) }, (_, i) => new Promise((resolve) => {
  spawn(process.execPath, [self, "--child", dir, String(i), procs, seed, rounds, durability, segmentBytes, autoCompact], { stdio: "inherit" }).on("exit", resolve);
})));
const ok = codes.every((c) => c === 0);
console.log(`stress-mp seed=${seed} procs=${procs} rounds=${rounds} durability=${durability} segmentBytes=${segmentBytes} autoCompactBytes=${autoCompact}: ${ok ? "ok" : `FAILED (exit codes ${codes.join(",")})`}`);
if (ok && !process.argv.includes("--keep")) rmSync(dir, { recursive: true, force: true });
else console.log(`store kept at ${dir}`);
process.exit(ok ? 0 : 1);
