/**
 * Prometheus metrics (prom-client), one registry per server so several servers can share a process (tests).
 * Counters are fed by the runtime's invocation records and the HTTP/publish paths; gauges are read from the
 * store and the runtime when `/metrics` is scraped.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { QueueStats } from "../store/contract.ts";

export interface MetricsSources {
  /** Pending deliveries per function target (ready + delayed + leased). */
  backlog(): Promise<Record<string, number>>;
  /** Dead letters per target (`bus/rule/target`). */
  deadLetters(): Promise<Record<string, number>>;
  /** Messages waiting upstream per source, where the broker reports it. */
  sourceLag?(): Record<string, number>;
  /** Instances per function and state (`starting`, `idle`, `busy`). */
  instances(): Record<string, Record<string, number>>;
  /** Depths of every queue (one per rule target). */
  queueStats(): Promise<QueueStats[]>;
  /** When the oldest dead letter of a queue was dead-lettered (epoch ms), if it has any. */
  oldestDeadAt(queue: string): Promise<number | undefined>;
  /** Bytes of WAL a source's replication slot holds back, per source that streams on this node. */
  sourceLagBytes?(): Record<string, number>;
}

/** How a delivery attempt ended. */
export type DeliveryOutcome = "delivered" | "retry" | "dead";

