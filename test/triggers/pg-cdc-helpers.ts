/**
 * A fresh PostgreSQL database per test for change data capture and the outbox (`cdc_<random>`), and a drop that
 * first ends the walsenders and drops the replication slots and publications made in it: slots are a shared,
 * limited resource of the server, and a leftover one pins WAL.
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { createTestDatabase, postgresAdminUrl } from "../helpers/services.ts";

export interface CdcDatabase {
  url: string;
  name: string;
  /** A unique `cdc_…` name for a slot, publication or table. */
  unique(prefix?: string): string;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

export async function createCdcDatabase(): Promise<CdcDatabase> {
  const { default: pgModule } = await import("pg");
  const { url, name } = await createTestDatabase("cdc_");
  const pool = new pgModule.Pool({ connectionString: url, max: 4 });
  return {
    url,
    name,
    unique: (prefix = "cdc") => `${prefix}_${randomUUID().replaceAll("-", "").slice(0, 12)}`,
    query: (sql, params) => pool.query(sql, params),
    async drop() {
      await pool.end();
      const c = new pgModule.Client({ connectionString: postgresAdminUrl });
      await c.connect();
      try {
        for (let i = 0; i < 20; i++) {
          await c.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", [name]);
          const left = await c.query("SELECT slot_name FROM pg_replication_slots WHERE database = $1 AND NOT active", [name]);
          for (const row of left.rows as { slot_name: string }[]) await c.query("SELECT pg_drop_replication_slot($1)", [row.slot_name]).catch(() => undefined);
          const still = await c.query("SELECT 1 FROM pg_replication_slots WHERE database = $1", [name]);
          if (still.rowCount === 0) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        // Publications live in the database and go with it.
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * The source of a function `record` that appends one line per invocation to `out`: the event id, the attempt,
 * then the JavaScript expressions in `fields` (over `event`), ending in ";" (a line cut by SIGKILL has none).
 */
export function recorderFunction(out: string, fields: string[]): string {
  const line = ["event.id", "ctx.attempt", ...fields].map((f) => `\${${f}}`).join(" ");
  return [
    'import { appendFileSync } from "node:fs";',
    'import { defineFunction } from "sluice";',
    "export default defineFunction({",
    '  name: "record",',
    "  async handler(event, ctx) {",
    `    appendFileSync(${JSON.stringify(out)}, \`${line};\\n\`);`,
    "  },",
    "});",
    "",
  ].join("\n");
}
