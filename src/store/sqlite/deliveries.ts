/**
 * Delivery queues on SQLite: enqueue, lease (lease.ts), settle (ack, retry, dead letter), extend, stats and the
 * dead-letter lists. Writes run in the engine's group commit; a lease token proves ownership in every settling
 * statement (`AND token = ?`), so a stale lease changes nothing.
 */
import type Database from "better-sqlite3";
import type { DeadLetter, Lease, LeaseRequest, NewDelivery, QueueStats } from "../contract.ts";
import type { AbsoluteTimeQueues } from "../shared/absolute-time-queues.ts";
import type { Engine } from "./engine.ts";
import { leaseLost, someLeaseLost } from "./errors.ts";
import type { FanOuts } from "./fanout.ts";
import { insertDeliveries, promoteNext, pushDelivery, type DeliveryValues } from "./insert-deliveries.ts";
import type { Leaser } from "./lease.ts";
import { progression, rowId, toDeadLetter, type DeadRow, type LeaseRef, type StatsRow } from "./rows.ts";
import type { Sql } from "./statements.ts";

/** Sums the counts of one queue's single-delivery rows and fan-out rows. */
function addStats(a: StatsRow | undefined, b: StatsRow | undefined): StatsRow | undefined {
  if (a === undefined || !a.total) return b;
  if (b === undefined || !b.total) return a;
  return { queue: a.queue, ready: (a.ready ?? 0) + (b.ready ?? 0), leased: (a.leased ?? 0) + (b.leased ?? 0), total: a.total + b.total };
}

function toStats(queue: string, row: StatsRow | undefined, dead: number): QueueStats {
  const ready = row?.ready ?? 0;
  const leased = row?.leased ?? 0;
  return { queue, ready, delayed: (row?.total ?? 0) - ready - leased, leased, dead };
}

export class SqliteDeliveryQueues implements AbsoluteTimeQueues {
  readonly #engine: Engine;
  readonly #sql: Sql;
  readonly #fanOuts: FanOuts;
  readonly #leaser: Leaser;
  readonly #deleteAllLeased: Database.Transaction<(ids: number[], token: string) => void>;

  constructor(engine: Engine, sql: Sql, fanOuts: FanOuts, leaser: Leaser) {
    this.#engine = engine;
    this.#sql = sql;
    this.#fanOuts = fanOuts;
    this.#leaser = leaser;
    // Deletes a lease batch in a savepoint, and rolls it back when some lease of the batch was lost.
    // `ids` are distinct.
    this.#deleteAllLeased = engine.db.transaction((ids: number[], token: string) => {
      const range = progression(ids);
      const changes =
        range !== undefined
          ? sql.deleteLeasedRange.run(range.first, range.last, range.first, range.step, token).changes
          : sql.deleteLeased.run(JSON.stringify(ids), token).changes;
      if (changes !== ids.length) throw someLeaseLost;
    });
  }

  enqueue(deliveries: (NewDelivery & { payload: string })[], { now }: { now: number }): Promise<void> {
    if (deliveries.length === 0) return Promise.resolve();
    return this.#engine.write(() => {
      const values: DeliveryValues = [];
      for (const d of deliveries) pushDelivery(values, d.queue, d.partitionKey ?? null, null, d.payload, now, d.availableAt ?? now);
      insertDeliveries(this.#sql, this.#engine, values);
    });
  }

  lease(request: LeaseRequest & { leaseMs: number }): Promise<Lease[]> {
    return this.#engine.write(() => this.#leaser.lease(request));
  }

  ack(leases: LeaseRef[]): Promise<{ lost: string[] }> {
    if (leases.length === 0) return Promise.resolve({ lost: [] });
    const sql = this.#sql;
    return this.#engine.write(() => {
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
        const { direct, emptied } = this.#fanOuts.settle(numeric, token, lost);
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
        for (const row of keyed) promoteNext(sql, this.#engine, row.queue, row.partition_key);
      }
      return { lost };
    });
  }

  retry({ deliveryId, token }: LeaseRef, { availableAt, error }: { availableAt: number; error: string }): Promise<void> {
    return this.#engine.write(() => {
      this.#fanOuts.splitOut(rowId(deliveryId), token);
      if (this.#sql.release.run(availableAt, availableAt, error, rowId(deliveryId), token).changes === 0) {
        throw leaseLost(deliveryId);
      }
      this.#engine.workCreated();
    });
  }

  deadLetter({ deliveryId, token }: LeaseRef, { reason, error, now }: { reason: string; error?: string; now: number }): Promise<void> {
    const sql = this.#sql;
    return this.#engine.write(() => {
      this.#fanOuts.splitOut(rowId(deliveryId), token);
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
      promoteNext(sql, this.#engine, row.queue, row.partition_key);
    });
  }

  extend({ deliveryId, token }: LeaseRef, { leaseUntil }: { leaseUntil: number }): Promise<void> {
    const sql = this.#sql;
    return this.#engine.write(() => {
      const id = rowId(deliveryId);
      if (sql.extend.run(leaseUntil, id, token).changes > 0) return;
      // A delivery held by a fan-out row: the row's lease (shared by its deliveries) is extended.
      const held = this.#fanOuts.heldBy(id);
      if (held === undefined || sql.extendFanOut.run(leaseUntil, held.row.id, token).changes === 0) throw leaseLost(deliveryId);
    });
  }

  stats(queues?: string[], options?: { now: number }): Promise<QueueStats[]> {
    const sql = this.#sql;
    return this.#engine.read(() => {
      const now = options?.now ?? Date.now();
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
    });
  }

  listDead(queue: string, { limit, afterId }: { limit: number; afterId?: string }): Promise<DeadLetter[]> {
    return this.#engine.read(() => {
      if (!(limit > 0)) return [];
      const after = afterId === undefined ? 0 : rowId(afterId);
      return this.#sql.deadList.all(queue, after < 0 ? Number.MAX_SAFE_INTEGER : after, limit).map(toDeadLetter);
    });
  }

  getDead(deliveryId: string): Promise<DeadLetter | undefined> {
    return this.#engine.read(() => {
      const row = this.#sql.deadGet.get(rowId(deliveryId));
      return row === undefined ? undefined : toDeadLetter(row);
    });
  }

  redrive(queue: string, { ids, now }: { ids?: string[]; now: number }): Promise<number> {
    const sql = this.#sql;
    return this.#engine.write(() => {
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
      insertDeliveries(sql, this.#engine, values);
      return rows.length;
    });
  }

  purgeDead(queue: string, options?: { ids?: string[] }): Promise<number> {
    const sql = this.#sql;
    return this.#engine.write(() => {
      if (options?.ids === undefined) return sql.deadDeleteQueue.run(queue).changes;
      let count = 0;
      for (const id of new Set(options.ids)) count += sql.deadDelete.run(rowId(id), queue).changes;
      return count;
    });
  }

  waitForWork(signal: AbortSignal): Promise<void> {
    return this.#engine.waitForWork(signal);
  }
}
