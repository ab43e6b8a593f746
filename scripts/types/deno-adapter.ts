// The declaration source of `txtdb/adapters/deno` in the npm build (see tsup.config.ts):
// the adapter's own source needs Deno's lib to type-check, which the declaration build
// lacks, and its one export is a Platform. JSR users get the source and its real types.
/**
 * The Deno adapter, for Deno running the npm package (`npm:txtdb`); `open()` picks it on
 * Deno by itself.
 *
 * @module
 */
import type { Platform } from "../../src/port.ts";

/** The Platform for Deno. */
export declare const denoPlatform: Platform;
export default denoPlatform;
