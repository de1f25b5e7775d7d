/**
 * The composition root: config -> logger -> store -> broker -> runtime -> schedules -> HTTP.
 *
 * `startServer` is what `sluice dev` and `sluice start` run. It owns every long-lived part and closes them in
 * reverse order on `close()` (SIGTERM in the CLI): stop taking work (HTTP, schedules), let in-flight deliveries
 * and invocations finish within the grace period, release the rest of the leases, close the store.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { multistream, pino, type Logger as PinoLogger } from "pino";
import { createBroker, publishNormalized, type Broker } from "../bus/broker.ts";
import type { PublishResult, RuleInput } from "../bus/types.ts";
import { SluiceError } from "../errors.ts";
import type { NormalizedEvent } from "../event/normalize.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import type { TargetHandler } from "../bus/targets/target.ts";
import { HttpIngestSource } from "../triggers/http/ingest.ts";
import { sourceRegistry } from "../triggers/registry.ts";
import { ScheduleSource } from "../triggers/schedule/source.ts";
import type { Scheduler } from "../triggers/schedules.ts";
import type { SourceKind } from "../triggers/source.ts";
import { openStore } from "../store/registry.ts";
import { KeyStore } from "../auth/key-store.ts";
import { AuditLog } from "./audit.ts";
import { bootstrapKey, requireKeys } from "./auth-setup.ts";
import { defaultRetentionMs, queueName } from "../bus/definitions.ts";
import { LineageRecorder, parseQueue } from "../telemetry/lineage-recorder.ts";
import { readLineage } from "../telemetry/lineage-tree.ts";
import { createTracing } from "../telemetry/tracing.ts";
import { Alerts } from "../telemetry/alerts.ts";
import { publishError } from "../bus/publish-error.ts";
import { registerAdmin } from "./admin.ts";
import { resolveTracing } from "./tracing-config.ts";
import { ConfigError, validateApp, type ServerConfig, type ValidatedApp } from "./config.ts";
import { createHttpServer, gatewayEventType, gatewaySource } from "./http.ts";
import { loadAppModule } from "./load-app.ts";
import { createLogBuffer, type LogBuffer } from "./log-buffer.ts";
import { createMetrics, type DeliveryOutcome, type Metrics } from "./metrics.ts";
import { createSourceRunner, type SourceRunner } from "./sources.ts";
import { enqueueRejected, rejectedQueue } from "../triggers/rejected.ts";
import { resolveSettings, type Mode, type Settings } from "./settings.ts";
import { functionQueue, functionRules, runtimeEmit, wireRuntime } from "./wire.ts";
import { systemClock } from "../clock.ts";
import { WorkflowEngine } from "../workflows/engine.ts";
import { workflowRules } from "../workflows/rules.ts";
import { workflowTarget } from "../workflows/target.ts";

export interface StartServerOptions {
  /** The app folder (holding sluice.config.ts). */
  appDir: string;
  mode: Mode;
  /** Flags; they override the config file and the environment. */
  flags?: ServerConfig;
  /** Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Where logs go (default stdout): pretty in dev, JSON lines in start. */
  logDestination?: NodeJS.WritableStream;
  /** Rule target kinds besides the built-in ones. */
  targets?: readonly TargetHandler[];
  /** Event source kinds besides the built-in ones. */
  sources?: readonly SourceKind[];
  /**
   * `sluice start` checks API keys unless this is true (`--no-auth`); `sluice dev` never does. The bootstrap
   * admin key comes from `SLUICE_ADMIN_KEY`, or the file named by `adminKeyFile` / `SLUICE_ADMIN_KEY_FILE`.
   */
  noAuth?: boolean;
  adminKeyFile?: string;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly settings: Settings;
  readonly app: ValidatedApp;
  readonly logger: PinoLogger;
  readonly broker: Broker;
  readonly runtime: Runtime;
  /** The schedules of every schedule source. */
  readonly scheduler: Pick<Scheduler, "status">;
  readonly sources: SourceRunner;
  readonly metrics: Metrics;
  /** Workflow runs: listing, inspection, cancel. */
  readonly workflows: WorkflowEngine;
  /** Graceful shutdown; idempotent. */
  close(): Promise<void>;
}

