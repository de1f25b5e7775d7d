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
 * Group commit. Every write (append, enqueue, lease, ack, retry, dead-letter, state writes…) is queued and
 * the queue is flushed on `setImmediate` in ONE transaction: many concurrent publishers, leasers or ackers
 * cost one commit. Each call runs in its own savepoint, so each call still succeeds or fails on its own, and
 * its promise settles only after the shared commit. Reads run at once on the same connection and see every
 * write whose promise has resolved.
 *
 * Threads. The store runs on the caller's thread. A mode with the database work on a worker thread of its own
 * measured slower on the bus benchmark (a structured clone and a message each way, a second V8 heap; BENCHMARKS.md,
 * "store thread") and was removed. WAL checkpoints run on a checkpointer thread (checkpointer.ts).
 *
 * Fan-out rows. The deliveries of one appended event to several queues (a rule with several targets, or several
 * rules), when they are plain (no partition key, no payload of their own, available at once), are stored as ONE
 * row: `fanout` lists the queues, `pending` has bit i set while queue i's delivery is unsettled. The row is
 * leased as a whole (one token, one lease_until, one attempt count for its deliveries) and each pending queue gets
 * its own Lease; acks clear bits, and the row goes when none is left. A row of k queues with id G reserves the
 * ids G+1..G+k: queue i's delivery id is G+1+i. When one of its deliveries needs a life of its own (retry,
 * dead letter, a lease restricted to some queues, a lease batch smaller than the row), it is split out into a
 * row of its own with exactly that id, so a delivery keeps its id for all its attempts. For W3 of the bus
 * benchmark (3 targets) this is one insert, one lease mark and one delete per event instead of three each.
 *
 * Concurrency. Calls of one store object are serialised by the flush; several store objects (or processes)
 * on one file take SQLite's write lock with BEGIN IMMEDIATE before reading leasable rows, so two leasers never
 * lease the same delivery. Wake-ups (`waitForWork`) reach every store object of the same file in this process.
 */
import Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ErrorCode, SluiceError } from "../../errors.ts";
import type {
  AppendEntry,
  AppendResult,
  DeadLetter,
  DeliveryQueues,
  EventLog,
  Lease,
  LeaseRequest,
  NewDelivery,
  QueueStats,
  ReadRange,
  StateStore,
  StorageBackend,
  StoredEvent,
} from "../contract.ts";
import { WorkSignal } from "../work-signal.ts";
import { startCheckpointer, defaultWalMaxBytes, type Checkpointer, type CheckpointOptions, type CheckpointStats } from "./checkpointer.ts";
import { migrate } from "./schema.ts";
import { acquireSignal, releaseSignal } from "./signals.ts";

export interface SqliteStoreOptions {
  /** Database file; its directory is created when missing. */
  path: string;
  /**
   * `normal` (default): acknowledged writes survive a crash of the process, not a power loss.
   * `full`: fsync on every (group) commit, acknowledged writes survive a power loss too.
   */
  synchronous?: "normal" | "full";
  /** How long a write waits for another connection's lock before failing with E_STORE_UNAVAILABLE. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * WAL checkpoints run on a worker thread with its own connection (see checkpointer.ts); `false` leaves them to
   * SQLite's automatic checkpoint inside the committing call (every ~40 MB of WAL), on the writer's thread.
   */
  checkpoint?: CheckpointOptions | false;
}

/** SQLite's own checkpoint threshold when the checkpointer is off (or died): ~40 MB of WAL. */
const AUTO_CHECKPOINT_PAGES = 10_000;

/** With the checkpointer, a flush waits WAL_WAIT_MS at a time, at most MAX_WAL_WAITS times, while the WAL is past its cap. */
const WAL_WAIT_MS = 2;
const WAL_CHECK_MS = 5;
const MAX_WAL_WAITS = 50;

/** Dedupe and state rows past their window/expiry are deleted at most once per this much of the callers' clock. */
const SWEEP_EVERY_MS = 60_000;

interface DeliveryRow {
  id: number;
  queue: string;
  partition_key: string | null;
  /** The event's body when `payload` is NULL (see schema.ts). */
  event_seq: number | null;
  payload: string | null;
  enqueued_at: number;
  available_at: number;
  visible_at: number | null;
  lease_until: number | null;
  token: string | null;
  attempt: number;
  last_error: string | null;
  fanout: string | null;
  pending: number | null;
}

/**
 * A leasable row as a raw row (an array is cheaper to build than an object with named columns): id, queue,
 * partition_key, payload, enqueued_at, attempt, last_error, event_seq, fanout, pending, visible_at. A null payload is the
 * archived event's body, which the lease then reads once per event (see #bodiesOf). A fan-out row (fanout not
 * null) is several deliveries.
 */
type ReadyRow = [
  number,
  string,
  string | null,
  string | null,
  number,
  number,
  string | null,
  number | null,
  string | null,
  number | null,
  number,
];

/** Most queues in one fan-out row (bits of `pending`, kept within a 32-bit int for JavaScript's bit operators). */
const MAX_FANOUT = 30;

/** Set bits of a fan-out row's `pending`: its unsettled deliveries. */
function bitCount(pending: number): number {
  let n = 0;
  for (let bits = pending; bits !== 0; bits &= bits - 1) n++;
  return n;
}

/** Pending queue indexes of a fan-out row, in order. */
function pendingIndexes(pending: number, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < width; i++) if ((pending >> i) & 1) out.push(i);
  return out;
}

interface DeadRow {
  delivery_id: number;
  queue: string;
  partition_key: string | null;
  payload: string;
  reason: string;
  attempts: number;
  last_error: string | null;
  enqueued_at: number;
  dead_at: number;
}

type LeaseRef = Pick<Lease, "deliveryId" | "token">;

/** Thrown (and caught) to roll back a batch delete that did not find every lease of the batch. */
const someLeaseLost = new Error("some lease of the batch was lost");

const retryableSqliteCodes = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL)/;

/** Maps a driver error to E_STORE_UNAVAILABLE; our own SluiceErrors pass through. */
function storeError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = (err as { code?: unknown }).code;
  const retryable = typeof code === "string" && retryableSqliteCodes.test(code);
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError(ErrorCode.StoreUnavailable, `sqlite store: ${message}`, { cause: err, retryable });
}

function leaseLost(deliveryId: string): SluiceError {
  return new SluiceError(
    ErrorCode.LeaseLost,
    `the lease on delivery ${deliveryId} is no longer held (expired and re-leased, or already settled)`,
  );
}

/**
 * A lease token: 72 random bits in 12 characters. It only has to differ from the other leases of the same delivery
 * (a stale token must not ack); a short one keeps the leased row small (it is written into every row of a batch).
 */
function newToken(): string {
  return randomBytes(9).toString("base64url");
}

/** Delivery ids are the row ids, exposed as decimal strings. Anything else matches no row. */
function rowId(deliveryId: string): number {
  return /^[1-9][0-9]{0,15}$/.test(deliveryId) ? Number(deliveryId) : -1;
}

/** The smallest and largest of `values` (±Infinity when there are none). */
function bounds(values: Iterable<number>): { low: number; high: number } {
  let low = Number.POSITIVE_INFINITY;
  let high = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return { low, high };
}

/**
 * `{ first, last, step }` when the distinct ids `ids` are exactly first, first + step, …, last (then
 * `id BETWEEN first AND last AND (id - first) % step = 0` names them all, cheaper than a JSON list), else undefined.
 * Fan-out rows of one append are such a progression (step: queues + 1), single deliveries have step 1.
 */
function progression(ids: readonly number[]): { first: number; last: number; step: number } | undefined {
  if (ids.length === 0) return undefined;
  const { low: first, high: last } = bounds(ids);
  if (ids.length === 1) return { first, last, step: 1 };
  const step = (last - first) / (ids.length - 1);
  if (!Number.isInteger(step) || step < 1) return undefined;
  // Distinct ids on the grid, as many as grid points: exactly the grid.
  const seen = new Set<number>();
  for (const id of ids) {
    if ((id - first) % step !== 0 || seen.has(id)) return undefined;
    seen.add(id);
  }
  return { first, last, step };
}

