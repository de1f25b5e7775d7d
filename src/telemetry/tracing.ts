/**
 * OpenTelemetry traces, off unless configured: the rest of Sluice sees only the small `Tracing` interface below
 * and checks `tracing !== undefined` on its paths, so with tracing off nothing is loaded and nothing allocated.
 * `createTracing` loads the SDK and the OTLP/HTTP exporter with `await import()`.
 *
 * Context travels as W3C `traceparent` strings, explicitly: on the event (the producer span's context becomes
 * the event's `traceparent`), on the delivery context, in the message to a function's worker thread, and in a
 * webhook's headers. OpenTelemetry's own context does not cross thread boundaries (open-telemetry/opentelemetry-js#3297).
 * Spans follow the messaging semantic conventions (docs/telemetry.md lists names and attributes).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Attributes, Context, Link, Span, SpanContext, Tracer } from "@opentelemetry/api";
import type { CloudEvent } from "../event/types.ts";

export interface SpanHandle {
  /** This span's context as a W3C traceparent. */
  readonly traceparent: string;
  readonly traceId: string;
  readonly spanId: string;
  /** Ends the span; an error message marks it failed. */
  end(error?: string, attributes?: Record<string, string | number | boolean>): void;
}

export interface DeliverySpanInfo {
  bus: string;
  rule: string;
  target: string;
  kind: string;
  attempt: number;
  deliveryId: string;
}

export interface Tracing {
  /** A server span for an HTTP request (ingest, API gateway), continuing an incoming `traceparent` header. */
  server(method: string, route: string, incoming: string | undefined): SpanHandle;
  /** The producer span of one published event; its context is what the event's `traceparent` becomes. */
  producer(bus: string, event: CloudEvent): SpanHandle;
  /** The consumer span of one delivery attempt, parented to (and linked to) the event's creation context. */
  consumer(event: CloudEvent, info: DeliverySpanInfo): SpanHandle;
  /** A function invocation, child of `parent` (the delivery attempt, or the request of a synchronous route). */
  invocation(functionName: string, invocationId: string, event: CloudEvent, attempt: number, parent: string | undefined): SpanHandle;
  /** Runs `fn` with `traceparent` as the implicit parent of producer spans (an HTTP request's span). */
  within<T>(traceparent: string, fn: () => T): T;
  /** Enters `traceparent` as the implicit parent for the rest of this asynchronous call chain. */
  enter(traceparent: string): void;
  /** Exports what is left and stops. Idempotent. */
  close(): Promise<void>;
}

export type OtlpProtocol = "http/protobuf" | "http/json";

export interface TracingOptions {
  /** Base URL of an OTLP/HTTP receiver: spans go to `<endpoint>/v1/traces` (a URL ending in /v1/traces is kept). */
  endpoint: string;
  protocol: OtlpProtocol;
  headers?: Record<string, string>;
  serviceName: string;
  serviceVersion?: string;
  /** How long spans wait to be batched. Default 1 s. */
  exportDelayMs?: number;
  /** Make spans without exporting them (the bench's "on without export"). */
  noExport?: boolean;
}

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function parseTraceparent(value: unknown): SpanContext | undefined {
  if (typeof value !== "string") return undefined;
  const m = traceparentPattern.exec(value.trim().toLowerCase());
  if (m === null || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16), isRemote: true };
}

export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

function tracesUrl(endpoint: string): string {
  const trimmed = endpoint.replace(/\/+$/, "");
  return trimmed.endsWith("/v1/traces") ? trimmed : `${trimmed}/v1/traces`;
}

// SpanKind and SpanStatusCode values of @opentelemetry/api (numbers, so that no value import is needed up front).
const Kind = { internal: 0, server: 1, client: 2, producer: 3, consumer: 4 } as const;
const statusError = 2;

