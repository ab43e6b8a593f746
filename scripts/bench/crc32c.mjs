#!/usr/bin/env node
// Throughput of crc32c() (src/crc32c.ts) in MB/s at 4 B, 16 B, 64 B, 256 B, 4 KiB and 1 MiB,
// on whichever runtime runs it:
//
//   node scripts/bench/crc32c.mjs
//   node_modules/.bin/deno run --allow-read scripts/bench/crc32c.mjs
//   node_modules/.bin/bun scripts/bench/crc32c.mjs
//
// Options: --impl=<path to a .ts file exporting crc32c> (default src/crc32c.ts; to compare
// with another version), --ms=<time per measurement> (default 300), --sizes=4,16,... (bytes),
// --json.
//
// Two rows: "aligned" inputs start at a multiple of 8 bytes in their ArrayBuffer (a block
// read into a fresh buffer); "unaligned" ones start at 1 mod 4 (a frame body inside a log
// buffer). Each size checksums a rotating set of distinct inputs so no run hits a single
// cached line. The figure is the best of 5 rounds, after a warm-up.
import process from "node:process";
import { pathToFileURL } from "node:url";

const opt = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const MS = Number(opt("ms") ?? 300);
const json = process.argv.includes("--json");
const implUrl = opt("impl") ? pathToFileURL(opt("impl")).href : new URL("../../src/crc32c.ts", import.meta.url).href;
const runtime = typeof globalThis.Deno !== "undefined" ? "deno" : typeof globalThis.Bun !== "undefined" ? "bun" : "node";

/** Imports a .ts module: directly on Deno and Bun, bundled by esbuild (in memory) on Node. */
async function importTs(url) {
  if (runtime !== "node") return import(url);
  const { fileURLToPath } = await import("node:url");
  const { build } = await import("esbuild");
  const out = await build({
    entryPoints: [fileURLToPath(url)], bundle: true, write: false, format: "esm", platform: "neutral", target: "node20", logLevel: "warning",
  });
  return import("data:text/javascript;base64," + Buffer.from(out.outputFiles[0].text).toString("base64"));
}

const { crc32c } = await importTs(implUrl);
if (crc32c(new TextEncoder().encode("123456789")) !== 0xe3069283) throw new Error("crc32c gives a wrong check value");

const SIZES = opt("sizes")?.split(",").map(Number) ?? [4, 16, 64, 256, 4096, 1 << 20];
const label = (n) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`);

// Deterministic pseudo-random bytes.
const pool = new Uint8Array(8 << 20);
let s = 0x9e3779b9;
for (let i = 0; i < pool.length; i++) {
  s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
  pool[i] = s & 0xff;
}

function inputs(size, misalign) {
  const count = Math.max(4, Math.min(1024, (4 << 20) / size));
  const stride = Math.max(64, size + 8) & ~7;
  const out = [];
  for (let k = 0; k < count; k++) {
    const at = ((k * stride) % (pool.length - size - 16)) & ~7;
    out.push(pool.subarray(at + misalign, at + misalign + size));
  }
  return out;
}

let sink = 0;
function round(bufs, ms) {
  let calls = 0, bytes = 0;
  const t0 = performance.now();
  let t = t0;
  const batch = bufs.length;
  while (t - t0 < ms) {
    for (let k = 0; k < batch; k++) sink ^= crc32c(bufs[k]);
    calls += batch;
    bytes += batch * bufs[0].length;
    t = performance.now();
  }
  return { mbs: bytes / 1e6 / ((t - t0) / 1000), nsPerCall: ((t - t0) * 1e6) / calls };
}

function measure(size, misalign) {
  const bufs = inputs(size, misalign);
  round(bufs, MS / 2); // warm-up
  let best = { mbs: 0, nsPerCall: Infinity };
  for (let r = 0; r < 5; r++) {
    const m = round(bufs, MS / 5 + 20);
    if (m.mbs > best.mbs) best = m;
  }
  return best;
}

const results = {};
for (const [name, misalign] of [["aligned", 0], ["unaligned", 1]]) {
  results[name] = {};
  for (const size of SIZES) results[name][label(size)] = measure(size, misalign);
}

if (json) {
  console.log(JSON.stringify({ runtime, impl: implUrl, results }));
} else {
  const cols = SIZES.map(label);
  console.log(`crc32c on ${runtime} (${implUrl.replace(/^.*\//, "")}), MB/s (ns per call)`);
  console.log(["".padEnd(10), ...cols.map((c) => c.padStart(18))].join(""));
  for (const name of Object.keys(results)) {
    const cells = cols.map((c) => `${results[name][c].mbs.toFixed(0)} (${results[name][c].nsPerCall.toFixed(c.endsWith("MiB") ? 0 : 1)})`.padStart(18));
    console.log([name.padEnd(10), ...cells].join(""));
  }
}
if (sink === 0.5) console.log(""); // keeps the results live
