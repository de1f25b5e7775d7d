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
  /** How long the lease hides its deliveries; the queue's declared `leaseMs` when absent. */
  leaseMs?: number;
  /** The caller's time. A backend on server time (`capabilities.callerClock` false) ignores it. */
  now: number;
}

/** A queue declared up front, so that a backend can create what it needs (a consumer, an index) before use. */
export interface QueueSpec {
  queue: string;
  /** The visibility timeout of a lease taken without an explicit `leaseMs`. */
  leaseMs: number;
}

/**
 * What a deployment declares before it appends or leases. Additive and idempotent: repeating it is cheap. A queue
 * never declared is created on first use with a 30 s lease; a declared queue is leased by `lease()` without
 * `queues` in every process sharing the backend.
 */
export interface StoreDeclaration {
  /** The publisher dedupe window every `append` uses (a log-native backend configures its stream with it). */
  dedupeWindowMs: number;
  queues: QueueSpec[];
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

/**
 * Durable delivery queues, one per (rule, target). Times the backend evaluates are the caller's `now` on a
 * caller-clock backend and the backend's own clock otherwise; delays and extensions are relative, so both read
 * the same way.
 */
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
  /** Releases a lease and makes the delivery leasable again `delayMs` after `now`, recording the error. */
  retry(lease: Pick<Lease, "deliveryId" | "token" | "queue">, options: { delayMs: number; error: string; now: number }): Promise<void>;
  /** Moves a leased delivery to its queue's dead-letter list. */
  deadLetter(lease: Pick<Lease, "deliveryId" | "token" | "queue">, options: { reason: string; error?: string; now: number }): Promise<void>;
  /** Extends a lease still held (long-running handlers) to `leaseMs` after `now` (the queue's lease time when absent). */
  extend(lease: Pick<Lease, "deliveryId" | "token" | "queue">, options: { leaseMs?: number; now: number }): Promise<void>;
  /**
   * Resolves when work may be available (an append or enqueue by this or, for shared backends, another
   * process), or when `signal` aborts. Callers still poll on a timer for expiring delays and leases.
   */
  waitForWork(signal: AbortSignal): Promise<void>;
}

/** Counts and dead-letter administration: the operator's view of the queues, apart from the hot path. */
export interface QueueAdmin {
  /**
   * Counts per queue. With `queues`, one entry per named queue in that order (zeros for unknown queues);
   * without, every queue holding deliveries or dead letters, sorted by name. `now` defaults to the wall clock.
   * A backend without `capabilities.exactStats` may count a delivery waiting for its delay or its partition key
   * as `ready` or `leased` (what its engine reports); the sum of ready, delayed and leased is exact either way.
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
}

/**
 * A small key/value store with expiry and compare-and-set (idempotency keys, schedule leases, definitions).
 * Expiry is always evaluated against the caller's `now` (every backend stores the expiry time with the value).
 */
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
   * Every time the event log and the queues evaluate (lease expiry, delays, the dedupe window, `storedAt`) is the
   * caller's `now`, so a caller (or a test) may move it by hand. False for a backend on server time, which ignores
   * `now` there (state TTLs follow the caller's `now` on every backend).
   */
  readonly callerClock: boolean;
  /**
   * Calls of one backend object commit in the order they were issued, in a shared commit (one in-process group
   * commit): a `lease` issued right after an `append`, before it resolves, sees that append's deliveries. The bus
   * then leases as soon as it issues an append; on a backend without it, that lease would find nothing.
   */
  readonly leaseJoinsAppend: boolean;
  /**
   * An entry's event and its deliveries commit together: a failed append leaves none of them, and a delivery is
   * leasable as soon as the append resolves. False where deliveries follow the log (written after the event, by
   * the same call or a forwarder): an append that fails midway may leave an event without some deliveries (the
   * caller's retry completes them), and a lease right after an append may not see them yet.
   */
  readonly atomicFanOut: boolean;
  /**
   * Per-partition-key order is enforced by the engine's own index (a lease query over the oldest pending delivery
   * of a key). False where it is emulated over a log (a delivery that is not its key's head is handed back and
   * comes again later), which costs a round trip per out-of-turn delivery.
   */
  readonly nativeKeyOrder: boolean;
  /** `stats` splits ready, delayed and leased exactly (see `QueueAdmin.stats`). */
  readonly exactStats: boolean;
}

/** One storage backend: the three parts share one connection/file and one lifecycle. */
export interface StorageBackend {
  /** The backend's name, for logs and status (`sqlite`, `postgres`, `nats`); branch on `capabilities`, not on this. */
  readonly kind: string;
  readonly capabilities: StoreCapabilities;
  readonly events: EventLog;
  readonly queues: DeliveryQueues;
  readonly admin: QueueAdmin;
  readonly state: StateStore;
  /** Declares the deployment's dedupe window and queues (see `StoreDeclaration`). */
  declare(declaration: StoreDeclaration): Promise<void>;
  /**
   * Leases that opening the store expired at once because the processes holding them are known to be dead (a
   * restart after a crash), instead of leaving them to run out their visibility timeout. The server logs it.
   */
  readonly reclaimedLeases?: number;
  /** Waits for in-flight calls, releases connections. Idempotent. */
  close(): Promise<void>;
}
