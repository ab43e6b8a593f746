/**
 * Real etcd clusters for the etcd tests: 1 or 3 members on 127.0.0.1, on free ports, each
 * with its own temporary data directory; members can be SIGKILLed, SIGSTOPped, continued
 * and restarted, and the leader found.
 *
 * No etcd outlives the test process: `close()` SIGKILLs every member, an exit hook does
 * the same if a test file ends without it, and a small watchdog shell per cluster kills
 * them if the test process itself is SIGKILLed (it polls the test process's pid).
 *
 * The etcd binary is looked up in PATH, then /usr/bin/etcd. Without one, `etcdMissing()`
 * says how to install it (Debian: `apt-get install etcd-server`).
 */
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import process from "node:process";
import { envVar, sleep, tempDir } from "./harness.ts";

/** How to get etcd, for the message of a test run without it. */
export const ETCD_INSTALL_HINT = "install etcd 3.4 or newer (Debian/Ubuntu: `apt-get install -y etcd-server`; or put an etcd binary in PATH)";

/** The etcd binary: the first `etcd` in PATH, else /usr/bin/etcd; undefined when there is none. */
export function etcdBinary(): string | undefined {
  const dirs = (envVar("PATH") ?? "").split(":").filter((d) => d !== "");
  for (const dir of [...dirs, "/usr/bin"]) {
    const p = `${dir}/etcd`;
    try {
      if (fs.statSync(p).isFile()) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Why the etcd tests cannot run here, or undefined when they can. */
export function etcdMissing(): string | undefined {
  return etcdBinary() === undefined ? `no etcd binary in PATH or at /usr/bin/etcd; ${ETCD_INSTALL_HINT}` : undefined;
}

/** A port nobody listens on right now (the OS picks it; a race with other programs is possible but rare). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One etcd member. */
export interface EtcdMember {
  name: string;
  /** Its client URL, http://127.0.0.1:port. */
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  child: ChildProcess | undefined;
  /** The last lines etcd wrote (bounded), for failure messages. */
  log: string;
  state: "running" | "stopped" | "killed";
}

/** Options of {@link EtcdCluster.start}. */
export interface EtcdClusterOptions {
  /** More etcd flags for every member (such as ["--auth-token-ttl", "2"]). */
  args?: string[];
  /** How long to wait for the cluster to become healthy (default 30 s). */
  readyTimeoutMs?: number;
}

const LOG_CHARS_MAX = 8000;
const live = new Set<EtcdCluster>();
let exitHooked = false;

/** A running etcd cluster; see the module comment. */
export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly #binary: string;
  readonly #args: string[];
  #watchdog: ChildProcess | undefined;

  private constructor(binary: string, members: EtcdMember[], args: string[]) {
    this.#binary = binary;
    this.members = members;
    this.#args = args;
  }

  /** Starts a cluster of `size` members and waits until every member is healthy. */
  static async start(size: 1 | 3, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const binary = etcdBinary();
    if (binary === undefined) throw new Error(`Cannot start etcd: ${etcdMissing()}`);
    const ports: number[] = [];
    while (ports.length < size * 2) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const dir = tempDir("etcd");
    const members: EtcdMember[] = Array.from({ length: size }, (_, i) => ({
      name: `m${i}`,
      clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
      peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
      dataDir: `${dir}/m${i}`,
      child: undefined,
      log: "",
      state: "killed",
    }));
    const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
    const token = dir.slice(dir.lastIndexOf("/") + 1);
    const args = [
      "--initial-cluster", initial,
      "--initial-cluster-token", token,
      "--initial-cluster-state", "new",
      "--logger", "zap",
      "--log-outputs", "stderr",
      "--log-level", "warn",
      ...(options.args ?? []),
    ];
    const cluster = new EtcdCluster(binary, members, args);
    live.add(cluster);
    if (!exitHooked) {
      exitHooked = true;
      // A test file that ends without close() (a failed assertion in a hook) still kills its etcd.
      process.on("exit", () => {
        for (const c of live) c.#killAllNow();
      });
    }
    for (let i = 0; i < size; i++) cluster.#spawn(i);
    cluster.#armWatchdog();
    try {
      await cluster.waitHealthy(options.readyTimeoutMs ?? 30_000);
    } catch (e) {
      await cluster.close();
      throw e;
    }
    return cluster;
  }

  /** The client URLs of all members, in member order. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  #spawn(i: number): void {
    const m = this.members[i]!;
    const child = spawn(this.#binary, [
      "--name", m.name,
      "--data-dir", m.dataDir,
      "--listen-client-urls", m.clientUrl,
      "--advertise-client-urls", m.clientUrl,
      "--listen-peer-urls", m.peerUrl,
      "--initial-advertise-peer-urls", m.peerUrl,
      ...this.#args,
    ], { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk: Buffer | string) => {
      m.log = (m.log + chunk.toString()).slice(-LOG_CHARS_MAX);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.on("exit", () => {
      if (m.child === child) m.state = "killed";
    });
    m.child = child;
    m.state = "running";
  }

  /** A shell that SIGKILLs this cluster's members once the test process is gone. */
  #armWatchdog(): void {
    this.#watchdog?.kill("SIGKILL");
    // Only members alive now: the pid of one killed earlier may belong to anything by now.
    const pids = this.members.filter((m) => m.state !== "killed").map((m) => m.child?.pid).filter((p): p is number => p !== undefined);
    const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${pids.join(" ")} 2>/dev/null`;
    const dog = spawn("sh", ["-c", script], { stdio: "ignore", detached: true });
    dog.unref();
    this.#watchdog = dog;
  }

  /** Waits until every running member answers /health with true. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const t0 = performance.now();
    for (;;) {
      const running = this.members.filter((m) => m.state === "running");
      const ok = await Promise.all(running.map((m) => healthy(m.clientUrl)));
      if (ok.every(Boolean)) return;
      if (performance.now() - t0 > timeoutMs) {
        const bad = running.filter((_, i) => !ok[i]).map((m) => `${m.name} (${m.clientUrl}) log:\n${m.log.slice(-2000)}`);
        throw new Error(`etcd cluster not healthy within ${timeoutMs} ms: ${bad.join("\n")}`);
      }
      await sleep(100);
    }
  }

  /**
   * The index of the member that is leader by its own account and that every other
   * running member agrees on; waits for one up to `timeoutMs`.
   */
  async leader(timeoutMs = 15_000): Promise<number> {
    const t0 = performance.now();
    for (;;) {
      const running = this.members.map((m, i) => ({ m, i })).filter(({ m }) => m.state === "running");
      const statuses = await Promise.all(running.map(({ m }) => memberStatus(m.clientUrl)));
      const self = statuses.findIndex((s) => s !== undefined && s.leader !== "0" && s.leader === s.member);
      if (self >= 0 && statuses.every((s) => s !== undefined && s.leader === statuses[self]!.leader)) return running[self]!.i;
      if (performance.now() - t0 > timeoutMs) throw new Error(`no etcd leader agreed on within ${timeoutMs} ms: ${JSON.stringify(statuses)}`);
      await sleep(100);
    }
  }

  /** Waits until member `i` says it has no leader (it lost contact with a quorum). */
  async waitNoLeader(i: number, timeoutMs = 15_000): Promise<void> {
    const t0 = performance.now();
    for (;;) {
      const s = await memberStatus(this.members[i]!.clientUrl);
      if (s?.leader === "0") return;
      if (performance.now() - t0 > timeoutMs) throw new Error(`member ${this.members[i]!.name} still follows leader ${s?.leader} after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** SIGKILLs member `i`, and waits until it is gone. */
  async kill(i: number): Promise<void> {
    const m = this.members[i]!;
    const child = m.child;
    if (!child || m.state === "killed") return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    signal(m, "SIGKILL");
    m.state = "killed";
    await exited;
  }

  /**
   * SIGSTOPs member `i` and waits until every thread of it has stopped: from then on it
   * keeps its sockets but answers nothing.
   *
   * kill(2) returns once the signal is queued, not once the process stopped: the group
   * stop begins only when the thread the kernel picked dequeues SIGSTOP, which waits for
   * that thread to be scheduled or to leave an uninterruptible sleep (etcd's fdatasync),
   * and until then etcd's other threads go on serving requests. Measured on a loaded
   * 2-core machine: right after kill() some thread still ran in about half the tries, and
   * a request sent then was answered in 4 of 100. A test that stopped a member and at once
   * expected silence was then answered (a flaky TIMEOUT test).
   */
  async stop(i: number, timeoutMs = 5_000): Promise<void> {
    const m = this.members[i]!;
    if (m.state !== "running") return;
    signal(m, "SIGSTOP");
    m.state = "stopped";
    await waitThreads(m, (s) => s === "T", "stopped", timeoutMs);
  }

  /** SIGCONTs member `i` and waits until none of its threads is stopped any more. */
  async cont(i: number, timeoutMs = 5_000): Promise<void> {
    const m = this.members[i]!;
    if (m.state !== "stopped") return;
    signal(m, "SIGCONT");
    m.state = "running";
    await waitThreads(m, (s) => s !== "T", "continued", timeoutMs);
  }

  /** Starts killed member `i` again on its data directory, and waits until it is healthy. */
  async restart(i: number, timeoutMs = 30_000): Promise<void> {
    const m = this.members[i]!;
    if (m.state !== "killed") throw new Error(`member ${m.name} is ${m.state}, not killed`);
    this.#spawn(i); // etcd ignores the --initial-* flags on an existing data directory
    this.#armWatchdog();
    await this.waitHealthy(timeoutMs);
  }

  #killAllNow(): void {
    for (const m of this.members) {
      if (m.child && m.state !== "killed") {
        try {
          m.child.kill("SIGKILL");
        } catch { /* gone */ }
        m.state = "killed";
      }
    }
    try {
      this.#watchdog?.kill("SIGKILL");
    } catch { /* gone */ }
  }

  /** SIGKILLs every member, waits for them to exit, and removes the data directories. */
  async close(): Promise<void> {
    const exits = this.members.map((m) => m.child && m.child.exitCode === null && m.child.signalCode === null ? new Promise<void>((resolve) => m.child!.once("exit", () => resolve())) : Promise.resolve());
    this.#killAllNow();
    await Promise.all(exits);
    live.delete(this);
    const root = this.members[0]!.dataDir.replace(/\/m0$/, "");
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Sends `sig` to member `m` with process.kill: Deno's ChildProcess.kill() does not deliver
 * SIGCONT (it returns false and the member stays stopped).
 */
function signal(m: EtcdMember, sig: "SIGKILL" | "SIGSTOP" | "SIGCONT"): void {
  const pid = m.child?.pid;
  if (pid === undefined) throw new Error(`member ${m.name} has no process`);
  process.kill(pid, sig);
}

/**
 * The scheduler state letter of every thread of member `m` (R, S, D, T, …): from
 * /proc/<pid>/task/<tid>/stat on Linux, else from ps (one letter for the whole process).
 * Empty when the process is gone.
 */
function threadStates(m: EtcdMember): string[] {
  const pid = m.child?.pid;
  if (pid === undefined) return [];
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    // No /proc (macOS): ps shows "T" for a stopped process.
    try {
      return [execFileSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" }).trim().charAt(0)].filter((s) => s !== "");
    } catch {
      return [];
    }
  }
  const out: string[] = [];
  for (const tid of tids) {
    try {
      // "pid (comm) S ...": comm may hold spaces and parentheses, so read after the last ")".
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      out.push(stat.slice(stat.lastIndexOf(")") + 2).charAt(0));
    } catch { /* the thread ended meanwhile */ }
  }
  return out;
}

/** Waits until every thread of member `m` satisfies `ok` (see {@link EtcdCluster.stop} for why). */
async function waitThreads(m: EtcdMember, ok: (state: string) => boolean, what: string, timeoutMs: number): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    const states = threadStates(m);
    if (states.length === 0) throw new Error(`member ${m.name} has no process to have ${what}`);
    if (states.every(ok)) return;
    if (performance.now() - t0 > timeoutMs) throw new Error(`member ${m.name} not ${what} within ${timeoutMs} ms: thread states ${states.join("")}`);
    await sleep(2);
  }
}

async function post(url: string, body: unknown, timeoutMs: number): Promise<Record<string, unknown> | undefined> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, { method: "POST", body: JSON.stringify(body), signal: ac.signal });
    const json = await res.json() as Record<string, unknown>;
    return res.ok ? json : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(t);
  }
}

