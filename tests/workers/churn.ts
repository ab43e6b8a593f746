/**
 * A Deno Web Worker (lockfile-deleted.test.ts): deletes and makes again the file named by the
 * first message, as fast as it can, until told "stop"; then posts how many times it did.
 */
import * as fs from "node:fs";

let path: string | undefined;
let stop = false;
self.onmessage = (e: MessageEvent) => {
  if (e.data === "stop") stop = true;
  else path = e.data as string;
  if (path && !stop && e.data !== "stop") void run(path);
};

async function run(p: string): Promise<void> {
  let n = 0;
  while (!stop) {
    for (let i = 0; i < 200; i++) {
      try {
        fs.unlinkSync(p);
      } catch {
        // not there
      }
      try {
        fs.closeSync(fs.openSync(p, "wx"));
        n++;
      } catch {
        // made by the other side meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 0)); // let "stop" in
  }
  (self as unknown as { postMessage(m: unknown): void }).postMessage(n);
}
