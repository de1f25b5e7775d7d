/**
 * The PostgreSQL storage backend, for deployments where several Sluice processes share the work.
 * `pg` is loaded here with `await import()`, so the default SQLite set-up never loads it.
 */
import type { PoolConfig } from "pg";
import type { StorageBackend, StoreCapabilities } from "../contract.ts";
import { ErrorCode, SluiceError } from "../../errors.ts";
import { Db } from "./db.ts";
import { PgDeliveryQueues } from "./deliveries.ts";
import { storeError } from "./errors.ts";
import { PgEventLog } from "./event-log.ts";
import { WorkListener } from "./listener.ts";
import { migrate, quoteIdent, schemaNamePattern } from "./migrations.ts";
import { PgStateStore } from "./state.ts";
import { relativeQueues } from "../shared/absolute-time-queues.ts";

export interface PostgresStoreOptions {
  /** Connection string, e.g. `postgres://sluice@db:5432/sluice`. */
  url: string;
  /**
   * PostgreSQL schema holding Sluice's tables, created and migrated on start: lower-case letters, digits and
   * `_`, at most 48 characters. Separate schemas isolate deployments (and tests) sharing one database.
   * Default `sluice`.
   */
  schema?: string;
  /** Pooled connections for store calls (the LISTEN connection is one more). Default 10. */
  poolSize?: number;
  /** Most entries that concurrent append() calls combine into one transaction. Default 2000. */
  maxGroupEntries?: number;
  /** How long to wait for a connection before failing with E_STORE_UNAVAILABLE. Default 5000. */
  connectTimeoutMs?: number;
  /** `application_name` shown in pg_stat_activity. Default `sluice`. */
  applicationName?: string;
}

/** Calls run on pooled connections, so a lease does not join an append issued before it. */
const capabilities: StoreCapabilities = {
  appendAndLease: true,
  callerClock: true,
  leaseJoinsAppend: false,
  atomicFanOut: true,
  nativeKeyOrder: true,
  exactStats: true,
};

/** A PostgreSQL storage backend; `kind` is `postgres`. */
export interface PostgresStore extends StorageBackend {
  readonly kind: "postgres";
  /** The schema this store uses. */
  readonly schema: string;
}

/**
 * Opens (and creates or migrates) a PostgreSQL store. Rejects with a retryable E_STORE_UNAVAILABLE when the
 * database cannot be reached, and with E_CONFIG_INVALID for bad options.
 *
 * @example
 * ```ts
 * const store = await createPostgresStore({ url: "postgres://sluice@127.0.0.1:5432/sluice" });
 * const [result] = await store.events.append([entry], { now: Date.now(), dedupeWindowMs: 300_000 });
 * await store.close();
 * ```
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const schema = options.schema ?? "sluice";
  if (!schemaNamePattern.test(schema)) {
    throw new SluiceError(ErrorCode.ConfigInvalid, `postgres schema name "${schema}" is invalid: use a-z, 0-9 and _ (at most 48, not starting with a digit)`, {
      path: "$.schema",
    });
  }
  const poolSize = options.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new SluiceError(ErrorCode.ConfigInvalid, `postgres poolSize must be a positive integer, got ${poolSize}`, { path: "$.poolSize" });
  }
  const maxGroupEntries = options.maxGroupEntries ?? 2000;
  const { default: pg } = await import("pg");
  const connection = {
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    application_name: options.applicationName ?? "sluice",
    keepAlive: true,
    // Durable on resolve, whatever the server's default. No JIT: our statements are short, and compiling one
    // costs tens of milliseconds whenever a cost estimate passes jit_above_cost. No sequential scan where an index
    // serves: the queue tables grow and shrink by tens of thousands of rows within seconds and their statistics
    // lag. W1 runs showed the lease's cached plan made on a near-empty table (a sequential scan and a sort), and,
    // with narrower delivery rows (an experiment), acks of 250 planned as a sequential scan of 30 000 pending
    // deliveries (4 -> 26-28 ms each). Statements with no index to use (stats) still scan.
    options: "-c synchronous_commit=on -c jit=off -c enable_seqscan=off",
  } satisfies PoolConfig;
  const pool = new pg.Pool({ ...connection, max: poolSize });
  // An idle pooled connection that dies is dropped by the pool; without a listener the error would crash us.
  pool.on("error", () => undefined);
  const channel = `sluice_work_${schema}`;
  const listener = new WorkListener(pg.Client, connection, channel);
  pool.on("connect", (client) => {
    const pid = (client as unknown as { processID?: number }).processID;
    if (pid !== undefined) listener.ownBackends.add(pid);
  });
  pool.on("remove", (client) => {
    const pid = (client as unknown as { processID?: number }).processID;
    if (pid !== undefined) listener.ownBackends.delete(pid);
  });
  try {
    const client = await pool.connect();
    try {
      await migrate(client, schema);
    } finally {
      client.release();
    }
    await listener.start();
  } catch (err) {
    await listener.close();
    await pool.end().catch(() => undefined);
    throw storeError(err, "open");
  }
  const db = new Db(pool, quoteIdent(schema), channel);
  const events = new PgEventLog(db, listener, maxGroupEntries);
  const { queues, admin, declare } = relativeQueues(new PgDeliveryQueues(db, listener));
  const state = new PgStateStore(db);
  let closing: Promise<void> | undefined;
  return {
    kind: "postgres",
    capabilities,
    schema,
    events,
    queues,
    admin,
    declare,
    state,
    close() {
      closing ??= (async () => {
        await db.drain();
        await listener.close();
        await pool.end().catch(() => undefined);
      })();
      return closing;
    },
  };
}
