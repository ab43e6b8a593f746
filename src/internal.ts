/**
 * Internals exposed for txtdb's own tests, tools and adapter authors. Not covered by
 * semver: the public contract is mod.ts.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./port.ts";
export * from "./lock.ts";
export * from "./liveness.ts";
export * from "./platform.ts";
