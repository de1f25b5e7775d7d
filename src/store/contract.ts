/**
 * The storage contract: every backend (SQLite, PostgreSQL, later NATS JetStream) implements these
 * interfaces, and `conformance/` is the one test suite every backend runs.
 *
 * The contract is shaped as logs, queues and a key/value store, not as SQL, so that a log-native
 * engine can implement it natively. Times are epoch milliseconds (`*At`); durations end in `Ms`.
 * Event bodies are passed as already-encoded JSON strings: a backend never parses or re-encodes them.
 */

/** A delivery to enqueue: one (rule, target) queue for one event. */
export interface NewDelivery {
  /** Queue name, one per (rule, target): e.g. `rule:orders/billing`. */
  queue: string;
  /** CloudEvents `partitionkey`: deliveries of one key in one queue are leased one at a time, in order. */
  partitionKey?: string;
  /** Not leasable before this time (delayed delivery). Defaults to the append time. */
  availableAt?: number;
  /** The encoded event to deliver, when it differs from the appended one (input transformer, replay mark). */
  payload?: string;
}

export interface AppendEntry {
  bus: string;
  /** The CloudEvent `id`. */
  eventId: string;
  /** Publisher dedupe key, normally `source + "\n" + id`. */
  dedupeKey: string;
  /** The encoded CloudEvent (structured JSON). */
  encoded: string;
  /** Deliveries created atomically with the event (the rules it matched). */
  deliveries: NewDelivery[];
}

export type AppendResult =
  | { status: "stored"; seq: number }
  /** A same-key event was accepted within the dedupe window: acknowledged, neither stored nor delivered again. */
  | { status: "duplicate"; seq: number };

export interface StoredEvent {
  bus: string;
  /** Position in the backend's log, increasing in append order (per backend, not per bus). */
  seq: number;
  eventId: string;
  encoded: string;
  /** The append's `now`; a backend may raise it to the previous event's storedAt so that it never decreases along seq. */
  storedAt: number;
}

export interface ReadRange {
  /** Inclusive lower bound on `storedAt`. */
  fromAt?: number;
  /** Exclusive upper bound on `storedAt`. */
  toAt?: number;
  /** Only events with `seq` greater than this (a cursor for paging). */
  afterSeq?: number;
  limit: number;
}

/** The append-only event log: one per backend, partitioned by bus. */
export interface EventLog {
  /**
   * Appends events with their deliveries. Resolves only when every entry is durable: an acknowledged
   * append survives `kill -9` of the process. Each entry's event and deliveries commit together (all or none).
   * An entry whose `dedupeKey` was appended to the same bus within `dedupeWindowMs` (strictly less than the window
   * before `now`, measured from the first accepted append) is reported `duplicate` with the original `seq` and
   * changes nothing; a duplicate does not extend the window. Dedupe is per bus (cross-bus routing re-appends the
   * same event to another bus) and applies within one call too. `dedupeWindowMs <= 0` disables dedupe.
   * Results are in entry order.
   */
  append(entries: AppendEntry[], options: { now: number; dedupeWindowMs: number }): Promise<AppendResult[]>;
  /**
   * Optional: `append`, and in the same commit leases up to `lease.max` of the new deliveries that are leasable at
   * once (available at `now`, and the oldest pending delivery of their partition key), oldest first, as a `lease`
   * call right after the append would (a backend may stop short of `max`, e.g. to lease only all or none of one
   * event's deliveries). A process that will run those deliveries itself saves the lease's read and write. Leased
   * deliveries are not announced by `waitForWork` (nobody else can take them).
   */
  appendAndLease?(
    entries: AppendEntry[],
    options: { now: number; dedupeWindowMs: number; lease: { max: number; leaseMs: number } },
  ): Promise<{ results: AppendResult[]; leases: Lease[] }>;
  /** Events of one bus in `seq` order (archive and replay). */
  read(bus: string, range: ReadRange): Promise<StoredEvent[]>;
  /** Deletes events stored before `beforeAt` (retention). Returns how many were deleted. */
  trim(bus: string, beforeAt: number): Promise<number>;
}

/** A leased delivery: invisible to other workers until `leaseUntil`, then visible again. */
export interface Lease {
  deliveryId: string;
  queue: string;
  /**
   * Proves ownership of this lease; a stale token makes ack/retry/deadLetter fail with E_LEASE_LOST. Unique per
   * lease of a delivery (a re-lease gets a new one); the leases returned by one `lease` call may share it.
   */
  token: string;
  /** The encoded event to deliver. */
  payload: string;
  /** 1 on the first lease, incremented on every lease. */
  attempt: number;
  partitionKey?: string;
  /** When the delivery was first enqueued (for the maximum-event-age policy). */
  enqueuedAt: number;
  leaseUntil: number;
  /** The error recorded by the previous failed attempt, if any. */
  lastError?: string;
}

export interface LeaseRequest {
  /** Queues to lease from; all queues when absent. */
  queues?: string[];
  max: number;
  leaseMs: number;
  now: number;
}

export interface DeadLetter {
  deliveryId: string;
  queue: string;
  payload: string;
  partitionKey?: string;
  /** `max-attempts`, `max-age`, `non-retriable`, `recursive-loop`, `timeout`, … */
  reason: string;
  attempts: number;
  lastError?: string;
  enqueuedAt: number;
  deadAt: number;
}

export interface QueueStats {
  queue: string;
  /** Leasable now. */
  ready: number;
  /** Pending but not leasable now: backoff, delayed, or waiting behind an older delivery of its partition key. */
  delayed: number;
  /** Currently leased. */
  leased: number;
  dead: number;
}

