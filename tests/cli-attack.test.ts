/**
 * The command line as a careless user drives it: output into a pipe whose reader stops
 * early (`txtdb export ... | head -1`), backups into the store itself by another spelling.
 * Every failure is a short message (or, for a closed stdout, silence) with a non-zero exit,
 * never a stack trace.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

if (canSpawn) {
  const fs = await import("node:fs");
  const { spawn } = await import("node:child_process");
  const { CLI: cli, runCli: run } = await import("./clirun.ts");
  type Rt = keyof typeof cli;
  const RTS: Rt[] = ["node", "deno", "bun"];

  /** Runs `txtdb <args>`, reads stdout until the first line, then closes the pipe; resolves with the exit code and stderr. */
  function readFirstLineThenClose(rt: Rt, args: string[]): Promise<{ code: number | null; signal: string | null; first: string; err: string }> {
    const [cmd, base] = cli[rt];
    const child = spawn(cmd, [...base, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    let first = "";
    let buffered = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => (err += s));
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => {
      buffered += s;
      const nl = buffered.indexOf("\n");
      if (nl >= 0 && first === "") {
        first = buffered.slice(0, nl);
        child.stdout!.destroy(); // as `head -1` does: the reader is gone
      }
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    return new Promise((resolve) => {
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, first, err });
      });
    });
  }

  test(`[${runtime}] txtdb export / list into a pipe closed after the first line (| head -1): no stack trace, a non-zero exit, on every runtime`, async () => {
    const dir = `${tempDir("cli-epipe")}/store`;
    const db = await open(dir, { namespaces: ["ns"] });
    // Far more than a pipe buffers (64 KiB), so the writer meets the closed pipe.
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.set("ns", ["k", i], "x".repeat(100));
    });
    await db.close();
    for (const rt of RTS) {
      for (const args of [["export", dir], ["list", dir, "ns"]]) {
        const r = await readFirstLineThenClose(rt, args);
        const what = `${rt} txtdb ${args[0]}`;
        assert.match(r.first, /"k",0/, `${what}: the first line arrived`);
        assert.equal(r.signal, null, `${what}: ended by itself (not killed after 60 s)`);
        assert.doesNotMatch(r.err, /\n\s+at |Unhandled|internal error|EPIPE|BrokenPipe/, `${what}: no stack trace; stderr: ${r.err}`);
        assert.equal(r.code, 2, `${what}: the output was cut short, so not exit 0; stderr: ${r.err}`);
      }
    }
  });

  test(`[${runtime}] txtdb backup into the store through a symlink or a ../ spelling is refused with exit 2; the store is unchanged`, () => {
    const base = tempDir("cli-backup-atk");
    const dir = `${base}/store`;
    assert.equal(run("node", ["set", dir, "ns", "k", "1"]).code, 0);
    fs.symlinkSync(dir, `${base}/alias`);
    fs.mkdirSync(`${base}/other`);
    const before = fs.readdirSync(dir).sort();
    for (const [i, rt] of RTS.entries()) {
      const dest = i === 1 ? `${base}/other/../store/copy-${rt}` : `${base}/alias/copy-${rt}`;
      const r = run(rt, ["backup", dir, dest]);
      assert.equal(r.code, 2, `${rt}: ${r.err}`);
      assert.match(r.err, /^txtdb: INVALID_ARGUMENT: .*inside/, r.err);
      assert.doesNotMatch(r.err, /\n\s+at /);
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), before);
  });
}
