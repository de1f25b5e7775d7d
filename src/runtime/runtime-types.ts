/** The runtime's public shapes: its options, the Runtime object, its metrics and its events. */
import type { Clock } from "../clock.ts";
import type { SluiceError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { StateStore } from "../store/contract.ts";
import type { FunctionConfig, FunctionDefinition } from "./define.ts";
import type { ExitKind } from "./hosts.ts";
import type { RuntimeLimits } from "./limits.ts";
import type { FunctionCounters, InvocationRecord } from "./metering.ts";
import type { Tracing } from "../telemetry/tracing.ts";

export type FunctionSource = { file: string } | FunctionDefinition;

export interface RuntimeOptions {
  functions: FunctionSource[];
  /** Idempotency keys live here (required when a function sets `idempotency`). */
  state?: StateStore;
  /** Publishes events (ctx.emit children, sluice.* events). `parent` is the event being handled, if any. */
  emit: (events: CloudEvent[], parent: CloudEvent | undefined, origin?: EmitOrigin) => Promise<unknown>;
  logger?: Logger;
  limits?: Partial<RuntimeLimits>;
  /**
   * Every time the runtime reads (arrival, dispatch, durations, deadlines, idle periods, budgets, event times)
   * and the timers for deadlines and idle stops (default: the system clock). A clock with only `now()` keeps
   * real timers. Instances read `ctx.deadline` and time `ctx.signal` on their own wall clock, so a test clock
   * should start at the real time.
   */
  clock?: Clock | Pick<Clock, "now">;
  /** Where bundled function files go (default: a folder in the OS temp dir). */
  cacheDir?: string;
  /** Reload a function when its file changes. */
  watch?: boolean;
  /** OpenTelemetry spans for invocations (src/telemetry/tracing.ts); absent = off. */
  tracing?: Pick<Tracing, "invocation">;
}

export interface DeliverOptions {
  attempt: number;
  deliveryId?: string;
  signal?: AbortSignal;
  /** The delivery attempt's trace context: the invocation's span is its child (tracing on). */
  traceparent?: string;
}

export interface InstanceCounts {
  starting: number;
  idle: number;
  busy: number;
}

export interface RuntimeMetrics {
  /** `total` counts function instances; `standby` the standby workers ready to be adopted (not in `total`). */
  instances: InstanceCounts & { total: number; standby: number };
  functions: Record<
    string,
    FunctionCounters & {
      instances: InstanceCounts;
      queued: number;
      inflight: number;
      version: number;
      budget?: { windowStartAt: number; windowEndAt: number; invocations: number; gbSeconds: number; exceeded: boolean };
    }
  >;
}

export interface Runtime {
  /** Runs `name` for `event` and returns the handler's result (sync invoke). Fails with the same errors as deliver. */
  invoke(name: string, event: CloudEvent, options?: Partial<DeliverOptions>): Promise<unknown>;
  /** The bus's function handler: resolves on success, throws a SluiceError (or NonRetriableError / RetryAfterError). */
  deliver(functionName: string, event: CloudEvent, options: DeliverOptions): Promise<void>;
  /** Names and normalized configurations of the loaded functions. */
  functions(): FunctionConfig[];
  metrics(): RuntimeMetrics;
  /** One record per invocation (metering). Returns a function that removes the listener. */
  on(event: "invocation", listener: (record: InvocationRecord) => void): () => void;
  /** Instance lifecycle: `ready` when one can take work, `stopped` when it is gone (with why). */
  on(event: "instance", listener: (change: InstanceChange) => void): () => void;
  /** Loads a new version of a function file: new invocations get it, in-flight ones finish on the old. */
  reload(file: string): Promise<void>;
  /** Refuses new work, waits for in-flight invocations, stops every instance. Idempotent. */
  close(): Promise<void>;
}

export interface InstanceChange {
  functionName: string;
  instanceId: number;
  version: number;
  state: "ready" | "stopped";
  /** For `stopped`: `terminated` (idle, reload, timeout, close), `crashed` or `out-of-memory`. */
  exit?: ExitKind;
  /** For `ready`: the instance is a standby worker the function adopted (no thread start on this cold start). */
  fromStandby?: boolean;
}

/** A failed invocation: a SluiceError (or NonRetriableError / RetryAfterError) with the reason recorded. */
export type InvocationError = SluiceError & { reason: string; invocationId: string };

/** The invocation that emitted events with ctx.emit (for lineage). */
export interface EmitOrigin {
  functionName: string;
  invocationId: string;
}
