/**
 * Picks the adapter for the runtime this code runs on. The adapter is loaded with one
 * literal dynamic import of the subpath import `#platform`, which each way of running
 * txtdb resolves to exactly one adapter, so a runtime never loads another runtime's
 * adapter (Deno never loads koffi, which would need `--allow-ffi`; Node never sees
 * `bun:ffi`) and bundlers and `deno publish` see which file is imported:
 *
 * | who runs this file | `#platform` resolves through | to |
 * |---|---|---|
 * | Deno, from source or JSR | deno.json `imports` | `adapters/deno.ts` |
 * | Bun (or Node with a TypeScript loader) from this repository's source | package.json `imports`, conditions `deno`/`bun`/`default` | `adapters/<runtime>.ts` |
 * | the npm build (`dist/`), run or bundled by Node, Bun, Deno, esbuild, `bun build` | tsup rewrites it to `#platform-dist`; package.json `imports`, same conditions | `dist/adapters/<runtime>.js` |
 *
 * The build gets its own name because the source mapping points at `.ts` files the npm
 * package does not ship (and a source core must never be paired with a built adapter:
 * the two would hold different `PortError` classes).
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

/** The Platform for the current runtime: the adapter `open()` uses unless given one. */
export function defaultPlatform(): Promise<Platform> {
  cached ??= (async () => {
    const mod = (await import("#platform")) as { default: Platform };
    return mod.default;
  })();
  return cached;
}
