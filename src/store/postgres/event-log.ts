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
import { insertDeliveries, type DeliveryRow } from "./deliveries.ts";
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
/** Expired dedupe keys are pruned at most this often (per store). */
const dedupePruneEveryMs = 30_000;

export class PgEventLog implements EventLog {
  readonly #db: Db;
  readonly #listener: WorkListener;
  readonly #schema: string;
  readonly #maxGroupEntries: number;
  #queue: PendingAppend[] = [];
  #flushing = false;
  #lastPruneAt = 0;

  constructor(db: Db, listener: WorkListener, schema: string, maxGroupEntries: number) {
    this.#db = db;
    this.#listener = listener;
    this.#schema = schema;
    this.#maxGroupEntries = maxGroupEntries;
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
        let size = 0;
        while (this.#queue.length > 0) {
          const next = this.#queue[0];
          if (!next || (group.length > 0 && size + next.entries.length > this.#maxGroupEntries)) break;
          this.#queue.shift();
          group.push(next);
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
      const results = await this.#db.tx((client) => this.#appendTx(client, group));
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
    const s = this.#db.s;
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [appendLockClass, this.#schema]);
    const keys = [...new Set(group.flatMap((call) => call.entries.map((e) => e.dedupeKey)))];
    const { rows: known } = await client.query<{ dedupe_key: string; seq: string; stored_at: string }>(
      `SELECT dedupe_key, seq, stored_at FROM ${s}.dedupe WHERE dedupe_key = ANY($1::text[])`,
      [keys],
    );
    /** The last accepted event per dedupe key: its seq (or, stored in this batch, its index) and time. */
    const last = new Map<string, { storedAt: number; seq?: number; index?: number }>();
    for (const k of known) last.set(k.dedupe_key, { storedAt: Number(k.stored_at), seq: Number(k.seq) });

    const stored: { entry: AppendEntry; now: number }[] = [];
    /** Per call, per entry: the index into `stored` (a new event) or a duplicate's reference. */
    const plan = group.map((call) =>
      call.entries.map((entry) => {
        const prev = last.get(entry.dedupeKey);
        if (prev && prev.storedAt >= call.options.now - call.options.dedupeWindowMs) {
          return { duplicate: true as const, seq: prev.seq, index: prev.index };
        }
        stored.push({ entry, now: call.options.now });
        const index = stored.length - 1;
        last.set(entry.dedupeKey, { storedAt: call.options.now, index });
        return { duplicate: false as const, index };
      }),
    );

    let seqs: number[] = [];
    if (stored.length > 0) {
      const { rows } = await client.query<{ seq: string }>(
        `INSERT INTO ${s}.events (bus, event_id, encoded, stored_at)
         SELECT b, i, e, t FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) WITH ORDINALITY AS x(b, i, e, t, ord)
         ORDER BY ord
         RETURNING seq`,
        [stored.map((x) => x.entry.bus), stored.map((x) => x.entry.eventId), stored.map((x) => x.entry.encoded), stored.map((x) => x.now)],
      );
      // Identity values are drawn in row order, so the sorted seqs map to the entries in order.
      seqs = rows.map((r) => Number(r.seq)).sort((a, b) => a - b);

      const latest = new Map<string, number>();
      stored.forEach((x, i) => latest.set(x.entry.dedupeKey, i));
      const upserts = [...latest.entries()];
      await client.query(
        `INSERT INTO ${s}.dedupe (dedupe_key, seq, stored_at)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
         ON CONFLICT (dedupe_key) DO UPDATE SET seq = EXCLUDED.seq, stored_at = EXCLUDED.stored_at`,
        [upserts.map(([k]) => k), upserts.map(([, i]) => seqs[i]), upserts.map(([, i]) => stored[i]?.now)],
      );

      const deliveries: DeliveryRow[] = [];
      for (const { entry, now } of stored) {
        for (const d of entry.deliveries) {
          deliveries.push({
            queue: d.queue,
            partitionKey: d.partitionKey ?? null,
            payload: d.payload ?? entry.encoded,
            visibleAt: d.availableAt ?? now,
            enqueuedAt: now,
          });
        }
      }
      if ((await insertDeliveries(client, s, deliveries)) > 0) {
        await client.query("SELECT pg_notify($1, '')", [this.#db.channel]);
      }
    }

    return plan.map((entries) =>
      entries.map((p): AppendResult => {
        const seq = p.index !== undefined ? seqs[p.index] : p.duplicate ? p.seq : undefined;
        if (seq === undefined) throw new Error("append: internal error, no seq for an entry");
        return { status: p.duplicate ? "duplicate" : "stored", seq };
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
