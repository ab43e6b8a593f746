#!/usr/bin/env node
/**
 * The `txtdb` command line: `txtdb <command> <dir> [...]` on Node (`npx txtdb`), Deno
 * (`deno run --allow-read --allow-write jsr:@txtdb/txtdb/cli`) or Bun (`bunx txtdb`).
 * `txtdb --help` lists the commands and exit codes.
 *
 * The parts: args.ts (grammar, parser, help), store.ts (which directories are stores),
 * commands.ts (running one), figures.ts (stats), compact.ts (why nothing folded),
 * import.ts / export.ts (NDJSON, resumable import), doctor.ts, damage.ts (check and doctor
 * on a store too damaged to open), output.ts (safe text, progress), io.ts (the runtime). Keys and values travel as tagged JSON (src/ndjson.ts).
 *
 * Errors print `txtdb: CODE: message` on stderr and exit 2, with no stack trace for a
 * user's mistake; anything else is a bug in txtdb and prints its stack.
 *
 * @module
 */
import { TxtDbError } from "../src/errors.ts";
import { EXIT, parseCommandLine } from "./args.ts";
import { run } from "./commands.ts";
import { argv, err, exit } from "./io.ts";
import { safe } from "./output.ts";

try {
  await exit(await run(parseCommandLine(argv())));
} catch (e) {
  err(safe(e instanceof TxtDbError ? `txtdb: ${e.code}: ${e.message}` : `txtdb: internal error (please report): ${e instanceof Error ? e.stack : String(e)}`));
  await exit(EXIT.error);
}
