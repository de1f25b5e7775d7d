/**
 * The connection pool of one PostgreSQL store with its lifecycle: every call is tracked so close() can wait
 * for it, failures become SluiceErrors, and transactions rerun after deadlocks and serialization failures.
 */
import type { Pool, PoolClient, QueryResultRow } from "pg";
import { ErrorCode, SluiceError } from "../../errors.ts";
import { isConnectionError, isRetryableConflict, storeError } from "./errors.ts";

const maxConflictRetries = 5;

/** True when `now` is within a minute of the wall clock (housekeeping skips injected test clocks). */
export function isWallClock(now: number): boolean {
  return Math.abs(now - Date.now()) < 60_000;
}

export class Db {
  readonly pool: Pool;
  /** The quoted schema name, to prefix tables: `${db.s}.deliveries`. */
  readonly s: string;
  /** The NOTIFY channel of this schema. */
  readonly channel: string;
  #inflight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(pool: Pool, quotedSchema: string, channel: string) {
    this.pool = pool;
    this.s = quotedSchema;
    this.channel = channel;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs one store call: rejected with E_CLOSED after close(), errors mapped, tracked until settled. */
  run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new SluiceError(ErrorCode.Closed, `PostgreSQL store: ${operation} after close()`));
    }
    const p = fn().catch((err: unknown) => {
      throw storeError(err, operation);
    });
    this.track(p);
    return p;
  }

  /** Keeps close() waiting until `p` settles. */
  track(p: Promise<unknown>): void {
    this.#inflight.add(p);
    const drop = () => this.#inflight.delete(p);
    p.then(drop, drop);
  }

  /** Stops accepting calls and waits for every tracked one. */
  async drain(): Promise<void> {
    this.#closed = true;
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  /** One autocommitted statement; with `name`, a prepared statement planned once per connection. */
  async query<R extends QueryResultRow>(text: string, values: unknown[] = [], name?: string): Promise<R[]> {
    const result = await this.pool.query<R>(name === undefined ? { text, values } : { name, text, values });
    return result.rows;
  }

  /** Runs `fn` (one autocommitted statement) again after a deadlock or serialization failure. */
  async retryConflicts<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryableConflict(err) || attempt >= maxConflictRetries) throw err;
      }
    }
  }

  /**
   * Runs `fn` in a READ COMMITTED transaction on one pooled connection; reruns it after a deadlock.
   * `beginSql` may add parameterless statements to the BEGIN round trip (e.g. taking a lock).
   */
  async tx<T>(fn: (client: PoolClient) => Promise<T>, beginSql = "BEGIN"): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query(beginSql);
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (err) {
        broken = isConnectionError(err);
        if (!broken) {
          await client.query("ROLLBACK").catch(() => {
            broken = true;
          });
        }
        if (isRetryableConflict(err) && attempt < maxConflictRetries) continue;
        throw err;
      } finally {
        // A broken connection is destroyed rather than returned to the pool.
        client.release(broken ? true : undefined);
      }
    }
  }
}
