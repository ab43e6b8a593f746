/**
 * The command line's grammar: which commands exist, what each takes, the help texts, and
 * the parser that turns `argv` into a checked {@link Invocation}. Pure (no I/O), so every
 * runtime's test leg runs it.
 *
 * Rules the parser keeps:
 * 1. Everything is checked here, before any store is opened: an unknown or mistyped command
 *    (with "did you mean" for a close name), an unknown option, a missing or extra argument,
 *    a bad `--limit`. A typo never creates a store.
 * 2. Tokens come from `node:util` `parseArgs` (on Node 20, Deno 2.9 without any permission,
 *    and Bun 1.4), which handles `--flag value`, `--flag=value`, `-h` and `--`; the checks on
 *    top are ours, because its strict mode would take `-5` for an option and `--limit --reverse`
 *    for a value.
 * 3. An argument that starts with `-` and a digit or a dot (`-5`, `-1.5`) is a value, not an
 *    option: keys and values may be negative numbers.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { TxtDbError } from "../src/errors.ts";
import { didYouMean } from "../src/spelling.ts";

/** Exit codes of every command (printed by `txtdb --help`). */
export const EXIT = {
  /** The command did what was asked. */
  ok: 0,
  /** It ran and found problems (`check`, `doctor`), or the key was not found (`get`). */
  problems: 1,
  /** A usage mistake or an error: nothing or only what the message says was done. */
  error: 2,
} as const;

type Flag = "limit" | "reverse" | "progress" | "resume" | "restart" | "rollback" | "mode" | "allow-foreign-owner";

/** The options of every command that opens a store through open(): a store shared by a group. */
const SHARED: Flag[] = ["mode", "allow-foreign-owner"];

/** What a command takes and how it opens the store. */
export interface CommandSpec {
  /** Required arguments after the directory. */
  args: string[];
  /** Optional arguments after the required ones. */
  optional?: string[];
  /** Takes any number of further arguments (export's namespaces). */
  rest?: string;
  flags: Flag[];
  /** "read" opens an existing store read-only, "write" read-write, "create" may create it. */
  access: "read" | "write" | "create";
  /** One line for the command list. */
  summary: string;
  /** Further lines for `txtdb help <command>`. */
  details?: string;
}