export interface Metrics {
  readonly registry: Registry;
  invocation(functionName: string, outcome: string, durationMs: number, gbSeconds?: number): void;
  /**
   * A delivery attempt ended. `target` is `bus/rule/target`, `kind` the target's kind (`function`, `webhook`, …);
   * `waitedMs` is the time from enqueue to the start of a first attempt.
   */
  delivery(target: string, kind: string, outcome: DeliveryOutcome, waitedMs: number | undefined): void;
  published(bus: string, count: number): void;
  httpRequest(route: string, method: string, status: number): void;
  /** Lineage records that could not be kept. */
  lineageDropped(count: number): void;
  /** Messages a source took from outside, by outcome (stored, duplicate, dead-lettered, error). */
  sourceMessages(source: string, outcome: string, n: number): void;
  /** Plugs in the gauges' sources (once the store and runtime exist). */
  setSources(sources: MetricsSources): void;
  /** The text exposition format. */
  render(): Promise<string>;
  readonly contentType: string;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "sluice_process_" });
  let sources: MetricsSources | undefined;

  const invocations = new Counter({
    name: "sluice_invocations_total",
    help: "Function invocations by outcome (success, error, timeout, out-of-memory, crashed, throttled, skipped, recursive-loop).",
    labelNames: ["function", "outcome"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "sluice_invocation_duration_seconds",
    help: "Handler run time of function invocations.",
    labelNames: ["function"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const published = new Counter({
    name: "sluice_events_published_total",
    help: "Events accepted (durably stored) per bus.",
    labelNames: ["bus"] as const,
    registers: [registry],
  });
  const http = new Counter({
    name: "sluice_http_requests_total",
    help: "HTTP requests by route, method and status code.",
    labelNames: ["route", "method", "status"] as const,
    registers: [registry],
  });
  const sourceMessages = new Counter({
    name: "sluice_source_messages_total",
    help: "Messages event sources took from outside, by outcome (stored, duplicate, dead-lettered, error).",
    labelNames: ["source", "outcome"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "sluice_source_lag",
    help: "Messages waiting upstream of a source (queue depth, consumer pending, group lag), where the broker reports it.",
    labelNames: ["source"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [source, n] of Object.entries(sources?.sourceLag?.() ?? {})) this.set({ source }, n);
    },
  });
  new Gauge({
    name: "sluice_backlog",
    help: "Deliveries waiting for or running in a function (ready, delayed and leased).",
    labelNames: ["function"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      if (!sources) return;
      for (const [fn, n] of Object.entries(await sources.backlog())) this.set({ function: fn }, n);
    },
  });
  new Gauge({
    name: "sluice_dlq_size",
    help: "Dead letters per target (bus/rule/target).",
    labelNames: ["target"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      if (!sources) return;
      for (const [target, n] of Object.entries(await sources.deadLetters())) this.set({ target }, n);
    },
  });
  new Gauge({
    name: "sluice_instances",
    help: "Function instances by state (starting, idle, busy).",
    labelNames: ["function", "state"] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!sources) return;
      for (const [fn, states] of Object.entries(sources.instances())) {
        for (const [state, n] of Object.entries(states)) this.set({ function: fn, state }, n);
      }
    },
  });

  const gbSeconds = new Counter({
    name: "sluice_function_gb_seconds_total",
    help: "Billed compute per function: configured memory in GB times run time in seconds.",
    labelNames: ["function"] as const,
    registers: [registry],
  });
  const deliveries = new Counter({
    name: "sluice_deliveries_total",
    help: "Delivery attempts by target (bus/rule/target), target kind and outcome (delivered, retry, dead).",
    labelNames: ["target", "kind", "outcome"] as const,
    registers: [registry],
  });
  const webhooks = new Counter({
    name: "sluice_webhook_deliveries_total",
    help: "Webhook target attempts by target and outcome (delivered, retry, dead).",
    labelNames: ["target", "outcome"] as const,
    registers: [registry],
  });
  const firstAttempt = new Histogram({
    name: "sluice_delivery_first_attempt_latency_seconds",
    help: "Time from an event's publish (its delivery's enqueue) to the start of the first delivery attempt, per target.",
    labelNames: ["target"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  // Read once per scrape by the gauges below: one stats call serves them all.
  let statsRead: Promise<QueueStats[]> | undefined;
  const stats = (): Promise<QueueStats[]> => {
    if (!sources) return Promise.resolve([]);
    statsRead ??= sources.queueStats().finally(() => setImmediate(() => (statsRead = undefined)));
    return statsRead;
  };
  const targetOf = (queue: string) => (queue.startsWith("rule:") ? queue.slice(5) : queue);
  new Gauge({
    name: "sluice_queue_depth",
    help: "Deliveries per target (bus/rule/target) by state: ready (leasable now), delayed (backoff, delay, ordering), leased (running).",
    labelNames: ["target", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await stats()) {
        const target = targetOf(s.queue);
        this.set({ target, state: "ready" }, s.ready);
        this.set({ target, state: "delayed" }, s.delayed);
        this.set({ target, state: "leased" }, s.leased);
      }
    },
  });
  new Gauge({
    name: "sluice_dead_letters",
    help: "Dead letters per target (bus/rule/target).",
    labelNames: ["target"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await stats()) this.set({ target: targetOf(s.queue) }, s.dead);
    },
  });
  new Gauge({
    name: "sluice_dead_letter_oldest_age_seconds",
    help: "Age of the oldest dead letter per target (bus/rule/target); absent for a target without dead letters.",
    labelNames: ["target"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      if (!sources) return;
      const now = Date.now();
      for (const s of await stats()) {
        if (s.dead === 0) continue;
        const at = await sources.oldestDeadAt(s.queue);
        if (at !== undefined) this.set({ target: targetOf(s.queue) }, Math.max(0, (now - at) / 1000));
      }
    },
  });

  const lineageDropped = new Counter({
    name: "sluice_lineage_records_dropped_total",
    help: "Lineage records not kept (the store did not keep up, or a write failed).",
    registers: [registry],
  });

  new Gauge({
    name: "sluice_source_lag_bytes",
    help: "WAL a change-data-capture source's replication slot retains (current WAL position minus confirmed position).",
    labelNames: ["source"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [source, n] of Object.entries(sources?.sourceLagBytes?.() ?? {})) this.set({ source }, n);
    },
  });

  const httpChildren = new Map<string, ReturnType<typeof http.labels>>();
  const deliveryChildren = new Map<string, ReturnType<typeof deliveries.labels>>();
  const publishedChildren = new Map<string, ReturnType<typeof published.labels>>();

  return {
    registry,
    contentType: registry.contentType,
    invocation(functionName, outcome, durationMs, gb) {
      invocations.inc({ function: functionName, outcome });
      if (gb !== undefined && gb > 0) gbSeconds.inc({ function: functionName }, gb);
      if (outcome !== "throttled" && outcome !== "skipped") duration.observe({ function: functionName }, durationMs / 1000);
    },
    published(bus, count) {
      if (count <= 0) return;
      let child = publishedChildren.get(bus);
      if (child === undefined) {
        child = published.labels(bus);
        publishedChildren.set(bus, child);
      }
      child.inc(count);
    },
    sourceMessages(source, outcome, n) {
      if (n > 0) sourceMessages.inc({ source, outcome }, n);
    },
    httpRequest(route, method, status) {
      // One child per label set, looked up by a string key: prom-client hashes a label object on every inc().
      const key = `${status} ${method} ${route}`;
      let child = httpChildren.get(key);
      if (child === undefined) {
        child = http.labels(route, method, String(status));
        httpChildren.set(key, child);
      }
      child.inc();
    },
    delivery(target, kind, outcome, waitedMs) {
      const key = `${outcome} ${kind} ${target}`;
      let child = deliveryChildren.get(key);
      if (child === undefined) {
        child = deliveries.labels(target, kind, outcome);
        deliveryChildren.set(key, child);
      }
      child.inc();
      if (kind === "webhook") webhooks.inc({ target, outcome });
      if (waitedMs !== undefined) firstAttempt.observe({ target }, Math.max(0, waitedMs) / 1000);
    },
    lineageDropped(count) {
      lineageDropped.inc(count);
    },
    setSources(s) {
      sources = s;
    },
    render: () => registry.metrics(),
  };
}
