/**
 * The etcd engine: txtdb's storage semantics (API.md) on an etcd v3 cluster, over encoded
 * keys and stored value bytes. The public layer (db.ts) encodes keys (keys.ts) and values
 * (codec.ts, expiry.ts) and decodes what comes back, as it does for the local engine.
 *
 * Files: layout.ts (where keys live), reader.ts (reads at a revision), transaction.ts (a
 * transaction's read and write sets), commit.ts (validation and the commit txn), pins.ts
 * (pins, the compaction mark, the session lease), this file (namespaces, watch, cleanup,
 * and the engine's surface).
 *
 * ## Key layout (layout.ts has the chart)
 *
 * Under the location's prefix P: `P n/<name>` → namespace id; `P m/next-id`; `P
 * m/compacted` (the compaction mark); `P p/<lease>` → a process's pin; `P c/<lease>/<seq>`
 * → commit ids; `P d/<id: 16 hex>/<encoded key bytes>` → stored value bytes, or the empty
 * value: a tombstone. Key order inside `P d/<id>/` is txtdb's key order, since the key
 * encoding is order-preserving and etcd orders keys byte-wise. Once per cluster, outside
 * every prefix: `/txtdb/p/<lease>` → every process's pin, of every store, and
 * `/txtdb/m/compacted` (the cluster's compaction mark).
 *
 * ## Versions
 *
 * A version is the etcd revision of the txn that wrote the entry: one txn per commit, so
 * every key a commit writes carries its revision (mod_revision), and revisions are
 * strictly increasing across all clients, not gap-free (housekeeping txns take some).
 *
 * ## Validation (commit.ts)
 *
 * A transaction reads at revision R (pinned). Its commit is one etcd txn:
 * - V1. Every namespace touched is still bound as it was at R: `P n/<name>` MOD EQUAL its
 *   mod revision at R (a drop deletes it, a rename deletes it and binds the id to the new
 *   name: either fails the compare: CONFLICT). A blind one-op write (db.set/db.delete)
 *   only needs the name bound to the same id (VALUE EQUAL).
 * - V2. Every key written (both isolation levels) and, serializable, every key read has
 *   no write after R: MOD LESS R + 1 (a missing key has mod 0 and passes; one created
 *   after R fails).
 * - V3. Serializable: every range read has no write after R anywhere in it: a range
 *   compare MOD LESS R + 1 over [start, end). Etcd's range compares see only keys that
 *   exist, so a delete made with etcd's delete would be invisible to them (a phantom
 *   delete). Therefore txtdb never deletes user data with an etcd delete: a txtdb delete
 *   writes a tombstone (the empty value), which moves the key's mod revision like any
 *   write, and the range compare fails. Readers treat tombstones as absent. Tombstones
 *   are removed later (cleanup, below) only where no live reader can tell: at a mod
 *   revision <= the compaction mark, which is <= every live pin; a transaction reading at
 *   R >= mark saw the tombstone as absent, and its removal (mod → 0) passes MOD LESS R + 1
 *   both for a point and for a range. The same rule bounds removal of expired values.
 * - V4. `check(key, v)`: the key is read at the head first; it must be live at version v
 *   (or absent for null); the commit then compares MOD EQUAL what was read.
 * - V5. `sum(key, d)`: the key is read at the head first, the sum computed from it, and the
 *   commit compares MOD EQUAL what was read. If the txn fails only because such a key
 *   moved (another sum landed), the commit redoes the read and tries again: a sum never
 *   fails with CONFLICT on its own; past {@link COMMIT_ATTEMPTS_MAX} attempts of sustained
 *   contention it fails with UNAVAILABLE (not-applied). A sum on a key the serializable
 *   transaction also read conflicts like any read (V2).
 * - V6. Serializable: a value read present that has expired by commit time fails with
 *   CONFLICT (expiry.ts rule 3).
 * - V7. Compare budget: etcd allows 128 compares per txn. Bindings, V4 and V5 take one each;
 *   all V2/V3 conditions are the same kind (no write after R over a span of data keys), so
 *   they are merged where they touch and, beyond the budget, folded into covering ranges:
 *   a change between two folded spans fails the commit too (a false conflict, never a
 *   missed one). LIMIT only when bindings + sums + checks alone exceed the budget, or a
 *   transaction writes more than {@link ETCD_TX_WRITES_MAX} keys (128 ops per txn).
 * - V8. A read-only transaction commits at once with its read revision: no txn, no
 *   CONFLICT.
 * - V9. Unless blind, the compaction mark is still at or below R (`P m/compacted` VALUE
 *   LESS R + 1). Cleanup removes keys at or below the mark, and V3's argument needs the
 *   mark <= R: while this process's pin holds, it is; if the pin was lost (the lease
 *   ended while the process was cut off) and a compaction passed R, a key written after R
 *   could have been cleaned up and its change would escape V2/V3. The commit then fails
 *   with CONFLICT (`details.compacted`), safe to retry at a new snapshot. A mark deleted
 *   outside txtdb fails this compare whatever the transaction did: the commit puts it back
 *   (pins.ts rule 8) and is sent again, once.
 * A failed compare is a CONFLICT whose details name what lost: one more read finds the
 * newest change after R among the compared spans (`{ ns, key, version }`, with `range`
 * for a range read).
 *
 * ## Unknown outcomes (commit.ts)
 *
 * - U1. Every commit txn puts a unique commit id `P c/<lease>/<seq>` = "c" (under this
 *   process's lease) and compares it absent (VERSION EQUAL 0).
 * - U2. When the client reports UNAVAILABLE with outcome "unknown" (the reply was lost; the
 *   txn may land later), a fence txn puts the id = "f" if it is absent, else reads it. If
 *   the fence landed, the lost txn can never land (its compare wants the id absent): the
 *   commit is resent with a fresh id (at most 3 times). If the id holds "c", the commit
 *   landed, at the id's mod revision: success, applied once.
 * - U3. A fence whose reply is lost is sent again (reading "f" means an earlier fence
 *   landed); if none of {@link FENCE_ATTEMPTS_MAX} is answered, the commit fails with
 *   UNAVAILABLE whose message says the outcome is unknown (`details.outcome: "unknown"`).
 *   So does a fence that etcd refuses with "lease not found": the lease ended meanwhile,
 *   which deleted the id if the commit had landed, and the lost txn can no longer land
 *   (its put names that lease), so nothing is left to read. Fences go to another member
 *   than the one that did not answer (transport.ts demotes it).
 * - U4. A txn that fails reads its own commit id too: a request delivered twice (a
 *   retrying proxy) lands once and fails its id compare the second time; if the reply is
 *   the second's, the id holding "c" says the commit landed, at the id's mod revision.
 * - U5. ...and the lease's mark of life (`P c/<lease>/0` = "a", put under the lease when it
 *   is granted): if the lease ended between two deliveries, ending it deleted the first's
 *   id, and the second fails on what the first wrote; the mark gone, the commit fails with
 *   UNAVAILABLE, outcome unknown (never CONFLICT, which db.transaction() would run again).
 * - U6. Namespace operations carry a commit id too, and read it when they fail: one
 *   delivered twice reports what it did, not NAMESPACE_EXISTS or NAMESPACE_NOT_FOUND from
 *   finding its own effect. A lost reply of one is UNAVAILABLE, outcome unknown.
 * Not covered: a copy of a blind write (db.set, db.delete) delivered again after later
 *   commits of the process deleted its id (a proxy replaying old requests) lands again;
 *   its compares are only the namespace and the id. Put no proxy that resends requests
 *   between txtdb and etcd.
 * Commit ids known landed are deleted by this process's later commits (a few per commit);
 * fences stay until the lease ends, which deletes every id of the process.
 *
 * ## Pins and compaction (pins.ts)
 *
 * Each process publishes its oldest read revision under its lease, in the cluster's
 * registry (and under its store's prefix); the compaction marks (the cluster's and the
 * store's) move up only to the oldest pin of any store on the cluster, by a txn that fails
 * if any pin changed; a pin is published only by a txn that compares both marks below
 * it. Etcd's history is one for the cluster, so etcd is compacted only there (compacting
 * at N keeps N readable): no revision any store's process pins is ever compacted, whatever
 * the interleaving of processes and stores. {@link EtcdEngine.compact} then removes the
 * store's tombstones and expired values whose mod revision is <= the revision compacted
 * at, which is <= the store's mark (V3, V9), each by a txn comparing MOD EQUAL, so a key
 * written again meanwhile stays. A read at a revision a mark has passed fails with
 * INVALID_ARGUMENT naming the mark.
 *
 * ## Watch
 *
 * An etcd watch over the namespace's data keys from the revision after `fromVersion`
 * (exclusive, as txtdb's), delivered one event per revision (watch.ts groups by revision):
 * PUTs of the selected keys, a tombstone as a delete (value undefined). Etcd deletes are
 * housekeeping (tombstone cleanup, a dropped namespace's keys) and are not reported.
 * Resumed across members without loss by the client; history etcd compacted fails with
 * WATCH_OVERFLOW (resume from a newer version after reading the current state). The
 * consumer pulls: a slow one holds the stream back, nothing is buffered without bound.
 *
 * ## Namespaces
 *
 * A name binds to a numeric id (`P n/<name>` → id; ids from `P m/next-id`). Create: one
 * txn comparing the name absent and the counter unchanged. Drop: one txn comparing the
 * binding unchanged, deleting it and every key of the id (one deleteRange op, whatever
 * their number). Rename: one txn deleting the old binding and binding the new name to the
 * same id: no key is copied, so it is atomic and O(1). `ensureNamespaces` creates the
 * missing ones of a list in one txn (open's `namespaces` option). A commit request carrying
 * namespace operations runs them through these (db.ts builds them alone); mixed with
 * writes they are UNSUPPORTED.
 *
 * ## Sessions
 *
 * One lease per engine (pins.ts): the pin and the commit ids hang on it. A lease etcd ended
 * before the keep-alive noticed makes etcd refuse a commit whole ("lease not found":
 * nothing applied); the engine takes a new lease and sends the commit again.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { isExpired } from "../expiry.ts";
import { isWellFormedString, PREFIX_END } from "../keys.ts";
import { EtcdClient } from "./client.ts";
import type { FetchLike } from "./transport.ts";
import { parseEtcdUrl } from "./url.ts";
import { commit, COMMIT_ATTEMPTS_MAX, COMMIT_MARKS, ETCD_TX_WRITES_MAX, FENCE_ATTEMPTS_MAX, ownOutcome, ownOutcomeReads } from "./commit.ts";
import type { CommitContext, EtcdCommitCounts, EtcdCommitRequest } from "./commit.ts";
import { fixedRevision, isStoredId, isTombstone, Layout, REGISTRY_PREFIX, storedId } from "./layout.ts";
import { EtcdPins } from "./pins.ts";
import { compareBytes, ETCD_TXN_OPS_MAX, EtcdReader, nextPageKeys, pageBytes, successor } from "./reader.ts";
import type { NsBinding, ReadContext } from "./reader.ts";
import { EtcdTransaction } from "./transaction.ts";
import type { EtcdOpResult, EtcdTxn, EtcdTxnResult } from "./client.ts";
import { EtcdCompactedError, isLeaseNotFound } from "./failures.ts";
import { prefixEnd } from "./wire.ts";
import { namespaceEnded, watchSelects } from "../watch.ts";
import { fromVersionAhead } from "../options.ts";

export { COMMIT_ATTEMPTS_MAX, ETCD_TX_WRITES_MAX, FENCE_ATTEMPTS_MAX };

/** Options of {@link EtcdEngine.open}. */
export interface EtcdEngineOptions {
  /** The bound on every etcd call (default 5000 ms). */
  requestTimeoutMs?: number;
  username?: string;
  password?: string;
  /** The session lease's TTL: how long after this process is cut off its pins hold (default 10 s, at least 2). */
  leaseTtlSeconds?: number;
  /** The `fetch` to use (tests lose replies through it). */
  fetch?: FetchLike;
  /** The wall clock for expiry, ms since the epoch (default Date.now). */
  nowMs?: () => number;
  /** false: open only an existing store (a read-only open), never create one. Default true. */
  create?: boolean;
}

