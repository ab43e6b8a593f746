// The core (src/) may depend only on the Platform port: no node:, bun:, deno globals,
// no adapter, no process/Buffer. This keeps a fourth runtime one adapter file away.
import { readdirSync, readFileSync } from "node:fs";

const forbidden = [
  [/from\s+["'](node:|bun:|npm:|jsr:)/, "runtime module import"],
  [/import\(\s*["'](node:|bun:)/, "runtime module import"],
  [/from\s+["']\.\.\/adapters\//, "adapter import"],
  [/\bDeno\./, "Deno global"],
  [/\bBun\./, "Bun global"],
  [/\bprocess\.(env|argv|pid|exit|platform|hrtime)/, "process global"],
  [/\bBuffer\./, "Buffer global"],
  [/\brequire\(/, "require()"],
];
let problems = 0;
// src/ and its folders (src/etcd/), but not src/vendor/: vendored code is checked where it comes from.
const files = readdirSync("src", { recursive: true }).map(String).filter((f) => f.endsWith(".ts") && !f.startsWith("vendor/"));
for (const file of files) {
  const lines = readFileSync(`src/${file}`, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (/^\s*(\*|\/\/)/.test(line)) return; // comments may name them
    for (const [re, what] of forbidden) {
      if (re.test(line)) {
        console.log(`src/${file}:${i + 1}: ${what}: ${line.trim()}`);
        problems++;
      }
    }
  });
}
if (problems) {
  console.log(`${problems} runtime-specific reference(s) in the core`);
  process.exit(1);
}