function toLease(row: ReadyRow, deliveryId: number, queue: string, payload: string, token: string, leaseUntil: number): Lease {
  const [, , partitionKey, , enqueuedAt, attempt, lastError] = row;
  // Optional fields are set only when present (no spread of temporary objects: this runs once per delivery).
  const lease: Lease = { deliveryId: String(deliveryId), queue, token, payload, attempt: attempt + 1, enqueuedAt, leaseUntil };
  if (partitionKey !== null) lease.partitionKey = partitionKey;
  if (lastError !== null) lease.lastError = lastError;
  return lease;
}

function toDeadLetter(row: DeadRow): DeadLetter {
  return {
    deliveryId: String(row.delivery_id),
    queue: row.queue,
    payload: row.payload,
    ...(row.partition_key === null ? {} : { partitionKey: row.partition_key }),
    reason: row.reason,
    attempts: row.attempts,
    ...(row.last_error === null ? {} : { lastError: row.last_error }),
    enqueuedAt: row.enqueued_at,
    deadAt: row.dead_at,
  };
}

function expiresAt(now: number, ttlMs: number | undefined): number | null {
  return ttlMs === undefined ? null : now + ttlMs;
}

/** At most this many rows per multi-row statement (7 parameters a delivery row: far below SQLite's limit). */
const MAX_ROWS_PER_STATEMENT = 128;


/**
 * A multi-row statement (`INSERT … VALUES (…), (…), …`) run over rows in chunks of power-of-two sizes: one
 * statement execution per chunk instead of one per row (each execution costs a few µs of binding and stepping),
 * and at most log2(128)+1 prepared statements per kind. Rows are passed as one flat parameter array (building
 * it directly is much cheaper than flattening tuples).
 */
