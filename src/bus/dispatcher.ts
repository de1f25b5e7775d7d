/**
 * The dispatcher: leases deliveries, runs their targets with bounded concurrency, acks successes in batches,
 * and on failure retries with backoff (full jitter) or dead-letters.
 *
 * Wake-ups, never busy polling: a watcher parks on `store.queues.waitForWork` and wakes the lease loop; a timer
 * on the injectable clock wakes it for the earliest retry this process scheduled, and a slow fallback poll
 * (`pollIntervalMs`) covers delays set by other processes and expired leases.
 *
 * Per-key order: the store leases only the oldest delivery of a (queue, partitionKey) and none while one is
 * leased; on top of that this process never runs two deliveries of one key at once (a re-lease after an expiry
 * waits for the local run of the same key), so publish order holds per key and target.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { Lease, StorageBackend } from "../store/contract.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../logger.ts";
import type { CompiledTarget, Definitions } from "./definitions.ts";
import { classifyFailure, describeError, failureText } from "./handler-errors.ts";
import { decideAfterFailure } from "./retry.ts";
import type { DeliveryContext, DeliveryEvents } from "./types.ts";
import { rejectedError, rejectedQueuePrefix, rejectedReason } from "../triggers/rejected.ts";

export interface DispatcherOptions {
  clock: Clock;
  random: () => number;
  logger: Logger;
  /** Deliveries running at once in this process. */
  concurrency: number;
  /** Most deliveries taken by one lease call. */
  leaseBatch: number;
  /** Visibility timeout of a lease; running deliveries are extended before it ends. */
  leaseMs: number;
  /** Fallback poll for work this process cannot be told about (other processes' delays, expired leases). */
  pollIntervalMs: number;
}

/**
 * Runs one delivery; resolves on success, throws to fail the attempt. Thrown `DeadNow` dead-letters with its reason.
 * `context` is the delivery's attempt, id and abort signal (read the signal only when needed: it is made on first use).
 */
export type RunTarget = (target: CompiledTarget, event: CloudEvent, lease: Lease, context: DeliveryContext) => Promise<void>;

/** Thrown by a target runner to dead-letter at once with a specific reason (e.g. `recursive-loop`). */
export class DeadNow extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Retry wake-up times kept at most; beyond that the fallback poll picks retries up (a little later). */
const maxDueTimes = 10_000;

function heapPush(heap: number[], value: number): void {
  heap.push(value);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = value;
}

function heapPop(heap: number[]): number | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length === 0 || last === undefined) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= heap.length) break;
    const r = l + 1;
    const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
    if (heap[c]! >= last) break;
    heap[i] = heap[c]!;
    i = c;
  }
  heap[i] = last;
  return top;
}

/**
 * One delivery running here. It is also the context handed to the target (attempt, delivery id, and an abort
 * signal created only when asked for: most deliveries never look at it), so a delivery allocates one object.
 */
class Running implements DeliveryContext {
  #controller: AbortController | undefined;
  /** Why the delivery should stop, when that happened before anyone asked for the signal. */
  #abortReason: unknown;
  #aborted = false;
  /** Set when close() released the lease: the outcome of the run is then ignored. */
  released = false;
  /** Clock time the run started (for the `delivered` event's duration). */
  startedAt = 0;
  /** The delivered event's id, once decoded. */
  eventId = "";
  /** Its correlation id (for bus-side log lines). */
  correlationId: unknown = undefined;

  constructor(
    readonly lease: Lease,
    /** queue + partition key, for keyed deliveries: the next delivery of the key waits for this one. */
    readonly key: string | undefined,
  ) {}

  get attempt(): number {
    return this.lease.attempt;
  }

  get deliveryId(): string {
    return this.lease.deliveryId;
  }

  get queue(): string {
    return this.lease.queue;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#controller !== undefined) this.#controller.abort(reason);
    else if (!this.#aborted) {
      this.#aborted = true;
      this.#abortReason = reason;
    }
  }
}

/** The id of an encoded event that was not decoded for delivery (dead-lettered before it ran); "" when unreadable. */
function eventIdOf(payload: string): string {
  try {
    const id = (JSON.parse(payload) as { id?: unknown }).id;
    return typeof id === "string" ? id : "";
  } catch {
    return "";
  }
}

