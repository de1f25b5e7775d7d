/**
 * The HTTP server (Fastify 5), one port:
 * - the routes event sources mount (`POST /events`: the CloudEvents ingest, src/triggers/http/), added by the server;
 * - the API gateway: the app's `routes`, each invoking its function with an API-Gateway-proxy-like event;
 * - `/admin/*`: the JSON admin API the CLI (and a dashboard) use;
 * - `GET /healthz`, `GET /metrics` (Prometheus text format).
 *
 * It depends on narrow ports, not on the broker or runtime themselves; `server.ts` adapts those to these ports.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { ErrorCode, SluiceError } from "../errors.ts";
import { newEventId } from "../event/ids.ts";
import { parseJsonLimited } from "../event/json-depth.ts";
import type { CloudEvent } from "../event/types.ts";
import { errorBody, rawBody, sendError } from "../triggers/http/reply.ts";
import { isObject } from "../util/validate.ts";
import type { ValidatedRoute } from "./config.ts";
import type { Metrics } from "./metrics.ts";

/** One entry of a publish result (EventBridge PutEvents style), as the broker returns it. */
export type PublishEntry =
  | { eventId: string; duplicate?: true }
  | { errorCode: string; errorMessage: string; path?: string; eventId?: string };
export interface PublishOutcome {
  failedEntryCount: number;
  entries: PublishEntry[];
}

export interface HttpLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

/** What the HTTP layer needs from the rest of the server. */
export interface HttpPorts {
  /** Publishes events; resolves when the accepted ones are durable. Throws E_BUS_NOT_FOUND, E_BACKPRESSURE. */
  publish(bus: string, events: unknown[]): Promise<PublishOutcome>;
  /** Synchronous invoke; throws SluiceErrors (E_HANDLER_TIMEOUT, E_HANDLER_ERROR, E_FUNCTION_NOT_FOUND…). */
  invoke(functionName: string, event: CloudEvent): Promise<unknown>;
  /** Admin API handlers, mounted under /admin. */
  admin?: (app: FastifyInstance) => void;
  /** True while the server takes work (false during shutdown). */
  ready(): boolean;
  health(): Promise<Record<string, unknown>>;
}

export interface HttpServerOptions {
  ports: HttpPorts;
  routes: readonly ValidatedRoute[];
  metrics: Metrics;
  logger: HttpLogger;
  /** Largest request body in bytes (413 past it). */
  bodyLimit: number;
}

/** The source and type of the events the API gateway produces. */
export const gatewaySource = "sluice/http";
export const gatewayEventType = "sluice.http.request";

function isJsonType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const essence = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return essence === "application/json" || essence.endsWith("+json");
}
function isTextType(contentType: string | undefined): boolean {
  if (!contentType) return true;
  const essence = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return essence.startsWith("text/") || essence === "application/x-www-form-urlencoded" || essence.endsWith("+xml") || essence === "application/xml";
}

/** Builds the event a route's function receives: a CloudEvent whose `data` is an API Gateway proxy-like request. */
export function gatewayEvent(route: ValidatedRoute, request: FastifyRequest, requestId: string): CloudEvent {
  const body = request.body as Buffer | undefined;
  const contentType = request.headers["content-type"];
  let payload: unknown = null;
  let isBase64Encoded = false;
  if (body && body.length > 0) {
    if (isJsonType(contentType)) {
      payload = parseJsonLimited(body.toString("utf8"), "$.body");
    } else if (isTextType(contentType)) payload = body.toString("utf8");
    else {
      payload = body.toString("base64");
      isBase64Encoded = true;
    }
  }
  const url = new URL(request.url, "http://localhost");
  const query: Record<string, string> = {};
  const multiQuery: Record<string, string[]> = {};
  for (const [k, v] of url.searchParams) {
    query[k] = v;
    (multiQuery[k] ??= []).push(v);
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(request.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(",") : v;
  const now = new Date();
  return {
    specversion: "1.0",
    id: newEventId(now.getTime()),
    source: gatewaySource,
    type: gatewayEventType,
    subject: route.key,
    time: now.toISOString(),
    datacontenttype: "application/json",
    data: {
      route: route.key,
      method: request.method,
      path: url.pathname,
      pathParameters: { ...(request.params as Record<string, string>) },
      query,
      multiValueQuery: multiQuery,
      headers,
      body: payload,
      isBase64Encoded,
      requestContext: { requestId, time: now.toISOString(), sourceIp: request.ip },
    },
  };
}


/** Answers with a handler's result: `{ statusCode, headers, body }`, a plain value as JSON 200, nothing as 204. */
export function sendHandlerResult(reply: FastifyReply, result: unknown): FastifyReply {
  if (result === undefined || result === null) return reply.code(204).send();
  if (isObject(result) && typeof result.statusCode === "number") {
    const status = Number.isInteger(result.statusCode) && result.statusCode >= 100 && result.statusCode <= 599 ? result.statusCode : 500;
    reply.code(status);
    if (isObject(result.headers)) {
      for (const [k, v] of Object.entries(result.headers)) if (typeof v === "string" || typeof v === "number") reply.header(k, String(v));
    }
    const body = result.body;
    if (body === undefined || body === null) return reply.send();
    if (typeof body === "string") {
      if (result.isBase64Encoded === true) return reply.send(Buffer.from(body, "base64"));
      if (!reply.hasHeader("content-type")) reply.type("text/plain; charset=utf-8");
      return reply.send(body);
    }
    return reply.type("application/json").send(JSON.stringify(body));
  }
  return reply.code(200).type("application/json").send(JSON.stringify(result));
}

/** How much of a refused body is read and discarded before the answer, and for how long. */
const drainLimit = { bytes: 16 * 1024 * 1024, ms: 5_000 };

/**
 * Reads and discards the rest of a request the server refused, then answers. Answered at once, the socket
 * closed while the client was still sending, and clients such as fetch reported a failed request instead of
 * the 413. A body past the drain limit, or one that trickles, gets the answer anyway.
 */
function drainThen(request: IncomingMessage, answer: () => void): void {
  if (request.complete || request.destroyed) {
    answer();
    return;
  }
  let drained = 0;
  let answered = false;
  const finish = () => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    request.off("data", onData);
    answer();
  };
  const onData = (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > drainLimit.bytes) finish();
  };
  const timer = setTimeout(finish, drainLimit.ms);
  request.on("data", onData);
  request.once("end", finish);
  request.once("error", finish);
  request.resume();
}

