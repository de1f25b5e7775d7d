/**
 * The event log on PostgreSQL, with group commit.
 *
 * append() calls that arrive while a transaction is committing queue up and go into the next transaction
 * together: one commit (one WAL flush) for many callers, each of which still gets its own results. A combined
 * transaction holds a transaction-scoped advisory lock, so appends from all processes commit one at a time:
 * `seq` then increases in commit order (a reader paging with `afterSeq` never skips a late commit) and
 * dedupe needs no further locking. Each append is a handful of multi-row statements (unnest), whatever its size.
 */
import type { PoolClient } from "pg";
import type { AppendEntry, AppendResult, EventLog, ReadRange, StoredEvent } from "../contract.ts";
import { isWallClock, type Db } from "./db.ts";
import type { DeliveryRow } from "./deliveries.ts";
import { isConnectionError, storeError } from "./errors.ts";
import type { WorkListener } from "./listener.ts";

interface AppendOptions {
  now: number;
  dedupeWindowMs: number;
}

interface PendingAppend {
  entries: AppendEntry[];
  options: AppendOptions;
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

const appendLockClass = 0x51c4;

/**
 * An append's checks and writes in one statement (one round trip, whatever the number of entries), run after
 * the append lock is taken so its snapshot sees every earlier append: the dedupe check of each entry ($1-$7),
 * the new events, their dedupe keys, and their deliveries ($8-$13) with per-key heads. The key rows in
 * `partitions` are upserted in a fixed order (locking them) before the deliveries get their ids, so within a
 * key ids follow commit order; a new delivery is its key's head only when the key had nothing pending and
 * it is the key's first in this append. Returns (ord, seq, dup) per entry; NOTIFYs ($14) when it enqueued.
 */
function insertSql(s: string): string {
  return `
WITH ev AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[])
    WITH ORDINALITY AS t(bus, event_id, encoded, now, dedupe_key, win, ord)
), known AS (
  -- ANY on both primary-key columns: an index scan, never a scan of the whole dedupe table.
  SELECT bus, dedupe_key, seq, stored_at FROM ${s}.dedupe WHERE bus = ANY($7::text[]) AND dedupe_key = ANY($5::text[])
), dup AS (
  -- Within the window of the first accepted append (a duplicate does not extend it).
  SELECT ev.ord, known.seq FROM ev JOIN known ON known.bus = ev.bus AND known.dedupe_key = ev.dedupe_key
  WHERE ev.win > 0 AND ev.now - known.stored_at < ev.win
), fresh AS (
  SELECT ev.*, row_number() OVER (ORDER BY ev.ord) AS rn FROM ev WHERE ev.ord NOT IN (SELECT ord FROM dup)
), ins AS (
  INSERT INTO ${s}.events (bus, event_id, encoded, stored_at)
  SELECT bus, event_id, encoded, now FROM fresh ORDER BY rn
  RETURNING seq
), stored AS (
  -- Identity values are drawn in row order, so the n-th smallest new seq belongs to the n-th fresh entry.
  SELECT fresh.ord, fresh.bus, fresh.dedupe_key, fresh.now, s.seq
  FROM fresh JOIN (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM ins) s USING (rn)
), dd AS (
  INSERT INTO ${s}.dedupe AS d (bus, dedupe_key, seq, stored_at)
  SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored ORDER BY bus, dedupe_key, ord DESC
  ON CONFLICT (bus, dedupe_key) DO UPDATE SET seq = EXCLUDED.seq, stored_at = EXCLUDED.stored_at
  RETURNING 1
), dv AS (
  SELECT t.* FROM unnest($8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[])
    WITH ORDINALITY AS t(entry, queue, pk, payload, visible_at, enqueued_at, ord)
  WHERE t.entry IN (SELECT ord FROM stored)
), cnt AS (
  SELECT queue, pk, count(*) AS n FROM dv WHERE pk IS NOT NULL GROUP BY queue, pk
), up AS (
  INSERT INTO ${s}.partitions AS p (queue, partition_key, pending)
  SELECT queue, pk, n FROM cnt ORDER BY queue, pk
  ON CONFLICT (queue, partition_key) DO UPDATE SET pending = p.pending + EXCLUDED.pending
  RETURNING queue, partition_key, pending
), dl AS (
  INSERT INTO ${s}.deliveries (queue, partition_key, payload, visible_at, enqueued_at, blocked)
  SELECT dv.queue, dv.pk, dv.payload, dv.visible_at, dv.enqueued_at,
         CASE WHEN dv.pk IS NULL THEN false
              ELSE up.pending - cnt.n > 0 OR row_number() OVER (PARTITION BY dv.queue, dv.pk ORDER BY dv.ord) > 1
         END
  FROM dv
  LEFT JOIN cnt ON cnt.queue = dv.queue AND cnt.pk = dv.pk
  LEFT JOIN up ON up.queue = dv.queue AND up.partition_key = dv.pk
  ORDER BY dv.ord
  RETURNING 1
), notified AS (
  SELECT pg_notify($14, '') FROM (SELECT 1 FROM dl LIMIT 1) one
)
SELECT ord, seq, false AS dup FROM stored
UNION ALL SELECT ord, seq, true FROM dup
UNION ALL SELECT NULL, NULL, NULL FROM notified`;
}

function dedupeId(entry: AppendEntry): string {
  return `${entry.bus}\u0000${entry.dedupeKey}`;
}
/** Expired dedupe keys are pruned at most this often (per store). */
const dedupePruneEveryMs = 30_000;

export class PgEventLog implements EventLog {
  readonly #db: Db;
  readonly #listener: WorkListener;
  readonly #maxGroupEntries: number;
  #queue: PendingAppend[] = [];
  #flushing = false;
  #lastPruneAt = 0;

