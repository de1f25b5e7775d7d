/**
 * Delivery queues on PostgreSQL.
 *
 * Leasing is one statement: `SELECT … FOR UPDATE SKIP LOCKED` picks the oldest visible unblocked rows, and the
 * same statement stamps them with a fresh token and `visible_at = leaseUntil`. Concurrent leasers in any
 * process skip each other's rows instead of waiting.
 *
 * Per-key ordering is kept by a `blocked` flag maintained transactionally: of the pending deliveries of one
 * (queue, partition_key) only the oldest (the head) is unblocked, and only the head can ever be leased. Every
 * change of a key's head (enqueue, ack, dead-letter, redrive) first locks the key's row in `partitions`, so it
 * is serialised across processes; ack and dead-letter of the head unblock the next one in the same transaction.
 * The lease index covers unblocked rows only, so the scan never walks over the queue behind a held key.
 */
import type { PoolClient } from "pg";
import type { DeadLetter, Lease, LeaseRequest, NewDelivery, QueueStats } from "../contract.ts";
import type { AbsoluteTimeQueues } from "../shared/absolute-time-queues.ts";
import { ErrorCode, SluiceError } from "../../errors.ts";
import type { Db } from "./db.ts";
import type { WorkListener } from "./listener.ts";

/** One delivery row to insert. */
export interface DeliveryRow {
  queue: string;
  partitionKey: string | null;
  payload: string;
  visibleAt: number;
  enqueuedAt: number;
}

interface KeyGroup {
  queue: string;
  key: string;
  n: number;
}

/** Acks of at most this many leases use a prepared statement (see ack). */
const smallAckMax = 16;

const idPattern = /^[1-9][0-9]{0,17}$/;

function groupKey(queue: string, key: string): string {
  return `${queue}\u0000${key}`;
}

function compareGroups(a: KeyGroup, b: KeyGroup): number {
  if (a.queue !== b.queue) return a.queue < b.queue ? -1 : 1;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return 0;
}

/**
 * Lease, ack, retry and extend commit asynchronously: `set_config(…, true)` lasts until the end of the statement's
 * own (implicit) transaction, is evaluated once, with the first changed row (an uncorrelated subquery in
 * RETURNING; a statement changing nothing writes no commit record to flush), and spares the call the wait for a
 * WAL flush. Undone only by a crash of the PostgreSQL server (not of Sluice) within a few hundred milliseconds,
 * which makes the delivery leasable again: it runs again, as at-least-once allows. Appends, enqueues, redrives and
 * dead letters stay synchronous.
 */
const asyncCommitSql = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";

/**
 * Keyed leases carry a `k` token prefix, so an ack knows without a lookup whether it must move a key's head. The
 * rest is one random UUID per statement and the delivery id: unique per lease, and one UUID per lease call
 * instead of one per row (about 1.5 us of server CPU per row).
 */
const leaseTokenSql = "CASE WHEN d.partition_key IS NULL THEN 'u' ELSE 'k' END || (SELECT gen_random_uuid()::text) || '.' || d.id";

/**
 * Inserts delivery rows in order inside a transaction. Keys are locked (upserted into `partitions`) in a
 * fixed order before the rows get their ids, so within a key ids follow commit order across processes.
 * Returns how many rows were inserted.
 */
export async function insertDeliveries(client: PoolClient, s: string, rows: readonly DeliveryRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const groups = new Map<string, KeyGroup>();
  for (const r of rows) {
    if (r.partitionKey === null) continue;
    const id = groupKey(r.queue, r.partitionKey);
    const g = groups.get(id);
    if (g) g.n++;
    else groups.set(id, { queue: r.queue, key: r.partitionKey, n: 1 });
  }
  /** Pending deliveries of each key before this insert; the first new one of a key with none is its head. */
  const before = new Map<string, number>();
  if (groups.size > 0) {
    const sorted = [...groups.values()].sort(compareGroups);
    const { rows: counted } = await client.query<{ queue: string; partition_key: string; pending: string }>(
      `INSERT INTO ${s}.partitions (queue, partition_key, pending)
       SELECT q, k, n FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS t(q, k, n, ord) ORDER BY ord
       ON CONFLICT (queue, partition_key) DO UPDATE SET pending = partitions.pending + EXCLUDED.pending
       RETURNING queue, partition_key, pending`,
      [sorted.map((g) => g.queue), sorted.map((g) => g.key), sorted.map((g) => g.n)],
    );
    for (const c of counted) {
      const id = groupKey(c.queue, c.partition_key);
      before.set(id, Number(c.pending) - (groups.get(id)?.n ?? 0));
    }
  }
  const blocked: boolean[] = [];
  for (const r of rows) {
    if (r.partitionKey === null) {
      blocked.push(false);
      continue;
    }
    const id = groupKey(r.queue, r.partitionKey);
    const pendingBefore = before.get(id) ?? 0;
    blocked.push(pendingBefore > 0);
    before.set(id, pendingBefore + 1);
  }
  await client.query(
    `INSERT INTO ${s}.deliveries (queue, partition_key, payload, visible_at, enqueued_at, blocked)
     SELECT q, k, p, v, e, b
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::bool[]) WITH ORDINALITY AS t(q, k, p, v, e, b, ord)
     ORDER BY ord`,
    [
      rows.map((r) => r.queue),
      rows.map((r) => r.partitionKey),
      rows.map((r) => r.payload),
      rows.map((r) => r.visibleAt),
      rows.map((r) => r.enqueuedAt),
      blocked,
    ],
  );
  return rows.length;
}