/** Resolves when `register`'s callback is called or at `deadline` (wall-clock ms), whichever comes first. */
async function untilOrDeadline(register: (done: () => void) => void, deadline: number): Promise<void> {
  let timeout: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    new Promise<void>((resolve) => register(resolve)),
    new Promise<void>((resolve) => {
      timeout = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    }),
  ]);
  clearTimeout(timeout);
}

export type Emit = <K extends keyof DeliveryEvents>(name: K, payload: DeliveryEvents[K]) => void;

export class Dispatcher {
  readonly #store: StorageBackend;
  readonly #defs: Definitions;
  readonly #run: RunTarget;
  readonly #o: DispatcherOptions;
  readonly #emit: Emit;
  readonly #onSettled: (count: number) => void;
  readonly #stop = new AbortController();
  /** Deliveries running here (a Set of objects: no delivery-id string to hash per delivery). */
  #running = new Set<Running>();
  /** Keys (queue + partitionKey) running here, with leases of the same key waiting for them. */
  #keys = new Map<string, Lease[]>();
  #wakeFlag = false;
  #wakeResolve: (() => void) | undefined;
  #timer: { at: number; handle: unknown } | undefined;
  #due: number[] = [];
  #poll: unknown;
  #upkeep: unknown;
  #acks: Running[] = [];
  #ackFlushing = false;
  #loop: Promise<void> | undefined;
  #watcher: Promise<void> | undefined;
  #idleWaiters: (() => void)[] = [];
  /** Slots promised to appends in flight (see reserve()): the lease loop leaves them free. */
  #reserved = 0;
  /**
   * Deliveries whose ack is being committed: their slots count as free, so the lease that refills them is queued
   * behind the ack and commits with it (one commit per batch cycle instead of two). At most `concurrency` of them.
   */
  #settling = 0;
  /** The lease loop waits for a free slot (see #slotFreed). */
  #parkedFull = false;
  /** The loop's last lease call found work (see #slotFreed). */
  #leasedLast = true;
  #reservedWaiters: (() => void)[] = [];
  #started = false;
  /** The last payload decoded and its event: the deliveries of one event to several targets decode it once. */
  #lastPayload: string | undefined;
  #lastEvent: CloudEvent | undefined;

  constructor(
    store: StorageBackend,
    defs: Definitions,
    run: RunTarget,
    emit: Emit,
    onSettled: (count: number) => void,
    options: DispatcherOptions,
  ) {
    this.#store = store;
    this.#defs = defs;
    this.#run = run;
    this.#emit = emit;
    this.#onSettled = onSettled;
    this.#o = options;
  }