  /** BEGIN and the append lock in one round trip (the schema name is validated: safe as a literal). */
  readonly #beginSql: string;
  readonly #insertSql: string;

  constructor(db: Db, listener: WorkListener, schema: string, maxGroupEntries: number) {
    this.#db = db;
    this.#listener = listener;
    this.#maxGroupEntries = maxGroupEntries;
    this.#beginSql = `BEGIN; SELECT pg_advisory_xact_lock(${appendLockClass}, hashtext('${schema}'))`;
    this.#insertSql = insertSql(db.s);
  }

  append(entries: AppendEntry[], options: AppendOptions): Promise<AppendResult[]> {
    return this.#db.run("append", async () => {
      if (entries.length === 0) return [];
      return new Promise<AppendResult[]>((resolve, reject) => {
        this.#queue.push({ entries, options, resolve, reject });
        if (!this.#flushing) this.#db.track(this.#flushLoop());
      });
    });
  }

  async #flushLoop(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const group: PendingAppend[] = [];
        const keys = new Set<string>();
        let size = 0;
        while (this.#queue.length > 0) {
          const next = this.#queue[0];
          if (!next) break;
          if (group.length > 0) {
            // A call repeating a dedupe key of an earlier call waits for the next transaction, where the
            // earlier call's outcome is committed: dedupe then behaves exactly as if calls ran one by one.
            if (size + next.entries.length > this.#maxGroupEntries || next.entries.some((e) => keys.has(dedupeId(e)))) break;
          }
          this.#queue.shift();
          group.push(next);
          for (const e of next.entries) keys.add(dedupeId(e));
          size += next.entries.length;
        }
        await this.#commitGroup(group);
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #commitGroup(group: PendingAppend[]): Promise<void> {
    try {
      const results = await this.#db.tx((client) => this.#appendTx(client, group), this.#beginSql);
      group.forEach((call, i) => call.resolve(results[i] ?? []));
      this.#listener.wake();
      this.#maybePrune(group[0]?.options);
      return;
    } catch (err) {
      // One caller's bad input must not fail the others: rerun each call on its own.
      if (group.length > 1 && !isConnectionError(err)) {
        for (const call of group) await this.#commitGroup([call]);
        return;
      }
      const mapped = storeError(err, "append");
      for (const call of group) call.reject(mapped);
    }
  }