interface LeaseRow {
  id: string;
  queue: string;
  lease_token: string;
  payload: string;
  attempt: number;
  partition_key: string | null;
  enqueued_at: string;
  visible_at: string;
  last_error: string | null;
}

interface DeadRow {
  id: string;
  queue: string;
  partition_key: string | null;
  payload: string;
  reason: string;
  attempts: number;
  last_error: string | null;
  enqueued_at: string;
  dead_at: string;
}

function toDeadLetter(r: DeadRow): DeadLetter {
  const dead: DeadLetter = {
    deliveryId: r.id,
    queue: r.queue,
    payload: r.payload,
    reason: r.reason,
    attempts: r.attempts,
    enqueuedAt: Number(r.enqueued_at),
    deadAt: Number(r.dead_at),
  };
  if (r.partition_key !== null) dead.partitionKey = r.partition_key;
  if (r.last_error !== null) dead.lastError = r.last_error;
  return dead;
}

function leaseLost(deliveryId: string, operation: string): SluiceError {
  return new SluiceError(ErrorCode.LeaseLost, `${operation}: the lease of delivery ${deliveryId} is no longer held`);
}

export class PgDeliveryQueues implements AbsoluteTimeQueues {
  readonly #db: Db;
  readonly #listener: WorkListener;

  constructor(db: Db, listener: WorkListener) {
    this.#db = db;
    this.#listener = listener;
  }

