/**
 * What the etcd test files share: registering their tests only where etcd can run (a
 * missing etcd fails under CI and skips with the install hint elsewhere), one cluster per
 * file started on first use and stopped by the file's last test, and small helpers.
 */
import { assert, test } from "./harness.ts";
import { EtcdCluster, etcdMissing, inCI } from "./etcdcluster.ts";
import type { EtcdClusterOptions } from "./etcdcluster.ts";
import { TxtDbError } from "txtdb/internal";
import type { EtcdKeyValue } from "txtdb/internal";

/**
 * Registers the tests `define` declares when etcd is here. Without etcd: under CI one
 * failing test that says how to install it; elsewhere one skipped test that says so.
 */
export function etcdTests(label: string, define: () => void): void {
  const missing = etcdMissing();
  if (missing === undefined) return define();
  if (inCI()) {
    test(`${label}: etcd is installed (CI requires it)`, () => {
      assert.fail(`The etcd tests cannot run: ${missing}`);
    });
  } else {
    console.log(`${label}: skipped: ${missing}`);
    test(`${label}: skipped without etcd`, { skip: missing }, () => {});
  }
}

/** One cluster for a test file: started on first use, closed by `stop()` (the file's last test). */
export function sharedCluster(size: 1 | 3, options: EtcdClusterOptions = {}): { get(): Promise<EtcdCluster>; stop(): Promise<void> } {
  let started: Promise<EtcdCluster> | undefined;
  return {
    get: () => (started ??= EtcdCluster.start(size, options)),
    async stop() {
      if (started) await (await started.catch(() => undefined))?.close();
      started = undefined;
    },
  };
}

const dec = new TextDecoder();

/** A key-value's key and value as text. */
export function text(kv: EtcdKeyValue | undefined): [string, string] | undefined {
  return kv && [dec.decode(kv.key), dec.decode(kv.value)];
}

/** Bytes as text. */
export function str(b: Uint8Array): string {
  return dec.decode(b);
}

/** Runs `fn`, expecting a TxtDbError with `code`; returns it and how long the call took. */
export async function failsWith(code: string, fn: () => Promise<unknown>): Promise<{ error: TxtDbError; ms: number }> {
  const t0 = performance.now();
  try {
    await fn();
  } catch (e) {
    const ms = performance.now() - t0;
    assert.ok(e instanceof TxtDbError, `expected a TxtDbError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return { error: e, ms };
  }
  assert.fail(`expected a TxtDbError ${code}, but the call succeeded`);
}

/** A unique key prefix per test, so tests sharing a cluster do not see each other's keys. */
let n = 0;
export function uniquePrefix(name: string): string {
  return `t${++n}-${name}/`;
}

/** Runs `fn` until it does not fail with UNAVAILABLE (a cluster coming back), at most ~50 tries. */
export async function whenAvailable<T>(fn: () => Promise<T>, pauseMs = 100): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt > 50 || !(e instanceof TxtDbError) || e.code !== "UNAVAILABLE") throw e;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }
}
