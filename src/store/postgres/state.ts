/**
 * The key/value state store on PostgreSQL: expiry is `expires_at` (epoch ms, NULL for none) compared with the
 * caller's `now`; putIfAbsent and compareAndSet are single conditional statements, atomic across processes.
 */
import type { StateStore } from "../contract.ts";
import { isWallClock, type Db } from "./db.ts";

const pruneEveryMs = 60_000;

function expiresAt(options: { now: number; ttlMs?: number }): number | null {
  return options.ttlMs === undefined ? null : options.now + options.ttlMs;
}

export class PgStateStore implements StateStore {
  readonly #db: Db;
  #lastPruneAt = 0;

  constructor(db: Db) {
    this.#db = db;
  }

  get(namespace: string, key: string, options: { now: number }): Promise<string | undefined> {
    return this.#db.run("state.get", async () => {
      const rows = await this.#db.query<{ value: string }>(
        `SELECT value FROM ${this.#db.s}.state WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)`,
        [namespace, key, options.now],
      );
      return rows[0]?.value;
    });
  }

  put(namespace: string, key: string, value: string, options: { now: number; ttlMs?: number }): Promise<void> {
    return this.#db.run("state.put", async () => {
      await this.#db.query(
        `INSERT INTO ${this.#db.s}.state (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [namespace, key, value, expiresAt(options)],
      );
      this.#maybePrune(options.now);
    });
  }

  putIfAbsent(namespace: string, key: string, value: string, options: { now: number; ttlMs?: number }): Promise<boolean> {
    return this.#db.run("state.putIfAbsent", async () => {
      const result = await this.#db.pool.query(
        `INSERT INTO ${this.#db.s}.state AS t (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
         WHERE t.expires_at IS NOT NULL AND t.expires_at <= $5`,
        [namespace, key, value, expiresAt(options), options.now],
      );
      this.#maybePrune(options.now);
      return result.rowCount === 1;
    });
  }

  compareAndSet(
    namespace: string,
    key: string,
    expected: string,
    value: string,
    options: { now: number; ttlMs?: number },
  ): Promise<boolean> {
    return this.#db.run("state.compareAndSet", async () => {
      const result = await this.#db.pool.query(
        `UPDATE ${this.#db.s}.state SET value = $4, expires_at = $5
         WHERE namespace = $1 AND key = $2 AND value = $3 AND (expires_at IS NULL OR expires_at > $6)`,
        [namespace, key, expected, value, expiresAt(options), options.now],
      );
      return result.rowCount === 1;
    });
  }

  delete(namespace: string, key: string): Promise<void> {
    return this.#db.run("state.delete", async () => {
      await this.#db.query(`DELETE FROM ${this.#db.s}.state WHERE namespace = $1 AND key = $2`, [namespace, key]);
    });
  }

  list(namespace: string, options: { now: number }): Promise<{ key: string; value: string }[]> {
    return this.#db.run("state.list", async () => {
      return this.#db.query<{ key: string; value: string }>(
        `SELECT key, value FROM ${this.#db.s}.state WHERE namespace = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY key`,
        [namespace, options.now],
      );
    });
  }

  /**
   * Deletes expired entries now and then, off the caller's path. Only when the caller's clock is the wall
   * clock: a store shared by callers with injected clocks must not lose entries live in another's time.
   */
  #maybePrune(now: number): void {
    if (!isWallClock(now) || now - this.#lastPruneAt < pruneEveryMs || this.#db.closed) return;
    this.#lastPruneAt = now;
    this.#db.track(this.#db.pool.query(`DELETE FROM ${this.#db.s}.state WHERE expires_at <= $1`, [now]).catch(() => undefined));
  }
}
