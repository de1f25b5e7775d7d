/**
 * The function runtime: loads function files, runs their handlers in isolated instances (worker threads or
 * child processes), scales instances from zero to each function's concurrency within a node-wide limit,
 * contains every failure to its invocation, meters what each invocation cost, and enforces idempotency,
 * recursive-loop and budget limits.
 *
 * This file puts the parts together: registry.ts (loading), pool.ts (instances), standby.ts, invocation.ts
 * (queue, dispatch, settle, metering), deadlines.ts, emit.ts (ctx.emit), idempotency.ts and metrics.ts.
 */
import { EventEmitter } from "node:events";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { systemClock, type Clock } from "../clock.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import { noopLogger } from "../logger.ts";
import { runIdempotent } from "./idempotency.ts";
import { Invocations } from "./invocation.ts";
import { resolveLimits } from "./limits.ts";
import { BudgetWindow, type InvocationRecord } from "./metering.ts";
import { snapshot } from "./metrics.ts";
import { InstancePool } from "./pool.ts";
import type { FunctionEntry } from "./records.ts";
import { FunctionRegistry } from "./registry.ts";
import type { InstanceChange, Runtime, RuntimeOptions } from "./runtime-types.ts";
import { SourceWatcher } from "./source-watcher.ts";
import { StandbyPool } from "./standby.ts";

export type { RuntimeLimits } from "./limits.ts";
export type {
  DeliverOptions,
  FunctionSource,
  InstanceChange,
  InstanceCounts,
  InvocationError,
  Runtime,
  RuntimeMetrics,
  RuntimeOptions,
} from "./runtime-types.ts";

const noValue = (): undefined => undefined;

/** A clock given with only `now()` keeps the system clock's timers. */
function resolveClock(given: RuntimeOptions["clock"]): Clock {
  if (given === undefined) return systemClock;
  if ("setTimeout" in given) return given;
  return { now: () => given.now(), setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout };
}

/**
 * Creates a runtime and loads its functions (bundling each file and reading its definition in isolation).
 * @example
 * const runtime = await createRuntime({ functions: [{ file: "functions/billing.ts" }], emit: (events) => broker.publish(events) });
 * await runtime.invoke("billing", event);
 */
