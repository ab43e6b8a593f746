#!/usr/bin/env node
// The test command: builds, then runs the one suite on Node (against the tsup build, as
// npm users get it), on Deno (against mod.ts with only --allow-read --allow-write, as JSR
// users get it) and on Bun; checks the core imports no runtime API; type-checks with
// deno check; lints the documentation of mod.ts (deno doc --lint); dry-runs the JSR
// publish (any warning fails it). Prints a line per leg and
// ends with `matrix: N passed, M failed`; exits non-zero on any failure.
//
// The etcd tests (tests/etcd*.test.ts) run in legs of their own: they start real etcd
// clusters, so Deno needs --allow-net, --allow-run and --allow-env for them, flags the
// main Deno leg must not have. Without an etcd binary they are skipped with a message,
// or count as failed when CI is set (.ci/run installs etcd).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";

const bin = (name) => `node_modules/.bin/${name}`;
const quick = process.argv.includes("--quick");
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
const selected = readdirSync("tests").filter((f) => f.endsWith(".test.ts")).filter((f) => !only || f.includes(only)).sort();
const isEtcdTest = (f) => /^etcd.*\.test\.ts$/.test(f);
const testFiles = selected.filter((f) => !isEtcdTest(f));
const etcdFiles = selected.filter(isEtcdTest);
const legs = [];
const LEG_TIMEOUT_MS = 20 * 60_000;

function run(cmd, args, opts = {}) {
  const t0 = Date.now();
  const env = { ...process.env, NO_COLOR: "1" };
  delete env.FORCE_COLOR;
  // Bounded: a hung leg fails with a message instead of eating CI's whole time budget.
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 256 * 1024 * 1024, env, timeout: LEG_TIMEOUT_MS, killSignal: "SIGKILL", ...opts });
  if (r.error?.code === "ETIMEDOUT") r.stderr = (r.stderr ?? "") + `\n${cmd} ${args.slice(0, 3).join(" ")} … did not finish within ${LEG_TIMEOUT_MS / 60000} minutes and was killed`;
  return { ...r, ms: Date.now() - t0, out: ((r.stdout ?? "") + (r.stderr ?? "")).replace(/\x1b\[[0-9;]*m/g, "") };
}

function step(name, cmd, args, opts, { failOn } = {}) {
  const r = run(cmd, args, opts);
  // failOn: output that fails the step even when the command exits 0 (deno publish warnings).
  const ok = r.status === 0 && !(failOn && failOn.test(r.out));
  legs.push({ name, passed: ok ? 1 : 0, failed: ok ? 0 : 1, ms: r.ms });
  console.log(`${ok ? "ok  " : "FAIL"} ${name} (${r.ms} ms)`);
  if (!ok) console.log(indent(r.out));
  return ok;
}

/**
 * The report of each failed test in a leg's output (TAP "not ok" with its YAML block, Deno's
 * and Bun's failure lines), at most 40 of them and 20,000 characters in all.
 */
function failureBlocks(out) {
  const lines = out.split("\n");
  const blocks = [];
  for (let i = 0; i < lines.length && blocks.length < 40; i++) {
    const l = lines[i];
    if (/^\s*not ok \d+/.test(l)) {
      const depth = l.search(/\S/);
      let j = i + 1;
      while (j < lines.length && j < i + 60 && (lines[j].search(/\S/) > depth || lines[j].trim() === "")) j++;
      blocks.push(lines.slice(i, j).join("\n"));
      i = j - 1;
    } else if (/^\(fail\) /.test(l.trim())) {
      // Bun prints a failure's error and stack before its "(fail)" line: back to the end of
      // the test before it (its own "(pass)", "(fail)" or "(skip)" line), 60 lines at most.
      let k = i - 1;
      while (k > 0 && k > i - 60 && !/^\((pass|fail|skip)\) /.test(lines[k - 1].trim())) k--;
      blocks.push(lines.slice(Math.max(0, k), i + 1).join("\n"));
    } else if (/=> .*FAILED|^error: /.test(l.trim())) {
      blocks.push(lines.slice(Math.max(0, i - 2), i + 8).join("\n"));
    }
  }
  return blocks.join("\n").slice(0, 20_000);
}

function indent(text) {
  return text.split("\n").map((l) => "    " + l).join("\n");
}

function leg(name, cmd, args, parse, opts) {
  const r = run(cmd, args, opts);
  const { passed, failed } = parse(r.out);
  // A runner that crashed before reporting counts as a failure, never as a pass.
  const crashed = r.status !== 0 && failed === 0;
  const total = { passed, failed: failed + (crashed ? 1 : 0) };
  legs.push({ name, ...total, ms: r.ms });
  const ok = total.failed === 0 && passed > 0;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${passed} passed, ${total.failed} failed (${r.ms} ms)`);
  if (!ok) {
    // The failures themselves first (they may lie far before the tail printed below).
    const failures = failureBlocks(r.out);
    if (failures) console.log(indent(`failures:\n${failures}\n--- the leg's last output:`));
  }
  if (!ok || process.env.TXTDB_VERBOSE) console.log(indent(r.out.slice(-60_000)));
  if (passed === 0 && total.failed === 0) legs.at(-1).failed = 1; // a leg that ran no test fails
}

const num = (re, text) => {
  let total = 0;
  for (const m of text.matchAll(re)) total = Number(m[1]);
  return total;
};

