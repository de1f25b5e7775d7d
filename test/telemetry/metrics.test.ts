/**
 * /metrics: deliveries by outcome per target, first-attempt latency, queue depth, dead letters with the oldest
 * one's age, GB-seconds per function and webhook outcomes, read from a real server after real traffic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startServer } from "../../src/server/server.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";
import { writeChainApp } from "./chain-app.ts";

/** The value of one sample line `name{labels} value`, labels given in any order. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !(Object.keys(labels).length === 0 && line.startsWith(`${name} `))) continue;
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = new Map([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => got.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

test("metrics - deliveries, first-attempt latency, queue depth, dead letters, GB-seconds and webhook outcomes", async () => {
  ensureBuilt();
  const refusing = createServer((_req, res) => res.writeHead(400).end("no"));
  refusing.listen(0, "127.0.0.1");
  await once(refusing, "listening");
  const hook = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/hook`;
  const dir = tempDir("sluice-metrics-");
  writeChainApp(dir, `, rules: [{ name: "audit", pattern: { type: ["invoice.created"] }, targets: [{ id: "hook", webhook: ${JSON.stringify(hook)} }] }]`);
  const server = await startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: {} });
  try {
    const res = await fetch(`${server.url}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 202);
    const text = await eventually(async () => {
      const t = await (await fetch(`${server.url}/metrics`)).text();
      const done = sample(t, "sluice_deliveries_total", { target: "default/function.mail/fn", outcome: "delivered" }) === 1;
      const dead = sample(t, "sluice_dead_letters", { target: "default/audit/hook" }) === 1;
      return done && dead ? t : undefined;
    }, "the chain delivered and the webhook dead-lettered", 20_000);

    assert.equal(sample(text, "sluice_deliveries_total", { target: "default/function.bill/fn", kind: "function", outcome: "retry" }), 1);
    assert.equal(sample(text, "sluice_deliveries_total", { target: "default/function.bill/fn", kind: "function", outcome: "delivered" }), 1);
    assert.equal(sample(text, "sluice_deliveries_total", { target: "default/audit/hook", kind: "webhook", outcome: "dead" }), 1);
    assert.equal(sample(text, "sluice_webhook_deliveries_total", { target: "default/audit/hook", outcome: "dead" }), 1);
    // One first attempt per delivery: bill, mail and the webhook (bill's retry is not a first attempt).
    assert.equal(sample(text, "sluice_delivery_first_attempt_latency_seconds_count", { target: "default/function.bill/fn" }), 1);
    assert.equal(sample(text, "sluice_delivery_first_attempt_latency_seconds_count", { target: "default/audit/hook" }), 1);
    assert.equal(sample(text, "sluice_queue_depth", { target: "default/function.bill/fn", state: "ready" }), 0);
    assert.equal(sample(text, "sluice_queue_depth", { target: "default/audit/hook", state: "leased" }), 0);
    const age = sample(text, "sluice_dead_letter_oldest_age_seconds", { target: "default/audit/hook" });
    assert.ok(age !== undefined && age >= 0 && age < 60, `oldest dead letter age ${age}`);
    assert.equal(sample(text, "sluice_dead_letter_oldest_age_seconds", { target: "default/function.bill/fn" }), undefined, "no series without dead letters");
    for (const fn of ["ingest", "bill", "mail"]) {
      const gb = sample(text, "sluice_function_gb_seconds_total", { function: fn });
      assert.ok(gb !== undefined && gb > 0, `GB-seconds of ${fn}: ${gb}`);
    }
    assert.match(text, /# TYPE sluice_deliveries_total counter/);
    assert.match(text, /# TYPE sluice_delivery_first_attempt_latency_seconds histogram/);
    assert.doesNotMatch(text, /eventId|event_id|delivery_id/, "no per-event labels");
  } finally {
    await server.close();
    refusing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
