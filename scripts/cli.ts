#!/usr/bin/env node
/**
 * The `txtdb` command line: `txtdb <command> <dir> [...]` on Node (npx txtdb), Deno
 * (deno run --allow-read --allow-write) or Bun (bunx txtdb).
 *
 * Keys and values are JSON; bigint, bytes, typed arrays, Date, Map, Set and the numbers JSON
 * lacks use the tagged form of src/ndjson.ts ({"$bigint":"1"}, {"$bytes":"<base64>"}, ...).
 *
 * Rules the commands keep:
 * 1. Errors print `txtdb: CODE: message` on stderr and exit 2; problems found by `check` or
 *    `doctor` exit 1, as does `get` of a missing key; no stack trace for a user's mistake.
 * 2. Only `set` and `import` create a store, and only in a missing or empty directory (or a
 *    half-created store). Every other command refuses a directory that is not a store,
 *    and the read-side ones open it read-only, so looking never writes.
 * 3. Text from the store or the user (namespace names, keys, paths, error messages) never
 *    reaches the terminal raw: control characters could move the cursor, recolour or
 *    retitle the terminal, or hide text. JSON output escapes them as \u00XX (still JSON);
 *    human-readable lines escape them too.
 * 4. `import` checks every line before it writes anything (see `importLines`).
 *
 * @module
 */
import { open, TxtDbError } from "../mod.ts";
import type { Database, Key, Snapshot } from "../mod.ts";
import { fromTagged, toTagged } from "../src/ndjson.ts";
import { encodeKey } from "../src/keys.ts";
import { encodeValue } from "../src/codec.ts";
import { readWriterHolder } from "../src/holder.ts";
import type { Platform } from "../src/port.ts";
import { stdinLines } from "./stdin.ts";
import pkg from "../package.json" with { type: "json" };

type G = {
  Deno?: { args: string[]; exit(code: number): never };
  process?: { argv: string[]; exit(code: number): never; stderr: { write(s: string): void } };
};
const g = globalThis as unknown as G;
const argv = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const exit = (code: number): never => (g.Deno ? g.Deno.exit(code) : g.process!.exit(code));
const err = (s: string) => (g.process ? g.process.stderr.write(safe(s) + "\n") : console.error(safe(s)));

/**
 * Characters a terminal may act on or that hide text: C0 controls (ESC starts colour,
 * cursor and title sequences), DEL, C1 controls (0x9b is a one-byte CSI on some
 * terminals), and the bidirectional marks and overrides that reorder what a reader sees.
 */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
// JSON.stringify already escapes C0; these are the rest, escaped the JSON way so output stays JSON.
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
const hex = (c: string, width: number) => c.charCodeAt(0).toString(16).padStart(width, "0");

/** A human-readable line with every unsafe character written as an escape (\n, \x1b, \u202e). */
function safe(s: string): string {
  return s.replace(UNSAFE, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : c < "\u0100" ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`));
}

/** A value as one line of tagged JSON, safe for a terminal. */
function json(v: unknown): string {
  return JSON.stringify(toTagged(v)).replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`);
}

const UNSAFE_ANY = new RegExp(UNSAFE.source);

/** A name for a human-readable line: as is when harmless, else as a JSON string, so it stays unambiguous. */
function name(s: string): string {
  return UNSAFE_ANY.test(s) || s.startsWith('"') || s.trim() !== s || s === "" ? json(s) : s;
}

const invalid = (message: string) => new TxtDbError("INVALID_ARGUMENT", message);

