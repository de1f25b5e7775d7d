/**
 * The admin JSON API under `/admin`: what the CLI's client commands (and a later dashboard) call.
 *
 * GET  /admin/status                         app, functions (instances, backlog, error rate), schedules, dead letters
 * GET  /admin/buses | /admin/rules[?bus=] | /admin/functions | /admin/schedules
 * GET  /admin/sources                        every event source with its kind, health and events published
 * GET  /admin/sources/:name/dead-letters     messages that source could not turn into events (reason, original bytes)
 * GET  /admin/dlq                            every target with its queue depths and dead letters
 * GET  /admin/dlq/:bus/:rule/:target         dead letters of one target (?limit=&after=)
 * GET  /admin/dlq/messages/:id               one dead letter
 * POST /admin/dlq/:bus/:rule/:target/redrive { ids?, filter? } -> { redriven }
 * POST /admin/dlq/:bus/:rule/:target/purge   { ids? } -> { purged }
 * POST /admin/replays                        { name, bus, fromAt, toAt, pattern?, destination, maxPerSecond? } -> Replay
 * GET  /admin/replays | /admin/replays/:name; POST /admin/replays/:name/cancel
 * POST /admin/functions/:name/invoke         { event } or { type?, data? } -> { result }
 * GET  /admin/logs?function=&limit=&follow=1 NDJSON, streaming with follow
 * GET  /admin/runs?workflow=&status=&limit=  workflow runs, newest first (summaries)
 * GET  /admin/runs/:id                       one run: every step with status, attempts, timing, result or error
 * POST /admin/runs/:id/cancel                cancels a run (its compensations run) -> the run
 * GET  /admin/audit?limit=&action=&key=     the audit log of admin writes, newest first
 * GET  /admin/targets/disabled               webhook targets disabled by a 410 Gone
 * POST /admin/targets/:bus/:rule/:target/enable   enables one again
 * POST|GET /admin/keys, POST /admin/keys/:name/revoke   API keys (admin-keys.ts)
 *
 * Reads need admin:read, writes admin:write (invoke: invoke or invoke:<function>); http.ts sets the scopes.
 * Reads redact secrets (redact.ts); every write is recorded in the audit log (audit.ts).
 * GET  /admin/events/:id/trace[?depth=&nodes=] the event's lineage tree (docs/telemetry.md)
 */
import type { FastifyInstance } from "fastify";
import type { Broker } from "../bus/broker.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import { newEventId } from "../event/ids.ts";
import { parseJsonLimited } from "../event/json-depth.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { isObject } from "../util/validate.ts";
import type { Scheduler } from "../triggers/schedules.ts";
import type { KeyStore } from "../auth/key-store.ts";
import { DISABLED_TARGETS, type DisabledTarget } from "../bus/targets/webhook.ts";
import type { StateStore } from "../store/contract.ts";
import type { AuditLog } from "./audit.ts";
import { registerKeyRoutes } from "./admin-keys.ts";
import { functionFilter, type LogBuffer } from "./log-buffer.ts";
import { redactRule } from "./redact.ts";
import type { SourceInfo } from "./sources.ts";
import type { WorkflowEngine } from "../workflows/engine.ts";
import { runStatuses, summary } from "../workflows/run-state.ts";
import type { LineageNode } from "../telemetry/lineage-tree.ts";

export interface AdminDeps {
  appName: string;
  mode: string;
  storeKind: string;
  startedAt: number;
  broker: Broker;
  runtime: Runtime;
  scheduler: Pick<Scheduler, "status">;
  sources: { list(): SourceInfo[] };
  /** Dead letters of messages source `name` could not turn into events (queue `source:<name>`). */
  sourceDeadLetters?(name: string, options: { limit: number; afterId?: string }): Promise<unknown[]>;
  logs: LogBuffer;
  /** Function name -> the queue of its implicit rule (`rule:default/function.<name>/fn`). */
  functionQueue(name: string): string;
  workflows?: Pick<WorkflowEngine, "list" | "get" | "cancel" | "workflows">;
  audit: AuditLog;
  /** The store's state: targets disabled by a 410. */
  state: StateStore;
  /** API keys; absent when the server checks none. */
  keys?: KeyStore;
  /** Event lineage (docs/telemetry.md). */
  lineage: { enabled: boolean; read(eventId: string, options: { maxDepth?: number; maxNodes?: number }): Promise<LineageNode> };
}


