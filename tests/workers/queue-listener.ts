/**
 * A queue listener for the cross-runtime queue tests; runs on Node, Deno or Bun.
 * Usage: queue-listener.ts <dir> <queue> <concurrency> <markerDir> [visibilityTimeoutMs]
 * Prints "ready <runtime> <pid>", then listens until stdin closes (then stops the listener,
 * closes the store and prints "stopped"). Per message (value `{ i, holdMs?, failUntil?, notBefore? }`):
 *
 *   start <i> <attempt> <pid>            the handler began
 *   collision <i> <pid in the marker>    another handler's marker for message i was there
 *   early <i> <nowMs> <notBefore>        the handler began before the message's delay passed
 *   done <i> <attempt> <pid>             the handler finished (it throws, after "fail", while attempt < failUntil)
 *
 * The marker is the clock-free check of "one handler at a time": a handler creates
 * `<markerDir>/<i>` exclusively (O_CREAT|O_EXCL) holding its pid, and removes it when it
 * ends; finding it there means another handler runs the message now, unless that handler's
 * process died (the test knows which ones it killed).
 */
import { defaultPlatform, open } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir, queue, concurrency, markerDir, visibility] = args();
const platform = await defaultPlatform();
const db = await open(dir!);
const stop = new AbortController();
const enc = new TextEncoder();
const dec = new TextDecoder();
const pid = platform.pid;

function takeMarker(i: number): void {
  const path = `${markerDir}/${i}`;
  try {
    const h = platform.open(path, { create: true, exclusive: true });
    h.write(enc.encode(String(pid)), 0);
    h.close();
  } catch {
    const h = platform.open(path, {});
    const buf = new Uint8Array(32);
    const n = h.read(buf, 0);
    say(`collision ${i} ${dec.decode(buf.subarray(0, n)).trim() || "?"}`);
    h.truncate(0);
    h.write(enc.encode(String(pid)), 0);
    h.close();
  }
}

const listening = db.listenQueue<{ i: number; holdMs?: number; failUntil?: number; notBefore?: number }>(queue!, async (v, msg) => {
  const now = Date.now();
  if (v.notBefore !== undefined && now < v.notBefore) say(`early ${v.i} ${now} ${v.notBefore}`);
  takeMarker(v.i);
  say(`start ${v.i} ${msg.attempt} ${pid}`);
  await new Promise((r) => setTimeout(r, v.holdMs ?? 0));
  platform.unlink(`${markerDir}/${v.i}`);
  if (v.failUntil !== undefined && msg.attempt < v.failUntil) {
    say(`fail ${v.i} ${msg.attempt} ${pid}`);
    throw new Error(`planned failure of ${v.i}`);
  }
  say(`done ${v.i} ${msg.attempt} ${pid}`);
}, { concurrency: Number(concurrency), signal: stop.signal, retryDelayMs: 20, retryDelayMaxMs: 200, maxAttempts: 10, ...(visibility ? { visibilityTimeoutMs: Number(visibility) } : {}) });
say(`ready ${platform.runtime} ${pid}`);

for await (const _line of stdinLines()) {
  // no commands: stdin's end stops the listener
}
stop.abort();
await listening;
await db.close();
say("stopped");
exit(0);
