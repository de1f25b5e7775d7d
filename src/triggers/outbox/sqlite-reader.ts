/**
 * The SQLite side of the outbox relay, on the application's own database file. SQLite has one writer at a time
 * and a transaction holds the write lock from its first insert to its commit, so sequence order is commit order
 * and a rolled-back row is never seen. The file is read every `pollInterval` (100ms by default); one relay per
 * file (a SQLite app runs on one machine).
 */
import { sqliteOutboxDdl } from "../../outbox/tables.ts";
import { sleep } from "../../util/sleep.ts";
import type { OutboxReader, OutboxRow } from "./relay.ts";

export async function openSqliteOutbox(path: string, table: string): Promise<OutboxReader> {
  const { default: Database } = await import("better-sqlite3");
  const db = new Database(path);
  db.pragma("busy_timeout = 5000");
  db.pragma("journal_mode = WAL");
  db.exec(sqliteOutboxDdl(table));
  const select = db.prepare(`SELECT CAST(seq AS TEXT) AS seq, event FROM ${table} ORDER BY ${table}.seq LIMIT ?`);
  const remove = db.prepare(`DELETE FROM ${table} WHERE seq IN (SELECT value FROM json_each(?))`);
  return {
    acquire: async (signal) => !signal.aborted,
    read: async (limit) => select.all(limit) as OutboxRow[],
    async delete(rows) {
      remove.run(JSON.stringify(rows.map((r) => Number(r.seq))));
    },
    wait: (ms, signal) => sleep(ms, signal),
    close: async () => void db.close(),
  };
}
