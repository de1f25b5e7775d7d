/** The `step` object a workflow's `run` receives, and the options of its methods. */
import type { CloudEvent } from "../event/types.ts";
import type { Duration } from "../runtime/define.ts";

export interface StepInfo {
  /** `<runId>:<stepId>`: the same on every attempt of this step; pass it to external APIs as their idempotency key. */
  idempotencyKey: string;
  /** 1 on the first attempt of this step. */
  attempt: number;
}

export interface StepRunOptions<T> {
  /** Undoes the step: runs (newest first) when the run fails for good or is cancelled after this step completed. */
  compensate?: (result: T, info: StepInfo) => unknown;
}

export interface WaitForEventOptions {
  /** The CloudEvent type awaited (on the default bus). */
  type: string;
  /** A dotted path that must be equal in the trigger and the awaited event, like `"data.orderId"`. */
  match?: string;
  /** An event pattern the awaited event must match as well (EventBridge pattern language). */
  if?: Record<string, unknown>;
  /** Resolve with null after this long; absent: wait without end. */
  timeout?: Duration;
  /** Also accept events stored this long before the run began (default 0: from the run's trigger on). */
  lookback?: Duration;
}

/** An event a workflow emits; `source` defaults to `sluice/workflow/<name>`. */
export type WorkflowEmit = Omit<CloudEvent, "specversion" | "id" | "source"> & { source?: string; id?: string };

export interface Step {
  /** Runs `fn` once per run (its result is stored; later replays get the stored result). */
  run<T>(id: string, fn: (info: StepInfo) => T | Promise<T>, options?: StepRunOptions<Awaited<T>>): Promise<Awaited<T>>;
  /** A durable timer: the run is resumed when it is due, across restarts. */
  sleep(id: string, duration: Duration): Promise<void>;
  sleepUntil(id: string, time: Date | string | number): Promise<void>;
  /** Resolves with the first matching event since the run began, or null after `timeout`. */
  waitForEvent(id: string, options: WaitForEventOptions): Promise<(CloudEvent & { data?: any }) | null>;
  /** Publishes an event once per run (to the default bus). */
  emit(id: string, event: WorkflowEmit): Promise<{ eventId: string }>;
  /**
   * Invokes a function with `data` as its event's data and resolves with its result. The step id defaults to
   * `invoke:<fn>` (`invoke:<fn>:2` for the second call of the same function); `compensate` names a function
   * invoked to undo it.
   */
  invoke<T = unknown>(fn: string, data?: unknown, options?: { id?: string; compensate?: string }): Promise<T>;
}