/** Selection of a watch: some keys, or a range [start, end) (end undefined: the namespace's end). */
export type EtcdWatchSelector = { keys: readonly string[] } | { start: string; end: string | undefined };

/** One commit's matching changes, as txtdb's watch reports them (keys encoded, values stored bytes). */
export interface EtcdWatchChange {
  version: bigint;
  changes: { key: string; value: Uint8Array | undefined }[];
}

/** What {@link EtcdEngine.compact} did. */
export interface EtcdCompaction {
  /** The revision history was compacted to (the mark). */
  compactedTo: bigint;
  /** Tombstones and expired values removed. */
  removed: number;
}

/** Most keys removed by one cleanup txn (each takes a compare and an op). */
const CLEANUP_TXN_KEYS = 64;
const NS_ATTEMPTS_MAX = 20;
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || name === "" || !isWellFormedString(name)) {
    throw new TxtDbError("INVALID_ARGUMENT", `${what} needs a namespace name: a non-empty string without lone surrogates, got ${JSON.stringify(name)}`);
  }
  return name;
}

/** txtdb's storage on etcd; see the module comment. */
export class EtcdEngine {
  readonly client: EtcdClient;
  readonly layout: Layout;
  readonly pins: EtcdPins;
  readonly #ctx: ReadContext & CommitContext;
  #seq = 0;
  #closed = false;

