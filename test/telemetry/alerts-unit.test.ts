/** The alert evaluator on its own: `for`, error-rate windows and budget use, sampled by hand on a set clock. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { CloudEvent } from "../../src/event/types.ts";
import { noopLogger } from "../../src/logger.ts";
import { Alerts, type AlertSpec } from "../../src/telemetry/alerts.ts";

function harness(alerts: AlertSpec[]) {
  let now = 1_000_000;
  const counters: Record<string, { invocations: number; failures: number }> = { bill: { invocations: 0, failures: 0 } };
  const budget: Record<string, number> = { report: 0 };
  const published: CloudEvent[] = [];
  const a = new Alerts({
    alerts,
    logger: noopLogger,
    now: () => now,
    publish: async (e) => {
      published.push(e);
    },
    readers: { queueStats: async () => [], functionQueue: (f) => `rule:default/function.${f}/fn`, functionCounters: () => counters, budgetUse: () => budget },
  });
  return {
    a,
    counters,
    budget,
    published,
    tick: async (ms: number) => {
      now += ms;
      await a.evaluate();
    },
    types: () => published.map((e) => `${e.subject}:${e.type.replace("sluice.alert.", "")}`),
  };
}

test("alerts - errorRate over its window fires after `for` and resolves when the window has no failures", async () => {
  const h = harness([{ name: "errs", condition: "errorRate", above: 0.5, forMs: 2000, windowMs: 10_000, function: "bill" }]);
  await h.tick(0);
  h.counters.bill = { invocations: 4, failures: 3 };
  await h.tick(1000);
  assert.deepEqual(h.types(), [], "holds, but not yet for 2 s");
  await h.tick(1000);
  assert.deepEqual(h.types(), [], "1 s after it started holding");
  await h.tick(1000);
  assert.deepEqual(h.types(), ["errs:fired"]);
  assert.equal((h.published[0]!.data as { value: number }).value, 0.75);
  await h.tick(1000);
  assert.deepEqual(h.types(), ["errs:fired"], "fires once");
  h.counters.bill = { invocations: 40, failures: 3 };
  await h.tick(11_000); // the failures left the window
  assert.deepEqual(h.types(), ["errs:fired", "errs:resolved"]);
  assert.equal(h.published[1]!.source, "sluice/alerts");
});

test("alerts - budgetUse above the threshold fires at once with for 0, and a dip resets `for`", async () => {
  const h = harness([
    { name: "budget", condition: "budgetUse", above: 0.8, forMs: 0, windowMs: 300_000 },
    { name: "slow", condition: "budgetUse", above: 0.5, forMs: 5000, windowMs: 300_000, function: "report" },
  ]);
  h.budget.report = 0.9;
  await h.tick(1000);
  assert.deepEqual(h.types(), ["budget:fired"]);
  await h.tick(4000);
  h.budget.report = 0.1;
  await h.tick(1000);
  h.budget.report = 0.9;
  await h.tick(1000);
  await h.tick(4000);
  assert.deepEqual(h.types(), ["budget:fired", "budget:resolved", "budget:fired"], "slow never held for 5 s in a row");
  await h.tick(1000);
  assert.deepEqual(h.types(), ["budget:fired", "budget:resolved", "budget:fired", "slow:fired"]);
});
