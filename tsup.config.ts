import { defineConfig } from "tsup";

// One entry per adapter plus mod.ts. The built code loads its adapter with
// `import("#platform-dist")`: the source says `#platform` (see src/platform.ts), and the
// plugin below renames it and keeps it external, so package.json `imports` picks
// dist/adapters/<runtime>.js by export condition ("deno", "bun", default) when the package
// runs, and bundlers (esbuild, `bun build`) resolve it the same way and bundle one adapter.
const platformDist = {
  name: "txtdb-platform-dist",
  setup(build: { onResolve(o: { filter: RegExp }, cb: () => { path: string; external: boolean }): void }) {
    build.onResolve({ filter: /^#platform$/ }, () => ({ path: "#platform-dist", external: true }));
  },
};

export default defineConfig({
  entry: {
    mod: "mod.ts",
    internal: "src/internal.ts",
    cli: "cli/main.ts",
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
  // Maps name the TypeScript file and line in stack traces; the sources themselves stay out
  // of the package (they were most of its size).
  sourcemap: true,
  esbuildOptions(options) {
    options.sourcesContent = false;
  },
  esbuildPlugins: [platformDist],
  dts: {
    // Members marked @internal (the engine side of Database: index, platform, init, ...) stay
    // out of the published types; tests/package.test.ts checks that they do.
    compilerOptions: { stripInternal: true },
    entry: {
      mod: "mod.ts",
      internal: "src/internal.ts",
      "adapters/node": "adapters/node.ts",
      "adapters/bun": "adapters/bun.ts",
      // The Deno adapter's source needs Deno's own lib to type-check, which this build
      // lacks; its one export is a Platform, declared in scripts/types/deno-adapter.ts.
      "adapters/deno": "scripts/types/deno-adapter.ts",
      "adapters/sim": "adapters/sim.ts",
      "adapters/faults": "adapters/faults.ts",
    },
  },
  external: ["koffi"],
});
