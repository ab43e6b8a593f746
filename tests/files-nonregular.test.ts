/**
 * Non-regular files where store files belong (issue 9, defect 9): a FIFO, socket or
 * directory put in place of MANIFEST, a segment, the frontier, writer.lock or a lease.
 * Opening a FIFO for reading waits for a writer forever, synchronously, so `open()` and
 * `stats()` hung every process of every runtime. Now each gets a clear error (or carries
 * on, where the file is not needed) at once. Run from the Node and Bun legs (they can make
 * FIFOs and sockets and start processes), with opening processes of all three runtimes.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open } from "txtdb";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  const { spawnSync } = await import("node:child_process");
  const net = await import("node:net");
  afterEach(() => killAllWorkers());

  function mkfifo(path: string): void {
    fs.rmSync(path, { force: true, recursive: true });
    const r = spawnSync("mkfifo", ["-m", "600", path]);
    assert.equal(r.status, 0, `mkfifo ${path}: ${r.stderr}`);
  }

  async function mksocket(path: string): Promise<{ close(): void }> {
    fs.rmSync(path, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    return { close: () => server.close() };
  }

  /** Cases: which store file is replaced by what, and whether opening needs the file. */
  const cases: { name: string; file: string; plant: "fifo" | "socket" | "dir" }[] = [
    { name: "manifest-fifo", file: "MANIFEST", plant: "fifo" },
    { name: "segment-fifo", file: "seg-0000000001.log", plant: "fifo" },
    { name: "segment-dir", file: "seg-0000000001.log", plant: "dir" },
    { name: "frontier-fifo", file: "frontier", plant: "fifo" },
    { name: "frontier-socket", file: "frontier", plant: "socket" },
    { name: "writerlock-fifo", file: "writer.lock", plant: "fifo" },
    { name: "lease-fifo", file: "leases/0123456789abcdef.lease", plant: "fifo" },
  ];

  for (const rt of RUNTIMES) {
    test(`[${runtime}] open() and stats() on ${rt} refuse a FIFO, socket or directory planted as a store file at once, naming it`, async () => {
      const closers: { close(): void }[] = [];
      const pairs: string[] = [];
      for (const c of cases) {
        const dir = tempDir(`nonreg-${c.name}`);
        const db = await open(dir, { namespaces: ["ns"] });
        await db.set("ns", "k", 1);
        await db.close();
        const path = `${dir}/${c.file}`;
        if (c.plant === "fifo") mkfifo(path);
        else if (c.plant === "socket") closers.push(await mksocket(path));
        else {
          fs.rmSync(path, { force: true });
          fs.mkdirSync(path);
        }
        pairs.push(dir, c.name);
      }
      try {
        const w = startWorker(rt, "files-probe", ["openstats", ...pairs]);
        await w.waitFor("ready", 20_000);
        for (const c of cases) {
          const line = await w.waitFor(`result ${c.name} `, 10_000).catch((e: Error) => {
            throw new Error(`${rt}: open()/stats() with ${c.file} replaced by a ${c.plant} did not return within 10 s (hung): ${e.message}`);
          });
          const rest = line.slice(`result ${c.name} `.length);
          if (c.file.startsWith("leases/") && rest === "ok") continue; // a stranger's lease is not needed to open
          const m = /^error (\w+) (.*)$/.exec(rest);
          assert.ok(m, `${rt}, ${c.name}: expected a clear error, got "${rest}"`);
          assert.ok(m[1] === "CORRUPTION" || m[1] === "IO", `${rt}, ${c.name}: code ${m[1]}: ${m[2]}`);
          const base = c.file.split("/").pop()!;
          assert.ok(m[2]!.includes(base), `${rt}, ${c.name}: the message names the file: ${m[2]}`);
          assert.match(m[2]!, /regular file/, `${rt}, ${c.name}: the message says what is wrong: ${m[2]}`);
        }
        const exit = await w.finish();
        assert.equal(exit.code, 0, `${rt} worker: ${w.stderr}`);
      } finally {
        for (const c of closers) c.close();
      }
    });
  }
}
