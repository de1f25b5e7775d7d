/**
 * The event log on SQLite: appends (with their deliveries, in the same group commit), dedupe, reads and trims.
 * Seqs and delivery ids are assigned here from `sqlite_sequence`, under the write lock.
 */
import type { AppendEntry, AppendResult, EventLog, Lease, NewDelivery, ReadRange, StoredEvent } from "../contract.ts";
import { SWEEP_EVERY_MS, type Engine } from "./engine.ts";
import { MAX_FANOUT } from "./fanout.ts";
import { insertDeliveries, pushDelivery, type DeliveryValues, type InsertLeasing } from "./insert-deliveries.ts";
import { newToken, progression } from "./rows.ts";
import type { Sql } from "./statements.ts";

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

/** Consecutive appended events with plain deliveries to the same queues (see insertEventDeliveries). */
interface FanOutRun {
  queues: string[];
  first: number;
  last: number;
  /** The events' seqs, in order (duplicates of the append left gaps). */
  seqs: number[];
  /** The events' bodies, in order. */
  bodies: string[];
}

export class SqliteEventLog implements EventLog {
  readonly #engine: Engine;
  readonly #sql: Sql;
  /** Per bus: buses may use different dedupe windows, so each is swept with its own. */
  readonly #lastDedupeSweepAt = new Map<string, number>();

  constructor(engine: Engine, sql: Sql) {
    this.#engine = engine;
    this.#sql = sql;
  }

  append(entries: AppendEntry[], { now, dedupeWindowMs }: { now: number; dedupeWindowMs: number }): Promise<AppendResult[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return this.#engine.write(() => this.#appendEntries(entries, now, dedupeWindowMs));
  }

  appendAndLease(
    entries: AppendEntry[],
    { now, dedupeWindowMs, lease }: { now: number; dedupeWindowMs: number; lease: { max: number; leaseMs: number } },
  ): Promise<{ results: AppendResult[]; leases: Lease[] }> {
    if (entries.length === 0) return Promise.resolve({ results: [], leases: [] });
    return this.#engine.write(() => {
      const leasing: InsertLeasing = {
        max: Math.max(lease.max , 0),
        now,
        leaseUntil: now + lease.leaseMs,
        token: newToken(),
        bodies: [],
        out: [],
      };
      const results = this.#appendEntries(entries, now, dedupeWindowMs, leasing);
      return { results, leases: leasing.out };
    });
  }

  read(bus: string, range: ReadRange): Promise<StoredEvent[]> {
    const sql = this.#sql;
    return this.#engine.read(() => {
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
      return rows.map((r): StoredEvent => ({ bus: r.bus, seq: r.seq, eventId: r.event_id, encoded: r.encoded, storedAt: r.stored_at }));
    });
  }

  trim(bus: string, beforeAt: number): Promise<number> {
    const sql = this.#sql;
    return this.#engine.write(() => {
      if (sql.anyBefore.get(bus, beforeAt) === undefined) return 0;
      sql.keepBodies.run(bus, beforeAt);
      return sql.eventTrim.run(bus, beforeAt).changes;
    });
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
      for (const [i, e] of entries.entries()) claims.push(e.bus, e.dedupeKey, base + i + 1, now);
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
      insertDeliveries(this.#sql, this.#engine, values, leasing);
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
   * fan-out row per event for several (see fanout.ts). With `leasing`, the run's first deliveries (oldest
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
    if (inserted > rowsLeased) this.#engine.workCreated();
  }
}
