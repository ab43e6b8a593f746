/**
 * The one harness every test file uses. node:test runs unchanged under `node --test`,
 * `deno test` and `bun test`, so a test is written once and runs on all three runtimes.
 */
import * as fs from "node:fs";
export { test, afterEach } from "node:test";
export { default as assert } from "node:assert/strict";
import { defaultPlatform, detectRuntime, FileLock, PortError } from "txtdb/internal";
import { TxtDbError } from "txtdb";
import type { Database, Platform } from "txtdb";

/** The runtime running this test file. */
export const runtime: "node" | "deno" | "bun" = detectRuntime();

/**
 * True where tests may start other processes: Node and Bun. The Deno leg runs with only
 * --allow-read and --allow-write (what txtdb needs), so it cannot spawn; Deno processes
 * take part in every multi-process test as children started from the other legs.
 */
export const canSpawn: boolean = runtime !== "deno";

/** A fresh, empty temporary directory (owner-only). */
export function tempDir(label = "t"): string {
  fs.mkdirSync("/tmp/txtdb-tests", { recursive: true, mode: 0o700 });
  return fs.mkdtempSync(`/tmp/txtdb-tests/${label}-`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads an environment variable where the runtime allows it (the Deno leg does not). */
export function envVar(name: string): string | undefined {
  try {
    return (globalThis as unknown as { process?: { env: Record<string, string | undefined> } }).process?.env[name];
  } catch {
    return undefined;
  }
}

/** Polls `probe` every `everyMs` until it returns true or `timeoutMs` passes; returns the elapsed ms or -1. */
export async function waitUntil(probe: () => boolean, timeoutMs: number, everyMs = 1): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (probe()) return performance.now() - t0;
    await sleep(everyMs);
  }
  return probe() ? performance.now() - t0 : -1;
}

/**
 * The code of the TxtDbError that `p` (or what `p()` returns) rejects with, or `ok` when it
 * resolves. Any other error is rethrown: a test expecting a code fails on a TypeError.
 */
export async function outcomeCode(p: Promise<unknown> | (() => unknown), ok = "ok"): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
    return ok;
  } catch (e) {
    if (e instanceof TxtDbError) return e.code;
    throw e;
  }
}

/** Every entry of every namespace of `db`, with versions, in order. */
export async function dumpStore(db: Database): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const ns of await db.listNamespaces()) {
    for await (const e of db.list(ns, { prefix: [] })) out.push([ns, e.key, e.value, e.version]);
  }
  return out;
}

/**
 * `real` wrapped so that opening another process's lease (a `.lease` file, not created
 * here) fails with `errno` while `failing.errno` is set: EMFILE, EACCES, EIO, as a process
 * out of descriptors or another user meets them.
 */
export function leaseOpensFailing(real: Platform): { adapter: Platform; failing: { errno: string | undefined } } {
  const failing: { errno: string | undefined } = { errno: undefined };
  const adapter = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === "open") {
        return (path: string, options?: { create?: boolean }) => {
          if (failing.errno && path.endsWith(".lease") && !options?.create) throw new PortError(failing.errno, "open", path);
          return (v as Platform["open"]).call(target, path, options as Parameters<Platform["open"]>[1]);
        };
      }
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Platform;
  return { adapter, failing };
}

/** Takes a store's writer lock through a second open file description (as another process would); returns its release. */
export async function takeWriterLock(dir: string): Promise<() => void> {
  const lock = new FileLock(await defaultPlatform(), `${dir}/writer.lock`);
  const release = await lock.acquire(true);
  return () => {
    release();
    lock.close();
  };
}

/** A full garbage collection on this runtime, or undefined where none can be asked for. */
export async function collector(): Promise<(() => Promise<void>) | undefined> {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun) return async () => bun.gc(true);
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    try {
      const v8 = await import("node:v8");
      const vm = await import("node:vm");
      v8.setFlagsFromString("--expose-gc");
      gc = vm.runInNewContext("gc") as (() => void) | undefined;
    } catch {
      return undefined;
    }
  }
  if (typeof gc !== "function") return undefined;
  const run = gc;
  return async () => {
    for (let i = 0; i < 3; i++) {
      run();
      await sleep(10); // finalizers run on a later turn
    }
  };
}
