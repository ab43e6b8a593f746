/** Small runtime-neutral helpers for workers: arguments, stdout lines, stdin commands. */
type G = {
  Deno?: { args: string[]; exit(code: number): never };
  process?: { argv: string[]; exit(code: number): never };
};
const g = globalThis as unknown as G;

export function args(): string[] {
  return g.Deno ? g.Deno.args : g.process!.argv.slice(2);
}

export function say(line: string): void {
  console.log(line);
}

export function exit(code: number): never {
  return g.Deno ? g.Deno.exit(code) : g.process!.exit(code);
}

/** Yields stdin lines until EOF (the command line's reader: one copy). */
export { stdinLines } from "../../scripts/stdin.ts";