  private constructor(client: EtcdClient, layout: Layout, ttl: number, nowMs: () => number) {
    this.client = client;
    this.layout = layout;
    this.pins = new EtcdPins(client, layout, ttl);
    const ids = new Map<string, number>();
    const ctx: ReadContext & CommitContext = {
      client,
      layout,
      pins: this.pins,
      nowMs,
      ids,
      landed: [],
      counts: { commits: 0, conflicts: 0, headRetries: 0, lostLanded: 0, lostFenced: 0, unknown: 0 },
      nextCommitSeq: () => ++this.#seq,
      bind: async (names, revision) => {
        const reader = new EtcdReader(ctx, revision);
        const out = new Map<string, NsBinding>();
        for (const n of names) out.set(n, await reader.binding(n));
        return out;
      },
    };
    this.#ctx = ctx;
  }

  /**
   * Opens the store at `url` (`etcd://h:p,h:p/prefix`): checks the cluster answers,
   * creates the compaction mark if missing, takes the session lease and publishes a pin.
   *
   * @example
   * ```ts
   * const engine = await EtcdEngine.open("etcd://127.0.0.1:2379/myapp", { requestTimeoutMs: 2000 });
   * await engine.createNamespace("accounts");
   * await engine.close();
   * ```
   */
  static async open(url: string, options: EtcdEngineOptions = {}): Promise<EtcdEngine> {
    const loc = parseEtcdUrl(url);
    const ttl = options.leaseTtlSeconds ?? 10;
    if (!Number.isSafeInteger(ttl) || ttl < 2) throw new TxtDbError("INVALID_ARGUMENT", `leaseTtlSeconds must be a whole number >= 2 (etcd's minimum lease), not ${ttl}`);
    const client = new EtcdClient({
      endpoints: loc.endpoints,
      ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    });
    const engine = new EtcdEngine(client, new Layout(loc.prefix), ttl, options.nowMs ?? (() => Date.now()));
    try {
      await engine.#claim(url, options.create ?? true);
      (await engine.pins.pinCurrent()).release();
    } catch (e) {
      await engine.close();
      throw e;
    }
    return engine;
  }

