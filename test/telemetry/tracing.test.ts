/**
 * OpenTelemetry traces exported to a real OTLP/HTTP receiver in this test (http/json decoded here): a route whose
 * function emits an event that a rule sends to a second function, which fails once and then emits to a third.
 * Every span shares one trace id; producer, consumer and invocation spans are parented as docs/telemetry.md
 * says; the two attempts of the retried delivery are siblings; a webhook gets the attempt's traceparent.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { startServer } from "../../src/server/server.ts";
import { ConfigError } from "../../src/server/config.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";
import { writeChainApp } from "./chain-app.ts";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number; message?: string };
}

// OTLP's SpanKind numbering (SPAN_KIND_*), one more than the API's.
const OTLP = { internal: 1, server: 2, producer: 4, consumer: 5 } as const;

async function receiver(): Promise<{ server: Server; url: string; spans: OtlpSpan[]; requests: { path: string; contentType: string; bytes: number }[]; serviceNames: Set<string> }> {
  const spans: OtlpSpan[] = [];
  const requests: { path: string; contentType: string; bytes: number }[] = [];
  const serviceNames = new Set<string>();
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const contentType = String(req.headers["content-type"] ?? "");
      requests.push({ path: req.url ?? "", contentType, bytes: body.length });
      if (contentType.includes("json")) {
        const decoded = JSON.parse(body.toString()) as {
          resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        for (const rs of decoded.resourceSpans) {
          for (const a of rs.resource.attributes) if (a.key === "service.name" && a.value.stringValue) serviceNames.add(a.value.stringValue);
          for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        }
      }
      res.writeHead(200, { "content-type": contentType || "application/json" }).end(contentType.includes("json") ? "{}" : "");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, requests, serviceNames };
}

const attr = (s: OtlpSpan, key: string): unknown => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : (v.stringValue ?? (v.intValue === undefined ? v.boolValue : Number(v.intValue)));
};

test("tracing - one trace from the HTTP request through three functions, retries as siblings, exported over OTLP/HTTP JSON", async () => {
  ensureBuilt();
  const otlp = await receiver();
  const webhookHeaders: string[] = [];
  const webhookBodies: { data: { tracedBy: unknown } }[] = [];
  const hook = createServer((req, res) => {
    webhookHeaders.push(String(req.headers.traceparent ?? ""));
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      webhookBodies.push(JSON.parse(body) as { data: { tracedBy: unknown } });
      res.writeHead(204).end();
    });
  });
  hook.listen(0, "127.0.0.1");
  await once(hook, "listening");
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  const dir = tempDir("sluice-tracing-");
  writeChainApp(dir, `, rules: [{ name: "audit", pattern: { type: ["invoice.created"] }, targets: [{ id: "hook", webhook: ${JSON.stringify(hookUrl)} }] }]`);
  const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const server = await startServer({
    appDir: dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true },
    noAuth: true,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_SERVICE_NAME: "chain-test" },
  });
  let closed = false;
  try {
    const res = await fetch(`${server.url}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${incomingTrace}-00f067aa0ba902b7-01` },
      body: "{}",
    });
    assert.equal(res.status, 202);
    await eventually(async () => (server.runtime.metrics().functions.mail?.successes === 1 && webhookHeaders.length === 1 ? true : undefined), "the chain ran", 20_000);
    await server.close(); // flushes the exporter
    closed = true;
    const spans = otlp.spans;
    assert.ok(otlp.requests.every((r) => r.path === "/v1/traces"), JSON.stringify(otlp.requests));
    assert.deepEqual([...otlp.serviceNames], ["chain-test"]);
    assert.deepEqual([...new Set(spans.map((s) => s.traceId))], [incomingTrace], "every span continues the incoming trace");

    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const one = (pred: (s: OtlpSpan) => boolean, what: string): OtlpSpan => {
      const found = spans.filter(pred);
      assert.equal(found.length, 1, `${what}: ${JSON.stringify(spans.map((s) => [s.name, attr(s, "messaging.message.delivery_attempt")]))}`);
      return found[0]!;
    };
    const serverSpan = one((s) => s.kind === OTLP.server, "the server span");
    assert.equal(serverSpan.name, "POST /orders");
    assert.equal(serverSpan.parentSpanId, "00f067aa0ba902b7");
    const ingest = one((s) => s.name === "invoke ingest", "the ingest invocation");
    assert.equal(ingest.parentSpanId, serverSpan.spanId);

    const orderSend = one((s) => s.kind === OTLP.producer && attr(s, "cloudevents.event_type") === "order.created", "the order.created producer");
    assert.equal(orderSend.parentSpanId, ingest.spanId, "ctx.emit publishes under the invocation");
    const billAttempts = spans.filter((s) => s.kind === OTLP.consumer && attr(s, "sluice.rule") === "function.bill");
    assert.equal(billAttempts.length, 2);
    for (const a of billAttempts) {
      assert.equal(a.parentSpanId, orderSend.spanId, "each attempt is a child of the event's creation: retries are siblings");
      assert.deepEqual(a.links?.map((l) => l.spanId), [orderSend.spanId]);
      assert.equal(attr(a, "sluice.target"), "fn");
      assert.equal(attr(a, "messaging.destination.name"), "default");
    }
    assert.deepEqual(billAttempts.map((a) => attr(a, "messaging.message.delivery_attempt")).sort(), [1, 2]);
    const failed = billAttempts.find((a) => attr(a, "messaging.message.delivery_attempt") === 1)!;
    assert.equal(failed.status?.code, 2, "the failed attempt is marked as an error");
    const billRuns = spans.filter((s) => s.name === "invoke bill");
    assert.equal(billRuns.length, 2);
    for (const r of billRuns) {
      const parent = byId.get(r.parentSpanId ?? "");
      assert.equal(parent?.kind, OTLP.consumer, "an invocation is a child of its delivery attempt");
      assert.equal(attr(parent!, "messaging.message.delivery_attempt"), attr(r, "sluice.attempt"));
    }
    const okRun = billRuns.find((r) => attr(r, "sluice.attempt") === 2)!;
    assert.equal(webhookBodies[0]?.data.tracedBy, `00-${incomingTrace}-${okRun.spanId}-01`, "ctx.traceparent in the worker is the invocation's span");
    const invoiceSend = one((s) => s.kind === OTLP.producer && attr(s, "cloudevents.event_type") === "invoice.created", "the invoice.created producer");
    assert.equal(invoiceSend.parentSpanId, okRun.spanId);
    const mailAttempt = one((s) => s.kind === OTLP.consumer && attr(s, "sluice.rule") === "function.mail", "the mail attempt");
    assert.equal(mailAttempt.parentSpanId, invoiceSend.spanId);
    const mailRun = one((s) => s.name === "invoke mail", "the mail invocation");
    assert.equal(mailRun.parentSpanId, mailAttempt.spanId);
    const hookAttempt = one((s) => s.kind === OTLP.consumer && attr(s, "sluice.rule") === "audit", "the webhook attempt");
    assert.equal(hookAttempt.parentSpanId, invoiceSend.spanId);
    assert.equal(attr(hookAttempt, "sluice.target.kind"), "webhook");
    assert.deepEqual(webhookHeaders, [`00-${incomingTrace}-${hookAttempt.spanId}-01`], "the webhook request carries the attempt's traceparent");
  } finally {
    if (!closed) await server.close();
    otlp.server.close();
    hook.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tracing - http/protobuf is the default protocol; bad OTEL variables are config errors naming the variable", async () => {
  ensureBuilt();
  const otlp = await receiver();
  const dir = tempDir("sluice-tracing-pb-");
  writeChainApp(dir, `, telemetry: { otlp: { endpoint: ${JSON.stringify(otlp.url)} } }`);
  const server = await startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: {} });
  try {
    const res = await fetch(`${server.url}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 202);
    await eventually(async () => (server.runtime.metrics().functions.mail?.successes === 1 ? true : undefined), "the chain ran", 20_000);
  } finally {
    await server.close();
    otlp.server.close();
  }
  assert.ok(otlp.requests.length > 0, "spans were exported");
  assert.ok(otlp.requests.every((r) => r.path === "/v1/traces" && r.contentType === "application/x-protobuf" && r.bytes > 0), JSON.stringify(otlp.requests));

  await assert.rejects(
    startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: { OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" } }),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.key === "OTEL_EXPORTER_OTLP_PROTOCOL" && /grpc is not supported/.test(p.message)),
  );
  writeChainApp(dir, `, telemetry: { otlp: { endpoint: "ftp://x" } }`);
  await assert.rejects(
    startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: {} }),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.key === "telemetry.otlp.endpoint"),
  );
  rmSync(dir, { recursive: true, force: true });
});
