/**
 * The instances of every function: starts them for queued work (from zero up to each function's cap, within
 * the node-wide limit), hands them work, stops them when idle, stale or wanted by another function, and turns
 * an instance's exit into the failure of what it was running.
 */
import type { Clock } from "../clock.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { atCap, evictionVictim, isIdle, isReserved, liveCount, overShare, sharedPoolCount } from "./capacity.ts";
import { startInlineHost, startProcessHost, startWorkerHost, type ExitKind, type InstanceHost } from "./hosts.ts";
import { crashed, failure } from "./invocation-errors.ts";
import type { RuntimeLimits } from "./limits.ts";
import type { InvocationOutcome } from "./metering.ts";
import type { HostMessage, InstanceMessage } from "./protocol.ts";
import type { FunctionEntry, Instance, Invocation } from "./records.ts";
import type { FunctionRegistry } from "./registry.ts";
import type { InstanceChange, InvocationError } from "./runtime-types.ts";
import type { StandbyPool } from "./standby.ts";

/** What an instance reports about the work it was given. */
export type WorkMessage = Extract<InstanceMessage, { t: "done" | "emit" | "log" }>;

/** What the pool needs from the invocations it runs. */
export interface PoolWork {
  dispatch(inst: Instance, inv: Invocation): void;
  settle(inv: Invocation, outcome: InvocationOutcome, value: unknown, error: InvocationError | undefined): void;
  onMessage(inst: Instance, m: WorkMessage): void;
  onInstance(change: InstanceChange): void;
}

export class InstancePool {
  #nextInstanceId = 0;
  #rotation = 0;
  #closed = false;

  constructor(
    private readonly registry: FunctionRegistry,
    private readonly standby: StandbyPool,
    private readonly limits: RuntimeLimits,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly work: PoolWork,
  ) {}

