/**
 * A process that opens a store and then does nothing with it (a helper waiting for work):
 * `idler <dir> [readonly]`. Prints "ready" once open; closes and exits when stdin closes.
 */
import { open } from "txtdb";
import { args, say, stdinLines } from "./io.ts";

const [dir, mode] = args();
const db = await open(dir!, { readOnly: mode === "readonly" });
say("ready");
for await (const _ of stdinLines()) { /* wait for EOF */ }
await db.close();
