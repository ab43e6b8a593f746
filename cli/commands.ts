/**
 * Runs one checked {@link Invocation}: opens the store as the command may (store.ts), does
 * the work, prints data on stdout and messages on stderr, and returns the exit code.
 *
 * @module
 */
import { TxtDbError } from "../src/errors.ts";
import type { Database, Key } from "../mod.ts";
import { databaseInternals } from "../src/db.ts";
import { fromTagged } from "../src/ndjson.ts";
import { migrateStore } from "../src/migrate.ts";
import meta from "../deno.json" with { type: "json" };
import { commandHelp, EXIT, usage } from "./args.ts";
import type { Invocation } from "./args.ts";
import { explainCompact } from "./compact.ts";
import { damageReport, withoutAdvice } from "./damage.ts";
import { doctor, doctorDamaged } from "./doctor.ts";
import { exportAll } from "./export.ts";
import { gatherFigures, gatherSagaFigures, liveProcesses, storeFiles } from "./figures.ts";
import { duplicateName, fitsOneTransaction, lossyNumber, readImport, writeImport } from "./import.ts";
import { drained, err, out, stderrIsTerminal, stdinLines } from "./io.ts";
import { bytes, json, name, Progress, report, safe, safeJson } from "./output.ts";
import { dirState, openFor, platform, refuseLostManifest } from "./store.ts";

/** The version printed by `txtdb --version` (deno.json and package.json agree; deno.json ships on JSR and npm alike). */
export const VERSION: string = meta.version;

const invalid = (message: string) => new TxtDbError("INVALID_ARGUMENT", message);

