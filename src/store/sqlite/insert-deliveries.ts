/**
 * Inserting delivery rows (appends, enqueues, redrives) and promoting a key's next delivery: the per-key ordering
 * of the SQLite store. Only the oldest pending delivery of a (queue, partition key) is visible; the others wait
 * with `visible_at` NULL until the one before them leaves the queue.
 */
import type { Lease } from "../contract.ts";
import type { Engine } from "./engine.ts";
import type { Sql } from "./statements.ts";

/**
 * Deliveries to insert, as flat row values (queue, partition key, event seq, payload, enqueued at, available at),
 * in order. A delivery carries its payload, or refers to its archived event with a null payload.
 */
export type DeliveryValues = (string | number | null)[];
export const DELIVERY_WIDTH = 6;

export function pushDelivery(
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

/** A lease taken while inserting deliveries (appendAndLease): `bodies[i]` is the encoded event of delivery i. */
export interface InsertLeasing {
  max: number;
  now: number;
  leaseUntil: number;
  token: string;
  bodies: string[];
  out: Lease[];
}

/**
 * Inserts deliveries in order. Only the oldest delivery of a (queue, key) is visible; later ones wait
 * (visible_at NULL) until promoted: a key is blocked by a pending delivery, or by one earlier in this batch.
 * With `leasing`, up to `leasing.max` deliveries leasable now are inserted already leased (see appendAndLease).
 */
export function insertDeliveries(sql: Sql, engine: Engine, values: DeliveryValues, leasing?: InsertLeasing): void {
  if (values.length === 0) return;
  const rows: unknown[] = [];
  let keysInBatch: Set<string> | undefined;
  let id = sql.lastDeliveryId.get()?.seq ?? 0;
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
      if (keysInBatch.has(keyId) || sql.keyHasPending.get(queue, key) !== undefined) visibleAt = null;
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
  sql.deliveryInsert.run(rows);
  // Deliveries leased here are nobody else's work: only the others need a wake-up.
  if (unleased) engine.workCreated();
}

/** After a key's head left the queue (ack, dead letter), makes the key's next delivery visible. */
export function promoteNext(sql: Sql, engine: Engine, queue: string, partitionKey: string | null): void {
  if (partitionKey === null) return;
  if (sql.promoteNext.run(queue, partitionKey).changes > 0) engine.workCreated();
}
