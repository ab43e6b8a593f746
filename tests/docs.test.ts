/**
 * The reference documentation (docs/) is complete and its examples run, on every runtime:
 *
 * 1. Every runtime export of the package entry (what `import * as txtdb from "txtdb"` gives
 *    this leg: dist/ on Node and Bun, mod.ts on Deno) has a reference entry in docs/*.md: a
 *    heading that names it in backticks, with text under it. The failure lists the missing.
 * 2. So does every name mod.ts exports, types included (read from its source text).
 * 3. Every code of `ErrorCode` (src/errors.ts) has its own heading in docs/errors.md.
 * 4. Every ```ts block of docs/*.md and README.md marked runnable (a `<!-- test -->` or
 *    `<!-- test db: ns1 ns2 -->` line right before the fence; see docs/README.md) runs as an
 *    ES module in a fresh temporary directory, does not throw, finishes within 30 s and
 *    leaves no store open. Its imports of "txtdb", "@txtdb/txtdb", "txtdb/adapters/sim" and
 *    "txtdb/adapters/faults" get the modules this test imported; with `db`, the block gets
 *    `db`, a store opened for it at ./data with those namespaces and closed after it. A
 *    malformed marker fails too.
 *
 * TXTDB_DOCS_PRINT=1 prints what each example printed (Node and Bun; the Deno leg reads no
 * environment), to compare with the `// …` comments that say what it prints.
 *
 * Paths are relative to the repository root, where every leg runs (the Deno leg reads them
 * with --allow-read). Node cannot import TypeScript, so there a block is compiled with
 * esbuild (a devDependency, as in scripts/build-tests.mjs); Deno and Bun import it as is.
 */
import * as fs from "node:fs";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { assert, envVar, runtime, tempDir, test } from "./harness.ts";
import * as txtdb from "txtdb";
import * as sim from "txtdb/adapters/sim";
import * as faults from "txtdb/adapters/faults";

const DOCS_DIR = "docs";
const docFiles = fs.readdirSync(DOCS_DIR).filter((f) => f.endsWith(".md")).sort().map((f) => `${DOCS_DIR}/${f}`);
const read = (file: string) => fs.readFileSync(file, "utf8");

// --- reference entries ---

/** A heading of docs/, with the code spans it holds and whether text follows it. */
interface Heading {
  file: string;
  line: number;
  spans: string[];
  hasText: boolean;
}

