/**
 * The command line's contact with its runtime: arguments, exit, stdout, stderr and whether
 * stderr is a terminal, on Node, Deno and Bun. Nothing else in cli/ touches a runtime global.
 *
 * @module
 */
export { stdinLines } from "./stdin.ts";

type G = {
  Deno?: { args: string[]; exit(code: number): never; stderr: { isTerminal(): boolean } };
  process?: {
    argv: string[];
    exit(code: number): never;
    stdout: { write(s: string, done?: () => void): boolean; writableNeedDrain?: boolean; once(event: "drain", f: () => void): void };
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
  await new Promise<void>((resolve) => p.stdout.write("", () => p.stderr.write("", resolve)));
  return p.exit(code);
}

/** One line of data on stdout (Deno's console.log writes synchronously). */
export function out(line: string): void {
  if (g.Deno) console.log(line);
  else g.process!.stdout.write(line + "\n");
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