  start(): void {
    if (this.#loop) return;
    this.#started = true;
    this.#watcher = this.#watch();
    this.#loop = this.#leaseLoop();
    this.#scheduleUpkeep();
  }

  /** Asks the lease loop to look again at `at` (clock time): a delivery enqueued to become available then. */
  wakeAt(at: number): void {
    this.#wakeAt(at);
  }

  /** Asks the lease loop to look for work now (after a local publish, a redrive…). */
  wake(): void {
    this.#wakeFlag = true;
    const r = this.#wakeResolve;
    this.#wakeResolve = undefined;
    r?.();
  }

  get inFlight(): number {
    return this.#running.size;
  }

  get leaseMs(): number {
    return this.#o.leaseMs;
  }

  /**
   * Promises up to `wanted` free slots to an append that leases its own deliveries (appendAndLease): the lease
   * loop leaves them free until `adopt` returns them. Returns how many were promised (0 when stopped or full).
   */
  reserve(wanted: number): number {
    if (!this.#started || this.#stop.signal.aborted) return 0;
    const free = this.#freeSlots();
    const promised = Math.max(0, Math.min(free, wanted, this.#o.leaseBatch));
    this.#reserved += promised;
    return promised;
  }

  /**
   * Runs leases taken by an append for `reserve`'s promise of `reserved` slots (none when the append failed).
   * While closing too: close() waits for promised slots, then treats these as any running delivery.
   */
  adopt(leases: Lease[], reserved: number): void {
    this.#reserved -= reserved;
    for (const lease of leases) this.#start(lease);
    if (leases.length < reserved) this.wake();
    if (this.#reserved === 0) for (const f of this.#reservedWaiters.splice(0)) f();
  }

  async #watch(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#store.queues.waitForWork(signal);
      } catch (err) {
        this.#o.logger.warn({ err: describeError(err) }, "waiting for work failed");
        await this.#sleep(this.#o.pollIntervalMs);
      }
      this.wake();
      // One macrotask turn per wake-up: a store that resolves waitForWork at once (closed under us) must not
      // spin this loop on microtasks and starve the process.
      await new Promise((r) => setImmediate(r));
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.#stop.signal;
      const done = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const h = this.#o.clock.setTimeout(done, ms);
      const onAbort = () => {
        this.#o.clock.clearTimeout(h);
        done();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Wakes the loop at `at` (clock time): retry times are kept in a bounded min-heap behind one timer. */
  #wakeAt(at: number): void {
    if (this.#stop.signal.aborted) return;
    if (this.#due.length < maxDueTimes) heapPush(this.#due, at);
    this.#arm();
  }

  #arm(): void {
    const next = this.#due[0];
    if (next === undefined || (this.#timer !== undefined && this.#timer.at <= next)) return;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer.handle);
    const handle = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      const now = this.#o.clock.now();
      while (this.#due.length > 0 && this.#due[0]! <= now) heapPop(this.#due);
      this.wake();
      this.#arm();
    }, Math.max(0, next - this.#o.clock.now()));
    this.#timer = { at: next, handle };
  }

  /** The fallback poll while idle: one timer, re-armed each time it fires and the loop goes idle again. */
  #armPoll(): void {
    if (this.#poll !== undefined || this.#stop.signal.aborted) return;
    this.#poll = this.#o.clock.setTimeout(() => {
      this.#poll = undefined;
      this.wake();
    }, this.#o.pollIntervalMs);
  }

  async #leaseLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const free = this.#freeSlots();
      if (free <= 0) {
        // Full: wait for a slot. A finishing delivery calls wake(); the lease after it also finds any new work.
        this.#wakeFlag = false;
        this.#parkedFull = true;
        await this.#idle();
        this.#parkedFull = false;
        continue;
      }
      this.#wakeFlag = false;
      const max = Math.min(free, this.#o.leaseBatch);
      let leases: Lease[];
      try {
        leases = await this.#store.queues.lease({ max, leaseMs: this.#o.leaseMs, now: this.#o.clock.now() });
      } catch (err) {
        this.#o.logger.error({ err: describeError(err) }, "leasing deliveries failed");
        await this.#sleep(Math.min(this.#o.pollIntervalMs, 1000));
        continue;
      }
      if (signal.aborted) {
        await this.#release(leases.map((lease) => new Running(lease, undefined)));
        break;
      }
      this.#leasedLast = leases.length > 0;
      for (const lease of leases) this.#start(lease);
      if (leases.length === max || this.#wakeFlag) continue;
      this.#armPoll();
      await this.#idle();
    }
  }

  #freeSlots(): number {
    return this.#o.concurrency - (this.#running.size - this.#settling) - this.#reserved;
  }

  /** Parks the loop until wake() (work, timer, a freed slot) or stop. */
  #idle(): Promise<void> {
    if (this.#wakeFlag || this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wakeResolve = resolve;
    });
  }

  #start(lease: Lease): void {
    const key = lease.partitionKey === undefined ? undefined : `${lease.queue}\u0000${lease.partitionKey}`;
    if (key !== undefined) {
      const waiting = this.#keys.get(key);
      if (waiting !== undefined) {
        waiting.push(lease); // the same key runs here already (a re-lease after expiry): run after it
        return;
      }
      this.#keys.set(key, []);
    }
    this.#launch(lease, key);
  }

  #launch(lease: Lease, key: string | undefined): void {
    const running = new Running(lease, key);
    this.#running.add(running);
    void this.#deliver(running);
  }

  /** A delivery is over here (acked, retried, dead-lettered, released or failed): frees its slot and its key. */
  #finish(r: Running): void {
    const { key } = r;
    this.#running.delete(r);
    if (key !== undefined) {
      const next = this.#keys.get(key)?.shift();
      if (next !== undefined) {
        this.#launch(next, key);
        return;
      }
      this.#keys.delete(key);
    }
    this.#slotFreed();
    this.#checkIdle();
  }

  /**
   * A slot is free again: the lease loop looks for work when it waits for a slot, or when its last lease found
   * some (a backlog). Otherwise new work announces itself (waitForWork, timers): no empty lease per delivery, which
   * at a low rate (every delivery leased by its append) was a store transaction per event.
   */
  #slotFreed(): void {
    if (this.#parkedFull || this.#leasedLast) this.wake();
  }

  async #target(queue: string): Promise<CompiledTarget | undefined> {
    let target = this.#defs.target(queue);
    if (target === undefined) {
      // Another process may have added it since the last poll: one version read tells.
      await this.#defs.refreshIfChanged().catch(() => false);
      target = this.#defs.target(queue);
    }
    return target;
  }

