/**
 * The SQLite store's group-commit engine: one connection, one write queue, one lifecycle.
 *
 * Group commit. Every write (append, enqueue, lease, ack, retry, dead-letter, state writes…) is queued and
 * the queue is flushed on `setImmediate` in ONE transaction: many concurrent publishers, leasers or ackers
 * cost one commit. Each call runs in its own savepoint, so each call still succeeds or fails on its own, and
 * its promise settles only after the shared commit. Reads run at once on the same connection and see every
 * write whose promise has resolved.
 *
 * WAL back-pressure. With the checkpointer thread (checkpointer.ts), a flush waits a few ms at a time while the
 * WAL file is past its cap (see walTooLarge).
 */
import type Database from "better-sqlite3";
import { statSync } from "node:fs";
import { ErrorCode, SluiceError } from "../../errors.ts";
import type { WorkSignal } from "../work-signal.ts";
import type { Checkpointer, CheckpointStats } from "./checkpointer.ts";
import { storeError } from "./errors.ts";
import { acquireSignal, releaseSignal } from "./signals.ts";

/** SQLite's own checkpoint threshold when the checkpointer is off (or died): ~40 MB of WAL. */
export const AUTO_CHECKPOINT_PAGES = 10_000;

/** With the checkpointer, a flush waits WAL_WAIT_MS at a time, at most MAX_WAL_WAITS times, while the WAL is past its cap. */
const WAL_WAIT_MS = 2;
const WAL_CHECK_MS = 5;
const MAX_WAL_WAITS = 50;

/** Dedupe and state rows past their window/expiry are deleted at most once per this much of the callers' clock. */
export const SWEEP_EVERY_MS = 60_000;

interface PendingWrite {
  run(): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

export interface EngineCheckpointer {
  start(engine: Engine): Checkpointer;
  /** WAL size past which flushes wait for the checkpointer. */
  walCapBytes: number;
}

export class Engine {
  readonly db: Database.Database;
  /** Absolute path of the database file. */
  readonly path: string;

  readonly #signal: WorkSignal;
  readonly #flushAll: Database.Transaction<(writes: PendingWrite[]) => { ok: boolean; value: unknown }[]>;
  readonly #inSavepoint: Database.Transaction<(write: PendingWrite) => unknown>;
  readonly #alone: Database.Transaction<(write: PendingWrite) => unknown>;
  #pending: PendingWrite[] = [];
  #flushScheduled = false;
  #flushed: Promise<void> | undefined;
  #resolveFlushed: (() => void) | undefined;
  #workCreated = false;
  #closing: Promise<void> | undefined;
  #closed = false;

  #checkpointer: Checkpointer | undefined;
  /** With the checkpointer: WAL size past which flushes wait for it (see #walTooLarge). */
  readonly #walCapBytes: number;
  readonly #walPath: string;
  #walWaits = 0;
  #walWaitsTotal = 0;
  #walCheckedAt = Number.NEGATIVE_INFINITY;
  #walLow = false;

  constructor(db: Database.Database, path: string, checkpointer?: EngineCheckpointer) {
    this.db = db;
    this.path = path;
    this.#walPath = `${path}-wal`;
    this.#walCapBytes = checkpointer?.walCapBytes ?? 0;
    this.#checkpointer = checkpointer?.start(this);
    this.#signal = acquireSignal(path);
    this.#inSavepoint = db.transaction((write: PendingWrite) => write.run());
    // A flush of one write needs no savepoint: its failure rolls back the whole (its own) transaction.
    this.#alone = db.transaction((write: PendingWrite) => write.run());
    this.#flushAll = db.transaction((writes: PendingWrite[]) =>
      writes.map((write) => {
        try {
          // Nested better-sqlite3 transactions are savepoints: a failing call rolls back only its own writes.
          return { ok: true, value: this.#inSavepoint(write) };
        } catch (err) {
          return { ok: false, value: err };
        }
      }),
    );
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a write for the next group commit; settles after that commit. */
  write<T>(run: () => T): Promise<T> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError());
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Runs a read now; reads see every write whose promise has resolved. */
  read<T>(run: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    try {
      return Promise.resolve(run());
    } catch (err) {
      return Promise.reject(storeError(err));
    }
  }

  /** Called inside a write that created or unblocked work: waiters are woken after its commit. */
  workCreated(): void {
    this.#workCreated = true;
  }

  /** See `DeliveryQueues.waitForWork`. */
  waitForWork(signal: AbortSignal): Promise<void> {
    return this.#closed ? Promise.resolve() : this.#signal.wait(signal);
  }

  #closedError(): SluiceError {
    return new SluiceError(ErrorCode.Closed, `sqlite store ${this.path} is closed`);
  }