/** Every command that opens a store. */
export const COMMANDS: Record<string, CommandSpec> = {
  stats: {
    args: [], flags: [...SHARED], access: "read",
    summary: "store-wide figures from the store's files (JSON): version, bytes by file, segments, tables by level, live processes and their pins, oldest pin, writer-lock holder",
    details: "Per-process counters (commits, latencies) live in each process (db.stats(), db.metrics()) and are not shown.",
  },
  doctor: {
    args: [], flags: [...SHARED], access: "read",
    summary: "live processes, their pins, the writer lock and who holds it, locks on named resources held by stopped processes; exit 1 on problems",
  },
  locks: {
    args: [], flags: [...SHARED], access: "read",
    summary: "locks on named resources, one JSON line each: resource, mode, pid, runtime, waiting, sinceMs (who holds what, who waits, for how long)",
    details: "Every live process's grants and waits (db.locks()), intention locks included, in arrival order.",
  },
  queues: {
    args: [], flags: [...SHARED], access: "read",
    summary: "the store's queues, one JSON line each: queue, ready, delayed, running, dead (db.queueStats())",
    details: "Every queue that holds waiting, running or dead messages, by name. Opens the store read-only.",
  },
  check: {
    args: [], flags: ["progress", ...SHARED], access: "read",
    summary: "verify every table block, log record, value and the index (JSON report); exit 1 on problems",
  },
  compact: {
    args: [], flags: ["progress", ...SHARED], access: "write",
    summary: "fold old log segments into sorted tables (JSON); says why when nothing could be folded",
  },
  backup: {
    args: ["dest"], flags: ["progress", ...SHARED], access: "read",
    summary: "copy the store as it is at one version into dest (a new path or an empty directory), while other processes write (JSON: version, bytes)",
    details: "The copy opens as a store of its own and passes check(). Compactions wait while it runs; commits do not.",
  },
  migrate: {
    args: [], flags: ["rollback"], access: "write",
    summary: "upgrade a store of the previous on-disk format in place (JSON report); --rollback returns it to that format",
    details: "Needs every other process to have closed the store. open() upgrades a writable store by itself; this does it explicitly. " +
      "--rollback turns the sorted tables back into one checkpoint file, for the previous release; commits stay in the log.",
  },
  get: { args: ["namespace", "key"], flags: [...SHARED], access: "read", summary: "print a value (JSON); exit 1 if the key is absent" },
  set: { args: ["namespace", "key", "value"], flags: [...SHARED], access: "create", summary: "write a value (creates the store and the namespace)" },
  delete: { args: ["namespace", "key"], flags: [...SHARED], access: "write", summary: "delete a key" },
  list: {
    args: ["namespace"], optional: ["prefix"], flags: ["limit", "reverse", ...SHARED], access: "read",
    summary: "NDJSON entries {key, value, version} in key order",
    details: "--limit N (or --limit=N) stops after N entries; --reverse lists from the last key.",
  },
  namespaces: { args: [], flags: [...SHARED], access: "read", summary: "the namespaces, one a line (a name with control characters as a JSON string)" },
  export: {
    args: [], rest: "namespace", flags: ["progress", ...SHARED], access: "read",
    summary: 'NDJSON {"ns","key","value","version"} of every entry at one snapshot (or of the namespaces named)',
  },
  import: {
    args: [], flags: ["progress", "resume", "restart", ...SHARED], access: "create",
    summary: "read export lines from stdin: check every line, then write (atomic up to 100 000 entries / 64 MiB)",
    details: [
      "Every line is checked before anything is written: a bad line writes nothing.",
      "Input within one transaction's limits (100 000 entries and 64 MiB of encoded keys and",
      "values) is written in one transaction: all of it or none. Larger input is written in order",
      "in transactions of at most 10 000 entries / 16 MiB; each one also records, in the same",
      'transaction, how far the import got (namespace "txtdb.import", removed when it finishes).',
      "If the import is interrupted (a crash, Ctrl-C, a full disk), run it again with the same",
      "input and --resume: it checks that the input is the same and continues after the last",
      "line committed, so no line is written twice. --restart starts again from the first line.",
    ].join("\n"),
  },
};

/** Commands that open no store. */
const OTHER_COMMANDS = ["help", "version", "bench", "demo"];

/** One-line descriptions of the options, for the help texts. */
const FLAG_HELP: Record<Flag, string> = {
  limit: "--limit N           at most N entries",
  reverse: "--reverse           from the last key",
  progress: "--progress          progress on stderr (on by default when stderr is a terminal)",
  resume: "--resume            continue an interrupted import of the same input",
  restart: "--restart           import from the first line, ignoring an interrupted import",
  rollback: "--rollback          return to the previous on-disk format",
  mode: "--mode MODE         permission bits of the files it creates, octal (default 600; 640 or 660 for a store a group shares)",
  "allow-foreign-owner": "--allow-foreign-owner  open a store directory another user owns (one you trust, shared within a group)",
};

const FLAG_TYPES: Record<string, "string" | "boolean"> = {
  limit: "string", reverse: "boolean", progress: "boolean", resume: "boolean", restart: "boolean", rollback: "boolean", help: "boolean", version: "boolean",
  mode: "string", "allow-foreign-owner": "boolean",
};

/** What the command line asks for, checked. */
export type Invocation =
  | { kind: "help"; command?: string }
  | { kind: "version" }
  | { kind: "usage" }
  | { kind: "devOnly"; command: "bench" | "demo" }
  | {
    kind: "run";
    command: string;
    dir: string;
    /** The arguments after the directory (namespace, key, value, prefix, export's namespaces). */
    rest: string[];
    limit?: number;
    reverse: boolean;
    /** `--progress` given (the caller also turns progress on when stderr is a terminal). */
    progress: boolean;
    resume: boolean;
    restart: boolean;
    rollback: boolean;
    /** `--mode`: permission bits of created files (open()'s `mode`). */
    mode?: number;
    /** `--allow-foreign-owner` (open()'s `allowForeignOwner`). */
    allowForeignOwner: boolean;
  };

const invalid = (message: string) => new TxtDbError("INVALID_ARGUMENT", message);
const quote = (s: string) => JSON.stringify(s);