/** Loads the SDK and the exporter and returns a Tracing that exports to `options.endpoint`. */
export async function createTracing(options: TracingOptions): Promise<Tracing> {
  const api = await import("@opentelemetry/api");
  const { BasicTracerProvider, BatchSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  const { resourceFromAttributes } = await import("@opentelemetry/resources");
  const url = tracesUrl(options.endpoint);
  const exporterOptions = { url, ...(options.headers ? { headers: options.headers } : {}) };
  const processors = [];
  if (!options.noExport) {
    const exporter =
      options.protocol === "http/json"
        ? new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter(exporterOptions)
        : new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter(exporterOptions);
    processors.push(new BatchSpanProcessor(exporter, { scheduledDelayMillis: options.exportDelayMs ?? 1000, maxQueueSize: 8192 }));
  }
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      "service.name": options.serviceName,
      ...(options.serviceVersion === undefined ? {} : { "service.version": options.serviceVersion }),
    }),
    spanProcessors: processors,
  });
  const tracer: Tracer = provider.getTracer("sluice");
  const implicit = new AsyncLocalStorage<string>();

  const contextOf = (traceparent: unknown): Context => {
    const sc = parseTraceparent(traceparent);
    return sc === undefined ? api.ROOT_CONTEXT : api.trace.setSpanContext(api.ROOT_CONTEXT, sc);
  };
  const handle = (span: Span): SpanHandle => {
    const sc = span.spanContext();
    let ended = false;
    return {
      traceparent: formatTraceparent(sc),
      traceId: sc.traceId,
      spanId: sc.spanId,
      end(error, attributes) {
        if (ended) return;
        ended = true;
        if (attributes !== undefined) span.setAttributes(attributes);
        if (error !== undefined) span.setStatus({ code: statusError, message: error });
        span.end();
      },
    };
  };
  const start = (name: string, kind: number, parent: Context, attributes: Attributes, links?: Link[]): SpanHandle =>
    handle(tracer.startSpan(name, { kind, attributes, ...(links === undefined ? {} : { links }) }, parent));

  let closing: Promise<void> | undefined;
  return {
    server(method, route, incoming) {
      return start(`${method} ${route}`, Kind.server, contextOf(incoming), { "http.request.method": method, "http.route": route });
    },
    producer(bus, event) {
      const parent = event.traceparent ?? implicit.getStore();
      return start(`send ${bus}`, Kind.producer, contextOf(parent), {
        "messaging.system": "sluice",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": bus,
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
      });
    },
    consumer(event, info) {
      const creation = parseTraceparent(event.traceparent);
      const parent = creation === undefined ? api.ROOT_CONTEXT : api.trace.setSpanContext(api.ROOT_CONTEXT, creation);
      return start(
        `process ${info.bus}/${info.rule}`,
        Kind.consumer,
        parent,
        {
          "messaging.system": "sluice",
          "messaging.operation.type": "process",
          "messaging.operation.name": "process",
          "messaging.destination.name": info.bus,
          "messaging.consumer.group.name": `${info.rule}/${info.target}`,
          "messaging.message.id": event.id,
          "messaging.message.delivery_attempt": info.attempt,
          "sluice.rule": info.rule,
          "sluice.target": info.target,
          "sluice.target.kind": info.kind,
          "sluice.delivery_id": info.deliveryId,
          "cloudevents.event_type": event.type,
        },
        creation === undefined ? undefined : [{ context: creation }],
      );
    },
    invocation(functionName, invocationId, event, attempt, parent) {
      return start(`invoke ${functionName}`, Kind.internal, contextOf(parent ?? event.traceparent), {
        "faas.name": functionName,
        "faas.trigger": "pubsub",
        "faas.invocation_id": invocationId,
        "sluice.attempt": attempt,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
      });
    },
    within: (traceparent, fn) => implicit.run(traceparent, fn),
    enter: (traceparent) => implicit.enterWith(traceparent),
    close() {
      closing ??= provider.shutdown().catch(() => undefined);
      return closing;
    },
  };
}
