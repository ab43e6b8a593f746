/**
 * The package as users get it: `npm pack` of a copy of the working tree without `dist/`
 * (as a fresh clone: `prepack` must build), the tarball installed into a temporary app and
 * used there by Node (ESM and CommonJS), Bun, Deno (the npm package, with only
 * --allow-read --allow-write) and TypeScript; the same app bundled by esbuild and run by
 * Node, and compiled by `bun build --compile` and run from elsewhere. Bundles must see
 * which adapter `open()` loads (src/platform.ts), and hold only their runtime's adapter.
 * Also: the lockfile survives a fresh `npm install` and `npm ci`; package.json and deno.json
 * agree.
 *
 * The metadata check runs everywhere; the rest in the Node leg only: it starts every runtime
 * itself, and runs once (~20-30 s).
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";

test(`[${runtime}] package.json and deno.json agree: name, version, license, exports (npm adds only the Node and Bun adapters)`, () => {
  const npm = JSON.parse(fs.readFileSync("package.json", "utf8"));
  const jsr = JSON.parse(fs.readFileSync("deno.json", "utf8"));
  assert.equal(jsr.name, `@txtdb/${npm.name}`);
  assert.equal(jsr.version, npm.version);
  assert.equal(jsr.license, npm.license);
  const npmOnly = Object.keys(npm.exports).filter((k) => !(k in jsr.exports));
  assert.deepEqual(npmOnly.sort(), ["./adapters/bun", "./adapters/node"], "JSR ships what npm does, less the adapters Deno cannot run");
  // The command line: on JSR an export (`deno run jsr:@txtdb/txtdb/cli`), on npm the bin (`npx txtdb`).
  assert.deepEqual(Object.keys(jsr.exports).filter((k) => !(k in npm.exports)), ["./cli"]);
  assert.equal(npm.bin.txtdb, "./dist/cli.js");
  for (const [k, v] of Object.entries(npm.exports as Record<string, Record<string, string>>)) assert.ok(v.types, `${k} has types`);
  assert.equal(npm.types, npm.exports["."].types);
  assert.equal(jsr.imports["#platform"], "./adapters/deno.ts");
});

if (runtime === "node") {
  const { spawnSync } = await import("node:child_process");
  const path = await import("node:path");
  const root = process.cwd();
  const bin = (name: string) => path.join(root, "node_modules/.bin", name);
  const fixtures = path.join(root, "tests/fixtures/package");

  /** Runs a command, bounded in time; fails the test with its output if it exits non-zero. */
  const run = (cmd: string, args: string[], cwd: string, timeoutMs = 120_000) => {
    const env = { ...process.env, NO_COLOR: "1" };
    delete env.FORCE_COLOR;
    delete env.npm_config_prefix; // set when run under `npm test`; would redirect `npm install`
    const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL", env, maxBuffer: 64 * 1024 * 1024 });
    const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    assert.equal(r.status, 0, `${cmd} ${args.join(" ")} (in ${cwd}) ${r.error ? r.error.message : `exited ${r.status}`}:\n${out.slice(-4000)}`);
    return { out, stdout: r.stdout };
  };
  const expectOk = (r: { out: string }) => assert.match(r.out, /^ok first 42$/m, r.out);

  /** The README's quick starts: each block after a `<!-- quickstart: <command …> <file> -->` line. */
  const quickStarts = (() => {
    const lines = fs.readFileSync(path.join(root, "README.md"), "utf8").split("\n");
    const out: { command: string[]; file: string; code: string; line: number }[] = [];
    lines.forEach((l, i) => {
      const m = /^<!--\s*quickstart:\s*(.+?)\s*-->$/.exec(l.trim());
      if (!m) return;
      assert.match(lines[i + 1] ?? "", /^```(js|ts)$/, `README.md:${i + 1}: a quickstart marker stands right before a code fence`);
      const end = lines.findIndex((x, j) => j > i + 1 && x === "```");
      const command = m[1]!.split(/\s+/);
      out.push({ command, file: command.at(-1)!, code: lines.slice(i + 2, end).join("\n") + "\n", line: i + 2 });
    });
    return out;
  })();
  /** Runs one quick start as written, in `dir`; it prints the value it stored. */
  const runQuickStart = (q: (typeof quickStarts)[number], dir: string, env: Record<string, string> = {}) => {
    fs.writeFileSync(path.join(dir, q.file), q.code);
    const [cmd, ...args] = q.command;
    const exe = cmd === "node" ? process.execPath : bin(cmd!);
    const r = spawnSync(exe, args, { cwd: dir, encoding: "utf8", timeout: 120_000, killSignal: "SIGKILL", env: { ...process.env, NO_COLOR: "1", ...env } });
    const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    assert.equal(r.status, 0, `README.md:${q.line}: \`${q.command.join(" ")}\` ${r.error ? r.error.message : `exited ${r.status}`}:\n${out.slice(-4000)}`);
    assert.match(r.stdout, /^1$/m, `README.md:${q.line} printed the value it stored:\n${out}`);
  };

  let tarball = "";
  let app = "";

  test(`[${runtime}] the lockfile is complete: npm install leaves package-lock.json byte for byte, and npm ci accepts it`, () => {
    const dir = tempDir("pkg-lock");
    for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(root, f), path.join(dir, f));
    const before = fs.readFileSync(path.join(dir, "package-lock.json"), "utf8");
    // What a fresh clone's `npm install` does to the lockfile, without installing anything.
    run("npm", ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], dir);
    const after = fs.readFileSync(path.join(dir, "package-lock.json"), "utf8");
    if (after !== before) {
      const added = after.split("\n").length - before.split("\n").length;
      assert.fail(`npm install rewrote package-lock.json (${added >= 0 ? "+" : ""}${added} lines): regenerate it with this npm (${run("npm", ["--version"], dir).stdout.trim()}) and commit it`);
    }
    run("npm", ["ci", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], dir);
  });

  test(`[${runtime}] npm pack of a fresh copy builds dist/ (prepack) and ships what users need, not tests`, () => {
    const work = tempDir("pkg");
    const clone = path.join(work, "clone");
    // The working tree as a fresh clone has it: tracked and new files, nothing ignored (no dist/).
    const files = run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root).stdout.split("\0").filter(Boolean);
    for (const f of files) {
      if (f === "node_modules" || !fs.lstatSync(path.join(root, f), { throwIfNoEntry: false })?.isFile()) continue; // deleted, or a link
      fs.mkdirSync(path.dirname(path.join(clone, f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(clone, f));
    }
    assert.equal(fs.existsSync(path.join(clone, "dist")), false);
    fs.symlinkSync(path.join(root, "node_modules"), path.join(clone, "node_modules"));
    run("npm", ["pack", "--pack-destination", work], clone);
    tarball = path.join(work, fs.readdirSync(work).find((f) => f.endsWith(".tgz"))!);
    const names = run("tar", ["tzf", tarball], work).stdout.split("\n").filter(Boolean).map((n) => n.replace(/^package\//, ""));
    for (const need of ["package.json", "README.md", "LICENSE", "CHANGELOG.md", "dist/mod.js", "dist/mod.d.ts", "dist/cli.js", "dist/internal.js",
      "dist/adapters/node.js", "dist/adapters/bun.js", "dist/adapters/deno.js", "dist/adapters/deno.d.ts",
      // The reference ships with the package.
      ...fs.readdirSync(path.join(root, "docs")).map((f) => `docs/${f}`)]) {
      assert.ok(names.includes(need), `${need} is in the package: ${names.join(", ")}`);
    }
    assert.deepEqual(names.filter((n) => /^(tests|src|scripts|adapters)\//.test(n) || n.endsWith(".ts") && !n.endsWith(".d.ts")), [], "no sources or tests");
    assert.deepEqual(names.filter((n) => /adapters\/(sim|faults)\.js\.map$/.test(n)), [], "no maps of the test-only adapters");
  });

  test(`[${runtime}] the packed tarball installs into an app and runs there on Node (ESM and CommonJS), Bun and Deno`, () => {
    assert.ok(tarball, "the pack test ran first");
    app = path.join(path.dirname(tarball), "app");
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true, type: "module" }));
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", tarball], app, 180_000);
    // No native module txtdb never loads: the install holds txtdb and koffi (the C-library
    // bridge the Node adapter loads), nothing else; no cbor-extract, and nothing but koffi
    // with install scripts or compiled .node files.
    const installed = fs.readdirSync(path.join(app, "node_modules")).filter((n) => !n.startsWith("."))
      .flatMap((n) => n.startsWith("@") ? fs.readdirSync(path.join(app, "node_modules", n)).map((m) => `${n}/${m}`) : [n]).sort();
    assert.deepEqual(installed, ["koffi", "txtdb"], "the packages an install of txtdb brings");
    const native: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.node$|^binding\.gyp$/.test(e.name) && !p.includes(`${path.sep}node_modules${path.sep}koffi${path.sep}`)) native.push(p);
      }
    };
    walk(path.join(app, "node_modules"));
    assert.deepEqual(native, [], "no native module besides koffi");
    const scripts = JSON.parse(fs.readFileSync(path.join(app, "node_modules/txtdb/package.json"), "utf8")).scripts ?? {};
    assert.deepEqual(Object.keys(scripts).filter((s) => /^(pre|post)?install$/.test(s)), [], "txtdb runs no install script");
    for (const f of ["app.mjs", "app.cjs", "types-main.ts", "types-subpaths.ts"]) fs.copyFileSync(path.join(fixtures, f), path.join(app, f));
    const store = (name: string) => path.join(app, "stores", name);
    expectOk(run(process.execPath, ["app.mjs", store("node-esm")], app));
    expectOk(run(process.execPath, ["app.cjs", store("node-cjs")], app));
    expectOk(run(bin("bun"), ["app.mjs", store("bun")], app));
    // Deno on the npm package: the "deno" condition picks the Deno adapter, so no --allow-ffi.
    expectOk(run(bin("deno"), ["run", "--quiet", "--allow-read", "--allow-write", "app.mjs", store("deno")], app));
    // The README's quick starts for the npm package, as written (Node ESM and CommonJS, Bun).
    const npmQuickStarts = quickStarts.filter((q) => q.command[0] !== "deno");
    assert.deepEqual(npmQuickStarts.map((q) => q.command.join(" ")), ["node app.mjs", "node app.cjs", "bun app.ts"], "the README's quick starts for npm");
    const readme = path.join(app, "readme");
    fs.mkdirSync(readme);
    fs.symlinkSync(path.join(app, "node_modules"), path.join(readme, "node_modules"));
    for (const q of npmQuickStarts) runQuickStart(q, readme);
  });

  test(`[${runtime}] the installed package type-checks with moduleResolution node (top-level types) and bundler (every adapter subpath)`, () => {
    assert.ok(app, "the install test ran first");
    const tsc = bin("tsc");
    const common = ["--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--types", "node", "--typeRoots", path.join(root, "node_modules/@types")];
    run(tsc, [...common, "--module", "commonjs", "--moduleResolution", "node", "types-main.ts"], app);
    run(tsc, [...common, "--module", "esnext", "--moduleResolution", "bundler", "types-main.ts", "types-subpaths.ts"], app);
  });

  test(`[${runtime}] as JSR users get it: the publish set, its npm packages resolved by Deno itself into a fresh DENO_DIR, run with only --allow-read --allow-write`, () => {
    // The files `deno publish` uploads, as its dry run lists them.
    const listed = run(bin("deno"), ["publish", "--dry-run", "--allow-dirty"], root).out;
    const files = [...listed.matchAll(/^\s+file:\/\/(\S+) \(/gm)].map((m) => path.relative(root, m[1]!));
    assert.ok(files.includes("mod.ts") && files.includes("deno.json"), `the dry run lists the publish set: ${files.join(", ")}`);
    for (const f of fs.readdirSync(path.join(root, "docs"))) assert.ok(files.includes(`docs/${f}`), `docs/${f} (the reference) is published on JSR`);
    for (const f of ["src/vendor/cbor-x/encode.js", "src/vendor/cbor-x/decode.js", "src/vendor/cbor-x/LICENSE"]) assert.ok(files.includes(f), `${f} is published on JSR`);
    const work = tempDir("jsr");
    const pkg = path.join(work, "txtdb");
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(pkg, f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(pkg, f));
    }
    // The consumer's own configuration: the package as a workspace member (its deno.json
    // imports apply to its files, as on JSR), no node_modules, nothing of this repository's.
    const config = JSON.parse(fs.readFileSync(path.join(pkg, "deno.json"), "utf8"));
    delete config.nodeModulesDir; // this repository's setting for its own tests; JSR consumers decide their own
    fs.writeFileSync(path.join(pkg, "deno.json"), JSON.stringify(config, null, 2));
    fs.writeFileSync(path.join(work, "deno.json"), JSON.stringify({ workspace: ["./txtdb"] }, null, 2));
    for (const f of ["jsr-app.ts", "jsr-cli.ts"]) fs.copyFileSync(path.join(fixtures, f), path.join(work, f));
    const denoDir = path.join(work, "deno-dir");
    const deno = (args: string[]) => {
      const r = spawnSync(bin("deno"), args, { cwd: work, encoding: "utf8", timeout: 180_000, killSignal: "SIGKILL", env: { ...process.env, DENO_DIR: denoDir, NO_COLOR: "1" } });
      const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
      assert.equal(r.status, 0, `deno ${args.join(" ")} (in ${work}) ${r.error ? r.error.message : `exited ${r.status}`}:\n${out.slice(-4000)}`);
      return out;
    };
    deno(["check", "--quiet", "jsr-app.ts", "jsr-cli.ts"]);
    expectOk({ out: deno(["run", "--quiet", "--allow-read", "--allow-write", "jsr-app.ts", path.join(work, "store")]) });
    assert.match(deno(["run", "--quiet", "--allow-read", "--allow-write", "jsr-cli.ts", "get", path.join(work, "store"), "items", "[\"a\",1]"]), /first/);
    // The README's Deno quick start, as written, against the publish set.
    const denoQuickStarts = quickStarts.filter((q) => q.command[0] === "deno");
    assert.equal(denoQuickStarts.length, 1, "the README has a quick start for Deno");
    runQuickStart(denoQuickStarts[0]!, work, { DENO_DIR: denoDir });
    assert.ok(!fs.existsSync(path.join(work, "node_modules")), "no node_modules was made");
    // What Deno fetched from npm for the package: nothing (cbor-x is vendored; koffi belongs
    // to the Node adapter, which JSR does not ship).
    const registry = path.join(denoDir, "npm", "registry.npmjs.org");
    const fetched = fs.existsSync(registry) ? fs.readdirSync(registry).sort() : [];
    assert.deepEqual(fetched, [], "npm packages a JSR user's Deno fetches for txtdb");
  });

  /**
   * The engine side of the public classes: what `db.`, `tx.` and `snap.` must not offer (nor
   * autocomplete), and the internal types behind it.
   */
  const INTERNAL_MEMBERS: Record<string, string[]> = {
    Database: ["index", "init", "pin", "commit", "ensureOpen", "platform", "limits"],
    Transaction: ["requestNamespaceOp", "ctx", "snap", "usable", "nsId", "readKey", "entryOf", "valueOf", "listRange", "streamsLists", "holdForStream"],
    Snapshot: ["expire", "ctx", "snap", "usable", "nsId", "readKey", "entryOf", "valueOf", "listRange", "streamsLists", "holdForStream"],
  };
  const INTERNAL_TYPES = ["TxHost", "TxState", "ReadContext", "SnapshotReader", "DatabaseInternals", "Index", "Limits", "NamespaceRequest", "WriteOp", "Version", "Tail", "Pins"];

  test(`[${runtime}] the published types (dist/*.d.ts) keep Database, Transaction and Snapshot to their public members`, () => {
    const files = fs.readdirSync("dist").filter((f) => f.endsWith(".d.ts")).map((f) => fs.readFileSync(path.join("dist", f), "utf8"));
    for (const [cls, members] of Object.entries(INTERNAL_MEMBERS)) {
      const text = files.find((t) => new RegExp(`^declare class ${cls}\\b`, "m").test(t));
      assert.ok(text, `dist/*.d.ts declares class ${cls}`);
      const start = text.search(new RegExp(`^declare class ${cls}\\b`, "m"));
      const decl = text.slice(start, text.indexOf("\n}", start) + 2).replace(/\/\*[\s\S]*?\*\//g, "");
      assert.match(decl, new RegExp(`^declare class ${cls} \\{`), `${cls} neither extends nor implements an internal type:\n${decl.slice(0, 200)}`);
      assert.match(decl, /^\s*private constructor\(\);$/m, `${cls}'s constructor is private and shows no parameters`);
      const declared = [...decl.matchAll(/^ {4}(?:(?:readonly|private|protected|static|get|set|async) )*([\w$]+)[<(:?;]/gm)].map((m) => m[1]!);
      assert.ok(declared.includes("get") || declared.includes("close"), `members of ${cls} were read: ${declared.join(", ")}`);
      const leaked = declared.filter((n) => members.includes(n) && !(cls === "Transaction" && n === "commit"));
      assert.deepEqual(leaked, [], `${cls} in dist/*.d.ts shows internal members`);
      const types = INTERNAL_TYPES.filter((t) => new RegExp(`\\b${t}\\b`).test(decl));
      assert.deepEqual(types, [], `${cls} in dist/*.d.ts mentions internal types`);
    }
    const modExports = fs.readFileSync("dist/mod.d.ts", "utf8");
    assert.deepEqual(INTERNAL_TYPES.filter((t) => new RegExp(`\\b${t}\\b`).test(modExports)), [], "dist/mod.d.ts exports no internal type");
  });

  test(`[${runtime}] the JSR types (deno doc of mod.ts) keep Database, Transaction and Snapshot to their public members`, () => {
    const doc = JSON.parse(run(bin("deno"), ["doc", "--json", "mod.ts"], root).stdout) as {
      nodes: Record<string, { symbols: { name: string; declarations: { kind: string; def: ClassDef }[] }[] }>;
    };
    interface ClassDef {
      extends?: string | null;
      implements?: unknown[];
      constructors?: { accessibility?: string }[];
      properties?: { name: string; accessibility?: string }[];
      methods?: { name: string; accessibility?: string }[];
    }
    const symbols = Object.values(doc.nodes).flatMap((n) => n.symbols);
    for (const [cls, members] of Object.entries(INTERNAL_MEMBERS)) {
      const def = symbols.find((x) => x.name === cls)?.declarations.find((d) => d.kind === "class")?.def;
      assert.ok(def, `mod.ts exports class ${cls}`);
      assert.equal(def.extends ?? null, null, `${cls} extends nothing`);
      assert.deepEqual(def.implements ?? [], [], `${cls} implements nothing`);
      assert.deepEqual((def.constructors ?? []).filter((c) => c.accessibility !== "private"), [], `${cls} has no public constructor`);
      const visible = [...def.properties ?? [], ...def.methods ?? []].filter((m) => m.accessibility !== "private").map((m) => m.name);
      assert.ok(visible.includes("get") || visible.includes("close"), `members of ${cls} were read: ${visible.join(", ")}`);
      assert.deepEqual(visible.filter((n) => members.includes(n) && !(cls === "Transaction" && n === "commit")), [], `${cls} on JSR shows internal members`);
    }
  });

  test(`[${runtime}] an esbuild bundle of the app runs on Node and holds only the Node adapter`, () => {
    assert.ok(app, "the install test ran first");
    // koffi is a native module (prebuilt .node files): bundlers keep it external.
    run(bin("esbuild"), ["app.mjs", "--bundle", "--platform=node", "--format=esm", "--external:koffi", "--log-level=warning", "--outfile=bundle/app.mjs"], app);
    const bundled = fs.readFileSync(path.join(app, "bundle/app.mjs"), "utf8");
    assert.doesNotMatch(bundled, /bun:ffi|Deno\.FsFile/, "no other runtime's adapter in the bundle");
    assert.doesNotMatch(bundled, /import\(\s*["'`]#platform/, "the adapter import is resolved at bundle time");
    expectOk(run(process.execPath, [path.join(app, "bundle/app.mjs"), path.join(app, "stores", "esbuild")], tempDir("pkg-run")));
  });

  test(`[${runtime}] a bun build --compile binary of the app runs from another directory`, () => {
    assert.ok(app, "the install test ran first");
    const exe = path.join(app, "bundle", "app-bin");
    run(bin("bun"), ["build", "--compile", "app.mjs", "--outfile", exe], app);
    // Run from elsewhere, and with the app's files out of reach: the binary holds all it needs.
    const elsewhere = tempDir("pkg-bin");
    fs.renameSync(exe, path.join(elsewhere, "app-bin"));
    fs.renameSync(path.join(app, "node_modules"), path.join(app, "node_modules.away"));
    try {
      expectOk(run(path.join(elsewhere, "app-bin"), [path.join(elsewhere, "store")], elsewhere));
    } finally {
      fs.renameSync(path.join(app, "node_modules.away"), path.join(app, "node_modules"));
    }
  });
}
