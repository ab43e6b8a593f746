/**
 * Keeping an etcd lease alive: a loop that renews it every third of its TTL, retries a
 * failed renewal until the TTL would have run out, and reports the lease lost.
 *
 * Loss is judged on this process's clock, conservatively: a renewal counts from when it
 * was sent, so when `lost` resolves with reason "unrenewed", etcd may still hold the lease
 * for a little while, never the other way round. etcd saying the lease is gone (a renewal
 * answered with TTL 0: it expired or was revoked) is reason "expired".
 *
 * The loop's timers are unref'd: a lease kept alive is never why a process stays running.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { armTimer } from "../timers.ts";
import type { Timer } from "../timers.ts";

/** Pause before retrying a renewal that failed (the next try also stops at the TTL). */
export const LEASE_RETRY_MS = 200;

/** What a lease loop needs from the client: one renewal, answering the new TTL in seconds (0: the lease is gone). */
export type RenewLease = (id: bigint, deadline: number) => Promise<number>;

/**
 * A lease this process keeps alive. `lost` resolves (never rejects) with the error that
 * says why, once the lease cannot be counted on any more; the loop has stopped by then.
 *
 * @example
 * ```ts
 * const lease = await client.lease(10);
 * await client.put("owner", "me", { lease: lease.id });
 * lease.lost.then((e) => console.error(e.message));
 * await lease.revoke();
 * ```
 */
export class EtcdLease {
  /** The lease id, for `put(..., { lease })`. */
  readonly id: bigint;
  /** The TTL etcd granted, in seconds. */
  readonly ttlSeconds: number;
  /** Resolves with a `TxtDbError` (code `UNAVAILABLE`, `details.reason` "expired" or "unrenewed") when the lease is lost. */
  readonly lost: Promise<TxtDbError>;
  /** Successful renewals so far. */
  renewals = 0;
  #lostError: TxtDbError | undefined;
  #resolveLost!: (e: TxtDbError) => void;
  #timer: Timer | undefined;
  #stopped = false;
  /** When the lease runs out at the latest, on performance.now()'s clock, judged from the last renewal's sending. */
  #expiresAt: number;
  readonly #renew: RenewLease;
  readonly #revoke: (id: bigint) => Promise<void>;
  readonly #onLost: ((e: TxtDbError) => void) | undefined;

  /** Starts keeping lease `id` alive; `grantedAt` is when the grant was sent. */
  constructor(id: bigint, ttlSeconds: number, grantedAt: number, renew: RenewLease, revoke: (id: bigint) => Promise<void>, onLost?: (e: TxtDbError) => void) {
    this.id = id;
    this.ttlSeconds = ttlSeconds;
    this.#expiresAt = grantedAt + ttlSeconds * 1000;
    this.#renew = renew;
    this.#revoke = revoke;
    this.#onLost = onLost;
    this.lost = new Promise((resolve) => (this.#resolveLost = resolve));
    this.#schedule(this.#periodMs());
  }

  /** True once the lease is lost. */
  get isLost(): boolean {
    return this.#lostError !== undefined;
  }

  /** Stops renewing (the lease then expires on its own after its TTL); idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  /** Stops renewing and revokes the lease, which deletes the keys attached to it. */
  async revoke(): Promise<void> {
    this.stop();
    await this.#revoke(this.id);
  }

  #periodMs(): number {
    // A third of the TTL leaves two more tries before it runs out.
    return Math.max(100, (this.ttlSeconds * 1000) / 3);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = armTimer(delayMs, () => void this.#tick(), { unref: true });
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    const sentAt = performance.now();
    if (sentAt >= this.#expiresAt) return this.#lose("unrenewed", `could not renew it within its TTL of ${this.ttlSeconds} s`);
    try {
      const ttl = await this.#renew(this.id, this.#expiresAt);
      if (this.#stopped) return;
      if (ttl <= 0) return this.#lose("expired", "etcd says it expired or was revoked");
      this.#expiresAt = sentAt + ttl * 1000;
      this.renewals++;
      this.#schedule(this.#periodMs());
    } catch (e) {
      if (this.#stopped) return;
      if (e instanceof TxtDbError && e.code !== "UNAVAILABLE") return this.#lose("expired", e.message, e);
      this.#schedule(Math.min(LEASE_RETRY_MS, Math.max(0, this.#expiresAt - performance.now())));
    }
  }

  #lose(reason: "expired" | "unrenewed", why: string, cause?: unknown): void {
    this.stop();
    const error = new TxtDbError("UNAVAILABLE", `Lost etcd lease ${this.id}: ${why}; the keys attached to it are gone or about to be; take a new lease and write them again`, {
      cause,
      details: { leaseId: this.id, reason },
    });
    this.#lostError = error;
    this.#resolveLost(error);
    try {
      this.#onLost?.(error);
    } catch { /* a callback's failure is its own */ }
  }
}