  /** Runs a delivery to its end; never rejects. A success ends when its batched ack commits (#settleAcked). */
  async #deliver(r: Running): Promise<void> {
    let acking = false;
    try {
      acking = await this.#attempt(r);
    } catch (err) {
      this.#o.logger.error({ err: describeError(err), deliveryId: r.lease.deliveryId }, "delivery failed unexpectedly");
    } finally {
      if (!acking) this.#finish(r);
    }
  }

  /** One attempt and its bookkeeping. True when the delivery succeeded and its ack was queued. */
  async #attempt(r: Running): Promise<boolean> {
    const { lease } = r;
    r.startedAt = this.#o.clock.now();
    const target = this.#defs.target(lease.queue) ?? (await this.#target(lease.queue));
    if (target === undefined && lease.queue.startsWith(rejectedQueuePrefix)) {
      await this.#dead(r, rejectedReason, rejectedError(lease.payload));
      return false;
    }
    if (target === undefined) {
      await this.#dead(r, "target-removed", "the rule or target of this queue no longer exists");
      return false;
    }
    if (r.startedAt - lease.enqueuedAt >= target.policy.maxEventAgeMs) {
      await this.#dead(r, "max-age", lease.lastError ?? `older than ${target.policy.maxEventAgeMs} ms`);
      return false;
    }
    // A failed attempt that reports back is dead-lettered at maxAttempts (decideAfterFailure), so a lease past
    // it means attempts that never reported: the process died during them (an event that kills whoever runs
    // it, say). Dead-lettering here bounds how often such an event can take a process down.
    if (lease.attempt > target.policy.maxAttempts) {
      const reported = lease.lastError === undefined ? "" : `; the last one reported: ${lease.lastError}`;
      await this.#dead(r, "crashed", `attempt ${lease.attempt} of at most ${target.policy.maxAttempts}: earlier attempts never reported back (the process running them died or lost its lease)${reported}`);
      return false;
    }
    let event: CloudEvent;
    if (lease.payload === this.#lastPayload) {
      event = this.#lastEvent as CloudEvent;
    } else {
      try {
        event = JSON.parse(lease.payload) as CloudEvent;
      } catch (err) {
        await this.#dead(r, "undecodable", describeError(err));
        return false;
      }
      this.#lastPayload = lease.payload;
      this.#lastEvent = event;
    }
    r.eventId = event.id;
    r.correlationId = event[SluiceExtension.CorrelationId] ?? event.id;
    try {
      await this.#run(target, event, lease, r);
    } catch (err) {
      if (r.released) return false;
      if (err instanceof DeadNow) {
        await this.#dead(r, err.reason, err.message);
        return false;
      }
      const now = this.#o.clock.now();
      const decision = decideAfterFailure(classifyFailure(err), lease.attempt, lease.enqueuedAt, now, target.policy, this.#o.random);
      const error = failureText(err);
      if (decision.action === "dead") {
        await this.#dead(r, decision.reason, error);
        return false;
      }
      try {
        await this.#store.queues.retry(lease, { delayMs: decision.availableAt - now, error, now });
      } catch (storeErr) {
        this.#storeFailed(storeErr, lease, "retry");
        return false;
      }
      this.#o.logger.info(
        { deliveryId: lease.deliveryId, queue: lease.queue, attempt: lease.attempt, eventId: event.id, correlationId: r.correlationId, delayMs: decision.delayMs, error },
        "delivery failed; retrying",
      );
      this.#emit("retry", {
        deliveryId: lease.deliveryId,
        queue: lease.queue,
        eventId: event.id,
        attempt: lease.attempt,
        enqueuedAt: lease.enqueuedAt,
        startedAt: r.startedAt,
        durationMs: now - r.startedAt,
        delayMs: decision.delayMs,
        availableAt: decision.availableAt,
        error,
      });
      this.#wakeAt(decision.availableAt);
      return false;
    }
    if (r.released) return false;
    // The slot stays taken until the ack commits: freeing it at the handler's end let thousands of settled
    // deliveries wait for their ack at once under load (W3 peak RSS +10-15 MB, no faster; see BENCHMARKS.md).
    this.#acks.push(r);
    if (!this.#ackFlushing) {
      // The first ack call starts at the end of this event-loop turn, so the handlers of one lease batch that
      // finish together are acked together (started at once, the first finisher was acked alone and the rest
      // waited for its round trip: on PostgreSQL, W1 made ~740 acks of 1-2 deliveries per 100 000 events).
      this.#ackFlushing = true;
      setImmediate(() => void this.#flushAcks());
    }
    return true;
  }

  /**
   * After the ack of a batch: a delivery whose ack took effect is delivered. A lost lease (it expired and another
   * run owns the delivery) or a failed ack is not a delivery yet.
   */
  #settleAcked(r: Running, acked: boolean): void {
    if (acked) {
      const { lease } = r;
      this.#emit("delivered", {
        deliveryId: lease.deliveryId,
        queue: lease.queue,
        eventId: r.eventId,
        attempt: lease.attempt,
        enqueuedAt: lease.enqueuedAt,
        startedAt: r.startedAt,
        durationMs: this.#o.clock.now() - r.startedAt,
      });
    }
    this.#finish(r);
  }

  async #dead(r: Running, reason: string, error: string): Promise<void> {
    const { lease } = r;
    const now = this.#o.clock.now();
    try {
      await this.#store.queues.deadLetter(lease, { reason, error, now });
    } catch (err) {
      this.#storeFailed(err, lease, "deadLetter");
      return;
    }
    this.#onSettled(1);
    this.#o.logger.warn(
      { deliveryId: lease.deliveryId, queue: lease.queue, attempt: lease.attempt, eventId: r.eventId, correlationId: r.correlationId, reason, error },
      "delivery dead-lettered",
    );
    const eventId = r.eventId || eventIdOf(lease.payload);
    const { startedAt } = r;
    this.#emit("dead", {
      deliveryId: lease.deliveryId,
      queue: lease.queue,
      eventId,
      attempt: lease.attempt,
      enqueuedAt: lease.enqueuedAt,
      startedAt,
      durationMs: now - startedAt,
      reason,
      error,
    });
  }

  #storeFailed(err: unknown, lease: Lease, op: string): void {
    // A lost lease means another worker owns the delivery now; anything else leaves the lease to expire,
    // after which the delivery runs again (at least once).
    const level = err instanceof SluiceError && err.code === ErrorCode.LeaseLost ? "info" : "error";
    this.#o.logger[level]({ deliveryId: lease.deliveryId, queue: lease.queue, op, err: describeError(err) }, "delivery bookkeeping failed");
  }

  /** Acks are batched: every ack waiting while one store call runs goes in the next call. */
  async #flushAcks(): Promise<void> {
    this.#ackFlushing = true;
    try {
      while (this.#acks.length > 0) {
        const batch = this.#acks.splice(0, 1000);
        let lostIds: ReadonlySet<string> | undefined;
        // The ack is queued first; the lease loop, woken for the slots it frees, queues its lease right behind.
        const acking = (async () => this.#store.queues.ack(batch.map((r) => r.lease)))(); // runs (queues) now; throws reject
        this.#settling += batch.length;
        this.#slotFreed();
        try {
          const { lost } = await acking;
          this.#onSettled(batch.length - lost.length);
          for (const id of lost) this.#o.logger.info({ deliveryId: id }, "ack after the lease was lost");
          lostIds = new Set(lost);
        } catch (err) {
          this.#o.logger.error({ err: describeError(err), count: batch.length }, "acking deliveries failed");
        }
        this.#settling -= batch.length;
        for (const r of batch) this.#settleAcked(r, lostIds !== undefined && !lostIds.has(r.lease.deliveryId));
      }
    } finally {
      this.#ackFlushing = false;
    }
  }

  /**
   * Extends leases of long-running deliveries before they expire. Every third of `leaseMs`, a lease with less
   * than two thirds left is extended to a full `leaseMs`, so at least a third of the lease (10 s by default) is
   * left when it is renewed, however the ticks fall: a handler may run far longer than the lease (a function's
   * `timeout`) without its delivery being leased again, even when the event loop lags.
   */
  #scheduleUpkeep(): void {
    if (this.#stop.signal.aborted) return;
    const every = Math.max(50, Math.floor(this.#o.leaseMs / 3));
    this.#upkeep = this.#o.clock.setTimeout(() => {
      void this.#extendLeases().finally(() => this.#scheduleUpkeep());
    }, every);
  }

  async #extendLeases(): Promise<void> {
    const now = this.#o.clock.now();
    const due = [...this.#running.values()].filter((r) => !r.released && r.lease.leaseUntil - now < (this.#o.leaseMs * 2) / 3);
    for (const r of due) {
      const leaseUntil = now + this.#o.leaseMs;
      try {
        await this.#store.queues.extend(r.lease, { leaseMs: this.#o.leaseMs, now });
        r.lease.leaseUntil = leaseUntil;
      } catch (err) {
        if (err instanceof SluiceError && err.code === ErrorCode.LeaseLost) {
          this.#o.logger.warn({ deliveryId: r.lease.deliveryId, queue: r.lease.queue }, "lease lost while running");
          r.abort(err);
        } else this.#o.logger.error({ err: describeError(err), deliveryId: r.lease.deliveryId }, "extending a lease failed");
      }
    }
  }

  #checkIdle(): void {
    if (this.#running.size === 0 && this.#acks.length === 0) for (const f of this.#idleWaiters.splice(0)) f();
  }

  async #release(runs: Running[]): Promise<void> {
    const now = this.#o.clock.now();
    for (const r of runs) {
      r.released = true;
      try {
        await this.#store.queues.retry(r.lease, { delayMs: 0, error: "released: the dispatcher shut down", now });
      } catch (err) {
        this.#storeFailed(err, r.lease, "release");
      }
    }
  }

  /**
   * Stops leasing, lets running deliveries finish within `graceMs`, then aborts the rest and releases their
   * leases so another process (or the next start) picks them up at once. Idempotent.
   */
  async close(graceMs: number): Promise<void> {
    if (!this.#stop.signal.aborted) {
      this.#stop.abort();
      this.wake();
      if (this.#timer) this.#o.clock.clearTimeout(this.#timer.handle);
      if (this.#poll !== undefined) this.#o.clock.clearTimeout(this.#poll);
      if (this.#upkeep !== undefined) this.#o.clock.clearTimeout(this.#upkeep);
    }
    await this.#loop;
    await this.#watcher;
    const deadline = Date.now() + graceMs;
    // Appends in flight lease deliveries for this dispatcher: wait for them to arrive (a store call, not a handler).
    if (this.#reserved > 0) await untilOrDeadline((done) => this.#reservedWaiters.push(done), deadline);
    if (this.#running.size > 0) {
      await untilOrDeadline((done) => {
        this.#idleWaiters.push(done);
        this.#checkIdle();
      }, deadline);
    }
    const left = [...this.#running.values()];
    const queued = [...this.#keys.values()].flat();
    for (const r of left) r.abort(new SluiceError(ErrorCode.Closed, "the broker is shutting down"));
    await this.#release([...left, ...queued.map((lease) => new Running(lease, undefined))]);
    while (this.#ackFlushing) await new Promise((r) => setImmediate(r));
  }
}
