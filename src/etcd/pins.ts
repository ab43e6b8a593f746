/**
 * Pins and compaction of the etcd engine: which revisions stay readable, and how history
 * below them is given back.
 *
 * Etcd compacts one history for the whole cluster, so every store on a cluster keeps its
 * pins where every other store's compactor reads them: in the cluster's registry
 * (layout.ts), under keys no store prefix reaches. Every process holds one etcd lease (its
 * session, renewed by lease.ts) and publishes under it one pin, written twice in one txn:
 * `/txtdb/p/<lease>` → R in the registry, and `P p/<lease>` → R under its store's prefix:
 * "this process may still read revision R and anything newer". Two compaction marks say
 * how far history may go: the cluster's `/txtdb/m/compacted` → G, and the store's own
 * `P m/compacted` → M, which also marks the prefix as a store (engine.ts).
 *
 * Rules:
 * 1. Etcd is compacted only at a revision both marks of the compacting store hold, and
 *    at most at the oldest pin the compactor read (compact at T keeps T readable). Marks
 *    only ever move up.
 * 2. A compactor computes T = min(every pin in the registry, every pin under its store's
 *    `P p/`, the revision Q it read them at), and raises G and its store's M to T where
 *    they are below it, in one txn whose compares say no pin key of either range was
 *    written and neither mark moved since Q (a range compare: a pin created or changed
 *    since Q has a mod revision above Q). A pin that vanished since Q (its lease ended)
 *    only makes T lower than needed, never higher.
 * 3. A pin is published at R only by a txn that compares both G and the store's M below
 *    R + 1: if a compactor moved either past R first, the publish fails and the process
 *    picks a newer R. Together with rule 2, every pin in the registry is >= G, and every
 *    pin under `P p/` is >= that store's M, whichever txn lands first, whichever store
 *    the compactor belongs to.
 * 4. This process's pin P only rises without rule 3's compare (a raise keeps P >= both
 *    marks), and it never rises above a revision this process still reads, nor above the
 *    newest revision it has seen: a fresh read returns a revision at least that new, so
 *    any later snapshot or transaction begins at R >= P and is covered with no round trip.
 * 5. All writes of the pin keys go through one queue, in order, so that a raise computed
 *    before a lowering cannot land after it.
 * 6. When the lease is lost (the process was cut off longer than its TTL) the pin is
 *    gone: the next pin takes a new lease and publishes by rule 3. Reads of a revision a
 *    compactor passed meanwhile fail clearly (INVALID_ARGUMENT from the client: compacted).
 * 7. Cleanup (engine.ts) removes keys of the store only at or below the T its compaction
 *    compacted at: T is <= every pin of the store (rule 2) and <= M once the txn of rule 2
 *    landed, which a commit's compare of M (engine.ts V9) relies on.
 * 8. A mark deleted outside txtdb (`etcdctl del`, another tool) is put back, not worked
 *    around: rule 3's VALUE compare and a commit's compare of M (V9) fail on a missing key,
 *    and no retry makes them pass. The store's M is put back at max(G, C), C being the
 *    revision etcd's history was compacted at (the oldest a read may still ask for). M
 *    says how far history may be gone: etcd compacted it up to C, and cleanup removed keys
 *    only at or below a revision etcd had already been compacted at (rule 7: a compaction
 *    compacts etcd before its cleanup runs). So a mark >= C tells no reader that history
 *    is there which etcd or cleanup removed, and V9 still fails a commit whose snapshot a
 *    cleanup passed; G keeps M from moving down in the usual case (every M this release
 *    writes is <= G: rule 2 raises both), and C covers a G deleted and made again at 0.
 *    The mark is at most every live pin: pins are >= G (rule 3), and a pin below C had
 *    its history compacted already, by a compaction txtdb did not make. Failing instead
 *    (CORRUPTION until a person puts the key back) would ask that person to work out the
 *    same value. It is put only where still missing (VERSION EQUAL 0), so a mark a
 *    compactor raised meanwhile stays, and a compactor that read it missing at Q finds it
 *    changed since Q and reads again (rule 2). A compactor's own txn also puts a missing M
 *    back, at its T (etcd compares an absent key's mod revision as 0, so rule 2's compare
 *    passes), and T is >= every pin of the store, so >= the M that was lost. Who puts it
 *    back: a pin publish that finds it missing; a commit whose txn failed with it missing,
 *    which is then sent again; and open, where the prefix holds the store's id counter
 *    `P m/next-id` (only a store writes it, with its first namespace, and nothing of
 *    txtdb deletes it) and lies inside no other store (engine.ts). Each call puts a mark
 *    back at most once: one gone again at once means something keeps deleting txtdb's
 *    keys, and the call fails with CORRUPTION naming the key, instead of retrying.
 *
 * The registry's pins are what matters across stores; the store's `P p/` copy and its M
 * keep a process of an older release in the same store (which knows only those) safe from
 * this release's compactions and this release's processes safe from its compactions. Not
 * covered: a compaction by an older release protects only its own store's pins, so it
 * can pass a pin of another store; and this release's compactor does not see the pins an
 * older release publishes in other stores. Every process on a cluster with several
 * stores must run this release or newer. Nor does anything protect pins from compactions
 * txtdb does not make (etcd's `--auto-compaction-retention`, `etcdctl compact`).
 *
 * The cluster's mark must exist before a pin is published (a VALUE compare on a missing
 * key fails): open creates it where it is missing, and a publish that finds it gone (keys
 * deleted outside txtdb) creates it again at 0, which only lowers what compactors may do
 * (each store's own mark, rule 8, still says how far its history may be gone).
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import type { EtcdClient, EtcdOp } from "./client.ts";
import { EtcdCompactedError, isLeaseNotFound } from "./failures.ts";
import type { EtcdLease } from "./lease.ts";
import { fixedRevision, parseRevision, REGISTRY_PREFIX } from "./layout.ts";
import type { Layout } from "./layout.ts";
import { armTimer } from "../timers.ts";
import type { Timer } from "../timers.ts";

/** How long after a release the pin is raised (batched: one put for many releases). */
export const PIN_RAISE_DELAY_MS = 200;
/** Attempts to publish a pin or move the mark before giving up with UNAVAILABLE. */
const PIN_ATTEMPTS_MAX = 20;