class MultiRow {
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

/**
 * Deliveries to insert, as flat row values (queue, partition key, event seq, payload, enqueued at, available at),
 * in order. A delivery carries its payload, or refers to its archived event with a null payload.
 */
type DeliveryValues = (string | number | null)[];
const DELIVERY_WIDTH = 6;

function pushDelivery(
  values: DeliveryValues,
  queue: string,
  partitionKey: string | null,
  eventSeq: number | null,
  payload: string | null,
  enqueuedAt: number,
  availableAt: number,
): void {
  values.push(queue, partitionKey, eventSeq, payload, enqueuedAt, availableAt);
}

/**
 * True when every delivery of an appended entry is plain: no partition key, no payload of its own, available at
 * the append's `now`. Such deliveries can be built by the fan-out statement from the event row alone.
 */
function isPlain(entry: AppendEntry, now: number): boolean {
  for (const d of entry.deliveries) {
    if (d.partitionKey !== undefined) return false;
    if (d.payload !== undefined && d.payload !== entry.encoded) return false;
    if (d.availableAt !== undefined && d.availableAt !== now) return false;
  }
  return true;
}

function sameQueues(queues: readonly string[], deliveries: readonly NewDelivery[]): boolean {
  if (queues.length !== deliveries.length) return false;
  for (let i = 0; i < queues.length; i++) if (queues[i] !== deliveries[i]?.queue) return false;
  return true;
}

/** Consecutive appended events with plain deliveries to the same queues (see #insertEventDeliveries). */
interface FanOutRun {
  queues: string[];
  first: number;
  last: number;
  /** The events' seqs, in order (duplicates of the append left gaps). */
  seqs: number[];
  /** The events' bodies, in order. */
  bodies: string[];
}

/** A lease taken while inserting deliveries (appendAndLease): `bodies[i]` is the encoded event of delivery i. */
interface InsertLeasing {
  max: number;
  now: number;
  leaseUntil: number;
  token: string;
  bodies: string[];
  out: Lease[];
}

interface PendingWrite {
  run(): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

const readyColumns = "id, queue, partition_key, payload, enqueued_at, attempt, last_error, event_seq, fanout, pending, visible_at";

/** A row leasable now (two parameters, both `now`): available, and not leased or its lease expired. */
const leasableNow = "visible_at <= ? AND (lease_until IS NULL OR lease_until <= ?)";

function prepareStatements(db: Database.Database) {
  return {
    // event log
    dedupeGet: db.prepare<[string, string], { seq: number; stored_at: number }>(
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
    nextSeq: db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'"),
    dedupeSweep: db.prepare<[string, number]>("DELETE FROM dedupe WHERE bus = ? AND stored_at <= ?"),
    // (seq, bus, event_id, encoded, stored_at)
    eventInsert: new MultiRow(db, (values) => `INSERT INTO events (seq, bus, event_id, encoded, stored_at) VALUES ${values}`, 5),
    lastStoredAt: db.prepare<[], { stored_at: number }>("SELECT stored_at FROM events ORDER BY seq DESC LIMIT 1"),
    storedAtOf: db.prepare<[number], { stored_at: number }>("SELECT stored_at FROM events WHERE seq = ?"),
    // (bus, stored_at) index order is (stored_at, seq): seq order, since stored_at never decreases along seq.
    eventRead: db.prepare<[string, number, number, number, number], StoredEventRow>(
      `SELECT bus, seq, event_id, encoded, stored_at FROM events
       WHERE bus = ? AND stored_at >= ? AND stored_at < ? AND seq > ? ORDER BY stored_at, seq LIMIT ?`,
    ),
    eventTrim: db.prepare<[string, number]>("DELETE FROM events WHERE bus = ? AND stored_at < ?"),
    anyBefore: db.prepare<[string, number], { seq: number }>("SELECT seq FROM events WHERE bus = ? AND stored_at < ? LIMIT 1"),
    eventBody: db.prepare<[number], { encoded: string }>("SELECT encoded FROM events WHERE seq = ?"),
    // Before a trim: pending deliveries of the events it deletes keep their body. Scans the (pending) deliveries.
    keepBodies: db.prepare<[string, number]>(
      `UPDATE deliveries SET payload = (SELECT encoded FROM events WHERE seq = deliveries.event_seq)
       WHERE payload IS NULL AND event_seq IN (SELECT seq FROM events WHERE bus = ? AND stored_at < ?)`,
    ),

    // deliveries
    keyHasPending: db.prepare<[string, string], { id: number }>(
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
    lastDeliveryId: db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'"),
    // The deliveries of a run of just-appended events routed to one queue (no partition key, no payload of their
    // own, available at once): one row per event, built by SQLite from the event rows instead of bound one value at
    // a time (about 1.1 instead of 1.8-2 µs a delivery). Duplicates left holes in the seq range; they have no event
    // row, so they get no delivery.
    deliveryRun: db.prepare<{ now: number; queue: string; first: number; last: number }>(
      `INSERT INTO deliveries (queue, event_seq, enqueued_at, available_at, visible_at)
       SELECT @queue, e.seq, @now, @now, @now FROM events e WHERE e.seq BETWEEN @first AND @last ORDER BY e.seq`,
    ),
    readyAll: db
      .prepare<[number, number, number], ReadyRow>(
        `SELECT ${readyColumns} FROM deliveries WHERE ${leasableNow}
         ORDER BY visible_at, id LIMIT ?`,
      )
      .raw(true),
    // The next page after (visible_at, id).
    readyAfter: db
      .prepare<[number, number, number, number, number, number], ReadyRow>(
        `SELECT ${readyColumns} FROM deliveries WHERE ${leasableNow}
           AND (visible_at > ? OR (visible_at = ? AND id > ?))
         ORDER BY visible_at, id LIMIT ?`,
      )
      .raw(true),
    readyInQueues: db
      .prepare<[number, number, string, number], ReadyRow>(
        `SELECT ${readyColumns} FROM deliveries
         WHERE ${leasableNow} AND fanout IS NULL
           AND queue IN (SELECT value FROM json_each(?))
         ORDER BY visible_at, id LIMIT ?`,
      )
      .raw(true),
    // Fan-out rows for a run of just-appended events (see the file header): row ids base, base + stride, … by seq;
    // the ids between are reserved for the rows' deliveries.
    fanOutRowInsert: db.prepare<{ now: number; base: number; stride: number; first: number; last: number; queue: string; fanout: string; mask: number }>(
      `INSERT INTO deliveries (id, queue, event_seq, enqueued_at, available_at, visible_at, fanout, pending)
       SELECT @base + (e.seq - @first) * @stride, @queue, e.seq, @now, @now, @now, @fanout, @mask FROM events e
       WHERE e.seq BETWEEN @first AND @last ORDER BY e.seq`,
    ),
    reserveDeliveryIds: db.prepare<[number, number]>("UPDATE sqlite_sequence SET seq = ? WHERE name = 'deliveries' AND seq < ?"),
    // A lease restricted to some queues splits the leasable fan-out rows first (filtered leases are rare).
    readyFanOuts: db.prepare<[number, number], DeliveryRow>(
      `SELECT * FROM deliveries WHERE fanout IS NOT NULL AND ${leasableNow}`,
    ),
    rowById: db.prepare<[number], DeliveryRow>("SELECT * FROM deliveries WHERE id = ?"),
    // The fan-out row that may hold delivery id ? (its own id is below, by at most MAX_FANOUT + 1; the caller checks
    // the row's width). Rows split out of it may lie between.
    fanOutBelow: db.prepare<[number, number], DeliveryRow>(
      "SELECT * FROM deliveries WHERE id < ? AND id >= ? AND fanout IS NOT NULL ORDER BY id DESC LIMIT 1",
    ),
    // Fan-out rows of one lease token around an ack batch's ids.
    fanOutsOfToken: db.prepare<[number, number, string], { id: number; fanout: string; pending: number }>(
      "SELECT id, fanout, pending FROM deliveries WHERE id BETWEEN ? AND ? AND token = ? AND fanout IS NOT NULL ORDER BY id",
    ),
    setPending: db.prepare<[number, number, string]>("UPDATE deliveries SET pending = ? WHERE id = ? AND token = ?"),
    deleteRow: db.prepare<[number]>("DELETE FROM deliveries WHERE id = ?"),
    // A delivery split out of its fan-out row keeps the row's state (and its lease, when leased).
    splitInsert: db.prepare<
      [number, string, number | null, string | null, number, number, number | null, string | null, number | null, number, string | null]
    >(
      `INSERT INTO deliveries (id, queue, event_seq, payload, enqueued_at, available_at, visible_at, token, lease_until, attempt, last_error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // The bodies of a lease batch's events, once each: a seq range when the batch's seqs are dense, else a list.
    bodiesInRange: db.prepare<[number, number], [number, string]>("SELECT seq, encoded FROM events WHERE seq BETWEEN ? AND ?").raw(true),
    bodiesOf: db
      .prepare<[string], [number, string]>("SELECT seq, encoded FROM events WHERE seq IN (SELECT value FROM json_each(?))")
      .raw(true),
    markLeased: db.prepare<[string, number, string]>(
      `UPDATE deliveries SET token = ?, lease_until = ?, attempt = attempt + 1 WHERE id IN (SELECT value FROM json_each(?))`,
    ),
    // The same for a batch whose ids are an arithmetic progression (the common case: a backlog leased in order;
    // fan-out rows step by their width + 1), without building and parsing a JSON list of ids.
    markLeasedRange: db.prepare<[string, number, number, number, number, number]>(
      `UPDATE deliveries SET token = ?, lease_until = ?, attempt = attempt + 1 WHERE id BETWEEN ? AND ? AND (id - ?) % ? = 0`,
    ),
    // Settling a lease batch: the keyed rows (whose keys need promoting) are read first, then one plain DELETE;
    // RETURNING would cost ~2 µs a row. Only when some lease was lost does removeLeased say which. When no keyed
    // delivery is pending at all (one probe of the partial index `deliveries_key`), the keyed read is skipped.
    anyKeyed: db.prepare<[], { id: number }>("SELECT id FROM deliveries WHERE partition_key IS NOT NULL LIMIT 1"),
    keyedLeased: db.prepare<[string, string], { id: number; queue: string; partition_key: string }>(
      `SELECT id, queue, partition_key FROM deliveries
       WHERE id IN (SELECT value FROM json_each(?)) AND token = ? AND partition_key IS NOT NULL ORDER BY id`,
    ),
    deleteLeased: db.prepare<[string, string]>("DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) AND token = ?"),
    deleteLeasedRange: db.prepare<[number, number, number, number, string]>(
      "DELETE FROM deliveries WHERE id BETWEEN ? AND ? AND (id - ?) % ? = 0 AND token = ?",
    ),
    removeLeased: db.prepare<[string, string], { id: number; queue: string; partition_key: string | null }>(
      `DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) AND token = ?
       RETURNING id, queue, partition_key`,
    ),
    // Single deliveries only (`fanout IS NULL`): a fan-out row's own id is no delivery's id.
    removeRow: db.prepare<[number, string], DeliveryRow>(
      "DELETE FROM deliveries WHERE id = ? AND token = ? AND fanout IS NULL RETURNING *",
    ),
    promoteNext: db.prepare<[string, string]>(
      `UPDATE deliveries SET visible_at = available_at
       WHERE id = (SELECT id FROM deliveries WHERE queue = ? AND partition_key = ? ORDER BY id LIMIT 1)
         AND visible_at IS NULL`,
    ),
    release: db.prepare<[number, number, string, number, string]>(
      `UPDATE deliveries SET token = NULL, lease_until = NULL, available_at = ?, visible_at = ?, last_error = ?
       WHERE id = ? AND token = ? AND fanout IS NULL`,
    ),
    extend: db.prepare<[number, number, string]>(
      "UPDATE deliveries SET lease_until = ? WHERE id = ? AND token = ? AND fanout IS NULL",
    ),
    extendFanOut: db.prepare<[number, number, string]>(
      "UPDATE deliveries SET lease_until = ? WHERE id = ? AND token = ? AND fanout IS NOT NULL",
    ),
    statsAll: db.prepare<[number, number, number], StatsRow>(
      `SELECT queue, SUM(${leasableNow}) AS ready,
              SUM(token IS NOT NULL AND lease_until > ?) AS leased,
              COUNT(*) AS total
       FROM deliveries WHERE fanout IS NULL GROUP BY queue`,
    ),
    // Fan-out rows count once for each queue whose bit is still pending.
    fanOutStatsAll: db.prepare<[number, number, number], StatsRow>(
      `SELECT j.value AS queue, SUM(${leasableNow}) AS ready,
              SUM(d.token IS NOT NULL AND d.lease_until > ?) AS leased, COUNT(*) AS total
       FROM deliveries d, json_each(d.fanout) j WHERE d.fanout IS NOT NULL AND (d.pending >> j.key) & 1 GROUP BY j.value`,
    ),
    statsQueue: db.prepare<[number, number, number, string], StatsRow>(
      `SELECT queue, SUM(${leasableNow}) AS ready,
              SUM(token IS NOT NULL AND lease_until > ?) AS leased,
              COUNT(*) AS total
       FROM deliveries WHERE queue = ? AND fanout IS NULL`,
    ),
    fanOutStatsQueue: db.prepare<[number, number, number, string], StatsRow>(
      `SELECT j.value AS queue, SUM(${leasableNow}) AS ready,
              SUM(d.token IS NOT NULL AND d.lease_until > ?) AS leased, COUNT(*) AS total
       FROM deliveries d, json_each(d.fanout) j
       WHERE d.fanout IS NOT NULL AND (d.pending >> j.key) & 1 AND j.value = ?`,
    ),
    deadCountAll: db.prepare<[], { queue: string; dead: number }>(
      "SELECT queue, COUNT(*) AS dead FROM dead_letters GROUP BY queue",
    ),
    deadCountQueue: db.prepare<[string], { dead: number }>("SELECT COUNT(*) AS dead FROM dead_letters WHERE queue = ?"),

    // dead letters
    deadInsert: db.prepare<[number, string, string | null, string, string, number, string | null, number, number]>(
      `INSERT INTO dead_letters (delivery_id, queue, partition_key, payload, reason, attempts, last_error, enqueued_at, dead_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deadList: db.prepare<[string, number, number], DeadRow>(
      "SELECT * FROM dead_letters WHERE queue = ? AND delivery_id > ? ORDER BY delivery_id LIMIT ?",
    ),
    deadGet: db.prepare<[number], DeadRow>("SELECT * FROM dead_letters WHERE delivery_id = ?"),
    deadOfQueue: db.prepare<[string], DeadRow>("SELECT * FROM dead_letters WHERE queue = ? ORDER BY delivery_id"),
    deadDelete: db.prepare<[number, string]>("DELETE FROM dead_letters WHERE delivery_id = ? AND queue = ?"),
    deadDeleteQueue: db.prepare<[string]>("DELETE FROM dead_letters WHERE queue = ?"),

    // state
    stateGet: db.prepare<[string, string], { value: string; expires_at: number | null }>(
      "SELECT value, expires_at FROM state WHERE namespace = ? AND key = ?",
    ),
    statePut: db.prepare<[string, string, string, number | null]>(
      "INSERT OR REPLACE INTO state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)",
    ),
    statePutIfAbsent: db.prepare<[string, string, string, number | null, number]>(
      `INSERT INTO state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
       WHERE state.expires_at IS NOT NULL AND state.expires_at <= ?`,
    ),
    stateCas: db.prepare<[string, number | null, string, string, string, number]>(
      `UPDATE state SET value = ?, expires_at = ?
       WHERE namespace = ? AND key = ? AND value = ? AND (expires_at IS NULL OR expires_at > ?)`,
    ),
    stateDelete: db.prepare<[string, string]>("DELETE FROM state WHERE namespace = ? AND key = ?"),
    stateList: db.prepare<[string, number], { key: string; value: string }>(
      "SELECT key, value FROM state WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
    ),
    stateSweep: db.prepare<[number]>("DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?"),
  };
}

interface StoredEventRow {
  bus: string;
  seq: number;
  event_id: string;
  encoded: string;
  stored_at: number;
}

interface StatsRow {
  queue: string;
  ready: number | null;
  leased: number | null;
  total: number;
}

/** Sums the counts of one queue's single-delivery rows and fan-out rows. */
function addStats(a: StatsRow | undefined, b: StatsRow | undefined): StatsRow | undefined {
  if (a === undefined || !a.total) return b;
  if (b === undefined || !b.total) return a;
  return { queue: a.queue, ready: (a.ready ?? 0) + (b.ready ?? 0), leased: (a.leased ?? 0) + (b.leased ?? 0), total: a.total + b.total };
}

/** The SQLite `StorageBackend`. Create it with `createSqliteStore`. */
export interface SqliteStore extends StorageBackend {
  readonly kind: "sqlite";
  /** Absolute path of the database file. */
  readonly path: string;
  /** Counters of the checkpointer thread; undefined with `checkpoint: false`. */
  checkpointStats(): Promise<CheckpointStats | undefined>;
}

/** The group-commit engine. */
export class LocalSqliteStore implements SqliteStore {
  readonly kind = "sqlite";
  readonly events: EventLog;
  readonly queues: DeliveryQueues;
  readonly state: StateStore;
  /** Absolute path of the database file. */
  readonly path: string;

  readonly #db: Database.Database;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #signal: WorkSignal;
  readonly #flushAll: Database.Transaction<(writes: PendingWrite[]) => { ok: boolean; value: unknown }[]>;
  readonly #inSavepoint: Database.Transaction<(write: PendingWrite) => unknown>;
  readonly #alone: Database.Transaction<(write: PendingWrite) => unknown>;
  readonly #deleteAllLeased: Database.Transaction<(ids: number[], token: string) => void>;
  #pending: PendingWrite[] = [];
  #flushScheduled = false;
  #flushed: Promise<void> | undefined;
  #resolveFlushed: (() => void) | undefined;
  #workCreated = false;
  #closing: Promise<void> | undefined;
  #closed = false;
  /** Per bus: buses may use different dedupe windows, so each is swept with its own. */
  readonly #lastDedupeSweepAt = new Map<string, number>();
  #lastStateSweepAt = Number.NEGATIVE_INFINITY;
  /** Decoded `fanout` columns (see #queuesOf). */
  readonly #fanOutQueues = new Map<string, string[]>();
  /** Deliveries per row in the last lease batch: sizes the next lease read. */
  #deliveriesPerRow = 1;

  #checkpointer: Checkpointer | undefined;
  /** With the checkpointer: WAL size past which flushes wait for it (see #walTooLarge). */
  readonly #walCapBytes: number;
  readonly #walPath: string;

  constructor(
    db: Database.Database,
    path: string,
    checkpointer?: { start: (store: LocalSqliteStore) => Checkpointer; walCapBytes: number },
  ) {
    this.#db = db;
    this.path = path;
    this.#walPath = `${path}-wal`;
    this.#walCapBytes = checkpointer?.walCapBytes ?? 0;
    this.#checkpointer = checkpointer?.start(this);
    this.#sql = prepareStatements(db);
    this.#signal = acquireSignal(path);
    this.#inSavepoint = db.transaction((write: PendingWrite) => write.run());
    // Deletes a lease batch in a savepoint, and rolls it back when some lease of the batch was lost.
    // `ids` are distinct.
    this.#deleteAllLeased = db.transaction((ids: number[], token: string) => {
      const range = progression(ids);
      const changes =
        range !== undefined
          ? this.#sql.deleteLeasedRange.run(range.first, range.last, range.first, range.step, token).changes
          : this.#sql.deleteLeased.run(JSON.stringify(ids), token).changes;
      if (changes !== ids.length) throw someLeaseLost;
    });
    // A flush of one write needs no savepoint: its failure rolls back the whole (its own) transaction.
    this.#alone = db.transaction((write: PendingWrite) => write.run());
    this.#flushAll = db.transaction((writes: PendingWrite[]) =>
      writes.map((write) => {
        try {
          // Nested better-sqlite3 transactions are savepoints: a failing call rolls back only its own writes.
          return { ok: true, value: this.#inSavepoint(write) };
        } catch (err) {
          return { ok: false, value: err };
        }
      }),
    );
    this.events = this.#eventLog();
    this.queues = this.#deliveryQueues();
    this.state = this.#stateStore();
  }

  /** Queues a write for the next group commit; settles after that commit. */
  #write<T>(run: () => T): Promise<T> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError());
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Runs a read now; reads see every write whose promise has resolved. */
  #read<T>(run: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    try {
      return Promise.resolve(run());
    } catch (err) {
      return Promise.reject(storeError(err));
    }
  }

