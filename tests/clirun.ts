/**
 * The command line as users run it, for the CLI tests: `node dist/cli.js`, `deno run
 * cli/main.ts` with only --allow-read --allow-write, `bun cli/main.ts`. Import it only on
 * legs that can spawn (`canSpawn`).
 */
import { spawnSync } from "node:child_process";

/** Command and leading arguments per runtime. */
export const CLI = {
  node: ["node", ["dist/cli.js"]],
  deno: ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "cli/main.ts"]],
  bun: ["node_modules/.bin/bun", ["cli/main.ts"]],
} as const;

export type CliRuntime = keyof typeof CLI;

/** Runs `txtdb <args>` on `rt` to completion (60 s at most), with `input` on stdin. */
export function runCli(rt: CliRuntime, args: string[], input?: string): { code: number | null; out: string; err: string } {
  const [cmd, base] = CLI[rt];
  const r = spawnSync(cmd, [...base, ...args], { encoding: "utf8", input, timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