const USAGE = `usage: txtdb <command> <dir> [...]
  stats <dir>                         counters, latencies, bytes, pins (JSON)
  doctor <dir>                        live processes, their pins, the writer lock and who holds it; exit 1 on problems
  check <dir>                         verify every record and the index; exit 1 on problems
  compact <dir>                       fold old log segments into a checkpoint
  get <dir> <ns> <key>                print a value (JSON); exit 1 if the key is absent
  set <dir> <ns> <key> <value>        write a value (key and value are JSON; creates the store and namespace)
  delete <dir> <ns> <key>             delete a key
  list <dir> <ns> [prefix] [--limit N] [--reverse]   NDJSON entries
  namespaces <dir>                    list namespaces (names with control characters are printed as JSON strings)
  export <dir> [ns ...]               NDJSON of every entry: {"ns","key","value","version"}
  import <dir>                        read NDJSON export lines from stdin; checks every line, then writes
                                      (one transaction when it fits maxTxWrites/maxTxBytes)
  bench, demo                         run from a source checkout: npm run bench / npm run demo
  --version                           print the version
A bare word as key or value is a string (txtdb get ./data users alice); "--" ends options.`;

/**
 * What each command takes. `access`: "read" opens an existing store read-only, "write" an
 * existing store read-write, "create" may create the store.
 */
const COMMANDS: Record<string, { args: string[]; optional?: string[]; rest?: boolean; flags?: Record<string, "value" | "bool">; access: "read" | "write" | "create" }> = {
  stats: { args: [], access: "read" },
  doctor: { args: [], access: "read" },
  check: { args: [], access: "read" },
  compact: { args: [], access: "write" },
  get: { args: ["namespace", "key"], access: "read" },
  set: { args: ["namespace", "key", "value"], access: "create" },
  delete: { args: ["namespace", "key"], access: "write" },
  list: { args: ["namespace"], optional: ["prefix"], flags: { limit: "value", reverse: "bool" }, access: "read" },
  namespaces: { args: [], access: "read" },
  export: { args: [], rest: true, access: "read" },
  import: { args: [], access: "create" },
};

/** Splits the arguments after the command into positionals and known flags; anything else is INVALID_ARGUMENT. */
function parseArgs(command: string, tokens: string[]) {
  const spec = COMMANDS[command]!;
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === "--") {
      positional.push(...tokens.slice(i + 1));
      break;
    }
    // Only "--" starts an option: "-5" is a number, a key or a value.
    if (!t.startsWith("--")) {
      positional.push(t);
      continue;
    }
    const eq = t.indexOf("=");
    const flag = t.slice(2, eq < 0 ? undefined : eq);
    const kind = spec.flags?.[flag];
    if (!kind) throw invalid(`Unknown option ${JSON.stringify(t)} for \`txtdb ${command}\`; see \`txtdb help\``);
    if (kind === "bool") {
      if (eq >= 0) throw invalid(`Option --${flag} takes no value; got ${JSON.stringify(t)}`);
      flags.set(flag, true);
    } else {
      const value = eq >= 0 ? t.slice(eq + 1) : tokens[++i];
      if (value === undefined) throw invalid(`Option --${flag} needs a value`);
      flags.set(flag, value);
    }
  }
  const [dir, ...rest] = positional;
  if (dir === undefined || dir === "") throw invalid(`\`txtdb ${command}\` needs a store directory; see \`txtdb help\``);
  const missing = spec.args[rest.length];
  if (missing) throw invalid(`\`txtdb ${command}\` needs a ${missing}; see \`txtdb help\``);
  const most = spec.args.length + (spec.optional?.length ?? 0);
  if (!spec.rest && rest.length > most) throw invalid(`Unexpected argument ${JSON.stringify(rest[most])} for \`txtdb ${command}\`; see \`txtdb help\``);
  return { dir, rest, flags };
}

