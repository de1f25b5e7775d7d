/**
 * The v2 queue calls (relative delays and extensions, declared lease times, admin apart) over a backend whose
 * queries take absolute times: the SQL backends, which evaluate every time against the caller's `now`.
 */
import type {
  DeadLetter,
  DeliveryQueues,
  Lease,
  LeaseRequest,
  NewDelivery,
  QueueAdmin,
  QueueStats,
  StoreDeclaration,
} from "../contract.ts";

type LeaseRef = Pick<Lease, "deliveryId" | "token">;

/** What a SQL backend's queue class implements: every time is absolute, on the caller's clock. */
export interface AbsoluteTimeQueues {
  enqueue(deliveries: (NewDelivery & { payload: string })[], options: { now: number }): Promise<void>;
  lease(request: LeaseRequest & { leaseMs: number }): Promise<Lease[]>;
  ack(leases: LeaseRef[]): Promise<{ lost: string[] }>;
  retry(lease: LeaseRef, options: { availableAt: number; error: string }): Promise<void>;
  deadLetter(lease: LeaseRef, options: { reason: string; error?: string; now: number }): Promise<void>;
  extend(lease: LeaseRef, options: { leaseUntil: number }): Promise<void>;
  waitForWork(signal: AbortSignal): Promise<void>;
  stats(queues?: string[], options?: { now: number }): Promise<QueueStats[]>;
  listDead(queue: string, options: { limit: number; afterId?: string }): Promise<DeadLetter[]>;
  getDead(deliveryId: string): Promise<DeadLetter | undefined>;
  redrive(queue: string, options: { ids?: string[]; now: number }): Promise<number>;
  purgeDead(queue: string, options?: { ids?: string[] }): Promise<number>;
}

/** The lease time of a queue nobody declared. */
export const defaultLeaseMs = 30_000;

/** Declared lease times by queue, and the lease time a request without `leaseMs` gets. */
export class DeclaredLeases {
  readonly #leaseMs = new Map<string, number>();

  declare(declaration: StoreDeclaration): void {
    for (const q of declaration.queues) this.#leaseMs.set(q.queue, q.leaseMs);
  }

  of(queue: string): number {
    return this.#leaseMs.get(queue) ?? defaultLeaseMs;
  }

  /** The longest declared lease of the named queues (all declared queues when absent), so none expires early. */
  forRequest(queues: string[] | undefined): number {
    let longest = 0;
    for (const q of queues ?? this.#leaseMs.keys()) longest = Math.max(longest, this.of(q));
    return longest > 0 ? longest : defaultLeaseMs;
  }
}

/** Splits an absolute-time queue class into the contract's `queues`, `admin` and `declare`. */
export function relativeQueues(inner: AbsoluteTimeQueues): {
  queues: DeliveryQueues;
  admin: QueueAdmin;
  declare(declaration: StoreDeclaration): Promise<void>;
} {
  const leases = new DeclaredLeases();
  return {
    declare: async (declaration) => leases.declare(declaration),
    queues: {
      enqueue: (deliveries, options) => inner.enqueue(deliveries, options),
      lease: (request) => inner.lease(request.leaseMs === undefined ? { ...request, leaseMs: leases.forRequest(request.queues) } : (request as LeaseRequest & { leaseMs: number })),
      ack: (refs) => inner.ack(refs),
      retry: (lease, { delayMs, error, now }) => inner.retry(lease, { availableAt: now + Math.max(0, delayMs), error }),
      deadLetter: (lease, options) => inner.deadLetter(lease, options),
      extend: (lease, { leaseMs, now }) => inner.extend(lease, { leaseUntil: now + (leaseMs ?? leases.of(lease.queue)) }),
      waitForWork: (signal) => inner.waitForWork(signal),
    },
    admin: {
      stats: (queues, options) => inner.stats(queues, options),
      listDead: (queue, options) => inner.listDead(queue, options),
      getDead: (deliveryId) => inner.getDead(deliveryId),
      redrive: (queue, options) => inner.redrive(queue, options),
      purgeDead: (queue, options) => inner.purgeDead(queue, options),
    },
  };
}
