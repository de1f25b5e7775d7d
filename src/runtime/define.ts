/**
 * `defineFunction`: what users write, and its validation into the normalized `FunctionConfig` the runtime uses.
 * Pure: no I/O, so it runs the same in the host, in a worker thread and in a child process.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import { parseDuration } from "../util/duration.ts";
import { isName, isObject } from "../util/validate.ts";

export { parseDuration };

/** `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or milliseconds as a number. */
export type Duration = number | `${number}${"ms" | "s" | "m" | "h" | "d"}`;

/** A pino-shaped structured logger (fields first, constant message second). */
export interface FunctionLogger {
  trace(fields: object, msg?: string): void;
  trace(msg: string): void;
  debug(fields: object, msg?: string): void;
  debug(msg: string): void;
  info(fields: object, msg?: string): void;
  info(msg: string): void;
  warn(fields: object, msg?: string): void;
  warn(msg: string): void;
  error(fields: object, msg?: string): void;
  error(msg: string): void;
  fatal(fields: object, msg?: string): void;
  fatal(msg: string): void;
  child(bindings: object): FunctionLogger;
}

/** An event a handler emits: CloudEvent attributes; `specversion`, `id` and `time` are filled when absent. */
export type EmittedEvent = Omit<CloudEvent, "specversion" | "id"> & { specversion?: "1.0"; id?: string };

/** What a handler receives besides its event. */
export interface FunctionContext {
  /** Publishes child events; they inherit `correlationid` and `traceparent`, and `sluicehops` + 1. */
  emit(events: EmittedEvent | EmittedEvent[]): Promise<void>;
  /** Lines carry function, invocationId, eventId, attempt and correlationId. */
  log: FunctionLogger;
  /** 1 on the first delivery of this event, then 2, 3… */
  attempt: number;
  /** Epoch ms after which the invocation is failed with `timeout` and its instance terminated. */
  deadline: number;
  invocationId: string;
  functionName: string;
  /** Aborts shortly before `deadline` (and when the runtime gives up on the invocation). */
  signal: AbortSignal;
}

// biome-ignore lint/suspicious/noExplicitAny: a handler reads its own data shape without a cast, as users expect
export type FunctionHandler = (event: CloudEvent & { data?: any }, ctx: FunctionContext) => unknown;

export interface FunctionDefinitionInput {
  /** Unique per application: letters, digits, `.`, `_`, `-`; at most 64 characters. */
  name: string;
  /** An event pattern: an implicit rule on the default bus (interpreted by the bus). */
  on?: Record<string, unknown>;
  /** Retry policy applied by the bus to failed deliveries. */
  retry?: { attempts?: number; backoff?: { initial?: Duration; max?: Duration } };
  /** At most this many instances of the function at once (default: the node-wide limit). */
  concurrency?: number;
  /** Instances of the node-wide limit set aside for this function; also caps it (as Lambda's). */
  reservedConcurrency?: number;
  /** Instances kept warm even when idle (default 0: scale to zero). */
  minInstances?: number;
  /** Events one instance handles at once (default 1, as Lambda). Raise it for I/O-bound handlers. */
  instanceConcurrency?: number;
  /** Default `"30s"`. */
  timeout?: Duration;
  /** Memory in MB: the instance's heap limit and the billed memory (default 128). */
  memory?: number;
  /** Skip events whose key already completed. `key` is a path into the event (default: source + id). */
  idempotency?: true | { key?: string; ttl?: Duration };
  /** Emits `sluice.budget.exceeded` once per window when crossed; `throttle` refuses work until it ends. */
  budget?: { gbSeconds?: number; invocations?: number; per: Duration; throttle?: boolean };
  /** `worker` (default): a worker thread. `process`: a child process limited to the function's folder. */
  isolation?: "worker" | "process";
  handler: FunctionHandler;
}

const brand = Symbol.for("sluice.function");

/** The result of `defineFunction`: the validated definition, recognisable across module copies. */
export type FunctionDefinition = Readonly<FunctionDefinitionInput> & { readonly [brand]: true };

/** The normalized, serializable configuration of a function (no handler). */
export interface FunctionConfig {
  name: string;
  on: Record<string, unknown> | undefined;
  retry: { attempts: number; backoff: { initialMs: number; maxMs: number } };
  concurrency: number | undefined;
  reservedConcurrency: number | undefined;
  minInstances: number;
  instanceConcurrency: number;
  timeoutMs: number;
  memoryMb: number;
  idempotency: { key: string | undefined; ttlMs: number } | undefined;
  budget: { gbSeconds: number | undefined; invocations: number | undefined; perMs: number; throttle: boolean } | undefined;
  isolation: "worker" | "process";
}

function invalid(path: string, message: string): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, `function definition: ${path} ${message}`, { path });
}