  enqueue(deliveries: (NewDelivery & { payload: string })[], options: { now: number }): Promise<void> {
    return this.#db.run("enqueue", async () => {
      if (deliveries.length === 0) return;
      const rows = deliveries.map((d) => ({
        queue: d.queue,
        partitionKey: d.partitionKey ?? null,
        payload: d.payload,
        visibleAt: d.availableAt ?? options.now,
        enqueuedAt: options.now,
      }));
      await this.#db.tx(async (client) => {
        await insertDeliveries(client, this.#db.s, rows);
        await client.query("SELECT pg_notify($1, '')", [this.#db.channel]);
      });
      this.#listener.wake();
    });
  }

  lease(request: LeaseRequest & { leaseMs: number }): Promise<Lease[]> {
    return this.#db.run("lease", async () => {
      if (request.max <= 0 || (request.queues !== undefined && request.queues.length === 0)) return [];
      const s = this.#db.s;
      const byQueue = request.queues !== undefined;
      // The picked rows are updated through a TID scan (`ctid = ANY(ARRAY(…))`); a join on ctid would be planned
      // as a hash join over the whole table.
      const rows = await this.#db.query<LeaseRow>(
        `WITH picked AS (
           SELECT ctid FROM ${s}.deliveries
           WHERE NOT blocked AND visible_at <= $1 ${byQueue ? "AND queue = ANY($4::text[])" : ""}
           ORDER BY id LIMIT $2
           FOR UPDATE SKIP LOCKED
         )
         UPDATE ${s}.deliveries d
         SET attempt = d.attempt + 1, lease_token = ${leaseTokenSql}, visible_at = $3
         WHERE d.ctid = ANY(ARRAY(SELECT ctid FROM picked))
         RETURNING d.id, d.queue, d.lease_token, d.payload, d.attempt, d.partition_key, d.enqueued_at, d.visible_at, d.last_error, ${asyncCommitSql}`,
        byQueue
          ? [request.now, request.max, request.now + request.leaseMs, request.queues]
          : [request.now, request.max, request.now + request.leaseMs],
        // Prepared once per connection: the plan (the leasable index in id order) does not depend on the values.
        byQueue ? "sluice_lease_queues" : "sluice_lease",
      );
      rows.sort((a, b) => Number(a.id) - Number(b.id));
      return rows.map((r) => {
        const lease: Lease = {
          deliveryId: r.id,
          queue: r.queue,
          token: r.lease_token,
          payload: r.payload,
          attempt: r.attempt,
          enqueuedAt: Number(r.enqueued_at),
          leaseUntil: Number(r.visible_at),
        };
        if (r.partition_key !== null) lease.partitionKey = r.partition_key;
        if (r.last_error !== null) lease.lastError = r.last_error;
        return lease;
      });
    });
  }

  ack(leases: Pick<Lease, "deliveryId" | "token">[]): Promise<{ lost: string[] }> {
    return this.#db.run("ack", async () => {
      const valid = leases.filter((l) => idPattern.test(l.deliveryId));
      let removed: string[] = [];
      if (valid.length > 0) {
        // `id = ANY` makes the plan an index lookup whatever the table statistics say (a join on unnest alone
        // can be planned as a hash join over a sequential scan of the whole queue table).
        const deleteSql = `DELETE FROM ${this.#db.s}.deliveries d USING unnest($1::int8[], $2::text[]) AS a(id, token)
           WHERE d.id = ANY($1::int8[]) AND NOT d.blocked AND d.id = a.id AND d.lease_token = a.token
           RETURNING d.id, ${asyncCommitSql}`;
        const params = [valid.map((l) => l.deliveryId), valid.map((l) => l.token)];
        if (valid.some((l) => l.token.startsWith("k"))) {
          // Keyed leases move their keys' heads: `ack_keyed` (migration 2) does it all in one round trip.
          removed = (
            await this.#db.retryConflicts(() =>
              this.#db.query<{ id: string }>(`SELECT id FROM ${this.#db.s}.ack_keyed($1, $2, $3) AS id`, [...params, this.#db.channel], "sluice_ack_keyed"),
            )
          ).map((r) => r.id);
          // A key's next delivery may have become its head (move_heads notified; our own echo is ignored).
          if (removed.length > 0) this.#listener.wake();
        } else {
          // Keyless leases only: one autocommitted statement, no key to move. A named statement only for small
          // batches: planning is most of a small ack's cost, but the cached generic plan (used after five runs)
          // is several times slower than a plan for the actual arrays once they hold hundreds of ids.
          const name = valid.length <= smallAckMax ? "sluice_ack_small" : undefined;
          removed = (await this.#db.query<{ id: string }>(deleteSql, params, name)).map((r) => r.id);
        }
      }
      const acked = new Set(removed);
      return { lost: leases.filter((l) => !acked.has(l.deliveryId)).map((l) => l.deliveryId) };
    });
  }

  retry(lease: Pick<Lease, "deliveryId" | "token">, options: { availableAt: number; error: string }): Promise<void> {
    return this.#db.run("retry", async () => {
      if (!idPattern.test(lease.deliveryId)) throw leaseLost(lease.deliveryId, "retry");
      const rows = await this.#db.query(
        `WITH u AS (
           UPDATE ${this.#db.s}.deliveries SET lease_token = NULL, visible_at = $3, last_error = $4
           WHERE id = $1 AND NOT blocked AND lease_token = $2 RETURNING id
         )
         SELECT id, pg_notify($5, ''), ${asyncCommitSql} FROM u`,
        [lease.deliveryId, lease.token, options.availableAt, options.error, this.#db.channel],
      );
      if (rows.length === 0) throw leaseLost(lease.deliveryId, "retry");
      this.#listener.wake();
    });
  }

  deadLetter(lease: Pick<Lease, "deliveryId" | "token">, options: { reason: string; error?: string; now: number }): Promise<void> {
    return this.#db.run("deadLetter", async () => {
      if (!idPattern.test(lease.deliveryId)) throw leaseLost(lease.deliveryId, "deadLetter");
      const [row] = await this.#db.retryConflicts(() =>
        this.#db.query<{ ok: boolean }>(
          `SELECT ${this.#db.s}.dead_letter($1, $2, $3, $4, $5, $6) AS ok`,
          [lease.deliveryId, lease.token, options.reason, options.error ?? null, options.now, this.#db.channel],
        ),
      );
      if (!row?.ok) throw leaseLost(lease.deliveryId, "deadLetter");
      if (lease.token.startsWith("k")) this.#listener.wake(); // the key's next delivery may be its head now
    });
  }

  extend(lease: Pick<Lease, "deliveryId" | "token">, options: { leaseUntil: number }): Promise<void> {
    return this.#db.run("extend", async () => {
      if (!idPattern.test(lease.deliveryId)) throw leaseLost(lease.deliveryId, "extend");
      const rows = await this.#db.query(
        `UPDATE ${this.#db.s}.deliveries SET visible_at = $3 WHERE id = $1 AND NOT blocked AND lease_token = $2 RETURNING id, ${asyncCommitSql}`,
        [lease.deliveryId, lease.token, options.leaseUntil],
      );
      if (rows.length === 0) throw leaseLost(lease.deliveryId, "extend");
    });
  }

  stats(queues?: string[], options?: { now: number }): Promise<QueueStats[]> {
    return this.#db.run("stats", async () => {
      if (queues !== undefined && queues.length === 0) return [];
      const now = options?.now ?? Date.now();
      const s = this.#db.s;
      const filter = queues === undefined ? "" : "WHERE queue = ANY($2::text[])";
      const params = queues === undefined ? [now] : [now, queues];
      const rows = await this.#db.query<{ queue: string; ready: string; delayed: string; leased: string; dead: string }>(
        `SELECT queue, sum(ready) AS ready, sum(delayed) AS delayed, sum(leased) AS leased, sum(dead) AS dead FROM (
           SELECT queue,
             count(*) FILTER (WHERE NOT blocked AND visible_at <= $1) AS ready,
             count(*) FILTER (WHERE blocked OR (visible_at > $1 AND lease_token IS NULL)) AS delayed,
             count(*) FILTER (WHERE NOT blocked AND visible_at > $1 AND lease_token IS NOT NULL) AS leased,
             0 AS dead
           FROM ${s}.deliveries ${filter} GROUP BY queue
           UNION ALL
           SELECT queue, 0, 0, 0, count(*) FROM ${s}.dead_letters ${filter} GROUP BY queue
         ) x GROUP BY queue ORDER BY queue`,
        params,
      );
      const byQueue = new Map(
        rows.map((r) => [
          r.queue,
          { queue: r.queue, ready: Number(r.ready), delayed: Number(r.delayed), leased: Number(r.leased), dead: Number(r.dead) },
        ]),
      );
      if (queues === undefined) return [...byQueue.values()];
      return queues.map((queue) => byQueue.get(queue) ?? { queue, ready: 0, delayed: 0, leased: 0, dead: 0 });
    });
  }

  listDead(queue: string, options: { limit: number; afterId?: string }): Promise<DeadLetter[]> {
    return this.#db.run("listDead", async () => {
      const afterId = options.afterId !== undefined && idPattern.test(options.afterId) ? options.afterId : "0";
      const rows = await this.#db.query<DeadRow>(
        `SELECT * FROM ${this.#db.s}.dead_letters WHERE queue = $1 AND id > $2 ORDER BY id LIMIT $3`,
        [queue, afterId, Math.max(0, options.limit)],
      );
      return rows.map(toDeadLetter);
    });
  }

  getDead(deliveryId: string): Promise<DeadLetter | undefined> {
    return this.#db.run("getDead", async () => {
      if (!idPattern.test(deliveryId)) return undefined;
      const rows = await this.#db.query<DeadRow>(`SELECT * FROM ${this.#db.s}.dead_letters WHERE id = $1`, [deliveryId]);
      return rows[0] === undefined ? undefined : toDeadLetter(rows[0]);
    });
  }

  redrive(queue: string, options: { ids?: string[]; now: number }): Promise<number> {
    return this.#db.run("redrive", async () => {
      const ids = options.ids?.filter((id) => idPattern.test(id));
      if (ids !== undefined && ids.length === 0) return 0;
      const count = await this.#db.tx(async (client) => {
        const { rows } = await client.query<DeadRow>(
          `DELETE FROM ${this.#db.s}.dead_letters WHERE queue = $1 ${ids === undefined ? "" : "AND id = ANY($2::int8[])"} RETURNING *`,
          ids === undefined ? [queue] : [queue, ids],
        );
        rows.sort((a, b) => Number(a.id) - Number(b.id));
        const inserted = await insertDeliveries(
          client,
          this.#db.s,
          rows.map((r) => ({ queue: r.queue, partitionKey: r.partition_key, payload: r.payload, visibleAt: options.now, enqueuedAt: options.now })),
        );
        if (inserted > 0) await client.query("SELECT pg_notify($1, '')", [this.#db.channel]);
        return inserted;
      });
      if (count > 0) this.#listener.wake();
      return count;
    });
  }

  purgeDead(queue: string, options?: { ids?: string[] }): Promise<number> {
    return this.#db.run("purgeDead", async () => {
      const ids = options?.ids?.filter((id) => idPattern.test(id));
      if (ids !== undefined && ids.length === 0) return 0;
      const result = await this.#db.pool.query(
        `DELETE FROM ${this.#db.s}.dead_letters WHERE queue = $1 ${ids === undefined ? "" : "AND id = ANY($2::int8[])"}`,
        ids === undefined ? [queue] : [queue, ids],
      );
      return result.rowCount ?? 0;
    });
  }

  waitForWork(signal: AbortSignal): Promise<void> {
    return this.#listener.wait(signal);
  }
}
