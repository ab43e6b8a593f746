#!/usr/bin/env node
/**
 * The `txtdb` command line: `txtdb <command> <dir> [...]` on Node (npx txtdb), Deno
 * (deno run --allow-read --allow-write) or Bun (bunx txtdb).
 *
 * Keys and values are JSON; bigint, bytes, Date, Map and Set use the tagged form of
 * export/import ({"$bigint":"1"}, {"$bytes":"<base64>"}, ...).
 *
 * @module
 */
import { open, TxtDbError } from "../mod.ts";
import type { Database, Key } from "../mod.ts";
import { fromTagged, toTagged } from "../src/ndjson.ts";
import { FileLock } from "../src/lock.ts";
import { stdinLines } from "./stdin.ts";

type G = {
  Deno?: { args: string[]; exit(code: number): never };
  process?: { argv: string[]; exit(code: number): never; stderr: { write(s: string): void } };
};
const g = globalThis as unknown as G;
const argv = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const exit = (code: number): never => (g.Deno ? g.Deno.exit(code) : g.process!.exit(code));
const err = (s: string) => (g.process ? g.process.stderr.write(s + "\n") : console.error(s));
const json = (v: unknown) => JSON.stringify(toTagged(v), (_k, x) => (typeof x === "bigint" ? x.toString() : x));

const USAGE = `usage: txtdb <command> <dir> [...]
  stats <dir>                         counters, latencies, bytes, pins (JSON)
  doctor <dir>                        live processes, their pins, the writer lock, leaked snapshots
  check <dir>                         verify every record and the index; exit 1 on problems
  compact <dir>                       fold old log segments into a checkpoint
  get <dir> <ns> <key>                print a value (JSON)
  set <dir> <ns> <key> <value>        write a value (key and value are JSON; creates the namespace)
  delete <dir> <ns> <key>             delete a key
  list <dir> <ns> [prefix] [--limit N] [--reverse]   NDJSON entries
  namespaces <dir>                    list namespaces
  export <dir> [ns ...]               NDJSON of every entry: {"ns","key","value","version"}
  import <dir>                        read NDJSON export lines from stdin (namespaces created)
  bench, demo                         run from a source checkout: npm run bench / npm run demo`;

function parseJson(what: string, text: string | undefined): unknown {
  if (text === undefined) throw new TxtDbError("INVALID_ARGUMENT", `Missing ${what}; see \`txtdb help\``);
  try {
    return fromTagged(JSON.parse(text));
  } catch {
    // A bare word is taken as a string key or value, so `txtdb get ./data users alice` works.
    return text;
  }
}

