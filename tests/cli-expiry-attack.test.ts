/**
 * `txtdb import` fed what careless users and attackers feed it: bytes that are not UTF-8,
 * one enormous line, numbers JSON cannot keep, reserved namespace names, and a large import
 * of expiring keys. Each bad input is refused with `INVALID_ARGUMENT: line N: …`, exit 2,
 * and nothing written (not even the directory); good input keeps exactly what it says.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { linesOf } from "../cli/stdin.ts";
import { fitsOneTransaction, readImport, TX_BYTES_MAX } from "../cli/import.ts";

const R = `[${runtime}]`;
/** TxtDbError by code and message (the CLI's errors come from the source, not the build). */
const fails = (code: string, message: RegExp) => (e: unknown) => (e as { code?: string }).code === code && message.test((e as Error).message);
const bytesOf = (s: string) => new TextEncoder().encode(s);
async function collect(chunks: (Uint8Array | string)[], max?: number): Promise<string[]> {
  async function* source() {
    yield* chunks;
  }
  const out: string[] = [];
  for await (const l of linesOf(source(), max)) out.push(l);
  return out;
}
async function* linesFrom(text: string) {
  yield* text.split("\n");
}

test(`${R} import's line reader refuses bytes that are not UTF-8, and a character cut short at the end, naming the line (no U+FFFD written as data)`, async () => {
  const bad = new Uint8Array([...bytesOf('{"ns":"a","key":"k","value":"'), 0xff, 0xfe, ...bytesOf('"}\n')]);
  await assert.rejects(collect([bytesOf('{"ns":"a","key":"j","value":1}\n'), bad]), fails("INVALID_ARGUMENT", /^line 2: not valid UTF-8/));
  // A 3-byte character split across two chunks is whole; cut short at the end, it is refused.
  const euro = bytesOf("€");
  assert.deepEqual(await collect([new Uint8Array([0x61, euro[0]!]), new Uint8Array([euro[1]!, euro[2]!, 0x0a])]), ["a€"]);
  await assert.rejects(collect([bytesOf("ok\n"), new Uint8Array([euro[0]!, euro[1]!])]), fails("INVALID_ARGUMENT", /^line 2: not valid UTF-8 \(the input ends inside a character\)/));
  // A leading BOM is dropped; CRLF leaves a "\r" that JSON.parse takes as whitespace.
  assert.deepEqual(await collect([new Uint8Array([0xef, 0xbb, 0xbf, ...bytesOf("x\r\ny")])]), ["x\r", "y"]);
});

test(`${R} import's line reader joins a 32 MiB line from 8 KiB chunks in linear time, and refuses a line past its bound naming it`, async () => {
  const chunk = bytesOf("x".repeat(8192));
  const n = 4096; // 32 MiB: appending and searching the whole line per chunk took minutes
  const chunks: Uint8Array[] = Array.from({ length: n }, () => chunk);
  chunks.push(bytesOf("\nnext"));
  const t0 = performance.now();
  const lines = await collect(chunks);
  const ms = performance.now() - t0;
  assert.deepEqual(lines.map((l) => l.length), [n * 8192, 4]);
  assert.ok(ms < 10_000, `took ${Math.round(ms)} ms`);
  await assert.rejects(collect(["short\n", "a".repeat(600), "a".repeat(600), "\n"], 1000), fails("INVALID_ARGUMENT", /^line 2: longer than 1000 characters/));
});