/** The headings of `file` (outside code fences), each with the code spans it names. */
function headingsOf(file: string): Heading[] {
  const lines = read(file).split("\n");
  const out: Heading[] = [];
  let fenced = false;
  let current: Heading | undefined;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^\s*(```|~~~)/.test(l)) {
      fenced = !fenced;
      if (current) current.hasText = true; // a signature block counts as the entry's text
      continue;
    }
    if (fenced) continue;
    const h = /^#{1,6}\s+(.*)$/.exec(l);
    if (h) {
      current = { file, line: i + 1, spans: [...h[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!), hasText: false };
      out.push(current);
    } else if (current && l.trim() !== "" && !l.trim().startsWith("<!--")) current.hasText = true;
  }
  return out;
}

const headings = docFiles.flatMap(headingsOf);

/** True when a code span names `name` as a whole identifier: `open(path, options?)`, `Database`, `db.stats(): Stats`. */
function spanNames(span: string, name: string): boolean {
  return new RegExp(`(^|[^\\w$])${name.replace(/\$/g, "\\$")}([^\\w$]|$)`).test(span);
}

/** The names with no heading of their own in docs/ (a heading naming it in backticks, with text under it). */
function undocumented(names: Iterable<string>, within: Heading[] = headings): string[] {
  return [...new Set(names)].filter((name) => !within.some((h) => h.hasText && h.spans.some((s) => spanNames(s, name)))).sort();
}

/** Every name `export { … }` / `export type { … }` (or a declaration) in a module's source exports. */
function exportedNames(source: string): string[] {
  const names: string[] = [];
  for (const m of source.matchAll(/^export\s+(?:type\s+)?\{([^}]*)\}/gm)) {
    for (const part of m[1]!.split(",")) {
      const t = part.trim().replace(/^type\s+/, "");
      if (t) names.push(t.split(/\s+as\s+/).pop()!.trim());
    }
  }
  for (const m of source.matchAll(/^export\s+(?:declare\s+)?(?:async\s+)?(?:function\*?|class|const|let|interface|type|enum)\s+([\w$]+)/gm)) names.push(m[1]!);
  return names;
}

test("docs: every runtime export of the package entry has a reference entry in docs/", () => {
  const names = Object.keys(txtdb);
  assert.ok(names.includes("open"), `the package entry exports open (got ${names.join(", ")})`);
  const missing = undocumented(names);
  assert.deepEqual(missing, [], `Exports of the package entry with no reference entry in docs/*.md: ${missing.join(", ")}. ` +
    "Give each a heading that names it in backticks (### `name(…)`), with its signature and what it does and throws under it");
});

test("docs: every name mod.ts exports, types included, has a reference entry in docs/", () => {
  const names = exportedNames(read("mod.ts"));
  assert.ok(names.includes("open") && names.includes("ErrorCode"), `mod.ts exports were read (got ${names.join(", ")})`);
  const missing = undocumented(names);
  assert.deepEqual(missing, [], `Names exported by mod.ts with no reference entry in docs/*.md: ${missing.join(", ")}. ` +
    "Give each a heading that names it in backticks, with its signature and what it does under it");
});

test("docs: every ErrorCode has its own entry in docs/errors.md", () => {
  const union = /export type ErrorCode\s*=([^;]*);/.exec(read("src/errors.ts"));
  assert.ok(union, "src/errors.ts declares ErrorCode");
  const codes = [...union[1]!.matchAll(/"([A-Z_]+)"/g)].map((m) => m[1]!);
  assert.ok(codes.length >= 10, `ErrorCode was read (got ${codes.join(", ")})`);
  const missing = undocumented(codes, headingsOf(`${DOCS_DIR}/errors.md`));
  assert.deepEqual(missing, [], `Error codes with no heading in docs/errors.md: ${missing.join(", ")}`);
});

// --- runnable examples ---

/** A ```ts block marked runnable. */
interface Example {
  file: string;
  /** The line of the opening fence. */
  line: number;
  code: string;
  /** Namespaces of the `db` the block gets, or undefined when it opens its own store. */
  db: string[] | undefined;
}

const MARKER = /^<!--\s*test(?:\s+db(?::([^>]*?))?)?\s*-->\s*$/;

/** The runnable blocks of `file`, and the markers that do not stand right before a ```ts fence. */
function examplesOf(file: string): { examples: Example[]; malformed: string[] } {
  const lines = read(file).split("\n");
  const examples: Example[] = [];
  const malformed: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (!/^<!--\s*test\b/.test(l)) continue;
    const m = MARKER.exec(l);
    const fence = lines[i + 1]?.trim();
    if (!m || !/^```(ts|typescript)\s*$/.test(fence ?? "")) {
      malformed.push(`${file}:${i + 1}: ${JSON.stringify(l)} must be \`<!-- test -->\` or \`<!-- test db: ns … -->\` on the line right before a \`\`\`ts fence`);
      continue;
    }
    const end = lines.findIndex((x, j) => j > i + 1 && /^\s*```\s*$/.test(x));
    if (end < 0) {
      malformed.push(`${file}:${i + 2}: the code block is never closed`);
      continue;
    }
    const db = /^<!--\s*test\s+db\b/.test(l) ? (m[1] ?? "").split(/[\s,]+/).filter(Boolean) : undefined;
    examples.push({ file, line: i + 2, code: lines.slice(i + 2, end).join("\n"), db });
    i = end;
  }
  return { examples, malformed };
}

const scanned = [...docFiles, "README.md"].map(examplesOf);
const examples = scanned.flatMap((s) => s.examples);

test("docs: runnable markers are well formed, and docs/ has runnable examples", () => {
  assert.deepEqual(scanned.flatMap((s) => s.malformed), []);
  assert.ok(examples.filter((e) => e.file.startsWith(`${DOCS_DIR}/`)).length >= 10, `docs/ has runnable examples (found ${examples.length})`);
});

/** The specifiers a block may import, and the module each stands for. */
const SPECIFIERS: Record<string, "txtdb" | "sim" | "faults"> = {
  "txtdb": "txtdb",
  "@txtdb/txtdb": "txtdb",
  "npm:txtdb": "txtdb",
  "jsr:@txtdb/txtdb": "txtdb",
  "txtdb/adapters/sim": "sim",
  "txtdb/adapters/faults": "faults",
};

type Db = Awaited<ReturnType<typeof txtdb.open>>;

/**
 * The modules one block gets: the package entry with an `open` that keeps every store the
 * block opens, so that the test can close what it left open (an open watcher would keep the
 * process alive) and fail it for that.
 */
function modulesFor(opened: Db[]): Record<string, unknown> {
  const open: typeof txtdb.open = async (...args) => {
    const db = await txtdb.open(...args);
    opened.push(db);
    return db;
  };
  const entry = { ...txtdb, open };
  return Object.fromEntries(Object.entries(SPECIFIERS).map(([spec, m]) => [spec, m === "txtdb" ? entry : m === "sim" ? sim : faults]));
}

function isOpen(db: Db): boolean {
  try {
    db.stats();
    return true;
  } catch {
    return false;
  }
}

/** What a running block reaches through globalThis (its imports, its `db`, its console). */
interface DocsGlobal {
  modules: Record<string, unknown>;
  db: unknown;
  console: Console;
}

/**
 * The block as a module that runs anywhere: each import becomes a destructuring of the
 * module this test imported (type-only imports go), and `db` and `console` come first.
 */
function asModule(e: Example): string {
  const where = `${e.file}:${e.line}`;
  // `import [type] { a, b as c } | * as x from "spec";`, possibly over several lines, possibly followed by a // comment.
  const IMPORT = /^[ \t]*import\s+(type\s+)?(\{[^}]*\}|\*\s+as\s+[\w$]+|[\w$]+)\s+from\s+["']([^"']+)["'];?[ \t]*(?:\/\/.*)?$/gm;
  const body = e.code.replace(IMPORT, (_all, typeOnly: string | undefined, what: string, spec: string) => {
    if (!(spec in SPECIFIERS)) throw new Error(`${where}: a runnable example may import only ${Object.keys(SPECIFIERS).join(", ")}; it imports "${spec}"`);
    if (typeOnly) return "";
    const from = `globalThis.__txtdbDocs.modules[${JSON.stringify(spec)}]`;
    const star = /^\*\s+as\s+([\w$]+)$/.exec(what.trim());
    if (star) return `const ${star[1]} = ${from};`;
    const named = /^\{([\s\S]*)\}$/.exec(what.trim());
    if (!named) throw new Error(`${where}: runnable examples use named imports (import { open } from "txtdb"); got \`import ${what}\``);
    const bindings = named[1]!.split(",").map((b) => b.trim()).filter((b) => b && !b.startsWith("type "))
      .map((b) => b.replace(/\s+as\s+/, ": "));
    return bindings.length ? `const { ${bindings.join(", ")} } = ${from};` : "";
  });
  if (/^\s*import\s/m.test(body)) throw new Error(`${where}: an import this test cannot rewrite is left: use \`import { a, b } from "txtdb"\` on one statement`);
  const prelude = [
    "const console = globalThis.__txtdbDocs.console;",
    e.db ? "const db = globalThis.__txtdbDocs.db;" : "",
  ].join(" ");
  // One line, so that line numbers in a stack trace are the block's own plus one.
  return `${prelude}\n${body}\nexport {};\n`;
}

