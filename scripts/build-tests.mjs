// Builds the test files and workers for the Node leg with esbuild: txtdb itself stays
// external, so Node tests run against the tsup-built dist/ exactly as npm users get it.
import { build } from "esbuild";
import { readdirSync, rmSync } from "node:fs";

rmSync(".build-tests", { recursive: true, force: true });
const entries = [
  ...readdirSync("tests").filter((f) => f.endsWith(".test.ts")).map((f) => `tests/${f}`),
  ...readdirSync("tests/workers").filter((f) => f.endsWith(".ts")).map((f) => `tests/workers/${f}`),
];
await build({
  entryPoints: entries,
  outdir: ".build-tests",
  outbase: "tests",
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  logLevel: "warning",
});
