import { defineConfig } from "tsup";

// One entry per adapter plus mod.ts, so the npm package picks its adapter at run time by
// importing dist/adapters/<runtime>.js beside the bundle (see src/platform.ts).
// The Deno adapter is built as JavaScript (Deno can consume the npm package) but gets no
// declaration file: its types need Deno's own lib, which JSR users get from source.
export default defineConfig({
  entry: {
    mod: "mod.ts",
    internal: "src/internal.ts",
    cli: "scripts/cli.ts",
    "adapters/node": "adapters/node.ts",
    "adapters/bun": "adapters/bun.ts",
    "adapters/deno": "adapters/deno.ts",
    "adapters/sim": "adapters/sim.ts",
    "adapters/faults": "adapters/faults.ts",
  },
  format: ["esm"],
  target: "es2022",
  platform: "node",
  splitting: true,
  clean: true,
  sourcemap: true,
  dts: {
    entry: {
      mod: "mod.ts",
      internal: "src/internal.ts",
      "adapters/node": "adapters/node.ts",
      "adapters/bun": "adapters/bun.ts",
      "adapters/sim": "adapters/sim.ts",
      "adapters/faults": "adapters/faults.ts",
    },
  },
  external: ["cbor-x", "cbor-x/encode", "cbor-x/decode", "koffi"],
});
