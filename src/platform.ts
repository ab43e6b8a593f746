/**
 * Picks the adapter for the runtime this code runs on. The adapters are loaded with a
 * dynamic import so that a runtime never loads another runtime's adapter (Deno never
 * loads koffi, which would need `--allow-ffi`).
 *
 * @module
 */
import type { Platform } from "./port.ts";

type RuntimeGlobals = { Deno?: unknown; Bun?: unknown };

/** The name of the runtime this code runs on. */
export function detectRuntime(): "deno" | "bun" | "node" {
  const g = globalThis as RuntimeGlobals;
  if (g.Deno !== undefined) return "deno";
  if (g.Bun !== undefined) return "bun";
  return "node";
}

let cached: Promise<Platform> | undefined;

/**
 * The Platform for the current runtime. From source (JSR) the adapters are `.ts` files;
 * from the npm build they are `.js` files beside the bundle, so the extension follows
 * this module's own.
 */
export function defaultPlatform(): Promise<Platform> {
  cached ??= (async () => {
    const runtime = detectRuntime();
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const base = ext === ".ts" ? "../adapters/" : "./adapters/";
    const mod = (await import(`${base}${runtime}${ext}`)) as { default: Platform };
    return mod.default;
  })();
  return cached;
}