  #flush(): void {
    if (this.#walCapBytes > 0 && this.#walTooLarge()) {
      setTimeout(() => this.#flush(), WAL_WAIT_MS);
      return;
    }
    const writes = this.#pending;
    this.#pending = [];
    this.#flushScheduled = false;
    let outcomes: { ok: boolean; value: unknown }[];
    try {
      if (writes.length === 1) {
        try {
          outcomes = [{ ok: true, value: this.#alone.immediate(writes[0] as PendingWrite) }];
        } catch (err) {
          // Rolled back. Our own errors (E_LEASE_LOST…) and constraint failures belong to the call; a failed
          // BEGIN/COMMIT is reported the same way, so nothing is lost by not telling them apart here.
          outcomes = [{ ok: false, value: err }];
        }
      } else {
        outcomes = this.#flushAll.immediate(writes);
      }
    } catch (err) {
      // The commit itself failed (lock timeout, disk full, I/O error): nothing of this batch is durable.
      const error = storeError(err);
      for (const write of writes) write.reject(error);
      this.#workCreated = false;
      this.#settleFlushed();
      return;
    }
    writes.forEach((write, i) => {
      const outcome = outcomes[i] as { ok: boolean; value: unknown };
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(storeError(outcome.value));
    });
    if (this.#workCreated) {
      this.#workCreated = false;
      // Deferred one turn so that a worker whose lease() just resolved empty is parked in waitForWork() by then.
      setImmediate(() => this.#signal.notify());
    }
    this.#settleFlushed();
  }

  #settleFlushed(): void {
    if (this.#pending.length > 0) return;
    const resolve = this.#resolveFlushed;
    this.#flushed = undefined;
    this.#resolveFlushed = undefined;
    resolve?.();
  }

  /** Resolves when every queued write has been committed (or failed). */
  #idle(): Promise<void> {
    if (this.#pending.length === 0 && !this.#flushScheduled) return Promise.resolve();
    this.#flushed ??= new Promise<void>((resolve) => {
      this.#resolveFlushed = resolve;
    });
    return this.#flushed;
  }

  /** Runs on the connection after the last queued write, before it closes (synchronous, like every statement). */
  beforeClose: (() => void) | undefined;

  /** Waits for queued writes, then closes the database. Idempotent; later calls fail with E_CLOSED. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#idle();
      this.beforeClose?.();
      this.#closed = true;
      // First the checkpointer, so that the writer's connection is the last one and its close checkpoints the
      // WAL and removes it.
      await this.#checkpointer?.close();
      this.db.close();
      releaseSignal(this.path);
      // Wake parked workers so their loops see the store is closed.
      this.#signal.notify();
    })();
    return this.#closing;
  }

  /**
   * Backpressure behind the checkpointer: while the WAL file is past the cap (the checkpointer thread is starved of
   * CPU, or its RESTART keeps missing a gap between commits), a flush waits a few ms, up to MAX_WAL_WAITS times in a
   * row, giving the checkpointer CPU and gaps. The writes just queue meanwhile; the event loop never blocks. At most
   * one stat(2) per flush (and per WAL_CHECK_MS); the file only exceeds `journal_size_limit` while frames pile up
   * (a rewind cuts it back).
   * (Checkpointing here instead mostly finds the checkpointer mid-checkpoint, SQLITE_BUSY, and stalls the loop when
   * it does run.)
   */
  #walTooLarge(): boolean {
    if (this.#walWaits >= MAX_WAL_WAITS) {
      this.#walWaits = 0;
      return false;
    }
    // While the WAL was last seen under half the cap, at most one stat(2) per WAL_CHECK_MS: it cannot grow by half
    // the cap in that time, and a stat per flush allocated ~2 KB (a Stats object) for every small commit.
    const at = performance.now();
    if (this.#walLow && at - this.#walCheckedAt < WAL_CHECK_MS) return false;
    this.#walCheckedAt = at;
    let size: number;
    try {
      size = statSync(this.#walPath).size;
    } catch {
      return false;
    }
    this.#walLow = size < this.#walCapBytes / 2;
    if (size <= this.#walCapBytes) {
      this.#walWaits = 0;
      return false;
    }
    this.#walWaits++;
    this.#walWaitsTotal++;
    return true;
  }

  /** Counters of the checkpointer thread; undefined with `checkpoint: false`. */
  checkpointStats(): Promise<CheckpointStats | undefined> {
    if (this.#checkpointer === undefined) return Promise.resolve(undefined);
    return this.#checkpointer.stats().then((stats) => ({ ...stats, writerWaits: this.#walWaitsTotal }));
  }

  /** The checkpointer died: fall back to SQLite's automatic checkpoints so the WAL stays bounded. */
  fallBackToAutoCheckpoint(): void {
    this.#checkpointer = undefined;
    if (!this.#closed) this.db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
  }
}
