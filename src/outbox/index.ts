/**
 * `sluice/outbox`: the transactional outbox. Write an event in the same database transaction as the change it
 * announces; a relay source (`postgres-outbox` or `sqlite-outbox`) publishes it to a bus after the commit and
 * then deletes the row. Both commit or neither does: no event for a write that rolled back, no write without its
 * event. Nothing here loads a driver: pass your own `pg` client or better-sqlite3 database.
 *
 * @example
 * ```ts
 * import { outbox } from "sluice/outbox";
 * // pg: inside BEGIN … COMMIT on one client
 * await client.query("BEGIN");
 * await client.query("INSERT INTO orders (id, total) VALUES ($1, $2)", [id, total]);
 * await outbox.enqueue(client, { type: "order.created", source: "shop/orders", partitionkey: id, data: { id, total } });
 * await client.query("COMMIT");
 * // better-sqlite3: inside db.transaction(() => { … }) (the row is written during the call)
 * db.transaction(() => {
 *   db.prepare("INSERT INTO orders (id, total) VALUES (?, ?)").run(id, total);
 *   outbox.enqueueSync(db, { type: "order.created", source: "shop/orders", partitionkey: id, data: { id, total } });
 * })();
 * ```
 */
import { normalizeEvent } from "../event/normalize.ts";
import { checkTableName, defaultOutboxTable, outboxChannel, pgOutboxDdl, sqliteOutboxDdl } from "./tables.ts";

/** A CloudEvent to publish: `specversion`, `id` and `time` are filled when absent. `partitionkey` orders one aggregate's events. */
export interface OutboxEvent {
  type: string;
  source: string;
  id?: string;
  specversion?: "1.0";
  subject?: string;
  time?: string;
  partitionkey?: string;
  datacontenttype?: string;
  dataschema?: string;
  data?: unknown;
  [extension: string]: unknown;
}

/** What `enqueue` needs of a `pg` Client or PoolClient (in a transaction you began on it). */
export interface PgQueryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

/** What `enqueue` needs of a better-sqlite3 Database. */
export interface SqliteDatabase {
  prepare(sql: string): { run(...params: unknown[]): unknown };
  exec(sql: string): unknown;
}

export interface EnqueueOptions {
  /** The outbox table (created when absent). Default `sluice_outbox`; the relay's `table` must match. */
  table?: string;
}

const pgReady = new WeakMap<object, Set<string>>();
const sqliteReady = new WeakMap<object, Set<string>>();

function isSqlite(db: unknown): db is SqliteDatabase {
  return typeof db === "object" && db !== null && typeof (db as SqliteDatabase).prepare === "function" && typeof (db as SqliteDatabase).exec === "function";
}

function isPg(db: unknown): db is PgQueryable {
  return typeof db === "object" && db !== null && typeof (db as PgQueryable).query === "function" && !isSqlite(db);
}

/** Validates and completes the event (throws E_EVENT_INVALID naming the attribute); its JSON is what is stored. */
function prepare(event: OutboxEvent): { id: string; encoded: string } {
  const { event: complete, encoded } = normalizeEvent({ specversion: "1.0", ...event });
  return { id: complete.id, encoded };
}

function markReady(cache: WeakMap<object, Set<string>>, db: object, table: string): boolean {
  let tables = cache.get(db);
  if (!tables) cache.set(db, (tables = new Set()));
  if (tables.has(table)) return false;
  tables.add(table);
  return true;
}

/** Writes the event into the outbox of a better-sqlite3 database, in the caller's transaction; returns its id. */
export function enqueueSync(db: SqliteDatabase, event: OutboxEvent, options: EnqueueOptions = {}): string {
  if (!isSqlite(db)) throw new TypeError("outbox.enqueueSync takes a better-sqlite3 Database");
  const table = checkTableName(options.table ?? defaultOutboxTable);
  const { id, encoded } = prepare(event);
  if (markReady(sqliteReady, db, table)) db.exec(sqliteOutboxDdl(table));
  db.prepare(`INSERT INTO ${table} (event, created_at) VALUES (?, ?)`).run(encoded, Date.now());
  return id;
}

/**
 * Writes the event into the outbox in the caller's transaction; returns its id. With `pg`, run it between your
 * BEGIN and COMMIT on the same client (it also notifies the relay, which hears it at commit). With better-sqlite3
 * the row is written synchronously during the call, so it may be called inside `db.transaction(() => …)`.
 */
export async function enqueue(tx: PgQueryable | SqliteDatabase, event: OutboxEvent, options: EnqueueOptions = {}): Promise<string> {
  if (isSqlite(tx)) return enqueueSync(tx, event, options);
  if (!isPg(tx)) throw new TypeError("outbox.enqueue takes a pg Client/PoolClient in a transaction, or a better-sqlite3 Database");
  const table = checkTableName(options.table ?? defaultOutboxTable);
  const { id, encoded } = prepare(event);
  if (pgReady.get(tx)?.has(table) !== true) {
    // In a savepoint: a concurrent CREATE may fail on the unique type name, and must not abort the caller's transaction.
    const inTx = await tx.query("SAVEPOINT sluice_outbox_ddl").then(
      () => true,
      () => false, // outside a transaction block: nothing to protect
    );
    try {
      await tx.query(pgOutboxDdl(table));
      if (inTx) await tx.query("RELEASE SAVEPOINT sluice_outbox_ddl");
    } catch (err) {
      if (!inTx) throw err;
      await tx.query("ROLLBACK TO SAVEPOINT sluice_outbox_ddl");
    }
    markReady(pgReady, tx, table);
  }
  // One round trip: the row and the wakeup (PostgreSQL delivers the notification at commit, once per transaction).
  await tx.query(`WITH row AS (INSERT INTO ${table} (event) VALUES ($1)) SELECT pg_notify($2, $3)`, [encoded, outboxChannel, table]);
  return id;
}

/** Creates the outbox table ahead of time (the relay and `enqueue` also create it when absent). */
export async function ensureOutboxTable(db: PgQueryable | SqliteDatabase, options: EnqueueOptions = {}): Promise<void> {
  const table = checkTableName(options.table ?? defaultOutboxTable);
  if (isSqlite(db)) db.exec(sqliteOutboxDdl(table));
  else await db.query(pgOutboxDdl(table));
}

export const outbox = { enqueue, enqueueSync, ensureTable: ensureOutboxTable };
export { defaultOutboxTable, outboxChannel };