async function healthy(clientUrl: string): Promise<boolean> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), 1000);
  try {
    const res = await fetch(`${clientUrl}/health`, { signal: ac.signal });
    const json = await res.json() as { health?: unknown };
    return json.health === "true" || json.health === true;
  } catch {
    return false;
  } finally {
    clearTimeout(t);
  }
}

async function memberStatus(clientUrl: string): Promise<{ member: string; leader: string } | undefined> {
  const r = await post(`${clientUrl}/v3/maintenance/status`, {}, 1000);
  if (!r) return undefined;
  const header = r.header as { member_id?: string } | undefined;
  return { member: String(header?.member_id ?? ""), leader: String(r.leader ?? "0") };
}

/**
 * Turns on auth through the gateway: user `root` with `password`, the root role, and
 * auth enabled (etcd requires a root user before it enables auth).
 */
export async function enableAuth(clientUrl: string, password: string): Promise<void> {
  const steps: [string, unknown][] = [
    ["/v3/auth/user/add", { name: "root", password }],
    ["/v3/auth/role/add", { name: "root" }],
    ["/v3/auth/user/grant", { user: "root", role: "root" }],
    ["/v3/auth/enable", {}],
  ];
  for (const [path, body] of steps) {
    const r = await post(clientUrl + path, body, 5000);
    if (!r) throw new Error(`etcd ${path} failed while enabling auth`);
  }
}

/** True when `CI` is set: a missing etcd then fails the etcd tests instead of skipping them. */
export function inCI(): boolean {
  const ci = envVar("CI");
  return ci !== undefined && ci !== "" && ci !== "0" && ci !== "false";
}