export { functionQueue, functionRuleName } from "./wire.ts";
/** The implicit rule that carries an async route's requests to its function. */
export const routeRuleName = (method: string, path: string) =>
  `route.${method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+/g, "_")}`.slice(0, 64);
const configRuleMark = "managed by sluice.config";

function createLogger(settings: Settings, buffer: LogBuffer, destination: NodeJS.WritableStream): PinoLogger {
  const ring = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      buffer.write(chunk.toString());
      cb();
    },
  });
  let out: NodeJS.WritableStream = destination;
  if (settings.mode === "dev") {
    // pino-pretty is a devDependency-free optional: loaded lazily, plain JSON when it is missing.
    out = prettyStream(destination) ?? destination;
  }
  const level = settings.logLevel;
  return pino(
    { level, base: null, timestamp: pino.stdTimeFunctions.epochTime },
    multistream([
      { level: level === "silent" ? "fatal" : level, stream: out },
      { level: "trace", stream: ring },
    ]),
  );
}

let prettyFactory: ((opts: object) => NodeJS.WritableStream) | undefined;
function prettyStream(destination: NodeJS.WritableStream): NodeJS.WritableStream | undefined {
  if (!prettyFactory) return undefined;
  return prettyFactory({
    destination,
    sync: true,
    colorize: (destination as { isTTY?: boolean }).isTTY === true,
    ignore: "pid,hostname,component,invocationId,correlationId,function,functionName",
    translateTime: "HH:MM:ss.l",
    singleLine: true,
    messageFormat: "{if function}[{function}] {end}{if functionName}[{functionName}] {end}{msg}",
  });
}

async function loadPretty(): Promise<void> {
  if (prettyFactory) return;
  try {
    const mod = (await import("pino-pretty")) as unknown as { default: (opts: object) => NodeJS.WritableStream };
    prettyFactory = mod.default;
  } catch {
    prettyFactory = undefined;
  }
}

/** `telemetry.lineage` as written (validated with the rest of the app later); default on. */
function lineageWanted(exported: unknown): boolean {
  const t = (exported as { telemetry?: { lineage?: unknown } } | undefined)?.telemetry;
  return !(t && typeof t === "object" && t.lineage === false);
}

/** Lineage is kept as long as the bus's archive; records not tied to a bus use the default bus's. */
function retentionOf(broker: Broker | undefined, bus: string | undefined): number {
  if (broker === undefined) return defaultRetentionMs;
  try {
    return broker.getBus(bus ?? "default").retentionMs;
  } catch {
    return defaultRetentionMs;
  }
}

/** The kind of a queue's target (`function`, `webhook`, `bus`, …); `unknown` once its rule is gone. */
function targetKindOf(broker: Broker, queue: string): string {
  const ref = parseQueue(queue);
  if (ref === undefined) return "unknown";
  try {
    const t = broker.getRule(ref.rule, { bus: ref.bus }).targets.find((x) => x.id === ref.target);
    return t === undefined ? "unknown" : (Object.keys(t).find((k) => k !== "id" && k !== "inputTransformer" && k !== "retryPolicy") ?? "unknown");
  } catch {
    return "unknown";
  }
}

/** The function a queue's target runs (`rule:bus/rule/target`), if it is a function target. */
function functionOfQueue(broker: Broker | undefined, queue: string): string | undefined {
  const ref = parseQueue(queue);
  if (broker === undefined || ref === undefined) return undefined;
  try {
    const t = broker.getRule(ref.rule, { bus: ref.bus }).targets.find((x) => x.id === ref.target) as { function?: unknown } | undefined;
    return typeof t?.function === "string" ? t.function : undefined;
  } catch {
    return undefined;
  }
}