  /** Hands queued work of `fn` to free instances and starts instances for the rest. True when it made progress. */
  pump(fn: FunctionEntry, maxStarts = Infinity): boolean {
    let progress = false;
    let starts = 0;
    while (fn.queue.length > 0) {
      const inst = this.#freeInstance(fn);
      if (inst) {
        this.work.dispatch(inst, fn.queue.shift()!);
        progress = true;
        continue;
      }
      let startingCapacity = 0;
      for (const i of fn.instances) if (i.state === "starting" && i.version === fn.version) startingCapacity += fn.config.instanceConcurrency;
      if (fn.queue.length <= startingCapacity || starts >= maxStarts || !this.#canStart(fn)) break;
      this.#start(fn);
      starts++;
      progress = true;
    }
    return progress;
  }

  /** Gives every function with waiting work a turn, one instance start at a time, round robin. */
  pumpAll(): void {
    let progress = true;
    while (progress) {
      progress = false;
      const waiting = [...this.registry.values()].filter((f) => f.queue.length > 0);
      for (let k = 0; k < waiting.length; k++) {
        const fn = waiting[(this.#rotation + k) % waiting.length]!;
        if (this.pump(fn, 1)) progress = true;
      }
      this.#rotation++;
    }
  }

  ensureMinInstances(fn: FunctionEntry): void {
    while (!this.#closed && liveCount(fn) < fn.config.minInstances && this.#canStart(fn)) this.#start(fn);
  }

  stop(inst: Instance): void {
    if (inst.state === "stopping") return;
    inst.state = "stopping";
    this.clock.clearTimeout(inst.idleTimer);
    inst.idleTimer = undefined;
    clearTimeout(inst.startTimer);
    void inst.host.terminate();
  }

  /** An invocation on `inst` settled (or it became ready): give it more work, or let it go idle or stop. */
  afterWork(inst: Instance): void {
    const fn = inst.fn;
    if (inst.state !== "ready") return;
    if (inst.version !== fn.version) {
      if (inst.inflight.size === 0) this.stop(inst);
      return;
    }
    if (inst.inflight.size === 0 && overShare(this.registry, this.#sharedPoolSize(), fn)) {
      // Another function of the shared pool waits for capacity and has less than its share: give this slot up.
      this.stop(inst);
      this.pumpAll();
      return;
    }
    if (fn.queue.length > 0) this.pump(fn);
    if (inst.inflight.size > 0) return;
    if ([...this.registry.values()].some((f) => f.queue.length > 0)) this.pumpAll();
    if (!isIdle(inst)) return;
    inst.idleSince = this.clock.now();
    if (inst.idleTimer === undefined) this.#armIdleTimer(inst, this.limits.idleTimeoutMs);
  }

  /** Starts no more instances (the runtime is closing). */
  close(): void {
    this.#closed = true;
  }

  /** Stops every instance at once (after close, once nothing runs). */
  terminateAll(): Promise<void>[] {
    const stopping: Promise<void>[] = [];
    for (const fn of this.registry.values()) {
      for (const i of fn.instances) {
        i.state = "stopping";
        this.clock.clearTimeout(i.idleTimer);
        clearTimeout(i.startTimer);
        stopping.push(i.host.terminate());
      }
    }
    return stopping;
  }

  #sharedPoolSize(): number {
    return this.limits.maxInstances - this.registry.reservedTotal;
  }

  #canStart(fn: FunctionEntry): boolean {
    if (this.#closed) return false;
    if (atCap(fn)) return false;
    if (isReserved(fn)) return true;
    if (sharedPoolCount(this.registry) < this.#sharedPoolSize()) return true;
    const victim = evictionVictim(this.registry, fn);
    if (!victim) return false;
    this.stop(victim);
    return true;
  }

  #freeInstance(fn: FunctionEntry): Instance | undefined {
    for (const i of fn.instances) {
      if (i.state === "ready" && i.version === fn.version && i.inflight.size < fn.config.instanceConcurrency) return i;
    }
    return undefined;
  }

  #start(fn: FunctionEntry): Instance {
    const inst: Instance = {
      id: ++this.#nextInstanceId,
      fn,
      version: fn.version,
      host: undefined as unknown as InstanceHost,
      state: "starting",
      inflight: new Map(),
      used: false,
      fromStandby: false,
      idleSince: 0,
      idleTimer: undefined,
      startTimer: undefined,
    };
    const hostEvents = {
      onMessage: (m: InstanceMessage) => this.#onMessage(inst, m),
      onExit: (kind: ExitKind, detail: string) => this.#onExit(inst, kind, detail),
      onSendFailed: (m: HostMessage, err: unknown) => this.#onSendFailed(inst, m, err),
    };
    if (fn.definition) inst.host = startInlineHost(fn.definition, hostEvents);
    else {
      const bundle = fn.bundle!;
      const hostOptions = {
        entry: this.registry.entry!,
        init: { moduleUrl: bundle.moduleUrl, functionName: fn.name },
        memoryMb: fn.config.memoryMb,
        readPaths: bundle.readPaths,
        bundleFile: bundle.outFile,
      };
      if (fn.config.isolation === "process") inst.host = startProcessHost(hostOptions, hostEvents);
      else {
        const standby = this.standby.take(fn.config.memoryMb);
        inst.fromStandby = standby !== undefined;
        inst.host = standby ? standby.adopt(hostOptions.init, hostEvents) : startWorkerHost(hostOptions, hostEvents);
        // The replacement (or the first standby after one failed) starts after this instance's first steps.
        setImmediate(() => this.standby.replenish());
      }
    }
    // Real time, not the clock's: starting a thread or process is real work, bounded whatever the clock says.
    inst.startTimer = setTimeout(() => {
      if (inst.state !== "starting") return;
      this.#failQueued(fn, `the instance did not start within ${this.limits.startTimeoutMs} ms`);
      this.stop(inst);
    }, this.limits.startTimeoutMs);
    fn.instances.add(inst);
    return inst;
  }

  #failQueued(fn: FunctionEntry, detail: string): void {
    for (const inv of fn.queue.splice(0)) this.work.settle(inv, "crashed", undefined, crashed(detail, inv.invocationId));
  }

  /**
   * One idle timer per idle period, not per invocation: work in between does not clear it; when it fires it
   * checks how long the instance has really been idle and waits for the rest if needed.
   */
  #armIdleTimer(inst: Instance, delayMs: number): void {
    inst.idleTimer = this.clock.setTimeout(() => {
      inst.idleTimer = undefined;
      if (!isIdle(inst)) return; // busy again: afterWork arms a new timer when it next becomes idle
      const idleForMs = this.clock.now() - inst.idleSince;
      if (idleForMs < this.limits.idleTimeoutMs) {
        this.#armIdleTimer(inst, this.limits.idleTimeoutMs - idleForMs);
        return;
      }
      const fn = inst.fn;
      let ready = 0;
      for (const i of fn.instances) if (i.state === "ready" && i.version === fn.version) ready++;
      if (ready > fn.config.minInstances || inst.version !== fn.version) this.stop(inst);
    }, delayMs);
    // An idle instance must not keep the process alive; the system clock's handles are Node timers.
    (inst.idleTimer as { unref?: () => void }).unref?.();
  }

  #onMessage(inst: Instance, m: InstanceMessage): void {
    switch (m.t) {
      case "ready": {
        if (inst.state !== "starting") return;
        clearTimeout(inst.startTimer);
        inst.state = "ready";
        this.work.onInstance({ functionName: inst.fn.name, instanceId: inst.id, version: inst.version, state: "ready", fromStandby: inst.fromStandby });
        this.afterWork(inst);
        return;
      }
      case "load-error": {
        this.#failQueued(inst.fn, `the function failed to load: ${m.error.message}`);
        this.stop(inst);
        return;
      }
      case "done":
      case "emit":
      case "log":
        this.work.onMessage(inst, m);
        return;
    }
  }

