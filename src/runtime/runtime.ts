/**
 * The function runtime: loads function files, runs their handlers in isolated instances (worker threads or
 * child processes), scales instances from zero to each function's concurrency within a node-wide limit,
 * contains every failure to its invocation, meters what each invocation cost, and enforces idempotency,
 * recursive-loop and budget limits.
 */
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ErrorCode, NonRetriableError, RetryAfterError, SluiceError } from "../errors.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { StateStore } from "../store/contract.ts";
import { noopLogger, type Logger } from "../logger.ts";
import { defaultMemoryMb, isFunctionDefinition, normalizeFunctionConfig, type EmittedEvent, type FunctionConfig, type FunctionDefinition } from "./define.ts";
import { startInlineHost, startProcessHost, startStandbyWorker, startWorkerHost, type ExitKind, type InstanceHost, type StandbyWorker } from "./hosts.ts";
import { acquireInstanceEntry, bundleFunctions, describeBundles, releaseInstanceEntry, type Bundle } from "./loader.ts";
import { BudgetWindow, addRecord, emptyCounters, gbSeconds, type FunctionCounters, type InvocationOutcome, type InvocationRecord } from "./metering.ts";
import type { HostMessage, InstanceMessage, LogLevel, WireError } from "./protocol.ts";


export interface RuntimeLimits {
  /** Instances on this node, all functions together (default 32). */
  maxInstances: number;
  /** An idle instance above its function's `minInstances` stops after this long (default 60 s). */
  idleTimeoutMs: number;
  /** Invocations waiting for capacity per function; past it, E_THROTTLED (default 10 000). */
  maxQueuedPerFunction: number;
  /** ctx.signal aborts this long before the deadline (at most a tenth of the timeout; default 250 ms). */
  signalLeadMs: number;
  /** Hops an event chain may take through ctx.emit (default 16, Lambda's limit). */
  maxHops: number;
  /** An instance that has not answered `ready` within this time is failed as crashed (default 10 s). */
  startTimeoutMs: number;
  /**
   * Worker threads kept started ahead of need, with the instance entry loaded but no function (default 1;
   * 0 disables). A worker-mode cold start of a function whose memory setting matches adopts one instead of
   * starting a thread, and a replacement starts in the background. They belong to no function.
   */
  standbyWorkers: number;
}

export type FunctionSource = { file: string } | FunctionDefinition;

export interface RuntimeOptions {
  functions: FunctionSource[];
  /** Idempotency keys live here (required when a function sets `idempotency`). */
  state?: StateStore;
  /** Publishes events (ctx.emit children, sluice.* events). `parent` is the event being handled, if any. */
  emit: (events: CloudEvent[], parent: CloudEvent | undefined) => Promise<unknown>;
  logger?: Logger;
  limits?: Partial<RuntimeLimits>;
  clock?: { now(): number };
  /** Where bundled function files go (default: a folder in the OS temp dir). */
  cacheDir?: string;
  /** Reload a function when its file changes. */
  watch?: boolean;
}

export interface DeliverOptions {
  attempt: number;
  deliveryId?: string;
  signal?: AbortSignal;
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

interface Invocation {
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
  resolve(value: unknown): void;
  reject(err: InvocationError): void;
}

interface Instance {
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
  idleTimer: NodeJS.Timeout | undefined;
  startTimer: NodeJS.Timeout | undefined;
}

interface FunctionEntry {
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


const defaultLimits: RuntimeLimits = {
  maxInstances: 32,
  idleTimeoutMs: 60_000,
  maxQueuedPerFunction: 10_000,
  signalLeadMs: 250,
  maxHops: 16,
  startTimeoutMs: 10_000,
  standbyWorkers: 1,
};

const noValue = (): undefined => undefined;

function failure(err: SluiceError, reason: string, invocationId: string): InvocationError {
  return Object.assign(err, { reason, invocationId });
}

/** Rebuilds a handler's error on this side of the boundary, keeping what the bus branches on. */
function handlerError(wire: WireError, invocationId: string): InvocationError {
  const reason = `error: ${wire.message}`;
  let err: SluiceError;
  // By code first (what the bus branches on); the class name covers errors that lost their code on the way.
  if (wire.code === ErrorCode.NonRetriable || wire.name === "NonRetriableError") err = new NonRetriableError(wire.message);
  else if ((wire.code === ErrorCode.RetryAfter || wire.name === "RetryAfterError") && typeof wire.delayMs === "number" && Number.isFinite(wire.delayMs) && wire.delayMs >= 0) {
    err = new RetryAfterError(wire.delayMs, wire.message);
  }
  else err = new SluiceError(ErrorCode.HandlerError, reason, { retryable: true });
  if (wire.stack !== undefined) err.stack = wire.stack;
  return failure(err, reason, invocationId);
}

function readPath(event: CloudEvent, path: string): unknown {
  let cur: unknown = event;
  for (const part of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Creates a runtime and loads its functions (bundling each file and reading its definition in isolation). */
export async function createRuntime(options: RuntimeOptions): Promise<Runtime> {
  const limits: RuntimeLimits = { ...defaultLimits, ...options.limits };
  for (const [key, value] of Object.entries(limits)) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (key === "maxInstances" && value < 1)) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `runtime limits: ${key} must be a non-negative number`, { path: `$.limits.${key}` });
    }
  }
  const clock = options.clock ?? Date;
  const logger = options.logger ?? noopLogger;
  const hasLogger = options.logger !== undefined;
  const cacheDir = options.cacheDir ?? join(tmpdir(), "sluice-functions");
  const events = new EventEmitter();
  const fns = new Map<string, FunctionEntry>();
  const byFile = new Map<string, FunctionEntry>();
  const watchers: FSWatcher[] = [];
  let entry: string | undefined;
  let nextSeq = 0;
  let nextInstanceId = 0;
  let closed = false;
  let closing: Promise<void> | undefined;
  let rotation = 0;
  /** Invocations accepted and not yet settled (queued or running): close() waits for them. */
  let pendingCount = 0;
  let onDrained: (() => void) | undefined;
  let entryAcquired = false;
  const useEntry = (): Promise<string> => {
    if (!entryAcquired) {
      entryAcquired = true;
      return acquireInstanceEntry(cacheDir);
    }
    return entry ? Promise.resolve(entry) : acquireInstanceEntry(cacheDir).finally(() => releaseInstanceEntry(cacheDir));
  };

