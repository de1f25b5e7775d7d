/**
 * The nats source against the machine's NATS JetStream, published to with @nats-io/jetstream: wrapped messages
 * with the stream sequence as id, binary and structured CloudEvents, dead letters, a connection cut through a
 * proxy, and two `sluice start` nodes on one PostgreSQL sharing one durable consumer while one is SIGKILLed
 * with 2 000 messages flowing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createTestDatabase, services, skipUnless } from "../helpers/services.ts";
import { startTcpProxy } from "../helpers/tcp-proxy.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { killTwoNodes, startInProcess, waitForAll, writeSourceApp } from "./harness.ts";

const skip = await skipUnless("nats");
const unique = () => `src_${randomUUID().slice(0, 8)}`;

async function nats() {
  const { connect, headers } = await import("@nats-io/transport-node");
  const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: `127.0.0.1:${services.nats.port}` });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc), headers };
}

test("nats source - sequence ids, the NATS CloudEvents binding, dead letters, a connection cut", { skip }, async () => {
  const stream = unique();
  const n = await nats();
  await n.jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  const proxy = await startTcpProxy(services.nats);
  const app = writeSourceApp({ jobs: { kind: "nats", url: `nats://127.0.0.1:${proxy.port}`, stream, subject: `${stream}.>`, type: "job.requested", maxEventBytes: 3000 } }, ["job.requested", "job.binary", "job.structured"]);
  const server = await startInProcess(app);
  try {
    await eventually(async () => (server.sources.list().find((s) => s.name === "jobs")?.status === "ok" ? true : undefined), "connected");
    for (let i = 0; i < 30; i++) await n.js.publish(`${stream}.work`, JSON.stringify({ n: i }));
    const h = n.headers();
    for (const [k, v] of Object.entries({ "ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/jobs", "ce-type": "job.binary", "content-type": "application/json" })) h.set(k, v);
    await n.js.publish(`${stream}.bin`, JSON.stringify({ b: 1 }), { headers: h });
    const hs = n.headers();
    hs.set("content-type", "application/cloudevents+json");
    await n.js.publish(`${stream}.st`, JSON.stringify({ specversion: "1.0", id: "s-1", source: "/jobs", type: "job.structured", data: 2 }), { headers: hs });
    await n.js.publish(`${stream}.big`, JSON.stringify({ pad: "z".repeat(4000) }));
    await waitForAll(app, [...Array.from({ length: 30 }, (_, i) => `${stream}-${i + 1}`), "b-1", "s-1"], (e) => e.id);
    const got = app.received();
    const first = got.find((e) => e.id === `${stream}-1`)!;
    assert.deepEqual([first.source, first.type, first.subject, first.data], [`nats://127.0.0.1:${proxy.port}/${stream}`, "job.requested", `${stream}.work`, { n: 0 }]);
    assert.deepEqual(got.find((e) => e.id === "b-1")?.data, { b: 1 });
    assert.equal(got.find((e) => e.id === "s-1")?.data, 2);
    await eventually(async () => (server.sources.list().find((s) => s.name === "jobs")?.messages["dead-lettered"] === 1 ? true : undefined), "one dead letter");

    proxy.cut();
    for (let i = 0; i < 100; i++) await n.js.publish(`${stream}.work`, JSON.stringify({ n: 100 + i }));
    proxy.cut();
    await waitForAll(app, Array.from({ length: 100 }, (_, i) => `${stream}-${i + 34}`), (e) => e.id, 60_000);
    assert.ok(proxy.accepted() >= 2, "it reconnected");
    const ci = await n.jsm.consumers.info(stream, "sluice-jobs");
    await eventually(async () => ((await n.jsm.consumers.info(stream, "sluice-jobs")).num_ack_pending === 0 ? true : undefined), `all acked (${ci.num_ack_pending} pending)`);
  } finally {
    await server.close();
    await proxy.close();
    await n.jsm.streams.delete(stream).catch(() => undefined);
    await n.nc.close();
  }
});

test("nats source - two sluice start nodes on one PostgreSQL share a durable consumer; SIGKILL of one with 2 000 messages flowing loses none", { skip: skip || (await skipUnless("postgres")) }, async () => {
  ensureBuilt();
  const stream = unique();
  const db = await createTestDatabase();
  const n = await nats();
  await n.jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  const app = writeSourceApp({ jobs: { kind: "nats", url: "nats://127.0.0.1:4222", stream, subject: `${stream}.>`, type: "job.requested", maxAckPending: 100, ackWaitMs: 3000 } }, ["job.requested"]);
  const total = 2000;
  try {
    const { pids } = await killTwoNodes({
      app,
      storeUrl: db.url,
      total,
      publish: async () => {
        for (let i = 0; i < total; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => n.js.publish(`${stream}.work`, JSON.stringify({ n: i + j }))));
      },
    });
    assert.ok(pids.size >= 2, `both nodes ran some (pids ${[...pids].join(", ")})`);
  } finally {
    await n.jsm.streams.delete(stream).catch(() => undefined);
    await n.nc.close();
    await db.drop();
  }
});
