/**
 * The broker: buses, rules and targets over one StorageBackend, with the publish path, the dispatcher, the
 * dead-letter API, archive retention and replay. Created by `createBroker`; everything it starts stops in `close()`.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { encodeEvent } from "../event/codec.ts";
import type { NormalizedEvent } from "../event/normalize.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import { compilePattern } from "../pattern/compile.ts";
import type { DeadLetter, QueueStats, StorageBackend } from "../store/contract.ts";
import { systemClock, type Clock } from "../clock.ts";
import { noopLogger, type Logger } from "../logger.ts";
import { checkName, underPath } from "../util/validate.ts";
import { defaultBusName, Definitions, queueName, type CompiledTarget } from "./definitions.ts";
import { DeadNow, Dispatcher, type Emit, type RunTarget } from "./dispatcher.ts";
import { describeError } from "./handler-errors.ts";
import { dedupeKey, hopsOf, Publisher } from "./publisher.ts";
import { Replays } from "./replay.ts";
import { defaultRetryPolicy, resolveRetryPolicy } from "./retry.ts";
import { targetRegistry } from "./targets/registry.ts";
import type { TargetHandler, TargetHost, TargetSender } from "./targets/target.ts";
import type {
  Bus,
  BusInput,
  DeadLetterInfo,
  DeliveryEvents,
  FunctionHandler,
  PublishResult,
  Replay,
  ReplayInput,
  RetryPolicy,
  Rule,
  RuleInput,
  TargetRef,
} from "./types.ts";

export interface BrokerLimits {
  /** Deliveries running at once in this process. Default 512. */
  concurrency?: number;
  /** Most deliveries taken by one lease call. Default 512. */
  leaseBatch?: number;
  /** Visibility timeout of a lease (extended while the handler runs). Default 30 s. */
  leaseMs?: number;
  /** Fallback poll for delays set by other processes and expired leases. Default 1 s. */
  pollIntervalMs?: number;
  /** Publish fails with E_BACKPRESSURE above this many pending deliveries (all queues). Default 1 000 000. */
  maxPendingDeliveries?: number;
  /** Publish fails with E_BACKPRESSURE when this many entries wait for an append. Default 10 000. */
  maxQueuedEntries?: number;
  /** Most entries in one group-committed append. Default 1 000. */
  maxAppendEntries?: number;
  /** How long close() waits for running deliveries before releasing their leases. Default 10 s. */
  closeGraceMs?: number;
  /** How often definitions changed by other processes are picked up. Default 1 s. */
  definitionsPollMs?: number;
  /**
   * How often the pending-delivery estimate is corrected from the store once it is past half the limit
   * (capped at 250 ms); below half, six times less often. Default 5 s.
   */
  statsIntervalMs?: number;
}

export interface BrokerOptions {
  store: StorageBackend;
  clock?: Clock;
  logger?: Logger;
  /** Uniform random in [0, 1) for backoff jitter. */
  random?: () => number;
  /** Publisher dedupe window (same bus + source + id). Default 5 min. */
  dedupeWindowMs?: number;
  /** Largest encoded event accepted. Default 256 KiB. */
  maxEventBytes?: number;
  /** Hops an event chain may take (bus-to-bus routing, ctx.emit). Default 16. */
  hopLimit?: number;
  retention?: {
    /** How often archives are trimmed. Default 1 min. */
    trimIntervalMs?: number;
  };
  /** Defaults for targets without their own policy (see docs/delivery.md). */
  retryPolicy?: RetryPolicy;
  /** Run the dispatcher in this process. Default true; false makes a publish-only broker. */
  dispatch?: boolean;
  /**
   * Start delivering as soon as the broker is created. Default true; with false, deliveries wait for
   * `broker.startDispatcher()` (e.g. until the runtime has registered its function handler).
   */
  startDispatcher?: boolean;
  /** The function handler from the start (same as calling `setFunctionHandler` before any delivery). */
  functionHandler?: FunctionHandler;
  /** Target kinds besides the built-in function, bus and webhook (see src/bus/targets/target.ts). */
  targets?: readonly TargetHandler[];
  limits?: BrokerLimits;
}

export type DeliveryListener<K extends keyof DeliveryEvents> = (event: DeliveryEvents[K]) => void;

