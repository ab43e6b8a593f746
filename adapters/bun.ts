/**
 * The Bun adapter: Bun's node:fs for files, and libc flock(2) through bun:ffi, the same
 * kernel lock the Node and Deno adapters take, so all three runtimes exclude each other.
 *
 * `bun:ffi` is loaded with `import.meta.require` so that other runtimes' type checkers
 * (deno check) never have to resolve a `bun:` specifier.
 *
 * @example
 * ```ts
 * import { open } from "txtdb";
 * import { bunPlatform } from "txtdb/adapters/bun";
 * const db = await open("./data", { adapter: bunPlatform });
 * ```
 * @module
 */
import { makeNodeFsPlatform } from "./nodefs.ts";
import type { Platform } from "../src/port.ts";

interface BunFfi {
  dlopen(
    name: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset?: number): number };
}

const ffi = (import.meta as unknown as { require(id: string): BunFfi }).require("bun:ffi");
const isDarwin = (globalThis as unknown as { process: { platform: string } }).process.platform === "darwin";
const lib = ffi.dlopen(isDarwin ? "libc.dylib" : "libc.so.6", {
  flock: { args: ["i32", "i32"], returns: "i32" },
  [isDarwin ? "__error" : "__errno_location"]: { args: [], returns: "ptr" },
});
const errnoLocation = lib.symbols[isDarwin ? "__error" : "__errno_location"]!;
const flockNative = lib.symbols.flock!;

/** The Platform for Bun. */
export const bunPlatform: Platform = makeNodeFsPlatform(
  "bun",
  (fd, op) => (flockNative(fd, op) === 0 ? 0 : ffi.read.i32(errnoLocation())),
  (globalThis as unknown as { process: { pid: number } }).process.pid,
);

export default bunPlatform;
