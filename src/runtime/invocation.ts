/**
 * Invocations from arrival to settlement: queued per function (or throttled), dispatched to an instance with a
 * deadline, settled once by whichever comes first (the handler's answer, the deadline, the instance's exit, a
 * cancel), and metered.
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../clock.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import { Deadlines } from "./deadlines.ts";
import { emitChildren } from "./emit.ts";
import { failure, handlerError } from "./invocation-errors.ts";
import type { RuntimeLimits } from "./limits.ts";
import { addRecord, gbSeconds, type InvocationOutcome, type InvocationRecord } from "./metering.ts";
import type { InstancePool, WorkMessage } from "./pool.ts";
import { toWireError } from "./protocol.ts";
import type { FunctionEntry, Instance, Invocation } from "./records.ts";
import type { FunctionRegistry } from "./registry.ts";
import type { InvocationError, RuntimeOptions } from "./runtime-types.ts";
import { budgetExceeded } from "./sluice-events.ts";

export interface InvocationsOptions {
  registry: FunctionRegistry;
  limits: RuntimeLimits;
  clock: Clock;
  logger: Logger;
  /** False when no logger was given: handlers' log lines are dropped before any work. */
  hasLogger: boolean;
  publish: RuntimeOptions["emit"];
  onRecord(record: InvocationRecord): void;
}

export class Invocations {
  readonly #o: InvocationsOptions;
  readonly #deadlines: Deadlines;
  #pool!: InstancePool;
  #nextSeq = 0;
  #closed = false;
  /** Invocations accepted and not yet settled (queued or running): close() waits for them. */
  #pending = 0;
  #onDrained: (() => void) | undefined;

  constructor(o: InvocationsOptions) {
    this.#o = o;
    this.#deadlines = new Deadlines(o.clock, () => this.#dispatched(), (inv) => this.#onTimeout(inv));
  }

  /** The pool is made with this object's callbacks, so it comes in after construction. */
  runOn(pool: InstancePool): void {
    this.#pool = pool;
  }