  #closedError(): SluiceError {
    return new SluiceError(ErrorCode.Closed, `sqlite store ${this.path} is closed`);
  }

  #flush(): void {
    if (this.#walCapBytes > 0 && this.#walTooLarge()) {
      setTimeout(() => this.#flush(), WAL_WAIT_MS);
      return;
    }
    const writes = this.#pending;
    this.#pending = [];
    this.#flushScheduled = false;
    let outcomes: { ok: boolean; value: unknown }[];
    try {
      if (writes.length === 1) {
        try {
          outcomes = [{ ok: true, value: this.#alone.immediate(writes[0] as PendingWrite) }];
        } catch (err) {
          // Rolled back. Our own errors (E_LEASE_LOST…) and constraint failures belong to the call; a failed
          // BEGIN/COMMIT is reported the same way, so nothing is lost by not telling them apart here.
          outcomes = [{ ok: false, value: err }];
        }
      } else {
        outcomes = this.#flushAll.immediate(writes);
      }
    } catch (err) {
      // The commit itself failed (lock timeout, disk full, I/O error): nothing of this batch is durable.
      const error = storeError(err);
      for (const write of writes) write.reject(error);
      this.#workCreated = false;
      this.#settleFlushed();
      return;
    }
    writes.forEach((write, i) => {
      const outcome = outcomes[i] as { ok: boolean; value: unknown };
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(storeError(outcome.value));
    });
    if (this.#workCreated) {
      this.#workCreated = false;
      // Deferred one turn so that a worker whose lease() just resolved empty is parked in waitForWork() by then.
      setImmediate(() => this.#signal.notify());
    }
    this.#settleFlushed();
  }

  #settleFlushed(): void {
    if (this.#pending.length > 0) return;
    const resolve = this.#resolveFlushed;
    this.#flushed = undefined;
    this.#resolveFlushed = undefined;
    resolve?.();
  }

  /** Resolves when every queued write has been committed (or failed). */
  #idle(): Promise<void> {
    if (this.#pending.length === 0 && !this.#flushScheduled) return Promise.resolve();
    this.#flushed ??= new Promise<void>((resolve) => {
      this.#resolveFlushed = resolve;
    });
    return this.#flushed;
  }

  /** Waits for queued writes, then closes the database. Idempotent; later calls fail with E_CLOSED. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#idle();
      this.#closed = true;
      // First the checkpointer, so that the writer's connection is the last one and its close checkpoints the
      // WAL and removes it.
      await this.#checkpointer?.close();
      this.#db.close();
      releaseSignal(this.path);
      // Wake parked workers so their loops see the store is closed.
      this.#signal.notify();
    })();
    return this.#closing;
  }

  /**
   * Backpressure behind the checkpointer: while the WAL file is past the cap (the checkpointer thread is starved of
   * CPU, or its RESTART keeps missing a gap between commits), a flush waits a few ms, up to MAX_WAL_WAITS times in a
   * row, giving the checkpointer CPU and gaps. The writes just queue meanwhile; the event loop never blocks. At most
   * one stat(2) per flush (and per WAL_CHECK_MS); the file only exceeds `journal_size_limit` while frames pile up
   * (a rewind cuts it back).
   * (Checkpointing here instead mostly finds the checkpointer mid-checkpoint, SQLITE_BUSY, and stalls the loop when
   * it does run.)
   */
  #walTooLarge(): boolean {
    if (this.#walWaits >= MAX_WAL_WAITS) {
      this.#walWaits = 0;
      return false;
    }
    // While the WAL was last seen under half the cap, at most one stat(2) per WAL_CHECK_MS: it cannot grow by half
    // the cap in that time, and a stat per flush allocated ~2 KB (a Stats object) for every small commit.
    const at = performance.now();
    if (this.#walLow && at - this.#walCheckedAt < WAL_CHECK_MS) return false;
    this.#walCheckedAt = at;
    let size: number;
    try {
      size = statSync(this.#walPath).size;
    } catch {
      return false;
    }
    this.#walLow = size < this.#walCapBytes / 2;
    if (size <= this.#walCapBytes) {
      this.#walWaits = 0;
      return false;
    }
    this.#walWaits++;
    this.#walWaitsTotal++;
    return true;
  }

  #walWaits = 0;
  #walWaitsTotal = 0;
  #walCheckedAt = Number.NEGATIVE_INFINITY;
  #walLow = false;

  /** Counters of the checkpointer thread; undefined with `checkpoint: false`. */
  checkpointStats(): Promise<CheckpointStats | undefined> {
    if (this.#checkpointer === undefined) return Promise.resolve(undefined);
    return this.#checkpointer.stats().then((stats) => ({ ...stats, writerWaits: this.#walWaitsTotal }));
  }

  /** The checkpointer died: fall back to SQLite's automatic checkpoints so the WAL stays bounded. */
  fallBackToAutoCheckpoint(): void {
    this.#checkpointer = undefined;
    if (!this.#closed) this.#db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
  }

  // ---- writes run inside the group-commit transaction ----

  /**
   * Inserts deliveries in order. Only the oldest delivery of a (queue, key) is visible; later ones wait
   * (visible_at NULL) until promoted: a key is blocked by a pending delivery, or by one earlier in this batch.
   * With `leasing`, up to `leasing.max` deliveries leasable now are inserted already leased (see appendAndLease).
   */
  #insertDeliveries(values: DeliveryValues, leasing?: InsertLeasing): void {
    if (values.length === 0) return;
    const rows: unknown[] = [];
    let keysInBatch: Set<string> | undefined;
    let id = this.#sql.lastDeliveryId.get()?.seq ?? 0;
    let unleased = false;
    for (let at = 0, n = 0; at < values.length; at += DELIVERY_WIDTH, n++) {
      const queue = values[at] as string;
      const key = values[at + 1] as string | null;
      const enqueuedAt = values[at + 4] as number;
      const availableAt = values[at + 5] as number;
      let visibleAt: number | null = availableAt;
      if (key !== null) {
        keysInBatch ??= new Set();
        const keyId = `${queue}\n${key}`;
        if (keysInBatch.has(keyId) || this.#sql.keyHasPending.get(queue, key) !== undefined) visibleAt = null;
        keysInBatch.add(keyId);
      }
      id++;
      if (leasing !== undefined && visibleAt !== null && availableAt <= leasing.now && leasing.out.length < leasing.max) {
        const { token, leaseUntil } = leasing;
        rows.push(id, queue, key, values[at + 2], values[at + 3], enqueuedAt, availableAt, visibleAt, token, leaseUntil, 1);
        leasing.out.push({
          deliveryId: String(id),
          queue,
          token,
          payload: leasing.bodies[n] as string,
          attempt: 1,
          ...(key === null ? {} : { partitionKey: key }),
          enqueuedAt,
          leaseUntil,
        });
        continue;
      }
      unleased = true;
      rows.push(id, queue, key, values[at + 2], values[at + 3], enqueuedAt, availableAt, visibleAt, null, null, 0);
    }
    this.#sql.deliveryInsert.run(rows);
    // Deliveries leased here are nobody else's work: only the others need a wake-up.
    if (unleased) this.#workCreated = true;
  }

  /** After a key's head left the queue (ack, dead letter), makes the key's next delivery visible. */
  #promoteNext(queue: string, partitionKey: string | null): void {
    if (partitionKey === null) return;
    if (this.#sql.promoteNext.run(queue, partitionKey).changes > 0) this.#workCreated = true;
  }

  /** Lazily deletes a bus's dedupe keys older than its window, at most once per min(window, 60 s) of `now`. */
  #sweepDedupe(bus: string, now: number, dedupeWindowMs: number): void {
    const last = this.#lastDedupeSweepAt.get(bus);
    if (last !== undefined && now >= last && now - last < Math.min(dedupeWindowMs, SWEEP_EVERY_MS)) return;
    this.#sql.dedupeSweep.run(bus, now - dedupeWindowMs);
    this.#lastDedupeSweepAt.set(bus, now);
  }

  #appendEntries(entries: AppendEntry[], now: number, dedupeWindowMs: number, leasing?: InsertLeasing): AppendResult[] {
    const sql = this.#sql;
    const dedupe = dedupeWindowMs > 0;
    if (dedupe) {
      for (const bus of new Set(entries.map((e) => e.bus))) this.#sweepDedupe(bus, now, dedupeWindowMs);
    }
    // Seqs are assigned here, under the write lock: entry i gets base + i + 1, so the dedupe claims record the
    // seqs in one statement before we know which entries are duplicates (their seqs are left unused).
    const base = sql.nextSeq.get()?.seq ?? 0;
    let duplicates = false;
    if (dedupe) {
      const claims: unknown[] = [];
      entries.forEach((e, i) => claims.push(e.bus, e.dedupeKey, base + i + 1, now));
      duplicates = sql.dedupeClaim.run(claims, [now, dedupeWindowMs]) < entries.length;
    }
    // storedAt never decreases along seq (a caller's clock stepping back, or two processes' clocks disagreeing,
    // stores at the latest storedAt so far), so time-ordered reads are seq-ordered without a second index.
    const storedAt = Math.max(now, sql.lastStoredAt.get()?.stored_at ?? Number.NEGATIVE_INFINITY);
    const results: AppendResult[] = [];
    const events: unknown[] = [];
    const stored: { entry: AppendEntry; seq: number }[] = [];
    entries.forEach((entry, i) => {
      const seq = base + i + 1;
      if (duplicates) {
        // Some key was not claimed: an entry is a duplicate unless its key now records its own seq.
        const seen = (sql.dedupeGet.get(entry.bus, entry.dedupeKey) as { seq: number }).seq;
        if (seen !== seq) {
          results.push({ status: "duplicate", seq: seen });
          return;
        }
      }
      events.push(seq, entry.bus, entry.eventId, entry.encoded, storedAt);
      stored.push({ entry, seq });
      results.push({ status: "stored", seq });
    });
    sql.eventInsert.run(events);
    this.#insertEventDeliveries(stored, now, leasing);
    return results;
  }

  /**
   * Inserts the deliveries of appended events, in event order. Runs of consecutive events whose deliveries are
   * plain (see isPlain) and go to the same queues take the fan-out statement; the others are bound row by row.
   */
  #insertEventDeliveries(stored: { entry: AppendEntry; seq: number }[], now: number, leasing: InsertLeasing | undefined): void {
    let values: DeliveryValues = [];
    let bodies: string[] = [];
    let run: FanOutRun | undefined;
    const flushRows = () => {
      if (values.length === 0) return;
      if (leasing !== undefined) leasing.bodies = bodies;
      this.#insertDeliveries(values, leasing);
      values = [];
      bodies = [];
    };
    const flushRun = () => {
      if (run === undefined) return;
      this.#insertFanOut(run, now, leasing);
      run = undefined;
    };
    for (const { entry, seq } of stored) {
      const { deliveries } = entry;
      if (deliveries.length === 0) {
        // Its event row would be inside the run's seq range: the run must end before it.
        flushRun();
        continue;
      }
      if (deliveries.length <= MAX_FANOUT && isPlain(entry, now)) {
        if (run !== undefined && sameQueues(run.queues, deliveries)) {
          run.last = seq;
          run.seqs.push(seq);
          run.bodies.push(entry.encoded);
          continue;
        }
        flushRows();
        flushRun();
        run = { queues: deliveries.map((d) => d.queue), first: seq, last: seq, seqs: [seq], bodies: [entry.encoded] };
        continue;
      }
      flushRun();
      for (const d of deliveries) {
        const own = d.payload === undefined || d.payload === entry.encoded ? null : d.payload;
        pushDelivery(values, d.queue, d.partitionKey ?? null, own === null ? seq : null, own, now, d.availableAt ?? now);
        // One string object per event body: the dispatcher decodes consecutive deliveries of one body once.
        if (leasing !== undefined) bodies.push(own ?? entry.encoded);
      }
    }
    flushRows();
    flushRun();
  }

  /**
   * One statement for a run of events routed to the same queues: one row per delivery for a single queue, one
   * fan-out row per event for several (see the file header). With `leasing`, the run's first deliveries (oldest
   * first) are then leased in the same commit, up to what is left of `leasing.max` (whole fan-out rows only).
   */
  #insertFanOut(run: FanOutRun, now: number, leasing: InsertLeasing | undefined): void {
    const sql = this.#sql;
    const base = (sql.lastDeliveryId.get()?.seq ?? 0) + 1;
    const width = run.queues.length;
    let inserted: number;
    let stride = 1;
    if (width === 1) {
      inserted = sql.deliveryRun.run({ now, queue: run.queues[0] as string, first: run.first, last: run.last }).changes;
    } else {
      stride = width + 1;
      inserted = sql.fanOutRowInsert.run({
        now,
        base,
        stride,
        first: run.first,
        last: run.last,
        queue: run.queues[0] as string,
        fanout: JSON.stringify(run.queues),
        mask: 2 ** width - 1,
      }).changes;
      // The last row's deliveries' ids are reserved too.
      const top = base + (run.last - run.first) * stride + width;
      sql.reserveDeliveryIds.run(top, top);
    }
    // Rows (events) leased here: as many whole rows as fit.
    const rowsLeased = leasing === undefined ? 0 : Math.min(inserted, Math.floor((leasing.max - leasing.out.length) / width));
    if (leasing !== undefined && rowsLeased > 0) {
      const { token, leaseUntil } = leasing;
      // Row j is the j-th stored event of the run (duplicates left gaps in seq, so in row ids too).
      const rowIdOf = (j: number) => (width === 1 ? base + j : base + ((run.seqs[j] as number) - run.first) * stride);
      const ids = Array.from({ length: rowsLeased }, (_, j) => rowIdOf(j));
      const range = progression(ids);
      if (range !== undefined) sql.markLeasedRange.run(token, leaseUntil, range.first, range.last, range.first, range.step);
      else sql.markLeased.run(token, leaseUntil, JSON.stringify(ids));
      for (let j = 0; j < rowsLeased; j++) {
        const id = ids[j] as number;
        const payload = run.bodies[j] as string;
        for (let i = 0; i < width; i++) {
          leasing.out.push({
            deliveryId: String(width === 1 ? id : id + 1 + i),
            queue: run.queues[i] as string,
            token,
            payload,
            attempt: 1,
            enqueuedAt: now,
            leaseUntil,
          });
        }
      }
    }
    // Deliveries leased here are nobody else's work: only the others need a wake-up.
    if (inserted > rowsLeased) this.#workCreated = true;
  }

