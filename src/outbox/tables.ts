/**
 * The outbox tables. PostgreSQL rows carry the writing transaction's id (`xid8`), which is how the relay reads
 * in commit order (see triggers/outbox/pg-relay.ts); SQLite has one writer at a time, so its row order is the
 * commit order already.
 */

export const defaultOutboxTable = "sluice_outbox";
/** The channel `enqueue` notifies (delivered when the transaction commits) and the PostgreSQL relay listens on. */
export const outboxChannel = "sluice_outbox";

const tableName = /^[a-z_][a-z0-9_]{0,62}$/;

/** Throws for a name that could not be written unquoted in SQL. */
export function checkTableName(name: string): string {
  if (!tableName.test(name)) throw new TypeError(`outbox table name ${JSON.stringify(name)} must be 1-63 lower-case letters, digits or _`);
  return name;
}

export function pgOutboxDdl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${checkTableName(table)} (
    seq bigserial PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`;
}

export function sqliteOutboxDdl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${checkTableName(table)} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`;
}