  // ---- loading -------------------------------------------------------------------------------------------

  /**
   * Bundles and describes function files: one esbuild call (cached bundles reused), then one child process that
   * reads every definition. When that shared child fails as a whole (a file crashed it or hung), each file is
   * described in a child of its own so the error names the file that caused it.
   */
  async function loadFiles(files: string[]): Promise<({ config: FunctionConfig; bundle: Bundle } | SluiceError)[]> {
    const entryReady = useEntry().then((e) => {
      entry ??= e;
    });
    entryReady.catch(() => undefined);
    const bundles = await bundleFunctions(files, cacheDir);
    const ok = bundles.filter((b): b is Bundle => !(b instanceof SluiceError));
    let described: ({ config: unknown } | { error: string })[] | undefined;
    if (ok.length > 1) described = await describeBundles(ok, cacheDir, limits.startTimeoutMs).catch(() => undefined);
    if (!described) {
      described = await Promise.all(
        ok.map((b) => describeBundles([b], cacheDir, limits.startTimeoutMs).then((r) => r[0] ?? { error: "no answer" }, (err: Error) => ({ error: err.message }))),
      );
    }
    await entryReady;
    let k = 0;
    return bundles.map((b, i) => {
      const file = files[i]!;
      if (b instanceof SluiceError) return b;
      const d = described[k++] ?? { error: "no answer" };
      try {
        if ("error" in d) throw new SluiceError(ErrorCode.ConfigInvalid, `function file failed to load: ${d.error}`);
        return { config: normalizeFunctionConfig(d.config), bundle: b };
      } catch (err) {
        if (err instanceof SluiceError) {
          err.message = `${file}: ${err.message}`;
          return err;
        }
        throw err;
      }
    });
  }

  async function loadFile(file: string): Promise<{ config: FunctionConfig; bundle: Bundle }> {
    const [r] = await loadFiles([file]);
    if (!r || r instanceof SluiceError) throw r ?? new SluiceError(ErrorCode.ConfigInvalid, `${file}: function file failed to load`);
    return r;
  }

  function addFunction(config: FunctionConfig, source: { file?: string; definition?: FunctionDefinition; bundle?: Bundle }): void {
    if (fns.has(config.name)) {
      throw new SluiceError(ErrorCode.AlreadyExists, `function "${config.name}" is defined twice`, { path: `$.functions` });
    }
    const fn: FunctionEntry = {
      name: config.name,
      file: source.file,
      definition: source.definition,
      config,
      version: 1,
      bundle: source.bundle,
      instances: new Set(),
      queue: [],
      counters: emptyCounters(),
      budget: config.budget ? new BudgetWindow(config.budget) : undefined,
      claims: new Map(),
    };
    fns.set(config.name, fn);
    if (source.file) byFile.set(source.file, fn);
  }

  let reservedTotal = 0;
  try {
    const files = options.functions.flatMap((source, i) => {
      if (isFunctionDefinition(source)) return [];
      if (typeof source !== "object" || source === null || typeof (source as { file?: unknown }).file !== "string") {
        throw new SluiceError(ErrorCode.ConfigInvalid, "runtime: each function must be { file } or a defineFunction result", { path: `$.functions[${i}]` });
      }
      return [resolve(source.file)];
    });
    const fromFiles = files.length > 0 ? await loadFiles(files) : [];
    const failed = fromFiles.find((r): r is SluiceError => r instanceof SluiceError);
    if (failed) throw failed;
    let f = 0;
    const loaded = options.functions.map((source) => {
      if (isFunctionDefinition(source)) return { config: normalizeFunctionConfig(source), definition: source };
      const r = fromFiles[f] as { config: FunctionConfig; bundle: Bundle };
      return { file: files[f++]!, ...r };
    });
    for (const l of loaded) addFunction(l.config, l);

    reservedTotal = [...fns.values()].reduce((n, f) => n + (f.config.reservedConcurrency ?? 0), 0);
    if (reservedTotal > limits.maxInstances) {
      throw new SluiceError(
        ErrorCode.ConfigInvalid,
        `runtime: reservedConcurrency adds up to ${reservedTotal}, more than limits.maxInstances (${limits.maxInstances})`,
        { path: "$.limits.maxInstances" },
      );
    }
    if ([...fns.values()].some((f) => f.config.idempotency) && !options.state) {
      throw new SluiceError(ErrorCode.ConfigInvalid, "runtime: a function sets idempotency but no state store was given", { path: "$.state" });
    }
  } catch (err) {
    if (entryAcquired) await releaseInstanceEntry(cacheDir);
    throw err;
  }
  if ([...fns.values()].some((f) => f.file)) entry = await useEntry();