  async #appendTx(client: PoolClient, group: PendingAppend[]): Promise<AppendResult[][]> {
    /** One row per entry to check and maybe store; a repeat of a key within one call follows its first. */
    const rows: { entry: AppendEntry; now: number; windowMs: number }[] = [];
    const plan = group.map((call) => {
      const firstInCall = new Map<string, number>();
      return call.entries.map((entry) => {
        const id = dedupeId(entry);
        const earlier = firstInCall.get(id);
        // Same call, same `now`: within the window of the first (when dedupe is on), whatever its outcome.
        if (earlier !== undefined && call.options.dedupeWindowMs > 0) return { row: earlier, repeat: true };
        rows.push({ entry, now: call.options.now, windowMs: call.options.dedupeWindowMs });
        firstInCall.set(id, rows.length - 1);
        return { row: rows.length - 1, repeat: false };
      });
    });
    const deliveries: (DeliveryRow & { row: number })[] = [];
    rows.forEach(({ entry, now }, row) => {
      for (const d of entry.deliveries) {
        deliveries.push({
          row: row + 1, // ordinality
          queue: d.queue,
          partitionKey: d.partitionKey ?? null,
          payload: d.payload ?? entry.encoded,
          visibleAt: d.availableAt ?? now,
          enqueuedAt: now,
        });
      }
    });
    const { rows: out } = await client.query<{ ord: string | null; seq: string | null; dup: boolean | null }>(this.#insertSql, [
      rows.map((r) => r.entry.bus),
      rows.map((r) => r.entry.eventId),
      rows.map((r) => r.entry.encoded),
      rows.map((r) => r.now),
      rows.map((r) => r.entry.dedupeKey),
      rows.map((r) => r.windowMs),
      [...new Set(rows.map((r) => r.entry.bus))],
      deliveries.map((d) => d.row),
      deliveries.map((d) => d.queue),
      deliveries.map((d) => d.partitionKey),
      deliveries.map((d) => d.payload),
      deliveries.map((d) => d.visibleAt),
      deliveries.map((d) => d.enqueuedAt),
      this.#db.channel,
    ]);
    const outcome: (AppendResult | undefined)[] = [];
    for (const o of out) {
      if (o.ord === null || o.seq === null) continue; // the NOTIFY marker row
      outcome[Number(o.ord) - 1] = { status: o.dup ? "duplicate" : "stored", seq: Number(o.seq) };
    }
    return plan.map((entries) =>
      entries.map(({ row, repeat }): AppendResult => {
        const result = outcome[row];
        if (!result) throw new Error("append: internal error, no outcome for an entry");
        return repeat ? { status: "duplicate", seq: result.seq } : result;
      }),
    );
  }

  /** Deletes dedupe keys older than the window, off the append path, at most every 30 s. */
  #maybePrune(options: AppendOptions | undefined): void {
    if (!options || !isWallClock(options.now) || options.now - this.#lastPruneAt < dedupePruneEveryMs || this.#db.closed) return;
    this.#lastPruneAt = options.now;
    const p = this.#db.pool
      .query(`DELETE FROM ${this.#db.s}.dedupe WHERE stored_at < $1`, [options.now - options.dedupeWindowMs])
      .catch(() => undefined);
    this.#db.track(p);
  }

  read(bus: string, range: ReadRange): Promise<StoredEvent[]> {
    return this.#db.run("read", async () => {
      const where = ["bus = $1"];
      const params: unknown[] = [bus];
      if (range.afterSeq !== undefined) {
        params.push(range.afterSeq);
        where.push(`seq > $${params.length}`);
      }
      if (range.fromAt !== undefined) {
        params.push(range.fromAt);
        where.push(`stored_at >= $${params.length}`);
      }
      if (range.toAt !== undefined) {
        params.push(range.toAt);
        where.push(`stored_at < $${params.length}`);
      }
      params.push(Math.max(0, range.limit));
      const rows = await this.#db.query<{ seq: string; event_id: string; encoded: string; stored_at: string }>(
        `SELECT seq, event_id, encoded, stored_at FROM ${this.#db.s}.events WHERE ${where.join(" AND ")} ORDER BY seq LIMIT $${params.length}`,
        params,
      );
      return rows.map((r) => ({ bus, seq: Number(r.seq), eventId: r.event_id, encoded: r.encoded, storedAt: Number(r.stored_at) }));
    });
  }

  trim(bus: string, beforeAt: number): Promise<number> {
    return this.#db.run("trim", async () => {
      const result = await this.#db.pool.query(`DELETE FROM ${this.#db.s}.events WHERE bus = $1 AND stored_at < $2`, [bus, beforeAt]);
      return result.rowCount ?? 0;
    });
  }
}
