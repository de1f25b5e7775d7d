/**
 * The scheduler: fires each schedule's ticks, exactly once per tick across every node that shares one store.
 *
 * A node claims a tick with `state.putIfAbsent("schedules", "schedule:<name>:<tick ISO time>")`; only the node
 * whose write succeeds fires it. The last fired tick is persisted (`last:<name>`), so after downtime the missed
 * ticks are either skipped (default) or caught up once (`catchUp: true`: one firing for the latest missed tick,
 * carrying how many were missed). Timers run on an injectable clock, so tests drive time by hand.
 */
import { randomUUID } from "node:crypto";
import { systemClock, type Clock } from "../clock.ts";
import { noopLogger, type Logger } from "../logger.ts";
import type { StateStore } from "../store/contract.ts";
import { nextTick, ticksBetween, type ScheduleExpression } from "./schedule-expression.ts";

/** The part of the logger the scheduler logs through. */
export type SchedulerLogger = Pick<Logger, "info" | "warn" | "error" | "debug">;

/** What a schedule does when it fires: publish an event to a bus, or invoke a function. */
export type ScheduleAction =
  | { kind: "emit"; bus: string; type: string; source: string; subject?: string; data?: unknown }
  | { kind: "invoke"; function: string; data?: unknown };

export interface ScheduleSpec {
  name: string;
  expression: ScheduleExpression;
  /** After downtime, fire the latest missed tick once (true) or skip missed ticks (false, the default). */
  catchUp: boolean;
  action: ScheduleAction;
}

export interface Tick {
  schedule: string;
  /** The tick's own time (epoch ms), the same on every node. */
  scheduledAt: number;
  /** When this node fired it. */
  firedAt: number;
  /** True when this firing catches up ticks missed during downtime. */
  catchUp: boolean;
  /** How many ticks this firing stands for (more than 1 only for a catch-up). */
  ticks: number;
}

export interface ScheduleStatus {
  name: string;
  expression: string;
  catchUp: boolean;
  action: ScheduleAction;
  nextAt?: number;
  lastFiredAt?: number;
  fired: number;
  failures: number;
}

export interface SchedulerOptions {
  schedules: readonly ScheduleSpec[];
  state: StateStore;
  /** Performs the action. A throw releases the claim and the tick is retried (see `retryDelaysMs`). */
  fire: (spec: ScheduleSpec, tick: Tick) => Promise<void>;
  clock?: Clock;
  logger?: SchedulerLogger;
  /** Written into the claim, for operators. */
  nodeId?: string;
  /** How long a tick's claim is kept. Default 7 days or two periods, whichever is longer. */
  claimTtlMs?: number;
  /** Delays between attempts when firing fails. Default [1000, 5000, 30000]. */
  retryDelaysMs?: readonly number[];
  /** Longest single timer; the scheduler re-plans after it (wall-clock changes, long waits). Default 60 s. */
  maxTimerMs?: number;
}

export interface Scheduler {
  /** Handles missed ticks (skip or catch up once) and arms every schedule's timer. */
  start(): Promise<void>;
  status(): ScheduleStatus[];
  /** Stops the timers and waits for firings in flight. Idempotent. */
  close(): Promise<void>;
}

export const SCHEDULE_NAMESPACE = "schedules";
const DAY_MS = 86_400_000;

export function claimKey(name: string, scheduledAt: number): string {
  return `schedule:${name}:${new Date(scheduledAt).toISOString()}`;
}
const lastKey = (name: string) => `last:${name}`;

/**
 * The event a tick produces. Its id is derived from the schedule and tick time, so a re-fired tick is a
 * duplicate the bus drops (publisher dedupe), a second guard next to the claim.
 */
