/**
 * The command line's contact with its runtime: arguments, exit, stdout, stderr and whether
 * stderr is a terminal, on Node, Deno and Bun. Nothing else in cli/ touches a runtime global.
 *
 * @module
 */
export { stdinLines } from "./stdin.ts";

type G = {
  Deno?: { args: string[]; exit(code: number): never; stderr: { isTerminal(): boolean }; stdout: { writeSync(data: Uint8Array): number } };
  process?: {
    argv: string[];
    exit(code: number): never;
    stdout: {
      write(s: string, done?: (error?: unknown) => void): boolean;
      writableNeedDrain?: boolean;
      errored?: unknown;
      once(event: "drain", f: () => void): void;
      on(event: "error", f: (e: { code?: string; message?: string }) => void): void;
    };
    stderr: { write(s: string, done?: () => void): boolean; isTTY?: boolean };
  };
};
const g = globalThis as unknown as G;

/** The arguments after the runtime and the script. */
export function argv(): string[] {
  return g.Deno ? g.Deno.args : g.process!.argv.slice(2);
}

/**
 * Ends the process with `code` once stdout and stderr are written: Node writes to a pipe
 * asynchronously, and exiting at once would cut `txtdb export | ...` short.
 */
export async function exit(code: number): Promise<never> {
  if (g.Deno) return g.Deno.exit(code);
  const p = g.process!;
  const flushError = await new Promise<unknown>((resolve) => p.stdout.write("", (e) => p.stderr.write("", () => resolve(e))));
  // Bun calls the write callbacks before its writes to a pipe have failed: the EPIPE of an
  // output cut short by `| head -1` came after them, and the process exited 0 about once in
  // twenty runs. One more turn of the event loop lets the failure arrive; an output that did
  // not all arrive is never a success.
  if (code === 0) await new Promise((resolve) => setImmediate(resolve));
  const failed = writeError ?? flushError ?? p.stdout.errored;
  if (code === 0 && failed) return stdoutFailed(failed as { code?: string; message?: string });
  return p.exit(code);
}

/**
 * Exit code when stdout was closed before the output ended (`txtdb export ... | head -1`):
 * the output is incomplete, so not 0, but the reader chose to stop, so nothing is printed
 * (as a Unix tool killed by SIGPIPE prints nothing). Without this, Node printed an unhandled
 * EPIPE stack trace, and Bun and Deno wrote everything into the closed pipe and exited 0.
 * A socket whose reader left data unread reports ECONNRESET instead: the same case.
 */
export const EXIT_STDOUT_CLOSED = 2;

let watching = false;
/** The first error a write to stdout reported to its callback (Node, Bun). */
let writeError: unknown;
const noteWriteError = (e?: unknown) => {
  if (e && writeError === undefined) writeError = e;
};

/** Exits for a failed write to stdout: silently with EXIT_STDOUT_CLOSED if the reader is gone, else with a message. */
function stdoutFailed(e: { code?: string; message?: string }): never {
  const p = g.process!;
  if (e.code === "EPIPE" || e.code === "ECONNRESET") p.exit(EXIT_STDOUT_CLOSED);
  p.stderr.write(`txtdb: IO: writing to stdout failed: ${e.code ?? ""} ${e.message ?? ""}\n`);
  return p.exit(2);
}

/** Node and Bun report a write to a closed pipe as an "error" event of stdout. */
function watchStdout(): void {
  if (watching || g.Deno || !g.process) return;
  watching = true;
  g.process.stdout.on("error", (e) => stdoutFailed(e));
}

const encoder = new TextEncoder();

/** One line of data on stdout (on Deno, written synchronously, as console.log would). */
export function out(line: string): void {
  if (g.Deno) {
    const bytes = encoder.encode(line + "\n");
    try {
      for (let at = 0; at < bytes.length;) at += g.Deno.stdout.writeSync(bytes.subarray(at));
    } catch (e) {
      // A reader that closed its end is EPIPE (BrokenPipe) or, when stdout is a socket (as
      // Node's and Bun's child_process make it) and the reader left data unread,
      // ECONNRESET (ConnectionReset): the same "reader gone", which printed a stack trace.
      const name = (e as { name?: string }).name;
      if (name === "BrokenPipe" || name === "ConnectionReset") g.Deno.exit(EXIT_STDOUT_CLOSED);
      throw e;
    }
    return;
  }
  watchStdout();
  g.process!.stdout.write(line + "\n", noteWriteError);
}

/** Resolves when stdout has room again, so a long export does not pile up in memory. */
export function drained(): Promise<void> {
  const stdout = g.Deno ? undefined : g.process?.stdout;
  if (!stdout?.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => stdout.once("drain", resolve));
}

/** One line on stderr (the caller made it safe; see output.ts). */
export function err(line: string): void {
  if (g.process && !g.Deno) g.process.stderr.write(line + "\n");
  else console.error(line);
}

/** True when stderr is a terminal (progress is then on by default). */
export function stderrIsTerminal(): boolean {
  try {
    return g.Deno ? g.Deno.stderr.isTerminal() : g.process?.stderr.isTTY === true;
  } catch {
    return false;
  }
}
