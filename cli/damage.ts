/**
 * What `check` and `doctor` report about a store that open() refuses as damaged
 * (CORRUPTION): the refusal and what a look at the files finds, each with its file and
 * offset, as problems found (exit 1), never an error that sends the user to `txtdb check`.
 *
 * @module
 */
import type { TxtDbError } from "../src/errors.ts";
import type { CheckReport } from "../src/check.ts";
import { checkStore } from "../src/check.ts";
import { Index } from "../src/index.ts";
import { Log } from "../src/log.ts";
import type { Platform } from "../src/port.ts";

/**
 * `message` without its advice to run `txtdb check`: check and doctor print what they found
 * in its place. Covers the phrasings of src/ (". Run `txtdb check`; restore …", ", or run
 * `txtdb check`", "; run `txtdb check` and restore …", "; run `txtdb check` if it persists").
 */
export function withoutCheckAdvice(message: string): string {
  return message
    .replace(/,? (?:or|and) run `txtdb check`(?=$|[.;])/g, "")
    .replace(/; run `txtdb check` if it persists/g, "")
    .replace(/\b([Rr])un `txtdb check`(?: to find the file and offset)?(?:; |, | and )(\w)/g, (_, r: string, c: string) => (r === "R" ? c.toUpperCase() : c));
}

/** The report's problems with their messages rid of advice to run `txtdb check`. */
export function withoutAdvice(report: CheckReport): CheckReport {
  return { ...report, problems: report.problems.map((p) => ({ ...p, message: withoutCheckAdvice(p.message) })) };
}

/**
 * The check report of a store open() refused with `refusal` (CORRUPTION): the refusal first
 * (its file and offset), then whatever else a check of the files alone finds (there is no
 * live index to compare them with). Reads only, takes no lock.
 */
export function damageReport(platform: Platform, dir: string, refusal: TxtDbError): CheckReport {
  const d = refusal.details as { file?: unknown; offset?: unknown } | undefined;
  const first = { file: typeof d?.file === "string" ? d.file : dir, offset: typeof d?.offset === "number" ? d.offset : 0, message: refusal.message };
  let found: CheckReport = { ok: false, problems: [], records: 0, bytes: 0 };
  const log = new Log(platform, dir, 0o600, true);
  try {
    found = checkStore(platform, dir, log, new Index(() => platform.wallClockMs()), 0);
  } catch {
    // The files cannot even be looked at (a port error, a planted file): the refusal says it.
  } finally {
    log.close();
  }
  const others = found.problems.filter((p) => p.file !== first.file || p.offset !== first.offset);
  return withoutAdvice({ ok: false, problems: [first, ...others], records: found.records, bytes: found.bytes });
}