/** Rules the app implies: functions' `on` patterns, async routes, and the config's own rules. */
function desiredRules(app: ValidatedApp, runtime: Runtime, engine: WorkflowEngine): RuleInput[] {
  const rules: RuleInput[] = [...functionRules(runtime.functions()), ...workflowRules(engine.workflows())];
  for (const r of app.routes) {
    if (!r.async) continue;
    rules.push({
      name: routeRuleName(r.method, r.path),
      bus: "default",
      pattern: { source: [gatewaySource], type: [gatewayEventType], subject: [r.key] },
      description: `async route ${r.key}`,
      targets: [{ id: "fn", function: r.function }],
    });
  }
  for (const r of app.rules) {
    rules.push({
      name: r.name,
      bus: r.bus,
      pattern: r.pattern,
      enabled: r.enabled,
      description: r.description ? `${r.description} (${configRuleMark})` : configRuleMark,
      targets: [...r.targets],
    });
  }
  return rules;
}

/** Applies the app's buses and rules, and removes rules an earlier version of the app created but no longer has. */
async function applyDefinitions(app: ValidatedApp, runtime: Runtime, broker: Broker, engine: WorkflowEngine): Promise<void> {
  for (const b of app.buses) {
    await broker.putBus({ name: b.name, ...(b.retentionMs === undefined ? {} : { retentionMs: b.retentionMs }), ...(b.description ? { description: b.description } : {}) });
  }
  const wanted = desiredRules(app, runtime, engine);
  const names = new Set(wanted.map((r) => `${r.bus ?? "default"}/${r.name}`));
  for (const r of wanted) await broker.putRule(r);
  for (const r of broker.listRules()) {
    const managed = r.name.startsWith("function.") || r.name.startsWith("route.") || r.name.startsWith("workflow.") || (r.description ?? "").includes(configRuleMark);
    if (managed && !names.has(`${r.bus}/${r.name}`)) await broker.deleteRule(r.name, { bus: r.bus });
  }
}

