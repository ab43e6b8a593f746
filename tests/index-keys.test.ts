/**
 * The in-memory table's version chains (Chain: two versions inline, more in arrays), checked
 * against plain arrays through pushes, pops, replaced values and drops of the oldest. And its sorted key list: new keys merged into it (mergeSorted) in runs, as
 * a queue's time-ordered keys arrive, or scattered; and lists through the engine while keys
 * arrive in both shapes. Compared with a plain sort of the union. The list holds items that
 * carry their key (the index's chains); here, `{ key }` objects.
 */
import { assert, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import { Chain, KEY_CHUNK_MAX, lowerBound, mergeSorted, SortedKeys } from "txtdb/internal";

/** Items that carry their key, as the sorted key list holds them; and their keys back. */
const items = (keys: readonly string[]) => keys.map((key) => ({ key }));
const keysOf = (list: Iterable<{ key: string }>) => Array.from(list, (i) => i.key);

/** A small deterministic generator (tests must replay). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

test("a version chain reads like two plain arrays through pushes, pops, replaced values and drops of the oldest, across its two inline versions", () => {
  const r = rng(11);
  for (let round = 0; round < 300; round++) {
    const first = new Uint8Array([round & 255]);
    const chain = new Chain("k", 1, first);
    const tsns = [1];
    const values: (Uint8Array | null)[] = [first];
    let next = 2;
    for (let step = 0; step < 40; step++) {
      const op = r();
      if (op < 0.5) {
        const v = r() < 0.3 ? null : new Uint8Array([step]);
        chain.push(next, v);
        tsns.push(next++), values.push(v);
      } else if (op < 0.65) {
        chain.pop();
        tsns.pop(), values.pop();
      } else if (op < 0.8 && tsns.length > 0) {
        const v = new Uint8Array([200 + step]);
        chain.setLastValue(v);
        values[values.length - 1] = v;
      } else if (op < 0.9) {
        const n = Math.floor(r() * (tsns.length + 1));
        chain.dropOldest(n);
        tsns.splice(0, n), values.splice(0, n);
      }
      const where = `round ${round}, step ${step}`;
      assert.equal(chain.length, tsns.length, where);
      assert.equal(chain.lastTsn, tsns.length > 0 ? tsns[tsns.length - 1] : 0, where);
      for (let i = 0; i < tsns.length; i++) {
        assert.equal(chain.tsn(i), tsns[i], where);
        assert.equal(chain.value(i), values[i], where);
      }
      for (let snap = 0; snap <= next; snap++) {
        let want = tsns.length - 1;
        while (want >= 0 && tsns[want]! > snap) want--;
        assert.equal(chain.at(snap), want, `${where}, snapshot ${snap}`);
      }
    }
  }
});

test("mergeSorted equals the sorted union for runs, scattered keys, empty sides and keys before, between and after", () => {
  const r = rng(7);
  const word = () => Array.from({ length: 1 + Math.floor(r() * 6) }, () => String.fromCharCode(97 + Math.floor(r() * 4))).join("");
  for (let round = 0; round < 400; round++) {
    const all = new Set<string>();
    const n = Math.floor(r() * 300);
    while (all.size < n) all.add(word() + (round % 3 === 0 ? "" : String(Math.floor(r() * 1000))));
    const keys = [...all];
    const fresh = new Set<string>();
    const shape = round % 4;
    for (const k of keys) {
      // 0: scattered; 1: the largest keys (appended at the end); 2: the smallest; 3: two runs
      const pick = shape === 0 ? r() < 0.3 : false;
      if (pick) fresh.add(k);
    }
    const sortedKeys = [...keys].sort();
    if (shape === 1) sortedKeys.slice(Math.floor(sortedKeys.length * 0.7)).forEach((k) => fresh.add(k));
    if (shape === 2) sortedKeys.slice(0, Math.floor(sortedKeys.length * 0.3)).forEach((k) => fresh.add(k));
    if (shape === 3) {
      sortedKeys.slice(Math.floor(sortedKeys.length * 0.2), Math.floor(sortedKeys.length * 0.3)).forEach((k) => fresh.add(k));
      sortedKeys.slice(Math.floor(sortedKeys.length * 0.8)).forEach((k) => fresh.add(k));
    }
    const old = sortedKeys.filter((k) => !fresh.has(k));
    const merged = keysOf(mergeSorted(items(old), items([...fresh].sort())));
    assert.deepEqual(merged, sortedKeys, `round ${round} (shape ${shape}, ${old.length} + ${fresh.size})`);
  }
  assert.deepEqual(mergeSorted([], []), []);
  assert.deepEqual(keysOf(mergeSorted(items(["b"]), items(["a", "c"]))), ["a", "b", "c"]);
  const b = { key: "b" };
  assert.equal(mergeSorted([b], items(["a"]))[1], b, "the items themselves, not copies");
});

test("SortedKeys reads like one sorted array through pushes one by one and in bulk, chunk splits, retains and cursors both ways", () => {
  const r = rng(23);
  const keys = new SortedKeys<{ key: string }>();
  const model = new Set<string>();
  const key = () => String(Math.floor(r() * 200_000)).padStart(6, "0") + (r() < 0.2 ? "x" : "");
  const check = (round: number) => {
    const sorted = [...model].sort();
    assert.deepEqual(keysOf(keys), sorted, `round ${round}: iteration`);
    assert.equal(keys.size, sorted.length);
    for (let probe = 0; probe < 40; probe++) {
      const at = probe === 0 ? "" : probe === 1 ? "\uffff" : key();
      const i = lowerBound(items(sorted), at);
      // Forward from the first key ≥ at, a few steps; backward from the last key < at.
      const fwd = keys.seek(at);
      for (let j = i; j < Math.min(sorted.length, i + 3) + 1; j++, fwd.next()) assert.equal(fwd.key, sorted[j], `round ${round}: seek(${at}) + ${j - i}`);
      const back = keys.seekBefore(at);
      for (let j = i - 1; j >= Math.max(-1, i - 4); j--, back.prev()) assert.equal(back.key, sorted[j], `round ${round}: seekBefore(${at}) - ${i - 1 - j}`);
    }
    // Every key once across chunk boundaries, in both directions.
    const all: string[] = [];
    for (const c = keys.seek(""); c.key !== undefined; c.next()) all.push(c.key);
    assert.deepEqual(all, sorted, `round ${round}: cursor forward`);
    const rev: string[] = [];
    for (const c = keys.seekBefore("\uffff"); c.key !== undefined; c.prev()) rev.push(c.key);
    assert.deepEqual(rev, sorted.reverse(), `round ${round}: cursor backward`);
  };
  for (let round = 0; round < 60; round++) {
    // Bulk (merged: many against few placed), a few (inserted one by one, splitting chunks), or a run at the end.
    const n = round % 3 === 0 ? Math.floor(r() * 3 * KEY_CHUNK_MAX) : round % 3 === 1 ? Math.floor(r() * 40) : 300;
    for (let i = 0; i < n; i++) {
      const k = round % 3 === 2 ? `z${String(round).padStart(3, "0")}${String(i).padStart(4, "0")}` : key();
      if (model.has(k)) continue;
      model.add(k);
      keys.push({ key: k });
    }
    if (round % 10 === 9) {
      const drop = (k: string) => k.endsWith("x") || k < "001000";
      keys.retain((item) => !drop(item.key));
      for (const k of [...model]) if (drop(k)) model.delete(k);
    }
    check(round);
  }
  // Runs and single keys that all land in one chunk of a large list (not merged in bulk),
  // splitting it: a run of 1,500 at once, then 1,100 one read at a time.
  for (let i = 0; i < 20_000; i++) {
    const k = `m${String(i * 10).padStart(7, "0")}`;
    if (!model.has(k)) (model.add(k), keys.push({ key: k }));
  }
  check(100);
  for (let i = 0; i < 1_500; i++) (model.add(`m0050000-${String(i).padStart(4, "0")}`), keys.push({ key: `m0050000-${String(i).padStart(4, "0")}` }));
  check(101);
  for (let i = 0; i < 1_100; i++) {
    const k = `m0060000-${String(i).padStart(4, "0")}`;
    model.add(k);
    keys.push({ key: k });
    if (i % 100 === 99) check(102 + i);
    else void keys.seek(k); // placed now, alone
  }
  check(1300);
  const empty = new SortedKeys();
  assert.equal(empty.seek("a").item, undefined);
  assert.equal(empty.seekBefore("a").item, undefined);
  assert.deepEqual([...empty], []);
});

test("lowerBound from a start index finds the first element at or past the key from there", () => {
  const arr = items(["a", "c", "e", "g"]);
  assert.equal(lowerBound(arr, "d"), 2);
  assert.equal(lowerBound(arr, "d", 2), 2);
  assert.equal(lowerBound(arr, "h", 1), 4);
  assert.equal(lowerBound(arr, "a", 3), 3, "never before the start index");
});

test("lists stay ordered while keys arrive in time-ordered runs in two regions and scattered, across many commits", async () => {
  const db = await open(tempDir("index-keys"), { durability: "none", namespaces: ["q"] });
  const r = rng(11);
  const expected = new Set<string>();
  for (let t = 0; t < 60; t++) {
    await db.transaction((tx) => {
      for (let i = 0; i < 40; i++) {
        const key = i % 3 === 0 ? ["c", t, i] : i % 3 === 1 ? ["r", t, i] : ["m", Math.floor(r() * 1e6)];
        tx.set("q", key, i);
        expected.add(JSON.stringify(key));
      }
    });
    if (t % 7 === 0) {
      const got: string[] = [];
      for await (const e of db.list("q", { prefix: [] })) got.push(JSON.stringify(e.key));
      assert.equal(got.length, expected.size);
      const cmp = (a: string, b: string) => {
        const x = JSON.parse(a) as [string, number, number?], y = JSON.parse(b) as [string, number, number?];
        return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] !== y[1] ? x[1] - y[1] : (x[2] ?? -1) - (y[2] ?? -1);
      };
      assert.deepEqual(got, [...got].sort(cmp), `commit ${t}: keys in order`);
    }
  }
  await db.close();
});
