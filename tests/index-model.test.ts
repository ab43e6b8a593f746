/**
 * The in-memory table (Index) against a plain model: random commits of sets and deletes in
 * two namespaces, undos of the newest commit, prunes and drops of folded versions, and
 * after each step range reads in both directions (bounds, limits, resumption past a key),
 * list-page rows, counts, point reads, changed-in-range and the versions a fold takes, at
 * random snapshots. The sorted key list holds the version chains themselves, so a chain
 * dropped by a prune or a fold must leave the list too, and one read must never reach a
 * chain through a stale entry.
 */
import { assert, test } from "./harness.ts";
import { Index } from "txtdb/internal";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/** Model: per namespace id, per key, ascending [tsn, value | null]. */
type Model = Map<number, Map<string, [number, Uint8Array | null][]>>;

function visibleAt(versions: [number, Uint8Array | null][] | undefined, snap: number): [number, Uint8Array | null] | undefined {
  if (!versions) return undefined;
  for (let i = versions.length - 1; i >= 0; i--) if (versions[i]![0] <= snap) return versions[i];
  return undefined;
}

/** The model's live entries of [start, end) at snap, ascending. */
function modelRange(m: Model, nsId: number, start: string, end: string, snap: number): [string, number, Uint8Array][] {
  const out: [string, number, Uint8Array][] = [];
  for (const [key, versions] of m.get(nsId) ?? []) {
    if (key < start || key >= end) continue;
    const v = visibleAt(versions, snap);
    if (v && v[1] !== null) out.push([key, v[0], v[1]]);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

const keyOf = (r: () => number) => "k" + String(Math.floor(r() * 300)).padStart(3, "0") + (r() < 0.1 ? "\u0001x" : "");

test("the in-memory table reads like a plain model through commits, undos, prunes and folds: ranges both ways, pages, counts, point reads", () => {
  const r = rng(2024);
  const index = new Index(() => 0);
  const model: Model = new Map();
  const history: { tsn: number; writes: { nsId: number; key: string; value: Uint8Array | null }[] }[] = [];
  let floor = 0; // no read below this snapshot (pruned or folded)
  const ops: string[] = []; // the steps so far, for a failure's message
  const nsIds = [1, 2];
  // The namespaces exist (a prune drops the data of ids no name is bound to).
  index.apply({ tsn: 1, namespaceOps: [{ op: "create", name: "a", id: 1 }, { op: "create", name: "b", id: 2 }], writes: [] });
  for (let step = 0; step < 1500; step++) {
    const op = r();
    if (op < 0.7 || history.length === 0) {
      // A commit of a few writes (a key at most once per commit).
      const tsn = index.lastTsn + 1;
      const seen = new Set<string>();
      const writes: { nsId: number; key: string; value: Uint8Array | null }[] = [];
      const n = 1 + Math.floor(r() * 6);
      for (let i = 0; i < n; i++) {
        const nsId = nsIds[Math.floor(r() * 2)]!;
        const key = keyOf(r);
        if (seen.has(`${nsId}/${key}`)) continue;
        seen.add(`${nsId}/${key}`);
        writes.push({ nsId, key, value: r() < 0.25 ? null : new Uint8Array([step & 255, i]) });
      }
      index.apply({ tsn, namespaceOps: [], writes: writes.map((w) => ({ nsId: w.nsId, key: new Uint8Array(0), binary: w.key, value: w.value })) });
      for (const w of writes) {
        let space = model.get(w.nsId);
        if (!space) model.set(w.nsId, (space = new Map()));
        let versions = space.get(w.key);
        if (!versions) space.set(w.key, (versions = []));
        versions.push([tsn, w.value]);
      }
      history.push({ tsn, writes });
      ops.push(`commit ${tsn}: ${writes.map((w) => `${w.nsId}/${w.key}=${w.value === null ? "del" : "set"}`).join(" ")}`);
    } else if (op < 0.8 && history[history.length - 1]!.tsn > floor) {
      // Undo of the newest commit (a failed append takes its batch back).
      const last = history.pop()!;
      const prevTsn = history.length > 0 ? history[history.length - 1]!.tsn : 0;
      index.undo({ tsn: last.tsn, namespaceOps: [], writes: last.writes.map((w) => ({ nsId: w.nsId, key: new Uint8Array(0), binary: w.key, value: w.value })) }, prevTsn, index.nextNsId);
      for (const w of last.writes) model.get(w.nsId)!.get(w.key)!.pop();
      ops.push(`undo ${last.tsn}`);
    } else if (op < 0.9) {
      // Prune below a new floor: for each key, versions older than its newest ≤ floor go,
      // and the key itself when that one is a delete.
      floor = Math.max(floor, Math.floor(floor + r() * (index.lastTsn - floor + 1)));
      index.prune(floor);
      ops.push(`prune ${floor}`);
      for (const space of model.values()) {
        for (const [key, versions] of space) {
          let i = versions.length - 1;
          while (i >= 0 && versions[i]![0] > floor) i--;
          if (i < 0) continue;
          if (i === versions.length - 1 && versions[i]![1] === null) space.delete(key);
          else versions.splice(0, i);
        }
      }
    } else {
      // A fold up to a new floor: every version at or below it leaves memory (the tables
      // would hold them; here there are none, so reads above the floor lose them, as the
      // model does).
      floor = Math.max(floor, Math.floor(floor + r() * (index.lastTsn - floor + 1)));
      index.dropFolded(floor);
      ops.push(`fold ${floor}`);
      for (const space of model.values()) {
        for (const [key, versions] of space) {
          const kept = versions.filter(([t]) => t > floor);
          if (kept.length === 0) space.delete(key);
          else space.set(key, kept);
        }
      }
    }
    if (step % 5 !== 0) continue;
    // Reads at random snapshots at or above the floor.
    for (let probe = 0; probe < 6; probe++) {
      const snap = floor + Math.floor(r() * (index.lastTsn - floor + 1));
      const nsId = nsIds[Math.floor(r() * 2)]!;
      let start = keyOf(r), end = keyOf(r);
      if (start > end) [start, end] = [end, start];
      if (r() < 0.2) (start = ""), (end = "\uffff");
      const want = modelRange(model, nsId, start, end, snap);
      const where = `step ${step}, ns ${nsId}, [${start}, ${end}) at ${snap}, after ${ops.slice(-12).join("; ")}`;
      const limit = r() < 0.5 ? 1_000_000 : 1 + Math.floor(r() * 8);
      const fwd = index.range(nsId, start, end, snap, false, limit);
      assert.deepEqual(fwd.map(([k, v]) => [k, v.tsn, v.value]), want.slice(0, limit), `${where}: forward, limit ${limit}`);
      const rev = index.range(nsId, start, end, snap, true, limit);
      assert.deepEqual(rev.map(([k, v]) => [k, v.tsn, v.value]), [...want].reverse().slice(0, limit), `${where}: reverse, limit ${limit}`);
      // Resuming past a key, both ways, as a list's next page does.
      if (want.length > 2) {
        const after = want[Math.floor(r() * want.length)]![0];
        const past = index.range(nsId, start, end, snap, false, 1_000_000, after).map(([k]) => k);
        assert.deepEqual(past, want.filter(([k]) => k > after).map(([k]) => k), `${where}: forward past ${after}`);
        const before = index.range(nsId, start, end, snap, true, 1_000_000, after).map(([k]) => k);
        assert.deepEqual(before, want.filter(([k]) => k < after).map(([k]) => k).reverse(), `${where}: reverse past ${after}`);
      }
      // List pages: rows straight from the chains, and where the next page resumes.
      const made: [string, number, Uint8Array][] = [];
      let after: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const maker = {
          lastKey: undefined as string | undefined,
          row: () => assert.fail("no tables: no block rows"),
          fromVersion: (key: string, tsn: number, value: Uint8Array) => [key, tsn, value] as [string, number, Uint8Array],
        };
        const rows = index.rangeRows(nsId, start, end, snap, false, 3, after, maker);
        made.push(...rows);
        if (rows.length < 3) break;
        assert.equal(maker.lastKey, rows[rows.length - 1]![0], `${where}: a full page says where it ends`);
        after = maker.lastKey;
      }
      assert.deepEqual(made, want, `${where}: pages of 3`);
      assert.equal(index.count(nsId, start, end, snap), want.length, `${where}: count`);
      // Point reads of keys present and absent.
      for (const key of [keyOf(r), keyOf(r), ...(want.length > 0 ? [want[0]![0]] : [])]) {
        const v = visibleAt(model.get(nsId)?.get(key), snap);
        const got = index.get(nsId, key, snap);
        assert.deepEqual(got && [got.tsn, got.value], v && v[1] !== null ? [v[0], v[1]] : undefined, `${where}: get ${key}`);
      }
      // The newest change in a range after a version (validation of a range read).
      const after2 = floor + Math.floor(r() * (index.lastTsn - floor + 1));
      const changed = index.changedInRange(nsId, start, end, after2);
      const newest = [...(model.get(nsId) ?? [])].filter(([k, vs]) => k >= start && k < end && vs.length > 0 && vs[vs.length - 1]![0] > after2);
      assert.equal(changed !== undefined, newest.length > 0, `${where}: changed after ${after2}`);
      if (changed) assert.ok(newest.some(([k, vs]) => k === changed.key && vs[vs.length - 1]![0] === changed.tsn), `${where}: the change named is one`);
    }
    // What a fold up to the head would write: each key's newest version above the floor, deletes included, in key order.
    const fold = [...index.foldEntries(floor, index.lastTsn, () => true)].map((e) => [e.nsId, e.key, e.tsn]);
    const wantFold: [number, string, number][] = [];
    for (const nsId of [...model.keys()].sort((a, b) => a - b)) {
      const keys = [...model.get(nsId)!.keys()].sort();
      for (const key of keys) {
        const vs = model.get(nsId)!.get(key)!;
        const v = vs[vs.length - 1];
        if (v && v[0] > floor) wantFold.push([nsId, key, v[0]]);
      }
    }
    assert.deepEqual(fold, wantFold, `step ${step}: fold entries`);
  }
});