/** Buses, rules, publish, delivery, dead letters and replay. See docs/delivery.md. */
export interface Broker {
  /**
   * Publishes one event or a batch of up to 100; resolves when the accepted ones are durable.
   * @example
   * const res = await broker.publish("default", { source: "/shop", type: "order.created", data: { id: 1 } });
   * if (res.failedEntryCount > 0) console.error(res.entries);
   */
  publish(bus: string, eventOrEvents: unknown): Promise<PublishResult>;
  /** Creates or updates a bus. */
  putBus(input: BusInput): Promise<Bus>;
  getBus(name: string): Bus;
  listBuses(): Bus[];
  /** Deletes a bus without rules (not `default`). */
  deleteBus(name: string): Promise<void>;
  /**
   * Creates or replaces a rule; takes effect for events published after it resolves.
   * @example
   * await broker.putRule({ name: "bill", pattern: { type: ["order.created"] }, targets: [{ id: "f", function: "billing" }] });
   */
  putRule(input: RuleInput): Promise<Rule>;
  getRule(name: string, options?: { bus?: string }): Rule;
  listRules(options?: { bus?: string }): Rule[];
  enableRule(name: string, options?: { bus?: string }): Promise<Rule>;
  disableRule(name: string, options?: { bus?: string }): Promise<Rule>;
  deleteRule(name: string, options?: { bus?: string }): Promise<void>;
  /**
   * The runtime's function handler (or a test's in-process one). A function delivery that runs while none is set
   * fails with a retryable E_FUNCTION_NOT_FOUND and is retried.
   */
  setFunctionHandler(handler: FunctionHandler | undefined): void;
  /** Starts the dispatcher of a broker created with `startDispatcher: false`. Idempotent. */
  startDispatcher(): void;
  /** Dead letters of one target, oldest first. */
  listDeadLetters(ref: TargetRef, options?: { limit?: number; afterId?: string }): Promise<DeadLetterInfo[]>;
  getDeadLetter(deliveryId: string): Promise<DeadLetterInfo | undefined>;
  /** Sends dead letters back to their target: all, those matching an event pattern, or the given ids. Returns how many. */
  redrive(ref: TargetRef, options?: { ids?: string[]; filter?: unknown }): Promise<number>;
  purgeDeadLetters(ref: TargetRef, options?: { ids?: string[] }): Promise<number>;
  /** Queue depths of one target, or of every target. */
  queueStats(ref?: TargetRef): Promise<QueueStats[]>;
  startReplay(input: ReplayInput): Promise<Replay>;
  getReplay(name: string): Promise<Replay>;
  listReplays(): Promise<Replay[]>;
  cancelReplay(name: string): Promise<Replay>;
  /** Resolves when a replay this process runs has ended. */
  waitForReplay(name: string): Promise<Replay>;
  /** Deletes archived events past each bus's retention now (also runs on a timer). Returns how many. */
  trimArchives(): Promise<number>;
  /** Delivery lifecycle notifications; returns an unsubscribe function. */
  on<K extends keyof DeliveryEvents>(name: K, listener: DeliveryListener<K>): () => void;
  /** Stops publishing and leasing, lets running deliveries finish (grace period), releases the rest. Idempotent. */
  close(): Promise<void>;
}

function positiveInt(value: unknown, fallback: number, path: string, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new SluiceError(ErrorCode.ConfigInvalid, `${path} must be an integer >= ${min}`, { path });
  }
  return value;
}

/**
 * Creates a broker over a storage backend and starts its dispatcher.
 * @example
 * const broker = await createBroker({ store: await createSqliteStore({ path: "data/sluice.db" }) });
 */