  /** The queues of a fan-out row (its `fanout` column), decoded once per distinct list. */
  #queuesOf(fanout: string): string[] {
    let queues = this.#fanOutQueues.get(fanout);
    if (queues === undefined) {
      if (this.#fanOutQueues.size >= 1000) this.#fanOutQueues.clear();
      queues = JSON.parse(fanout) as string[];
      this.#fanOutQueues.set(fanout, queues);
    }
    return queues;
  }

  /**
   * Moves every pending delivery of a fan-out row into a row of its own (id: the delivery's id), with the row's
   * state (lease included), and deletes the fan-out row.
   */
  #splitFanOut(row: DeliveryRow): void {
    if (row.fanout === null || row.pending === null) return;
    const queues = this.#queuesOf(row.fanout);
    for (const i of pendingIndexes(row.pending, queues.length)) this.#insertSplit(row, i, queues[i] as string);
    this.#sql.deleteRow.run(row.id);
  }

  #insertSplit(row: DeliveryRow, i: number, queue: string): void {
    this.#sql.splitInsert.run(
      row.id + 1 + i,
      queue,
      row.event_seq,
      row.payload,
      row.enqueued_at,
      row.available_at,
      row.visible_at,
      row.token,
      row.lease_until,
      row.attempt,
      row.last_error,
    );
  }

  /**
   * Before a retry or dead letter of delivery `id`: when it is held in a fan-out row under `token`, it moves into
   * a row of its own (same id, same lease), and the fan-out row keeps the others.
   */
  #splitOut(id: number, token: string): void {
    const held = this.#heldBy(id);
    if (held === undefined || held.row.token !== token) return;
    const { row, i, queue } = held;
    this.#insertSplit(row, i, queue);
    const rest = (row.pending as number) & ~(1 << i);
    if (rest === 0) this.#sql.deleteRow.run(row.id);
    else this.#sql.setPending.run(rest, row.id, token);
  }

  /** The fan-out row holding delivery `id` unsettled, with the delivery's index and queue in it. */
  #heldBy(id: number): { row: DeliveryRow; i: number; queue: string } | undefined {
    const row = this.#sql.fanOutBelow.get(id, id - MAX_FANOUT - 1);
    if (row === undefined || row.fanout === null || row.pending === null) return undefined;
    const queues = this.#queuesOf(row.fanout);
    const i = id - row.id - 1;
    if (i >= queues.length || !((row.pending >> i) & 1)) return undefined;
    return { row, i, queue: queues[i] as string };
  }

  /**
   * Acks the deliveries among `ids` that fan-out rows of `token` hold: clears their bits. Returns the ids that are
   * rows of their own (or lost), and the fan-out rows left with no pending delivery (to delete with them). Ids that name a fan-out row
   * itself are added to `lost`.
   */
  #settleFanOuts(ids: number[], token: string, lost: string[]): { direct: number[]; emptied: number[] } {
    const { low, high } = bounds(ids);
    const rows = this.#sql.fanOutsOfToken.all(low - MAX_FANOUT - 1, high, token);
    if (rows.length === 0) return { direct: ids, emptied: [] };
    // Rows in id order, ids in order: each id is held by the last row below it, when within that row's width.
    const sorted = ids.length > 1 ? [...ids].sort((a, b) => a - b) : ids;
    const direct: number[] = [];
    const touched: { id: number; pending: number }[] = [];
    let r = -1;
    for (const id of sorted) {
      while (r + 1 < rows.length && (rows[r + 1] as { id: number }).id <= id) r++;
      const row = r >= 0 ? (rows[r] as { id: number; fanout: string; pending: number }) : undefined;
      if (row !== undefined && row.id === id) {
        // A fan-out row's own id is no delivery's: not acked (the direct delete would take the whole row).
        lost.push(String(id));
        continue;
      }
      const bit = row === undefined ? 0 : id - row.id - 1;
      // Not held, or its bit is clear (split out, or already acked): a row of its own, or lost.
      if (row === undefined || bit >= this.#queuesOf(row.fanout).length || ((row.pending >> bit) & 1) === 0) {
        direct.push(id);
        continue;
      }
      // Ids are sorted and rows walked forward: a row's deliveries come in one stretch.
      if (touched[touched.length - 1] !== row) touched.push(row);
      row.pending &= ~(1 << bit);
    }
    const emptied: number[] = [];
    for (const row of touched) {
      if (row.pending === 0) emptied.push(row.id);
      else this.#sql.setPending.run(row.pending, row.id, token);
    }
    return { direct, emptied };
  }

  #leaseNow(request: LeaseRequest): Lease[] {
    const { max, leaseMs, now } = request;
    if (!(max > 0)) return [];
    let rows: ReadyRow[];
    if (request.queues === undefined) {
      // Fan-out rows hold several deliveries: read about as many rows as `max` needs (from the last batch's
      // deliveries per row), and a second page only when they fall short.
      const limit = Math.max(1, Math.ceil(max / this.#deliveriesPerRow));
      rows = this.#sql.readyAll.all(now, now, limit);
      let deliveries = 0;
      for (const row of rows) deliveries += row[8] === null ? 1 : bitCount(row[9] as number);
      if (rows.length === limit && deliveries < max) {
        const last = rows[rows.length - 1] as ReadyRow;
        rows = rows.concat(this.#sql.readyAfter.all(now, now, last[10], last[10], last[0], max - deliveries));
      }
    } else {
      if (request.queues.length === 0) return [];
      // Fan-out rows are leased whole: a lease for some queues splits those holding any of them first.
      const wanted = new Set(request.queues);
      for (const row of this.#sql.readyFanOuts.all(now, now)) {
        const queues = this.#queuesOf(row.fanout as string);
        if (pendingIndexes(row.pending as number, queues.length).some((i) => wanted.has(queues[i] as string))) this.#splitFanOut(row);
      }
      rows = this.#sql.readyInQueues.all(now, now, JSON.stringify(request.queues), max);
    }
    if (rows.length === 0) return [];
    // Take rows, oldest first, while their deliveries fit in `max`.
    let count = 0;
    let take = 0;
    for (; take < rows.length; take++) {
      const row = rows[take] as ReadyRow;
      const n = row[8] === null ? 1 : bitCount(row[9] as number);
      if (count + n > max) break;
      count += n;
    }
    if (take > 0) this.#deliveriesPerRow = count / take;
    if (take === 0) {
      // The oldest row alone holds more deliveries than `max`: split it, then lease its deliveries one by one.
      this.#splitFanOut(this.#sql.rowById.get((rows[0] as ReadyRow)[0]) as DeliveryRow);
      return this.#leaseNow(request);
    }
    if (take < rows.length) rows = rows.slice(0, take);
    const leaseUntil = now + leaseMs;
    // One token per lease call: (deliveryId, token) is still unique per lease, and one UPDATE marks the batch.
    const token = newToken();
    const ids = rows.map((row) => row[0]);
    const range = progression(ids);
    if (range !== undefined) this.#sql.markLeasedRange.run(token, leaseUntil, range.first, range.last, range.first, range.step);
    else this.#sql.markLeased.run(token, leaseUntil, JSON.stringify(ids));
    const bodies = this.#bodiesOf(rows);
    const leases: Lease[] = [];
    for (const row of rows) {
      const payload = row[3] ?? (bodies.get(row[7] as number) as string);
      const fanout = row[8];
      if (fanout === null) {
        leases.push(toLease(row, row[0], row[1], payload, token, leaseUntil));
        continue;
      }
      const queues = this.#queuesOf(fanout);
      for (const i of pendingIndexes(row[9] as number, queues.length)) {
        leases.push(toLease(row, row[0] + 1 + i, queues[i] as string, payload, token, leaseUntil));
      }
    }
    return leases;
  }

  /**
   * The archived bodies of rows without a payload of their own, read once per event: the deliveries of one event
   * to several targets share one string (cheaper than a join that copies the body into every row, and the
   * dispatcher then decodes it once). A pending delivery's event is never trimmed away (trim copies its body first).
   */
  #bodiesOf(rows: ReadyRow[]): Map<number, string> {
    const bodies = new Map<number, string>();
    const seqs = new Set<number>();
    for (const row of rows) if (row[3] === null && row[7] !== null) seqs.add(row[7]);
    if (seqs.size === 0) return bodies;
    const { low: first, high: last } = bounds(seqs);
    // A range read walks the events between; worth it while most of them are wanted.
    const found =
      last - first + 1 <= 2 * seqs.size ? this.#sql.bodiesInRange.all(first, last) : this.#sql.bodiesOf.all(JSON.stringify([...seqs]));
    for (const [seq, encoded] of found) if (seqs.has(seq)) bodies.set(seq, encoded);
    return bodies;
  }

  #eventLog(): EventLog {
    const sql = this.#sql;
    return {
      append: (entries, { now, dedupeWindowMs }) => {
        if (entries.length === 0) return Promise.resolve([]);
        return this.#write(() => this.#appendEntries(entries, now, dedupeWindowMs));
      },
      appendAndLease: (entries, { now, dedupeWindowMs, lease }) => {
        if (entries.length === 0) return Promise.resolve({ results: [], leases: [] });
        return this.#write(() => {
          const leasing: InsertLeasing = {
            max: lease.max > 0 ? lease.max : 0,
            now,
            leaseUntil: now + lease.leaseMs,
            token: newToken(),
            bodies: [],
            out: [],
          };
          const results = this.#appendEntries(entries, now, dedupeWindowMs, leasing);
          return { results, leases: leasing.out };
        });
      },
      read: (bus: string, range: ReadRange) =>
        this.#read(() => {
          if (!(range.limit > 0)) return [];
          const afterSeq = range.afterSeq ?? 0;
          // Start the index range at the cursor's storedAt, so paging never rescans earlier rows.
          const cursorAt = afterSeq > 0 ? (sql.storedAtOf.get(afterSeq)?.stored_at ?? Number.MIN_SAFE_INTEGER) : Number.MIN_SAFE_INTEGER;
          const rows = sql.eventRead.all(
            bus,
            Math.max(range.fromAt ?? Number.MIN_SAFE_INTEGER, cursorAt),
            range.toAt ?? Number.MAX_SAFE_INTEGER,
            afterSeq,
            range.limit,
          );
          return rows.map(
            (r): StoredEvent => ({ bus: r.bus, seq: r.seq, eventId: r.event_id, encoded: r.encoded, storedAt: r.stored_at }),
          );
        }),
      trim: (bus, beforeAt) =>
        this.#write(() => {
          if (sql.anyBefore.get(bus, beforeAt) === undefined) return 0;
          sql.keepBodies.run(bus, beforeAt);
          return sql.eventTrim.run(bus, beforeAt).changes;
        }),
    };
  }

  #deliveryQueues(): DeliveryQueues {
    const sql = this.#sql;
    return {
      enqueue: (deliveries: (NewDelivery & { payload: string })[], { now }) => {
        if (deliveries.length === 0) return Promise.resolve();
        return this.#write(() => {
          const values: DeliveryValues = [];
          for (const d of deliveries) pushDelivery(values, d.queue, d.partitionKey ?? null, null, d.payload, now, d.availableAt ?? now);
          this.#insertDeliveries(values);
        });
      },
      lease: (request) => this.#write(() => this.#leaseNow(request)),
      ack: (leases) => {
        if (leases.length === 0) return Promise.resolve({ lost: [] });
        return this.#write(() => {
          // Leases of one lease call share a token: one DELETE per token settles the batch.
          const byToken = new Map<string, Set<string>>();
          for (const { deliveryId, token } of leases) {
            const ids = byToken.get(token);
            if (ids === undefined) byToken.set(token, new Set([deliveryId]));
            else ids.add(deliveryId);
          }
          const lost: string[] = [];
          for (const [token, ids] of byToken) {
            const numeric: number[] = [];
            for (const id of ids) {
              const n = rowId(id);
              if (n > 0) numeric.push(n);
              else lost.push(id);
            }
            if (numeric.length === 0) continue;
            // Deliveries held by fan-out rows clear their bits; rows left empty go with the rows of their own.
            const { direct, emptied } = this.#settleFanOuts(numeric, token, lost);
            const keyed = direct.length === 0 || sql.anyKeyed.get() === undefined ? [] : sql.keyedLeased.all(JSON.stringify(direct), token);
            const doomed = emptied.length === 0 ? direct : [...direct, ...emptied];
            if (doomed.length > 0) {
              try {
                this.#deleteAllLeased(doomed, token);
              } catch (err) {
                if (err !== someLeaseLost) throw err;
                // Some lease was lost: delete what is still held, and report the others.
                const removed = new Set(sql.removeLeased.all(JSON.stringify(doomed), token).map((row) => row.id));
                for (const id of direct) if (!removed.has(id)) lost.push(String(id));
              }
            }
            for (const row of keyed) this.#promoteNext(row.queue, row.partition_key);
          }
          return { lost };
        });
      },
      retry: ({ deliveryId, token }: LeaseRef, { availableAt, error }) =>
        this.#write(() => {
          this.#splitOut(rowId(deliveryId), token);
          if (sql.release.run(availableAt, availableAt, error, rowId(deliveryId), token).changes === 0) {
            throw leaseLost(deliveryId);
          }
          this.#workCreated = true;
        }),
      deadLetter: ({ deliveryId, token }: LeaseRef, { reason, error, now }) =>
        this.#write(() => {
          this.#splitOut(rowId(deliveryId), token);
          const row = sql.removeRow.get(rowId(deliveryId), token);
          if (row === undefined) throw leaseLost(deliveryId);
          sql.deadInsert.run(
            row.id,
            row.queue,
            row.partition_key,
            row.payload ?? (sql.eventBody.get(row.event_seq as number) as { encoded: string }).encoded,
            reason,
            row.attempt,
            error ?? row.last_error,
            row.enqueued_at,
            now,
          );
          this.#promoteNext(row.queue, row.partition_key);
        }),
      extend: ({ deliveryId, token }: LeaseRef, { leaseUntil }) =>
        this.#write(() => {
          const id = rowId(deliveryId);
          if (sql.extend.run(leaseUntil, id, token).changes > 0) return;
          // A delivery held by a fan-out row: the row's lease (shared by its deliveries) is extended.
          const held = this.#heldBy(id);
          if (held === undefined || sql.extendFanOut.run(leaseUntil, held.row.id, token).changes === 0) throw leaseLost(deliveryId);
        }),
      stats: (queues?: string[], options?: { now: number }) =>
        this.#read(() => {
          const now = options?.now ?? Date.now();
          const toStats = (queue: string, row: StatsRow | undefined, dead: number): QueueStats => {
            const ready = row?.ready ?? 0;
            const leased = row?.leased ?? 0;
            return { queue, ready, delayed: (row?.total ?? 0) - ready - leased, leased, dead };
          };
          if (queues !== undefined) {
            return [...new Set(queues)].map((queue) => {
              const row = addStats(sql.statsQueue.get(now, now, now, queue), sql.fanOutStatsQueue.get(now, now, now, queue));
              return toStats(queue, row?.total ? row : undefined, sql.deadCountQueue.get(queue)?.dead ?? 0);
            });
          }
          const byQueue = new Map<string, StatsRow>();
          for (const row of [...sql.statsAll.all(now, now, now), ...sql.fanOutStatsAll.all(now, now, now)]) {
            byQueue.set(row.queue, addStats(byQueue.get(row.queue), row) as StatsRow);
          }
          const dead = new Map<string, number>();
          for (const row of sql.deadCountAll.all()) dead.set(row.queue, row.dead);
          return [...new Set([...byQueue.keys(), ...dead.keys()])]
            .sort()
            .map((queue) => toStats(queue, byQueue.get(queue), dead.get(queue) ?? 0));
        }),
      listDead: (queue, { limit, afterId }) =>
        this.#read(() => {
          if (!(limit > 0)) return [];
          const after = afterId === undefined ? 0 : rowId(afterId);
          return sql.deadList.all(queue, after < 0 ? Number.MAX_SAFE_INTEGER : after, limit).map(toDeadLetter);
        }),
      getDead: (deliveryId) =>
        this.#read(() => {
          const row = sql.deadGet.get(rowId(deliveryId));
          return row === undefined ? undefined : toDeadLetter(row);
        }),
      redrive: (queue, { ids, now }) =>
        this.#write(() => {
          const rows =
            ids === undefined
              ? sql.deadOfQueue.all(queue)
              : ids
                  .map((id) => sql.deadGet.get(rowId(id)))
                  .filter((row): row is DeadRow => row !== undefined && row.queue === queue)
                  .sort((a, b) => a.delivery_id - b.delivery_id);
          const values: DeliveryValues = [];
          for (const row of rows) {
            sql.deadDelete.run(row.delivery_id, queue);
            pushDelivery(values, queue, row.partition_key, null, row.payload, now, now);
          }
          this.#insertDeliveries(values);
          return rows.length;
        }),
      purgeDead: (queue, options) =>
        this.#write(() => {
          if (options?.ids === undefined) return sql.deadDeleteQueue.run(queue).changes;
          let count = 0;
          for (const id of new Set(options.ids)) count += sql.deadDelete.run(rowId(id), queue).changes;
          return count;
        }),
      waitForWork: (signal) => (this.#closed ? Promise.resolve() : this.#signal.wait(signal)),
    };
  }

  #sweepState(now: number): void {
    if (now < this.#lastStateSweepAt) this.#lastStateSweepAt = now;
    if (now - this.#lastStateSweepAt < SWEEP_EVERY_MS) return;
    this.#sql.stateSweep.run(now);
    this.#lastStateSweepAt = now;
  }

  #stateStore(): StateStore {
    const sql = this.#sql;
    return {
      get: (namespace, key, { now }) =>
        this.#read(() => {
          const row = sql.stateGet.get(namespace, key);
          if (row === undefined || (row.expires_at !== null && row.expires_at <= now)) return undefined;
          return row.value;
        }),
      put: (namespace, key, value, { now, ttlMs }) =>
        this.#write(() => {
          this.#sweepState(now);
          sql.statePut.run(namespace, key, value, expiresAt(now, ttlMs));
        }),
      putIfAbsent: (namespace, key, value, { now, ttlMs }) =>
        this.#write(() => {
          this.#sweepState(now);
          return sql.statePutIfAbsent.run(namespace, key, value, expiresAt(now, ttlMs), now).changes > 0;
        }),
      compareAndSet: (namespace, key, expected, value, { now, ttlMs }) =>
        this.#write(() => sql.stateCas.run(value, expiresAt(now, ttlMs), namespace, key, expected, now).changes > 0),
      delete: (namespace, key) =>
        this.#write(() => {
          sql.stateDelete.run(namespace, key);
        }),
      list: (namespace, { now }) => this.#read(() => sql.stateList.all(namespace, now)),
    };
  }
}

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
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: options.busyTimeoutMs ?? 5000 });
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma("temp_store = MEMORY");
    db.pragma("cache_size = -16000");
    migrate(db);
    const checkpoint = options.checkpoint;
    if (checkpoint === false) {
      // Checkpoint every ~40 MB of WAL instead of 4 MB: fewer checkpoints (each fsyncs the database file), and
      // pages rewritten between two checkpoints are copied back once.
      db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
      return new LocalSqliteStore(db, path);
    }
    db.pragma("wal_autocheckpoint = 0");
    db.pragma(`journal_size_limit = ${checkpoint?.walMaxBytes ?? defaultWalMaxBytes}`);
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    return new LocalSqliteStore(db, path, {
      start: (store) =>
        startCheckpointer(path, { ...checkpoint, busyTimeoutMs }, (unexpected) => {
          if (unexpected) store.fallBackToAutoCheckpoint();
        }),
      walCapBytes: 4 * (checkpoint?.walMaxBytes ?? defaultWalMaxBytes),
    });
  } catch (err) {
    db?.close();
    throw storeError(err);
  }
}
