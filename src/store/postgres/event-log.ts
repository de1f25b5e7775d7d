/**
 * The event log on PostgreSQL, with group commit.
 *
 * append() calls that arrive while a combined call is committing queue up and go into the next one together:
 * one commit (one WAL flush) for many callers, each of which still gets its own results. A combined call is one
 * round trip to `append_and_lease` (migration 8), which takes a transaction-scoped advisory lock, so appends
 * from all processes commit one at a time: `seq` then increases in commit order (a reader paging with `afterSeq`
 * never skips a late commit) and dedupe needs no further locking. One combined call per store is in flight at a
 * time, so calls made in order by one process commit in that order.
 */
import type { AppendEntry, AppendResult, EventLog, Lease, ReadRange, StoredEvent } from "../contract.ts";
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
  /** appendAndLease: such a call is combined with no other (its leases are its own deliveries). */
  lease?: { max: number; leaseMs: number };
  resolve(outcome: AppendOutcome): void;
  reject(err: unknown): void;
}

interface AppendOutcome {
  results: AppendResult[];
  leases: Lease[];
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

  constructor(db: Db, listener: WorkListener, maxGroupEntries: number) {
    this.#db = db;
    this.#listener = listener;
    this.#maxGroupEntries = maxGroupEntries;
  }

  append(entries: AppendEntry[], options: AppendOptions): Promise<AppendResult[]> {
    return this.#db.run("append", async () => {
      if (entries.length === 0) return [];
      return (await this.#enqueue({ entries, options })).results;
    });
  }

  /**
   * The leased deliveries are inserted leased (`append_and_lease`, migration 8): no lease statement, no NOTIFY for
   * them. Combined with no other call, so `max` and the oldest-first order apply to this call's deliveries alone.
   */
  appendAndLease(entries: AppendEntry[], options: AppendOptions & { lease: { max: number; leaseMs: number } }): Promise<AppendOutcome> {
    return this.#db.run("appendAndLease", async () => {
      if (entries.length === 0) return { results: [], leases: [] };
      const { lease, ...rest } = options;
      return this.#enqueue({ entries, options: rest, lease: { max: Math.max(0, Math.floor(lease.max)), leaseMs: lease.leaseMs } });
    });
  }

  #enqueue(call: Omit<PendingAppend, "resolve" | "reject">): Promise<AppendOutcome> {
    return new Promise<AppendOutcome>((resolve, reject) => {
      this.#queue.push({ ...call, resolve, reject });
      if (!this.#flushing) this.#db.track(this.#flushLoop());
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
            if (next.lease !== undefined || group[0]?.lease !== undefined) break;
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
      const { results, leases, notified } = await this.#db.retryConflicts(() => this.#appendCall(group));
      for (const [i, call] of group.entries()) call.resolve({ results: results[i] ?? [], leases: i === 0 ? leases : [] });
      if (notified) this.#listener.wake();
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

  /**
   * One round trip: `append_and_lease` (migration 8) takes the append lock, checks dedupe and writes the events,
   * dedupe keys and deliveries (the ones a lone appendAndLease call leases, leased); autocommitted, so the call
   * resolves once the commit is on disk. `notified`: some new delivery was left for a lease.
   */
  async #appendCall(group: PendingAppend[]): Promise<{ results: AppendResult[][]; leases: Lease[]; notified: boolean }> {
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
    /** A null payload stands for the entry's own event: append_entries fills it in (the body is sent once). */
    const deliveries: (Omit<DeliveryRow, "payload"> & { row: number; payload: string | null })[] = [];
    rows.forEach(({ entry, now }, row) => {
      for (const d of entry.deliveries) {
        deliveries.push({
          row: row + 1, // ordinality
          queue: d.queue,
          partitionKey: d.partitionKey ?? null,
          payload: d.payload ?? null,
          visibleAt: d.availableAt ?? now,
          enqueuedAt: now,
        });
      }
    });
    const lease = group.length === 1 ? group[0]?.lease : undefined;
    const now = group[0]?.options.now ?? 0;
    const leaseUntil = now + (lease?.leaseMs ?? 0);
    const out = await this.#db.query<{ ord: string | null; seq: string | null; dup: boolean | null; token: string | null }>(
      `SELECT ord, seq, dup, token FROM ${this.#db.s}.append_and_lease($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
      [
      rows.map((r) => r.entry.bus),
      rows.map((r) => r.entry.eventId),
      JSON.stringify(rows.map((r) => r.entry.encoded)),
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
        lease?.max ?? 0,
        leaseUntil,
      ],
      "sluice_append_lease",
    );
    const outcome: (AppendResult | undefined)[] = [];
    const leases: Lease[] = [];
    let notified = false;
    for (const o of out) {
      if (o.ord === null || o.seq === null) {
        notified = true; // the NOTIFY marker row
      } else if (o.token !== null) {
        const d = deliveries[Number(o.ord) - 1];
        const payload = d === undefined ? undefined : (d.payload ?? rows[d.row - 1]?.entry.encoded);
        if (d === undefined || payload === undefined) throw new Error("append: internal error, no delivery for a lease");
        const leased: Lease = {
          deliveryId: o.seq,
          queue: d.queue,
          token: o.token,
          payload,
          attempt: 1,
          enqueuedAt: d.enqueuedAt,
          leaseUntil,
        };
        if (d.partitionKey !== null) leased.partitionKey = d.partitionKey;
        leases.push(leased);
      } else {
        outcome[Number(o.ord) - 1] = { status: o.dup ? "duplicate" : "stored", seq: Number(o.seq) };
      }
    }
    leases.sort((a, b) => Number(a.deliveryId) - Number(b.deliveryId));
    const results = plan.map((entries) =>
      entries.map(({ row, repeat }): AppendResult => {
        const result = outcome[row];
        if (!result) throw new Error("append: internal error, no outcome for an entry");
        return repeat ? { status: "duplicate", seq: result.seq } : result;
      }),
    );
    return { results, leases, notified };
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