/** The block compiled for this runtime, written to `dir`; returns its URL. */
async function writeModule(e: Example, dir: string): Promise<string> {
  const source = asModule(e);
  if (runtime !== "node") {
    fs.writeFileSync(`${dir}/example.ts`, source);
    return pathToFileURL(`${dir}/example.ts`).href;
  }
  // Node 20 cannot strip types: esbuild can (a variable specifier keeps bundlers and Deno's
  // module graph away from it; only this leg loads it).
  const name = "esbuild";
  const esbuild = (await import(name)) as { transform(code: string, o: object): Promise<{ code: string }> };
  const { code } = await esbuild.transform(source, { loader: "ts", format: "esm", target: "node20", sourcefile: e.file });
  fs.writeFileSync(`${dir}/example.mjs`, code);
  return pathToFileURL(`${dir}/example.mjs`).href;
}

/** A console that keeps what the block prints, to show it if the block fails. */
function recordingConsole(lines: string[]): Console {
  const keep = (...args: unknown[]) => void lines.push(args.map((a) => typeof a === "string" ? a : safeInspect(a)).join(" "));
  return { ...console, log: keep, info: keep, debug: keep, dir: keep, table: keep } as Console;
}

function safeInspect(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x) ?? String(v);
  } catch {
    return String(v);
  }
}

const EXAMPLE_TIMEOUT_MS = 30_000;

for (const e of examples) {
  test(`docs: the example at ${e.file}:${e.line} runs`, async () => {
    const work = tempDir("docs");
    const cwd = `${work}/cwd`;
    fs.mkdirSync(cwd);
    const url = await writeModule(e, work);
    const printed: string[] = [];
    const here = process.cwd();
    const opened: Db[] = [];
    let db: Db | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let leaked = 0;
    process.chdir(cwd);
    try {
      if (e.db) db = await txtdb.open("./data", { namespaces: e.db });
      (globalThis as unknown as { __txtdbDocs: DocsGlobal }).__txtdbDocs = { modules: modulesFor(opened), db, console: recordingConsole(printed) };
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`did not finish within ${EXAMPLE_TIMEOUT_MS / 1000} s: does it leave a watcher or a store open?`)), EXAMPLE_TIMEOUT_MS);
      });
      await Promise.race([import(url), timedOut]);
    } catch (err) {
      const out = printed.length ? `\nit printed:\n${printed.join("\n")}` : "";
      throw new Error(`The example at ${e.file}:${e.line} threw: ${err instanceof Error ? `${(err as { code?: string }).code ? `${(err as { code?: string }).code}: ` : ""}${err.message}` : String(err)}${out}`, { cause: err });
    } finally {
      clearTimeout(timer);
      leaked = opened.filter(isOpen).length;
      for (const d of [...opened, ...(db ? [db] : [])]) await d.close();
      process.chdir(here);
      delete (globalThis as { __txtdbDocs?: unknown }).__txtdbDocs;
    }
    assert.equal(leaked, 0, `The example at ${e.file}:${e.line} left ${leaked} store(s) open: close them (await using, or db.close())`);
    // TXTDB_DOCS_PRINT=1 shows what every example printed, to compare with its comments.
    if (envVar("TXTDB_DOCS_PRINT")) console.log(`--- ${e.file}:${e.line} printed:\n${printed.join("\n")}`);
    fs.rmSync(work, { recursive: true, force: true });
  });
}