test(`${R} readImport refuses a number JSON.parse would change (an integer past 2^53 rounded, an overflow to Infinity), naming the line; what export writes passes`, async () => {
  for (const [num, why] of [["12345678901234567890", /cannot be kept exactly.*\{"\$bigint":"12345678901234567890"\}/], ["-1e400", /too large.*-Infinity/], ["9007199254740993", /cannot be kept exactly/]] as const) {
    const text = `{"ns":"a","key":"k","value":1}\n{"ns":"a","key":"j","value":{"n":[${num}]}}\n`;
    await assert.rejects(readImport(linesFrom(text)), (e: unknown) => fails("INVALID_ARGUMENT", /^line 2: the number /)(e) && why.test((e as Error).message), num);
  }
  await assert.rejects(readImport(linesFrom(`{"ns":"a","key":12345678901234567891,"value":1}`)), fails("INVALID_ARGUMENT", /^line 1: the number 12345678901234567891/));
  // Floats as JSON.stringify writes them (2^60 as 1152921504606847000, 1e+21, a long fraction), 2^60 in full digits, and digits in strings, are kept.
  const good = JSON.stringify({ ns: "a", key: ["k", 2 ** 60], value: [1e21, 2 ** 60, 0.1 + 0.2, 5e-324, "12345678901234567890", 1.7976931348623157e308] });
  const input = await readImport(linesFrom(good + "\n" + good.replace('"k"', '"\\"12345678901234567890\\""')));
  assert.deepEqual(input.entries[0]!.value, [1e21, 2 ** 60, 0.1 + 0.2, 5e-324, "12345678901234567890", 1.7976931348623157e308]);
  assert.equal(input.entries.length, 2);
  assert.deepEqual((await readImport(linesFrom(`{"ns":"a","key":1,"value":1152921504606846976}`))).entries[0]!.value, 2 ** 60);
});

test(`${R} readImport refuses a reserved or ill-formed namespace name at its line, before any store is opened`, async () => {
  const ok = `{"ns":"a","key":"k","value":1}\n`;
  await assert.rejects(readImport(linesFrom(ok + `{"ns":"\\u0000txtdb.queues","key":"k","value":1}`)), fails("INVALID_ARGUMENT", /^line 2: Namespace name .* is reserved/));
  await assert.rejects(readImport(linesFrom(ok + `{"ns":"a\\ud800","key":"k","value":1}`)), fails("INVALID_ARGUMENT", /^line 2: Namespace name .* lone surrogate/));
});

test(`${R} import counts an expiring value's envelope toward one transaction's bytes: input that fits only without it goes in batches, not into a transaction that fails with LIMIT`, async () => {
  const at = Date.now() + 3_600_000;
  const text = (len: number, expiring: boolean) =>
    Array.from({ length: 5 }, (_, i) => `{"ns":"n","key":"k${i}","value":"${"x".repeat(len)}"${expiring ? `,"expiresAtMs":${at}` : ""}}`).join("\n");
  // Five values whose keys and values come to 30 bytes under the limit; their envelopes (13 bytes each) pass it.
  const guess = Math.floor(TX_BYTES_MAX / 5) - 16;
  const len = guess + Math.floor((TX_BYTES_MAX - 30 - (await readImport(linesFrom(text(guess, false)))).bytes) / 5);
  const plain = await readImport(linesFrom(text(len, false)));
  assert.ok(plain.bytes <= TX_BYTES_MAX && plain.bytes + 65 > TX_BYTES_MAX, String(plain.bytes));
  assert.equal(fitsOneTransaction(plain), true);
  const expiring = await readImport(linesFrom(text(len, true)));
  assert.equal(expiring.bytes, plain.bytes + 5 * 13);
  assert.equal(fitsOneTransaction(expiring), false, "sent to one transaction, it fails with LIMIT (maxTxBytes)");
});

