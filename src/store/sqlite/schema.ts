/**
 * SQLite schema, as numbered migrations. `migrate()` runs on open under an IMMEDIATE transaction (SQLite's
 * write lock plays the part of an advisory lock), applies every migration newer than `schema_version`,
 * and refuses a database written by a newer Sluice.
 *
 * Index design for leasing (see lease.ts):
 * - `visible_at` is when a delivery becomes available (its `available_at`), and NULL while it waits behind an
 *   older delivery of the same (queue, partition key). Exactly one delivery per (queue, key), the oldest, has a
 *   non-NULL `visible_at` (the key's head). A delivery is leasable when `visible_at <= now` and it is not leased
 *   (`lease_until` NULL, or past: an expired lease).
 * - A lease writes `token`, `lease_until` and `attempt` into the row and leaves `visible_at`, so the index is not
 *   touched (moving the entry to `lease_until` cost about 0.5 µs a delivery more, and dirtier pages per commit).
 *   Leasing walks the partial index on `visible_at` in (visible_at, id) order, never scans deliveries blocked
 *   behind their key, and steps over rows leased and not yet acked: few, since the dispatcher queues its next
 *   lease behind the ack of the previous batch (at most the running deliveries of the processes on the file).
 *   (Databases written before this kept a leased row's `visible_at` at its `lease_until`: still correct.)
 * - A lease restricted to some queues walks the same index and skips other queues' ready rows: the dispatcher
 *   leases from all queues, and a per-queue index would cost every insert, lease and ack another index write
 *   (about 10% of their CPU).
 * - `deliveries_key` finds a key's next delivery when its head is acked or dead-lettered.
 *
 * Fan-out rows (migration 2) hold several deliveries of one event in one row; see fanout.ts.
 *
 * A delivery created by an append refers to its archived event by `event_seq` and leaves `payload` NULL
 * unless its payload differs (input transformer, replay mark): the event body is written once. A trim copies
 * the body into the pending deliveries of the events it deletes, and a dead letter always holds its payload.
 */
import type Database from "better-sqlite3";
import { ErrorCode, SluiceError } from "../../errors.ts";

export const migrations: readonly string[] = [
  // 1: event log, dedupe window, delivery queues, dead letters, state store.
  `
  CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    bus        TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    encoded    TEXT    NOT NULL,
    stored_at  INTEGER NOT NULL
  );
  -- Read in (bus, stored_at, seq) order, which is seq order: stored_at never decreases along seq (see event-log.ts).
  CREATE INDEX events_bus_stored ON events (bus, stored_at);

  CREATE TABLE dedupe (
    bus        TEXT    NOT NULL,
    dedupe_key TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    stored_at  INTEGER NOT NULL,
    PRIMARY KEY (bus, dedupe_key)
  ) WITHOUT ROWID;
  CREATE INDEX dedupe_stored ON dedupe (bus, stored_at);

  CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    partition_key TEXT,
    event_seq     INTEGER,
    payload       TEXT,
    enqueued_at   INTEGER NOT NULL,
    available_at  INTEGER NOT NULL,
    visible_at    INTEGER,
    lease_until   INTEGER,
    token         TEXT,
    attempt       INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
  );
  CREATE INDEX deliveries_ready ON deliveries (visible_at, id) WHERE visible_at IS NOT NULL;
  CREATE INDEX deliveries_key ON deliveries (queue, partition_key, id) WHERE partition_key IS NOT NULL;

  CREATE TABLE dead_letters (
    delivery_id   INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    partition_key TEXT,
    payload       TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT,
    enqueued_at   INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
  );
  CREATE INDEX dead_letters_queue ON dead_letters (queue, delivery_id);

  CREATE TABLE state (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
  ) WITHOUT ROWID;
  CREATE INDEX state_expires ON state (expires_at) WHERE expires_at IS NOT NULL;
  `,
  // 2: fan-out rows. One row holds the deliveries of one event to several queues (see fanout.ts):
  // `fanout` is the JSON array of their queues, `pending` has bit i set while queue i's delivery is not settled.
  // NULL in both for a row that is one delivery.
  `
  ALTER TABLE deliveries ADD COLUMN fanout TEXT;
  ALTER TABLE deliveries ADD COLUMN pending INTEGER;
  `,
];

/** Brings the schema up to date. Returns the version now in place. */
export function migrate(db: Database.Database): number {
  db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  const run = db.transaction((): number => {
    const row = db.prepare<[], { version: number | null }>("SELECT MAX(version) AS version FROM schema_version").get();
    const current = row?.version ?? 0;
    if (current > migrations.length) {
      throw new SluiceError(
        ErrorCode.StoreUnavailable,
        `the database has schema version ${current}, newer than this Sluice supports (${migrations.length}); upgrade Sluice`,
      );
    }
    for (let version = current + 1; version <= migrations.length; version++) {
      db.exec(migrations[version - 1] as string);
      db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(version);
    }
    return migrations.length;
  });
  return run.immediate();
}