function maxRevision(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

const utf8d = new TextDecoder();

/**
 * A compaction mark this call had put back was gone again at once (rule 8): something
 * outside txtdb keeps deleting it, and putting it back again would only race that.
 */
export function markDeletedAgain(key: Uint8Array): TxtDbError {
  const k = utf8d.decode(key);
  return new TxtDbError("CORRUPTION", `The etcd key ${JSON.stringify(k)} (a txtdb compaction mark) was deleted again right after txtdb put it back: something outside txtdb keeps deleting txtdb's keys. Stop it (txtdb owns every key under the store's prefix and under ${JSON.stringify(REGISTRY_PREFIX)}), then retry`, { details: { key: k } });
}

/** A pinned revision; `release()` once done (idempotent). */
export interface Pin {
  revision: bigint;
  release(): void;
}

/** The pins of one process, and the compaction mark protocol. */
export class EtcdPins {
  readonly #client: EtcdClient;
  readonly #layout: Layout;
  readonly #ttlSeconds: number;
  #lease: EtcdLease | undefined;
  #leasing: Promise<EtcdLease> | undefined;
  /** The value of this process's pin key while its lease lives (undefined: none). */
  #published: bigint | undefined;
  /** Revisions read by live snapshots and transactions, with how many hold each. */
  readonly #active = new Map<bigint, number>();
  /** The newest revision this process has seen in a reply (rule 4). */
  #seen = 0n;
  #queue: Promise<unknown> = Promise.resolve();
  #raiseTimer: Timer | undefined;
  #closed = false;

  constructor(client: EtcdClient, layout: Layout, ttlSeconds: number) {
    this.#client = client;
    this.#layout = layout;
    this.#ttlSeconds = ttlSeconds;
  }

  /** Notes a revision seen in a linearizable reply (for rule 4). */
  saw(revision: bigint): void {
    if (revision > this.#seen) this.#seen = revision;
  }

  /** The newest revision this process has seen in a reply: where a watch "from now" starts. */
  get seen(): bigint {
    return this.#seen;
  }

  /** The lowest revision this process reads now, if any (for diagnostics). */
  get oldest(): bigint | undefined {
    let min: bigint | undefined;
    for (const r of this.#active.keys()) if (min === undefined || r < min) min = r;
    return min;
  }

  /** The published pin (undefined: none yet, or the lease was lost). */
  get published(): bigint | undefined {
    return this.#published;
  }

  /** This process's live lease, granting a new one when there is none (rule 6). */
  async lease(): Promise<EtcdLease> {
    if (this.#closed) throw new TxtDbError("CLOSED", "Cannot use the etcd store: it was closed");
    if (this.#lease && !this.#lease.isLost) return this.#lease;
    this.#leasing ??= (async () => {
      try {
        const lease = await this.#client.lease(this.#ttlSeconds, {
          onLost: () => {
            if (this.#lease === lease) {
              this.#lease = undefined;
              this.#published = undefined;
            }
          },
        });
        // The lease's mark of life (engine.ts U5): a commit whose txn failed reads it, and
        // finding it gone knows the lease ended, taking the commit's id with it.
        try {
          await this.#client.put(this.#layout.aliveKey(lease.id), "a", { lease: lease.id });
        } catch (e) {
          lease.stop();
          throw e;
        }
        this.#lease = lease;
        this.#published = undefined;
        return lease;
      } finally {
        this.#leasing = undefined;
      }
    })();
    return await this.#leasing;
  }

  /**
   * Forgets `lease` when etcd says it no longer has it (a put under it failed with "lease
   * not found") before this process's keep-alive noticed: the next use takes a new one,
   * and the pin is published again (rule 6).
   */
  leaseGone(lease: EtcdLease): void {
    if (this.#lease !== lease) return;
    lease.stop();
    this.#lease = undefined;
    this.#published = undefined;
  }

  #hold(revision: bigint): Pin {
    this.#active.set(revision, (this.#active.get(revision) ?? 0) + 1);
    let released = false;
    return {
      revision,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.#active.get(revision) ?? 1) - 1;
        if (n <= 0) this.#active.delete(revision);
        else this.#active.set(revision, n);
        this.#scheduleRaise();
      },
    };
  }

  /**
   * Pins the newest revision: one linearizable read for the revision, plus a publish only
   * when this process has no pin at or below it (rule 4).
   */
  async pinCurrent(): Promise<Pin> {
    const r = await this.#client.range(this.#layout.mark);
    this.saw(r.revision);
    let pin = this.#hold(r.revision);
    try {
      if (this.#published === undefined || this.#published > r.revision || !this.#lease || this.#lease.isLost) {
        await this.#publish(r.revision, (moved) => {
          // A compactor passed R before the pin landed: a newer revision is as fresh.
          const newer = this.#hold(moved);
          pin.release();
          pin = newer;
        });
      }
    } catch (e) {
      pin.release();
      throw e;
    }
    return pin;
  }

  /**
   * Pins `revision`, which may be older than this process's pin; fails with
   * INVALID_ARGUMENT when the compaction mark is past it (its history may be gone).
   */
  async pinAt(revision: bigint): Promise<Pin> {
    const pin = this.#hold(revision);
    try {
      if (this.#published === undefined || this.#published > revision || !this.#lease || this.#lease.isLost) await this.#publish(revision, undefined);
    } catch (e) {
      pin.release();
      throw e;
    }
    return pin;
  }

  /**
   * Publishes a pin at `revision` by rule 3. With `move`, a newer revision will do when
   * the mark passed `revision`: `move` is told it (and holds it) before it is published.
   */
  #publish(revision: bigint, move: ((newer: bigint) => void) | undefined): Promise<void> {
    return this.#serial(async () => {
      let want = revision;
      // The mark as last learned: revisions below it cannot be pinned any more (a snapshot
      // of this process held there lost its history while the lease was lost, rule 6; it
      // fails on its next read, and must not keep newer pins from being published).
      let floor = 0n;
      // Marks this publish put back (rule 8): one gone again is not waited out.
      const restored = new Set<"cluster" | "store">();
      for (let attempt = 0; attempt < PIN_ATTEMPTS_MAX; attempt++) {
        const lease = await this.lease();
        // Already covered (another publish in the queue did it)?
        if (this.#published !== undefined && this.#published <= want && this.#lease === lease) return;
        // Keep every revision this process still reads covered, not only the new one.
        let low = this.#lowest(want);
        if (low < floor) low = floor;
        const L = this.#layout;
        let r;
        try {
          r = await this.#client.txn({
            compare: [
              { key: L.clusterMark, target: "VALUE", result: "LESS", value: fixedRevision(low + 1n) },
              { key: L.mark, target: "VALUE", result: "LESS", value: fixedRevision(low + 1n) },
            ],
            success: this.#pinPuts(lease, low),
            failure: [{ op: "range", key: L.clusterMark }, { op: "range", key: L.mark }],
          });
        } catch (e) {
          // etcd ended the lease before its keep-alive noticed: nothing was written; take a
          // new lease and publish again (commit.ts does the same).
          if (!isLeaseNotFound(e)) throw e;
          this.leaseGone(lease);
          continue;
        }
        this.saw(r.revision);
        if (r.succeeded) {
          if (this.#lease === lease) this.#published = low;
          return;
        }
        const cluster = r.responses[0]?.op === "range" ? r.responses[0].kvs[0] : undefined;
        const own = r.responses[1]?.op === "range" ? r.responses[1].kvs[0] : undefined;
        if (cluster === undefined || own === undefined) {
          // A mark was deleted outside txtdb: put back (rule 8), the next try can land.
          const which = cluster === undefined ? "cluster" : "store";
          if (restored.has(which)) throw markDeletedAgain(which === "cluster" ? L.clusterMark : L.mark);
          restored.add(which);
          if (which === "cluster") await this.ensureClusterMark();
          else await this.restoreMark();
          continue;
        }
        const mark = maxRevision(parseRevision(cluster.value), parseRevision(own.value));
        floor = mark;
        if (want < mark) {
          if (!move) {
            throw new TxtDbError("INVALID_ARGUMENT", `Cannot read at revision ${want}: the store's history was compacted up to revision ${mark}; read at revision ${mark} or newer`, {
              details: { revision: want, compactedTo: mark },
            });
          }
          want = r.revision; // >= the mark: the mark's value was written at or before it
          move(want);
        }
      }
      throw new TxtDbError("UNAVAILABLE", `Cannot pin a revision: compactions kept passing it ${PIN_ATTEMPTS_MAX} times; retry`);
    });
  }

  /** The puts of this process's pin at `revision`: in the registry and under the store (rule 3). */
  #pinPuts(lease: EtcdLease, revision: bigint): EtcdOp[] {
    const value = fixedRevision(revision);
    return [
      { op: "put", key: this.#layout.clusterPinKey(lease.id), value, lease: lease.id },
      { op: "put", key: this.#layout.pinKey(lease.id), value, lease: lease.id },
    ];
  }

  /** Creates the cluster's compaction mark at 0 unless it exists (it must, for rule 3). */
  async ensureClusterMark(): Promise<void> {
    const r = await this.#client.txn({
      compare: [{ key: this.#layout.clusterMark, target: "VERSION", result: "EQUAL", version: 0 }],
      success: [{ op: "put", key: this.#layout.clusterMark, value: fixedRevision(0n) }],
    });
    this.saw(r.revision);
  }

  /**
   * Puts the store's compaction mark back where it is missing (deleted outside txtdb), at
   * the newer of the cluster's mark and the revision etcd's history was compacted at
   * (rule 8), and says so on the console: something changed the store's keys. A mark that
   * is there (put back by another process, or raised by a compactor) is left as it is.
   */
  async restoreMark(): Promise<void> {
    const L = this.#layout;
    const r = await this.#client.txn({ success: [{ op: "range", key: L.mark, keysOnly: true }, { op: "range", key: L.clusterMark }] });
    this.saw(r.revision);
    const [own, cluster] = r.responses.map((res) => (res.op === "range" ? res.kvs[0] : undefined));
    if (own !== undefined) return;
    const g = cluster ? parseRevision(cluster.value) : 0n;
    const mark = await this.#compactedAtLeast(g, r.revision);
    const t = await this.#client.txn({
      compare: [{ key: L.mark, target: "VERSION", result: "EQUAL", version: 0 }],
      success: [{ op: "put", key: L.mark, value: fixedRevision(mark) }],
    });
    this.saw(t.revision);
    if (t.succeeded) {
      console.warn(`txtdb: the etcd key ${JSON.stringify(utf8d.decode(L.mark))} (the compaction mark of the store at prefix ${JSON.stringify(L.prefix)}) was deleted outside txtdb; put it back at revision ${mark}, the newer of the cluster's mark (${g}) and the revision etcd's history is compacted at. txtdb owns every key under the store's prefix and under ${JSON.stringify(REGISTRY_PREFIX)}: change none of them`);
    }
  }

  /**
   * `floor`, or the revision etcd's history was compacted at if that is higher: the oldest
   * revision a read may ask for. A range's reply does not say it (a watch's cancellation
   * does, but a watch is served by one member without a quorum round, which may not have
   * applied the latest compaction), so it is found with linearizable reads at revisions:
   * one read when `floor` is still readable, as it is unless etcd was compacted past the
   * cluster's mark; else a halving search up to `head`, at most 64 reads (int64 revisions).
   */
  async #compactedAtLeast(floor: bigint, head: bigint): Promise<bigint> {
    const readable = async (revision: bigint) => {
      try {
        await this.#client.range(this.#layout.mark, { revision, countOnly: true });
        return true;
      } catch (e) {
        if (e instanceof EtcdCompactedError) return false;
        throw e;
      }
    };
    let lo = floor > 0n ? floor : 1n; // revision 0 would mean "the newest"
    if (await readable(lo)) return floor;
    // The head was readable when it was read. Should a compaction pass it meanwhile, its txn
    // and the caller's put cannot both write the mark unseen: rule 2 compares the mark
    // unchanged since the compactor read it, the put compares it missing.
    let hi = head;
    while (hi - lo > 1n) {
      const mid = (lo + hi) / 2n;
      if (await readable(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  /**
   * The newest compaction a mark records: the cluster's or this store's, whichever is
   * higher (a compactor of an older release moves only its store's).
   */
  async compactedTo(): Promise<bigint> {
    const r = await this.#client.txn({ success: [{ op: "range", key: this.#layout.clusterMark }, { op: "range", key: this.#layout.mark }] });
    let mark = 0n;
    for (const res of r.responses) if (res.op === "range" && res.kvs[0]) mark = maxRevision(mark, parseRevision(res.kvs[0].value));
    return mark;
  }

  #lowest(atMost: bigint): bigint {
    let low = atMost;
    for (const r of this.#active.keys()) if (r < low) low = r;
    return low;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #scheduleRaise(): void {
    if (this.#raiseTimer || this.#closed) return;
    this.#raiseTimer = armTimer(PIN_RAISE_DELAY_MS, () => {
      this.#raiseTimer = undefined;
      this.raise().catch(() => {}); // a later raise or compaction tries again
    }, { unref: true });
  }

  /** Raises the published pin to the oldest revision still read, or the newest seen (rule 4). */
  raise(): Promise<void> {
    return this.#serial(async () => {
      const lease = this.#lease;
      if (!lease || lease.isLost || this.#published === undefined || this.#closed) return;
      if (this.#active.size === 0) {
        // Nothing is read: the pin may rise to the newest revision (a later fresh read
        // returns at least that one, rule 4).
        this.saw((await this.#client.range(this.#layout.mark, { keysOnly: true })).revision);
      }
      const want = this.#lowest(this.#seen);
      if (want <= this.#published) return;
      await this.#client.txn({ success: this.#pinPuts(lease, want) });
      if (this.#lease === lease) this.#published = want;
    });
  }

  /**
   * Raises the marks to the oldest pin of any store on the cluster (rule 2) and compacts
   * etcd there (rule 1). Resolves with the revision compacted at: cleanup may remove the
   * store's keys at or below it (rule 7).
   */
  async compactHistory(): Promise<bigint> {
    await this.raise().catch(() => {});
    const L = this.#layout;
    for (let attempt = 0; attempt < PIN_ATTEMPTS_MAX; attempt++) {
      const read = await this.#client.txn({
        success: [
          { op: "range", key: L.clusterPinPrefix, prefix: true },
          { op: "range", key: L.clusterMark },
          { op: "range", key: L.pinPrefix, prefix: true },
          { op: "range", key: L.mark },
        ],
      });
      const q = read.revision;
      this.saw(q);
      const kvs = (i: number) => (read.responses[i]?.op === "range" ? read.responses[i].kvs : []);
      const valueOf = (i: number) => {
        const kv = kvs(i)[0];
        return kv ? parseRevision(kv.value) : 0n;
      };
      // A mark deleted outside txtdb reads as 0 here, and the txn below puts it back at the
      // target (rule 8).
      const cluster = valueOf(1), own = valueOf(3);
      let target = q;
      for (const kv of [...kvs(0), ...kvs(2)]) {
        const p = parseRevision(kv.value);
        if (p < target) target = p;
      }
      // Both marks at or above the target: nothing to raise, and compacting at the target
      // repeats a compaction made before (etcd takes that as done). The target lies below
      // the cluster's mark only through a pin of an older release in this store, which
      // another store's compactor could not see (not covered, see above).
      if (target <= cluster && target <= own) {
        if (target > 0n) await this.#client.compact(target);
        return target;
      }
      const success: EtcdOp[] = [];
      if (target > cluster) success.push({ op: "put", key: L.clusterMark, value: fixedRevision(target) });
      if (target > own) success.push({ op: "put", key: L.mark, value: fixedRevision(target) });
      const moved = await this.#client.txn({
        compare: [
          { key: L.clusterPinPrefix, prefix: true, target: "MOD", result: "LESS", modRevision: q + 1n },
          { key: L.clusterMark, target: "MOD", result: "LESS", modRevision: q + 1n },
          { key: L.pinPrefix, prefix: true, target: "MOD", result: "LESS", modRevision: q + 1n },
          { key: L.mark, target: "MOD", result: "LESS", modRevision: q + 1n },
        ],
        success,
      });
      this.saw(moved.revision);
      if (!moved.succeeded) continue; // a pin or a mark moved meanwhile: read them again
      await this.#client.compact(target);
      return target;
    }
    throw new TxtDbError("UNAVAILABLE", `Cannot compact: pins kept changing during ${PIN_ATTEMPTS_MAX} attempts; retry`);
  }

  /** Stops raising and revokes the lease (which deletes the pin and this process's commit ids). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#raiseTimer?.cancel();
    this.#raiseTimer = undefined;
    await this.#queue.catch(() => {});
    const lease = this.#lease;
    this.#lease = undefined;
    this.#published = undefined;
    if (lease) await lease.revoke().catch(() => {});
  }
}
