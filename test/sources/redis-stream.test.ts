/**
 * The redis-stream source against the machine's Redis, written to with ioredis: plain entries, entries in
 * Sluice's CloudEvent field layout, entry-id dedupe, dead letters, a `CLIENT KILL` of the source's own
 * connection, and two `sluice start` nodes on one PostgreSQL in one consumer group while one is SIGKILLed with
 * 2 000 entries flowing (its pending entries are claimed by XAUTOCLAIM).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { killTwoNodes, startInProcess, waitForAll, writeSourceApp } from "./harness.ts";

const skip = await skipUnless("redis");
const url = "redis://127.0.0.1:6379";
const unique = () => `src_${randomUUID().slice(0, 8)}`;

async function redis() {
  const { Redis } = await import("ioredis");
  return new Redis(url);
}

test("redis-stream source - entries become events with the entry id, CloudEvent layout, dead letters, CLIENT KILL reconnect", { skip }, async () => {
  const stream = unique();
  const r = await redis();
  const app = writeSourceApp({ clicks: { kind: "redis-stream", url, stream, type: "click.recorded", maxEventBytes: 3000 } }, ["click.recorded", "click.ce"]);
  const server = await startInProcess(app);
  try {
    await eventually(async () => (server.sources.list().find((s) => s.name === "clicks")?.status === "ok" ? true : undefined), "connected");
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await r.xadd(stream, "*", "data", JSON.stringify({ n: i }), "page", "home")) as string);
    const plain = (await r.xadd(stream, "*", "user", "ada", "button", "buy")) as string;
    await r.xadd(stream, "*", "specversion", "1.0", "id", "ce-1", "source", "/web", "type", "click.ce", "subject", "s1", "datacontenttype", "application/json", "data", '{"x":1}');
    await r.xadd(stream, "*", "data", JSON.stringify({ pad: "y".repeat(4000) }));
    await r.xadd(stream, "*", "specversion", "1.0", "id", "ce-bad", "source", "/web"); // no type
    await waitForAll(app, [...ids, plain, "ce-1"], (e) => e.id);
    const got = app.received();
    const first = got.find((e) => e.id === ids[0])!;
    assert.deepEqual([first.source, first.type, first.data, first.page], [`redis://127.0.0.1:6379/${stream}`, "click.recorded", { n: 0 }, "home"]);
    assert.deepEqual(got.find((e) => e.id === plain)?.data, { user: "ada", button: "buy" });
    const ce = got.find((e) => e.id === "ce-1")!;
    assert.deepEqual([ce.source, ce.type, ce.subject, ce.data], ["/web", "click.ce", "s1", { x: 1 }]);
    await eventually(async () => (server.sources.list().find((s) => s.name === "clicks")?.messages["dead-lettered"] === 2 ? true : undefined), "two dead letters");
    const dead = (await (await fetch(`${server.url}/admin/sources/clicks/dead-letters`)).json()) as { lastError: string }[];
    assert.match(dead.map((d) => d.lastError).join("\n"), /E_EVENT_TOO_LARGE/);
    await eventually(async () => (Number((await r.xpending(stream, "sluice"))[0]) === 0 ? true : undefined), "nothing pending: all acknowledged");

    // Kill the source's own connection: it reconnects and reads on.
    const consumer = (server.sources.list().find((s) => s.name === "clicks")?.details as { consumer: string } | undefined)?.consumer ?? "";
    const clients = (await r.client("LIST")) as string;
    const mine = clients.split("\n").filter((l) => l.includes(` name=sluice:clicks:${consumer} `)).map((l) => /id=(\d+)/.exec(l)?.[1]);
    assert.equal(mine.length, 1, clients);
    await r.client("KILL", "ID", mine[0] as string);
    const more: string[] = [];
    for (let i = 0; i < 50; i++) more.push((await r.xadd(stream, "*", "data", JSON.stringify({ n: 100 + i }))) as string);
    await waitForAll(app, more, (e) => e.id);
    assert.ok(((server.sources.list().find((s) => s.name === "clicks")?.details as { reconnects: number } | undefined)?.reconnects ?? 0) >= 1);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /sluice_source_messages_total\{source="clicks",outcome="stored"\} 102/);
  } finally {
    await server.close();
    await r.del(stream);
    r.disconnect();
  }
});

test("redis-stream source - two sluice start nodes on one PostgreSQL share a consumer group; SIGKILL of one with 2 000 entries flowing loses none", { skip: skip || (await skipUnless("postgres")) }, async () => {
  ensureBuilt();
  const stream = unique();
  const db = await createTestDatabase();
  const r = await redis();
  const app = writeSourceApp({ clicks: { kind: "redis-stream", url, stream, type: "click.recorded", claimIdleMs: 3000, count: 50 } }, ["click.recorded"]);
  const total = 2000;
  try {
    const { pids } = await killTwoNodes({
      app,
      storeUrl: db.url,
      total,
      publish: async () => {
        for (let i = 0; i < total; i++) await r.xadd(stream, "*", "data", JSON.stringify({ n: i }));
      },
    });
    assert.ok(pids.size >= 2, `both nodes ran some (pids ${[...pids].join(", ")})`);
  } finally {
    await r.del(stream);
    r.disconnect();
    await db.drop();
  }
});