export async function createRuntime(options: RuntimeOptions): Promise<Runtime> {
  const limits = resolveLimits(options.limits);
  const clock = resolveClock(options.clock);
  const logger = options.logger ?? noopLogger;
  const cacheDir = options.cacheDir ?? join(tmpdir(), "sluice-functions");
  const events = new EventEmitter();
  const registry = await FunctionRegistry.load(options, limits, cacheDir);
  const watchers: SourceWatcher[] = [];
  /** Called after a function was reloaded (hot reload then watches its new sources). */
  let onReloaded: ((fn: FunctionEntry) => void) | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  function notify(name: "invocation" | "instance", payload: InvocationRecord | InstanceChange): void {
    if (events.listenerCount(name) === 0) return;
    try {
      events.emit(name, payload);
    } catch (err) {
      logger.error({ err, listener: name }, "runtime listener threw");
    }
  }

  const invocations = new Invocations({
    registry,
    limits,
    clock,
    logger,
    hasLogger: options.logger !== undefined,
    publish: options.emit,
    onRecord: (record) => notify("invocation", record),
  });
  const standby = new StandbyPool(registry, limits.standbyWorkers, logger);
  const pool = new InstancePool(registry, standby, limits, clock, logger, {
    dispatch: (inst, inv) => invocations.dispatch(inst, inv),
    settle: (inv, outcome, value, error) => invocations.settle(inv, outcome, value, error),
    onMessage: (inst, m) => invocations.onMessage(inst, m),
    onInstance: (change) => notify("instance", change),
  });
  invocations.runOn(pool);
  const idempotency = options.state ? { state: options.state, invocations, clock, logger } : undefined;

  function lookup(name: string): FunctionEntry {
    const fn = registry.get(name);
    if (!fn) throw new SluiceError(ErrorCode.FunctionNotFound, `function "${name}" does not exist`);
    return fn;
  }

  /** Not async (a warm call makes one promise, the invocation's own); refusals come back as rejections. */
  function run(name: string, event: CloudEvent, attempt: number, signal: AbortSignal | undefined, keepValue: boolean): Promise<unknown> {
    try {
      if (closed) throw new SluiceError(ErrorCode.Closed, "the runtime is closed");
      const fn = lookup(name);
      if (fn.config.idempotency) {
        // The registry refused to load an idempotent function without a state store.
        const result = runIdempotent(fn, event, attempt, signal, idempotency!);
        return keepValue ? result : result.then(noValue);
      }
      return invocations.enqueue(fn, event, attempt, signal, keepValue);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async function reload(file: string): Promise<void> {
    const path = resolve(file);
    const fn = registry.fromFile(path);
    if (!fn) throw new SluiceError(ErrorCode.FunctionNotFound, `no function was loaded from ${path}`);
    const next = await registry.loadFile(path);
    if (next.config.name !== fn.name) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `${path}: a reload cannot rename function "${fn.name}" to "${next.config.name}"`, { path: "$.name" });
    }
    fn.bundle = next.bundle;
    fn.config = next.config;
    fn.version++;
    if (next.config.budget && !fn.budget) fn.budget = new BudgetWindow(next.config.budget);
    for (const i of [...fn.instances]) if (i.state !== "ready" || i.inflight.size === 0) {
      if (i.state !== "stopping") pool.stop(i);
    }
    logger.info({ functionName: fn.name, version: fn.version }, "function reloaded");
    onReloaded?.(fn);
    standby.replenish(); // the most common memory setting may have changed
    pool.ensureMinInstances(fn);
    pool.pump(fn);
  }

  if (options.watch) {
    const watcher = new SourceWatcher((file) => {
      reload(file).catch((err: unknown) => logger.error({ err, file }, "function reload failed; the previous version keeps running"));
    }, logger);
    watchers.push(watcher);
    for (const fn of registry.values()) if (fn.file) watcher.track(fn.file, fn.bundle?.sources ?? []);
    onReloaded = (fn) => fn.file && watcher.track(fn.file, fn.bundle?.sources ?? []);
  }

  for (const fn of registry.values()) pool.ensureMinInstances(fn);
  // After loading, not during it: the caller gets the runtime without waiting for a thread that no work needs yet.
  setImmediate(() => standby.replenish()).unref();

  return {
    invoke(name, event, opts) {
      return run(name, event, opts?.attempt ?? 1, opts?.signal, true);
    },
    deliver(functionName, event, opts) {
      // A function this node does not have (yet: a rolling deploy) is retried, not dead-lettered on the spot.
      if (!closed && !registry.has(functionName)) {
        return Promise.reject(new SluiceError(ErrorCode.FunctionNotFound, `function "${functionName}" does not exist on this node`, { retryable: true }));
      }
      // Resolves with undefined: enqueue drops the value unless the caller keeps it.
      return run(functionName, event, opts.attempt, opts.signal, false) as Promise<void>;
    },
    functions: () => [...registry.values()].map((f) => f.config),
    metrics: () => snapshot(registry, standby, clock.now()),
    on(name: "invocation" | "instance", listener: (payload: never) => void) {
      const l = listener as (payload: unknown) => void;
      events.on(name, l);
      return () => events.off(name, l);
    },
    reload,
    close() {
      closing ??= (async () => {
        closed = true;
        pool.close();
        for (const w of watchers) w.close();
        const drained = invocations.close();
        const stopping = standby.close();
        await drained;
        stopping.push(...pool.terminateAll());
        await Promise.allSettled(stopping);
        await registry.release();
      })();
      return closing;
    },
  };
}