  /**
   * Makes the location a store, or checks it is one. The compaction mark is the store's
   * marker, and must exist: a VALUE compare on a missing key fails (pins.ts rule 3). A new
   * store is created only where no key is, and not inside another store: two stores whose
   * prefixes nest would read, validate and clean up each other's keys as their own (a data
   * key of one can look like another's). Nothing is written when either is refused. The
   * cluster's compaction mark is made too where it is missing (pins.ts), also by a
   * read-only open: its process publishes a pin as any other. A store whose own mark was
   * deleted outside txtdb is known by its namespace id counter, and its mark put back
   * (pins.ts rule 8); a store that never had a namespace has no counter, and is taken for
   * foreign keys while its live processes hold pins and commit ids there.
   */
  async #claim(url: string, create: boolean): Promise<void> {
    const L = this.layout;
    const ancestors = L.ancestors();
    const counted = (r: EtcdOpResult | undefined) => (r?.op === "range" ? r.count : 0);
    // Every key under the prefix; with no prefix, every key of the cluster but the
    // registry's, which other stores (maybe gone since) wrote (etcd takes an empty key as
    // none given: a range end of "\0" is "every key from there on").
    const registry = utf8.encode(REGISTRY_PREFIX);
    const registryEnd = prefixEnd(registry); // "/txtdb0"
    const everyKey = L.prefix === ""
      ? [{ key: Uint8Array.of(0), rangeEnd: registry }, { key: registryEnd, rangeEnd: Uint8Array.of(0) }]
      : [{ key: L.prefixBytes, prefix: true }];
    const n = everyKey.length;
    for (let attempt = 0; attempt < NS_ATTEMPTS_MAX; attempt++) {
      const r = await this.client.txn({
        success: [
          { op: "range", key: L.mark, keysOnly: true },
          { op: "range", key: L.clusterMark, keysOnly: true },
          { op: "range", key: L.nextId },
          ...everyKey.map((k) => ({ op: "range" as const, ...k, keysOnly: true, limit: 1 })),
          ...ancestors.map((a) => ({ op: "range" as const, key: a.mark, keysOnly: true })),
        ],
      });
      // The cluster's mark is made once per cluster (pins.ts rule 3 compares it), and only
      // for a store that is or will be there.
      const clusterMark = async () => {
        if (counted(r.responses[1]) === 0) await this.pins.ensureClusterMark();
      };
      if (counted(r.responses[0]) > 0) return await clusterMark(); // a store already
      const outer = ancestors.find((_, i) => counted(r.responses[i + 3 + n]) > 0);
      const counter = r.responses[2]?.op === "range" ? r.responses[2].kvs[0] : undefined;
      if (counter !== undefined && isStoredId(counter.value) && outer === undefined) {
        // A store whose mark was deleted outside txtdb: its namespace id counter says it is
        // one (only a store writes it, and nothing of txtdb deletes it). The mark is put
        // back (pins.ts rule 8), by a read-only open too: its pins need it as any other's.
        await this.pins.restoreMark();
        return await clusterMark();
      }
      const keys = everyKey.some((_, i) => counted(r.responses[i + 3]) > 0);
      if (!create) {
        // A read-only open writes nothing: a mistyped prefix must not become an empty store.
        const what = keys ? `; etcd holds keys there that are not a txtdb store's: check the prefix` : `; open it once without readOnly to create it`;
        throw new TxtDbError("INVALID_ARGUMENT", `No txtdb store at ${url} (no compaction mark under its prefix "${L.prefix}")${what}`, { details: { prefix: L.prefix } });
      }
      if (outer !== undefined) {
        throw new TxtDbError("INVALID_ARGUMENT", `Cannot create a txtdb store at ${url}: its prefix "${L.prefix}" lies inside the txtdb store at prefix "${outer.prefix}", which would take its keys for its own; choose a prefix outside it`, { details: { prefix: L.prefix, inside: outer.prefix } });
      }
      if (keys) {
        throw new TxtDbError("INVALID_ARGUMENT", `Cannot create a txtdb store at ${url}: etcd holds keys under its prefix "${L.prefix}" that are not a txtdb store's (or hold other stores); give the store a prefix of its own, etcd://host:port/<prefix>`, { details: { prefix: L.prefix } });
      }
      const t = await this.client.txn({
        compare: [
          { key: L.mark, target: "VERSION", result: "EQUAL", version: 0 },
          ...everyKey.map((k) => ({ ...k, target: "VERSION" as const, result: "EQUAL" as const, version: 0 })),
          ...ancestors.map((a) => ({ key: a.mark, target: "VERSION" as const, result: "EQUAL" as const, version: 0 })),
        ],
        success: [{ op: "put", key: L.mark, value: fixedRevision(0n) }],
      });
      if (t.succeeded) return await clusterMark();
      // Another process created it (or wrote there) meanwhile: look again.
    }
    throw new TxtDbError("UNAVAILABLE", `Cannot open ${url}: its keys kept changing while the store was being created; retry`);
  }

  #open(what: string): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Cannot ${what}: the etcd store was closed`);
  }

  /** Revokes the session lease (its pin and commit ids go with it) and closes the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pins.close();
    this.client.close();
  }

  // --- namespaces ---

  /** Binds `name` to a fresh id; NAMESPACE_EXISTS if bound. */
  async createNamespace(name: string): Promise<{ version: bigint }> {
    this.#open("create a namespace");
    checkName(name, "createNamespace()");
    const key = this.layout.nsKey(name);
    for (let attempt = 0; attempt < NS_ATTEMPTS_MAX; attempt++) {
      const r = await this.client.txn({ success: [{ op: "range", key }, { op: "range", key: this.layout.nextId }] });
      if (r.responses[0]?.op === "range" && r.responses[0].count > 0) throw new TxtDbError("NAMESPACE_EXISTS", `Cannot create namespace ${JSON.stringify(name)}: it already exists`, { details: { ns: name } });
      const counter = r.responses[1]?.op === "range" ? r.responses[1].kvs[0] : undefined;
      const id = counter ? storedId(counter.value, counter.key) : await this.#idWithoutCounter();
      const t = await this.#namespaceTxn({
        compare: [
          { key, target: "VERSION", result: "EQUAL", version: 0 },
          { key: this.layout.nextId, target: "MOD", result: "EQUAL", modRevision: counter?.modRevision ?? 0n },
        ],
        success: [{ op: "put", key, value: String(id) }, { op: "put", key: this.layout.nextId, value: String(id + 1) }],
      });
      if (t.succeeded) return { version: t.revision };
    }
    throw new TxtDbError("UNAVAILABLE", `Cannot create namespace ${JSON.stringify(name)}: other namespace operations kept winning; retry`);
  }

  /**
   * Creates those of `names` that do not exist, all in one txn (what `open(..., {
   * namespaces })` asks: created if missing, atomically). Resolves with the names created.
   */
  async ensureNamespaces(names: readonly string[]): Promise<string[]> {
    return await this.#createMany(names, false);
  }

  /** Creates `names` in one txn; `strict`: NAMESPACE_EXISTS (nothing created) if one exists. */
  async #createMany(names: readonly string[], strict: boolean): Promise<string[]> {
    this.#open("create namespaces");
    const wanted = [...new Set(names.map((n) => checkName(n, "namespaces")))];
    if (wanted.length === 0) return [];
    if (wanted.length > ETCD_TXN_OPS_MAX - 2) throw new TxtDbError("LIMIT", `Cannot create ${wanted.length} namespaces at once on etcd: a txn has at most ${ETCD_TXN_OPS_MAX} operations; create them in groups`);
    for (let attempt = 0; attempt < NS_ATTEMPTS_MAX; attempt++) {
      const r = await this.client.txn({ success: [{ op: "range", key: this.layout.nextId }, ...wanted.map((n) => ({ op: "range" as const, key: this.layout.nsKey(n), keysOnly: true }))] });
      const counter = r.responses[0]?.op === "range" ? r.responses[0].kvs[0] : undefined;
      const missing = wanted.filter((_, i) => { const x = r.responses[i + 1]; return x?.op === "range" && x.count === 0; });
      if (strict && missing.length < wanted.length) {
        const there = wanted.find((n) => !missing.includes(n))!;
        throw new TxtDbError("NAMESPACE_EXISTS", `Cannot create namespace ${JSON.stringify(there)}: it already exists`, { details: { ns: there } });
      }
      if (missing.length === 0) return [];
      let id = counter ? storedId(counter.value, counter.key) : await this.#idWithoutCounter();
      const t = await this.#namespaceTxn({
        compare: [
          { key: this.layout.nextId, target: "MOD", result: "EQUAL", modRevision: counter?.modRevision ?? 0n },
          ...missing.map((n) => ({ key: this.layout.nsKey(n), target: "VERSION" as const, result: "EQUAL" as const, version: 0 })),
        ],
        success: [...missing.map((n) => ({ op: "put" as const, key: this.layout.nsKey(n), value: String(id++) })), { op: "put", key: this.layout.nextId, value: String(id) }],
      });
      if (t.succeeded) return missing;
    }
    throw new TxtDbError("UNAVAILABLE", "Cannot create the namespaces: other namespace operations kept winning; retry");
  }

  /**
   * The next namespace id where the counter `P m/next-id` is missing: 1 in a store that
   * never had a namespace (the counter is written with the first). A counter deleted
   * outside txtdb must not restart at 1: the new namespace would take the id of one still
   * bound, and read and write its keys as its own. So the id is one past every id still in
   * use, bound (`P n/`) or holding data (`P d/<id>/`, 16 hex digits: the last data key in
   * byte order has the highest), with a warning. The create's compare of the counter's
   * absence (MOD 0) still makes concurrent creates take turns; a dropped namespace's id may
   * be handed out again, as its keys went with it.
   */
  async #idWithoutCounter(): Promise<number> {
    const L = this.layout;
    const r = await this.client.txn({
      success: [
        { op: "range", key: L.nsPrefix, prefix: true },
        { op: "range", key: L.dataPrefix, prefix: true, keysOnly: true, limit: 1, sortOrder: "DESCEND", sortTarget: "KEY" },
      ],
    });
    let top = 0;
    const bindings = r.responses[0]?.op === "range" ? r.responses[0].kvs : [];
    for (const kv of bindings) top = Math.max(top, storedId(kv.value, kv.key));
    const last = r.responses[1]?.op === "range" ? r.responses[1].kvs[0] : undefined;
    if (last !== undefined) top = Math.max(top, L.idOfDataKey(last.key));
    if (top > 0) {
      console.warn(`txtdb: the etcd key ${JSON.stringify(utf8d.decode(L.nextId))} (the namespace id counter of the store at prefix ${JSON.stringify(L.prefix)}) was deleted outside txtdb while namespaces use ids up to ${top}; new namespaces take ids from ${top + 1}. txtdb owns every key under the store's prefix and under ${JSON.stringify(REGISTRY_PREFIX)}: change none of them`);
    }
    return top + 1;
  }

  /** Unbinds `name` and deletes its keys, in one txn; NAMESPACE_NOT_FOUND if unbound. */
  async dropNamespace(name: string): Promise<{ version: bigint }> {
    this.#open("drop a namespace");
    checkName(name, "dropNamespace()");
    const key = this.layout.nsKey(name);
    for (let attempt = 0; attempt < NS_ATTEMPTS_MAX; attempt++) {
      const b = await this.#binding(name, "drop");
      const t = await this.#namespaceTxn({
        compare: [{ key, target: "MOD", result: "EQUAL", modRevision: b.mod }],
        success: [{ op: "delete", key }, { op: "delete", key: this.layout.idPrefix(b.id), prefix: true }],
      });
      if (t.succeeded) {
        this.#ctx.ids.delete(name);
        return { version: t.revision };
      }
    }
    throw new TxtDbError("UNAVAILABLE", `Cannot drop namespace ${JSON.stringify(name)}: other namespace operations kept winning; retry`);
  }

  /** Binds `to` to `from`'s id and unbinds `from`, in one txn; no key moves. */
  async renameNamespace(from: string, to: string): Promise<{ version: bigint }> {
    this.#open("rename a namespace");
    checkName(from, "renameNamespace()");
    checkName(to, "renameNamespace()");
    if (from === to) {
      // As on a directory: the name must exist, and then it is taken. (One txn cannot delete
      // and put the same key: etcd refuses it as malformed.)
      await this.#binding(from, "rename");
      throw new TxtDbError("NAMESPACE_EXISTS", `Cannot rename namespace ${JSON.stringify(from)} to ${JSON.stringify(to)}: ${JSON.stringify(to)} already exists`, { details: { ns: to } });
    }
    const fromKey = this.layout.nsKey(from), toKey = this.layout.nsKey(to);
    for (let attempt = 0; attempt < NS_ATTEMPTS_MAX; attempt++) {
      const b = await this.#binding(from, "rename");
      const t = await this.#namespaceTxn({
        compare: [
          { key: fromKey, target: "MOD", result: "EQUAL", modRevision: b.mod },
          { key: toKey, target: "VERSION", result: "EQUAL", version: 0 },
        ],
        success: [{ op: "delete", key: fromKey }, { op: "put", key: toKey, value: String(b.id) }],
        failure: [{ op: "range", key: toKey, keysOnly: true }],
      });
      if (t.succeeded) {
        this.#ctx.ids.delete(from);
        this.#ctx.ids.set(to, b.id);
        return { version: t.revision };
      }
      if (t.responses[0]?.op === "range" && t.responses[0].count > 0) {
        throw new TxtDbError("NAMESPACE_EXISTS", `Cannot rename namespace ${JSON.stringify(from)} to ${JSON.stringify(to)}: ${JSON.stringify(to)} already exists`, { details: { ns: to } });
      }
    }
    throw new TxtDbError("UNAVAILABLE", `Cannot rename namespace ${JSON.stringify(from)}: other namespace operations kept winning; retry`);
  }

  /**
   * U6: runs namespace txn `txn` with a commit id (its "absent" compare, its put under the
   * lease, and, after `txn`'s own failure ops, reads of it and of the lease's mark of life).
   * A failed reply whose id holds "c" is a second delivery's of a txn that landed: it
   * resolves as succeeded, at the id's revision. A failure with the mark gone is
   * UNAVAILABLE, outcome unknown (U5). A lease etcd ended before its keep-alive noticed
   * ("lease not found": nothing applied) is replaced, and the txn sent again.
   */
  async #namespaceTxn(txn: Required<Pick<EtcdTxn, "compare" | "success">> & Pick<EtcdTxn, "failure">): Promise<EtcdTxnResult> {
    const own = txn.failure?.length ?? 0;
    for (let attempt = 0; ; attempt++) {
      const lease = await this.pins.lease();
      const id = this.layout.commitKey(lease.id, this.#ctx.nextCommitSeq());
      // Ids known landed are deleted here too, as commits do (a few per txn): a process
      // making many namespace operations and few commits would pile them up until its
      // lease ended.
      const cleanup = this.#ctx.landed.splice(0, Math.max(0, Math.min(8, ETCD_TXN_OPS_MAX - txn.success.length - 1)));
      let t: EtcdTxnResult;
      try {
        t = await this.client.txn({
          compare: [...txn.compare, { key: id, target: "VERSION", result: "EQUAL", version: 0 }],
          success: [...txn.success, { op: "put", key: id, value: COMMIT_MARKS.commit, lease: lease.id }, ...cleanup.map((k) => ({ op: "delete" as const, key: k }))],
          failure: [...(txn.failure ?? []), ...ownOutcomeReads(this.layout, id, lease.id)],
        });
      } catch (e) {
        this.#ctx.landed.push(...cleanup); // not known deleted: a later txn tries again
        if (!isLeaseNotFound(e) || attempt >= 2) throw e;
        this.pins.leaseGone(lease);
        continue;
      }
      this.pins.saw(t.revision);
      if (t.succeeded) {
        this.#ctx.landed.push(id);
        return t;
      }
      this.#ctx.landed.push(...cleanup); // the failure branch ran: their deletes did not
      const landedAt = ownOutcome(this.#ctx, t.responses, own, lease, "The namespace operation's", "list the namespaces");
      if (landedAt === undefined) return t;
      this.#ctx.landed.push(id);
      return { ...t, succeeded: true, revision: landedAt, responses: [] };
    }
  }

  async #binding(name: string, what: string): Promise<NsBinding> {
    const r = await this.client.range(this.layout.nsKey(name));
    this.pins.saw(r.revision);
    const kv = r.kvs[0];
    if (!kv) throw new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot ${what} namespace ${JSON.stringify(name)}: it does not exist`, { details: { ns: name } });
    return { id: storedId(kv.value, kv.key), mod: kv.modRevision };
  }

  /** The namespace names, sorted. */
  async listNamespaces(): Promise<string[]> {
    this.#open("list namespaces");
    const r = await this.client.range(this.layout.nsPrefix, { prefix: true, keysOnly: true });
    this.pins.saw(r.revision);
    return r.kvs.map((kv) => this.layout.nsName(kv.key)).sort();
  }

  // --- reads ---

  /**
   * A reader of the newest state: its first request fixes its revision (a linearizable
   * read), so one reader sees one state. Unpinned: for reads of one or a few requests.
   */
  reader(): EtcdReader {
    this.#open("read");
    return new EtcdReader(this.#ctx);
  }

  /**
   * A pinned reader: of the newest revision, or of `revision` (INVALID_ARGUMENT when the
   * compaction mark passed it). `release()` it when done.
   */
  async snapshot(revision?: bigint): Promise<EtcdReader> {
    this.#open("take a snapshot");
    const pin = revision === undefined ? await this.pins.pinCurrent() : await this.pins.pinAt(revision);
    return new EtcdReader(this.#ctx, pin.revision, pin);
  }

  /** Begins a transaction reading the newest revision (pinned until commit or rollback). */
  async begin(options: { isolation?: "serializable" | "snapshot" } = {}): Promise<EtcdTransaction> {
    const isolation = options.isolation ?? "serializable";
    if (isolation !== "serializable" && isolation !== "snapshot") throw new TxtDbError("INVALID_ARGUMENT", `isolation must be "serializable" or "snapshot", not ${JSON.stringify(isolation)}`);
    const reader = await this.snapshot();
    return new EtcdTransaction(reader, (req) => this.commit(req), isolation, this.#ctx.nowMs);
  }

  /**
   * Validates and writes a transaction's request in one etcd txn (commit.ts); resolves with
   * its revision. A request carrying namespace operations (as db.ts builds them: alone,
   * without writes) runs them as {@link EtcdEngine.createNamespace} and the others do;
   * namespace operations mixed with writes, or several that are not all creates, are
   * UNSUPPORTED on etcd.
   */
  async commit(req: EtcdCommitRequest): Promise<bigint> {
    this.#open("commit");
    const nsOps = req.namespaceOps ?? [];
    if (nsOps.length === 0) return await commit(this.#ctx, req);
    let writes = 0;
    for (const m of req.writes.values()) writes += m.size;
    if (writes > 0 || req.checks.length > 0) {
      throw new TxtDbError("UNSUPPORTED", "On etcd a namespace operation commits alone: commit the writes in a transaction of their own");
    }
    if (nsOps.every((o) => o.op === "create")) {
      if (nsOps.length === 1) return (await this.createNamespace(nsOps[0]!.name)).version;
      await this.#createMany(nsOps.map((o) => o.name), true);
      return await this.currentRevision();
    }
    if (nsOps.length > 1) throw new TxtDbError("UNSUPPORTED", "On etcd one transaction may drop or rename one namespace; run the operations one at a time");
    const op = nsOps[0]!;
    if (op.op === "drop") return (await this.dropNamespace(op.name)).version;
    if (op.op === "rename") return (await this.renameNamespace(op.name, op.to)).version;
    throw new TxtDbError("INVALID_ARGUMENT", `Unknown namespace operation ${JSON.stringify((op as { op: unknown }).op)}`);
  }

  /** A one-operation write (db.set): blind, never a CONFLICT. */
  async set(ns: string, key: string, value: Uint8Array): Promise<{ version: bigint }> {
    return await this.#blind(ns, key, { kind: "set", value });
  }

  /** A one-operation delete (db.delete): a tombstone, blind. */
  async delete(ns: string, key: string): Promise<{ version: bigint }> {
    return await this.#blind(ns, key, { kind: "delete" });
  }

  /**
   * A blind write compares only that the name is bound to the same id (V1), so when this
   * process knows the id it sends the commit at once: one request, not two. If the name
   * was dropped or re-bound since, the compare fails and nothing is written; the binding
   * is then read afresh and the write sent again (or NAMESPACE_NOT_FOUND).
   */
  async #blind(ns: string, key: string, op: { kind: "set"; value: Uint8Array } | { kind: "delete" }): Promise<{ version: bigint }> {
    const request = (b: NsBinding, readRevision: bigint): EtcdCommitRequest => ({
      readRevision,
      isolation: "snapshot",
      blind: true,
      bindings: new Map([[ns, b]]),
      reads: new Map(),
      ranges: [],
      writes: new Map([[ns, new Map([[key, op]])]]),
      checks: [],
    });
    const known = this.#ctx.ids.get(ns);
    if (known !== undefined) {
      try {
        return { version: await this.commit(request({ id: known, mod: 0n }, this.pins.seen)) };
      } catch (e) {
        if (!(e instanceof TxtDbError) || e.code !== "NAMESPACE_NOT_FOUND") throw e;
        this.#ctx.ids.delete(ns); // stale: read the binding below
      }
    }
    const reader = this.reader();
    const b = await reader.binding(ns);
    return { version: await this.commit(request(b, reader.revision!)) };
  }

  // --- watch ---

  /**
   * Changes to the selected keys of `ns`, one item per commit in version order, from the
   * commit after `fromVersion` (default: from now). Stop with `return()` or `signal`.
   *
   * A drop or rename of `ns` ends the watch after every earlier change, with watch.ts's
   * NAMESPACE_NOT_FOUND (rule 1 there): the one etcd watch spans the namespace's data keys
   * and its binding key `P n/<ns>`, which sorts after every data key, so both come in one
   * ordered stream; the changes of other namespaces in between are dropped here.
   */
  async *watch(ns: string, sel: EtcdWatchSelector, options: { fromVersion?: bigint; signal?: AbortSignal } = {}): AsyncGenerator<EtcdWatchChange, void, undefined> {
    this.#open("watch");
    const reader = this.reader();
    let now: NsBinding | undefined;
    let missing: unknown;
    try {
      now = await reader.binding(ns);
    } catch (e) {
      if (!(e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") || reader.revision === undefined) throw e;
      missing = e;
    }
    const head = reader.revision!;
    if (options.fromVersion !== undefined && options.fromVersion > head) throw fromVersionAhead(options.fromVersion, head);
    const from = options.fromVersion ?? head;
    // The namespace the name denoted at fromVersion, if it denoted one then (watch.ts rule
    // 2): a resumed watcher, or one following a rename, goes on with the namespace it
    // followed even if the name was dropped or taken by another since (the drop shows in
    // the stream and ends it). Else the one the name denotes now, from when it took it.
    let then: NsBinding | undefined;
    if (from < head) {
      try {
        then = await new EtcdReader(this.#ctx, from).binding(ns);
      } catch (e) {
        then = await this.#bindingJustAfterCompaction(ns, from, e);
      }
      // Unbound at `from` and bound now: the first namespace the name came to denote after
      // `from`, which may be dropped since (the watcher then ends at its drop, and a resume
      // from there goes on to the next): the one it denotes now would skip that one's commits.
      if (then === undefined && now !== undefined && now.mod > from + 1n) then = await this.#firstBoundAfter(ns, from, now);
    }
    const bound = then ?? now;
    if (bound === undefined) throw missing;
    const { id, mod: boundAt } = bound;
    // Before `boundAt` the id had another name (a rename to `ns`), or no data (the
    // creation): its writes then are not writes to `ns`, as on a directory.
    const startRevision = (from > boundAt ? from : boundAt) + 1n;
    let lo: Uint8Array, hi: Uint8Array;
    // The selection as watch.ts matches it, shared with the local engine's watchers.
    let match: { keys: ReadonlySet<string> } | { start: string; end: string };
    const nsKey = this.layout.nsKey(ns);
    if ("keys" in sel && sel.keys.length === 0) {
      // No keys: no change is ever delivered, but the watch still waits, and still ends
      // when the namespace is dropped or renamed, as on a directory (it used to end at
      // once, so a `for await` over it fell through on etcd and blocked on a directory).
      match = { keys: new Set() };
      lo = nsKey;
      hi = nsKey;
    } else if ("keys" in sel) {
      match = { keys: new Set(sel.keys) };
      const sorted = [...match.keys].sort();
      lo = this.layout.dataKey(id, sorted[0]!);
      hi = successor(this.layout.dataKey(id, sorted[sorted.length - 1]!));
    } else {
      match = { start: sel.start, end: sel.end ?? PREFIX_END };
      [lo, hi] = this.layout.dataRange(id, sel.start, sel.end);
      if (compareBytes(lo, hi) >= 0) return;
    }
    for await (const item of this.client.watchRevisions(lo, { rangeEnd: successor(nsKey), startRevision, ...(options.signal ? { signal: options.signal } : {}) })) {
      if (item.type !== "REVISION") continue;
      const changes: { key: string; value: Uint8Array | undefined }[] = [];
      let unbound = false;
      for (const e of item.events) {
        if (compareBytes(e.kv.key, nsKey) === 0) {
          // A put of the binding key is its creation (a drop and a create again in
          // between would have shown the delete first).
          if (e.type === "DELETE") unbound = true;
          continue;
        }
        if (e.type !== "PUT") continue; // housekeeping (cleanup, a drop): not a commit's change
        if (compareBytes(e.kv.key, lo) < 0 || compareBytes(e.kv.key, hi) >= 0) continue; // another namespace's
        const key = this.layout.keyOf(id, e.kv.key);
        if (!watchSelects(match, key)) continue;
        changes.push({ key, value: isTombstone(e.kv.value) ? undefined : e.kv.value });
      }
      if (changes.length > 0) yield { version: item.revision, changes };
      if (unbound) throw namespaceEnded(ns, item.revision, await this.#renamedTo(id, item.revision));
    }
  }

  /**
   * watch()'s namespace at `from` when reading there failed with `e`: undefined when the
   * name was unbound then (or bound only at the revision after it). Compacted history:
   * WATCH_OVERFLOW (as EtcdCompactedError; the public layer adds resumeFrom), unless `from`
   * is the oldest fromVersion etcd serves (one below the compaction revision, which a read
   * cannot reach): then the binding at the compaction revision, if that revision did not
   * change it. Falling back to the name's namespace now would deliver another namespace's
   * writes, or skip the old one's, unsaid. (Not covered: a drop at exactly the compaction
   * revision, with the name re-created since, is followed to the new namespace without the
   * drop's NAMESPACE_NOT_FOUND.)
   */
  async #bindingJustAfterCompaction(ns: string, from: bigint, e: unknown): Promise<NsBinding | undefined> {
    if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") return undefined;
    const compacted = (x: unknown): x is TxtDbError => x instanceof EtcdCompactedError || (x instanceof TxtDbError && x.details?.compacted === true);
    if (!compacted(e)) throw e;
    const mark = await this.pins.compactedTo();
    if (mark === from + 1n) {
      try {
        const b = await new EtcdReader(this.#ctx, mark).binding(ns);
        return b.mod < mark ? b : undefined;
      } catch (f) {
        if (f instanceof TxtDbError && f.code === "NAMESPACE_NOT_FOUND") return undefined;
        if (!compacted(f)) throw f;
      }
    }
    const cause = e instanceof EtcdCompactedError ? e : e.cause instanceof EtcdCompactedError ? e.cause : undefined;
    throw new EtcdCompactedError("watch", from + 1n, mark > from ? mark : cause?.compactRevision ?? 0n, String(cause?.details?.endpoint ?? this.client.endpoints[0]));
  }

  /**
   * The first binding of `ns` after revision `from`: read from the binding key's history
   * (a watch from `from + 1`, closed at its first put). `now` is its binding at the head,
   * so a put lies in (from, now.mod]: the watch never waits for a future one.
   */
  async #firstBoundAfter(ns: string, from: bigint, now: NsBinding): Promise<NsBinding> {
    const nsKey = this.layout.nsKey(ns);
    const stop = new AbortController();
    try {
      for await (const item of this.client.watchRevisions(nsKey, { startRevision: from + 1n, signal: stop.signal })) {
        if (item.type !== "REVISION") continue;
        for (const e of item.events) {
          if (e.type === "PUT" && compareBytes(e.kv.key, nsKey) === 0) return { id: storedId(e.kv.value, e.kv.key), mod: item.revision };
        }
        if (item.revision >= now.mod) break;
      }
    } finally {
      stop.abort();
    }
    return now;
  }

  /** The name namespace `id` is bound to at `revision` (after a rename), or undefined (a drop). */
  async #renamedTo(id: number, revision: bigint): Promise<string | undefined> {
    const r = await this.client.range(this.layout.nsPrefix, { prefix: true, revision });
    const kv = r.kvs.find((kv) => utf8d.decode(kv.value) === String(id));
    return kv === undefined ? undefined : this.layout.nsName(kv.key);
  }

  // --- upkeep ---

  /**
   * Compacts etcd's history up to the oldest pin of any live process of any store on the
   * cluster (pins.ts), then removes this store's tombstones and expired values at or below
   * the revision compacted at (V3).
   */
  async compact(): Promise<EtcdCompaction> {
    this.#open("compact");
    const mark = await this.pins.compactHistory(); // <= the store's mark: V9 holds
    let removed = 0;
    let lo = this.layout.dataPrefix;
    // "P d0": just past every "P d/…" key.
    const hi = this.layout.dataPrefix.slice();
    hi[hi.length - 1]! += 1;
    const now = this.#ctx.nowMs();
    let batch: { key: Uint8Array; mod: bigint }[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const t = await this.client.txn({
        compare: batch.map((b) => ({ key: b.key, target: "MOD" as const, result: "EQUAL" as const, modRevision: b.mod })),
        success: batch.map((b) => ({ op: "delete" as const, key: b.key })),
      });
      // A key written again meanwhile fails the batch; the next compaction takes the rest.
      if (t.succeeded) removed += batch.length;
      batch = [];
    };
    let pageKeys = nextPageKeys(0, 0);
    for (;;) {
      const r = await this.client.range(lo, { rangeEnd: hi, limit: pageKeys });
      pageKeys = nextPageKeys(r.kvs.length, pageBytes(r.kvs));
      for (const kv of r.kvs) {
        if (kv.modRevision <= mark && (isTombstone(kv.value) || isExpired(kv.value, now))) {
          batch.push({ key: kv.key, mod: kv.modRevision });
          if (batch.length >= CLEANUP_TXN_KEYS) await flush();
        }
      }
      if (!r.more || r.kvs.length === 0) break;
      lo = successor(r.kvs[r.kvs.length - 1]!.key);
    }
    await flush();
    return { compactedTo: mark, removed };
  }

  /**
   * Counters of this engine's commits (what `db.stats()` reports for etcd) and its pins.
   *
   * @example
   * ```ts
   * const { conflicts, lostFenced } = engine.stats();
   * ```
   */
  stats(): EtcdCommitCounts & { pinnedRevision: bigint | undefined; oldestRead: bigint | undefined; seen: bigint } {
    return { ...this.#ctx.counts, pinnedRevision: this.pins.published, oldestRead: this.pins.oldest, seen: this.pins.seen };
  }

  /** The newest revision (a linearizable read). */
  async currentRevision(): Promise<bigint> {
    const r = await this.client.range(this.layout.mark, { keysOnly: true });
    this.pins.saw(r.revision);
    return r.revision;
  }

  /** Raw access for tests: the stored bytes at a data key, tombstones included. */
  async rawData(ns: string, key: string): Promise<{ value: Uint8Array; modRevision: bigint } | undefined> {
    const b = await this.reader().binding(ns);
    const r = await this.client.range(this.layout.dataKey(b.id, key));
    const kv = r.kvs[0];
    return kv ? { value: kv.value, modRevision: kv.modRevision } : undefined;
  }
}