  /**
   * The event of an invocation could not be copied to its instance: the same event would fail the same way
   * on every attempt, so the invocation fails as final (dead-lettered), and the instance, which never saw it,
   * goes on.
   */
  #onSendFailed(inst: Instance, m: HostMessage, err: unknown): void {
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (m.t !== "invoke") {
      this.logger.warn({ functionName: inst.fn.name, message: m.t, err: why }, "a message to a function instance could not be copied");
      return;
    }
    const inv = inst.inflight.get(m.id);
    if (!inv) return;
    const reason = `undeliverable: the event could not be handed to an instance of ${inst.fn.name} (${why})`;
    this.work.settle(inv, "error", undefined, failure(new SluiceError(ErrorCode.EventInvalid, reason, { retryable: false }), reason, inv.invocationId));
  }

  #onExit(inst: Instance, kind: ExitKind, detail: string): void {
    const fn = inst.fn;
    const wasStarting = inst.state === "starting";
    inst.state = "stopping";
    this.clock.clearTimeout(inst.idleTimer);
    clearTimeout(inst.startTimer);
    fn.instances.delete(inst);
    for (const inv of [...inst.inflight.values()]) {
      if (kind === "out-of-memory") {
        const oom = new SluiceError(ErrorCode.HandlerOutOfMemory, `out-of-memory: ${fn.name} exceeded ${fn.config.memoryMb} MB`, { retryable: true });
        this.work.settle(inv, "out-of-memory", undefined, failure(oom, "out-of-memory", inv.invocationId));
      } else {
        this.work.settle(inv, "crashed", undefined, crashed(detail, inv.invocationId));
      }
    }
    if (wasStarting && kind !== "terminated") this.#failQueued(fn, detail);
    if (kind !== "terminated") this.logger.warn({ functionName: fn.name, kind, detail }, "function instance stopped");
    this.work.onInstance({ functionName: fn.name, instanceId: inst.id, version: inst.version, state: "stopped", exit: kind });
    if (this.#closed) return;
    this.ensureMinInstances(fn);
    this.pump(fn);
    this.pumpAll();
  }
}