  enqueue(fn: FunctionEntry, event: CloudEvent, attempt: number, signal: AbortSignal | undefined, keepValue: boolean): Promise<unknown> {
    if (this.#closed) throw new SluiceError(ErrorCode.Closed, "the runtime is closed");
    const { limits, clock } = this.#o;
    if (fn.budget?.exceeded && fn.config.budget?.throttle) {
      fn.budget.roll(clock.now());
      if (fn.budget.exceeded) this.#throttled(fn, event, attempt, `is over its budget until ${new Date(fn.budget.endAt).toISOString()}`);
    }
    if (fn.queue.length >= limits.maxQueuedPerFunction) this.#throttled(fn, event, attempt, `has ${fn.queue.length} invocations waiting`);
    return new Promise<unknown>((resolvePromise, rejectPromise) => {
      this.#pending++;
      const inv: Invocation = {
        seq: ++this.#nextSeq,
        invocationId: randomUUID(),
        fn,
        event,
        attempt,
        arrivedAt: this.#o.clock.now(),
        dispatchedAt: 0,
        deadline: 0,
        instance: undefined,
        cold: false,
        settled: false,
        keepValue,
        loopDetected: false,
        logger: undefined,
        signal,
        onAbort: undefined,
        resolve: resolvePromise,
        reject: rejectPromise,
      };
      if (signal) {
        inv.onAbort = () => {
          if (inv.instance) inv.instance.host.send({ t: "abort", id: inv.seq });
          else {
            const at = fn.queue.indexOf(inv);
            if (at >= 0) fn.queue.splice(at, 1);
            this.settle(inv, "throttled", undefined, failure(new SluiceError(ErrorCode.Throttled, "cancelled before it started", { retryable: true }), "throttled: cancelled", inv.invocationId));
          }
        };
        if (signal.aborted) {
          inv.onAbort();
          return;
        }
        signal.addEventListener("abort", inv.onAbort, { once: true });
      }
      fn.queue.push(inv);
      if (!this.#pool.pump(fn)) this.#pool.pumpAll();
    });
  }

  dispatch(inst: Instance, inv: Invocation): void {
    inv.instance = inst;
    inv.cold = !inst.used;
    inst.used = true;
    inst.inflight.set(inv.seq, inv);
    const now = this.#o.clock.now();
    inv.dispatchedAt = now;
    const timeoutMs = inv.fn.config.timeoutMs;
    const deadline = now + timeoutMs;
    inv.deadline = deadline;
    this.#deadlines.started(deadline);
    const lead = Math.min(this.#o.limits.signalLeadMs, timeoutMs / 10);
    inst.host.send({ t: "invoke", id: inv.seq, event: inv.event, attempt: inv.attempt, invocationId: inv.invocationId, timeoutMs, signalInMs: timeoutMs - lead });
  }

  settle(inv: Invocation, outcome: InvocationOutcome, value: unknown, error: InvocationError | undefined): void {
    if (inv.settled) return;
    inv.settled = true;
    if (inv.signal && inv.onAbort) inv.signal.removeEventListener("abort", inv.onAbort);
    const inst = inv.instance;
    if (inst) {
      inst.inflight.delete(inv.seq);
      this.#deadlines.finished();
    }
    let finalOutcome = outcome;
    let finalError = error;
    if (inv.loopDetected) {
      finalOutcome = "recursive-loop";
      const message = `recursive-loop: the event chain went past ${this.#o.limits.maxHops} hops`;
      finalError = failure(new SluiceError(ErrorCode.RecursiveLoop, message, { retryable: false }), "recursive-loop", inv.invocationId);
    }
    const now = this.#o.clock.now();
    const ran = inst !== undefined;
    const durationMs = ran ? now - inv.dispatchedAt : 0;
    const memoryMb = inv.fn.config.memoryMb;
    const record: InvocationRecord = {
      functionName: inv.fn.name,
      invocationId: inv.invocationId,
      eventId: inv.event.id,
      attempt: inv.attempt,
      arrivedAt: inv.arrivedAt,
      startLatencyMs: ran ? inv.dispatchedAt - inv.arrivedAt : now - inv.arrivedAt,
      durationMs,
      memoryMb,
      gbSeconds: gbSeconds(memoryMb, durationMs),
      cold: inv.cold,
      outcome: finalOutcome,
      version: inst?.version ?? inv.fn.version,
    };
    if (finalError) record.reason = finalError.reason;
    this.#meter(inv.fn, record);
    if (finalError) inv.reject(finalError);
    else inv.resolve(inv.keepValue ? value : undefined);
    if (--this.#pending === 0 && this.#onDrained) this.#onDrained();
    if (inst) this.#pool.afterWork(inst);
  }

  /** What an instance says about an invocation it runs: its answer, events it emits, lines it logs. */
  onMessage(inst: Instance, m: WorkMessage): void {
    if (m.t === "log" && !this.#o.hasLogger) return;
    const inv = inst.inflight.get(m.id);
    if (m.t === "log") {
      const log = inv ? this.#logger(inv) : this.#o.logger.child({ function: inst.fn.name });
      log[m.level](m.fields, m.msg);
      return;
    }
    if (!inv) return;
    if (m.t === "done") {
      if (m.error) this.settle(inv, "error", undefined, handlerError(m.error, inv.invocationId));
      else this.settle(inv, "success", m.value, undefined);
      return;
    }
    const { limits, clock, publish, logger } = this.#o;
    void emitChildren(inv, m.events, { maxHops: limits.maxHops, now: () => clock.now(), publish, logger }).then(
      () => inst.host.send({ t: "emitted", reqId: m.reqId }),
      (err: unknown) => inst.host.send({ t: "emitted", reqId: m.reqId, error: toWireError(err) }),
    );
  }

  /** Meters an invocation that never reached an instance (throttled, or skipped as an idempotent duplicate). */
  meterNotRun(fn: FunctionEntry, event: CloudEvent, attempt: number, outcome: "throttled" | "skipped", reason?: string): string {
    const invocationId = randomUUID();
    this.#meter(fn, {
      functionName: fn.name,
      invocationId,
      eventId: event.id,
      attempt,
      arrivedAt: this.#o.clock.now(),
      startLatencyMs: 0,
      durationMs: 0,
      memoryMb: fn.config.memoryMb,
      gbSeconds: 0,
      cold: false,
      outcome,
      ...(reason === undefined ? {} : { reason }),
      version: fn.version,
    });
    return invocationId;
  }

  /** Fails every queued invocation with E_CLOSED, then resolves once nothing accepted is left running. */
  close(): Promise<void> {
    this.#closed = true;
    for (const fn of this.#o.registry.values()) {
      for (const inv of fn.queue.splice(0)) {
        const closed = new SluiceError(ErrorCode.Closed, "the runtime closed before the invocation started");
        this.settle(inv, "throttled", undefined, failure(closed, "throttled: closed", inv.invocationId));
      }
    }
    if (this.#pending === 0) return Promise.resolve();
    return new Promise<void>((resolveDrained) => (this.#onDrained = resolveDrained));
  }

  *#dispatched(): Iterable<Invocation> {
    for (const fn of this.#o.registry.values()) for (const inst of fn.instances) yield* inst.inflight.values();
  }

  #onTimeout(inv: Invocation): void {
    // The handler may be stuck in a loop: only terminating the instance stops it. Stopped first, so that
    // settling cannot hand the instance new work.
    if (inv.instance) this.#pool.stop(inv.instance);
    const timeout = new SluiceError(ErrorCode.HandlerTimeout, `timeout: ${inv.fn.name} ran past ${inv.fn.config.timeoutMs} ms`, { retryable: true });
    this.settle(inv, "timeout", undefined, failure(timeout, "timeout", inv.invocationId));
  }

  #throttled(fn: FunctionEntry, event: CloudEvent, attempt: number, why: string): never {
    const invocationId = this.meterNotRun(fn, event, attempt, "throttled", `throttled: ${why}`);
    throw failure(new SluiceError(ErrorCode.Throttled, `throttled: ${fn.name} ${why}`, { retryable: true }), `throttled: ${why}`, invocationId);
  }

  #meter(fn: FunctionEntry, record: InvocationRecord): void {
    addRecord(fn.counters, record);
    const { clock, publish, logger } = this.#o;
    if (fn.budget?.add(record, clock.now())) {
      publish([budgetExceeded(fn, fn.budget, clock.now())], undefined).catch((err: unknown) => logger.error({ err, functionName: fn.name }, "budget event not published"));
    }
    this.#o.onRecord(record);
  }

  #logger(inv: Invocation): Logger {
    inv.logger ??= this.#o.logger.child({
      function: inv.fn.name,
      invocationId: inv.invocationId,
      eventId: inv.event.id,
      attempt: inv.attempt,
      correlationId: inv.event[SluiceExtension.CorrelationId] ?? inv.event.id,
    });
    return inv.logger;
  }
}
