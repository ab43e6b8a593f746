/**
 * Reading standard input line by line on Node, Deno and Bun (used by the command line
 * and the test workers). Runtime-specific, so it lives outside the core.
 *
 * @module
 */
type G = {
  Deno?: { stdin: { readable: ReadableStream<Uint8Array> } };
  process?: { stdin: AsyncIterable<Uint8Array | string> };
};

/** Yields stdin lines until EOF (a last line without a newline included). */
export async function* stdinLines(): AsyncGenerator<string> {
  const g = globalThis as unknown as G;
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
