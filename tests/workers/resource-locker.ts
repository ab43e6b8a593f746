/**
 * A worker holding locks on named resources for the cross-runtime lock tests; runs on Node,
 * Deno or Bun. Opens the store at argv[0], prints "ready <runtime> <pid>", then obeys stdin:
 *
 *   lock <id> <mode> <resource JSON> [timeoutMs]  prints "granted <id> <waitedMs>" or "error <id> <CODE> <details JSON>"
 *   release <id>                                  prints "released <id>"
 *   locks                                         prints "locks <db.locks() as JSON>"
 *   load <iterations> <seed> <checkDir>           random load in a global order (see below); prints "load <JSON>"
 *
 * The load: each iteration picks a few of six resources (two groups "a" and "b" with
 * children, and "c"), locks them in key order with random modes (the group first, in the
 * intention mode its children need, so that no conversion breaks the order), holds them
 * for a moment and releases. While it holds X on a resource it writes its token into that
 * resource's check file and reads it back before leaving; while it holds S, it checks that
 * nobody wrote a token: a broken mutual exclusion shows as a "violation".
 */
import { defaultPlatform, open, TxtDbError } from "txtdb";
import type { Key, LockMode, ResourceLock } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir] = args();
const platform = await defaultPlatform();
const db = await open(dir!, { lockTimeoutMs: 60_000 });
say(`ready ${platform.runtime} ${platform.pid}`);
const held = new Map<string, ResourceLock>();
const t0 = () => performance.now();

function errorLine(id: string, e: unknown): string {
  if (e instanceof TxtDbError) return `error ${id} ${e.code} ${JSON.stringify(e.details ?? {}, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`;
  return `error ${id} OTHER ${JSON.stringify(String(e))}`;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function load(iterations: number, seed: number, checkDir: string): Promise<void> {
  const random = rng(seed);
  const token = `${platform.runtime}:${platform.pid}`;
  const files = new Map<string, ReturnType<typeof platform.open>>();
  const file = (name: string) => {
    let f = files.get(name);
    if (!f) files.set(name, (f = platform.open(`${checkDir}/${name}`, { create: true })));
    return f;
  };
  const readToken = (name: string) => {
    const b = new Uint8Array(64);
    return dec.decode(b.subarray(0, file(name).read(b, 0))).trim();
  };
  const writeToken = (name: string, text: string) => {
    const f = file(name);
    f.truncate(0);
    f.write(enc.encode(text), 0);
  };
  let violations = 0;
  let errors = 0;
  let locksTaken = 0;
  const children: Record<string, string[]> = { a: ["1", "2"], b: ["1"] };
  for (let i = 0; i < iterations; i++) {
    const plan: { key: Key; mode: LockMode; name: string }[] = [];
    for (const group of ["a", "b", "c"]) {
      if (random() < 0.4) continue;
      const kids = (children[group] ?? []).filter(() => random() < 0.6);
      if (kids.length === 0) {
        plan.push({ key: [group], mode: random() < 0.5 ? "S" : "X", name: group });
        continue;
      }
      const modes = kids.map(() => (random() < 0.5 ? "S" : "X") as LockMode);
      plan.push({ key: [group], mode: modes.includes("X") ? "IX" : "IS", name: group });
      kids.forEach((k, j) => plan.push({ key: [group, k], mode: modes[j]!, name: `${group}.${k}` }));
    }
    const locks: ResourceLock[] = [];
    try {
      for (const p of plan) {
        locks.push(await db.lock(p.key, p.mode, { timeoutMs: 60_000 }));
        locksTaken++;
      }
      for (const p of plan) {
        if (p.mode === "X") {
          if (readToken(p.name) !== "") violations++;
          writeToken(p.name, token);
        } else if (p.mode === "S" && readToken(p.name) !== "") violations++;
      }
      await new Promise((r) => setTimeout(r, random() < 0.5 ? 0 : 1));
      for (const p of plan) {
        if (p.mode === "X") {
          if (readToken(p.name) !== token) violations++;
          writeToken(p.name, "");
        } else if (p.mode === "S" && readToken(p.name) !== "") violations++;
      }
    } catch (e) {
      errors++;
      say(`loaderror ${errorLine(String(i), e)} ${JSON.stringify(e instanceof Error ? e.message : String(e))}`);
    } finally {
      for (const l of locks.reverse()) l.release();
    }
  }
  for (const f of files.values()) f.close();
  const s = db.stats();
  say(`load ${JSON.stringify({ iterations, violations, errors, locksTaken, waits: s.resourceLockWaits, deadlocks: s.deadlocks })}`);
}

for await (const line of stdinLines()) {
  const [cmd, id, ...rest] = line.trim().split(" ");
  if (cmd === "lock") {
    const [mode, resourceJson, timeout] = rest;
    const start = t0();
    db.lock(JSON.parse(resourceJson!) as Key, mode as LockMode, timeout === undefined ? {} : { timeoutMs: Number(timeout) }).then(
      (l) => {
        held.set(id!, l);
        say(`granted ${id} ${(t0() - start).toFixed(3)}`);
      },
      (e) => say(errorLine(id!, e)),
    );
  } else if (cmd === "release") {
    held.get(id!)?.release();
    held.delete(id!);
    say(`released ${id}`);
  } else if (cmd === "locks") {
    say(`locks ${JSON.stringify(db.locks())}`);
  } else if (cmd === "load") {
    await load(Number(id), Number(rest[0]), rest[1]!);
  } else if (cmd === "exit") {
    break;
  }
}
await db.close();
exit(0);
