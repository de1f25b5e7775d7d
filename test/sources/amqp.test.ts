/**
 * The amqp source against the machine's RabbitMQ, published to with amqplib: wrapped messages, the CloudEvents
 * binding (binary and structured), dedupe by message-id, dead letters for what cannot become an event, a
 * connection cut through a proxy, and two `sluice start` nodes on one PostgreSQL sharing the queue while one is
 * SIGKILLed with 2 000 messages flowing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createTestDatabase, services, skipUnless } from "../helpers/services.ts";
import { startTcpProxy } from "../helpers/tcp-proxy.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { killTwoNodes, startInProcess, waitForAll, writeSourceApp } from "./harness.ts";

const skip = await skipUnless("rabbitmq");
const url = (port: number = services.rabbitmq.port) => `amqp://guest:guest@127.0.0.1:${port}`;
const unique = () => `src_${randomUUID().slice(0, 8)}`;

async function withChannel<T>(fn: (ch: import("amqplib").ConfirmChannel) => Promise<T>): Promise<T> {
  const amqp = await import("amqplib");
  const conn = await amqp.connect(url());
  try {
    const ch = await conn.createConfirmChannel();
    const out = await fn(ch);
    await ch.waitForConfirms();
    return out;
  } finally {
    await conn.close();
  }
}

async function deleteQueue(queue: string): Promise<void> {
  await withChannel(async (ch) => void (await ch.deleteQueue(queue)));
}

test("amqp source - wrapped, binary and structured messages, message-id dedupe, dead letters, status and metrics", { skip }, async () => {
  const queue = unique();
  const app = writeSourceApp({ orders: { kind: "amqp", url: url(), queue, type: "order.received", maxEventBytes: 4000 } }, ["order.received", "order.binary", "order.structured"]);
  const server = await startInProcess(app);
  try {
    await eventually(async () => (server.sources.list().find((s) => s.name === "orders")?.status === "ok" ? true : undefined), "the source connected");
    await withChannel(async (ch) => {
      for (let i = 0; i < 20; i++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i })), { messageId: `m-${i}`, contentType: "application/json", headers: { tenant: "acme", "x-Trace": "t1" } });
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: 3 })), { messageId: "m-3", contentType: "application/json" }); // a redelivery-like repeat
      ch.sendToQueue(queue, Buffer.from("hello text"), { messageId: "text-1" });
      ch.sendToQueue(queue, Buffer.from([0xff, 0x00, 0xfe]), { messageId: "bytes-1" });
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ sku: "w" })), {
        contentType: "application/json",
        headers: { cloudEvents_specversion: "1.0", cloudEvents_id: "bin-1", cloudEvents_source: "/shop", cloudEvents_type: "order.binary", "cloudEvents:subject": "o-1", cloudEvents_tenant: "acme" },
      });
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ specversion: "1.0", id: "st-1", source: "/shop", type: "order.structured", data: { sku: "s" } })), { contentType: "application/cloudevents+json" });
      // cannot become events: an invalid binary CloudEvent (no type), a structured one that is not JSON, one too large
      ch.sendToQueue(queue, Buffer.from("{}"), { contentType: "application/json", headers: { cloudEvents_specversion: "1.0", cloudEvents_id: "bad-1", cloudEvents_source: "/shop" } });
      ch.sendToQueue(queue, Buffer.from("{not json"), { contentType: "application/cloudevents+json" });
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ pad: "x".repeat(5000) })), { messageId: "big-1", contentType: "application/json" });
    });
    const seen = await waitForAll(app, [...Array.from({ length: 20 }, (_, i) => `m-${i}`), "text-1", "bytes-1", "bin-1", "st-1"], (r) => r.id);
    assert.equal(seen.size, 24);
    await eventually(async () => ((server.sources.list().find((s) => s.name === "orders")?.messages["dead-lettered"] ?? 0) === 3 ? true : undefined), "three dead letters");
    const got = app.received();
    assert.equal(got.filter((r) => r.id === "m-3").length, 1, "the repeated message-id is a duplicate");
    const m0 = got.find((r) => r.id === "m-0")!;
    assert.equal(m0.source, `amqp://127.0.0.1:${services.rabbitmq.port}/${queue}`);
    assert.equal(m0.type, "order.received");
    assert.equal(m0.subject, queue, "the routing key (default exchange: the queue name)");
    assert.deepEqual(m0.data, { n: 0 });
    assert.equal(m0.tenant, "acme");
    assert.equal(m0.xtrace, "t1");
    assert.equal(got.find((r) => r.id === "text-1")?.data, "hello text");
    assert.equal(got.find((r) => r.id === "bytes-1")?.data_base64, Buffer.from([0xff, 0x00, 0xfe]).toString("base64"));
    const bin = got.find((r) => r.id === "bin-1")!;
    assert.deepEqual([bin.source, bin.type, bin.subject, bin.tenant, bin.data], ["/shop", "order.binary", "o-1", "acme", { sku: "w" }]);
    assert.deepEqual(got.find((r) => r.id === "st-1")?.data, { sku: "s" });

    const dead = (await (await fetch(`${server.url}/admin/sources/orders/dead-letters`)).json()) as { reason: string; lastError: string; payload: string }[];
    assert.equal(dead.length, 3);
    assert.ok(dead.every((d) => d.reason === "unconvertible"));
    const payloads = dead.map((d) => JSON.parse(d.payload) as { type: string; data: { reason: string; body_base64: string; attributes: { queue: string } } });
    assert.ok(payloads.every((p) => p.type === "sluice.source.rejected" && p.data.attributes.queue === queue));
    assert.match(dead.map((d) => d.lastError).join("\n"), /E_EVENT_TOO_LARGE/);
    assert.match(dead.map((d) => d.lastError).join("\n"), /E_JSON_INVALID/);
    assert.ok(payloads.some((p) => Buffer.from(p.data.body_base64, "base64").toString() === "{not json"), "the original bytes are kept");

    const info = server.sources.list().find((s) => s.name === "orders")!;
    assert.equal(info.messages.stored, 24);
    assert.equal(info.messages.duplicate, 1);
    assert.equal((info.details as { connected: boolean }).connected, true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /sluice_source_messages_total\{source="orders",outcome="stored"\} 24/);
    assert.match(metrics, /sluice_source_messages_total\{source="orders",outcome="dead-lettered"\} 3/);
    await eventually(async () => ((await (await fetch(`${server.url}/metrics`)).text()).match(/sluice_source_lag\{source="orders"\} 0/) ? true : undefined), "lag 0 once drained", 15_000);
  } finally {
    await server.close();
    await deleteQueue(queue);
  }
});

test("amqp source - cutting its connection loses nothing: it reconnects and declares its queue again", { skip }, async () => {
  const queue = unique();
  const proxy = await startTcpProxy(services.rabbitmq);
  const app = writeSourceApp({ orders: { kind: "amqp", url: url(proxy.port), queue, type: "order.received", prefetch: 20 } }, ["order.received"]);
  const server = await startInProcess(app);
  try {
    await eventually(async () => (server.sources.list()[1]?.status === "ok" ? true : undefined), "connected");
    const total = 600;
    await withChannel(async (ch) => {
      for (let i = 0; i < total; i++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i })), { messageId: `c-${i}`, persistent: true });
    });
    for (let cut = 0; cut < 3; cut++) {
      await eventually(async () => (app.received().length >= ((cut + 1) * total) / 5 ? true : undefined), `progress before cut ${cut + 1}`);
      assert.ok(proxy.cut() >= 1);
    }
    await waitForAll(app, Array.from({ length: total }, (_, i) => `c-${i}`), (r) => r.id);
    assert.ok(proxy.accepted() >= 4, "it reconnected after each cut");
    assert.equal(((server.sources.list()[1]?.details as { reconnects: number } | undefined)?.reconnects ?? 0) >= 3, true);
  } finally {
    await server.close();
    await proxy.close();
    await deleteQueue(queue);
  }
});

test("amqp source - two sluice start nodes on one PostgreSQL share a queue; SIGKILL of one with 2 000 messages flowing loses none", { skip: skip || (await skipUnless("postgres")) }, async () => {
  ensureBuilt();
  const queue = unique();
  const db = await createTestDatabase();
  const app = writeSourceApp({ orders: { kind: "amqp", url: url(), queue, type: "order.received", prefetch: 50 } }, ["order.received"]);
  const total = 2000;
  try {
    await withChannel(async (ch) => void (await ch.assertQueue(queue, { durable: true })));
    const { pids } = await killTwoNodes({
      app,
      storeUrl: db.url,
      total,
      publish: () =>
        withChannel(async (ch) => {
          for (let i = 0; i < total; i++) {
            ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i })), { messageId: `k-${i}`, persistent: true });
            if (i % 200 === 199) await ch.waitForConfirms();
          }
        }),
    });
    assert.ok(pids.size >= 2, `both nodes ran some (pids ${[...pids].join(", ")})`);
  } finally {
    await deleteQueue(queue);
    await db.drop();
  }
});