export function tickEvent(spec: ScheduleSpec, tick: Tick): Record<string, unknown> {
  const scheduledTime = new Date(tick.scheduledAt).toISOString();
  const meta = { schedule: spec.name, scheduledTime, catchUp: tick.catchUp, ticks: tick.ticks };
  const base = {
    specversion: "1.0",
    id: `schedule-${spec.name}-${scheduledTime}`,
    time: scheduledTime,
  };
  if (spec.action.kind === "emit") {
    return {
      ...base,
      type: spec.action.type,
      source: spec.action.source,
      subject: spec.action.subject ?? spec.name,
      data: spec.action.data === undefined ? meta : spec.action.data,
    };
  }
  return {
    ...base,
    type: "sluice.schedule.fired",
    source: "sluice/schedules",
    subject: spec.name,
    data: spec.action.data === undefined ? meta : { ...meta, input: spec.action.data },
  };
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? noopLogger;
  const nodeId = options.nodeId ?? randomUUID();
  const retryDelays = options.retryDelaysMs ?? [1000, 5000, 30000];
  const maxTimerMs = options.maxTimerMs ?? 60_000;
  const { state } = options;

  interface Entry {
    spec: ScheduleSpec;
    nextAt: number | undefined;
    timer: unknown;
    lastFiredAt: number | undefined;
    fired: number;
    failures: number;
  }
  const entries: Entry[] = options.schedules.map((spec) => ({
    spec,
    nextAt: undefined,
    timer: undefined,
    lastFiredAt: undefined,
    fired: 0,
    failures: 0,
  }));
  const inFlight = new Set<Promise<void>>();
  const retryTimers = new Set<unknown>();
  let closed = false;
  let started = false;

  function ttlFor(spec: ScheduleSpec): number | undefined {
    if (options.claimTtlMs !== undefined) return options.claimTtlMs;
    if (spec.expression.kind === "at") return undefined; // one-time: keep the claim for good
    const period = spec.expression.kind === "rate" ? spec.expression.periodMs : DAY_MS;
    return Math.max(7 * DAY_MS, 2 * period);
  }

  function track(p: Promise<void>): void {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }

  /** Claims the tick and fires it; on failure releases the claim and retries. True when this node fired it. */
  async function fireTick(entry: Entry, scheduledAt: number, catchUp: boolean, ticks: number, attempt = 0): Promise<void> {
    const { spec } = entry;
    const key = claimKey(spec.name, scheduledAt);
    const now = clock.now();
    const ttlMs = ttlFor(spec);
    let claimed: boolean;
    try {
      claimed = await state.putIfAbsent(SCHEDULE_NAMESPACE, key, nodeId, ttlMs === undefined ? { now } : { now, ttlMs });
    } catch (err) {
      log.error({ schedule: spec.name, scheduledAt, err }, "schedule claim failed");
      scheduleRetry(entry, scheduledAt, catchUp, ticks, attempt);
      entry.failures++;
      return;
    }
    if (!claimed) {
      log.debug({ schedule: spec.name, scheduledAt }, "schedule tick fired by another node");
      return;
    }
    const tick: Tick = { schedule: spec.name, scheduledAt, firedAt: now, catchUp, ticks };
    try {
      await options.fire(spec, tick);
    } catch (err) {
      log.error({ schedule: spec.name, scheduledAt, attempt: attempt + 1, err }, "schedule action failed");
      await state.delete(SCHEDULE_NAMESPACE, key).catch(() => undefined);
      scheduleRetry(entry, scheduledAt, catchUp, ticks, attempt);
      entry.failures++;
      return;
    }
    entry.fired++;
    entry.lastFiredAt = scheduledAt;
    log.info(
      { schedule: spec.name, scheduledTime: new Date(scheduledAt).toISOString(), catchUp, ticks },
      "schedule fired",
    );
    try {
      const previous = await state.get(SCHEDULE_NAMESPACE, lastKey(spec.name), { now });
      if (previous === undefined || Number(previous) < scheduledAt) {
        await state.put(SCHEDULE_NAMESPACE, lastKey(spec.name), String(scheduledAt), { now });
      }
    } catch (err) {
      log.warn({ schedule: spec.name, err }, "schedule could not record its last tick");
    }
  }

  function scheduleRetry(entry: Entry, scheduledAt: number, catchUp: boolean, ticks: number, attempt: number): void {
    const delay = retryDelays[attempt];
    if (closed || delay === undefined) {
      if (delay === undefined) log.error({ schedule: entry.spec.name, scheduledAt }, "schedule tick given up");
      return;
    }
    const handle = clock.setTimeout(() => {
      retryTimers.delete(handle);
      if (!closed) track(fireTick(entry, scheduledAt, catchUp, ticks, attempt + 1));
    }, delay);
    retryTimers.add(handle);
  }

  function arm(entry: Entry): void {
    if (closed) return;
    if (entry.timer !== undefined) clock.clearTimeout(entry.timer);
    entry.timer = undefined;
    if (entry.nextAt === undefined) return;
    const delay = Math.max(0, Math.min(entry.nextAt - clock.now(), maxTimerMs));
    entry.timer = clock.setTimeout(() => onTimer(entry), delay);
  }

  function onTimer(entry: Entry): void {
    entry.timer = undefined;
    if (closed || entry.nextAt === undefined) return;
    const now = clock.now();
    if (now < entry.nextAt) {
      arm(entry); // woke early (timer cap): re-plan
      return;
    }
    const due = entry.nextAt;
    const skipped = ticksBetween(entry.spec.expression, due, now).count;
    if (skipped > 0) log.warn({ schedule: entry.spec.name, skipped }, "schedule ticks skipped after a stall");
    entry.nextAt = nextTick(entry.spec.expression, Math.max(due, now));
    arm(entry);
    track(fireTick(entry, due, false, 1));
  }

  async function handleMissed(entry: Entry, now: number): Promise<void> {
    const { spec } = entry;
    const expr = spec.expression;
    let missed: { count: number; latest?: number };
    if (expr.kind === "at") {
      const done = expr.at <= now ? await state.get(SCHEDULE_NAMESPACE, claimKey(spec.name, expr.at), { now }) : "future";
      missed = done === undefined ? { count: 1, latest: expr.at } : { count: 0 };
    } else {
      const last = await state.get(SCHEDULE_NAMESPACE, lastKey(spec.name), { now });
      if (last === undefined) return; // first start: nothing was missed
      entry.lastFiredAt = Number(last);
      missed = ticksBetween(expr, Number(last), now);
    }
    if (missed.count === 0 || missed.latest === undefined) return;
    if (spec.catchUp) {
      log.info({ schedule: spec.name, missed: missed.count }, "schedule catching up missed ticks once");
      await fireTick(entry, missed.latest, true, missed.count);
    } else {
      log.info({ schedule: spec.name, missed: missed.count }, "schedule skipped ticks missed while down");
    }
  }

  return {
    async start() {
      if (started || closed) return;
      started = true;
      const now = clock.now();
      for (const entry of entries) {
        await handleMissed(entry, now);
        entry.nextAt = nextTick(entry.spec.expression, now);
        arm(entry);
      }
    },
    status() {
      return entries.map((e) => ({
        name: e.spec.name,
        expression: e.spec.expression.text,
        catchUp: e.spec.catchUp,
        action: e.spec.action,
        ...(e.nextAt === undefined ? {} : { nextAt: e.nextAt }),
        ...(e.lastFiredAt === undefined ? {} : { lastFiredAt: e.lastFiredAt }),
        fired: e.fired,
        failures: e.failures,
      }));
    },
    async close() {
      closed = true;
      for (const e of entries) {
        if (e.timer !== undefined) clock.clearTimeout(e.timer);
        e.timer = undefined;
      }
      for (const t of retryTimers) clock.clearTimeout(t);
      retryTimers.clear();
      await Promise.allSettled([...inFlight]);
    },
  };
}