async function run(): Promise<number> {
  const [command, dir, ...rest] = argv;
  if (!command || command === "help" || command === "--help") {
    console.log(USAGE);
    return 0;
  }
  if (command === "bench" || command === "demo") {
    console.log(`Run \`npm run ${command}\` from a source checkout of txtdb (it starts Node, Deno and Bun processes).`);
    return 0;
  }
  if (!dir) throw new TxtDbError("INVALID_ARGUMENT", `\`txtdb ${command}\` needs a store directory; see \`txtdb help\``);
  const readOnly = ["stats", "doctor", "check", "get", "list", "namespaces", "export"].includes(command);
  // `set` creates its namespace if missing (atomically with the open), like `import`.
  const db: Database = await open(dir, { readOnly, ...(command === "set" && rest[0] ? { namespaces: [rest[0]] } : {}) });
  try {
    switch (command) {
      case "stats":
        console.log(JSON.stringify(db.stats(), (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
        return 0;
      case "doctor": {
        const s = db.stats();
        console.log(`store ${dir}: version ${s.version}, ${s.namespaces} namespaces, log ${s.logBytes} B, checkpoint ${s.checkpointBytes} B at version ${s.checkpointVersion}`);
        const procs = db.processes().filter((p) => !p.self);
        console.log(`live processes: ${procs.length}`);
        for (const p of procs) {
          const behind = p.pinnedVersion === undefined ? "pin not published yet" : `pins version ${p.pinnedVersion} (${s.version - p.pinnedVersion} behind the head)`;
          console.log(`  pid ${p.pid} (${p.runtime}): ${behind}`);
        }
        const oldest = procs.reduce<bigint | undefined>((m, p) => (p.pinnedVersion !== undefined && (m === undefined || p.pinnedVersion < m) ? p.pinnedVersion : m), undefined);
        if (oldest !== undefined && s.version - oldest > 10_000n) console.log(`warning: a process pins a version ${s.version - oldest} commits old: a long-lived snapshot or transaction holds back compaction`);
        const probe = new FileLock(db.platform, `${db.path}/writer.lock`);
        const release = probe.tryAcquire(true);
        release?.();
        probe.close();
        console.log(`writer lock: ${release ? "free" : "held right now by a committing process (it is released after each group commit)"}`);
        if (s.openSnapshots || s.openTransactions) console.log(`this process: ${s.openSnapshots} snapshots, ${s.openTransactions} transactions open`);
        return 0;
      }
      case "check": {
        const r = await db.check();
        console.log(JSON.stringify(r, null, 2));
        return r.ok ? 0 : 1;
      }
      case "compact": {
        err("compacting…");
        const r = await db.compact();
        console.log(JSON.stringify(r, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
        return 0;
      }
      case "get": {
        const e = await db.getEntry(rest[0]!, parseJson("key", rest[1]) as Key);
        if (!e) {
          err("(absent)");
          return 1;
        }
        console.log(json(e.value));
        return 0;
      }
      case "set": {
        const { version } = await db.set(rest[0]!, parseJson("key", rest[1]) as Key, parseJson("value", rest[2]));
        console.log(`version ${version}`);
        return 0;
      }
      case "delete": {
        const { version } = await db.delete(rest[0]!, parseJson("key", rest[1]) as Key);
        console.log(`version ${version}`);
        return 0;
      }
      case "namespaces":
        for (const n of await db.listNamespaces()) console.log(n);
        return 0;
      case "list": {
        const limitAt = rest.indexOf("--limit");
        const limit = limitAt >= 0 ? Number(rest[limitAt + 1]) : undefined;
        const positional = rest.filter((a, i) => !a.startsWith("--") && (limitAt < 0 || i !== limitAt + 1));
        const prefix = positional[1] === undefined ? [] : parseJson("prefix", positional[1]);
        for await (const e of db.list(positional[0]!, { prefix: prefix as Key }, { ...(limit !== undefined ? { limit } : {}), reverse: rest.includes("--reverse") })) {
          console.log(json({ key: e.key, value: e.value, version: e.version }));
        }
        return 0;
      }
      case "export": {
        const names = rest.length ? rest : await db.listNamespaces();
        const snap = await db.snapshot();
        let n = 0;
        for (const ns of names) {
          for await (const e of snap.list(ns, { prefix: [] })) {
            console.log(json({ ns, key: e.key, value: e.value, version: e.version }));
            if (++n % 100_000 === 0) err(`exported ${n} entries…`);
          }
        }
        snap.release();
        err(`exported ${n} entries at version ${snap.version}`);
        return 0;
      }
      case "import": {
        let n = 0;
        let batch: { ns: string; key: Key; value: unknown }[] = [];
        const known = new Set(await db.listNamespaces());
        const flush = async () => {
          for (const ns of new Set(batch.map((b) => b.ns))) {
            if (!known.has(ns)) {
              await db.createNamespace(ns).catch((e) => {
                if (!(e instanceof TxtDbError && e.code === "NAMESPACE_EXISTS")) throw e;
              });
              known.add(ns);
            }
          }
          const items = batch;
          batch = [];
          await db.transaction((tx) => { for (const b of items) tx.set(b.ns, b.key, b.value); });
        };
        for await (const line of stdinLines()) {
          if (!line.trim()) continue; // blank lines, and a trailing newline's empty rest
          const rec = fromTagged(JSON.parse(line)) as { ns: string; key: Key; value: unknown };
          batch.push({ ns: rec.ns, key: rec.key, value: rec.value });
          if (++n % 1000 === 0) await flush();
          if (n % 100_000 === 0) err(`imported ${n} entries…`);
        }
        if (batch.length) await flush();
        err(`imported ${n} entries`);
        return 0;
      }
      default:
        throw new TxtDbError("INVALID_ARGUMENT", `Unknown command "${command}"; see \`txtdb help\``);
    }
  } finally {
    await db.close();
  }
}

try {
  exit(await run());
} catch (e) {
  err(e instanceof TxtDbError ? `txtdb: ${e.code}: ${e.message}` : `txtdb: ${e instanceof Error ? e.stack : String(e)}`);
  exit(2);
}