/** A key or value from the command line: JSON (tagged), or a bare word as a string. */
function parseArg(what: string, text: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    // A bare word is a string, so `txtdb get ./data users alice` works; text that starts
    // like JSON but is not valid JSON is a mistake, not a string that happens to look so.
    if (/^\s*[[{"]/.test(text)) throw invalid(`The ${what} ${JSON.stringify(text)} is not valid JSON: ${(e as Error).message}`);
    return text;
  }
  return fromTagged(parsed, what);
}

// --- which directories are stores ---

/** Files a store directory holds; a directory with only these is a store, possibly half-created. */
const STORE_FILE = /^(MANIFEST|MANIFEST\.tmp|frontier|writer\.lock|leases|seg-\d{10}\.log|ckpt-.*)$/;

type DirState = "store" | "missing" | "empty" | "partial" | "file" | "other";

function dirState(platform: Platform, dir: string): DirState {
  const info = platform.stat(dir);
  if (!info) return "missing";
  if (!info.isDirectory) return "file";
  if (platform.stat(`${dir}/MANIFEST`)?.isFile) return "store";
  const names = platform.readdir(dir);
  if (names.length === 0) return "empty";
  return names.every((n) => STORE_FILE.test(n)) ? "partial" : "other";
}

async function openFor(command: string, dir: string, namespaces: string[] = []): Promise<Database> {
  const { defaultPlatform } = await import("../src/platform.ts");
  const platform = await defaultPlatform();
  const access = COMMANDS[command]!.access;
  const state = dirState(platform, dir);
  const shown = JSON.stringify(dir);
  if (state === "file") throw invalid(`${shown} is a file, not a txtdb store directory`);
  if (access !== "create" && state !== "store") {
    throw invalid(
      `No txtdb store at ${shown} (${state === "missing" ? "no such directory" : "no MANIFEST"}); nothing was created. ` +
        "`txtdb set` or `txtdb import` creates a store",
    );
  }
  if (state === "other") {
    throw invalid(`${shown} is a directory with other files and no txtdb store; refusing to create a store there (use a new or empty directory)`);
  }
  return await open(dir, { adapter: platform, readOnly: access === "read", ...(namespaces.length ? { namespaces } : {}) });
}

// --- commands ---

async function run(): Promise<number> {
  const [command, ...tokens] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return 0;
  }
  if (command === "--version" || command === "-V" || command === "version") {
    console.log(`txtdb ${pkg.version}`);
    return 0;
  }
  if (command === "bench" || command === "demo") {
    console.log(`Run \`npm run ${command}\` from a source checkout of txtdb (it starts Node, Deno and Bun processes).`);
    return 0;
  }
  if (!Object.hasOwn(COMMANDS, command)) {
    throw invalid(`${command.startsWith("-") ? "Unknown option" : "Unknown command"} ${JSON.stringify(command)}; see \`txtdb help\``);
  }
  const { dir, rest, flags } = parseArgs(command, tokens);
  if (command === "import") return await importLines(dir);
  let limit: number | undefined;
  if (flags.has("limit")) {
    const text = flags.get("limit") as string;
    limit = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(limit)) throw invalid(`--limit needs a whole number of entries (0 or more); got ${JSON.stringify(text)}`);
  }
  // Parse keys and values before opening, so a typo never creates a store or a namespace.
  const key = rest[1] === undefined ? undefined : (parseArg(command === "list" ? "prefix" : "key", rest[1]) as Key);
  const value = command === "set" ? parseArg("value", rest[2]!) : undefined;
  const db = await openFor(command, dir, command === "set" ? [rest[0]!] : []);
  try {
    switch (command) {
      case "stats":
        console.log(JSON.stringify(db.stats(), (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
        return 0;
      case "doctor":
        return doctor(db, dir);
      case "check": {
        const r = await db.check();
        console.log(JSON.stringify(r, null, 2).replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`));
        return r.ok ? 0 : 1;
      }
      case "compact": {
        err("compacting…");
        const r = await db.compact();
        console.log(JSON.stringify(r, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
        return 0;
      }
      case "get": {
        const e = await db.getEntry(rest[0]!, key!);
        if (!e) {
          err(`txtdb: key ${json(key)} is not in namespace ${json(rest[0])}`);
          return 1;
        }
        console.log(json(e.value));
        return 0;
      }
      case "set": {
        const { version } = await db.set(rest[0]!, key!, value);
        console.log(`version ${version}`);
        return 0;
      }
      case "delete": {
        const { version } = await db.delete(rest[0]!, key!);
        console.log(`version ${version}`);
        return 0;
      }
      case "namespaces":
        for (const n of await db.listNamespaces()) console.log(name(n));
        return 0;
      case "list": {
        const prefix = rest[1] === undefined ? [] : key!;
        const opts = { ...(limit !== undefined ? { limit } : {}), reverse: flags.has("reverse") };
        for await (const e of db.list(rest[0]!, { prefix }, opts)) {
          console.log(json({ key: e.key, value: e.value, version: e.version }));
        }
        return 0;
      }
      case "export":
        return await exportAll(db, rest);
    }
    throw invalid(`Unknown command ${JSON.stringify(command)}; see \`txtdb help\``);
  } finally {
    await db.close();
  }
}

async function existsAt(snap: Snapshot, ns: string): Promise<boolean> {
  try {
    await snap.get(ns, "");
    return true;
  } catch (e) {
    if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") return false;
    throw e;
  }
}

async function exportAll(db: Database, names: string[]): Promise<number> {
  const snap = await db.snapshot();
  try {
    // Snapshots cannot list namespaces yet, so the list comes from the head, just after the
    // snapshot was taken: a namespace created since then does not exist at the snapshot and
    // is skipped; one dropped since then is missed (a narrow race, only without names given).
    const all = names.length ? names : await db.listNamespaces();
    let n = 0;
    for (const ns of all) {
      if (!names.length && !(await existsAt(snap, ns))) continue;
      for await (const e of snap.list(ns, { prefix: [] })) {
        let line: string;
        try {
          line = json({ ns, key: e.key, value: e.value, version: e.version });
        } catch (cause) {
          const why = cause instanceof TxtDbError ? cause.message : String(cause);
          throw new TxtDbError("INVALID_VALUE", `Cannot export namespace ${json(ns)} key ${json(e.key)} after ${n} entries: ${why}`, { cause });
        }
        console.log(line);
        if (++n % 100_000 === 0) err(`exported ${n} entries…`);
      }
    }
    err(`exported ${n} entries at version ${snap.version}`);
    return 0;
  } finally {
    snap.release();
  }
}

/** Default transaction limits of open(); an import that fits both is written in one transaction. */
const TX_WRITES_MAX = 100_000;
const TX_BYTES_MAX = 64 * 1024 * 1024;
const KEY_BYTES_MAX = 2048;
const VALUE_BYTES_MAX = 16 * 1024 * 1024;
/** Past the limits, an import is written in transactions this large (well inside both limits). */
const BATCH_WRITES_MAX = 10_000;
const BATCH_BYTES_MAX = 16 * 1024 * 1024;
const RECORD_FIELDS = new Set(["ns", "key", "value", "version"]);

/**
 * `import`: reads every line of stdin and checks it (JSON, record shape, tags, key and
 * value encodable within the limits) before it opens the store, so bad input — at any
 * line — writes nothing, not even the store directory. Then:
 * - input within one transaction's limits (100 000 writes, 64 MiB) is written in one
 *   transaction: all of it or, on any failure, none of it;
 * - larger input is written in order, in transactions of at most 10 000 entries / 16 MiB;
 *   if one fails (disk full, an I/O error) the error says which lines were written.
 * The whole input is held in memory while it is checked; that is the price of all-or-nothing
 * from a stream that cannot be read twice.
 */
async function importLines(dir: string): Promise<number> {
  const entries: { ns: string; key: Key; value: unknown; bytes: number; line: number }[] = [];
  let lineNo = 0;
  let bytes = 0;
  for await (const text of stdinLines()) {
    lineNo++;
    if (!text.trim()) continue; // blank lines, and a trailing newline's empty rest
    const at: (e: unknown) => never = (e) => {
      if (e instanceof TxtDbError) throw new TxtDbError(e.code, `line ${lineNo}: ${e.message}`, { cause: e });
      throw invalid(`line ${lineNo}: ${e instanceof Error ? e.message : String(e)}`);
    };
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      at(invalid(`not valid JSON (${(e as Error).message})`));
    }
    if (rec === null || typeof rec !== "object" || Array.isArray(rec)) at(invalid(`expected an object {"ns","key","value"}; got ${JSON.stringify(rec)}`));
    const r = rec as Record<string, unknown>;
    const extra = Object.keys(r).find((k) => !RECORD_FIELDS.has(k));
    if (extra !== undefined) at(invalid(`unknown field ${JSON.stringify(extra)}; a line has "ns", "key", "value" and optionally "version"`));
    if (typeof r.ns !== "string" || r.ns.length === 0 || r.ns.length > 256) at(invalid(`"ns" must be a namespace name (1 to 256 characters); got ${JSON.stringify(r.ns)}`));
    if (!("key" in r)) at(invalid(`"key" is missing`));
    if (!("value" in r)) at(invalid(`"value" is missing`));
    try {
      const key = fromTagged(r.key, "key") as Key;
      const value = fromTagged(r.value, "value");
      const size = encodeKey(key, KEY_BYTES_MAX).length + encodeValue(value, VALUE_BYTES_MAX).length;
      entries.push({ ns: r.ns as string, key, value, bytes: size, line: lineNo });
      bytes += size;
    } catch (e) {
      at(e);
    }
    if (entries.length % 100_000 === 0) err(`checked ${entries.length} entries…`);
  }
  const namespaces = [...new Set(entries.map((e) => e.ns))];
  const db = await openFor("import", dir, namespaces);
  try {
    if (entries.length <= TX_WRITES_MAX && bytes <= TX_BYTES_MAX) {
      await db.transaction((tx) => {
        for (const e of entries) tx.set(e.ns, e.key, e.value);
      });
      err(`imported ${entries.length} entries in one transaction`);
      return 0;
    }
    let done = 0;
    let transactions = 0;
    while (done < entries.length) {
      let end = done;
      let batchBytes = 0;
      while (end < entries.length && end - done < BATCH_WRITES_MAX && (end === done || batchBytes + entries[end]!.bytes <= BATCH_BYTES_MAX)) {
        batchBytes += entries[end++]!.bytes;
      }
      const batch = entries.slice(done, end);
      try {
        await db.transaction((tx) => {
          for (const e of batch) tx.set(e.ns, e.key, e.value);
        });
      } catch (e) {
        const written = done === 0 ? "nothing was written" : `entries 1 to ${done} (input lines 1 to ${entries[done - 1]!.line}) were written`;
        const why = e instanceof TxtDbError ? `${e.code}: ${e.message}` : String(e);
        throw new TxtDbError(e instanceof TxtDbError ? e.code : "IO", `import failed at input line ${entries[done]!.line} (${why}); ${written}, the rest was not`, { cause: e });
      }
      done = end;
      transactions++;
      if (done % 100_000 < BATCH_WRITES_MAX) err(`imported ${done} of ${entries.length} entries…`);
    }
    err(`imported ${entries.length} entries in ${transactions} transactions (more than one transaction's limits)`);
    return 0;
  } finally {
    await db.close();
  }
}

// --- doctor ---

/** A commit holds the writer lock for milliseconds; a holder past this has stopped or hangs. */
const WRITER_HOLD_SUSPECT_MS = 5_000;

/** The Linux process state letter of `pid` (T: stopped, t: traced, Z: zombie), if /proc says. */
function processState(platform: Platform, pid: number): string | undefined {
  try {
    const f = platform.open(`/proc/${pid}/stat`, { readOnly: true });
    try {
      const buf = new Uint8Array(512);
      const text = new TextDecoder().decode(buf.subarray(0, f.read(buf, 0)));
      // "pid (comm) S ...": comm may hold spaces and parentheses, so read after the last ")".
      return /^\) (\S)/.exec(text.slice(text.lastIndexOf(")")))?.[1];
    } finally {
      f.close();
    }
  } catch {
    // Not Linux, the process is gone, or Deno, which refuses /proc to --allow-read alone.
    return undefined;
  }
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

function doctor(db: Database, dir: string): number {
  let problems = 0;
  const s = db.stats();
  console.log(safe(`store ${dir}: version ${s.version}, ${s.namespaces} namespaces, log ${s.logBytes} B, checkpoint ${s.checkpointBytes} B at version ${s.checkpointVersion}`));
  const procs = db.processes().filter((p) => !p.self);
  console.log(`live processes: ${procs.length}`);
  for (const p of procs) {
    const behind = p.pinnedVersion === undefined ? "pin not published yet" : `pins version ${p.pinnedVersion} (${s.version - p.pinnedVersion} behind the head)`;
    console.log(safe(`  pid ${p.pid} (${p.runtime}): ${behind}`));
  }
  const oldest = procs.reduce<bigint | undefined>((m, p) => (p.pinnedVersion !== undefined && (m === undefined || p.pinnedVersion < m) ? p.pinnedVersion : m), undefined);
  if (oldest !== undefined && s.version - oldest > 10_000n) {
    problems++;
    console.log(`warning: a process pins a version ${s.version - oldest} commits old: a long-lived snapshot or transaction holds back compaction`);
  }
  // Read-only and never blocking: a stuck holder must not make doctor wait too.
  const { held, holder } = readWriterHolder(db.platform, db.path);
  if (!held) {
    console.log("writer lock: free");
  } else if (!holder) {
    console.log("writer lock: held by a process that did not record itself (it has just taken the lock, or it runs an older txtdb); run doctor again to see whether it is released");
  } else {
    const heldMs = db.platform.wallClockMs() - holder.sinceWallMs;
    const state = processState(db.platform, holder.pid);
    const stateText = state === "T" ? ", process stopped (SIGSTOP or Ctrl-Z)" : state === "t" ? ", process stopped by a debugger" : state === "Z" ? ", process is a zombie" : "";
    const known = procs.some((p) => p.pid === holder.pid) ? "" : " (no live txtdb process with this pid has a lease here; it may be a tool outside txtdb's leases)";
    console.log(safe(`writer lock: held by pid ${holder.pid} (${holder.runtime}) for ${seconds(heldMs)}${stateText}${known}`));
    if (heldMs > WRITER_HOLD_SUSPECT_MS || state === "T" || state === "t") {
      problems++;
      console.log(
        `warning: pid ${holder.pid} has held the writer lock for ${seconds(heldMs)}, but a commit holds it for milliseconds: ` +
          "it is probably stuck (stopped with SIGSTOP or Ctrl-Z, paused in a debugger, or hung). " +
          "Every writer waits for it and fails with LOCK_TIMEOUT after lockTimeoutMs (default 30 s). " +
          `If it was stopped, resume it (kill -CONT ${holder.pid}); otherwise end it (kill ${holder.pid}): ` +
          "the kernel releases the lock when it exits, and nothing committed is lost.",
      );
    }
  }
  if (s.openSnapshots || s.openTransactions) console.log(`this process: ${s.openSnapshots} snapshots, ${s.openTransactions} transactions open`);
  return problems ? 1 : 0;
}

try {
  exit(await run());
} catch (e) {
  // Errors txtdb raises on purpose are the user's to fix: code and message only. Anything
  // else is a bug in txtdb, and its stack is what a bug report needs.
  err(e instanceof TxtDbError ? `txtdb: ${e.code}: ${e.message}` : `txtdb: internal error (please report): ${e instanceof Error ? e.stack : String(e)}`);
  exit(2);
}
