/**
 * Numbered schema migrations of the PostgreSQL backend. They run on start, in one transaction that holds a
 * transaction-scoped advisory lock keyed on the schema name, so several processes starting at once apply each
 * migration exactly once and none of them sees a half-migrated schema.
 *
 * Never edit a migration that has shipped: add the next number.
 */
import type { PoolClient } from "pg";
import { ErrorCode, SluiceError } from "../../errors.ts";

export interface Migration {
  version: number;
  name: string;
  /** SQL with `$schema` standing for the quoted schema name. */
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "event log, delivery queues, partitions, dead letters, state",
    sql: `
CREATE TABLE $schema.events (
  seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bus        text   NOT NULL,
  event_id   text   NOT NULL,
  encoded    text   NOT NULL,
  stored_at  bigint NOT NULL
);
CREATE INDEX events_bus_seq ON $schema.events (bus, seq);
CREATE INDEX events_bus_stored_at ON $schema.events (bus, stored_at);

-- Publisher dedupe, per bus: the first accepted event per key within the window. Older rows are overwritten or pruned.
CREATE TABLE $schema.dedupe (
  bus        text   NOT NULL,
  dedupe_key text   NOT NULL,
  seq        bigint NOT NULL,
  stored_at  bigint NOT NULL,
  -- Key first: the append's lookup is dedupe_key = ANY(...) and can use it as an index condition.
  PRIMARY KEY (dedupe_key, bus)
);
CREATE INDEX dedupe_stored_at ON $schema.dedupe (stored_at);

-- One row per pending delivery. visible_at is when it may be leased: the availability time when not leased,
-- the lease expiry when leased. Within one (queue, partition_key) only the head (oldest) row is unblocked;
-- the others wait with blocked = true, so the lease scan never walks over a held key.
-- fillfactor leaves room on each page so that lease, retry and extend (which change no indexed column)
-- are HOT updates that touch no index.
CREATE TABLE $schema.deliveries (
  id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue         text    NOT NULL,
  partition_key text,
  payload       text    NOT NULL,
  visible_at    bigint  NOT NULL,
  enqueued_at   bigint  NOT NULL,
  attempt       integer NOT NULL DEFAULT 0,
  lease_token   text,
  last_error    text,
  blocked       boolean NOT NULL DEFAULT false
) WITH (fillfactor = 80);
CREATE INDEX deliveries_leasable ON $schema.deliveries (id) WHERE NOT blocked;
CREATE INDEX deliveries_queue_leasable ON $schema.deliveries (queue, id) WHERE NOT blocked;
CREATE INDEX deliveries_key_blocked ON $schema.deliveries (queue, partition_key, id) WHERE blocked;

-- Per (queue, partition_key): how many deliveries are pending. Its row lock serialises every change of a
-- key's head across processes (enqueue, ack, dead-letter); the row is deleted when the key drains.
CREATE TABLE $schema.partitions (
  queue         text   NOT NULL,
  partition_key text   NOT NULL,
  pending       bigint NOT NULL,
  PRIMARY KEY (queue, partition_key)
);

CREATE TABLE $schema.dead_letters (
  id            bigint  PRIMARY KEY,
  queue         text    NOT NULL,
  partition_key text,
  payload       text    NOT NULL,
  reason        text    NOT NULL,
  attempts      integer NOT NULL,
  last_error    text,
  enqueued_at   bigint  NOT NULL,
  dead_at       bigint  NOT NULL
);
CREATE INDEX dead_letters_queue_id ON $schema.dead_letters (queue, id);

CREATE TABLE $schema.state (
  namespace  text NOT NULL,
  key        text NOT NULL,
  value      text NOT NULL,
  expires_at bigint,
  PRIMARY KEY (namespace, key)
);
`,
  },
];

/** Two-int advisory lock keys: a constant class for Sluice migrations, and the schema name's hash. */
const migrationLockClass = 0x51c3;

/**
 * Creates the schema when absent and applies every migration newer than its `schema_version`.
 * Returns the versions this call applied (empty when another process had already done it).
 */
export async function migrate(client: PoolClient, schema: string, list: readonly Migration[] = migrations): Promise<number[]> {
  const q = quoteIdent(schema);
  const applied: number[] = [];
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [migrationLockClass, schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.schema_version (
         version    integer PRIMARY KEY,
         name       text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}.schema_version`);
    const current = rows[0]?.v ?? 0;
    const known = Math.max(0, ...list.map((m) => m.version));
    if (current > known) {
      throw new SluiceError(
        ErrorCode.StoreUnavailable,
        `PostgreSQL schema "${schema}" is at version ${current}, newer than this Sluice knows (${known}): upgrade Sluice`,
      );
    }
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (m.version <= current) continue;
      await client.query(m.sql.replaceAll("$schema", q));
      await client.query(`INSERT INTO ${q}.schema_version (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
  return applied;
}

/** Schema names are restricted so they are safe as identifiers and leave room in NOTIFY channel names. */
export const schemaNamePattern = /^[a-z_][a-z0-9_]{0,47}$/;

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