  // ---- capacity ------------------------------------------------------------------------------------------

  const live = (i: Instance) => i.state !== "stopping";
  const isIdle = (i: Instance) => i.state === "ready" && i.inflight.size === 0;
  const fnCap = (fn: FunctionEntry) => Math.min(fn.config.concurrency ?? Infinity, fn.config.reservedConcurrency ?? Infinity);
  const isReserved = (fn: FunctionEntry) => fn.config.reservedConcurrency !== undefined;

  function liveCount(fn: FunctionEntry): number {
    let n = 0;
    for (const i of fn.instances) if (live(i)) n++;
    return n;
  }

  function sharedPoolCount(): number {
    let n = 0;
    for (const fn of fns.values()) if (!isReserved(fn)) n += liveCount(fn);
    return n;
  }

  /** Stops the least useful idle instance that frees a slot `fn` may use (same pool), if any. */
  function evictFor(fn: FunctionEntry): boolean {
    let victim: Instance | undefined;
    const candidates = isReserved(fn) ? [fn] : [...fns.values()].filter((f) => !isReserved(f));
    for (const f of candidates) {
      let keep = f.config.minInstances;
      for (const i of f.instances) {
        if (!isIdle(i)) continue;
        const stale = i.version !== f.version;
        if (!stale && f === fn) continue; // an idle instance of fn itself would have taken the work
        if (!stale && keep > 0) {
          keep--;
          continue;
        }
        victim = i;
        if (stale) break;
      }
      if (victim) break;
    }
    if (!victim) return false;
    stopInstance(victim);
    return true;
  }

  /** True when `fn` holds more than its fair share of the shared pool while another function starves for it. */
  function overShare(fn: FunctionEntry): boolean {
    if (isReserved(fn)) return false;
    const poolSize = limits.maxInstances - reservedTotal;
    if (sharedPoolCount() < poolSize) return false;
    const waiting = [...fns.values()].filter((f) => !isReserved(f) && f !== fn && f.queue.length > 0 && liveCount(f) < fnCap(f));
    if (waiting.length === 0) return false;
    const share = Math.max(1, Math.floor(poolSize / (waiting.length + 1)));
    return liveCount(fn) > share && waiting.some((f) => liveCount(f) < share);
  }

  function canStart(fn: FunctionEntry): boolean {
    if (closed) return false;
    if (liveCount(fn) >= fnCap(fn)) return false;
    if (isReserved(fn)) return true;
    if (sharedPoolCount() < limits.maxInstances - reservedTotal) return true;
    return evictFor(fn);
  }

  function freeInstance(fn: FunctionEntry): Instance | undefined {
    for (const i of fn.instances) {
      if (i.state === "ready" && i.version === fn.version && i.inflight.size < fn.config.instanceConcurrency) return i;
    }
    return undefined;
  }

  /** Hands queued work of `fn` to free instances and starts instances for the rest. True when it made progress. */
  function pump(fn: FunctionEntry, maxStarts = Infinity): boolean {
    let progress = false;
    let starts = 0;
    while (fn.queue.length > 0) {
      const inst = freeInstance(fn);
      if (inst) {
        dispatch(inst, fn.queue.shift()!);
        progress = true;
        continue;
      }
      let startingCapacity = 0;
      for (const i of fn.instances) if (i.state === "starting" && i.version === fn.version) startingCapacity += fn.config.instanceConcurrency;
      if (fn.queue.length <= startingCapacity || starts >= maxStarts || !canStart(fn)) break;
      startInstance(fn);
      starts++;
      progress = true;
    }
    return progress;
  }

  /** Gives every function with waiting work a turn, one instance start at a time, round robin. */
  function pumpAll(): void {
    let progress = true;
    while (progress) {
      progress = false;
      const waiting = [...fns.values()].filter((f) => f.queue.length > 0);
      for (let k = 0; k < waiting.length; k++) {
        const fn = waiting[(rotation + k) % waiting.length]!;
        if (pump(fn, 1)) progress = true;
      }
      rotation++;
    }
  }

  function ensureMinInstances(fn: FunctionEntry): void {
    while (!closed && liveCount(fn) < fn.config.minInstances && canStart(fn)) startInstance(fn);
  }

  // ---- standby workers -----------------------------------------------------------------------------------

  const standbys = new Set<StandbyWorker>();

  /**
   * The memory setting standby workers are started with (resourceLimits are fixed at thread start): the most
   * common one among worker-mode functions loaded from files, the default on a tie. None without such functions.
   */
  function standbyMemoryMb(): number | undefined {
    const counts = new Map<number, number>();
    for (const fn of fns.values()) {
      if (fn.file && fn.config.isolation !== "process") counts.set(fn.config.memoryMb, (counts.get(fn.config.memoryMb) ?? 0) + 1);
    }
    let best: number | undefined;
    let bestCount = 0;
    for (const [mb, n] of counts) {
      if (n > bestCount || (n === bestCount && mb === defaultMemoryMb)) {
        best = mb;
        bestCount = n;
      }
    }
    return best;
  }

  function takeStandby(memoryMb: number): StandbyWorker | undefined {
    let pick: StandbyWorker | undefined;
    for (const s of standbys) {
      if (s.memoryMb !== memoryMb) continue;
      pick = s;
      if (s.ready) break; // one that is up already, if there is one
    }
    if (pick) standbys.delete(pick);
    return pick;
  }

