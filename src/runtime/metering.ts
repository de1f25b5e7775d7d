/**
 * Metering: what each invocation cost (duration, billed memory, GB-seconds, cold or warm, outcome), counters
 * per function in total and over the budget window, and budget crossings.
 */

export type InvocationOutcome =
  | "success"
  | "error"
  | "timeout"
  | "out-of-memory"
  | "crashed"
  | "recursive-loop"
  | "throttled"
  | "skipped";

/** One record per invocation, published through `runtime.on("invocation", …)`. */
export interface InvocationRecord {
  functionName: string;
  invocationId: string;
  eventId: string;
  attempt: number;
  /** Epoch ms when the work arrived. */
  arrivedAt: number;
  /** ms from arrival to the hand-over to an instance (includes the cold start when `cold`). */
  startLatencyMs: number;
  /** ms from hand-over to the answer (0 when it never ran). */
  durationMs: number;
  /** The function's configured memory. */
  memoryMb: number;
  /** memoryMb / 1024 × durationMs / 1000. */
  gbSeconds: number;
  /** True when this invocation was the first on a new instance. */
  cold: boolean;
  outcome: InvocationOutcome;
  /** For failures: `timeout`, `out-of-memory`, `crashed`, `recursive-loop`, `error: <message>`, `throttled: …`. */
  reason?: string;
  /** The function's code version (incremented by reload). */
  version: number;
}

export interface FunctionCounters {
  invocations: number;
  successes: number;
  failures: number;
  throttled: number;
  skipped: number;
  cold: number;
  warm: number;
  durationMsTotal: number;
  gbSeconds: number;
}

export function emptyCounters(): FunctionCounters {
  return { invocations: 0, successes: 0, failures: 0, throttled: 0, skipped: 0, cold: 0, warm: 0, durationMsTotal: 0, gbSeconds: 0 };
}

export function addRecord(c: FunctionCounters, r: InvocationRecord): void {
  if (r.outcome === "throttled") {
    c.throttled++;
    return;
  }
  if (r.outcome === "skipped") {
    c.skipped++;
    return;
  }
  c.invocations++;
  if (r.outcome === "success") c.successes++;
  else c.failures++;
  if (r.cold) c.cold++;
  else c.warm++;
  c.durationMsTotal += r.durationMs;
  c.gbSeconds += r.gbSeconds;
}

export function gbSeconds(memoryMb: number, durationMs: number): number {
  return (memoryMb / 1024) * (durationMs / 1000);
}

/** Budget state of one function: counters of the current window and whether its crossing was announced. */
export class BudgetWindow {
  index = -1;
  startAt = 0;
  counters = emptyCounters();
  exceeded = false;

  constructor(
    private readonly budget: { gbSeconds: number | undefined; invocations: number | undefined; perMs: number },
  ) {}

  /** Moves to the window containing `now`, resetting the counters when it changed. */
  roll(now: number): void {
    const index = Math.floor(now / this.budget.perMs);
    if (index === this.index) return;
    this.index = index;
    this.startAt = index * this.budget.perMs;
    this.counters = emptyCounters();
    this.exceeded = false;
  }

  get endAt(): number {
    return this.startAt + this.budget.perMs;
  }

  /** Adds a record; true exactly once per window, when the budget is first crossed. */
  add(record: InvocationRecord, now: number): boolean {
    this.roll(now);
    addRecord(this.counters, record);
    if (this.exceeded) return false;
    const overInvocations = this.budget.invocations !== undefined && this.counters.invocations >= this.budget.invocations;
    const overGb = this.budget.gbSeconds !== undefined && this.counters.gbSeconds >= this.budget.gbSeconds;
    if (!overInvocations && !overGb) return false;
    this.exceeded = true;
    return true;
  }
}
