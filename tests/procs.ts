/**
 * Starting worker processes of any runtime from the Node and Bun legs of the tests.
 * Node workers run the esbuild output (.build-tests/), Deno workers run the TypeScript
 * source with exactly --allow-read --allow-write, Bun workers run the TypeScript source.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";

export type Runtime = "node" | "deno" | "bun";
export const RUNTIMES: readonly Runtime[] = ["node", "deno", "bun"];

const root = process.cwd();
const nodeBinary = process.env.TXTDB_NODE ?? "node";

/**
 * The command line that runs `tests/workers/<name>.ts` on `runtime`; `denoFlags` adds
 * permissions a Deno worker needs beyond files (--allow-net for the etcd workers).
 */
export function workerCommand(runtime: Runtime, name: string, denoFlags: readonly string[] = []): [string, string[]] {
  switch (runtime) {
    case "node":
      // Not process.execPath: under the Bun leg that is bun itself.
      return [nodeBinary, [path.join(root, ".build-tests/workers", `${name}.js`)]];
    case "deno":
      return [path.join(root, "node_modules/.bin/deno"), ["run", "--quiet", "--allow-read", "--allow-write", ...denoFlags, path.join(root, "tests/workers", `${name}.ts`)]];
    case "bun":
      return [path.join(root, "node_modules/.bin/bun"), [path.join(root, "tests/workers", `${name}.ts`)]];
  }
}

/** A running worker whose stdout is read line by line. */
export class Worker {
  readonly child: ChildProcess;
  readonly runtime: Runtime;
  readonly lines: string[] = [];
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  #waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  #buffer = "";

  constructor(runtime: Runtime, name: string, args: string[], denoFlags: readonly string[] = []) {
    this.runtime = runtime;
    const [cmd, base] = workerCommand(runtime, name, denoFlags);
    this.child = spawn(cmd, [...base, ...args], { cwd: root, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      this.#buffer += chunk;
      let i: number;
      while ((i = this.#buffer.indexOf("\n")) >= 0) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 1);
        this.lines.push(line);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.match(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      if (this.stderr.length < 20_000) this.stderr += chunk;
    });
    // "close", not "exit": "exit" may come before the last of stdout is read, and a worker
    // that printed "done" and exited read as one that exited before it (the etcd leg failed
    // so once under load: "exited (0) before \"done \"; stdout: ready").
    this.exited = new Promise((resolve) => this.child.on("close", (code, signal) => resolve({ code, signal })));
  }

  /** Waits for a stdout line starting with `prefix`. */
  waitFor(prefix: string, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find((l) => l.startsWith(prefix));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.runtime} worker did not print "${prefix}" within ${timeoutMs} ms; stdout: ${this.lines.join(" | ")}; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        const again = this.lines.find((l) => l.startsWith(prefix));
        if (again !== undefined) resolve(again);
        else reject(new Error(`${this.runtime} worker exited (${code ?? signal}) before "${prefix}"; stdout: ${this.lines.join(" | ")}; stderr: ${this.stderr}`));
      });
      this.#waiters.push({ match: (l) => l.startsWith(prefix), resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + "\n");
  }

  kill9(): void {
    this.child.kill("SIGKILL");
  }

  /** Ends the worker: closes stdin (workers exit on EOF) and waits. */
  async finish(): Promise<{ code: number | null; signal: string | null }> {
    this.child.stdin!.end();
    return await this.exited;
  }
}

const live = new Set<Worker>();

/** Starts a worker; it is SIGKILLed by `killAllWorkers()` if a test ends without finishing it. */
export function startWorker(runtime: Runtime, name: string, args: string[], options: { denoFlags?: readonly string[] } = {}): Worker {
  const w = new Worker(runtime, name, args, options.denoFlags);
  live.add(w);
  void w.exited.then(() => live.delete(w));
  return w;
}

/** Kills every worker still running, so a failed assertion never leaves the run hanging. */
export function killAllWorkers(): void {
  for (const w of live) w.kill9();
  live.clear();
}