  /** Stops standbys of a memory setting no longer wanted and starts new ones up to limits.standbyWorkers. */
  function replenishStandby(): void {
    if (closed || !entry) return;
    const memoryMb = standbyMemoryMb();
    for (const s of [...standbys]) {
      if (s.memoryMb !== memoryMb) {
        standbys.delete(s);
        void s.terminate();
      }
    }
    if (memoryMb === undefined) return;
    while (standbys.size < limits.standbyWorkers) {
      const s: StandbyWorker = startStandbyWorker(entry, memoryMb, {
        onReady: () => undefined,
        onExit: (kind, detail) => {
          // Not restarted here (a thread that cannot start would loop): the next cold start replaces it.
          if (!standbys.delete(s)) return;
          if (kind !== "terminated") logger.warn({ kind, detail }, "standby worker stopped");
        },
      });
      standbys.add(s);
    }
  }

  // ---- instances -----------------------------------------------------------------------------------------

  function startInstance(fn: FunctionEntry): Instance {
    const inst: Instance = {
      id: ++nextInstanceId,
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
      onMessage: (m: InstanceMessage) => onInstanceMessage(inst, m),
      onExit: (kind: ExitKind, detail: string) => onInstanceExit(inst, kind, detail),
      onSendFailed: (m: HostMessage, err: unknown) => onSendFailed(inst, m, err),
    };
    if (fn.definition) inst.host = startInlineHost(fn.definition, hostEvents);
    else {
      const bundle = fn.bundle!;
      const hostOptions = {
        entry: entry!,
        init: { moduleUrl: bundle.moduleUrl, functionName: fn.name },
        memoryMb: fn.config.memoryMb,
        readPaths: bundle.readPaths,
        bundleFile: bundle.outFile,
      };
      if (fn.config.isolation === "process") inst.host = startProcessHost(hostOptions, hostEvents);
      else {
        const standby = takeStandby(fn.config.memoryMb);
        inst.fromStandby = standby !== undefined;
        inst.host = standby ? standby.adopt(hostOptions.init, hostEvents) : startWorkerHost(hostOptions, hostEvents);
        // The replacement (or the first standby after one failed) starts after this instance's first steps.
        setImmediate(replenishStandby);
      }
    }
    inst.startTimer = setTimeout(() => {
      if (inst.state !== "starting") return;
      failQueued(fn, `the instance did not start within ${limits.startTimeoutMs} ms`);
      stopInstance(inst);
    }, limits.startTimeoutMs);
    fn.instances.add(inst);
    return inst;
  }

  function stopInstance(inst: Instance): void {
    if (inst.state === "stopping") return;
    inst.state = "stopping";
    clearTimeout(inst.idleTimer);
    inst.idleTimer = undefined;
    clearTimeout(inst.startTimer);
    void inst.host.terminate();
  }

  function failQueued(fn: FunctionEntry, detail: string): void {
    const queued = fn.queue.splice(0);
    for (const inv of queued) {
      settle(inv, "crashed", undefined, failure(new SluiceError(ErrorCode.HandlerCrashed, `crashed: ${detail}`, { retryable: true }), "crashed", inv.invocationId));
    }
  }

  function afterWork(inst: Instance): void {
    const fn = inst.fn;
    if (inst.state !== "ready") return;
    if (inst.version !== fn.version) {
      if (inst.inflight.size === 0) stopInstance(inst);
      return;
    }
    if (inst.inflight.size === 0 && overShare(fn)) {
      // Another function of the shared pool waits for capacity and has less than its share: give this slot up.
      stopInstance(inst);
      pumpAll();
      return;
    }
    if (fn.queue.length > 0) pump(fn);
    if (inst.inflight.size > 0) return;
    if ([...fns.values()].some((f) => f.queue.length > 0)) pumpAll();
    if (!isIdle(inst)) return;
    inst.idleSince = Date.now();
    if (inst.idleTimer === undefined) armIdleTimer(inst, limits.idleTimeoutMs);
  }

  /**
   * One idle timer per idle period, not per invocation: work in between does not clear it; when it fires it
   * checks how long the instance has really been idle and waits for the rest if needed.
   */
  function armIdleTimer(inst: Instance, delayMs: number): void {
    inst.idleTimer = setTimeout(() => {
      inst.idleTimer = undefined;
      if (!isIdle(inst)) return; // busy again: afterWork arms a new timer when it next becomes idle
      const idleForMs = Date.now() - inst.idleSince;
      if (idleForMs < limits.idleTimeoutMs) {
        armIdleTimer(inst, limits.idleTimeoutMs - idleForMs);
        return;
      }
      const fn = inst.fn;
      let ready = 0;
      for (const i of fn.instances) if (i.state === "ready" && i.version === fn.version) ready++;
      if (ready > fn.config.minInstances || inst.version !== fn.version) stopInstance(inst);
    }, delayMs);
    inst.idleTimer.unref();
  }