/** `rule:bus/rule/target` -> `bus/rule/target`. */
function targetOf(queue: string): string {
  return queue.startsWith("rule:") ? queue.slice("rule:".length) : queue;
}

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  const { broker, runtime, scheduler } = deps;
  const audit = (req: { principal?: { name: string } }, action: string, target: string, count?: number) =>
    deps.audit.record(req.principal?.name, action, target, count).then(() => undefined);

  // Fastify's own JSON parser has no nesting limit; an event copied to a function instance must have one.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, body === "" ? undefined : parseJsonLimited(body as string, "$"));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  async function backlogByFunction(): Promise<Record<string, number>> {
    const stats = await broker.queueStats();
    const byQueue = new Map(stats.map((s) => [s.queue, s]));
    const out: Record<string, number> = {};
    for (const f of runtime.functions()) {
      const s = byQueue.get(deps.functionQueue(f.name));
      out[f.name] = s ? s.ready + s.delayed + s.leased : 0;
    }
    return out;
  }

  const disabledTargets = async (): Promise<DisabledTarget[]> =>
    (await deps.state.list(DISABLED_TARGETS, { now: Date.now() })).map((r) => JSON.parse(r.value) as DisabledTarget);

  app.get("/status", async () => {
    const m = runtime.metrics();
    const backlog = await backlogByFunction();
    const stats = await broker.queueStats();
    const functions = runtime.functions().map((f) => {
      const fm = m.functions[f.name];
      const invocations = fm?.invocations ?? 0;
      const errors = fm?.failures ?? 0;
      return {
        name: f.name,
        instances: fm ? fm.instances.starting + fm.instances.idle + fm.instances.busy : 0,
        busy: fm?.instances.busy ?? 0,
        queued: fm?.queued ?? 0,
        backlog: backlog[f.name] ?? 0,
        invocations,
        errors,
        errorRate: invocations ? Number((errors / invocations).toFixed(3)) : 0,
        gbSeconds: fm?.gbSeconds ?? 0,
        version: fm?.version ?? 1,
      };
    });
    return {
      app: deps.appName,
      mode: deps.mode,
      store: deps.storeKind,
      uptimeMs: Date.now() - deps.startedAt,
      instances: m.instances,
      functions,
      buses: broker.listBuses().length,
      rules: broker.listRules().length,
      deadLetters: stats.reduce((n, s) => n + s.dead, 0),
      schedules: scheduler.status().map((s) => ({
        ...s,
        next: s.nextAt === undefined ? undefined : new Date(s.nextAt).toISOString(),
        lastFired: s.lastFiredAt === undefined ? undefined : new Date(s.lastFiredAt).toISOString(),
      })),
      sources: deps.sources.list().map(({ details: _d, ...s }) => s),
      disabledTargets: (await disabledTargets()).map((d) => ({ ...d, target: targetOf(d.queue) })),
    };
  });
  app.get("/buses", async () => broker.listBuses());
  app.get<{ Querystring: { bus?: string } }>("/rules", async (req) => broker.listRules(req.query.bus ? { bus: req.query.bus } : {}).map(redactRule));
  app.get("/functions", async () => {
    const m = runtime.metrics();
    return runtime.functions().map((f) => ({ ...f, metrics: m.functions[f.name] }));
  });
  app.get("/schedules", async () => scheduler.status());
  app.get("/sources", async () => deps.sources.list());
  app.get<{ Params: { name: string }; Querystring: { limit?: string; after?: string } }>("/sources/:name/dead-letters", async (req) => {
    if (!deps.sources.list().some((s) => s.name === req.params.name)) {
      throw new SluiceError(ErrorCode.NotFound, `no source ${req.params.name}; list them with sluice status`, { path: "$.name" });
    }
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 50) || 50));
    return (await deps.sourceDeadLetters?.(req.params.name, { limit, ...(req.query.after ? { afterId: req.query.after } : {}) })) ?? [];
  });

  // --- dead letters ---
  app.get("/dlq", async () => {
    const stats = await broker.queueStats();
    return stats.map((s) => ({ target: targetOf(s.queue), queue: s.queue, dead: s.dead, ready: s.ready, delayed: s.delayed, leased: s.leased }));
  });
  app.get<{ Params: { id: string } }>("/dlq/messages/:id", async (req) => {
    const dl = await broker.getDeadLetter(req.params.id);
    if (!dl) throw new SluiceError(ErrorCode.NotFound, `no dead letter ${req.params.id}; list them with sluice dlq list`, { path: "$.id" });
    return dl;
  });
  type RefParams = { bus: string; rule: string; target: string };
  app.get<{ Params: RefParams; Querystring: { limit?: string; after?: string } }>("/dlq/:bus/:rule/:target", async (req) => {
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 50) || 50));
    return broker.listDeadLetters(req.params, { limit, ...(req.query.after ? { afterId: req.query.after } : {}) });
  });
  app.post<{ Params: RefParams; Body: unknown }>("/dlq/:bus/:rule/:target/redrive", async (req) => {
    const body = isObject(req.body) ? req.body : {};
    const ids = Array.isArray(body.ids) ? body.ids.map(String) : undefined;
    const redriven = await broker.redrive(req.params, { ...(ids ? { ids } : {}), ...(body.filter !== undefined ? { filter: body.filter } : {}) });
    await audit(req, "dlq.redrive", `${req.params.bus}/${req.params.rule}/${req.params.target}`, redriven);
    return { redriven };
  });
  app.post<{ Params: RefParams; Body: unknown }>("/dlq/:bus/:rule/:target/purge", async (req) => {
    const body = isObject(req.body) ? req.body : {};
    const ids = Array.isArray(body.ids) ? body.ids.map(String) : undefined;
    const purged = await broker.purgeDeadLetters(req.params, ids ? { ids } : {});
    await audit(req, "dlq.purge", `${req.params.bus}/${req.params.rule}/${req.params.target}`, purged);
    return { purged };
  });

  // --- replays ---
  app.post<{ Body: unknown }>("/replays", async (req, reply) => {
    if (!isObject(req.body)) throw new SluiceError(ErrorCode.BadRequest, "a replay is { name, bus, fromAt, toAt, pattern?, destination?, maxPerSecond? }", { path: "$" });
    const b = req.body;
    const replay = await broker.startReplay({
      name: String(b.name ?? `replay-${newEventId()}`),
      bus: String(b.bus ?? "default"),
      fromAt: Number(b.fromAt),
      toAt: Number(b.toAt),
      ...(b.pattern === undefined ? {} : { pattern: b.pattern }),
      destination: isObject(b.destination) ? (b.destination as { bus: string }) : { bus: String(b.bus ?? "default") },
      ...(b.maxPerSecond === undefined ? {} : { maxPerSecond: b.maxPerSecond as number }),
    });
    await audit(req, "replay.start", replay.name);
    return reply.code(201).send(replay);
  });
  app.get("/replays", async () => broker.listReplays());
  app.get<{ Params: { name: string } }>("/replays/:name", async (req) => broker.getReplay(req.params.name));
  app.post<{ Params: { name: string } }>("/replays/:name/cancel", async (req) => {
    const out = await broker.cancelReplay(req.params.name);
    await audit(req, "replay.cancel", req.params.name);
    return out;
  });

  // --- invoke ---
  const invokeScope = { config: { scope: (req: { params: unknown }) => `invoke:${(req.params as { name: string }).name}` } };
  app.post<{ Params: { name: string }; Body: unknown }>("/functions/:name/invoke", invokeScope, async (req) => {
    const body = isObject(req.body) ? req.body : {};
    if (!runtime.functions().some((f) => f.name === req.params.name)) {
      throw new SluiceError(ErrorCode.FunctionNotFound, `no function ${JSON.stringify(req.params.name)}; see sluice status`, { path: "$.function" });
    }
    const event: CloudEvent = isObject(body.event)
      ? ({ specversion: "1.0", id: newEventId(), source: "sluice/cli", type: "sluice.invoke", ...body.event } as CloudEvent)
      : {
          specversion: "1.0",
          id: newEventId(),
          source: "sluice/cli",
          type: typeof body.type === "string" ? body.type : "sluice.invoke",
          time: new Date().toISOString(),
          ...(body.data === undefined ? {} : { datacontenttype: "application/json", data: body.data }),
        };
    await audit(req, "function.invoke", req.params.name);
    return { result: (await runtime.invoke(req.params.name, event)) ?? null };
  });

  // --- workflow runs ---
  const engine = deps.workflows;
  if (engine) {
    app.get<{ Querystring: { workflow?: string; status?: string; limit?: string } }>("/runs", async (req) => {
      const { workflow, status } = req.query;
      if (status !== undefined && !(runStatuses as readonly string[]).includes(status)) {
        throw new SluiceError(ErrorCode.BadRequest, `status ${JSON.stringify(status)} is not one of ${runStatuses.join(", ")}`, { path: "$.status" });
      }
      if (workflow !== undefined && !engine.workflows().some((w) => w.name === workflow)) {
        throw new SluiceError(ErrorCode.NotFound, `no workflow ${JSON.stringify(workflow)}; the workflows are: ${engine.workflows().map((w) => w.name).join(", ") || "none"}`, { path: "$.workflow" });
      }
      const limit = Math.min(10_000, Math.max(1, Number(req.query.limit ?? 1000) || 1000));
      const runs = await engine.list({ ...(workflow ? { workflow } : {}), ...(status ? { status } : {}), limit });
      return runs.map(summary);
    });
    app.get<{ Params: { id: string } }>("/runs/:id", async (req) => engine.get(req.params.id));
    app.post<{ Params: { id: string } }>("/runs/:id/cancel", async (req) => engine.cancel(req.params.id));
  }

  // --- targets disabled by a 410 ---
  app.get("/targets/disabled", async () => (await disabledTargets()).map((d) => ({ ...d, target: targetOf(d.queue) })));
  app.post<{ Params: RefParams }>("/targets/:bus/:rule/:target/enable", async (req) => {
    const queue = `rule:${req.params.bus}/${req.params.rule}/${req.params.target}`;
    const was = await deps.state.get(DISABLED_TARGETS, queue, { now: Date.now() });
    if (was === undefined) throw new SluiceError(ErrorCode.NotFound, `target ${targetOf(queue)} is not disabled`, { path: "$.target" });
    await deps.state.delete(DISABLED_TARGETS, queue);
    await audit(req, "target.enable", targetOf(queue));
    return { enabled: targetOf(queue) };
  });

  // --- audit, keys ---
  app.get<{ Querystring: { limit?: string; action?: string; key?: string } }>("/audit", async (req) =>
    deps.audit.list({
      limit: Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100)),
      ...(req.query.action ? { action: req.query.action } : {}),
      ...(req.query.key ? { key: req.query.key } : {}),
    }),
  );
  if (deps.keys) registerKeyRoutes(app, { keys: deps.keys, audit });

  // --- lineage ---
  app.get<{ Params: { id: string }; Querystring: { depth?: string; nodes?: string } }>("/events/:id/trace", async (req) => {
    if (!deps.lineage.enabled) {
      throw new SluiceError(ErrorCode.NotFound, "lineage is off for this app (telemetry.lineage: false)", { path: "$.telemetry.lineage" });
    }
    const bound = (v: string | undefined, max: number, name: string): number | undefined => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > max) throw new SluiceError(ErrorCode.BadRequest, `${name} must be an integer from 1 to ${max}`, { path: `$.${name}` });
      return n;
    };
    const maxDepth = bound(req.query.depth, 64, "depth");
    const maxNodes = bound(req.query.nodes, 5000, "nodes");
    const tree = await deps.lineage.read(req.params.id, { ...(maxDepth === undefined ? {} : { maxDepth }), ...(maxNodes === undefined ? {} : { maxNodes }) });
    if (!tree.found) {
      throw new SluiceError(ErrorCode.NotFound, `nothing is recorded for event ${req.params.id}: unknown id, or older than its bus's retention`, { path: "$.id" });
    }
    return tree;
  });

  // --- logs ---
  app.get<{ Querystring: { function?: string; limit?: string; follow?: string } }>("/logs", (req, reply) => {
    const filter = functionFilter(req.query.function);
    const limit = Math.min(2000, Math.max(0, Number(req.query.limit ?? 100) || 0));
    const lines = deps.logs.recent(filter, limit);
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson", "x-request-id": req.id });
    // A follower sees the answer start at once, not at the first line.
    reply.raw.flushHeaders();
    for (const l of lines) reply.raw.write(`${JSON.stringify(l)}\n`);
    if (req.query.follow !== "1" && req.query.follow !== "true") {
      reply.raw.end();
      return reply;
    }
    // A reader that stops reading is disconnected once this much waits for it, instead of growing without bound.
    const maxBuffered = 1024 * 1024;
    const off = deps.logs.subscribe((line) => {
      if (!filter(line)) return;
      if (reply.raw.writableLength > maxBuffered) {
        off();
        reply.raw.destroy();
        return;
      }
      reply.raw.write(`${JSON.stringify(line)}\n`);
    });
    req.raw.on("close", off);
    reply.raw.on("close", off);
    return reply;
  });
}
