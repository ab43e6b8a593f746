/**
 * The `etcd://` location of a store: `etcd://host:port,host:port/prefix`, `etcds://` for
 * TLS. Parsed by hand: `URL` takes one host only.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { REGISTRY_PREFIX } from "./layout.ts";

/** The default client port of etcd. */
export const ETCD_DEFAULT_PORT = 2379;

/** A parsed `etcd://` location. */
export interface EtcdLocation {
  /** Base URLs of the members, such as "http://10.0.0.5:2379". */
  endpoints: string[];
  /** The key prefix of the store: the URL's path with a trailing "/" ("" for none). */
  prefix: string;
  /** Whether the members are reached over TLS (`etcds://`). */
  tls: boolean;
}

/**
 * Parses `etcd://h1:p1,h2:p2/prefix` (or `etcds://`); a missing port is 2379; IPv6 hosts
 * go in brackets. Fails with `INVALID_ARGUMENT` naming what is wrong, also for a prefix
 * beginning with "/" (only "%2F" makes one), where txtdb's cluster-wide registry lives.
 *
 * @example
 * ```ts
 * parseEtcdUrl("etcd://10.0.0.5:2379,10.0.0.6/myapp");
 * // { endpoints: ["http://10.0.0.5:2379", "http://10.0.0.6:2379"], prefix: "myapp/", tls: false }
 * ```
 */
export function parseEtcdUrl(url: string): EtcdLocation {
  const m = /^(etcds?):\/\/([^/]*)(\/.*)?$/.exec(url);
  if (!m) throw new TxtDbError("INVALID_ARGUMENT", `Cannot read ${JSON.stringify(url)} as an etcd location; write etcd://host:port[,host:port...]/prefix (etcds:// for TLS)`);
  const tls = m[1] === "etcds";
  const hosts = m[2]!;
  if (hosts.includes("@")) throw new TxtDbError("INVALID_ARGUMENT", `The etcd location ${JSON.stringify(url)} holds credentials; pass them as the username and password options instead, so they stay out of logs`);
  const endpoints = hosts.split(",").map((h) => h.trim()).map((h) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(h);
    const port = hp?.[2] === undefined ? ETCD_DEFAULT_PORT : Number(hp[2]);
    if (!hp || port < 1 || port > 65535) throw new TxtDbError("INVALID_ARGUMENT", `The etcd location ${JSON.stringify(url)} names the member ${JSON.stringify(h)}, which is not host or host:port`);
    return `${tls ? "https" : "http"}://${hp[1]}:${port}`;
  });
  let path = m[3] ?? "";
  if (/[?#]/.test(path)) throw new TxtDbError("INVALID_ARGUMENT", `The etcd location ${JSON.stringify(url)} has a query or fragment; options go in open()'s options`);
  try {
    path = decodeURIComponent(path.replace(/^\/+/, "").replace(/\/+$/, ""));
  } catch {
    throw new TxtDbError("INVALID_ARGUMENT", `The etcd location ${JSON.stringify(url)} has a malformed %-escape in its prefix`);
  }
  // Keys beginning with "/" hold what every store on the cluster shares (layout.ts's
  // registry: the pins of all stores, the cluster's compaction mark); a store there would
  // take them for its own keys, or its keys for pins. Leading slashes of the path are
  // dropped above, so only an escaped one (%2F) gets here.
  if (path.startsWith("/")) {
    throw new TxtDbError("INVALID_ARGUMENT", `The etcd location ${JSON.stringify(url)} gives a prefix that begins with "/" (an escaped %2F): keys beginning with "${REGISTRY_PREFIX}" hold txtdb's registry of every store on the cluster, which no store may reach; drop the leading %2F`, { details: { prefix: `${path}/` } });
  }
  return { endpoints, prefix: path === "" ? "" : `${path}/`, tls };
}
