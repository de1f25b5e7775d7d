/**
 * The embedded SQLite backend (better-sqlite3, WAL): the default store, one file, zero set-up.
 *
 * Durability. `journal_mode=WAL` with `synchronous=NORMAL` by default: a transaction is appended to the WAL
 * file with write(2) before `COMMIT` returns, so once a call resolves its data is in the operating system's
 * page cache and survives `kill -9` (or any crash) of the process; only a power loss or kernel crash can drop
 * the last transactions (the database stays consistent). That is the promise the bus makes ("an acknowledged
 * publish survives kill -9 of the process") and what the bare-SQLite baseline of the benchmarks uses.
 * `synchronous: "full"` fsyncs the WAL on every commit and extends the promise to power loss, at the cost of
 * one fsync per group commit.
 *
 * Threads. The store runs on the caller's thread, as group commits (engine.ts). A mode with the database work on
 * a worker thread of its own measured slower on the bus benchmark (a structured clone and a message each way, a
 * second V8 heap; BENCHMARKS.md, "store thread") and was removed. WAL checkpoints run on a checkpointer thread
 * (checkpointer.ts).
 *
 * Concurrency. Calls of one store object are serialised by the flush; several store objects (or processes)
 * on one file take SQLite's write lock with BEGIN IMMEDIATE before reading leasable rows, so two leasers never
 * lease the same delivery. Wake-ups (`waitForWork`) reach every store object of the same file in this process.
 *
 * better-sqlite3 is loaded with `await import()` when a store opens. The parts mirror src/store/postgres/:
 * event-log.ts, deliveries.ts (with lease.ts and fanout.ts) and state.ts over one engine and one set of prepared
 * statements (statements.ts).
 */
import type Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { StoreCapabilities } from "../contract.ts";
import { defaultWalMaxBytes, startCheckpointer } from "./checkpointer.ts";
import { SqliteDeliveryQueues } from "./deliveries.ts";
import { AUTO_CHECKPOINT_PAGES, Engine } from "./engine.ts";
import { storeError } from "./errors.ts";
import { SqliteEventLog } from "./event-log.ts";
import { FanOuts } from "./fanout.ts";
import { Leaser } from "./lease.ts";
import type { SqliteStore, SqliteStoreOptions } from "./options.ts";
import { registerProcess } from "./processes.ts";
import { migrate } from "./schema.ts";
import { SqliteStateStore } from "./state.ts";
import { prepareStatements } from "./statements.ts";
import { relativeQueues } from "../shared/absolute-time-queues.ts";

export type { SqliteStore, SqliteStoreOptions } from "./options.ts";

/** One connection and one in-order group commit per store object (engine.ts). */
const capabilities: StoreCapabilities = {
  appendAndLease: true,
  callerClock: true,
  leaseJoinsAppend: true,
  atomicFanOut: true,
  nativeKeyOrder: true,
  exactStats: true,
};

/**
 * Opens (creating and migrating when needed) a SQLite store.
 *
 * @example
 * ```ts
 * const store = await createSqliteStore({ path: ".sluice/data.db" });
 * const [result] = await store.events.append(
 *   [{ bus: "default", eventId: "e1", dedupeKey: "src\ne1", encoded, deliveries: [{ queue: "rule:a/t0" }] }],
 *   { now: Date.now(), dedupeWindowMs: 300_000 },
 * );
 * await store.close();
 * ```
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const path = resolve(options.path);
  // Loaded here, so that importing the package (or a PostgreSQL-only server) never loads the native driver.
  const { default: Database } = await import("better-sqlite3");
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: options.busyTimeoutMs ?? 5000 });
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma("temp_store = MEMORY");
    db.pragma("cache_size = -16000");
    migrate(db);
    const registration = registerProcess(db, Date.now());
    const engine = openEngine(db, path, options);
    engine.beforeClose = registration.unregister;
    return assemble(engine, registration.reclaimedLeases);
  } catch (err) {
    db?.close();
    throw storeError(err);
  }
}

function openEngine(db: Database.Database, path: string, options: SqliteStoreOptions): Engine {
  const checkpoint = options.checkpoint;
  if (checkpoint === false) {
    // Checkpoint every ~40 MB of WAL instead of 4 MB: fewer checkpoints (each fsyncs the database file), and
    // pages rewritten between two checkpoints are copied back once.
    db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    return new Engine(db, path);
  }
  db.pragma("wal_autocheckpoint = 0");
  db.pragma(`journal_size_limit = ${checkpoint?.walMaxBytes ?? defaultWalMaxBytes}`);
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  return new Engine(db, path, {
    start: (engine) =>
      startCheckpointer(path, { ...checkpoint, busyTimeoutMs }, (unexpected) => {
        if (unexpected) engine.fallBackToAutoCheckpoint();
      }),
    walCapBytes: 4 * (checkpoint?.walMaxBytes ?? defaultWalMaxBytes),
  });
}

function assemble(engine: Engine, reclaimedLeases: number): SqliteStore {
  const sql = prepareStatements(engine.db);
  const fanOuts = new FanOuts(sql);
  const { queues, admin, declare } = relativeQueues(new SqliteDeliveryQueues(engine, sql, fanOuts, new Leaser(sql, fanOuts)));
  return {
    kind: "sqlite",
    capabilities,
    path: engine.path,
    reclaimedLeases,
    events: new SqliteEventLog(engine, sql),
    queues,
    admin,
    declare,
    state: new SqliteStateStore(engine, sql),
    checkpointStats: () => engine.checkpointStats(),
    close: () => engine.close(),
  };
}
