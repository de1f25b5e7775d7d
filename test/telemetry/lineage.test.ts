/**
 * Lineage without a collector: a route's function emits an event that a rule sends to a second function, which
 * fails once and then emits to a third. `GET /admin/events/:id/trace` and `sluice trace` show the whole tree:
 * rules matched, each attempt with outcome and error, the run of each attempt, and the emitted events.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { startServer } from "../../src/server/server.ts";
import type { AttemptNode, DeliveryNode, LineageNode } from "../../src/telemetry/lineage-tree.ts";
import { ensureBuilt, eventually, spawnSluice } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";
import { postgresAdminUrl, skipUnless } from "../helpers/services.ts";
import { writeChainApp } from "./chain-app.ts";

async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnSluice(args);
  await once(child.proc, "close");
  return { code: await child.exited, stdout: child.stdout(), stderr: child.stderr() };
}

/** What the tree says, without times, durations and generated ids. */
function shape(n: LineageNode): unknown {
  const attempt = (a: AttemptNode) => ({
    attempt: a.attempt,
    outcome: a.outcome,
    ...(a.error === undefined ? {} : { error: a.error }),
    run: a.run === undefined ? undefined : { functionName: a.run.functionName, attempt: a.run.attempt, outcome: a.run.outcome },
  });
  const delivery = (d: DeliveryNode) => ({ bus: d.bus, rule: d.rule, target: d.target, function: d.function, status: d.status, attempts: d.attempts.map(attempt) });
  return {
    type: n.type,
    found: n.found,
    emittedBy: n.emittedBy?.functionName,
    stored: n.stored.map((s) => ({ bus: s.bus, rules: s.rules })),
    deliveries: n.deliveries.map(delivery),
    runs: n.runs.map((r) => ({ functionName: r.functionName, outcome: r.outcome })),
    children: n.children.map(shape),
  };
}

/** The same chain on each backend: lineage uses only the store contract's state store. */
const backends = [
  { name: "sqlite", skip: false as false | string, store: () => undefined as string | undefined, drop: async () => {} },
  (() => {
    const schema = `tel_${randomUUID().replace(/-/g, "").slice(0, 16)}`;
    return {
      name: "postgres",
      skip: false as false | string,
      store: () => `${postgresAdminUrl}?schema=${schema}`,
      async drop() {
        const { default: pg } = await import("pg");
        const client = new pg.Client({ connectionString: postgresAdminUrl });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.end();
      },
    };
  })(),
];
backends[1]!.skip = await skipUnless("postgres");

for (const backend of backends) {
test(`lineage (${backend.name}) - sluice trace and /admin/events/:id/trace show a three-function chain with its retry`, { skip: backend.skip }, async () => {
  ensureBuilt();
  const dir = tempDir("sluice-lineage-");
  writeChainApp(dir);
  const store = backend.store();
  const server = await startServer({
    appDir: dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true, ...(store === undefined ? {} : { store }) },
    noAuth: true,
    env: {},
  });
  try {
    const res = await fetch(`${server.url}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 202);
    const { eventId } = (await res.json()) as { eventId: string };

    const tree = await eventually(async () => {
      const r = await fetch(`${server.url}/admin/events/${eventId}/trace`);
      if (r.status !== 200) return undefined;
      const t = (await r.json()) as LineageNode;
      const mail = t.children[0]?.children[0];
      return mail?.deliveries[0]?.status === "delivered" ? t : undefined;
    }, "the whole chain in the lineage", 20_000);

    assert.deepEqual(shape(tree), {
      type: undefined, // the request event of a synchronous route is not stored on a bus
      found: true,
      emittedBy: undefined,
      stored: [],
      deliveries: [],
      runs: [{ functionName: "ingest", outcome: "success" }],
      children: [
        {
          type: "order.created",
          found: true,
          emittedBy: "ingest",
          stored: [{ bus: "default", rules: ["function.bill"] }],
          deliveries: [
            {
              bus: "default",
              rule: "function.bill",
              target: "fn",
              function: "bill",
              status: "delivered",
              attempts: [
                { attempt: 1, outcome: "retry", error: "error: card declined", run: { functionName: "bill", attempt: 1, outcome: "error" } },
                { attempt: 2, outcome: "delivered", run: { functionName: "bill", attempt: 2, outcome: "success" } },
              ],
            },
          ],
          runs: [],
          children: [
            {
              type: "invoice.created",
              found: true,
              emittedBy: "bill",
              stored: [{ bus: "default", rules: ["function.mail"] }],
              deliveries: [
                {
                  bus: "default",
                  rule: "function.mail",
                  target: "fn",
                  function: "mail",
                  status: "delivered",
                  attempts: [{ attempt: 1, outcome: "delivered", run: { functionName: "mail", attempt: 1, outcome: "success" } }],
                },
              ],
              runs: [],
              children: [],
            },
          ],
        },
      ],
    });
    const order = tree.children[0]!;
    assert.equal(order.parentId, eventId, "an emitted event carries its parent (causationid)");
    assert.equal(order.correlationId, eventId);
    assert.equal(order.children[0]!.parentId, order.eventId);
    const [first, second] = order.deliveries[0]!.attempts;
    assert.ok(first!.nextAttemptAt! >= first!.startedAt, "a retried attempt says when the next one is due");
    assert.ok(second!.startedAt >= first!.startedAt);
    assert.ok(order.emittedBy?.invocationId === tree.runs[0]!.invocationId, "the child names the run that emitted it");

    const text = await cli(["trace", eventId, "--url", server.url]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /rule default\/function\.bill -> fn \(function bill\): delivered after 2 attempts/);
    assert.match(text.stdout, /attempt 1 \S+ retry \d+ ms: error: card declined/);
    assert.match(text.stdout, /invoice\.created \S+ emitted by bill stored on default/);
    assert.match(text.stdout, /run mail success/);
    const json = await cli(["trace", eventId, "--json", "--url", server.url]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(shape(JSON.parse(json.stdout) as LineageNode), shape(tree));

    // The child's own trace starts at the child.
    const sub = (await (await fetch(`${server.url}/admin/events/${order.eventId}/trace`)).json()) as LineageNode;
    assert.equal(sub.type, "order.created");
    assert.equal(sub.children.length, 1);
    const depth1 = (await (await fetch(`${server.url}/admin/events/${eventId}/trace?depth=1`)).json()) as LineageNode;
    assert.equal(depth1.children[0]!.children.length, 0);
    assert.equal(depth1.children[0]!.truncated, true);

    const missing = await fetch(`${server.url}/admin/events/no-such-event/trace`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "E_NOT_FOUND");
    const bad = await fetch(`${server.url}/admin/events/${eventId}/trace?depth=0`);
    assert.equal(bad.status, 400);
    const notFound = await cli(["trace", "no-such-event", "--url", server.url]);
    assert.notEqual(notFound.code, 0);
    assert.match(notFound.stderr, /nothing is recorded for event no-such-event/);
  } finally {
    await server.close();
    await backend.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});
}

test("lineage - telemetry.lineage: false records nothing and the trace endpoint says so", async () => {
  ensureBuilt();
  const dir = tempDir("sluice-lineage-off-");
  writeChainApp(dir, ", telemetry: { lineage: false }");
  const server = await startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: {} });
  try {
    const res = await fetch(`${server.url}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    const { eventId } = (await res.json()) as { eventId: string };
    const r = await fetch(`${server.url}/admin/events/${eventId}/trace`);
    assert.equal(r.status, 404);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /lineage is off/);
    const listed = await server.broker.queueStats();
    assert.ok(Array.isArray(listed));
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