export async function createHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const { ports, metrics, logger } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit,
    exposeHeadRoutes: false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: "idle",
  });

  // Callback-style hooks: an async hook costs a promise and a microtask hop on every request.
  app.addHook("onRequest", (req, reply, done) => {
    reply.header("x-request-id", req.id);
    done();
  });
  app.addHook("onResponse", (req, reply, done) => {
    metrics.httpRequest(req.routeOptions.url ?? "unmatched", req.method, reply.statusCode);
    done();
  });

  app.setErrorHandler((err: FastifyError | SluiceError | Error, req, reply) => {
    if (err instanceof SluiceError) return sendError(reply, err, req.id);
    const fe = err as FastifyError;
    if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      const tooLarge = () => sendError(reply, new SluiceError(ErrorCode.EventTooLarge, `the request body is larger than ${options.bodyLimit} bytes`), req.id);
      drainThen(req.raw, tooLarge);
      return reply;
    }
    if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
      const code = fe.code === "FST_ERR_CTP_INVALID_JSON_BODY" || fe instanceof SyntaxError ? ErrorCode.JsonInvalid : ErrorCode.BadRequest;
      return reply.code(fe.statusCode).send(errorBody(new SluiceError(code, fe.message), req.id));
    }
    logger.error({ err, requestId: req.id, url: req.url }, "request failed");
    return reply.code(500).send(errorBody(new SluiceError(ErrorCode.Internal, "internal error; the server log has the details"), req.id));
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(errorBody(new SluiceError(ErrorCode.BadRequest, `no route for ${req.method} ${req.url.split("?")[0]}`), req.id)),
  );

  // --- API gateway ----------------------------------------------------------------------------------------------
  await app.register(async (gateway) => {
    rawBody(gateway);
    for (const route of options.routes) {
      gateway.route({
        method: route.method as "GET",
        url: route.path,
        handler: async (req, reply) => {
          if (!ports.ready()) return sendError(reply, new SluiceError(ErrorCode.Closed, "the server is shutting down"), req.id);
          const event = gatewayEvent(route, req, req.id);
          if (route.async) {
            const out = await ports.publish("default", [event]);
            const entry = out.entries[0];
            if (!entry || "errorCode" in entry) {
              throw new SluiceError((entry as { errorCode?: ErrorCode })?.errorCode ?? ErrorCode.BadRequest, (entry as { errorMessage?: string })?.errorMessage ?? "not accepted");
            }
            metrics.published("default", 1);
            return reply.code(202).send({ eventId: entry.eventId, requestId: req.id });
          }
          let result: unknown;
          try {
            result = await ports.invoke(route.function, event);
          } catch (err) {
            const code = (err as { code?: unknown }).code;
            if (code === ErrorCode.HandlerTimeout) {
              return reply.code(504).send({ error: { code, message: `function ${route.function} timed out` }, requestId: req.id });
            }
            if (code === ErrorCode.Throttled || code === ErrorCode.Closed) {
              return sendError(reply, new SluiceError(code, `function ${route.function} is ${code === ErrorCode.Closed ? "shutting down" : "throttled"}`, { retryable: true }), req.id);
            }
            logger.error({ err, requestId: req.id, functionName: route.function, route: route.key }, "route handler failed");
            return reply.code(500).send({
              error: { code: typeof code === "string" ? code : ErrorCode.HandlerError, message: `function ${route.function} failed; look for requestId ${req.id} in the server log` },
              requestId: req.id,
            });
          }
          return sendHandlerResult(reply, result);
        },
      });
    }
  });

  // --- health, metrics, admin ---------------------------------------------------------------------------------
  app.get("/healthz", async (_req, reply) => {
    const ok = ports.ready();
    const details = await ports.health().catch((err: unknown) => ({ error: String(err) }));
    return reply.code(ok && !("error" in details) ? 200 : 503).send({ status: ok ? "ok" : "shutting-down", ...details });
  });
  app.get("/metrics", async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
  if (ports.admin) await app.register(async (admin) => ports.admin?.(admin), { prefix: "/admin" });

  return app;
}
