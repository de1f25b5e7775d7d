/**
 * Every SQL statement of the SQLite store, prepared once per connection (`prepareStatements`), and `MultiRow` for
 * the multi-row inserts. The parts of the store (event-log.ts, deliveries.ts, lease.ts, fanout.ts, state.ts) share
 * one `Sql`.
 */
import type Database from "better-sqlite3";
import type { DeadRow, DeliveryRow, ReadyRow, StatsRow, StoredEventRow } from "./rows.ts";

/** At most this many rows per multi-row statement (7 parameters a delivery row: far below SQLite's limit). */
const MAX_ROWS_PER_STATEMENT = 128;

/**
 * A multi-row statement (`INSERT … VALUES (…), (…), …`) run over rows in chunks of power-of-two sizes: one
 * statement execution per chunk instead of one per row (each execution costs a few µs of binding and stepping),
 * and at most log2(128)+1 prepared statements per kind. Rows are passed as one flat parameter array (building
 * it directly is much cheaper than flattening tuples).
 */
export class MultiRow {
  readonly #db: Database.Database;
  readonly #sql: (values: string) => string;
  readonly #tuple: string;
  /** Parameters per row. */
  readonly width: number;
  readonly #statements = new Map<number, Database.Statement>();

  constructor(db: Database.Database, sql: (values: string) => string, width: number) {
    this.#db = db;
    this.#sql = sql;
    this.width = width;
    this.#tuple = `(${Array.from({ length: width }, () => "?").join(", ")})`;
  }

  #statement(rows: number): Database.Statement {
    let statement = this.#statements.get(rows);
    if (statement === undefined) {
      statement = this.#db.prepare(this.#sql(Array.from({ length: rows }, () => this.#tuple).join(", ")));
      this.#statements.set(rows, statement);
    }
    return statement;
  }

  /** Runs the statement over the rows of `values` in order; `tail` parameters follow each chunk's rows. Returns the changes. */
  run(values: unknown[], tail?: unknown[]): number {
    const rows = values.length / this.width;
    let changes = 0;
    let offset = 0;
    while (offset < rows) {
      let size = MAX_ROWS_PER_STATEMENT;
      while (size > rows - offset) size >>= 1;
      let args = values;
      if (size !== rows || tail !== undefined) {
        args = values.slice(offset * this.width, (offset + size) * this.width);
        if (tail !== undefined) for (const value of tail) args.push(value);
      }
      changes += this.#statement(size).run(args).changes;
      offset += size;
    }
    return changes;
  }
}
/** The columns of a `ReadyRow`, in the order of `R` (rows.ts). */
const readyColumns = "id, queue, partition_key, payload, enqueued_at, attempt, last_error, event_seq, fanout, pending, visible_at";

/** A row leasable now (two parameters, both `now`): available, and not leased or its lease expired. */
const leasableNow = "visible_at <= ? AND (lease_until IS NULL OR lease_until <= ?)";

