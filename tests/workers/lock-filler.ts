/**
 * Fills a store's lock table for the attack tests: opens the store at argv[0] with large
 * keys allowed, takes X on argv[1] resources of argv[2] bytes each, prints "held <n>" (or
 * "error <CODE>"), then holds them until stdin ends or the process is killed.
 */
import { open, TxtDbError } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir, count, bytes] = args();
const tag = Math.random().toString(36).slice(2, 10);
const db = await open(dir!, { maxKeyBytes: 65_000 });
let n = 0;
try {
  for (; n < Number(count); n++) await db.lock([`${tag}:${n}:`.padEnd(Number(bytes), "k")], "X", { timeoutMs: 10_000 });
  say(`held ${n}`);
} catch (e) {
  say(`error ${e instanceof TxtDbError ? e.code : String(e)} ${n}`);
}
for await (const _line of stdinLines()) break;
await db.close();
exit(0);
