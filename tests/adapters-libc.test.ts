/**
 * The Node and Bun adapters take flock(2) from the system C library (koffi on Node, bun:ffi
 * on Bun). Where that library cannot be loaded (Windows, musl-based Linux, a library without
 * flock) the failure is a TxtDbError UNSUPPORTED that names txtdb, the library it tried,
 * the systems txtdb supports and what to do; never the FFI's own message alone. The seam is
 * the adapters' public factory (the one that builds the adapter open() uses), pointed at a
 * library that does not exist and at a file that is not one. The Deno adapter needs no C
 * library: on Deno the test is that it opens a store without the FFI permission.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform, isTxtDbError, open } from "txtdb";
import type { Platform } from "txtdb";

const R = `[${runtime}]`;

if (runtime === "node" || runtime === "bun") {
  const factoryName = runtime === "node" ? "makeNodePlatform" : "makeBunPlatform";
  /** The adapter's factory, loaded by a variable specifier so that Deno's module graph never sees it. */
  const factory = async (): Promise<(libc?: string) => Platform> => {
    const spec = `txtdb/adapters/${runtime}`;
    const mod = (await import(spec)) as Record<string, (libc?: string) => Platform>;
    assert.equal(typeof mod[factoryName], "function", `${spec} exports ${factoryName}`);
    return mod[factoryName]!;
  };

  const unsupported = (library: string) => (e: unknown) => {
    assert.ok(isTxtDbError(e, "UNSUPPORTED"), `a TxtDbError UNSUPPORTED, got ${String(e)}`);
    const m = (e as Error).message;
    assert.match(m, /^txtdb could not load the C library/);
    assert.ok(m.includes(`"${library}"`), `the message names the library: ${m}`);
    assert.match(m, /flock\(2\)/, "says why a C library is needed");
    assert.match(m, /Linux with glibc.*macOS.*Windows.*musl/s, "names the supported systems");
    assert.match(m, new RegExp(`${factoryName}\\(`), "says what to do");
    assert.ok((e as Error).cause !== undefined, "keeps the FFI's error as cause");
    return true;
  };

  test(`${R} an adapter whose C library does not exist fails with UNSUPPORTED naming txtdb, the library and what to do`, async () => {
    const make = await factory();
    assert.throws(() => make("libtxtdb-no-such-library.so.9"), unsupported("libtxtdb-no-such-library.so.9"));
  });

  test(`${R} an adapter given a file that is not a shared library fails with UNSUPPORTED naming it`, async () => {
    const make = await factory();
    const notALibrary = `${tempDir("libc")}/libc.so.6`;
    fs.writeFileSync(notALibrary, "not an ELF file\n");
    assert.throws(() => make(notALibrary), unsupported(notALibrary));
  });

  test(`${R} the same factory with the system C library opens a store (the seam is the adapter open() uses)`, async () => {
    const make = await factory();
    const db = await open(`${tempDir("libc")}/store`, { adapter: make(), namespaces: ["n"] });
    try {
      await db.set("n", "k", 1);
      assert.equal(await db.get("n", "k"), 1);
    } finally {
      await db.close();
    }
  });
}

if (runtime === "deno") {
  test(`${R} the Deno adapter loads no C library: open() works without the FFI permission`, async () => {
    const deno = (globalThis as unknown as { Deno: { permissions: { query(p: { name: string }): Promise<{ state: string }> } } }).Deno;
    assert.notEqual((await deno.permissions.query({ name: "ffi" })).state, "granted", "this leg runs without --allow-ffi");
    const db = await open(`${tempDir("libc")}/store`, { adapter: await defaultPlatform(), namespaces: ["n"] });
    try {
      await db.set("n", "k", 1);
      assert.equal(await db.get("n", "k"), 1);
    } finally {
      await db.close();
    }
  });
}