const hint = (word: string, names: readonly string[], shown: (n: string) => string) => {
  const near = didYouMean(word, names);
  return near === undefined ? "" : `; did you mean ${shown(near)}?`;
};

/** Parses and checks the command line (without the runtime and script). Throws INVALID_ARGUMENT. */
export function parseCommandLine(argv: readonly string[]): Invocation {
  const { tokens } = parseArgs({
    args: [...argv],
    options: Object.fromEntries(Object.entries(FLAG_TYPES).map(([k, type]) => [k, { type, ...(k === "help" ? { short: "h" } : k === "version" ? { short: "V" } : {}) }])),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const positional: string[] = [];
  const options: { name: string; raw: string; value: string | undefined; inline: boolean }[] = [];
  const seenIndex = new Set<number>();
  for (const t of tokens) {
    if (t.kind === "positional") positional.push(t.value);
    else if (t.kind === "option") {
      const arg = argv[t.index]!;
      // A short group like "-1.5" yields one token per character, all with the same index.
      if (seenIndex.has(t.index)) continue;
      seenIndex.add(t.index);
      if (/^-[0-9.]/.test(arg)) positional.push(arg); // a negative number is a value (rule 3)
      else options.push({ name: t.name, raw: t.rawName, value: t.value, inline: t.inlineValue === true });
    }
  }
  const has = (name: string) => options.some((o) => o.name === name);
  const [first, ...afterCommand] = positional;
  // `txtdb help [command]`, `txtdb <command> --help`, `txtdb --help`.
  if (first === "help" || (has("help") && first === undefined)) {
    const topic = first === "help" ? afterCommand[0] : undefined;
    if (topic !== undefined && !Object.hasOwn(COMMANDS, topic)) throw invalid(`Unknown command ${quote(topic)}${hint(topic, Object.keys(COMMANDS), quote)}; see \`txtdb --help\``);
    return topic === undefined ? { kind: "help" } : { kind: "help", command: topic };
  }
  if (first === undefined) {
    if (has("version")) return { kind: "version" };
    if (options.length) throw unknownOption(options[0]!.raw, ["help", "version"]);
    return { kind: "usage" };
  }
  if (first === "version") return { kind: "version" };
  if (first === "bench" || first === "demo") return { kind: "devOnly", command: first };
  if (!Object.hasOwn(COMMANDS, first)) {
    throw invalid(`Unknown command ${quote(first)}${hint(first, [...Object.keys(COMMANDS), ...OTHER_COMMANDS], quote)}; see \`txtdb --help\``);
  }
  const command = first;
  const spec = COMMANDS[command]!;
  if (has("help")) return { kind: "help", command };
  const allowed: string[] = spec.flags;
  let limit: number | undefined;
  let mode: number | undefined;
  for (const o of options) {
    if (!allowed.includes(o.name)) throw unknownOption(o.raw, allowed, command);
    if (FLAG_TYPES[o.name] === "boolean") {
      if (o.value !== undefined) throw invalid(`Option --${o.name} takes no value; got ${quote(`${o.raw}=${o.value}`)}`);
      continue;
    }
    // parseArgs takes the next argument as the value even when it looks like an option.
    if (o.value === undefined || (!o.inline && o.value.startsWith("--"))) throw invalid(`Option --${o.name} needs a value (--${o.name} N or --${o.name}=N)`);
    if (o.name === "limit") {
      limit = /^[0-9]+$/.test(o.value) ? Number(o.value) : NaN;
      if (!Number.isSafeInteger(limit)) throw invalid(`--limit needs a whole number of entries (0 or more); got ${quote(o.value)}`);
    }
    if (o.name === "mode") mode = parseMode(o.value);
  }
  const [dir, ...rest] = afterCommand;
  if (dir === undefined || dir === "") throw invalid(`\`txtdb ${command}\` needs a store directory; see \`txtdb help ${command}\``);
  const missing = spec.args[rest.length];
  if (missing) throw invalid(`\`txtdb ${command}\` needs a ${missing}; see \`txtdb help ${command}\``);
  const most = spec.args.length + (spec.optional?.length ?? 0);
  if (!spec.rest && rest.length > most) throw invalid(`Unexpected argument ${quote(rest[most]!)} for \`txtdb ${command}\`; see \`txtdb help ${command}\``);
  if (has("resume") && has("restart")) throw invalid("--resume and --restart exclude each other: --resume continues an interrupted import, --restart starts it again");
  return {
    kind: "run",
    command,
    dir,
    rest,
    ...(limit !== undefined ? { limit } : {}),
    reverse: has("reverse"),
    progress: has("progress"),
    resume: has("resume"),
    restart: has("restart"),
    rollback: has("rollback"),
    ...(mode !== undefined ? { mode } : {}),
    allowForeignOwner: has("allow-foreign-owner"),
  };
}

/**
 * `--mode`'s value: octal permission bits (`640`, `0640`, `0o640`) that give the owner read
 * and write, as open()'s `mode` requires; anything else is a usage mistake, refused before
 * the store is opened.
 */
export function parseMode(text: string): number {
  const digits = /^(?:0o?)?([0-7]{3})$/i.exec(text)?.[1];
  const mode = digits === undefined ? NaN : parseInt(digits, 8);
  if (Number.isNaN(mode) || (mode & 0o600) !== 0o600) {
    throw invalid(`--mode needs octal permission bits from 600 to 777 that include the owner's read and write (640 or 660 for a store a group shares); got ${quote(text)}`);
  }
  return mode;
}

function unknownOption(raw: string, allowed: string[], command?: string): TxtDbError {
  const where = command ? ` for \`txtdb ${command}\`` : "";
  const takes = command ? (allowed.length ? ` (it takes ${allowed.map((f) => `--${f}`).join(", ")})` : " (it takes no options)") : "";
  const name = raw.replace(/^-+/, "");
  return invalid(`Unknown option ${quote(raw)}${where}${takes}${hint(name, allowed, (n) => `--${n}`)}; see \`txtdb help${command ? ` ${command}` : ""}\``);
}

/** The synopsis of one command: `list <dir> <namespace> [prefix] [--limit N] [--reverse]`. */
export function synopsis(command: string): string {
  const spec = COMMANDS[command]!;
  const parts = [command, "<dir>", ...spec.args.map((a) => `<${a}>`), ...(spec.optional ?? []).map((a) => `[${a}]`)];
  if (spec.rest) parts.push(`[${spec.rest} ...]`);
  // The shared-store options are the same for every command: the usage says so once.
  for (const f of spec.flags) if (!SHARED.includes(f)) parts.push(f === "limit" ? "[--limit N]" : `[--${f}]`);
  return parts.join(" ");
}

const EXIT_HELP = `exit codes:
  0  done
  1  problems found (check, doctor) or key not found (get)
  2  usage mistake or error (message on stderr as "txtdb: CODE: message")`;

/** `txtdb --help`. */
export function usage(): string {
  const lines = Object.keys(COMMANDS).map((c) => `  ${synopsis(c)}\n      ${COMMANDS[c]!.summary}`);
  return `usage: txtdb <command> <dir> [...]

commands:
${lines.join("\n")}
  help [command]      this text, or one command's
  --version, -V       print the version
  bench, demo         run from a source checkout: npm run bench / npm run demo

Keys and values are JSON; a bare word is a string (txtdb get ./data users alice); bigint,
bytes, Date, Map, Set and the numbers JSON lacks use tags ({"$bigint":"1"}, {"$bytes":"..."}).
"--" ends options; an argument like -5 is a value.
Only set and import create a store; other commands never create or change a directory that
is not a store, and read-side ones open the store read-only.
For a store a group shares, every command but migrate takes --mode MODE (permission bits of
the files it creates, octal: 640 or 660) and --allow-foreign-owner (a directory another user
owns); see \`txtdb help <command>\`.

${EXIT_HELP}`;
}

/** `txtdb help <command>`. */
export function commandHelp(command: string): string {
  const spec = COMMANDS[command]!;
  const flags = spec.flags.map((f) => `  ${FLAG_HELP[f]}`);
  return [`usage: txtdb ${synopsis(command)}`, "", spec.summary, ...(spec.details ? [spec.details] : []), ...(flags.length ? ["", "options:", ...flags] : []), "", EXIT_HELP].join("\n");
}
