/**
 * The publication and the replication slot of a source, created on first start, and the initial snapshot.
 *
 * The snapshot is read in the snapshot that CREATE_REPLICATION_SLOT exports, so it shows exactly the commits
 * before the slot's consistent point and the slot streams exactly the commits after it: no gap, no overlap.
 * The replication connection that created the slot stays open (and idle) while the snapshot is read, which is
 * what keeps the exported snapshot valid.
 */
import type pg from "pg";
import { snapshotEvent, type ChangeEvent, type Relation } from "./events.ts";
import type { PgChangesOptions } from "./options.ts";

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;
const tableSql = (t: { schema: string; table: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;

export interface SlotInfo {
  confirmedLsn: string;
  walStatus: string | null;
  activePid: number | null;
  lagBytes: number;
}

/** Creates the publication, or sets its tables to the configured ones. */
export async function ensurePublication(db: pg.Client, o: PgChangesOptions): Promise<void> {
  const tables = o.tables.map(tableSql).join(", ");
  const exists = await db.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [o.publication]);
  if (exists.rowCount === 0) await db.query(`CREATE PUBLICATION ${quoteIdent(o.publication)} FOR TABLE ${tables}`);
  else await db.query(`ALTER PUBLICATION ${quoteIdent(o.publication)} SET TABLE ${tables}`);
}

export async function readSlot(db: pg.Client, slot: string): Promise<SlotInfo | undefined> {
  const r = await db.query<{ confirmed: string | null; wal_status: string | null; active_pid: number | null; lag: string | null; plugin: string }>(
    `SELECT confirmed_flush_lsn::text AS confirmed, wal_status, active_pid, plugin,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag
       FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`,
    [slot],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  if (row.plugin !== "pgoutput") throw new Error(`replication slot ${slot} uses the ${row.plugin} plugin, not pgoutput: drop it or name another slot`);
  return { confirmedLsn: row.confirmed ?? "0/0", walStatus: row.wal_status, activePid: row.active_pid, lagBytes: Number(row.lag ?? 0) };
}

export async function dropSlot(db: pg.Client, slot: string): Promise<void> {
  await db.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot]);
}

/**
 * Creates the slot; with `snapshot`, reads every table in the slot's exported snapshot and hands the rows to
 * `publish` (in batches) before the replication connection closes. Returns the consistent point.
 */
export async function createSlot(
  pgModule: typeof pg,
  o: PgChangesOptions,
  sourceId: string,
  publish: ((events: ChangeEvent[]) => Promise<void>) | undefined,
): Promise<string> {
  const repl = new pgModule.Client({ connectionString: o.url, replication: "database" } as pg.ClientConfig);
  await repl.connect();
  try {
    const created = await repl.query<{ consistent_point: string; snapshot_name: string | null }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(o.slot)} LOGICAL pgoutput ${publish ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"}`,
    );
    const { consistent_point: point, snapshot_name: snapshotName } = created.rows[0]!;
    if (publish && snapshotName) await readSnapshot(pgModule, o, sourceId, snapshotName, point, publish);
    return point;
  } finally {
    await repl.end().catch(() => undefined);
  }
}

async function readSnapshot(
  pgModule: typeof pg,
  o: PgChangesOptions,
  sourceId: string,
  snapshotName: string,
  point: string,
  publish: (events: ChangeEvent[]) => Promise<void>,
): Promise<void> {
  const db = new pgModule.Client({ connectionString: o.url });
  await db.connect();
  try {
    await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    await db.query(`SET TRANSACTION SNAPSHOT '${snapshotName.replaceAll("'", "''")}'`);
    for (const t of o.tables) {
      const relation: Relation = { schema: t.schema, name: t.table, keyColumns: await keyColumns(db, t) };
      await db.query(`DECLARE sluice_snapshot NO SCROLL CURSOR FOR SELECT * FROM ${tableSql(t)}`);
      let ordinal = 0;
      for (;;) {
        const rows = (await db.query("FETCH 500 FROM sluice_snapshot")).rows as Record<string, unknown>[];
        if (rows.length === 0) break;
        await publish(rows.map((row) => snapshotEvent(sourceId, point, relation, row, relation.keyColumns.length === 0 ? ordinal++ : undefined)));
      }
      await db.query("CLOSE sluice_snapshot");
    }
    await db.query("COMMIT");
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** The columns of the table's replica identity (its primary key by default), as the stream reports them. */
async function keyColumns(db: pg.Client, t: { schema: string; table: string }): Promise<string[]> {
  const r = await db.query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = $1::regclass
        AND (i.indisreplident OR (i.indisprimary AND NOT EXISTS (SELECT 1 FROM pg_index r WHERE r.indrelid = i.indrelid AND r.indisreplident)))
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [tableSql(t)],
  );
  return r.rows.map((row) => row.attname);
}
