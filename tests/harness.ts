/**
 * The one harness every test file uses. node:test runs unchanged under `node --test`,
 * `deno test` and `bun test`, so a test is written once and runs on all three runtimes.
 */
import * as fs from "node:fs";
export { test, afterEach } from "node:test";
export { default as assert } from "node:assert/strict";
import { detectRuntime } from "txtdb/internal";

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
