/**
 * Messages between the SQLite store's proxy (thread-client.ts, on the caller's thread) and the store thread
 * (store-thread.ts). Hot paths travel as flat arrays of strings and numbers: structured clone copies those far
 * faster than objects (no property names), and event bodies stay the encoded strings the contract passes.
 *
 * caller -> thread: one `Request[]` per tick. A request is `[id, op, ...args]`.
 * thread -> caller: `{ replies: Reply[] }` once per settled batch, `{ work: true }` after a commit that created or
 * unblocked deliveries, `{ ready: true }` / `{ openError }` once at start, `{ closed: true }` last.
 */
import type { AppendEntry, AppendResult, Lease, LeaseRequest } from "../contract.ts";

export type Request = [id: number, op: string, ...args: unknown[]];
/** `[id, 1, value]` or `[id, 0, SerializedError]`. */
export type Reply = [id: number, ok: 0 | 1, value: unknown];

export interface SerializedError {
  code: string;
  message: string;
  retryable: boolean;
  path?: string;
}

export type ThreadMessage =
  | { replies: Reply[] }
  | { work: true }
  | { ready: true }
  | { openError: SerializedError }
  | { closed: true };

/** Entries as `bus, eventId, dedupeKey, encoded, deliveryCount, (queue, partitionKey|null, availableAt|null, payload|null)*`. */
export function packEntries(entries: AppendEntry[]): unknown[] {
  const flat: unknown[] = [];
  for (const e of entries) {
    flat.push(e.bus, e.eventId, e.dedupeKey, e.encoded, e.deliveries.length);
    for (const d of e.deliveries) flat.push(d.queue, d.partitionKey ?? null, d.availableAt ?? null, d.payload ?? null);
  }
  return flat;
}

export function unpackEntries(flat: unknown[]): AppendEntry[] {
  const entries: AppendEntry[] = [];
  let at = 0;
  while (at < flat.length) {
    const entry: AppendEntry = {
      bus: flat[at] as string,
      eventId: flat[at + 1] as string,
      dedupeKey: flat[at + 2] as string,
      encoded: flat[at + 3] as string,
      deliveries: [],
    };
    const count = flat[at + 4] as number;
    at += 5;
    for (let i = 0; i < count; i++, at += 4) {
      const partitionKey = flat[at + 1] as string | null;
      const availableAt = flat[at + 2] as number | null;
      const payload = flat[at + 3] as string | null;
      entry.deliveries.push({
        queue: flat[at] as string,
        ...(partitionKey === null ? {} : { partitionKey }),
        ...(availableAt === null ? {} : { availableAt }),
        ...(payload === null ? {} : { payload }),
      });
    }
    entries.push(entry);
  }
  return entries;
}

/** Append results as seqs, a duplicate's negated. */
export function packAppendResults(results: AppendResult[]): number[] {
  return results.map((r) => (r.status === "stored" ? r.seq : -r.seq));
}

export function unpackAppendResults(packed: number[]): AppendResult[] {
  return packed.map((seq) => (seq > 0 ? { status: "stored", seq } : { status: "duplicate", seq: -seq }));
}

const LEASE_WIDTH = 7;

/**
 * Leases of one call as `token?, leaseUntil?, (deliveryId, queue, payload, attempt, partitionKey|null, enqueuedAt,
 * lastError|null)*`, with token and leaseUntil given once per run of leases sharing them (normally the whole call).
 */
export function packLeases(leases: Lease[]): unknown[] {
  const flat: unknown[] = [];
  let token: string | undefined;
  let leaseUntil: number | undefined;
  for (const l of leases) {
    if (l.token !== token || l.leaseUntil !== leaseUntil) {
      token = l.token;
      leaseUntil = l.leaseUntil;
      flat.push(null, token, leaseUntil);
    }
    flat.push(l.deliveryId, l.queue, l.payload, l.attempt, l.partitionKey ?? null, l.enqueuedAt, l.lastError ?? null);
  }
  return flat;
}

export function unpackLeases(flat: unknown[]): Lease[] {
  const leases: Lease[] = [];
  let token = "";
  let leaseUntil = 0;
  let at = 0;
  while (at < flat.length) {
    if (flat[at] === null) {
      token = flat[at + 1] as string;
      leaseUntil = flat[at + 2] as number;
      at += 3;
      continue;
    }
    const partitionKey = flat[at + 4] as string | null;
    const lastError = flat[at + 6] as string | null;
    leases.push({
      deliveryId: flat[at] as string,
      queue: flat[at + 1] as string,
      token,
      payload: flat[at + 2] as string,
      attempt: flat[at + 3] as number,
      ...(partitionKey === null ? {} : { partitionKey }),
      enqueuedAt: flat[at + 5] as number,
      leaseUntil,
      ...(lastError === null ? {} : { lastError }),
    });
    at += LEASE_WIDTH;
  }
  return leases;
}

/** A lease request as `[max, leaseMs, now, queues|null]`. */
export function packLeaseRequest(r: LeaseRequest): unknown[] {
  return [r.max, r.leaseMs, r.now, r.queues ?? null];
}

export function unpackLeaseRequest(a: unknown[]): LeaseRequest {
  const queues = a[3] as string[] | null;
  return { max: a[0] as number, leaseMs: a[1] as number, now: a[2] as number, ...(queues === null ? {} : { queues }) };
}
