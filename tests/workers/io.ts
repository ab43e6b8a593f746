/** Small runtime-neutral helpers for workers: arguments, stdout lines, stdin commands. */
type G = {
  Deno?: { args: string[]; stdin: { readable: ReadableStream<Uint8Array> }; exit(code: number): never };
  process?: { argv: string[]; stdin: AsyncIterable<Uint8Array | string>; exit(code: number): never };
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

/** Yields stdin lines until EOF. */
export async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  const source: AsyncIterable<Uint8Array | string> = g.Deno ? g.Deno.stdin.readable : g.process!.stdin;
  for await (const chunk of source) {
    buffer += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
    }
  }
  if (buffer) yield buffer;
}
