/**
 * One process of a multi-process stress run against a model:
 * `stresser <dir> <id> <procs> <seed> <rounds> <durability> <segmentBytes> <autoCompactBytes>`.
 *
 * For `rounds` rounds it commits transactions of 1-1,500 keys, single sets, deletes of its
 * own keys, and lists of random ranges (forward or reverse), checking each list against
 * what it wrote: every key it wrote and did not delete is there, in order, once, and no key
 * it deleted. Then it publishes the keys it kept, waits for the others, and lists the whole
 * namespace (both ways) and counts it against the union of what every process kept. Small
 * segments and a small `autoCompactBytes` make segments roll and compactions fold them
 * while the others write and read. Keys are `["k", n * procs + id]`: each process owns its
 * own. Prints up to five "FAIL ..." lines, then "result <id> kept=<n> total=<m> errors=<e>";
 * exits 0 when it saw no error.
 */
import { open } from "txtdb";
import type { Durability } from "txtdb";
import { args, exit, say } from "./io.ts";

const [dir, idS, procsS, seedS, roundsS, durability, segS, acS] = args();
const id = Number(idS), N = Number(procsS), ROUNDS = Number(roundsS);
let seed = Number(seedS) * 100 + id;
const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
const ri = (n: number) => Math.floor(rnd() * n);
const pick = <T>(a: readonly T[]): T => a[ri(a.length)]!;
const db = await open(dir!, { durability: durability as Durability, namespaces: ["t", "done"], autoCompactBytes: Number(acS), segmentBytes: Number(segS) });
const mine = new Set<number>(); // keys this process wrote and did not delete
let errors = 0;
const fail = (m: string) => {
  if (++errors <= 5) say(`FAIL process ${id} seed=${seedS}: ${m}`);
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
    const del = Array.from({ length: 1 + ri(50) }, () => arr[ri(arr.length)]!);
    await db.transaction((tx) => { for (const k of del) tx.delete("t", ["k", k]); }, { isolation: "snapshot" });
    for (const k of del) mine.delete(k);
  } else {
    const a = ri(200_000) * N, b = a + pick([10, 1_000, 100_000]) * N, reverse = ri(2) === 0;
    const got: number[] = [];
    for await (const e of db.list("t", { start: ["k", a], end: ["k", b] }, { reverse })) got.push((e.key as readonly unknown[])[1] as number);
    for (let i = 1; i < got.length; i++) {
      if (reverse ? !(got[i]! < got[i - 1]!) : !(got[i]! > got[i - 1]!)) { fail(`list [${a},${b}) reverse=${reverse}: ${got[i - 1]} then ${got[i]}`); break; }
    }
    const seen = new Set(got);
    for (const k of mine) {
      if (k >= a && k < b && !seen.has(k)) { fail(`own key ${k} missing from list [${a},${b}) reverse=${reverse}; getEntry: ${JSON.stringify(await db.getEntry("t", ["k", k]), (_, v) => typeof v === "bigint" ? String(v) : v)}`); break; }
    }
    for (const k of got) if (k % N === id && !mine.has(k)) { fail(`deleted own key ${k} listed`); break; }
  }
}

await db.set("done", ["d", id], [...mine]);
const t0 = Date.now();
while ((await db.count("done", {})) < N) {
  if (Date.now() - t0 > 120_000) { fail("the others did not finish within 120 s"); break; }
  await new Promise((r) => setTimeout(r, 20));
}
const all = new Set<number>();
for await (const e of db.list<number[]>("done", {})) for (const k of e.value) all.add(k);
const expected = [...all].sort((x, y) => x - y);
for (const reverse of [false, true]) {
  const got: number[] = [];
  for await (const e of db.list("t", {}, { reverse })) got.push((e.key as readonly unknown[])[1] as number);
  const exp = reverse ? [...expected].reverse() : expected;
  if (got.length !== exp.length) fail(`final list reverse=${reverse}: ${got.length} keys, expected ${exp.length}`);
  for (let i = 0; i < Math.max(got.length, exp.length); i++) if (got[i] !== exp[i]) { fail(`final list reverse=${reverse} #${i}: ${got[i]}, expected ${exp[i]}`); break; }
}
const c = await db.count("t", {});
if (c !== expected.length) fail(`final count ${c}, expected ${expected.length}`);
say(`result ${id} kept=${mine.size} total=${expected.length} errors=${errors}`);
await db.close();
exit(errors ? 1 : 0);