/** A key or value from the command line: JSON (tagged), or a bare word as a string. */
export function parseValueArg(what: string, text: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    // A bare word is a string, so `txtdb get ./data users alice` works; text that starts
    // like JSON but is not valid JSON is a mistake, not a string that happens to look so.
    if (/^\s*[[{"]/.test(text)) throw invalid(`The ${what} ${JSON.stringify(text)} is not valid JSON: ${(e as Error).message}`);
    return text;
  }
  // What import refuses in a line, refused here too: `txtdb set ./d users 12345678901234567890 …`
  // wrote the key 12345678901234567000, the same key as …891, and 1e400 wrote Infinity.
  const lossy = lossyNumber(text);
  if (lossy !== undefined) throw invalid(`The ${what} ${JSON.stringify(text)}: ${lossy}`);
  const twice = duplicateName(text);
  if (twice !== undefined) throw invalid(`The ${what} ${JSON.stringify(text)}: the name ${JSON.stringify(twice)} appears twice in one object, and JSON keeps only the last; write it once`);
  return fromTagged(parsed, what);
}

/** The bytes of the store's files, for a progress line before a long open. */
async function storeSize(dir: string): Promise<string> {
  try {
    const p = await platform();
    if (dirState(p, dir) !== "store") return "";
    return ` (${bytes(storeFiles(p, dir).reduce((a, f) => a + f.bytes, 0))})`;
  } catch {
    return "";
  }
}

/** True for damage that `command` reports as what it found, rather than fail with: CORRUPTION met by check or doctor. */
function isDamage(command: string, e: unknown): e is TxtDbError {
  return (command === "check" || command === "doctor") && e instanceof TxtDbError && e.code === "CORRUPTION";
}

/**
 * check's JSON report or doctor's diagnosis of a store found damaged (`e`), from its files
 * (damage.ts); exit 1, problems found. Never the error itself, whose advice is to run check.
 */
async function reportDamage(command: string, dir: string, e: TxtDbError, progress: Progress): Promise<number> {
  const p = await platform();
  const r = damageReport(p, dir, e);
  if (command === "doctor") return doctorDamaged(p, dir, r, out);
  out(safeJson(JSON.stringify(r, null, 2)));
  progress.step(`damaged: ${r.problems.length} problems`);
  return EXIT.problems;
}

/**
 * A directory given as import's stdin (`txtdb import ./data < backups/`, the file's name left
 * out) is a mistake to say, before a store is created: Node reads it as empty input, so the
 * import created an empty store and exited 0; Bun and Deno failed with EISDIR and a stack.
 * (Deno with only --allow-read --allow-write may not stat /dev/stdin: reading fails, as IO.)
 */
async function refuseDirectoryOnStdin(): Promise<void> {
  let info;
  try {
    info = (await platform()).stat("/dev/stdin");
  } catch {
    return; // no /dev/stdin to look at: reading says what is wrong
  }
  if (info?.isDirectory) {
    throw invalid("stdin is a directory; give the export lines as a file or a pipe: `txtdb import <dir> < export.ndjson` or `txtdb export <src> | txtdb import <dir>`");
  }
}

/** Runs `inv`; returns the exit code. Errors are thrown (main.ts prints them). */
export async function run(inv: Invocation): Promise<number> {
  switch (inv.kind) {
    case "usage":
      err(usage());
      return EXIT.error;
    case "help":
      out(inv.command ? commandHelp(inv.command) : usage());
      return EXIT.ok;
    case "version":
      out(`txtdb ${VERSION}`);
      return EXIT.ok;
    case "devOnly":
      out(`Run \`npm run ${inv.command}\` from a source checkout of txtdb (it starts Node, Deno and Bun processes).`);
      return EXIT.ok;
  }
  const { command, dir, rest } = inv;
  const progress = new Progress(command, { on: inv.progress || stderrIsTerminal(), write: err, nowMs: () => performance.now() });
  if (command === "import") {
    await refuseDirectoryOnStdin();
    progress.start("reading and checking stdin");
    const input = await readImport(stdinLines(), progress);
    progress.step(`checked ${input.entries.length} entries (${bytes(input.bytes)}); ${fitsOneTransaction(input) ? "one transaction" : "in batches, resumable"}`);
    const db = await openFor("import", dir, [], inv);
    try {
      progress.done(await writeImport(db, input, inv, progress));
      return EXIT.ok;
    } finally {
      await db.close();
    }
  }
  if (command === "migrate") {
    // Not through open(): a writable open would upgrade by itself, and a rollback needs no database.
    const p = await platform();
    const state = dirState(p, dir);
    refuseLostManifest(p, dir, state);
    if (state !== "store") throw invalid(`No txtdb store at "${dir}"`);
    const r = await migrateStore(p, dir, { rollback: inv.rollback });
    out(report({ format: r.format, changed: r.change !== undefined, ...(r.change ? { written: r.change.written, deleted: r.change.deleted, keys: r.change.keys } : {}) }));
    return EXIT.ok;
  }
  // Parse keys and values before opening, so a typo never creates a store or a namespace.
  const key = rest[1] === undefined ? undefined : (parseValueArg(command === "list" ? "prefix" : "key", rest[1]) as Key);
  const value = command === "set" ? parseValueArg("value", rest[2]!) : undefined;
  if (progress.on && (command === "check" || command === "compact" || command === "backup")) progress.start(`opening the store${await storeSize(dir)}`);
  let db: Database;
  try {
    db = await openFor(command, dir, command === "set" ? [rest[0]!] : [], inv);
  } catch (e) {
    if (!isDamage(command, e)) throw e;
    return await reportDamage(command, dir, e, progress);
  }
  try {
    switch (command) {
      case "stats": {
        const figures = gatherFigures(db);
        const sagas = await gatherSagaFigures(db);
        out(report(Object.keys(sagas).length > 0 ? { ...figures, sagas } : figures));
        return EXIT.ok;
      }
      case "doctor":
        try {
          return await doctor(db, dir, out);
        } catch (e) {
          // Damage met past the open (a value that does not decode, say): reported, as at open.
          if (!isDamage(command, e)) throw e;
          return await reportDamage(command, dir, e, progress);
        }
      case "locks":
        for (const l of db.locks()) out(json({ resource: l.resource, mode: l.mode, pid: l.pid, runtime: l.runtime, waiting: l.waiting, sinceMs: l.sinceMs }));
        return EXIT.ok;
      case "queues":
        for (const queue of databaseInternals(db).queueNames()) out(json({ queue, ...db.queueStats(queue) }));
        return EXIT.ok;
      case "check": {
        progress.step("opened; checking every table block, log record and value, and the index");
        const r = withoutAdvice(await db.check());
        out(safeJson(JSON.stringify(r, null, 2)));
        progress.step(r.ok ? `ok: ${r.records} records, ${bytes(r.bytes)}` : `${r.problems.length} problems`);
        return r.ok ? EXIT.ok : EXIT.problems;
      }
      case "compact": {
        const before = gatherFigures(db);
        progress.step(`opened; folding what it may of ${before.segments.live} segments (${bytes(before.bytes.segments)})`);
        const r = await db.compact();
        const p = databaseInternals(db).platform;
        const note = explainCompact(r, before, liveProcesses(p, db.path, p.pid).processes, db.stats().unreadableLeases);
        out(report({ ...r, note }));
        progress.step(r.segmentsFolded ? `folded ${r.segmentsFolded} segments` : "nothing folded");
        return EXIT.ok;
      }
      case "backup": {
        progress.step(`opened; copying to ${rest[0]}`);
        const r = await db.backup(rest[0]!);
        out(report({ version: r.version, bytes: r.bytes, dest: rest[0] }));
        progress.step(`copied ${bytes(r.bytes)} at version ${r.version}`);
        return EXIT.ok;
      }
      case "get": {
        const e = await db.getEntry(rest[0]!, key!);
        if (!e) {
          err(safe(`txtdb: key ${json(key)} is not in namespace ${json(rest[0])}`));
          return EXIT.problems;
        }
        out(json(e.value));
        return EXIT.ok;
      }
      case "set": {
        const { version } = await db.set(rest[0]!, key!, value);
        out(`version ${version}`);
        return EXIT.ok;
      }
      case "delete": {
        const { version } = await db.delete(rest[0]!, key!);
        out(`version ${version}`);
        return EXIT.ok;
      }
      case "namespaces":
        for (const n of await db.listNamespaces()) out(name(n));
        return EXIT.ok;
      case "list": {
        const prefix = rest[1] === undefined ? [] : key!;
        const opts = { ...(inv.limit !== undefined ? { limit: inv.limit } : {}), reverse: inv.reverse };
        let n = 0;
        for await (const e of db.list(rest[0]!, { prefix }, opts)) {
          out(json({ key: e.key, value: e.value, version: e.version }));
          if (++n % 1000 === 0) await drained(); // a slow reader must not make the listing pile up in memory
        }
        return EXIT.ok;
      }
      case "export":
        return await exportAll(db, rest, out, drained, progress);
    }
    throw new Error(`txtdb internal assertion failed: command ${JSON.stringify(command)} has a spec but no case`);
  } catch (e) {
    throw forCommandLine(e);
  } finally {
    await db.close();
  }
}

/**
 * A NAMESPACE_NOT_FOUND as the command line says it. The library's advice, to create the
 * namespace with createNamespace() or the namespaces open option, is for a program: `txtdb
 * get ./data user alice` (a namespace misspelt) told a shell user to call a function.
 */
export function forCommandLine(e: unknown): unknown {
  if (!(e instanceof TxtDbError) || e.code !== "NAMESPACE_NOT_FOUND") return e;
  const advice = e.message.indexOf("; create it with createNamespace(");
  if (advice < 0) return e;
  const message = `${e.message.slice(0, advice)}; \`txtdb namespaces <dir>\` lists the store's namespaces, and \`txtdb set <dir> <namespace> <key> <value>\` creates one with its first key`;
  return new TxtDbError(e.code, message, { cause: e, ...(e.details ? { details: e.details } : {}) });
}