/** Starts a Sluice server for the app in `appDir`. Throws ConfigError (every problem listed) on a bad app. */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const env = options.env ?? process.env;
  const mod = await loadAppModule(options.appDir);
  const fileServer = (mod.exported as { server?: unknown } | undefined)?.server;
  const settings = resolveSettings({
    appDir: options.appDir,
    mode: options.mode,
    ...(fileServer && typeof fileServer === "object" ? { file: fileServer as ServerConfig } : {}),
    fileName: mod.configFile,
    env,
    ...(options.flags ? { flags: options.flags } : {}),
  });
  if (settings.mode === "dev") await loadPretty();
  const logs = createLogBuffer();
  const logger = createLogger(settings, logs, options.logDestination ?? process.stdout);
  const startedAt = Date.now();
  const metrics = createMetrics();

  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      await c().catch((err: unknown) => logger.error({ err }, "shutdown step failed"));
    }
  };

  try {
    const store = await openStore(settings.store);
    closers.push(() => store.close());
    let engine: WorkflowEngine | undefined;
    if (store.reclaimedLeases) {
      logger.info({ leases: store.reclaimedLeases }, "took back the leases of a process that died: their deliveries run again now");
    }

    const authOn = settings.mode === "start" && options.noAuth !== true;
    const adminKey = bootstrapKey(env, options.adminKeyFile);
    const keys = new KeyStore(store.state, adminKey === undefined ? {} : { bootstrapKey: adminKey });
    if (!authOn && settings.mode === "start") logger.warn({}, "API keys are not checked (--no-auth): anyone who reaches the port may publish, invoke and administer");
    // The app's telemetry key is read before the broker exists: lineage and tracing hook into its publish path.
    const telemetry = lineageWanted(mod.exported);
    const exported = mod.exported as { name?: unknown; telemetry?: unknown } | undefined;
    const tracingOptions = resolveTracing(exported?.telemetry, env, typeof exported?.name === "string" ? exported.name : "sluice", mod.configFile);
    const tracing = tracingOptions === undefined ? undefined : await createTracing(tracingOptions);
    if (tracing) {
      closers.push(() => tracing.close());
      logger.info({ endpoint: tracingOptions!.endpoint, protocol: tracingOptions!.protocol }, "exporting traces");
    }
    let brokerRef: Broker | undefined;
    const lineage = telemetry
      ? new LineageRecorder({
          state: store.state,
          now: () => Date.now(),
          logger: logger.child({ component: "lineage" }),
          retentionMs: (bus) => retentionOf(brokerRef, bus),
          functionOf: (queue) => functionOfQueue(brokerRef, queue),
          onDropped: (n) => metrics.lineageDropped(n),
        })
      : undefined;
    if (lineage) closers.push(() => lineage.close());

    const broker = await createBroker({
      store,
      logger: logger.child({ component: "bus" }),
      limits: {
        closeGraceMs: settings.shutdownGraceMs,
        ...(settings.maxPendingDeliveries === undefined ? {} : { maxPendingDeliveries: settings.maxPendingDeliveries }),
        ...(settings.maxQueuedEntries === undefined ? {} : { maxQueuedEntries: settings.maxQueuedEntries }),
      },
      // Delivery starts once the runtime is its function handler (wireRuntime below).
      startDispatcher: false,
      allowPrivateNetworks: settings.allowPrivateNetworks,
      targets: [...(options.targets ?? []), workflowTarget(() => engine)],
      ...(lineage ? { onStored: (stored) => lineage.stored(stored) } : {}),
      ...(tracing ? { tracing } : {}),
    });
    brokerRef = broker;
    closers.push(() => broker.close());
    if (lineage) {
      broker.on("delivered", (e) => lineage.attempt("delivered", e));
      broker.on("retry", (e) => lineage.attempt("retry", e));
      broker.on("dead", (e) => lineage.attempt("dead", e));
    }

    const inChunks =
      <T>(send: (bus: string, chunk: T[]) => Promise<PublishResult>) =>
      async (bus: string, events: T[]): Promise<PublishResult> => {
        if (events.length <= 100) return send(bus, events);
        const entries: PublishResult["entries"] = [];
        let failedEntryCount = 0;
        for (let i = 0; i < events.length; i += 100) {
          const out = await send(bus, events.slice(i, i + 100));
          entries.push(...out.entries);
          failedEntryCount += out.failedEntryCount;
        }
        return { failedEntryCount, entries };
      };
    const publish = inChunks<unknown>((bus, chunk) => broker.publish(bus, chunk));
    const publishValidated = inChunks<NormalizedEvent>((bus, chunk) => publishNormalized(broker, bus, chunk));

    const runtime = await createRuntime({
      functions: mod.functionFiles.map((file) => ({ file })),
      state: store.state,
      emit: runtimeEmit(
        publish,
        (bus, accepted) => metrics.published(bus, accepted),
        lineage ? (parent, accepted, origin) => lineage.emitted(parent.id, accepted, origin) : undefined,
      ),
      logger: logger.child({ component: "runtime" }),
      watch: settings.mode === "dev",
      cacheDir: join(settings.dataDir, "functions"),
      ...(tracing ? { tracing } : {}),
      limits: {
        ...(settings.maxInstances === undefined ? {} : { maxInstances: settings.maxInstances }),
        ...(settings.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: settings.idleTimeoutMs }),
      },
    }).catch((err: unknown) => {
      // A function file that does not load is a config problem: name the file and the error.
      if (err instanceof SluiceError && !(err instanceof ConfigError)) {
        throw new ConfigError(mod.configFile, [{ key: "functions", message: err.message, fix: "fix that function file" }]);
      }
      throw err;
    });
    // Shutdown order: the broker first (stop leasing, finish in-flight deliveries, release the rest), then the runtime.
    closers.pop();
    closers.push(async () => {
      await broker.close();
      engine?.close();
      await runtime.close();
    });

    const app = validateApp(mod.exported, {
      file: mod.configFile,
      ...(options.targets ? { targets: options.targets } : {}),
      ...(options.sources ? { sources: options.sources } : {}),
      functions: runtime.functions().map((f) => ({ name: f.name, file: f.name, ...(f.on === undefined ? {} : { on: f.on }) })),
    });

    // After the app is validated, so a broken config is reported as such first.
    if (authOn) await requireKeys(keys, mod.configFile, settings.store);

    try {
      engine = new WorkflowEngine({ store, broker, runtime, functions: runtime.functions(), clock: systemClock, logger: logger.child({ component: "workflows" }) });
    } catch (err) {
      if (err instanceof SluiceError) throw new ConfigError(mod.configFile, [{ key: "functions", message: err.message, fix: "fix that workflow definition" }]);
      throw err;
    }
    const workflows = engine;
    await wireRuntime(broker, runtime, () => applyDefinitions(app, runtime, broker, workflows));
    await workflows.start();

    runtime.on("invocation", (r) => metrics.invocation(r.functionName, r.outcome, r.durationMs, r.gbSeconds));
    const onAttempt = (outcome: DeliveryOutcome) => (e: { queue: string; attempt: number; enqueuedAt: number; startedAt: number }) => {
      const ref = parseQueue(e.queue);
      const target = ref === undefined ? e.queue : `${ref.bus}/${ref.rule}/${ref.target}`;
      metrics.delivery(target, targetKindOf(broker, e.queue), outcome, e.attempt === 1 ? e.startedAt - e.enqueuedAt : undefined);
    };
    broker.on("delivered", onAttempt("delivered"));
    broker.on("retry", onAttempt("retry"));
    broker.on("dead", onAttempt("dead"));
    if (lineage) runtime.on("invocation", (r) => lineage.run(r));
    metrics.setSources({
      async backlog() {
        const stats = new Map((await broker.queueStats()).map((s) => [s.queue, s]));
        const out: Record<string, number> = {};
        for (const f of runtime.functions()) {
          const s = stats.get(functionQueue(f.name));
          out[f.name] = s ? s.ready + s.delayed + s.leased : 0;
        }
        return out;
      },
      async deadLetters() {
        const out: Record<string, number> = {};
        for (const s of await broker.queueStats()) out[s.queue.replace(/^rule:/, "")] = s.dead;
        return out;
      },
      sourceLag() {
        const out: Record<string, number> = {};
        for (const s of sources.list()) if (s.lag !== undefined) out[s.name] = s.lag;
        return out;
      },
      instances() {
        const out: Record<string, Record<string, number>> = {};
        for (const [name, f] of Object.entries(runtime.metrics().functions)) out[name] = { ...f.instances };
        return out;
      },
      async queueStats() {
        // Every rule target shows, also while its queue is empty (the store lists only queues holding something).
        const held = await broker.queueStats();
        const known = new Set(held.map((q) => q.queue));
        for (const r of broker.listRules()) {
          for (const t of r.targets) {
            const queue = queueName(r.bus, r.name, t.id);
            if (!known.has(queue)) held.push({ queue, ready: 0, delayed: 0, leased: 0, dead: 0 });
          }
        }
        return held;
      },
      async oldestDeadAt(queue) {
        const [oldest] = await store.admin.listDead(queue, { limit: 1 });
        return oldest?.deadAt;
      },
      sourceLagBytes() {
        const out: Record<string, number> = {};
        for (const s of sources.list()) if (s.details?.role === "leader" && typeof s.details.lagBytes === "number") out[s.name] = s.details.lagBytes;
        return out;
      },
    });

    const alerts = new Alerts({
      alerts: app.alerts,
      logger: logger.child({ component: "alerts" }),
      now: () => Date.now(),
      publish: async (event) => {
        const err = publishError(await broker.publish("default", event));
        if (err) throw err;
      },
      readers: {
        queueStats: () => broker.queueStats(),
        functionQueue,
        functionCounters: () => runtime.metrics().functions,
        budgetUse() {
          const m = runtime.metrics().functions;
          const out: Record<string, number> = {};
          for (const f of runtime.functions()) {
            const used = m[f.name]?.budget;
            if (f.budget === undefined || used === undefined) continue;
            out[f.name] = Math.max(f.budget.invocations ? used.invocations / f.budget.invocations : 0, f.budget.gbSeconds ? used.gbSeconds / f.budget.gbSeconds : 0);
          }
          return out;
        },
      },
    });
    alerts.start();
    closers.push(() => alerts.close());

    const sourceKinds = sourceRegistry(options.sources);
    let httpApp: FastifyInstance | undefined;
    const sources = createSourceRunner({
      publish,
      publishNormalized: publishValidated,
      invoke: (fn, event) => runtime.invoke(fn, event),
      onPublished: (bus, stored) => metrics.published(bus, stored),
      onMessages: (source, outcome, n) => metrics.sourceMessages(source, outcome, n),
      deadLetter: (source, message) => enqueueRejected(store.queues, source, message, Date.now()),
      state: store.state,
      logger: logger.child({ component: "sources" }),
      nodeId: `${process.pid}-${randomUUID().slice(0, 8)}`,
      http: () => httpApp!,
    });

    const audit = new AuditLog({
      state: store.state,
      publish,
      onError: (err, entry) => logger.error({ err, audit: entry }, "audit entry not recorded"),
    });

    let accepting = true;
    const http = await createHttpServer({
      guard: {
        keys: authOn ? keys : undefined,
        checkAllOrigins: settings.mode === "dev",
        enforceHost: settings.mode === "dev" || settings.allowedHosts.length > 0,
        allowedHosts: settings.allowedHosts,
        rateLimits: settings.rateLimit.publish === 0 && settings.rateLimit.admin === 0 ? undefined : settings.rateLimit,
      },
      connections: {
        requestTimeoutMs: settings.requestTimeoutMs,
        keepAliveTimeoutMs: settings.keepAliveTimeoutMs,
        maxConnections: settings.maxConnections,
      },
      routes: app.routes,
      metrics,
      logger: logger.child({ component: "http" }),
      bodyLimit: settings.bodyLimit,
      ...(tracing ? { tracing } : {}),
      ports: {
        publish,
        invoke: (fn, event) => runtime.invoke(fn, event),
        ready: () => accepting,
        health: async () => {
          // A read through the store proves it answers; one that fails or hangs makes /healthz 503.
          const probe = store.state.get("sluice.health", "probe", { now: Date.now() });
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("the store did not answer within 2 s")), 2000);
          });
          try {
            await Promise.race([probe, timeout]);
          } catch (err) {
            return { app: app.name, mode: settings.mode, store: store.kind, error: `store unavailable: ${(err as Error).message}` };
          } finally {
            clearTimeout(timer);
          }
          return { app: app.name, mode: settings.mode, store: store.kind };
        },
        admin: (a) =>
          registerAdmin(a, {
            appName: app.name,
            mode: settings.mode,
            storeKind: store.kind,
            startedAt,
            broker,
            runtime,
            scheduler: { status: () => sources.schedules() },
            sources,
            sourceDeadLetters: (name, o) => store.admin.listDead(rejectedQueue(name), o),
            logs,
            functionQueue,
            workflows,
            audit,
            keys,
            state: store.state,
            lineage: {
              enabled: lineage !== undefined,
              async read(eventId, o) {
                await lineage?.flush();
                return readLineage(store.state, eventId, { now: Date.now(), ...o });
              },
            },
          }),
      },
    });
    httpApp = http;
    // Sources mount their routes before the port opens; at shutdown HTTP stops first, then the sources close.
    closers.push(() => sources.close());
    await sources.start(new HttpIngestSource("http"));
    if (app.schedules.length > 0) await sources.start(new ScheduleSource("schedules", app.schedules));
    for (const s of app.sources) await sources.start(await sourceKinds.get(s.kind)!.create(s.name, s.options));
    await http.listen({ port: settings.port, host: settings.host });
    closers.push(async () => {
      accepting = false;
      sources.abort();
      await http.close();
    });
    const address = http.server.address();
    const port = typeof address === "object" && address ? address.port : settings.port;
    const url = `http://${settings.host === "0.0.0.0" || settings.host === "::" ? "127.0.0.1" : settings.host}:${port}`;

    logger.info(
      {
        app: app.name,
        url,
        port,
        mode: settings.mode,
        store: store.kind,
        auth: authOn,
        functions: runtime.functions().map((f) => f.name),
        routes: app.routes.map((r) => r.key),
        schedules: app.schedules.map((s) => s.name),
        sources: sources.list().map((s) => s.name),
        readyMs: Date.now() - startedAt,
      },
      `sluice ready at ${url}`,
    );

    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      settings,
      app,
      logger,
      broker,
      runtime,
      scheduler: { status: () => sources.schedules() },
      sources,
      metrics,
      workflows,
      close() {
        closing ??= (async () => {
          logger.info({ graceMs: settings.shutdownGraceMs }, "shutting down");
          await closeAll();
          logger.info({}, "stopped");
          logger.flush();
        })();
        return closing;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