  function onInstanceMessage(inst: Instance, m: InstanceMessage): void {
    switch (m.t) {
      case "ready": {
        if (inst.state !== "starting") return;
        clearTimeout(inst.startTimer);
        inst.state = "ready";
        notify("instance", { functionName: inst.fn.name, instanceId: inst.id, version: inst.version, state: "ready", fromStandby: inst.fromStandby } satisfies InstanceChange);
        afterWork(inst);
        return;
      }
      case "load-error": {
        failQueued(inst.fn, `the function failed to load: ${m.error.message}`);
        stopInstance(inst);
        return;
      }
      case "done": {
        const inv = inst.inflight.get(m.id);
        if (!inv) return;
        if (m.error) settle(inv, "error", undefined, handlerError(m.error, inv.invocationId));
        else settle(inv, "success", m.value, undefined);
        return;
      }
      case "emit": {
        const inv = inst.inflight.get(m.id);
        if (!inv) return;
        void emitChildren(inv, m.events).then(
          () => inst.host.send({ t: "emitted", reqId: m.reqId }),
          (err: unknown) => {
            const e = err as Error & { code?: string; retryable?: boolean };
            inst.host.send({
              t: "emitted",
              reqId: m.reqId,
              error: { name: e.name ?? "Error", message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}), ...(typeof e.retryable === "boolean" ? { retryable: e.retryable } : {}) },
            });
          },
        );
        return;
      }
      case "log": {
        if (!hasLogger) return;
        const inv = inst.inflight.get(m.id);
        const log = inv ? invocationLogger(inv) : logger.child({ function: inst.fn.name });
        log[m.level satisfies LogLevel](m.fields, m.msg);
        return;
      }
    }
  }

  /**
   * The event of an invocation could not be copied to its instance: the same event would fail the same way
   * on every attempt, so the invocation fails as final (dead-lettered), and the instance, which never saw it,
   * goes on.
   */
  function onSendFailed(inst: Instance, m: HostMessage, err: unknown): void {
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (m.t !== "invoke") {
      logger.warn({ functionName: inst.fn.name, message: m.t, err: why }, "a message to a function instance could not be copied");
      return;
    }
    const inv = inst.inflight.get(m.id);
    if (!inv) return;
    const reason = `undeliverable: the event could not be handed to an instance of ${inst.fn.name} (${why})`;
    settle(inv, "error", undefined, failure(new SluiceError(ErrorCode.EventInvalid, reason, { retryable: false }), reason, inv.invocationId));
  }

  function onInstanceExit(inst: Instance, kind: ExitKind, detail: string): void {
    const fn = inst.fn;
    const wasStarting = inst.state === "starting";
    inst.state = "stopping";
    clearTimeout(inst.idleTimer);
    clearTimeout(inst.startTimer);
    fn.instances.delete(inst);
    for (const inv of [...inst.inflight.values()]) {
      if (kind === "out-of-memory") {
        settle(inv, "out-of-memory", undefined, failure(new SluiceError(ErrorCode.HandlerOutOfMemory, `out-of-memory: ${fn.name} exceeded ${fn.config.memoryMb} MB`, { retryable: true }), "out-of-memory", inv.invocationId));
      } else {
        settle(inv, "crashed", undefined, failure(new SluiceError(ErrorCode.HandlerCrashed, `crashed: ${detail}`, { retryable: true }), "crashed", inv.invocationId));
      }
    }
    if (wasStarting && kind !== "terminated") failQueued(fn, detail);
    if (kind !== "terminated") logger.warn({ functionName: fn.name, kind, detail }, "function instance stopped");
    notify("instance", { functionName: fn.name, instanceId: inst.id, version: inst.version, state: "stopped", exit: kind } satisfies InstanceChange);
    if (closed) return;
    ensureMinInstances(fn);
    pump(fn);
    pumpAll();
  }

  // ---- invocations ---------------------------------------------------------------------------------------

  function invocationLogger(inv: Invocation): Logger {
    inv.logger ??= logger.child({
      function: inv.fn.name,
      invocationId: inv.invocationId,
      eventId: inv.event.id,
      attempt: inv.attempt,
      correlationId: inv.event[SluiceExtension.CorrelationId] ?? inv.event.id,
    });
    return inv.logger;
  }

  function dispatch(inst: Instance, inv: Invocation): void {
    inv.instance = inst;
    inv.cold = !inst.used;
    inst.used = true;
    inst.inflight.set(inv.seq, inv);
    const now = Date.now();
    inv.dispatchedAt = now;
    const timeoutMs = inv.fn.config.timeoutMs;
    const deadline = now + timeoutMs;
    inv.deadline = deadline;
    dispatchedCount++;
    armTimeouts(deadline);
    const lead = Math.min(limits.signalLeadMs, timeoutMs / 10);
    inst.host.send({ t: "invoke", id: inv.seq, event: inv.event, attempt: inv.attempt, invocationId: inv.invocationId, deadline, signalAt: deadline - lead });
  }

  // One timer for the deadlines of all dispatched invocations instead of a setTimeout per invocation. It is
  // armed for the earliest deadline (deadlines mostly grow, so dispatch rarely re-arms it) and cleared when
  // nothing is dispatched, so it keeps the process alive exactly while an invocation runs.
  let dispatchedCount = 0;
  let timeoutTimer: NodeJS.Timeout | undefined;
  let timeoutTimerAt = Infinity;

  function armTimeouts(deadline: number): void {
    if (deadline >= timeoutTimerAt) return;
    clearTimeout(timeoutTimer);
    timeoutTimerAt = deadline;
    timeoutTimer = setTimeout(sweepTimeouts, Math.max(1, deadline - Date.now()));
  }

  function disarmTimeouts(): void {
    clearTimeout(timeoutTimer);
    timeoutTimer = undefined;
    timeoutTimerAt = Infinity;
  }

  /** Times out every dispatched invocation past its deadline, then re-arms for the earliest one left. */
  function sweepTimeouts(): void {
    timeoutTimer = undefined;
    timeoutTimerAt = Infinity;
    const now = Date.now();
    const expired: Invocation[] = [];
    let next = Infinity;
    for (const fn of fns.values()) {
      for (const inst of fn.instances) {
        for (const inv of inst.inflight.values()) {
          if (inv.deadline <= now) expired.push(inv);
          else if (inv.deadline < next) next = inv.deadline;
        }
      }
    }
    for (const inv of expired) onTimeout(inv);
    if (next !== Infinity && dispatchedCount > 0) armTimeouts(next);
  }

  function onTimeout(inv: Invocation): void {
    // The handler may be stuck in a loop: only terminating the instance stops it. Stopped first, so that
    // settling cannot hand the instance new work.
    if (inv.instance) stopInstance(inv.instance);
    settle(inv, "timeout", undefined, failure(new SluiceError(ErrorCode.HandlerTimeout, `timeout: ${inv.fn.name} ran past ${inv.fn.config.timeoutMs} ms`, { retryable: true }), "timeout", inv.invocationId));
  }

  function settle(inv: Invocation, outcome: InvocationOutcome, value: unknown, error: InvocationError | undefined): void {
    if (inv.settled) return;
    inv.settled = true;
    if (inv.signal && inv.onAbort) inv.signal.removeEventListener("abort", inv.onAbort);
    const inst = inv.instance;
    if (inst) {
      inst.inflight.delete(inv.seq);
      if (--dispatchedCount === 0) disarmTimeouts();
    }
    let finalOutcome = outcome;
    let finalError = error;
    if (inv.loopDetected) {
      finalOutcome = "recursive-loop";
      finalError = failure(
        new SluiceError(ErrorCode.RecursiveLoop, `recursive-loop: the event chain went past ${limits.maxHops} hops`, { retryable: false }),
        "recursive-loop",
        inv.invocationId,
      );
    }
    const now = Date.now();
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
    meter(inv.fn, record);
    if (finalError) inv.reject(finalError);
    else inv.resolve(inv.keepValue ? value : undefined);
    if (--pendingCount === 0 && onDrained) onDrained();
    if (inst) afterWork(inst);
  }

  function meter(fn: FunctionEntry, record: InvocationRecord): void {
    addRecord(fn.counters, record);
    if (fn.budget && fn.budget.add(record, clock.now())) {
      const b = fn.config.budget!;
      const window = fn.budget;
      const event: CloudEvent = {
        specversion: "1.0",
        id: randomUUID(),
        source: "sluice/runtime",
        type: "sluice.budget.exceeded",
        time: new Date(clock.now()).toISOString(),
        subject: fn.name,
        data: {
          functionName: fn.name,
          budget: { gbSeconds: b.gbSeconds, invocations: b.invocations, perMs: b.perMs, throttle: b.throttle },
          windowStartAt: window.startAt,
          windowEndAt: window.endAt,
          invocations: window.counters.invocations,
          gbSeconds: window.counters.gbSeconds,
        },
      };
      options.emit([event], undefined).catch((err: unknown) => logger.error({ err, functionName: fn.name }, "budget event not published"));
    }
    notify("invocation", record);
  }

  function notify(name: "invocation" | "instance", payload: InvocationRecord | InstanceChange): void {
    if (events.listenerCount(name) === 0) return;
    try {
      events.emit(name, payload);
    } catch (err) {
      logger.error({ err, listener: name }, "runtime listener threw");
    }
  }

  async function emitChildren(inv: Invocation, emitted: EmittedEvent[]): Promise<void> {
    const parent = inv.event;
    const hops = (Number(parent[SluiceExtension.Hops]) || 0) + 1;
    const correlationId = parent[SluiceExtension.CorrelationId] ?? parent.id;
    if (hops > limits.maxHops) {
      if (!inv.loopDetected) {
        inv.loopDetected = true;
        const loopEvent: CloudEvent = {
          specversion: "1.0",
          id: randomUUID(),
          source: "sluice/runtime",
          type: "sluice.loop.detected",
          time: new Date(clock.now()).toISOString(),
          subject: inv.fn.name,
          [SluiceExtension.CorrelationId]: correlationId,
          data: { functionName: inv.fn.name, eventId: parent.id, eventType: parent.type, hops, maxHops: limits.maxHops },
        };
        await options.emit([loopEvent], parent).catch((err: unknown) => logger.error({ err, functionName: inv.fn.name }, "loop event not published"));
        logger.warn({ functionName: inv.fn.name, eventId: parent.id, correlationId, hops }, "recursive loop stopped");
      }
      throw new SluiceError(ErrorCode.RecursiveLoop, `recursive-loop: emitting from hop ${hops - 1} would pass the limit of ${limits.maxHops} hops`);
    }
    const time = new Date(clock.now()).toISOString();
    const children = emitted.map((e, i): CloudEvent => {
      if (typeof e !== "object" || e === null) throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: an event must be an object", { path: `$[${i}]` });
      if (typeof e.type !== "string" || e.type === "") throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: type must be a non-empty string", { path: `$[${i}].type` });
      if (typeof e.source !== "string" || e.source === "") throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: source must be a non-empty string", { path: `$[${i}].source` });
      const child: CloudEvent = { ...e, specversion: "1.0", id: typeof e.id === "string" ? e.id : randomUUID(), time: typeof e.time === "string" ? e.time : time, source: e.source, type: e.type };
      child[SluiceExtension.CorrelationId] = e[SluiceExtension.CorrelationId] ?? correlationId;
      const traceparent = e[SluiceExtension.TraceParent] ?? parent[SluiceExtension.TraceParent];
      if (traceparent !== undefined) child[SluiceExtension.TraceParent] = traceparent;
      child[SluiceExtension.Hops] = hops;
      return child;
    });
    await options.emit(children, parent);
  }

  /** Meters an invocation that never reached an instance (throttled, or skipped as an idempotent duplicate). */
  function meterNotRun(fn: FunctionEntry, event: CloudEvent, attempt: number, outcome: "throttled" | "skipped", reason?: string): string {
    const invocationId = randomUUID();
    meter(fn, {
      functionName: fn.name,
      invocationId,
      eventId: event.id,
      attempt,
      arrivedAt: Date.now(),
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

  function throttled(fn: FunctionEntry, event: CloudEvent, attempt: number, why: string): never {
    const invocationId = meterNotRun(fn, event, attempt, "throttled", `throttled: ${why}`);
    throw failure(new SluiceError(ErrorCode.Throttled, `throttled: ${fn.name} ${why}`, { retryable: true }), `throttled: ${why}`, invocationId);
  }

  function enqueue(fn: FunctionEntry, event: CloudEvent, attempt: number, signal: AbortSignal | undefined, keepValue: boolean): Promise<unknown> {
    if (closed) throw new SluiceError(ErrorCode.Closed, "the runtime is closed");
    if (fn.budget?.exceeded && fn.config.budget?.throttle) {
      fn.budget.roll(clock.now());
      if (fn.budget.exceeded) throttled(fn, event, attempt, `is over its budget until ${new Date(fn.budget.endAt).toISOString()}`);
    }
    if (fn.queue.length >= limits.maxQueuedPerFunction) throttled(fn, event, attempt, `has ${fn.queue.length} invocations waiting`);
    return new Promise<unknown>((resolvePromise, rejectPromise) => {
      pendingCount++;
      const inv: Invocation = {
        seq: ++nextSeq,
        invocationId: randomUUID(),
        fn,
        event,
        attempt,
        arrivedAt: Date.now(),
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
            settle(inv, "throttled", undefined, failure(new SluiceError(ErrorCode.Throttled, "cancelled before it started", { retryable: true }), "throttled: cancelled", inv.invocationId));
          }
        };
        if (signal.aborted) {
          inv.onAbort();
          return;
        }
        signal.addEventListener("abort", inv.onAbort, { once: true });
      }
      fn.queue.push(inv);
      if (!pump(fn)) pumpAll();
    });
  }

  async function runIdempotent(fn: FunctionEntry, event: CloudEvent, attempt: number, signal: AbortSignal | undefined): Promise<unknown> {
    const idem = fn.config.idempotency!;
    const state = options.state!;
    const raw = idem.key === undefined ? `${event.source}\n${event.id}` : readPath(event, idem.key);
    if (raw === undefined || raw === null || typeof raw === "object") {
      throw new SluiceError(ErrorCode.EventInvalid, `idempotency key ${idem.key} is missing from the event or not a scalar`, { path: `$.${idem.key}` });
    }
    const key = String(raw);
    const ns = `idempotency:${fn.name}`;
    const skipped = (value: unknown): unknown => {
      meterNotRun(fn, event, attempt, "skipped");
      return value;
    };
    for (;;) {
      // A duplicate on this node waits for the first and takes its result (or tries again if it failed).
      const local = fn.claims.get(key);
      if (local) {
        const outcome = await local.then((value) => ({ value }), () => undefined);
        if (outcome) return skipped(outcome.value);
        continue;
      }
      let done!: (value: unknown) => void;
      let fail!: (err: unknown) => void;
      const mine = new Promise<unknown>((res, rej) => {
        done = res;
        fail = rej;
      });
      mine.catch(() => undefined);
      fn.claims.set(key, mine);
      let claimed = false;
      try {
        claimed = await state.putIfAbsent(ns, key, JSON.stringify({ status: "running", at: clock.now() }), {
          now: clock.now(),
          ttlMs: fn.config.timeoutMs + 60_000,
        });
        if (claimed) {
          const value = await enqueue(fn, event, attempt, signal, true);
          await state.put(ns, key, JSON.stringify(value === undefined ? { status: "done" } : { status: "done", value }), { now: clock.now(), ttlMs: idem.ttlMs });
          done(value);
          return value;
        }
        const current = await state.get(ns, key, { now: clock.now() });
        if (current === undefined) {
          fail(new Error("claim expired"));
          continue; // expired between the two calls: claim again
        }
        const parsed = JSON.parse(current) as { status: string; value?: unknown };
        if (parsed.status === "done") {
          done(parsed.value);
          return skipped(parsed.value);
        }
        // Another node runs this key: fail the attempt so it is retried after that one finished or let go.
        throw new SluiceError(ErrorCode.Throttled, `throttled: an invocation with idempotency key ${key} is running elsewhere`, { retryable: true });
      } catch (err) {
        if (claimed) await state.delete(ns, key).catch((e: unknown) => logger.error({ err: e, functionName: fn.name }, "idempotency claim not released"));
        fail(err);
        throw err;
      } finally {
        if (fn.claims.get(key) === mine) fn.claims.delete(key);
      }
    }
  }

  function lookup(name: string): FunctionEntry {
    const fn = fns.get(name);
    if (!fn) throw new SluiceError(ErrorCode.FunctionNotFound, `function "${name}" does not exist`);
    return fn;
  }

  /** Not async (a warm call makes one promise, the invocation's own); refusals come back as rejections. */
  function run(name: string, event: CloudEvent, attempt: number, signal: AbortSignal | undefined, keepValue: boolean): Promise<unknown> {
    try {
      if (closed) throw new SluiceError(ErrorCode.Closed, "the runtime is closed");
      const fn = lookup(name);
      if (fn.config.idempotency) {
        const result = runIdempotent(fn, event, attempt, signal);
        return keepValue ? result : result.then(noValue);
      }
      return enqueue(fn, event, attempt, signal, keepValue);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // ---- reload and close ----------------------------------------------------------------------------------

  async function reload(file: string): Promise<void> {
    const path = resolve(file);
    const fn = byFile.get(path);
    if (!fn) throw new SluiceError(ErrorCode.FunctionNotFound, `no function was loaded from ${path}`);
    const next = await loadFile(path);
    if (next.config.name !== fn.name) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `${path}: a reload cannot rename function "${fn.name}" to "${next.config.name}"`, { path: "$.name" });
    }
    fn.bundle = next.bundle;
    fn.config = next.config;
    fn.version++;
    if (next.config.budget && !fn.budget) fn.budget = new BudgetWindow(next.config.budget);
    for (const i of [...fn.instances]) if (i.state !== "ready" || i.inflight.size === 0) {
      if (i.state !== "stopping") stopInstance(i);
    }
    logger.info({ functionName: fn.name, version: fn.version }, "function reloaded");
    replenishStandby(); // the most common memory setting may have changed
    ensureMinInstances(fn);
    pump(fn);
  }

  if (options.watch) {
    for (const fn of fns.values()) {
      if (!fn.file) continue;
      const file = fn.file;
      let timer: NodeJS.Timeout | undefined;
      const w = watch(file, () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          reload(file).catch((err: unknown) => logger.error({ err, file }, "function reload failed"));
        }, 50);
      });
      watchers.push(w);
    }
  }

  for (const fn of fns.values()) ensureMinInstances(fn);
  // After loading, not during it: the caller gets the runtime without waiting for a thread that no work needs yet.
  setImmediate(replenishStandby).unref();

  const runtime: Runtime = {
    invoke(name, event, opts) {
      return run(name, event, opts?.attempt ?? 1, opts?.signal, true);
    },
    deliver(functionName, event, opts) {
      // A function this node does not have (yet: a rolling deploy) is retried, not dead-lettered on the spot.
      if (!closed && !fns.has(functionName)) {
        return Promise.reject(new SluiceError(ErrorCode.FunctionNotFound, `function "${functionName}" does not exist on this node`, { retryable: true }));
      }
      // Resolves with undefined: enqueue drops the value unless the caller keeps it.
      return run(functionName, event, opts.attempt, opts.signal, false) as Promise<void>;
    },
    functions: () => [...fns.values()].map((f) => f.config),
    metrics() {
      let standby = 0;
      for (const s of standbys) if (s.ready) standby++;
      const totals: InstanceCounts & { total: number; standby: number } = { starting: 0, idle: 0, busy: 0, total: 0, standby };
      const functions: RuntimeMetrics["functions"] = {};
      for (const fn of fns.values()) {
        const counts: InstanceCounts = { starting: 0, idle: 0, busy: 0 };
        let inflight = 0;
        for (const i of fn.instances) {
          if (i.state === "stopping") continue;
          inflight += i.inflight.size;
          if (i.state === "starting") counts.starting++;
          else if (i.inflight.size === 0) counts.idle++;
          else counts.busy++;
        }
        totals.starting += counts.starting;
        totals.idle += counts.idle;
        totals.busy += counts.busy;
        totals.total += counts.starting + counts.idle + counts.busy;
        fn.budget?.roll(clock.now());
        functions[fn.name] = {
          ...fn.counters,
          instances: counts,
          queued: fn.queue.length,
          inflight,
          version: fn.version,
          ...(fn.budget
            ? {
                budget: {
                  windowStartAt: fn.budget.startAt,
                  windowEndAt: fn.budget.endAt,
                  invocations: fn.budget.counters.invocations,
                  gbSeconds: fn.budget.counters.gbSeconds,
                  exceeded: fn.budget.exceeded,
                },
              }
            : {}),
        };
      }
      return { instances: totals, functions };
    },
    on(name: "invocation" | "instance", listener: (payload: never) => void) {
      const l = listener as (payload: unknown) => void;
      events.on(name, l);
      return () => events.off(name, l);
    },
    reload,
    close() {
      closing ??= (async () => {
        closed = true;
        for (const w of watchers) w.close();
        for (const fn of fns.values()) {
          for (const inv of fn.queue.splice(0)) {
            settle(inv, "throttled", undefined, failure(new SluiceError(ErrorCode.Closed, "the runtime closed before the invocation started"), "throttled: closed", inv.invocationId));
          }
        }
        const stopping: Promise<void>[] = [...standbys].map((s) => s.terminate());
        standbys.clear();
        if (pendingCount > 0) await new Promise<void>((resolveDrained) => (onDrained = resolveDrained));
        for (const fn of fns.values()) {
          for (const i of fn.instances) {
            i.state = "stopping";
            clearTimeout(i.idleTimer);
            clearTimeout(i.startTimer);
            stopping.push(i.host.terminate());
          }
        }
        await Promise.allSettled(stopping);
        if (entryAcquired) await releaseInstanceEntry(cacheDir);
      })();
      return closing;
    },
  };
  return runtime;
}
