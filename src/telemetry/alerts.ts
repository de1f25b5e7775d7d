/**
 * Alerts declared in the app: each condition is sampled on a timer; one that holds for its `for` duration fires
 * `sluice.alert.fired` on the default bus, and `sluice.alert.resolved` once it stops holding, so rules route
 * alerts to a webhook or a function like any event. State is per process (each node alerts on what it sees of
 * the shared store; dead letters and backlog are shared, error rates and budgets are this node's).
 */
import { newEventId } from "../event/ids.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { QueueStats } from "../store/contract.ts";

export interface AlertSpec {
  name: string;
  condition: "dlqSize" | "errorRate" | "backlog" | "budgetUse";
  above: number;
  forMs: number;
  windowMs: number;
  target?: string;
  function?: string;
}

export interface AlertReaders {
  queueStats(): Promise<QueueStats[]>;
  /** Invocation and failure counters per function (totals since start). */
  functionCounters(): Record<string, { invocations: number; failures: number }>;
  /** The queue of a function's implicit rule, for backlog by function. */
  functionQueue(name: string): string;
  /** Budget use per function with a budget: the larger of its invocations and GB-seconds fractions. */
  budgetUse(): Record<string, number>;
}

export interface AlertsOptions {
  alerts: readonly AlertSpec[];
  readers: AlertReaders;
  publish(event: CloudEvent): Promise<void>;
  now(): number;
  logger: Logger;
  /** Sampling interval. Default: the shortest `for` / 4, between 1 s and 15 s. */
  intervalMs?: number;
}

interface AlertState {
  since: number | undefined;
  firing: boolean;
  samples: { at: number; invocations: number; failures: number }[];
}

const targetOf = (queue: string) => (queue.startsWith("rule:") ? queue.slice(5) : queue);

export class Alerts {
  readonly #o: AlertsOptions;
  readonly #state = new Map<string, AlertState>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(options: AlertsOptions) {
    this.#o = options;
    for (const a of options.alerts) this.#state.set(a.name, { since: undefined, firing: false, samples: [] });
  }

  get intervalMs(): number {
    if (this.#o.intervalMs !== undefined) return this.#o.intervalMs;
    const shortest = Math.min(...this.#o.alerts.map((a) => a.forMs));
    return Math.min(15_000, Math.max(1000, Math.floor(shortest / 4)));
  }

  start(): void {
    if (this.#o.alerts.length === 0 || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#running = this.evaluate()
        .catch((err: unknown) => this.#o.logger.error({ err: String(err) }, "alert evaluation failed"))
        .finally(() => {
          this.#running = undefined;
          this.start();
        });
    }, this.intervalMs);
    this.#timer.unref?.();
  }

  /** Samples every alert once (the timer calls it; tests may too). */
  async evaluate(): Promise<void> {
    const now = this.#o.now();
    let stats: QueueStats[] | undefined;
    const readStats = async () => (stats ??= await this.#o.readers.queueStats());
    const counters = this.#o.readers.functionCounters();
    for (const a of this.#o.alerts) {
      const st = this.#state.get(a.name)!;
      let value: number;
      if (a.condition === "dlqSize") {
        value = (await readStats()).filter((s) => a.target === undefined || targetOf(s.queue) === a.target).reduce((n, s) => n + s.dead, 0);
      } else if (a.condition === "backlog") {
        const queue = a.function === undefined ? undefined : this.#o.readers.functionQueue(a.function);
        value = (await readStats())
          .filter((s) => (a.target === undefined || targetOf(s.queue) === a.target) && (queue === undefined || s.queue === queue))
          .reduce((n, s) => n + s.ready + s.delayed + s.leased, 0);
      } else if (a.condition === "errorRate") {
        let invocations = 0;
        let failures = 0;
        for (const [fn, c] of Object.entries(counters)) {
          if (a.function !== undefined && fn !== a.function) continue;
          invocations += c.invocations;
          failures += c.failures;
        }
        st.samples.push({ at: now, invocations, failures });
        while (st.samples.length > 1 && st.samples[0]!.at < now - a.windowMs) st.samples.shift();
        const first = st.samples[0]!;
        const dInv = invocations - first.invocations;
        value = dInv > 0 ? (failures - first.failures) / dInv : 0;
      } else {
        const use = this.#o.readers.budgetUse();
        value = Math.max(0, ...Object.entries(use).filter(([fn]) => a.function === undefined || fn === a.function).map(([, v]) => v));
      }
      await this.#step(a, st, value, now);
    }
  }

  async #step(a: AlertSpec, st: AlertState, value: number, now: number): Promise<void> {
    const holds = value > a.above;
    if (holds) {
      st.since ??= now;
      if (!st.firing && now - st.since >= a.forMs) {
        st.firing = true;
        await this.#send("sluice.alert.fired", a, value, st.since, now);
      }
    } else {
      const was = st.since;
      st.since = undefined;
      if (st.firing) {
        st.firing = false;
        await this.#send("sluice.alert.resolved", a, value, was ?? now, now);
      }
    }
  }

  async #send(type: string, a: AlertSpec, value: number, since: number, now: number): Promise<void> {
    const event: CloudEvent = {
      specversion: "1.0",
      id: newEventId(now),
      source: "sluice/alerts",
      type,
      subject: a.name,
      time: new Date(now).toISOString(),
      datacontenttype: "application/json",
      data: {
        alert: a.name,
        condition: a.condition,
        above: a.above,
        value,
        since: new Date(since).toISOString(),
        forMs: a.forMs,
        ...(a.target === undefined ? {} : { target: a.target }),
        ...(a.function === undefined ? {} : { function: a.function }),
      },
    };
    this.#o.logger[type === "sluice.alert.fired" ? "warn" : "info"]({ alert: a.name, condition: a.condition, value, above: a.above }, type);
    try {
      await this.#o.publish(event);
    } catch (err) {
      this.#o.logger.error({ err: String(err), alert: a.name }, "alert event not published");
    }
  }

  /** Stops sampling; waits for a running evaluation. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#running;
  }
}