export async function createBroker(options: BrokerOptions): Promise<Broker> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? noopLogger;
  const random = options.random ?? Math.random;
  const store = options.store;
  const l = options.limits ?? {};
  const hopLimit = positiveInt(options.hopLimit, 16, "$.hopLimit");
  const closeGraceMs = positiveInt(l.closeGraceMs, 10_000, "$.limits.closeGraceMs", 0);
  const definitionsPollMs = positiveInt(l.definitionsPollMs, 1000, "$.limits.definitionsPollMs");
  // Leases and the fallback poll serve the dispatcher and the replays alike.
  const leaseMs = positiveInt(l.leaseMs, 30_000, "$.limits.leaseMs", 100);
  const pollIntervalMs = positiveInt(l.pollIntervalMs, 1000, "$.limits.pollIntervalMs");
  const trimIntervalMs = positiveInt(options.retention?.trimIntervalMs, 60_000, "$.retention.trimIntervalMs");
  const policyBase = resolveRetryPolicy(options.retryPolicy, "$.retryPolicy", defaultRetryPolicy);
  const now = () => clock.now();

  const kinds = targetRegistry(options.targets);
  const defs = new Definitions(store.state, now, policyBase, kinds);
  await defs.load();
  const dedupeWindowMs = positiveInt(options.dedupeWindowMs, 5 * 60 * 1000, "$.dedupeWindowMs", 0);
  // Queues are declared to the store up front (a log-native store creates a consumer per queue); only new ones.
  const declared = new Set<string>();
  const declareQueues = async (): Promise<void> => {
    const fresh = defs.queueNames().filter((q) => !declared.has(q));
    if (fresh.length === 0 && declared.size > 0) return;
    await store.declare({ dedupeWindowMs, queues: fresh.map((queue) => ({ queue, leaseMs })) });
    for (const q of fresh) declared.add(q);
  };
  await declareQueues();

  const publisher = new Publisher(store, defs, {
    now,
    dedupeWindowMs,
    maxEventBytes: positiveInt(options.maxEventBytes, 256 * 1024, "$.maxEventBytes"),
    hopLimit,
    maxAppendEntries: positiveInt(l.maxAppendEntries, 1000, "$.limits.maxAppendEntries"),
    maxQueuedEntries: positiveInt(l.maxQueuedEntries, 10_000, "$.limits.maxQueuedEntries"),
    maxPendingDeliveries: positiveInt(l.maxPendingDeliveries, 1_000_000, "$.limits.maxPendingDeliveries"),
    statsIntervalMs: positiveInt(l.statsIntervalMs, 5000, "$.limits.statsIntervalMs"),
    // A lease issued now joins the append's commit where the store allows it; elsewhere it would only spend a
    // round trip finding nothing.
    ...(store.capabilities.leaseJoinsAppend ? { onAppendIssued: () => dispatcher?.wake() } : {}),
    // The dispatcher is made below (it needs the publisher's settled()); until then it has no room.
    leaseSink: {
      get leaseMs() {
        return dispatcher?.leaseMs ?? 0;
      },
      reserve: (wanted) => dispatcher?.reserve(wanted) ?? 0,
      adopt: (leases, reserved) => dispatcher?.adopt(leases, reserved),
    },
  });

  const listeners = new Map<keyof DeliveryEvents, Set<(e: never) => void>>();
  const emit: Emit = (name, payload) => {
    const set = listeners.get(name);
    if (set === undefined) return;
    for (const fn of set) {
      try {
        (fn as (e: typeof payload) => void)(payload);
      } catch (err) {
        logger.error({ err: describeError(err), listener: name }, "delivery listener threw");
      }
    }
  };

  let functionHandler: FunctionHandler | undefined = options.functionHandler;

  const host: TargetHost = {
    functionHandler: () => functionHandler,
    logger,
    async forward(dest, event) {
      const hops = hopsOf(event) + 1;
      if (hops > hopLimit) throw new DeadNow("recursive-loop", `${ErrorCode.RecursiveLoop}: the event passed the hop limit of ${hopLimit}`);
      if (defs.bus(dest) === undefined) await defs.refreshIfChanged();
      if (defs.bus(dest) === undefined) {
        throw new SluiceError(ErrorCode.BusNotFound, `target bus "${dest}" does not exist`, { retryable: true });
      }
      const next: CloudEvent = { ...event, [SluiceExtension.Hops]: hops };
      const replay = typeof next[SluiceExtension.Replay] === "string" ? (next[SluiceExtension.Replay] as string) : undefined;
      await publisher.append([publisher.route(dest, next, encodeEvent(next), dedupeKey(dest, next, replay))]);
      dispatcher?.wake();
    },
  };
  // Each kind is bound to this broker at its first delivery.
  const senders = new Map<string, TargetSender>();
  const senderOf = (handler: TargetHandler): TargetSender => {
    let sender = senders.get(handler.kind);
    if (sender === undefined) senders.set(handler.kind, (sender = handler.open(host)));
    return sender;
  };

  // Not an async function: a function target's promise is the handler's own (no wrapper promise per delivery).
  const runTarget: RunTarget = (target, event, lease, context) => {
    let delivered = event;
    if (target.transform !== undefined) {
      let data: unknown;
      try {
        data = target.transform.apply(event);
      } catch (err) {
        return Promise.reject(new DeadNow("transform-failed", describeError(err)));
      }
      const { data_base64: _b, ...rest } = event;
      delivered = { ...rest, datacontenttype: target.transform.mode === "json" ? "application/json" : "text/plain", data };
    }
    let sender: TargetSender;
    try {
      sender = senderOf(target.handler);
    } catch (err) {
      return Promise.reject(err);
    }
    return sender.deliver(target.spec, delivered, context, delivered === event ? lease.payload : undefined);
  };

  const dispatcher =
    options.dispatch === false
      ? undefined
      : new Dispatcher(store, defs, runTarget, emit, (n) => publisher.settled(n), {
          clock,
          random,
          logger,
          concurrency: positiveInt(l.concurrency, 512, "$.limits.concurrency"),
          leaseBatch: positiveInt(l.leaseBatch, 512, "$.limits.leaseBatch"),
          leaseMs,
          pollIntervalMs,
        });
  const wake = () => dispatcher?.wake();
  const replays = new Replays(store, defs, publisher, logger, wake, { clock, leaseMs, pollIntervalMs });
  replays.resumeUnfinished();

  let closed = false;
  const timers = new Set<unknown>();
  const every = (ms: number, fn: () => Promise<unknown>) => {
    const tick = () => {
      const h = clock.setTimeout(() => {
        timers.delete(h);
        void fn()
          .catch((err) => logger.error({ err: describeError(err) }, "background task failed"))
          .finally(() => {
            if (!closed) tick();
          });
      }, ms);
      timers.add(h);
    };
    tick();
  };

  const busName = (o?: { bus?: string }) => checkName("bus", o?.bus ?? defaultBusName, "$.bus");
  const refQueue = (ref: TargetRef) => {
    if (typeof ref !== "object" || ref === null) throw new SluiceError(ErrorCode.BadRequest, "a target reference is { bus?, rule, target }", { path: "$" });
    return queueName(busName(ref), checkName("rule", ref.rule, "$.rule"), checkName("target", ref.target, "$.target"));
  };
  const existingTarget = (ref: TargetRef): CompiledTarget => {
    const bus = busName(ref);
    const rule = defs.rule(bus, checkName("rule", ref.rule, "$.rule"));
    if (defs.bus(bus) === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${bus}" does not exist`, { path: "$.bus" });
    if (rule === undefined) throw new SluiceError(ErrorCode.RuleNotFound, `rule "${ref.rule}" does not exist on bus "${bus}"`, { path: "$.rule" });
    const target = rule.targets.find((t) => t.id === ref.target);
    if (target === undefined) {
      throw new SluiceError(ErrorCode.BadRequest, `rule "${ref.rule}" has no target "${ref.target}"`, { path: "$.target" });
    }
    return target;
  };
  const info = (d: DeadLetter): DeadLetterInfo => {
    const { payload, ...rest } = d;
    return { ...rest, event: JSON.parse(payload) as CloudEvent };
  };
  const trimArchives = async () => {
    let total = 0;
    for (const bus of defs.buses()) total += await store.events.trim(bus.name, clock.now() - bus.retentionMs);
    return total;
  };

  if (dispatcher && options.startDispatcher !== false) dispatcher.start();
  every(definitionsPollMs, async () => {
    if (await defs.refreshIfChanged()) await declareQueues();
  });
  every(trimIntervalMs, trimArchives);

  const broker: Broker = {
    async publish(bus, eventOrEvents) {
      if (closed) throw new SluiceError(ErrorCode.Closed, "the broker is closed");
      const result = await publisher.publish(bus, eventOrEvents);
      wake();
      return result;
    },
    putBus: (input) => defs.putBus(input),
    getBus(name) {
      const entry = defs.bus(name);
      if (entry === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${name}" does not exist`, { path: "$.name" });
      return entry.bus;
    },
    listBuses: () => defs.buses(),
    deleteBus: (name) => defs.deleteBus(name),
    putRule: async (input) => {
      const rule = await defs.putRule(input);
      await declareQueues();
      return rule;
    },
    getRule: (name, o) => defs.getRule(busName(o), name),
    listRules(o) {
      const buses = o?.bus === undefined ? defs.buses().map((b) => b.name) : [busName(o)];
      return buses.flatMap((b) => {
        const entry = defs.bus(b);
        if (entry === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${b}" does not exist`, { path: "$.bus" });
        return [...entry.rules.values()].map((r) => r.rule);
      });
    },
    enableRule: (name, o) => defs.setEnabled(busName(o), name, true),
    disableRule: (name, o) => defs.setEnabled(busName(o), name, false),
    deleteRule: (name, o) => defs.deleteRule(busName(o), name),
    setFunctionHandler(handler) {
      functionHandler = handler;
      wake();
    },
    startDispatcher() {
      if (!closed) dispatcher?.start();
    },
    async listDeadLetters(ref, o) {
      const limit = positiveInt(o?.limit, 100, "$.limit");
      const rows = await store.admin.listDead(refQueue(ref), { limit: Math.min(limit, 1000), ...(o?.afterId === undefined ? {} : { afterId: o.afterId }) });
      return rows.map(info);
    },
    async getDeadLetter(deliveryId) {
      const d = await store.admin.getDead(deliveryId);
      return d === undefined ? undefined : info(d);
    },
    async redrive(ref, o) {
      const queue = existingTarget(ref).queue;
      let count: number;
      if (o?.filter !== undefined) {
        const compiled = underPath("$.filter", () => compilePattern(o.filter));
        const ids: string[] = [];
        let afterId: string | undefined;
        for (;;) {
          const page = await store.admin.listDead(queue, { limit: 500, ...(afterId === undefined ? {} : { afterId }) });
          if (page.length === 0) break;
          for (const d of page) if (compiled.matches(JSON.parse(d.payload) as CloudEvent)) ids.push(d.deliveryId);
          afterId = page[page.length - 1]!.deliveryId;
        }
        const wanted = o.ids === undefined ? ids : ids.filter((id) => o.ids!.includes(id));
        count = 0;
        for (let i = 0; i < wanted.length; i += 500) {
          count += await store.admin.redrive(queue, { ids: wanted.slice(i, i + 500), now: clock.now() });
        }
      } else {
        count = await store.admin.redrive(queue, { ...(o?.ids === undefined ? {} : { ids: o.ids }), now: clock.now() });
      }
      wake();
      return count;
    },
    purgeDeadLetters: (ref, o) => store.admin.purgeDead(refQueue(ref), o?.ids === undefined ? {} : { ids: o.ids }),
    queueStats: (ref) => store.admin.stats(ref === undefined ? undefined : [refQueue(ref)], { now: clock.now() }),
    startReplay: (input) => replays.start(input),
    getReplay: (name) => replays.get(name),
    listReplays: () => replays.list(),
    cancelReplay: (name) => replays.cancel(name),
    waitForReplay: (name) => replays.wait(name),
    trimArchives,
    on(name, listener) {
      let set = listeners.get(name);
      if (set === undefined) listeners.set(name, (set = new Set()));
      set.add(listener as (e: never) => void);
      return () => {
        set.delete(listener as (e: never) => void);
        if (set.size === 0) listeners.delete(name);
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const h of timers) clock.clearTimeout(h);
      timers.clear();
      await replays.close();
      // Running bus-to-bus deliveries still append through the publisher: close it after the dispatcher.
      await dispatcher?.close(closeGraceMs);
      await publisher.close();
      for (const sender of senders.values()) {
        await sender.close?.().catch((err: unknown) => logger.error({ err: describeError(err) }, "target close failed"));
      }
    },
  };
  normalizedPublish.set(broker, async (bus, normalized) => {
    if (closed) throw new SluiceError(ErrorCode.Closed, "the broker is closed");
    const result = await publisher.publishNormalized(bus, normalized);
    wake();
    return result;
  });
  return broker;
}

const normalizedPublish = new WeakMap<Broker, (bus: string, normalized: NormalizedEvent[]) => Promise<PublishResult>>();

/**
 * Publishes up to 100 events that `normalizeEvent` (or `parseHttpEvents`) already validated and encoded, so the
 * server's HTTP ingest validates and encodes each event once. Hop and size limits still apply. Internal to the
 * server: not exported from the package, so users cannot skip validation.
 */
export function publishNormalized(broker: Broker, bus: string, normalized: NormalizedEvent[]): Promise<PublishResult> {
  const publish = normalizedPublish.get(broker);
  if (publish === undefined) return Promise.reject(new SluiceError(ErrorCode.BadRequest, "publishNormalized needs a broker made by createBroker"));
  return publish(bus, normalized);
}
