/**
 * A worker for the tests of files someone else changes or plants in a store directory
 * (tests/files-*.test.ts); runs on Node, Deno or Bun.
 *
 *   reader <dir>            get ns/"k" in a tight loop; print "saw <value>" each time the value
 *                           changes; on stdin EOF print "done <json>" ({ reads, errors, lastError })
 *   openstats <dir> <name>  open the store (and stats()); print "result <name> ok" or
 *                           "result <name> error <code> <message>"; repeated for each
 *                           `<dir> <name>` pair given
 *
 * Prints "ready" once started.
 */
import { open } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, ...rest] = args();

async function reader(dir: string): Promise<void> {
  const db = await open(dir, { namespaces: ["ns"] });
  say("ready");
  let reads = 0;
  let errors = 0;
  let lastError = "";
  let last: unknown = Symbol("none");
  let stop = false;
  void (async () => {
    for await (const _line of stdinLines()) {
      // commands are not used: EOF ends the loop
    }
    stop = true;
  })();
  while (!stop) {
    // A burst of reads between turns of the event loop, so stdin is noticed.
    for (let i = 0; i < 200; i++) {
      try {
        const v = await db.get("ns", "k");
        reads++;
        if (v !== last) {
          last = v;
          say(`saw ${JSON.stringify(v)}`);
        }
      } catch (e) {
        errors++;
        lastError = `${(e as { code?: string }).code ?? ""} ${(e as Error).message}`;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  say(`done ${JSON.stringify({ reads, errors, lastError })}`);
  await db.close().catch(() => {});
}

async function openStats(pairs: string[]): Promise<void> {
  say("ready");
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const dir = pairs[i]!;
    const name = pairs[i + 1]!;
    try {
      const db = await open(dir);
      try {
        await db.stats();
      } finally {
        await db.close();
      }
      say(`result ${name} ok`);
    } catch (e) {
      const code = (e as { code?: string }).code ?? (e as Error).name;
      say(`result ${name} error ${code} ${(e as Error).message.replace(/\n/g, " ")}`);
    }
  }
}

if (mode === "reader") await reader(rest[0]!);
else if (mode === "openstats") await openStats(rest);
else {
  say(`unknown mode ${mode}`);
  exit(2);
}
exit(0);
