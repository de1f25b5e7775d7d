/**
 * Alerts declared in the app publish sluice.alert.fired when their condition holds for `for`, and
 * sluice.alert.resolved when it stops, on the bus: here a rule routes them to a webhook on a real HTTP server.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { startServer } from "../../src/server/server.ts";
import { ensureBuilt, eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";
import { writeChainApp } from "./chain-app.ts";

interface AlertEvent {
  type: string;
  source: string;
  subject: string;
  data: { alert: string; condition: string; value: number; above: number; target?: string };
}

test("alerts - a dead letter fires dlq-growing on the bus, a purge resolves it", async () => {
  ensureBuilt();
  const alerts: AlertEvent[] = [];
  const hooks = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      if (req.url === "/refuse") {
        res.writeHead(400).end("no");
        return;
      }
      alerts.push(JSON.parse(body) as AlertEvent);
      res.writeHead(204).end();
    });
  });
  hooks.listen(0, "127.0.0.1");
  await once(hooks, "listening");
  const base = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}`;
  const dir = tempDir("sluice-alerts-");
  writeChainApp(
    dir,
    `, rules: [
      { name: "audit", pattern: { type: ["invoice.created"] }, targets: [{ id: "hook", webhook: "${base}/refuse" }] },
      { name: "pager", pattern: { source: ["sluice/alerts"] }, targets: [{ id: "page", webhook: "${base}/alerts" }] },
    ],
    alerts: {
      "dlq-growing": { dlqSize: { above: 0 }, for: "0s", target: "default/audit/hook" },
      "mail-errors": { errorRate: { above: 0 }, function: "mail" },
    }`,
  );
  const server = await startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true }, noAuth: true, env: {} });
  try {
    const res = await fetch(`${server.url}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 202);
    const fired = await eventually(async () => alerts.find((a) => a.type === "sluice.alert.fired"), "sluice.alert.fired at the webhook", 30_000);
    assert.equal(fired.source, "sluice/alerts");
    assert.equal(fired.subject, "dlq-growing");
    assert.deepEqual(
      { alert: fired.data.alert, condition: fired.data.condition, value: fired.data.value, above: fired.data.above, target: fired.data.target },
      { alert: "dlq-growing", condition: "dlqSize", value: 1, above: 0, target: "default/audit/hook" },
    );
    const purged = await fetch(`${server.url}/admin/dlq/default/audit/hook/purge`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.deepEqual(await purged.json(), { purged: 1 });
    const resolved = await eventually(async () => alerts.find((a) => a.type === "sluice.alert.resolved"), "sluice.alert.resolved at the webhook", 20_000);
    assert.equal(resolved.subject, "dlq-growing");
    assert.equal(resolved.data.value, 0);
    assert.equal(alerts.filter((a) => a.type === "sluice.alert.fired").length, 1, "fired once while it held; mail never failed");
  } finally {
    await server.close();
    hooks.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("alerts - bad alerts are config problems naming their key", () => {
  let problems = new Map<string, string>();
  try {
    validateApp(
      {
        name: "a",
        alerts: {
          none: { for: "5m" },
          two: { dlqSize: { above: 1 }, backlog: { above: 2 } },
          rate: { errorRate: { above: 2 } },
          late: { backlog: { above: 1 }, for: "5 fortnights" },
          typo: { dlqSize: { above: 1 }, fro: "5m" },
          fn: { budgetUse: { above: 0.8 }, function: "nope" },
        },
      },
      { file: "sluice.config.ts", functions: [{ name: "bill", file: "bill" }] },
    );
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    problems = new Map(err.problems.map((p) => [p.key, `${p.message} | ${p.fix ?? ""}`]));
  }
  assert.match(problems.get("alerts.none") ?? "", /needs one condition/);
  assert.match(problems.get("alerts.two") ?? "", /2 conditions/);
  assert.match(problems.get("alerts.rate.errorRate.above") ?? "", /from 0 to 1/);
  assert.ok(problems.has("alerts.late.for"));
  assert.match(problems.get("alerts.typo.fro") ?? "", /did you mean "for"/);
  assert.match(problems.get("alerts.fn.function") ?? "", /unknown function "nope"/);
  const ok = validateApp({ name: "a", alerts: { d: { dlqSize: { above: 10 }, for: "5m" } } }, { file: "c.ts" });
  assert.deepEqual(ok.alerts, [{ name: "d", condition: "dlqSize", above: 10, forMs: 300_000, windowMs: 300_000 }]);
});
