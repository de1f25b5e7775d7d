/**
 * What the runtime keeps about each loaded function, each instance and each invocation. The parts of the
 * runtime (registry, pool, invocations, deadlines) share these records and each changes only its own fields.
 */
import type { SpanHandle } from "../telemetry/tracing.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { FunctionConfig, FunctionDefinition } from "./define.ts";
import type { InstanceHost } from "./hosts.ts";
import type { Bundle } from "./loader.ts";
import type { BudgetWindow, FunctionCounters } from "./metering.ts";
import type { InvocationError } from "./runtime-types.ts";

export interface Invocation {
  seq: number;
  invocationId: string;
  fn: FunctionEntry;
  event: CloudEvent;
  attempt: number;
  arrivedAt: number;
  dispatchedAt: number;
  /** Epoch ms after which a dispatched invocation times out (0 until dispatched). */
  deadline: number;
  instance: Instance | undefined;
  cold: boolean;
  settled: boolean;
  /** invoke() wants the handler's result; deliver() resolves with nothing. */
  keepValue: boolean;
  loopDetected: boolean;
  logger: Logger | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Trace context of the caller (a delivery attempt's span), when tracing is on. */
  parentTrace: string | undefined;
  /** The invocation's span, from dispatch to settlement (tracing on). */
  span: SpanHandle | undefined;
  resolve(value: unknown): void;
  reject(err: InvocationError): void;
}

export interface Instance {
  id: number;
  fn: FunctionEntry;
  version: number;
  host: InstanceHost;
  state: "starting" | "ready" | "stopping";
  inflight: Map<number, Invocation>;
  used: boolean;
  fromStandby: boolean;
  /** Epoch ms when it last became idle; the idle timer checks it instead of being re-armed per invocation. */
  idleSince: number;
  /** A handle of the runtime's clock. */
  idleTimer: unknown;
  startTimer: NodeJS.Timeout | undefined;
}

export interface FunctionEntry {
  name: string;
  file: string | undefined;
  definition: FunctionDefinition | undefined;
  config: FunctionConfig;
  version: number;
  bundle: Bundle | undefined;
  instances: Set<Instance>;
  queue: Invocation[];
  counters: FunctionCounters;
  budget: BudgetWindow | undefined;
  /** Idempotency keys being run by this node: concurrent duplicates wait for the first. */
  claims: Map<string, Promise<unknown>>;
}
