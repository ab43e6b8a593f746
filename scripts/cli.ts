#!/usr/bin/env node
/**
 * The `txtdb` command line. Subcommands arrive with the engine; this stub reports the
 * version and the runtime so the entry point exists in every build.
 *
 * @module
 */
import { detectRuntime } from "../src/platform.ts";

const [command] = (globalThis as unknown as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
if (command === undefined || command === "--help" || command === "help") {
  console.log(`txtdb 0.1.0 on ${detectRuntime()}\nusage: txtdb <command> <dir> [...]`);
} else {
  console.error(`txtdb: unknown command "${command}"; run \`txtdb help\``);
  (globalThis as unknown as { process: { exitCode: number } }).process.exitCode = 2;
}
