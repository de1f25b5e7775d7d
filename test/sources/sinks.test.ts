/**
 * Broker sinks as rule targets: one event fans out to RabbitMQ, NATS JetStream, Mosquitto, a Redis stream and
 * another Sluice's bus, each read back with that broker's own client in its CloudEvents binding; a remote bus
 * receives the hop count plus one; spec problems name their path.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { targetRegistry } from "../../src/bus/targets/registry.ts";
import { skipUnless } from "../helpers/services.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { startInProcess, writeSourceApp } from "./harness.ts";

const skip = (await skipUnless("rabbitmq")) || (await skipUnless("nats")) || (await skipUnless("mqtt")) || (await skipUnless("redis"));
const unique = () => `src_${randomUUID().slice(0, 8)}`;

test("sinks - amqp, nats, mqtt, redisStream and remoteBus deliver the event in their binding, done on the broker's confirm", { skip }, async () => {
  const name = unique();
  const amqp = await import("amqplib");
  const conn = await amqp.connect("amqp://guest:guest@127.0.0.1:5672");
  const ch = await conn.createChannel();
  await ch.assertQueue(name, { durable: false, autoDelete: false });
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager, jetstream } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: "127.0.0.1:4222" });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  const mqtt = await import("mqtt");
  const sub = await mqtt.connectAsync("mqtt://127.0.0.1:1883", { protocolVersion: 5 });
  const mqttGot: { topic: string; payload: string; props: Record<string, unknown> }[] = [];
  sub.on("message", (topic, payload, packet) => mqttGot.push({ topic, payload: payload.toString(), props: (packet.properties ?? {}) as Record<string, unknown> }));
  await sub.subscribeAsync(`${name}/out`, { qos: 1 });
  const { Redis } = await import("ioredis");
  const redis = new Redis("redis://127.0.0.1:6379");

  const remote = writeSourceApp({}, ["sensor.alert"]);
  const remoteServer = await startInProcess(remote);
  const app = writeSourceApp({}, ["never"]);
  writeFileSync(
    join(app.dir, "sluice.config.ts"),
    `export default {
  name: "sinks",
  rules: [{ name: "out", pattern: { type: ["sensor.alert"] }, targets: [
    { amqp: { url: "amqp://guest:guest@127.0.0.1:5672", exchange: "", routingKey: ${JSON.stringify(name)} } },
    { nats: { url: "nats://127.0.0.1:4222", subject: "${name}.alerts" } },
    { mqtt: { url: "mqtt://127.0.0.1:1883", topic: "${name}/out", qos: 1 } },
    { redisStream: { url: "redis://127.0.0.1:6379", stream: ${JSON.stringify(name)}, maxLen: 1000 } },
    { remoteBus: { url: ${JSON.stringify(remoteServer.url)}, bus: "default", key: "k-1" } },
  ] }],
};\n`,
  );
  const server = await startInProcess(app);
  try {
    const res = await fetch(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json" },
      body: JSON.stringify({ specversion: "1.0", id: "alert-1", source: "/sensors", type: "sensor.alert", subject: "s1", data: { c: 42 } }),
    });
    assert.equal(res.status, 202);

    const msg = await eventually(async () => (await ch.get(name, { noAck: true })) || undefined, "the amqp message");
    assert.equal(msg.properties.messageId, "alert-1");
    assert.equal(msg.properties.headers?.cloudEvents_type, "sensor.alert");
    assert.equal(msg.properties.contentType, "application/json");
    assert.deepEqual(JSON.parse(msg.content.toString()), { c: 42 });

    const consumer = await jsm.consumers.add(name, { durable_name: "t", ack_policy: "explicit" as never });
    const jm = await (await jetstream(nc).consumers.get(name, consumer.name)).next({ expires: 5000 });
    assert.ok(jm, "a JetStream message (the publish was acked by the stream)");
    assert.equal(jm.headers?.get("ce-id"), "alert-1");
    assert.equal(jm.headers?.get("ce-subject"), "s1");
    assert.deepEqual(JSON.parse(new TextDecoder().decode(jm.data)), { c: 42 });

    await eventually(async () => (mqttGot.length > 0 ? true : undefined), "the mqtt message");
    assert.equal((mqttGot[0]?.props.userProperties as Record<string, string> | undefined)?.id, "alert-1");
    assert.equal(mqttGot[0]?.props.contentType, "application/json");

    const entries = await eventually(async () => {
      const e = await redis.xrange(name, "-", "+");
      return e.length > 0 ? e : undefined;
    }, "the stream entry");
    const fields = entries[0]![1];
    assert.equal(fields[fields.indexOf("id") + 1], "alert-1");
    assert.equal(fields[fields.indexOf("data") + 1], '{"c":42}');

    await eventually(async () => (remote.received().length > 0 ? true : undefined), "the event at the remote Sluice");
    const r = remote.received()[0]!;
    assert.deepEqual([r.id, r.source, r.sluicehops], ["alert-1", "/sensors", 1]);
  } finally {
    await server.close();
    await remoteServer.close();
    await ch.deleteQueue(name);
    await conn.close();
    await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
    await sub.endAsync();
    await redis.del(name);
    redis.disconnect();
  }
});

test("sinks - specs are checked and problems name the field", () => {
  const kinds = targetRegistry();
  assert.throws(() => kinds.get("amqp")!.compile({ url: "http://x", exchange: "e" }, "$.targets[0].amqp"), /amqp url must be a URL starting with amqp:/);
  assert.throws(() => kinds.get("nats")!.compile({ url: "nats://x", subject: "a.*" }, "$.t"), (e: { path?: string }) => e.path === "$.t.subject");
  assert.throws(() => kinds.get("mqtt")!.compile({ url: "mqtt://x", topic: "t", qos: 3 }, "$.t"), (e: { path?: string }) => e.path === "$.t.qos");
  assert.throws(() => kinds.get("redisStream")!.compile({ url: "redis://x", stream: "s", extra: 1 }, "$.t"), (e: { path?: string }) => e.path === "$.t.extra");
  assert.throws(() => kinds.get("remoteBus")!.compile({ url: "https://x", bus: "b" }, "$.t"), (e: { path?: string }) => e.path === "$.t.key");
  assert.deepEqual(kinds.get("redisStream")!.compile({ url: "redis://x", stream: "s" }, "$"), { url: "redis://x", stream: "s" });
});