if (!step("build (tsup)", "npm", ["run", "--silent", "build"])) finish();
step("core imports no runtime API", process.execPath, ["scripts/check-core.mjs"]);
if (!step("build tests (esbuild)", process.execPath, ["scripts/build-tests.mjs"])) finish();

// Every test file but the etcd ones (their legs follow).
if (testFiles.length > 0) {
  leg("node (dist)", process.execPath,
    ["--test", "--test-reporter=tap", "--test-concurrency=1", ...testFiles.map((f) => `.build-tests/${f.replace(/\.ts$/, ".js")}`)],
    (out) => ({ passed: num(/^# pass (\d+)/gm, out), failed: num(/^# fail (\d+)/gm, out) }));

  leg("deno (mod.ts, --allow-read --allow-write)", bin("deno"),
    ["test", "--quiet", "--no-check", "--allow-read", "--allow-write", ...testFiles.map((f) => `tests/${f}`)],
    (out) => {
      const m = [...out.matchAll(/(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].at(-1);
      return { passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 0 };
    });

  // Deno with --allow-ffi has the frontier mirror (System V shared memory) and statx(2) for
  // the identity checks of every commit, as Node and Bun do.
  const ffiFiles = ["mirror.test.ts", "identity.test.ts"].filter((f) => testFiles.includes(f));
  if (ffiFiles.length > 0) {
    leg("deno --allow-ffi (the frontier mirror, statx)", bin("deno"),
      ["test", "--quiet", "--no-check", "--allow-read", "--allow-write", "--allow-ffi", ...ffiFiles.map((f) => `tests/${f}`)],
      (out) => {
        const m = [...out.matchAll(/(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].at(-1);
        return { passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 0 };
      });
  }

  leg("bun", bin("bun"), ["test", "--timeout", "120000", ...testFiles.map((f) => `./tests/${f}`)],
    (out) => ({ passed: num(/^\s*(\d+) pass$/gm, out), failed: num(/^\s*(\d+) fail$/gm, out) }));
}

if (etcdFiles.length > 0) etcdLegs();

/** The etcd legs: the etcd test files once per runtime, against real etcd clusters. */
function etcdLegs() {
  const dirs = (process.env.PATH ?? "").split(":").filter(Boolean);
  const etcd = [...dirs, "/usr/bin"].map((d) => `${d}/etcd`).find((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
  if (!etcd) {
    const hint = "no etcd binary in PATH or at /usr/bin/etcd; install etcd 3.4+ (Debian/Ubuntu: apt-get install -y etcd-server)";
    if (process.env.CI) {
      legs.push({ name: "etcd", passed: 0, failed: 1, ms: 0 });
      console.log(`FAIL etcd legs: ${hint}`);
    } else {
      console.log(`skip etcd legs (${etcdFiles.join(", ")}): ${hint}`);
    }
    return;
  }
  leg("etcd: node (dist)", process.execPath,
    ["--test", "--test-reporter=tap", "--test-concurrency=1", ...etcdFiles.map((f) => `.build-tests/${f.replace(/\.ts$/, ".js")}`)],
    (out) => ({ passed: num(/^# pass (\d+)/gm, out), failed: num(/^# fail (\d+)/gm, out) }));
  // The etcd client needs the network; the cluster harness starts etcd (run) and finds it in PATH (env).
  leg("etcd: deno (mod.ts, + --allow-net --allow-run --allow-env)", bin("deno"),
    ["test", "--quiet", "--no-check", "--allow-read", "--allow-write", "--allow-net", "--allow-run", "--allow-env", ...etcdFiles.map((f) => `tests/${f}`)],
    (out) => {
      const m = [...out.matchAll(/(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].at(-1);
      return { passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 0 };
    });
  leg("etcd: bun", bin("bun"), ["test", "--timeout", "120000", ...etcdFiles.map((f) => `./tests/${f}`)],
    (out) => ({ passed: num(/^\s*(\d+) pass$/gm, out), failed: num(/^\s*(\d+) fail$/gm, out) }));
}

// Every export of mod.ts documented, no public type naming a private one (JSR scores and
// shows exactly this); any lint error fails it.
step("deno doc --lint mod.ts", bin("deno"), ["doc", "--lint", "mod.ts"], {}, { failOn: /^error/m });
step("deno check", bin("deno"), ["check", "--quiet", "mod.ts", "src/internal.ts", "adapters/deno.ts", "adapters/sim.ts", "cli/main.ts"]);
// A warning (unanalyzable-dynamic-import, excluded-module, …) fails it: JSR would publish it.
step("deno publish --dry-run, no warnings", bin("deno"), ["publish", "--dry-run", "--allow-dirty", "--quiet"], {}, { failOn: /^warning\[|^error\[/m });
if (!quick && !only && process.env.TXTDB_SKIP_BENCH !== "1") {
  try {
    readdirSync("scripts/bench");
    step("bench --quick (runs, not timed)", process.execPath, ["scripts/bench/run.mjs", "--quick", "--smoke"]);
  } catch { /* no bench yet */ }
}
finish();

function finish() {
  const passed = legs.reduce((a, l) => a + l.passed, 0);
  const failed = legs.reduce((a, l) => a + l.failed, 0);
  console.log(`matrix: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}
