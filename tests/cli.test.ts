/** The command line, run as users run it: `node dist/cli.js`, `deno run scripts/cli.ts`, `bun scripts/cli.ts`. */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";

if (canSpawn) {
  const { spawnSync } = await import("node:child_process");
  const cli = {
    node: ["node", ["dist/cli.js"]],
    deno: ["node_modules/.bin/deno", ["run", "--quiet", "--allow-read", "--allow-write", "scripts/cli.ts"]],
    bun: ["node_modules/.bin/bun", ["scripts/cli.ts"]],
  } as const;
  const run = (rt: keyof typeof cli, args: string[], input?: string) => {
    const [cmd, base] = cli[rt];
    const r = spawnSync(cmd, [...base, ...args], { encoding: "utf8", input });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

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
}
