/** Row shapes of the SQLite tables, their mapping to contract types, and id arithmetic over them. */
import { randomBytes } from "node:crypto";
import type { DeadLetter, Lease } from "../contract.ts";

export interface DeliveryRow {
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
 * A leasable row as a raw row (an array is cheaper to build than an object with named columns), read by the
 * column indexes in `R`. A null payload is the archived event's body, which the lease then reads once per event
 * (see bodiesOf in lease.ts). A fan-out row (fanout not null) is several deliveries.
 */
export type ReadyRow = [
  id: number,
  queue: string,
  partitionKey: string | null,
  payload: string | null,
  enqueuedAt: number,
  attempt: number,
  lastError: string | null,
  eventSeq: number | null,
  fanout: string | null,
  pending: number | null,
  visibleAt: number,
];

/** Column indexes of a `ReadyRow`, in the order of `readyColumns` (statements.ts). */
export const R = {
  id: 0,
  queue: 1,
  partitionKey: 2,
  payload: 3,
  enqueuedAt: 4,
  attempt: 5,
  lastError: 6,
  eventSeq: 7,
  fanout: 8,
  pending: 9,
  visibleAt: 10,
} as const;

export interface DeadRow {
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

export type LeaseRef = Pick<Lease, "deliveryId" | "token">;

export interface StoredEventRow {
  bus: string;
  seq: number;
  event_id: string;
  encoded: string;
  stored_at: number;
}

export interface StatsRow {
  queue: string;
  ready: number | null;
  leased: number | null;
  total: number;
}

/**
 * A lease token: 72 random bits in 12 characters. It only has to differ from the other leases of the same delivery
 * (a stale token must not ack); a short one keeps the leased row small (it is written into every row of a batch).
 */
export function newToken(): string {
  return randomBytes(9).toString("base64url");
}

/** Delivery ids are the row ids, exposed as decimal strings. Anything else matches no row. */
export function rowId(deliveryId: string): number {
  return /^[1-9][0-9]{0,15}$/.test(deliveryId) ? Number(deliveryId) : -1;
}

/** The smallest and largest of `values` (±Infinity when there are none). */
export function bounds(values: Iterable<number>): { low: number; high: number } {
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
export function progression(ids: readonly number[]): { first: number; last: number; step: number } | undefined {
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

export function toLease(row: ReadyRow, deliveryId: number, queue: string, payload: string, token: string, leaseUntil: number): Lease {
  const [, , partitionKey, , enqueuedAt, attempt, lastError] = row;
  // Optional fields are set only when present (no spread of temporary objects: this runs once per delivery).
  const lease: Lease = { deliveryId: String(deliveryId), queue, token, payload, attempt: attempt + 1, enqueuedAt, leaseUntil };
  if (partitionKey !== null) lease.partitionKey = partitionKey;
  if (lastError !== null) lease.lastError = lastError;
  return lease;
}

export function toDeadLetter(row: DeadRow): DeadLetter {
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

