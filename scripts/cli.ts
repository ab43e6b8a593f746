#!/usr/bin/env node
/**
 * Moved to cli/main.ts (the command line is product code, published on npm and JSR); this
 * shim keeps the build entry (tsup.config.ts `cli`) and `deno run scripts/cli.ts` working
 * until they point at cli/main.ts.
 *
 * @module
 */
import "../cli/main.ts";
