/** The key/value state store on SQLite: expiry against the caller's `now`, expired rows swept lazily. */
import type { StateStore } from "../contract.ts";
import { SWEEP_EVERY_MS, type Engine } from "./engine.ts";
import type { Sql } from "./statements.ts";

type WriteOptions = { now: number; ttlMs?: number };

function expiresAt(now: number, ttlMs: number | undefined): number | null {
  return ttlMs === undefined ? null : now + ttlMs;
}

export class SqliteStateStore implements StateStore {
  readonly #engine: Engine;
  readonly #sql: Sql;
  #lastSweepAt = Number.NEGATIVE_INFINITY;

  constructor(engine: Engine, sql: Sql) {
    this.#engine = engine;
    this.#sql = sql;
  }

  get(namespace: string, key: string, { now }: { now: number }): Promise<string | undefined> {
    return this.#engine.read(() => {
      const row = this.#sql.stateGet.get(namespace, key);
      if (row === undefined || (row.expires_at !== null && row.expires_at <= now)) return undefined;
      return row.value;
    });
  }

  put(namespace: string, key: string, value: string, { now, ttlMs }: WriteOptions): Promise<void> {
    return this.#engine.write(() => {
      this.#sweep(now);
      this.#sql.statePut.run(namespace, key, value, expiresAt(now, ttlMs));
    });
  }

  putIfAbsent(namespace: string, key: string, value: string, { now, ttlMs }: WriteOptions): Promise<boolean> {
    return this.#engine.write(() => {
      this.#sweep(now);
      return this.#sql.statePutIfAbsent.run(namespace, key, value, expiresAt(now, ttlMs), now).changes > 0;
    });
  }

  compareAndSet(namespace: string, key: string, expected: string, value: string, { now, ttlMs }: WriteOptions): Promise<boolean> {
    return this.#engine.write(() => this.#sql.stateCas.run(value, expiresAt(now, ttlMs), namespace, key, expected, now).changes > 0);
  }

  delete(namespace: string, key: string): Promise<void> {
    return this.#engine.write(() => {
      this.#sql.stateDelete.run(namespace, key);
    });
  }

  list(namespace: string, { now }: { now: number }): Promise<{ key: string; value: string }[]> {
    return this.#engine.read(() => this.#sql.stateList.all(namespace, now));
  }

  /** Deletes expired rows, at most once per SWEEP_EVERY_MS of the callers' clock. */
  #sweep(now: number): void {
    if (now < this.#lastSweepAt) this.#lastSweepAt = now;
    if (now - this.#lastSweepAt < SWEEP_EVERY_MS) return;
    this.#sql.stateSweep.run(now);
    this.#lastSweepAt = now;
  }
}