function int(value: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(path, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function optional<T>(value: unknown, parse: (v: unknown) => T): T | undefined {
  return value === undefined ? undefined : parse(value);
}

const knownFields = new Set([
  "name", "on", "retry", "concurrency", "reservedConcurrency", "minInstances", "instanceConcurrency",
  "timeout", "memory", "idempotency", "budget", "isolation", "handler",
]);

/**
 * Validates a function definition (everything but `handler`) into its normalized configuration.
 * Throws a SluiceError E_CONFIG_INVALID whose `path` names the offending field (`$.timeout`).
 */
/** A function's memory when it sets none, in MB. */
export const defaultMemoryMb = 128;

export function normalizeFunctionConfig(def: unknown): FunctionConfig {
  if (!isObject(def)) throw invalid("$", "must be an object");
  for (const key of Object.keys(def)) if (!knownFields.has(key)) throw invalid(`$.${key}`, "is not a known field");
  const name = def.name;
  if (!isName(name)) {
    throw invalid("$.name", "must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit");
  }
  if (def.on !== undefined && !isObject(def.on)) throw invalid("$.on", "must be an event pattern object");
  const retry = def.retry;
  if (retry !== undefined && !isObject(retry)) throw invalid("$.retry", "must be an object");
  const backoff = retry?.backoff;
  if (backoff !== undefined && !isObject(backoff)) throw invalid("$.retry.backoff", "must be an object");
  const initialMs = optional(backoff?.initial, (v) => parseDuration(v, "$.retry.backoff.initial")) ?? 1000;
  const maxMs = optional(backoff?.max, (v) => parseDuration(v, "$.retry.backoff.max")) ?? 300_000;
  if (maxMs < initialMs) throw invalid("$.retry.backoff.max", "must not be less than retry.backoff.initial");

  const concurrency = optional(def.concurrency, (v) => int(v, "$.concurrency", 1));
  const reservedConcurrency = optional(def.reservedConcurrency, (v) => int(v, "$.reservedConcurrency", 0));
  const minInstances = optional(def.minInstances, (v) => int(v, "$.minInstances", 0)) ?? 0;
  const cap = Math.min(concurrency ?? Infinity, reservedConcurrency ?? Infinity);
  if (minInstances > cap) throw invalid("$.minInstances", "must not exceed concurrency or reservedConcurrency");

  let idempotency: FunctionConfig["idempotency"];
  if (def.idempotency === true) idempotency = { key: undefined, ttlMs: 86_400_000 };
  else if (def.idempotency !== undefined) {
    if (!isObject(def.idempotency)) throw invalid("$.idempotency", "must be true or { key?, ttl? }");
    const key = def.idempotency.key;
    if (key !== undefined && (typeof key !== "string" || !/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(key))) {
      throw invalid("$.idempotency.key", 'must be a dotted path into the event, like "id" or "data.orderId"');
    }
    idempotency = {
      key,
      ttlMs: optional(def.idempotency.ttl, (v) => parseDuration(v, "$.idempotency.ttl")) ?? 86_400_000,
    };
  }

  let budget: FunctionConfig["budget"];
  if (def.budget !== undefined) {
    const b = def.budget;
    if (!isObject(b)) throw invalid("$.budget", "must be an object");
    const num = (v: unknown, path: string) => {
      if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw invalid(path, "must be a positive number");
      return v;
    };
    const gbSeconds = optional(b.gbSeconds, (v) => num(v, "$.budget.gbSeconds"));
    const invocations = optional(b.invocations, (v) => num(v, "$.budget.invocations"));
    if (gbSeconds === undefined && invocations === undefined) throw invalid("$.budget", "needs gbSeconds or invocations");
    const perMs = parseDuration(b.per, "$.budget.per");
    if (perMs < 1000) throw invalid("$.budget.per", "must be at least 1s");
    if (b.throttle !== undefined && typeof b.throttle !== "boolean") throw invalid("$.budget.throttle", "must be a boolean");
    budget = { gbSeconds, invocations, perMs, throttle: b.throttle === true };
  }

  const isolation = def.isolation ?? "worker";
  if (isolation !== "worker" && isolation !== "process") throw invalid("$.isolation", 'must be "worker" or "process"');
  const timeoutMs = optional(def.timeout, (v) => parseDuration(v, "$.timeout")) ?? 30_000;
  if (timeoutMs < 1) throw invalid("$.timeout", "must be at least 1 ms");

  return {
    name,
    on: def.on as Record<string, unknown> | undefined,
    retry: { attempts: optional(retry?.attempts, (v) => int(v, "$.retry.attempts", 0, 1000)) ?? 3, backoff: { initialMs, maxMs } },
    concurrency,
    reservedConcurrency,
    minInstances,
    instanceConcurrency: optional(def.instanceConcurrency, (v) => int(v, "$.instanceConcurrency", 1, 10_000)) ?? 1,
    timeoutMs,
    memoryMb: optional(def.memory, (v) => int(v, "$.memory", 16, 10_240)) ?? defaultMemoryMb,
    idempotency,
    budget,
    isolation,
  };
}

/**
 * Declares a function. The file's default export must be its result.
 *
 * @example
 * export default defineFunction({
 *   name: "billing",
 *   on: { type: ["order.created"] },
 *   timeout: "30s",
 *   memory: 256,
 *   async handler(event, ctx) {
 *     await ctx.emit({ type: "payment.captured", source: "billing", data: { orderId: event.data.orderId } });
 *   },
 * });
 */
export function defineFunction(def: FunctionDefinitionInput): FunctionDefinition {
  normalizeFunctionConfig(def);
  if (typeof def.handler !== "function") throw invalid("$.handler", "must be a function");
  return Object.freeze({ ...def, [brand]: true as const });
}

/** True for a `defineFunction` result, including one made by another copy of this module. */
export function isFunctionDefinition(value: unknown): value is FunctionDefinition {
  return isObject(value) && (value as Record<symbol, unknown>)[brand] === true && typeof value.handler === "function";
}