/** Durable delivery queues, one per (rule, target). */
export interface DeliveryQueues {
  /** Adds deliveries outside an append (redrive, replay into a rule's targets). Durable when resolved. */
  enqueue(deliveries: (NewDelivery & { payload: string })[], options: { now: number }): Promise<void>;
  /**
   * Leases up to `max` deliveries whose `availableAt <= now` and which are not leased (or whose lease expired).
   * Oldest first. Ordering: within one (queue, partitionKey) only the oldest pending delivery is leasable,
   * and only while no other delivery of that key is leased: a failing delivery holds its key until it is
   * acked or dead-lettered. Deliveries without a key have no ordering and full parallelism.
   */
  lease(request: LeaseRequest): Promise<Lease[]>;
  /**
   * Removes leased deliveries. A lost lease (re-leased by someone else, or already settled) is skipped and
   * reported in the result; an expired lease that nobody re-leased can still be acked with its token.
   */
  ack(leases: Pick<Lease, "deliveryId" | "token">[]): Promise<{ lost: string[] }>;
  /** Releases a lease and makes the delivery leasable again at `availableAt`, recording the error. */
  retry(lease: Pick<Lease, "deliveryId" | "token">, options: { availableAt: number; error: string }): Promise<void>;
  /** Moves a leased delivery to its queue's dead-letter list. */
  deadLetter(lease: Pick<Lease, "deliveryId" | "token">, options: { reason: string; error?: string; now: number }): Promise<void>;
  /** Extends a lease still held (long-running handlers). */
  extend(lease: Pick<Lease, "deliveryId" | "token">, options: { leaseUntil: number }): Promise<void>;
  /**
   * Counts per queue. With `queues`, one entry per named queue in that order (zeros for unknown queues);
   * without, every queue holding deliveries or dead letters, sorted by name. `now` defaults to the wall clock.
   */
  stats(queues?: string[], options?: { now: number }): Promise<QueueStats[]>;

  /** Dead letters of one queue, oldest first, paged by `afterId`. */
  listDead(queue: string, options: { limit: number; afterId?: string }): Promise<DeadLetter[]>;
  getDead(deliveryId: string): Promise<DeadLetter | undefined>;
  /**
   * Moves dead letters back to their queue as fresh deliveries (attempt 0, no last error, enqueued and available
   * at `now`, behind any pending delivery of the same partition key). All of a queue when `ids` is absent;
   * ids of other queues or unknown ids are ignored. Returns how many were moved.
   */
  redrive(queue: string, options: { ids?: string[]; now: number }): Promise<number>;
  purgeDead(queue: string, options?: { ids?: string[] }): Promise<number>;

  /**
   * Resolves when work may be available (an append or enqueue by this or, for shared backends, another
   * process), or when `signal` aborts. Callers still poll on a timer for expiring delays and leases.
   */
  waitForWork(signal: AbortSignal): Promise<void>;
}

/** A small key/value store with expiry and compare-and-set (idempotency keys, schedule leases, definitions). */
export interface StateStore {
  get(namespace: string, key: string, options: { now: number }): Promise<string | undefined>;
  /** Writes unconditionally. `ttlMs` absent means no expiry. */
  put(namespace: string, key: string, value: string, options: { now: number; ttlMs?: number }): Promise<void>;
  /** Writes only when the key is absent or expired. True when this call wrote it. */
  putIfAbsent(namespace: string, key: string, value: string, options: { now: number; ttlMs?: number }): Promise<boolean>;
  /** Writes only when the current value equals `expected` (and is not expired). True when this call wrote it. */
  compareAndSet(
    namespace: string,
    key: string,
    expected: string,
    value: string,
    options: { now: number; ttlMs?: number },
  ): Promise<boolean>;
  delete(namespace: string, key: string): Promise<void>;
  /** Live entries of a namespace (definitions, listings). */
  list(namespace: string, options: { now: number }): Promise<{ key: string; value: string }[]>;
}

/**
 * What a backend offers beyond the contract's minimum. Callers (the bus, the conformance suite) branch on these,
 * never on `kind`, so a new backend declares what it does instead of being named in their code.
 */
export interface StoreCapabilities {
  /** `events.appendAndLease` is implemented. */
  readonly appendAndLease: boolean;
  /**
   * Every time the contract evaluates (lease expiry, delays, the dedupe window, TTLs, `storedAt`) is the caller's
   * `now`, so a caller (or a test) may move it by hand. False for a backend on server time.
   */
  readonly callerClock: boolean;
  /**
   * Calls of one backend object commit in the order they were issued, in a shared commit (one in-process group
   * commit): a `lease` issued right after an `append`, before it resolves, sees that append's deliveries. The bus
   * then leases as soon as it issues an append; on a backend without it, that lease would find nothing.
   */
  readonly leaseJoinsAppend: boolean;
}

/** One storage backend: the three parts share one connection/file and one lifecycle. */
export interface StorageBackend {
  /** The backend's name, for logs and status (`sqlite`, `postgres`, `nats`); branch on `capabilities`, not on this. */
  readonly kind: string;
  readonly capabilities: StoreCapabilities;
  readonly events: EventLog;
  readonly queues: DeliveryQueues;
  readonly state: StateStore;
  /**
   * Leases that opening the store expired at once because the processes holding them are known to be dead (a
   * restart after a crash), instead of leaving them to run out their visibility timeout. The server logs it.
   */
  readonly reclaimedLeases?: number;
  /** Waits for in-flight calls, releases connections. Idempotent. */
  close(): Promise<void>;
}