function statements(db: Database.Database) {
  const prepare = preparer(db);
  return {
    // event log
    dedupeGet: prepare<[string, string], { seq: number; stored_at: number }>(
      "SELECT seq, stored_at FROM dedupe WHERE bus = ? AND dedupe_key = ?",
    ),
    // Records each key (bus, key, seq, now) unless it was recorded within the window. The rows of one statement
    // conflict with each other too: a repeated key within a call is a duplicate. (RETURNING costs ~1.5 µs a row.)
    dedupeClaim: new MultiRow(
      db,
      (values) => `INSERT INTO dedupe (bus, dedupe_key, seq, stored_at) VALUES ${values}
        ON CONFLICT (bus, dedupe_key) DO UPDATE SET seq = excluded.seq, stored_at = excluded.stored_at
        WHERE ? - dedupe.stored_at >= ?`,
      4,
    ),
    nextSeq: prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'"),
    dedupeSweep: prepare<[string, number]>("DELETE FROM dedupe WHERE bus = ? AND stored_at <= ?"),
    // (seq, bus, event_id, encoded, stored_at)
    eventInsert: new MultiRow(db, (values) => `INSERT INTO events (seq, bus, event_id, encoded, stored_at) VALUES ${values}`, 5),
    lastStoredAt: prepare<[], { stored_at: number }>("SELECT stored_at FROM events ORDER BY seq DESC LIMIT 1"),
    storedAtOf: prepare<[number], { stored_at: number }>("SELECT stored_at FROM events WHERE seq = ?"),
    // (bus, stored_at) index order is (stored_at, seq): seq order, since stored_at never decreases along seq.
    eventRead: prepare<[string, number, number, number, number], StoredEventRow>(
      `SELECT bus, seq, event_id, encoded, stored_at FROM events
       WHERE bus = ? AND stored_at >= ? AND stored_at < ? AND seq > ? ORDER BY stored_at, seq LIMIT ?`,
    ),
    eventTrim: prepare<[string, number]>("DELETE FROM events WHERE bus = ? AND stored_at < ?"),
    anyBefore: prepare<[string, number], { seq: number }>("SELECT seq FROM events WHERE bus = ? AND stored_at < ? LIMIT 1"),
    eventBody: prepare<[number], { encoded: string }>("SELECT encoded FROM events WHERE seq = ?"),
    // Before a trim: pending deliveries of the events it deletes keep their body. Scans the (pending) deliveries.
    keepBodies: prepare<[string, number]>(
      `UPDATE deliveries SET payload = (SELECT encoded FROM events WHERE seq = deliveries.event_seq)
       WHERE payload IS NULL AND event_seq IN (SELECT seq FROM events WHERE bus = ? AND stored_at < ?)`,
    ),

    // deliveries
    keyHasPending: prepare<[string, string], { id: number }>(
      "SELECT id FROM deliveries WHERE queue = ? AND partition_key = ? LIMIT 1",
    ),
    // (id, queue, partition_key, event_seq, payload, enqueued_at, available_at, visible_at, token, lease_until, attempt):
    // see DeliveryValues; ids are assigned from sqlite_sequence under the write lock, so a lease at insert knows them.
    deliveryInsert: new MultiRow(
      db,
      (values) =>
        `INSERT INTO deliveries (id, queue, partition_key, event_seq, payload, enqueued_at, available_at, visible_at, token, lease_until, attempt)
         VALUES ${values}`,
      11,
    ),
    lastDeliveryId: prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'"),
    // The deliveries of a run of just-appended events routed to one queue (no partition key, no payload of their
    // own, available at once): one row per event, built by SQLite from the event rows instead of bound one value at
    // a time (about 1.1 instead of 1.8-2 µs a delivery). Duplicates left holes in the seq range; they have no event
    // row, so they get no delivery.
    deliveryRun: prepare<{ now: number; queue: string; first: number; last: number }>(
      `INSERT INTO deliveries (queue, event_seq, enqueued_at, available_at, visible_at)
       SELECT @queue, e.seq, @now, @now, @now FROM events e WHERE e.seq BETWEEN @first AND @last ORDER BY e.seq`,
    ),
    readyAll: prepare<[number, number, number], ReadyRow>(
      `SELECT ${readyColumns} FROM deliveries WHERE ${leasableNow}
       ORDER BY visible_at, id LIMIT ?`,
      { raw: true },
    ),
    // The next page after (visible_at, id).
    readyAfter: prepare<[number, number, number, number, number, number], ReadyRow>(
      `SELECT ${readyColumns} FROM deliveries WHERE ${leasableNow}
         AND (visible_at > ? OR (visible_at = ? AND id > ?))
       ORDER BY visible_at, id LIMIT ?`,
      { raw: true },
    ),
    readyInQueues: prepare<[number, number, string, number], ReadyRow>(
      `SELECT ${readyColumns} FROM deliveries
       WHERE ${leasableNow} AND fanout IS NULL
         AND queue IN (SELECT value FROM json_each(?))
       ORDER BY visible_at, id LIMIT ?`,
      { raw: true },
    ),
    // Fan-out rows for a run of just-appended events (see fanout.ts): row ids base, base + stride, … by seq;
    // the ids between are reserved for the rows' deliveries.
    fanOutRowInsert: prepare<{ now: number; base: number; stride: number; first: number; last: number; queue: string; fanout: string; mask: number }>(
      `INSERT INTO deliveries (id, queue, event_seq, enqueued_at, available_at, visible_at, fanout, pending)
       SELECT @base + (e.seq - @first) * @stride, @queue, e.seq, @now, @now, @now, @fanout, @mask FROM events e
       WHERE e.seq BETWEEN @first AND @last ORDER BY e.seq`,
    ),
    reserveDeliveryIds: prepare<[number, number]>("UPDATE sqlite_sequence SET seq = ? WHERE name = 'deliveries' AND seq < ?"),
    // A lease restricted to some queues splits the leasable fan-out rows first (filtered leases are rare).
    readyFanOuts: prepare<[number, number], DeliveryRow>(
      `SELECT * FROM deliveries WHERE fanout IS NOT NULL AND ${leasableNow}`,
    ),
    rowById: prepare<[number], DeliveryRow>("SELECT * FROM deliveries WHERE id = ?"),
    // The fan-out row that may hold delivery id ? (its own id is below, by at most MAX_FANOUT + 1; the caller checks
    // the row's width). Rows split out of it may lie between.
    fanOutBelow: prepare<[number, number], DeliveryRow>(
      "SELECT * FROM deliveries WHERE id < ? AND id >= ? AND fanout IS NOT NULL ORDER BY id DESC LIMIT 1",
    ),
    // Fan-out rows of one lease token around an ack batch's ids.
    fanOutsOfToken: prepare<[number, number, string], { id: number; fanout: string; pending: number }>(
      "SELECT id, fanout, pending FROM deliveries WHERE id BETWEEN ? AND ? AND token = ? AND fanout IS NOT NULL ORDER BY id",
    ),
    setPending: prepare<[number, number, string]>("UPDATE deliveries SET pending = ? WHERE id = ? AND token = ?"),
    deleteRow: prepare<[number]>("DELETE FROM deliveries WHERE id = ?"),
    // A delivery split out of its fan-out row keeps the row's state (and its lease, when leased).
    splitInsert: prepare<
      [number, string, number | null, string | null, number, number, number | null, string | null, number | null, number, string | null]
    >(
      `INSERT INTO deliveries (id, queue, event_seq, payload, enqueued_at, available_at, visible_at, token, lease_until, attempt, last_error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // The bodies of a lease batch's events, once each: a seq range when the batch's seqs are dense, else a list.
    bodiesInRange: prepare<[number, number], [number, string]>("SELECT seq, encoded FROM events WHERE seq BETWEEN ? AND ?", { raw: true }),
    bodiesOf: prepare<[string], [number, string]>("SELECT seq, encoded FROM events WHERE seq IN (SELECT value FROM json_each(?))", { raw: true }),
    markLeased: prepare<[string, number, string]>(
      `UPDATE deliveries SET token = ?, lease_until = ?, attempt = attempt + 1 WHERE id IN (SELECT value FROM json_each(?))`,
    ),
    // The same for a batch whose ids are an arithmetic progression (the common case: a backlog leased in order;
    // fan-out rows step by their width + 1), without building and parsing a JSON list of ids.
    markLeasedRange: prepare<[string, number, number, number, number, number]>(
      `UPDATE deliveries SET token = ?, lease_until = ?, attempt = attempt + 1 WHERE id BETWEEN ? AND ? AND (id - ?) % ? = 0`,
    ),
    // Settling a lease batch: the keyed rows (whose keys need promoting) are read first, then one plain DELETE;
    // RETURNING would cost ~2 µs a row. Only when some lease was lost does removeLeased say which. When no keyed
    // delivery is pending at all (one probe of the partial index `deliveries_key`), the keyed read is skipped.
    anyKeyed: prepare<[], { id: number }>("SELECT id FROM deliveries WHERE partition_key IS NOT NULL LIMIT 1"),
    keyedLeased: prepare<[string, string], { id: number; queue: string; partition_key: string }>(
      `SELECT id, queue, partition_key FROM deliveries
       WHERE id IN (SELECT value FROM json_each(?)) AND token = ? AND partition_key IS NOT NULL ORDER BY id`,
    ),
    deleteLeased: prepare<[string, string]>("DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) AND token = ?"),
    deleteLeasedRange: prepare<[number, number, number, number, string]>(
      "DELETE FROM deliveries WHERE id BETWEEN ? AND ? AND (id - ?) % ? = 0 AND token = ?",
    ),
    removeLeased: prepare<[string, string], { id: number; queue: string; partition_key: string | null }>(
      `DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) AND token = ?
       RETURNING id, queue, partition_key`,
    ),
    // Single deliveries only (`fanout IS NULL`): a fan-out row's own id is no delivery's id.
    removeRow: prepare<[number, string], DeliveryRow>(
      "DELETE FROM deliveries WHERE id = ? AND token = ? AND fanout IS NULL RETURNING *",
    ),
    promoteNext: prepare<[string, string]>(
      `UPDATE deliveries SET visible_at = available_at
       WHERE id = (SELECT id FROM deliveries WHERE queue = ? AND partition_key = ? ORDER BY id LIMIT 1)
         AND visible_at IS NULL`,
    ),
    release: prepare<[number, number, string, number, string]>(
      `UPDATE deliveries SET token = NULL, lease_until = NULL, available_at = ?, visible_at = ?, last_error = ?
       WHERE id = ? AND token = ? AND fanout IS NULL`,
    ),
    extend: prepare<[number, number, string]>(
      "UPDATE deliveries SET lease_until = ? WHERE id = ? AND token = ? AND fanout IS NULL",
    ),
    extendFanOut: prepare<[number, number, string]>(
      "UPDATE deliveries SET lease_until = ? WHERE id = ? AND token = ? AND fanout IS NOT NULL",
    ),
    statsAll: prepare<[number, number, number], StatsRow>(
      `SELECT queue, SUM(${leasableNow}) AS ready,
              SUM(token IS NOT NULL AND lease_until > ?) AS leased,
              COUNT(*) AS total
       FROM deliveries WHERE fanout IS NULL GROUP BY queue`,
    ),
    // Fan-out rows count once for each queue whose bit is still pending.
    fanOutStatsAll: prepare<[number, number, number], StatsRow>(
      `SELECT j.value AS queue, SUM(${leasableNow}) AS ready,
              SUM(d.token IS NOT NULL AND d.lease_until > ?) AS leased, COUNT(*) AS total
       FROM deliveries d, json_each(d.fanout) j WHERE d.fanout IS NOT NULL AND (d.pending >> j.key) & 1 GROUP BY j.value`,
    ),
    statsQueue: prepare<[number, number, number, string], StatsRow>(
      `SELECT queue, SUM(${leasableNow}) AS ready,
              SUM(token IS NOT NULL AND lease_until > ?) AS leased,
              COUNT(*) AS total
       FROM deliveries WHERE queue = ? AND fanout IS NULL`,
    ),
    fanOutStatsQueue: prepare<[number, number, number, string], StatsRow>(
      `SELECT j.value AS queue, SUM(${leasableNow}) AS ready,
              SUM(d.token IS NOT NULL AND d.lease_until > ?) AS leased, COUNT(*) AS total
       FROM deliveries d, json_each(d.fanout) j
       WHERE d.fanout IS NOT NULL AND (d.pending >> j.key) & 1 AND j.value = ?`,
    ),
    deadCountAll: prepare<[], { queue: string; dead: number }>(
      "SELECT queue, COUNT(*) AS dead FROM dead_letters GROUP BY queue",
    ),
    deadCountQueue: prepare<[string], { dead: number }>("SELECT COUNT(*) AS dead FROM dead_letters WHERE queue = ?"),

    // dead letters
    deadInsert: prepare<[number, string, string | null, string, string, number, string | null, number, number]>(
      `INSERT INTO dead_letters (delivery_id, queue, partition_key, payload, reason, attempts, last_error, enqueued_at, dead_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deadList: prepare<[string, number, number], DeadRow>(
      "SELECT * FROM dead_letters WHERE queue = ? AND delivery_id > ? ORDER BY delivery_id LIMIT ?",
    ),
    deadGet: prepare<[number], DeadRow>("SELECT * FROM dead_letters WHERE delivery_id = ?"),
    deadOfQueue: prepare<[string], DeadRow>("SELECT * FROM dead_letters WHERE queue = ? ORDER BY delivery_id"),
    deadDelete: prepare<[number, string]>("DELETE FROM dead_letters WHERE delivery_id = ? AND queue = ?"),
    deadDeleteQueue: prepare<[string]>("DELETE FROM dead_letters WHERE queue = ?"),

    // state
    stateGet: prepare<[string, string], { value: string; expires_at: number | null }>(
      "SELECT value, expires_at FROM state WHERE namespace = ? AND key = ?",
    ),
    statePut: prepare<[string, string, string, number | null]>(
      "INSERT OR REPLACE INTO state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)",
    ),
    statePutIfAbsent: prepare<[string, string, string, number | null, number]>(
      `INSERT INTO state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
       WHERE state.expires_at IS NOT NULL AND state.expires_at <= ?`,
    ),
    stateCas: prepare<[string, number | null, string, string, string, number]>(
      `UPDATE state SET value = ?, expires_at = ?
       WHERE namespace = ? AND key = ? AND value = ? AND (expires_at IS NULL OR expires_at > ?)`,
    ),
    stateDelete: prepare<[string, string]>("DELETE FROM state WHERE namespace = ? AND key = ?"),
    stateList: prepare<[string, number], { key: string; value: string }>(
      "SELECT key, value FROM state WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
    ),
    stateSweep: prepare<[number]>("DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?"),
  };
}

/** The prepared statements of one store. */
export type Sql = ReturnType<typeof statements>;

export function prepareStatements(db: Database.Database): Sql {
  return statements(db);
}

/**
 * The calls the store makes on a prepared statement: better-sqlite3's `Statement` under a name that declaration
 * files can print (the driver's own type lives in a namespace its module does not export).
 */
export interface Statement<P extends unknown[], R> {
  run(...params: P): Database.RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
}

/** `db.prepare`, typed as a `Statement`; `raw` statements return rows as arrays. */
function preparer(db: Database.Database) {
  return <P extends unknown[] | object = unknown[], R = unknown>(source: string, options?: { raw: true }) => {
    const statement = db.prepare<P, R>(source);
    return (options?.raw ? statement.raw(true) : statement) as unknown as Statement<P extends unknown[] ? P : [P], R>;
  };
}
