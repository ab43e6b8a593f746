/** The command line, run as users run it: `node dist/cli.js` (npm), `deno run cli/main.ts` (JSR), `bun cli/main.ts`. */
import { assert, canSpawn, runtime, sleep, tempDir, test, waitUntil } from "./harness.ts";

if (canSpawn) {
  const fs = await import("node:fs");
  const { startWorker, killAllWorkers } = await import("./procs.ts");
  const { CLI: cli, runCli: run } = await import("./clirun.ts");
  /**
   * Stops process `pid` (SIGSTOP) and waits until /proc shows it stopped: the stop takes
   * effect when the kernel next schedules the target. The caller sends SIGCONT.
   */
  const stopProcess = async (pid: string | undefined) => {
    process.kill(Number(pid), "SIGSTOP");
    const state = () => /\) (\S)/.exec(fs.readFileSync(`/proc/${pid}/stat`, "utf8").slice(-400))?.[1];
    assert.notEqual(await waitUntil(() => state() === "T", 5_000), -1, `state ${state()}`);
  };
  type Rt = keyof typeof cli;
  const RTS: Rt[] = ["node", "deno", "bun"];
  /** A user error: `txtdb: CODE: ...` on stderr, exit 2, and no stack trace. */
  const userError = (r: ReturnType<typeof run>, code: string, message: RegExp) => {
    assert.equal(r.code, 2, `exit code; stderr: ${r.err}`);
    assert.match(r.err, new RegExp(`^txtdb: ${code}: `), r.err);
    assert.match(r.err, message);
    assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
  };

  test(`[${runtime}] txtdb backup by each runtime: a copy read at once by another runtime (read-only), a second backup into it refused`, () => {
    const base = tempDir("cli-backup");
    const dir = `${base}/store`;
    assert.equal(run("node", ["set", dir, "users", '["u",1]', '"ann"']).code, 0);
    assert.equal(run("bun", ["set", dir, "users", '["u",2]', '"bob"']).code, 0);
    for (const [i, rt] of RTS.entries()) {
      const dest = `${base}/copy-${rt}`;
      const r = run(rt, ["backup", dir, dest]);
      assert.equal(r.code, 0, r.err);
      const report = JSON.parse(r.out) as { version: string; bytes: number; dest: string };
      assert.equal(report.version, "3", "two sets after the namespace's creation");
      assert.ok(report.bytes > 0);
      const reader = RTS[(i + 1) % 3]!;
      assert.equal(run(reader, ["get", dest, "users", '["u",2]']).out.trim(), '"bob"', `${reader} reads ${rt}'s copy`);
      assert.equal(run(reader, ["check", dest]).code, 0);
      userError(run(rt, ["backup", dir, dest]), "INVALID_ARGUMENT", /not empty/);
    }
    userError(run("node", ["backup", dir]), "INVALID_ARGUMENT", /dest/);
  });

  test(`[${runtime}] txtdb migrate: --rollback to format 1 by one runtime, upgrade by another, the data the same`, () => {
    const dir = tempDir("cli-migrate") + "/store";
    assert.equal(run("node", ["set", dir, "users", '["u",1]', '"ann"']).code, 0);
    for (let i = 0; i < 3; i++) assert.equal(run("bun", ["set", dir, "users", `["u",${i + 2}]`, `${i}`]).code, 0);
    assert.equal(run("deno", ["compact", dir]).code, 0);
    const format = () => JSON.parse(run("node", ["migrate", dir]).out).format;
    const back = run("deno", ["migrate", dir, "--rollback"]);
    assert.equal(back.code, 0, back.err);
    assert.equal(JSON.parse(back.out).format, 1);
    assert.equal(JSON.parse(back.out).changed, true);
    assert.ok(fs.readdirSync(dir).some((f) => f.startsWith("ckpt-")) && !fs.readdirSync(dir).some((f) => f.startsWith("tbl-")), fs.readdirSync(dir).join(" "));
    assert.equal(run("node", ["get", dir, "users", '["u",1]']).out.trim(), '"ann"', "a read-only command reads format 1 as it is");
    const again = run("bun", ["migrate", dir, "--rollback"]);
    assert.equal(JSON.parse(again.out).changed, false, "rolling back a format-1 store changes nothing");
    assert.equal(format(), 2);
    assert.equal(run("bun", ["get", dir, "users", '["u",4]']).out.trim(), "2");
    assert.equal(run("deno", ["check", dir]).code, 0);
    userError(run("node", ["migrate", tempDir("cli-migrate-empty")]), "INVALID_ARGUMENT", /No txtdb store/);
  });

  test(`[${runtime}] txtdb set/get/list/delete/namespaces on Node, Deno and Bun against one store`, () => {
    const dir = tempDir("cli") + "/store";
    assert.equal(run("node", ["set", dir, "users", '["u",1]', '{"name":"ann","n":{"$bigint":"5"}}']).code, 0);
    assert.equal(run("deno", ["set", dir, "users", '["u",2]', "7"]).code, 0);
    assert.equal(run("bun", ["get", dir, "users", '["u",1]']).out.trim(), '{"name":"ann","n":{"$bigint":"5"}}');
    const listed = run("deno", ["list", dir, "users", '["u"]']).out.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(listed.map((e) => e.key), [["u", 1], ["u", 2]]);
    assert.equal(run("node", ["delete", dir, "users", '["u",2]']).code, 0);
    const missing = run("node", ["get", dir, "users", '["u",2]']);
    assert.equal(missing.code, 1);
    assert.equal(run("bun", ["namespaces", dir]).out.trim(), "users");
    const bad = run("node", ["get", dir, "nope", "k"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /NAMESPACE_NOT_FOUND/);
  });

  test(`[${runtime}] txtdb export | import round-trips every type; check, compact, stats and doctor run`, () => {
    const src = tempDir("cli-src") + "/s";
    const value = '{"b":{"$bytes":"AQID"},"d":{"$date":"2020-01-02T03:04:05.000Z"},"m":{"$map":[["k",{"$set":[1,2]}]]},"i":{"$bigint":"-9"},"plain":{"$object":{"$bigint":"not a tag"}}}';
    assert.equal(run("node", ["set", src, "a", '["x",{"$bigint":"1"}]', value]).code, 0);
    assert.equal(run("node", ["set", src, "b", "k", '"v"']).code, 0);
    const exported = run("node", ["export", src]);
    assert.equal(exported.code, 0);
    assert.equal(exported.out.trim().split("\n").length, 2);
    const dst = tempDir("cli-dst") + "/d";
    const imported = run("bun", ["import", dst], exported.out);
    assert.equal(imported.code, 0, imported.err);
    assert.equal(run("deno", ["get", dst, "a", '["x",{"$bigint":"1"}]']).out.trim(), value);
    const check = run("node", ["check", dst]);
    assert.equal(check.code, 0);
    assert.equal(JSON.parse(check.out).ok, true);
    assert.equal(run("node", ["compact", dst]).code, 0);
    assert.equal(JSON.parse(run("node", ["stats", dst]).out).namespaces, 2);
    const doctor = run("node", ["doctor", dst]);
    assert.equal(doctor.code, 0);
    assert.match(doctor.out, /live processes: 0/);
    assert.match(doctor.out, /writer lock: free/);
  });

  test(`[${runtime}] txtdb export | import keeps each expiring key's expiry, leaves out keys expired by import time, and refuses a bad expiresAtMs`, async () => {
    const { open } = await import("txtdb");
    const src = tempDir("cli-expiry") + "/s";
    const db = await open(src, { namespaces: ["n"] });
    await db.set("n", "forever", 1);
    await db.set("n", "soon", 2, { expireIn: 1_500 });
    await db.set("n", "later", 3, { expireIn: 3_600_000 });
    const setAt = Date.now();
    await db.close();
    const exported = run("deno", ["export", src]);
    assert.equal(exported.code, 0, exported.err);
    const lines = exported.out.trim().split("\n").map((l) => JSON.parse(l) as { key: string; expiresAtMs?: number });
    const byKey = new Map(lines.map((l) => [l.key, l]));
    assert.equal(byKey.get("forever")!.expiresAtMs, undefined, "a key that does not expire has no expiresAtMs");
    assert.ok(Math.abs(byKey.get("soon")!.expiresAtMs! - (setAt + 1_500)) < 1_000, `soon: ${byKey.get("soon")!.expiresAtMs} vs ${setAt + 1_500}`);
    assert.ok(Math.abs(byKey.get("later")!.expiresAtMs! - (setAt + 3_600_000)) < 1_000);
    const dst = tempDir("cli-expiry-dst") + "/d";
    const imported = run("node", ["import", dst], exported.out);
    assert.equal(imported.code, 0, imported.err);
    const copy = await open(dst, { readOnly: true });
    assert.deepEqual([await copy.get("n", "forever"), await copy.get("n", "soon"), await copy.get("n", "later")], [1, 2, 3]);
    // The copy's "soon" expires when the source's did, not 1.5 s after the import.
    assert.ok((await waitUntil(() => Date.now() > byKey.get("soon")!.expiresAtMs! + 50, 5_000, 20)) >= 0);
    assert.equal(await copy.get("n", "soon"), undefined, "expired in the copy at the source's time");
    assert.equal(await copy.get("n", "later"), 3);
    await copy.close();
    // Imported after "soon" expired: it is left out and said so; the others are written.
    const late = tempDir("cli-expiry-late") + "/d";
    const r = run("bun", ["import", late], exported.out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err + r.out, /1 had expired already/);
    const third = await open(late, { readOnly: true });
    assert.equal(await third.count("n", { prefix: [] }), 2);
    await third.close();
    for (const bad of ['"soon"', "-1", "1.5", String(Date.now() + 200 * 365 * 86_400_000)]) {
      const bogus = tempDir("cli-expiry-bad") + "/d";
      const b = run("node", ["import", bogus], `{"ns":"n","key":"k","value":1,"expiresAtMs":${bad}}\n`);
      userError(b, "INVALID_ARGUMENT", /line 1: "expiresAtMs"/);
      assert.equal(fs.existsSync(bogus), false, "nothing written, not even the directory");
    }
  });

  test(`[${runtime}] txtdb export | import round-trips an invalid Date, typed arrays, RegExp and user objects that look like tags`, () => {
    const src = tempDir("cli-types") + "/s";
    const value = JSON.stringify({
      bad: { $date: null },
      f64: { $typed: "Float64Array", $bytes: "AAAAAAAA+D8AAAAAAAAAgAAAAAAAAPh/" }, // 1.5, -0, NaN
      i32: { $typed: "Int32Array", $bytes: "/////wIAAAA=" },
      u16: { $typed: "Uint16Array", $bytes: "//8BAA==" },
      big: { $typed: "BigInt64Array", $bytes: "////////////////////fw==" }, // -1, 2^63-1
      bytes: { $bytes: "AQID" },
      re: { $regexp: "a.b", $flags: "gi" },
      inf: [{ $f64: "Infinity" }, { $f64: "NaN" }, { $f64: "-0" }],
      looks: { $object: { $typed: "Float64Array", $bytes: "" } },
    });
    assert.equal(run("deno", ["set", src, "t", "k", value]).code, 0);
    for (const rt of RTS) {
      const exported = run(rt, ["export", src]);
      assert.equal(exported.code, 0, `${rt} export: ${exported.err}`);
      const dst = tempDir("cli-types-dst") + "/d";
      const imported = run(RTS[(RTS.indexOf(rt) + 1) % 3]!, ["import", dst], exported.out);
      assert.equal(imported.code, 0, imported.err);
      assert.equal(run(rt, ["get", dst, "t", "k"]).out.trim(), value, `exported by ${rt}`);
    }
  });

  test(`[${runtime}] txtdb import of a bad line fails with INVALID_ARGUMENT (INVALID_VALUE for nesting past 512 levels) and the line number, and writes nothing`, () => {
    const good = '{"ns":"a","key":"k1","value":1}\n';
    const cases: [string, RegExp][] = [
      ['{"ns":"a","key":"k2","value":{"$bigint":"zz"}}', /line 2: value: "\$bigint" must be a string of decimal digits/],
      ['{"ns":"a","key":"k2","value":{"$bytes":5}}', /line 2: value: "\$bytes" must be a base64 string/],
      ['{"ns":"a","key":"k2","value":{"x":{"$nope":1}}}', /line 2: value\.x: \{"\$nope":1\} is not a known tag/],
      ['{"ns":"a","key":"k2","value":', /line 2: not valid JSON/],
      ['{"ns":"a","key":{"$f64":"NaN"},"value":1}', /line 2: /],
      ['{"ns":"a","key":"k2"}', /line 2: "value" is missing/],
      ['{"ns":"a","key":"k2","value":1,"vaule":2}', /line 2: unknown field "vaule"/],
      // Found by review helper-72: a version that is none was taken, and deep nesting overflowed the stack.
      ['{"ns":"a","key":"k2","value":1,"version":"zz"}', /line 2: "version" must be the version export writes/],
      ['{"ns":"a","key":"k2","value":1,"value":2}', /line 2: the name "value" appears twice in one object/],
      ['{"ns":"a","key":"k2","value":{"x":[{"a":1,"b":"a","\\u0061":2}]}}', /line 2: the name "a" appears twice in one object/],
      [`{"ns":"a","key":"k2","value":${"[".repeat(100_000)}1${"]".repeat(100_000)}}`, /line 2: value\[0\]\[0\].*\[0\] nests deeper than 512 levels, the most a value may/],
      [`{"ns":"a","key":"k2","value":${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}}`, /line 2: value\.a\.a.*\.a nests deeper than 512 levels/],
      [`{"ns":"a","key":${"[".repeat(3_000)}1${"]".repeat(3_000)},"value":1}`, /line 2: key\[0\]\[0\].*\[0\] nests deeper than 512 levels/],
    ];
    cases.forEach(([line, message], i) => {
      const rt = RTS[i % 3]!;
      const fresh = tempDir("cli-bad") + "/d";
      const r = run(rt, ["import", fresh], good + line + "\n");
      assert.equal(r.code, 2, `${rt} ${line}: ${r.err}`);
      assert.match(r.err, /^txtdb: (INVALID_ARGUMENT|INVALID_KEY|INVALID_VALUE): line 2: /, r.err);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
      assert.equal(fs.existsSync(fresh), false, "no store was created");
    });
    // Names repeated across objects, and values equal to names, are no duplicates.
    const tricky = '{"ns":"a","key":"k","value":{"a":"a","b":["a","a",{"a":1}],"c":{"a":{"a":"a"}},"d":"\\"a\\",\\"a\\""}}';
    const ok = run("node", ["import", tempDir("cli-tricky") + "/d"], tricky + "\n");
    assert.equal(ok.code, 0, ok.err);
    // Into an existing store: not even the good first line is written.
    const dir = tempDir("cli-bad2") + "/d";
    assert.equal(run("node", ["set", dir, "a", "k0", "0"]).code, 0);
    userError(run("bun", ["import", dir], good + '{"ns":"b","key":"x","value":{"$bigint":"1.5"}}\n'), "INVALID_ARGUMENT", /line 2/);
    assert.deepEqual(run("node", ["namespaces", dir]).out.trim().split("\n"), ["a"]);
    assert.equal(run("node", ["list", dir, "a"]).out.trim().split("\n").length, 1);
  });

  test(`[${runtime}] txtdb keeps a __proto__ key's data through set, get, export and import, polluting nothing`, () => {
    const dir = tempDir("cli-proto") + "/d";
    assert.equal(run("node", ["set", dir, "a", "k", '{"__proto__":{"secret":1},"n":2}']).code, 0);
    const got = run("bun", ["get", dir, "a", "k"]);
    assert.equal(got.out.trim(), '{"__proto__":{"secret":1},"n":2}');
    const exported = run("deno", ["export", dir]);
    const line = JSON.parse(exported.out.trim());
    assert.equal(Object.getPrototypeOf(line.value), Object.prototype);
    const dst = tempDir("cli-proto-dst") + "/d";
    assert.equal(run("node", ["import", dst], exported.out).code, 0);
    assert.equal(run("node", ["get", dst, "a", "k"]).out, got.out);
  });

  test(`[${runtime}] txtdb prints control characters in names, keys and errors escaped`, () => {
    const dir = tempDir("cli-esc") + "/d";
    const evil = "x\x1b[31mred\x1b]0;title\x07\u202e\x9b2J";
    assert.equal(run("node", ["set", dir, evil, JSON.stringify(evil), "1"]).code, 0);
    assert.equal(run("node", ["set", dir, "plain", "k", JSON.stringify(evil)]).code, 0);
    const unsafe = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/;
    for (const rt of RTS) {
      const names = run(rt, ["namespaces", dir]);
      assert.doesNotMatch(names.out, unsafe, `${rt} namespaces`);
      assert.deepEqual(names.out.trim().split("\n"), ["plain", JSON.stringify(evil).replace(/\u202e/, "\\u202e").replace(/\x9b/, "\\u009b")]);
      assert.equal(JSON.parse(names.out.split("\n")[1]!), evil, "the escaped name is a JSON string of the name");
      for (const args of [["list", dir, evil], ["get", dir, "plain", "k"], ["export", dir]]) {
        const r = run(rt, args);
        assert.equal(r.code, 0, r.err);
        assert.doesNotMatch(r.out, unsafe, `${rt} ${args[0]}`);
        for (const l of r.out.trim().split("\n")) JSON.parse(l); // still JSON
      }
      const missing = run(rt, ["get", dir, evil, JSON.stringify(evil + "?")]);
      assert.equal(missing.code, 1);
      assert.doesNotMatch(missing.err, unsafe, `${rt} not-found message`);
      const bad = run(rt, ["get", dir, evil + "\x1b[0m", "k"]);
      assert.equal(bad.code, 2);
      assert.doesNotMatch(bad.err, unsafe, `${rt} error message`);
      assert.match(bad.err, /\\x1b\[0m/);
    }
  });

  test(`[${runtime}] txtdb --version, option forms, unknown options and bad numbers, get of a missing key`, () => {
    const version = (JSON.parse(fs.readFileSync("package.json", "utf8")) as { version: string }).version;
    const dir = tempDir("cli-args") + "/d";
    for (const rt of RTS) {
      const v = run(rt, ["--version"]);
      assert.equal(v.code, 0, v.err);
      assert.equal(v.out.trim(), `txtdb ${version}`);
    }
    for (const k of ["a", "b", "c"]) assert.equal(run("node", ["set", dir, "n", k, "1"]).code, 0);
    const keys = (args: string[]) => run("bun", ["list", dir, "n", ...args]).out.trim().split("\n").map((l) => JSON.parse(l).key);
    assert.deepEqual(keys(["--limit", "1"]), ["a"]);
    assert.deepEqual(keys(["--limit=1"]), ["a"]);
    assert.deepEqual(keys(["--limit=2", "--reverse"]), ["c", "b"]);
    for (const bad of [["--limit", "x"], ["--limit=-1"], ["--limit=1.5"], ["--limit="], ["--limit"], ["--limit", "1e3"]]) {
      userError(run("node", ["list", dir, "n", ...bad]), "INVALID_ARGUMENT", /--limit/);
    }
    userError(run("deno", ["list", dir, "n", "--bogus"]), "INVALID_ARGUMENT", /Unknown option "--bogus"/);
    userError(run("node", ["get", dir, "n", "a", "--limit=1"]), "INVALID_ARGUMENT", /Unknown option "--limit" for `txtdb get`/);
    userError(run("bun", ["--bogus"]), "INVALID_ARGUMENT", /Unknown option "--bogus"/);
    userError(run("node", ["frobnicate", dir]), "INVALID_ARGUMENT", /Unknown command "frobnicate"/);
    userError(run("node", ["get", dir, "n"]), "INVALID_ARGUMENT", /needs a key/);
    userError(run("node", ["get", dir, "n", "a", "extra"]), "INVALID_ARGUMENT", /Unexpected argument "extra"/);
    userError(run("node", ["set", dir, "n", "k", "{oops"]), "INVALID_ARGUMENT", /not valid JSON/);
    userError(run("node", ["set", dir, "n", "k", '{"$bigint":"zz"}']), "INVALID_ARGUMENT", /\$bigint/);
    assert.equal(run("node", ["set", dir, "n", "--", "--dash"]).code, 2, "a value is still needed after --");
    assert.equal(run("node", ["set", dir, "n", "--", "--dash", "-5"]).code, 0);
    assert.equal(run("deno", ["get", dir, "n", "--", "--dash"]).out.trim(), "-5");
    for (const rt of RTS) {
      const r = run(rt, ["get", dir, "n", "zz"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.match(r.err, /^txtdb: key "zz" is not in namespace "n"/);
    }
  });

  test(`[${runtime}] txtdb commands on a directory that is not a store say so and create nothing`, () => {
    const base = tempDir("cli-nostore");
    const missing = base + "/missing";
    const empty = base + "/empty";
    fs.mkdirSync(empty);
    const other = base + "/other";
    fs.mkdirSync(other);
    fs.writeFileSync(other + "/notes.txt", "mine");
    const commands = [["stats"], ["doctor"], ["check"], ["compact"], ["get", "n", "k"], ["delete", "n", "k"], ["list", "n"], ["namespaces"], ["export"]];
    commands.forEach((c, i) => {
      const rt = RTS[i % 3]!;
      for (const dir of [missing, empty, other]) {
        userError(run(rt, [c[0]!, dir, ...c.slice(1)]), "INVALID_ARGUMENT", /No txtdb store at .*nothing was created/);
      }
      assert.equal(fs.existsSync(missing), false, `${rt} ${c[0]} created the directory`);
      assert.deepEqual(fs.readdirSync(empty), [], `${rt} ${c[0]} wrote into an empty directory`);
      assert.deepEqual(fs.readdirSync(other), ["notes.txt"], `${rt} ${c[0]} wrote into a directory`);
    });
    // set and import create a store, but never among someone else's files.
    userError(run("node", ["set", other, "n", "k", "1"]), "INVALID_ARGUMENT", /other files and no txtdb store/);
    userError(run("bun", ["import", other], '{"ns":"n","key":"k","value":1}\n'), "INVALID_ARGUMENT", /other files/);
    assert.deepEqual(fs.readdirSync(other), ["notes.txt"]);
    assert.equal(run("deno", ["set", empty, "n", "k", "1"]).code, 0);
    assert.equal(run("node", ["get", empty, "n", "k"]).out.trim(), "1");
  });

  /** check's report of a damaged store: exit 1, JSON on stdout, nothing on stderr, the first problem at `file` and `offset`, no advice to run check. */
  const damageFound = (r: ReturnType<typeof run>, file: string, offset: number) => {
    assert.equal(r.code, 1, `exit code; stdout: ${r.out}; stderr: ${r.err}`);
    assert.equal(r.err, "");
    const report = JSON.parse(r.out) as { ok: boolean; problems: { file: string; offset: number; message: string }[] };
    assert.equal(report.ok, false);
    assert.equal(report.problems[0]?.file, file, r.out);
    assert.equal(report.problems[0]?.offset, offset, r.out);
    assert.doesNotMatch(r.out, /txtdb check/, "check never sends the user to itself");
    return report;
  };
  /** doctor's diagnosis of a damaged store: exit 1, the problem with `file` on stdout, nothing on stderr, no advice to run check. */
  const damageDiagnosed = (r: ReturnType<typeof run>, file: string) => {
    assert.equal(r.code, 1, `exit code; stdout: ${r.out}; stderr: ${r.err}`);
    assert.equal(r.err, "");
    assert.match(r.out, /^store .*: damaged, it cannot be opened/);
    assert.ok(r.out.includes(`problem: ${file} at offset `), r.out);
    assert.match(r.out, /^writer lock: free$/m);
    assert.doesNotMatch(r.out, /txtdb check/, "doctor never sends the user to run check");
    return r.out;
  };

  test(`[${runtime}] txtdb check and doctor on a store too damaged to open print what they found (file, offset) and exit 1, never an error that says to run txtdb check`, () => {
    const base = tempDir("cli-damaged");
    const make = (name: string) => {
      const dir = `${base}/${name}`;
      for (let i = 0; i < 3; i++) assert.equal(run("node", ["set", dir, "n", `k${i}`, `${i}`]).code, 0);
      return dir;
    };
    const poke = (path: string, at: number, bytes: number[]) => {
      const fd = fs.openSync(path, "r+");
      fs.writeSync(fd, new Uint8Array(bytes), 0, bytes.length, at);
      fs.closeSync(fd);
    };
    const cases: [string, string, number, (dir: string) => void][] = [
      ["manifest", "MANIFEST", 0, (dir) => poke(`${dir}/MANIFEST`, 12, [0xff])],
      ["manifest-huge", "MANIFEST", 0, (dir) => fs.truncateSync(`${dir}/MANIFEST`, 20 * 2 ** 30)],
      ["segment", "seg-0000000001.log", 0, (dir) => poke(`${dir}/seg-0000000001.log`, 1, [0xff, 0xff, 0xff, 0x7f])], // the first frame's length: impossible
    ];
    cases.forEach(([name, file, offset, damage], i) => {
      const dir = make(name);
      damage(dir);
      const before = fs.readdirSync(dir).sort();
      const report = damageFound(run(RTS[i % 3]!, ["check", dir]), `${dir}/${file}`, offset);
      assert.match(report.problems[0]!.message, /damaged|more than any manifest/);
      damageDiagnosed(run(RTS[(i + 1) % 3]!, ["doctor", dir]), `${dir}/${file}`);
      assert.deepEqual(fs.readdirSync(dir).sort(), before, `${name}: nothing changed`);
      // Every other command still fails with the error (exit 2).
      userError(run(RTS[(i + 2) % 3]!, ["get", dir, "n", "k0"]), "CORRUPTION", /./);
    });
  });

  test(`[${runtime}] txtdb commands on a store whose MANIFEST is lost say CORRUPTION (what is missing, restore from a backup), never "no store", and change nothing`, () => {
    const base = tempDir("cli-nomanifest");
    const compacted = `${base}/compacted`;
    for (let i = 0; i < 3; i++) assert.equal(run("node", ["set", compacted, "n", `k${i}`, `${i}`]).code, 0);
    assert.equal(run("node", ["compact", compacted]).code, 0);
    const fresh = `${base}/fresh`; // never compacted; its leases/ and compact.lock gone too
    assert.equal(run("node", ["set", fresh, "n", "k", "1"]).code, 0);
    for (const dir of [compacted, fresh]) fs.unlinkSync(`${dir}/MANIFEST`);
    fs.rmSync(`${fresh}/leases`, { recursive: true });
    fs.rmSync(`${fresh}/compact.lock`, { force: true });
    const commands = [["stats"], ["compact"], ["migrate"], ["get", "n", "k"], ["set", "n", "k", "2"], ["delete", "n", "k"], ["list", "n"], ["namespaces"], ["export"], ["backup", `${base}/copy`]];
    const lost = /has no MANIFEST .*manifest is lost\. Nothing was changed; restore MANIFEST .* from a backup/;
    for (const dir of [compacted, fresh]) {
      const before = fs.readdirSync(dir).sort();
      commands.forEach((c, i) => {
        const rt = RTS[i % 3]!;
        userError(run(rt, [c[0]!, dir, ...c.slice(1)]), "CORRUPTION", lost);
      });
      // check and doctor report it as what they found (exit 1).
      const checked = damageFound(run("deno", ["check", dir]), `${dir}/MANIFEST`, 0);
      assert.match(checked.problems[0]!.message, lost);
      assert.match(damageDiagnosed(run("bun", ["doctor", dir]), `${dir}/MANIFEST`), lost);
      userError(run("bun", ["import", dir], '{"ns":"n","key":"k","value":1}\n'), "CORRUPTION", /manifest is lost/);
      assert.deepEqual(fs.readdirSync(dir).sort(), before, `nothing changed in ${dir}`);
    }
    assert.equal(fs.existsSync(`${base}/copy`), false);
  });

  test(`[${runtime}] txtdb --mode gives a store's new files the group's permission bits (compact included), --allow-foreign-owner opens a directory another user owns; a bad --mode is a usage mistake that creates nothing`, () => {
    const base = tempDir("cli-shared");
    const dir = `${base}/store`;
    const modes = (d: string) => Object.fromEntries(fs.readdirSync(d).map((n) => [n, fs.statSync(`${d}/${n}`).mode & 0o777]));
    assert.equal(run("node", ["set", dir, "n", "k", "1", "--mode", "640"]).code, 0);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o750, "the directory gets x where r is");
    for (const [name, mode] of Object.entries(modes(dir))) assert.equal(mode, fs.statSync(`${dir}/${name}`).isDirectory() ? 0o750 : 0o640, name);
    for (let i = 0; i < 3; i++) assert.equal(run(RTS[i]!, ["set", dir, "n", `k${i}`, `${i}`, "--mode=0640"]).code, 0);
    const compacted = run("deno", ["compact", dir, "--mode", "640"]);
    assert.equal(compacted.code, 0, compacted.err);
    const tables = fs.readdirSync(dir).filter((f) => f.startsWith("tbl-"));
    assert.ok(tables.length > 0, fs.readdirSync(dir).join(" "));
    for (const f of [...tables, "MANIFEST"]) assert.equal(fs.statSync(`${dir}/${f}`).mode & 0o777, 0o640, `${f} written by compact --mode 640`);
    // Without --mode, the store keeps its own mode: a compaction does not lock the group out.
    assert.equal(run("bun", ["set", dir, "n", "k9", "9"]).code, 0);
    assert.equal(run("node", ["compact", dir]).code, 0);
    assert.equal(fs.statSync(`${dir}/MANIFEST`).mode & 0o777, 0o640, "the store keeps its mode");
    for (const [i, bad] of ["644x", "400", "1777"].entries()) {
      const fresh = `${base}/bad-${i}`;
      userError(run(RTS[i]!, ["set", fresh, "n", "k", "1", "--mode", bad]), "INVALID_ARGUMENT", /--mode needs octal permission bits/);
      assert.equal(fs.existsSync(fresh), false, `${bad}: nothing created`);
    }
    const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
    if (isRoot) {
      // Root too refuses a directory another user owns, unless told it trusts that user.
      const theirs = `${base}/theirs`;
      assert.equal(run("node", ["set", theirs, "n", "k", '"v"']).code, 0);
      for (const f of ["", ...fs.readdirSync(theirs).map((n) => `/${n}`)]) fs.chownSync(`${theirs}${f}`, 4321, 4321);
      userError(run("bun", ["get", theirs, "n", "k"]), "INVALID_ARGUMENT", /belongs to uid 4321.*pass --allow-foreign-owner/);
      const got = run("deno", ["get", theirs, "n", "k", "--allow-foreign-owner"]);
      assert.equal(got.code, 0, got.err);
      assert.equal(got.out.trim(), '"v"');
      assert.equal(run("node", ["set", theirs, "n", "k", '"w"', "--allow-foreign-owner", "--mode", "640"]).code, 0);
      assert.equal(run("bun", ["get", theirs, "n", "k", "--allow-foreign-owner"]).out.trim(), '"w"');
    }
  });

  test(`[${runtime}] txtdb doctor names the writer lock's holder, how long it has held it, and flags a stopped one`, async () => {
    try {
      for (const workerRt of ["node", "deno", "bun"] as const) {
        const dir = tempDir("cli-holder") + "/d";
        assert.equal(run("node", ["set", dir, "n", "k", "1"]).code, 0);
        // A holder that took the lock just now: named, no warning.
        const fresh = startWorker(workerRt, "cli-holder", [dir, "0"]);
        const [, pid, rt] = (await fresh.waitFor("held ")).split(" ");
        const ok = run("bun", ["doctor", dir]);
        assert.equal(ok.code, 0, ok.out + ok.err);
        assert.match(ok.out, new RegExp(`writer lock: held by pid ${pid} \\(${rt}\\) for \\d+\\.\\d s`));
        assert.doesNotMatch(ok.out, /warning/);
        await fresh.finish();
        // A holder stopped with SIGSTOP after taking the lock 40 s ago: every writer would wait.
        const stuck = startWorker(workerRt, "cli-holder", [dir, "40000"]);
        const [, pid2, rt2] = (await stuck.waitFor("held ")).split(" ");
        try {
          await stopProcess(pid2);
          for (const doctorRt of RTS) {
            const t0 = performance.now();
            const r = run(doctorRt, ["doctor", dir]);
            assert.ok(performance.now() - t0 < 20_000, "doctor does not wait for the lock");
            assert.equal(r.code, 1, `${doctorRt}: ${r.out}${r.err}`);
            // Deno refuses /proc/<pid>/stat to --allow-read alone, so only Node and Bun can tell "stopped".
            const stopped = doctorRt === "deno" ? "" : ", process stopped";
            assert.match(r.out, new RegExp(`writer lock: held by pid ${pid2} \\(${rt2}\\) for 4\\d\\.\\d s${stopped}`), `${doctorRt}: ${r.out}`);
            assert.match(r.out, new RegExp(`warning: pid ${pid2} has held the writer lock for 4\\d\\.\\d s.*probably stuck.*kill -CONT ${pid2}`));
          }
        } finally {
          process.kill(Number(pid2), "SIGCONT");
        }
        await stuck.finish();
        const after = run("node", ["doctor", dir]);
        assert.match(after.out, /writer lock: free/, after.err);
        // A stopped holder whose writer.lock was deleted: it holds the lock through the
        // store directory's flock alone, which the kernel's lock table names (review
        // helper-73: doctor said "run doctor again", exit 0, while every writer waited).
        const guarded = startWorker(workerRt, "cli-holder", [dir, "0", "guard"]);
        const [, pid3] = (await guarded.waitFor("held ")).split(" ");
        fs.rmSync(`${dir}/writer.lock`);
        try {
          await stopProcess(pid3);
          const r = run("node", ["doctor", dir]);
          assert.equal(r.code, 1, r.out + r.err);
          assert.match(r.out, new RegExp(`writer lock: held through its guard.*by pid ${pid3} per the kernel's lock table, process stopped`), r.out);
          assert.match(r.out, new RegExp(`warning: pid ${pid3} holds the writer lock \\(through the store directory's flock\\) while stopped.*kill -CONT ${pid3}`), r.out);
        } finally {
          process.kill(Number(pid3), "SIGCONT");
        }
        await guarded.finish();
        // A txtdb writer stopped between its grant and its record: the kernel names it, the
        // record an earlier holder. It was called "another program (flock(1), another
        // user's process)", to be killed as a stranger (review helper-79). Its lease says
        // it is txtdb's. Node and Bun only: Deno's doctor is refused /proc/<pid>/stat.
        assert.equal(run("node", ["set", dir, "n", "k", "2"]).code, 0); // writer.lock again, with a record of its own
        const unrecorded = startWorker(workerRt, "cli-holder", [dir, "0", "unrecorded"]);
        const [, pid4] = (await unrecorded.waitFor("held ")).split(" ");
        try {
          await stopProcess(pid4);
          for (const doctorRt of ["node", "bun"] as const) {
            const r = run(doctorRt, ["doctor", dir]);
            assert.equal(r.code, 1, `${doctorRt}: ${r.out}${r.err}`);
            assert.match(r.out, new RegExp(`writer lock: held by pid ${pid4} per the kernel's lock table, a txtdb process with a lease here that has not recorded itself yet \\(the record in the file names pid (?!${pid4}\\b)\\d+, an earlier holder\\), process stopped`), `${doctorRt}: ${r.out}`);
            assert.match(r.out, new RegExp(`warning: pid ${pid4} holds the writer lock while stopped.*kill -CONT ${pid4}`), `${doctorRt}: ${r.out}`);
            assert.doesNotMatch(r.out, /another program|without being a txtdb commit/, `${doctorRt}: ${r.out}`);
          }
        } finally {
          process.kill(Number(pid4), "SIGCONT");
        }
        await unrecorded.finish();
      }
    } finally {
      killAllWorkers();
    }
  });
  test(`[${runtime}] compact.lock's holder is named by the LOCK_TIMEOUT of a compaction that waits for it and by txtdb doctor: a txtdb compaction as information, flock(1) with a warning`, async () => {
    const { open } = await import("txtdb");
    const { spawn, spawnSync } = await import("node:child_process");
    // Opened before the lock is taken: open itself waits for the writer lock the compaction-holder keeps.
    const timesOut = async (db: Awaited<ReturnType<typeof open>>, message: RegExp) => {
      await assert.rejects(db.compact(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "LOCK_TIMEOUT", e.message);
        assert.match(e.message, /compact\.lock/);
        assert.match(e.message, message);
        return true;
      });
    };
    try {
      for (const workerRt of ["node", "deno", "bun"] as const) {
        const dir = tempDir("cli-compact-holder") + "/d";
        assert.equal(run("node", ["set", dir, "n", "k", "1"]).code, 0);
        // A compaction in another process holds compact.lock (waiting for the writer lock).
        const db = await open(dir, { lockTimeoutMs: 300 });
        const w = startWorker(workerRt, "compact-holder", [dir]);
        const [, pid, rt] = (await w.waitFor("compacting ")).split(" ");
        await timesOut(db, new RegExp(`it says: pid ${pid}, ${rt}, since \\d+ ms ago`));
        for (const doctorRt of RTS) {
          const r = run(doctorRt, ["doctor", dir]);
          assert.match(r.out, new RegExp(`compact lock: held by pid ${pid} \\(${rt}\\) for \\d+\\.\\d s: a compaction, a backup or a format change`), `${doctorRt}: ${r.out}${r.err}`);
          assert.doesNotMatch(r.out, /warning/, `${doctorRt}: ${r.out}`);
          assert.equal(r.code, 0, `${doctorRt}: ${r.out}${r.err}`);
        }
        // The same holder stopped (SIGSTOP): nothing ends its hold, and doctor says so and how
        // to end it (Node and Bun; Deno is refused /proc/<pid>/stat, and cannot tell).
        try {
          await stopProcess(pid);
          for (const doctorRt of RTS) {
            const r = run(doctorRt, ["doctor", dir]);
            if (doctorRt === "deno") {
              assert.match(r.out, new RegExp(`compact lock: held by pid ${pid} \\(${rt}\\) for \\d+\\.\\d s: a compaction`), `${doctorRt}: ${r.out}${r.err}`);
              continue;
            }
            assert.equal(r.code, 1, `${doctorRt}: ${r.out}${r.err}`);
            assert.match(r.out, new RegExp(`compact lock: held by pid ${pid} \\(${rt}\\) for \\d+\\.\\d s, process stopped \\(SIGSTOP or Ctrl-Z\\): a compaction`), `${doctorRt}: ${r.out}`);
            assert.match(r.out, new RegExp(`warning: pid ${pid} holds .*compact\\.lock while stopped .*LOCK_TIMEOUT.*kill -CONT ${pid}`), `${doctorRt}: ${r.out}`);
          }
        } finally {
          process.kill(Number(pid), "SIGCONT");
        }
        await w.finish();
        // This process's compaction that timed out left its kernel wait for compact.lock on a
        // helper thread: granted once the worker let go, it gives the lock back at this
        // process's next event-loop turn, which run()'s synchronous spawn holds up. So the
        // lock comes free between two doctor runs, not always before the first.
        let doctor = "";
        assert.notEqual(await waitUntil(() => /compact lock: free/.test(doctor = run("node", ["doctor", dir]).out), 10_000, 20), -1, doctor);
        if (workerRt !== "node" || spawnSync("flock", ["--version"]).status !== 0) {
          await db.close();
          continue;
        }
        // Another program holds it: the kernel's lock table names it, not the record left by the compaction.
        const holder = spawn("flock", ["-o", `${dir}/compact.lock`, "sleep", "60"], { stdio: "ignore" });
        try {
          assert.notEqual(await waitUntil(() => fs.readFileSync("/proc/locks", "utf8").includes(` ${holder.pid} `), 5_000), -1, "flock(1) took the lock");
          await timesOut(db, new RegExp(`held by pid ${holder.pid} per the kernel's lock table`));
          for (const doctorRt of RTS) {
            const r = run(doctorRt, ["doctor", dir]);
            assert.equal(r.code, 1, `${doctorRt}: ${r.out}${r.err}`);
            // Deno may be refused /proc/locks: the record then names the compaction's pid, which has no lease any more.
            const named = doctorRt === "deno" && !r.out.includes("kernel's lock table")
              ? new RegExp(`compact lock: held; the record in the file names pid ${pid} \\(${rt}\\).*no live txtdb process`)
              : new RegExp(`compact lock: held by pid ${holder.pid} per the kernel's lock table, which is not a txtdb process`);
            assert.match(r.out, named, `${doctorRt}: ${r.out}`);
            assert.match(r.out, /warning: .*compact\.lock.*LOCK_TIMEOUT/, `${doctorRt}: ${r.out}`);
          }
        } finally {
          holder.kill("SIGKILL");
          await db.close();
        }
      }
    } finally {
      killAllWorkers();
    }
  });

  test(`[${runtime}] txtdb with no arguments prints usage and exits 2; --help and help <command> document exit codes; a mistyped command gets "did you mean" and creates nothing`, () => {
    const dir = tempDir("cli-usage") + "/d";
    for (const rt of RTS) {
      const bare = run(rt, []);
      assert.equal(bare.code, 2, `${rt}: ${bare.err}`);
      assert.equal(bare.out, "");
      assert.match(bare.err, /^usage: txtdb <command> <dir>/);
      const help = run(rt, ["--help"]);
      assert.equal(help.code, 0);
      assert.match(help.out, /exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /);
      const one = run(rt, ["help", "import"]);
      assert.equal(one.code, 0);
      assert.match(one.out, /^usage: txtdb import <dir> \[--progress\] \[--resume\] \[--restart\]/);
      assert.equal(run(rt, ["list", "--help"]).code, 0);
      userError(run(rt, ["lsit", dir, "n"]), "INVALID_ARGUMENT", /Unknown command "lsit"; did you mean "list"\?/);
      userError(run(rt, ["set", dir, "n", "k", "1", "--progres"]), "INVALID_ARGUMENT", /Unknown option "--progres"/);
      assert.equal(fs.existsSync(dir), false, `${rt} created a store`);
    }
    const version = (JSON.parse(fs.readFileSync("deno.json", "utf8")) as { version: string }).version;
    assert.equal(run("deno", ["-V"]).out.trim(), `txtdb ${version}`, "JSR users see deno.json's version");
  });

  test(`[${runtime}] txtdb stats shows store-wide figures with the other processes' pins and their age, not the CLI's counters; doctor says how long each pin is held; compact names the process whose pin stops it`, async () => {
    try {
      for (const workerRt of ["bun", "deno"] as const) {
        const dir = tempDir("cli-pins") + "/d";
        const w = startWorker(workerRt, "cli-pinner", [dir]);
        const [, pid, rt, pinned, head] = (await w.waitFor("pinned ")).split(" ");
        const stats = run("node", ["stats", dir]);
        assert.equal(stats.code, 0, stats.err);
        const f = JSON.parse(stats.out);
        assert.match(f.scope, /store-wide/);
        assert.equal(f.commits, undefined, "no per-process counter of the CLI itself");
        assert.equal(f.version, head);
        assert.deepEqual(f.processes.map((p: { pid: number }) => p.pid), [Number(pid)], "the CLI's own lease is not listed");
        assert.equal(f.processes[0].runtime, rt);
        assert.equal(f.oldestPin.pid, Number(pid));
        assert.equal(f.oldestPin.version, pinned);
        assert.equal(f.oldestPin.behindHead, String(Number(head) - Number(pinned)));
        assert.ok(typeof f.oldestPin.heldMs === "number" && f.oldestPin.heldMs <= f.oldestPin.heldAtMostMs, JSON.stringify(f.oldestPin));
        assert.equal(f.processes[0].pinAgeMs, f.oldestPin.heldMs);
        // The age of the pin, from the lease: a second later, over a second.
        await sleep(1_000);
        for (const doctorRt of ["node", "deno"] as const) {
          const d = run(doctorRt, ["doctor", dir]);
          const m = new RegExp(`pid ${pid} \\(${rt}\\): pins version ${pinned} \\(\\d+ behind the head\\) for (\\d+\\.\\d) s`).exec(d.out);
          assert.ok(m && Number(m[1]) >= 1, `${doctorRt}: ${d.out}${d.err}`);
        }
        assert.ok(f.segments.live > 2, JSON.stringify(f.segments));
        assert.equal(f.bytes.total, f.files.reduce((a: number, x: { bytes: number }) => a + x.bytes, 0) + (f.bytes.other - f.files.filter((x: { role: string }) => ["manifest", "frontier", "writer lock", "compact lock"].includes(x.role)).reduce((a: number, x: { bytes: number }) => a + x.bytes, 0)));
        run("bun", ["compact", dir]); // folds what lies below the pin
        const again = run("deno", ["compact", dir]);
        assert.equal(again.code, 0, again.err);
        const r = JSON.parse(again.out);
        assert.equal(r.segmentsFolded, 0);
        assert.match(r.note, new RegExp(`nothing folded: .*pid ${pid} \\(${rt}\\) pins version ${pinned}.*compact again`));
        await w.finish();
        const after = JSON.parse(run("node", ["compact", dir]).out);
        assert.ok(after.segmentsFolded > 0, "folds once the pin is released");
        assert.match(after.note, /^folded \d+ segments? \(.* of log\) into tables/);
        const idle = JSON.parse(run("node", ["compact", dir]).out);
        assert.match(idle.note, /nothing to fold: the tables already hold every version up to the head/);
        const figures = JSON.parse(run("bun", ["stats", dir]).out);
        assert.ok(figures.tables.count >= 1 && figures.bytes.tables > 0, JSON.stringify(figures.tables));
        assert.ok(!figures.files.some((f: { name: string; role: string }) => f.name.startsWith("tbl-") && f.role === "leftover"), "tables are never shown as leftovers");
        assert.deepEqual(JSON.parse(run("bun", ["stats", dir]).out).processes, []);
      }
    } finally {
      killAllWorkers();
    }
  });

  test(`[${runtime}] txtdb import past one transaction's size is resumable: killed mid-import, --resume finishes without writing a line twice`, async () => {
    const { spawn } = await import("node:child_process");
    const n = 250_000;
    let input = "";
    for (let i = 0; i < n; i++) input += `{"ns":"n","key":["k",${i}],"value":${i}}\n`;
    const dir = tempDir("cli-resume") + "/d";
    const [cmd, base] = cli.node;
    const child = spawn(cmd, [...base, "import", dir, "--progress"], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    const committed = new Promise<void>((resolve) => child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
      if (/committed input lines/.test(stderr)) resolve();
    }));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.stdin.end(input);
    await Promise.race([committed, exited]);
    child.kill("SIGKILL");
    assert.equal(await exited, null, `the import was killed before it finished: ${stderr}`);
    const marker = run("bun", ["get", dir, "txtdb.import", "progress"]);
    assert.equal(marker.code, 0, marker.err);
    const m = JSON.parse(marker.out);
    assert.ok(m.committedEntries > 0 && m.committedEntries < n, marker.out);
    const before = new Map(run("node", ["export", dir, "n"]).out.trim().split("\n").map((l) => { const e = JSON.parse(l); return [e.key[1], JSON.stringify(e.version)]; }));
    assert.equal(before.size, m.committedEntries, "the store holds exactly the committed batches");
    // Without --resume: refused, naming what was committed; other input: refused.
    userError(run("node", ["import", dir], input), "INVALID_ARGUMENT", new RegExp(`unfinished import: entries 1 to ${m.committedEntries} of ${n}.*--resume`));
    userError(run("deno", ["import", dir, "--resume"], input.replace('"value":0}', '"value":-1}')), "INVALID_ARGUMENT", /not the unfinished import's/);
    const resumed = run("bun", ["import", dir, "--resume", "--progress"], input);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, new RegExp(`resuming after input line ${m.committedLine}`));
    assert.match(resumed.err, new RegExp(`imported ${n} entries, resumed after ${m.committedEntries} entries`));
    const after = run("node", ["export", dir]).out.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(after.length, n, "every line once; the marker is not exported");
    for (const e of after) {
      assert.equal(e.value, e.key[1]);
      if (before.has(e.key[1])) assert.equal(JSON.stringify(e.version), before.get(e.key[1]), `line ${e.key[1] + 1} was written again`);
    }
    assert.deepEqual(run("node", ["namespaces", dir]).out.trim().split("\n"), ["n"], "the marker is gone");
    userError(run("node", ["import", dir, "--resume"], input), "INVALID_ARGUMENT", /Nothing to resume/);
  });

  test(`[${runtime}] txtdb check, compact, export and import show progress on stderr only with --progress (or a terminal), never on stdout`, () => {
    const dir = tempDir("cli-progress") + "/d";
    const lines = Array.from({ length: 5 }, (_, i) => `{"ns":"n","key":${i},"value":${i}}`).join("\n") + "\n";
    const quiet = run("node", ["import", dir], lines);
    assert.equal(quiet.code, 0, quiet.err);
    assert.equal(quiet.err, "import: imported 5 entries in one transaction\n", "only the summary without --progress");
    const loud = run("bun", ["import", tempDir("cli-progress2") + "/d", "--progress"], lines);
    assert.match(loud.err, /^import: reading and checking stdin…\nimport: checked 5 entries .*one transaction.*\nimport: imported 5 entries in one transaction in \d+\.\d s\n$/);
    for (const rt of RTS) {
      const exp = run(rt, ["export", dir, "--progress"]);
      assert.equal(exp.code, 0, exp.err);
      assert.match(exp.err, /^export: at version \d+…\n(.*\n)*export: exported 5 entries at version \d+ in \d+\.\d s\n$/);
      assert.deepEqual(exp.out.trim().split("\n").map((l) => JSON.parse(l).key), [0, 1, 2, 3, 4], "stdout is data only");
      const plain = run(rt, ["export", dir]);
      assert.match(plain.err, /^export: exported 5 entries at version \d+\n$/);
      for (const c of ["check", "compact"]) {
        const withP = run(rt, [c, dir, "--progress"]);
        assert.equal(withP.code, 0, withP.err);
        assert.match(withP.err, new RegExp(`^${c}: opening the store \\(.*B\\)…\\n${c}: opened; .*\\n${c}: .*\\(\\d+\\.\\d s\\)\\n$`));
        JSON.parse(withP.out);
        const without = run(rt, [c, dir]);
        assert.equal(without.err, "", `${rt} ${c} is quiet without --progress`);
      }
    }
  });
}
