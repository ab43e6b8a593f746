/**
 * Reading standard input line by line on Node, Deno and Bun (used by the command line
 * and the test workers). Runtime-specific, so it lives outside the core; the splitting
 * itself ({@link linesOf}) is runtime-free, so it is tested on every runtime.
 *
 * @module
 */
import { TxtDbError } from "../src/errors.ts";

type G = {
  Deno?: { stdin: { readable: ReadableStream<Uint8Array> } };
  process?: { stdin: AsyncIterable<Uint8Array | string> };
};

/**
 * The longest line read, in UTF-16 code units. Far above what one export line holds (a key
 * of at most 2 KiB and a value of at most 16 MiB encoded), and below every engine's
 * longest string (V8: 2^29 - 24), which a longer line would otherwise hit as a RangeError
 * and a stack trace.
 */
export const LINE_CHARS_MAX = 256 * 1024 * 1024;

/**
 * Splits a byte (or text) stream into lines (a last line without a newline included).
 *
 * - The bytes must be UTF-8: invalid bytes, or a sequence cut short at the end, fail with
 *   INVALID_ARGUMENT naming the line. A lenient decoder replaced them with U+FFFD, so an
 *   import of a damaged file wrote other data than it was given, and said nothing.
 * - A line is kept as its chunks and joined once at its newline, and each chunk is searched
 *   once: appending to one string and searching it whole on every chunk made a long line
 *   cost quadratic time (40 MB took 10 s; a few hundred MB looked like a hang).
 * - A line longer than `lineCharsMax` fails with INVALID_ARGUMENT naming it.
 * A leading byte order mark is dropped (TextDecoder's default).
 */
export async function* linesOf(source: AsyncIterable<Uint8Array | string>, lineCharsMax = LINE_CHARS_MAX): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let parts: string[] = [];
  let partsChars = 0;
  let lineNo = 1;
  const keep = (text: string) => {
    partsChars += text.length;
    if (partsChars > lineCharsMax) {
      throw new TxtDbError("INVALID_ARGUMENT", `line ${lineNo}: longer than ${lineCharsMax} characters, the longest line read (one key of at most 2 KiB and one value of at most 16 MiB encoded fit far below it)`);
    }
    if (text) parts.push(text);
  };
  const take = (): string => {
    const line = parts.length === 1 ? parts[0]! : parts.join("");
    parts = [];
    partsChars = 0;
    lineNo++;
    return line;
  };
  // Bytes are decoded a line at a time (a newline byte is never inside a UTF-8 sequence), so
  // that an invalid byte is reported on its own line, not on the first line of its chunk.
  const decode = (bytes?: Uint8Array): string => {
    try {
      return bytes ? decoder.decode(bytes, { stream: true }) : decoder.decode();
    } catch (cause) {
      throw new TxtDbError("INVALID_ARGUMENT", `line ${lineNo}: not valid UTF-8 (${bytes ? "bytes that are not UTF-8" : "the input ends inside a character"}); give the input as UTF-8 text`, { cause });
    }
  };
  for await (const chunk of source) {
    let from = 0;
    while (from < chunk.length) {
      const nl = typeof chunk === "string" ? chunk.indexOf("\n", from) : chunk.indexOf(0x0a, from);
      const to = nl < 0 ? chunk.length : nl;
      keep(typeof chunk === "string" ? chunk.slice(from, to) : decode(chunk.subarray(from, to)));
      if (nl < 0) break;
      yield take();
      from = nl + 1;
    }
  }
  keep(decode());
  if (partsChars > 0) yield take();
}

/** Yields stdin lines until EOF (a last line without a newline included); see {@link linesOf}. */
export function stdinLines(): AsyncGenerator<string> {
  const g = globalThis as unknown as G;
  return linesOf(readFailuresAsIo(g.Deno ? g.Deno.stdin.readable : g.process!.stdin));
}

/**
 * `source`, with a failure to read it as an IO error: the runtime's own error (EISDIR,
 * EIO) came out of the command line as "internal error (please report)" and a stack.
 */
export async function* readFailuresAsIo<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (e) {
    if (e instanceof TxtDbError) throw e;
    throw new TxtDbError("IO", `Reading stdin failed: ${e instanceof Error ? e.message : String(e)}; give the export lines as a file or a pipe (txtdb import <dir> < export.ndjson)`, { cause: e });
  }
}