if (canSpawn) {
  const fs = await import("node:fs");
  const { spawnSync } = await import("node:child_process");
  const { CLI: cli, runCli: run } = await import("./clirun.ts");
  type Rt = keyof typeof cli;
  const RTS: Rt[] = ["node", "deno", "bun"];
  /** `txtdb <args>` with raw bytes on stdin. */
  const runBytes = (rt: Rt, args: string[], input: Uint8Array) => {
    const [cmd, base] = cli[rt];
    const r = spawnSync(cmd, [...base, ...args], { encoding: "utf8", input, timeout: 60_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const userError = (r: { code: number | null; err: string }, code: string, message: RegExp) => {
    assert.equal(r.code, 2, `exit code; stderr: ${r.err}`);
    assert.match(r.err, new RegExp(`^txtdb: ${code}: `), r.err);
    assert.match(r.err, message);
    assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
  };

  test(`[${runtime}] txtdb import of bytes that are not UTF-8, or of a reserved namespace, fails with the line number on every runtime and creates nothing`, () => {
    const bad = new Uint8Array([...bytesOf('{"ns":"a","key":"k","value":1}\n{"ns":"a","key":"j","value":"'), 0xc3, 0x28, ...bytesOf('"}\n')]);
    for (const rt of RTS) {
      const dir = tempDir("cli-utf8") + "/d";
      userError(runBytes(rt, ["import", dir], bad), "INVALID_ARGUMENT", /line 2: not valid UTF-8/);
      assert.equal(fs.existsSync(dir), false, `${rt}: nothing written, not even the directory`);
      const reserved = tempDir("cli-reserved") + "/d";
      userError(run(rt, ["import", reserved], `{"ns":"a","key":"k","value":1}\n{"ns":"\\u0000txtdb.queues","key":"k","value":1}\n`), "INVALID_ARGUMENT", /line 2: Namespace name .* is reserved/);
      assert.equal(fs.existsSync(reserved), false, `${rt}: nothing written for a reserved namespace`);
    }
  });

  test(`[${runtime}] txtdb export read slowly while its keys expire: no expiring key is written without its expiresAtMs (which import would make a key that never expires)`, async () => {
    const { open } = await import("txtdb");
    const { spawn } = await import("node:child_process");
    for (const rt of ["node", "deno"] as const) { // Bun's stdout buffers without back-pressure, so nothing waits there
      const dir = tempDir("cli-export-expiring") + "/s";
      const db = await open(dir, { namespaces: ["n"] });
      const expireIn = 2_500;
      await db.transaction((tx) => {
        for (let i = 0; i < 2000; i++) tx.set("n", ["k", i], { i, pad: "x".repeat(200) }, ...(i < 100 ? [] : [{ expireIn }]));
      });
      const expiresAt = Date.now() + expireIn;
      await db.close();
      const [cmd, base] = cli[rt];
      const child = spawn(cmd, [...base, "export", dir], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (t: string) => (err += t));
      child.stdout!.pause(); // a reader that stops until the keys have expired: the pipe fills, the export waits
      const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
      await new Promise((r) => setTimeout(r, expiresAt - Date.now() + 300));
      child.stdout!.setEncoding("utf8");
      child.stdout!.on("data", (t: string) => (out += t));
      child.stdout!.resume();
      assert.equal(await closed, 0, err);
      const lines = out.trim().split("\n").map((l) => JSON.parse(l) as { key: [string, number]; expiresAtMs?: number });
      const immortal = lines.filter((l) => l.key[1] >= 100 && l.expiresAtMs === undefined).map((l) => l.key[1]);
      assert.deepEqual(immortal, [], `${rt}: expiring keys exported without expiresAtMs`);
      assert.equal(lines.filter((l) => l.key[1] < 100).length, 100, `${rt}: every key that does not expire is exported`);
    }
  });

  test(`[${runtime}] two batched imports of different input run at once into one store: one wins, the other stops writing nothing, naming the other; never a mixture`, async () => {
    const { spawn } = await import("node:child_process");
    const n = 60_000; // 120 000 lines: past one transaction's 100 000 entries, so written in batches of 10 000
    const make = (sign: number) => {
      let s = "";
      for (let i = 0; i < n * 2; i++) s += `{"ns":"n","key":["k",${i}],"value":${sign * (i + 1)}}\n`;
      return s;
    };
    const inputs = [make(1), make(-1)];
    for (let round = 0; round < 4; round++) { // a race: more rounds, more chances the two overlap
      const dir = tempDir("cli-import-race") + "/d";
      const runs = (["node", "node"] as const).map((rt, i) => {
        const [cmd, base] = cli[rt];
        const child = spawn(cmd, [...base, "import", dir], { stdio: ["pipe", "pipe", "pipe"] });
        let err = "";
        child.stderr!.setEncoding("utf8");
        child.stderr!.on("data", (t: string) => (err += t));
        child.stdin!.end(inputs[(i + round) % 2]);
        return new Promise<{ code: number | null; err: string }>((resolve) => child.on("close", (code) => resolve({ code, err })));
      });
      const results = await Promise.all(runs);
      for (const r of results) {
        if (r.code === 0) continue;
        assert.equal(r.code, 2, r.err);
        // Refused at the start (the other's marker was there already) or at its first batch.
        assert.match(r.err, /^txtdb: INVALID_ARGUMENT: (Another import is writing this store at the same time .*this run wrote nothing|The store holds an unfinished import)/, r.err);
      }
      assert.ok(results.some((r) => r.code === 0), results.map((r) => r.err).join("\n"));
      const exported = run("node", ["export", dir]);
      assert.equal(exported.code, 0, exported.err);
      const values = exported.out.trim().split("\n").map((l) => (JSON.parse(l) as { value: number }).value);
      assert.equal(values.length, n * 2);
      const positive = values.filter((v) => v > 0).length;
      assert.ok(positive === 0 || positive === n * 2, `a mixture of both inputs: ${positive} of ${n * 2} lines from the first`);
      assert.deepEqual(run("node", ["namespaces", dir]).out.trim().split("\n"), ["n"], "no marker left");
    }
  });

  test(`[${runtime}] txtdb list / export whose reader closes its socket without reading (ECONNRESET, not EPIPE): silent exit 2 on Node and Deno, no stack trace`, async () => {
    const { open } = await import("txtdb");
    const { spawn } = await import("node:child_process");
    const dir = tempDir("cli-connreset") + "/s";
    const db = await open(dir, { namespaces: ["ns"] });
    await db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.set("ns", ["k", i], "x".repeat(100));
    });
    await db.close();
    // Bun is left out: it reports no error for this write at all and exits 0 (not fixed yet).
    for (const rt of ["node", "deno"] as const) {
      for (const args of [["list", dir, "ns"], ["export", dir]]) {
        const [cmd, base] = cli[rt];
        // stdout is a socket pair here; closed with data unread, the writer gets ECONNRESET.
        const child = spawn(cmd, [...base, ...args], { stdio: ["ignore", "pipe", "pipe"] });
        let err = "";
        child.stderr!.setEncoding("utf8");
        child.stderr!.on("data", (t: string) => (err += t));
        child.stdout!.pause();
        const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        await new Promise((r) => setTimeout(r, 1_500)); // the child fills the socket and waits
        child.stdout!.destroy();
        const code = await closed;
        clearTimeout(timer);
        assert.doesNotMatch(err, /\n\s+at |internal error|ConnectionReset|ECONNRESET/, `${rt} ${args[0]}: ${err}`);
        assert.equal(code, 2, `${rt} ${args[0]}: ${err}`);
      }
    }
  });

  test(`[${runtime}] txtdb import of 100 000 expiring keys in one transaction: each expires when its line says, not later by the time the import took`, async () => {
    const at = Date.now() + 3_600_000;
    let input = "";
    for (let i = 0; i < 100_000; i++) input += `{"ns":"n","key":["k",${i}],"value":{"i":${i},"pad":"${"x".repeat(64)}"},"expiresAtMs":${at + (i % 7)}}\n`;
    const dir = tempDir("cli-expiry-drift") + "/d";
    const r = run(runtime === "bun" ? "bun" : "node", ["import", dir], input);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /in one transaction/);
    const exported = run("node", ["export", dir]);
    assert.equal(exported.code, 0, exported.err);
    let worst = 0;
    for (const l of exported.out.trim().split("\n")) {
      const e = JSON.parse(l) as { key: [string, number]; expiresAtMs: number };
      worst = Math.max(worst, Math.abs(e.expiresAtMs - (at + (e.key[1] % 7))));
    }
    // The drift being guarded against is the time encoding the batch took (~600 ms for these
    // lines). What remains is the gap between the import's clock read and the set's, which a
    // garbage collection or a busy machine can stretch past 20 ms (seen once at 32 ms while
    // another test run shared the machine), so the bound is well under the defect, not tight.
    assert.ok(worst <= 200, `an imported key expires ${worst} ms away from its line's expiresAtMs`);
  });
}
