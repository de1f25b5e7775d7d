/**
 * The workflow suite, run on SQLite and on PostgreSQL: steps, sleeps, waits, emits, invokes, idempotency, the
 * waitForEvent race, sagas (compensation order, a failing compensation dead-lettered and redriven, cancel) and
 * the runs admin API. Every test starts a real server on its own app folder and store.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually } from "../helpers/sluice-process.ts";
import { admin, publish, runsSettled, start, writeApp, type TestApp } from "./app.ts";

export interface SuiteOptions {
  name: string;
  /** A store URL for a new, empty store (undefined: the app's own SQLite file). */
  store(app: TestApp): Promise<string | undefined>;
  skip: false | string;
  /** Known gaps of a backend: tests (by the name after "- ") skipped with the reason printed. */
  skipTests?: { reason: string; tests: string[] };
}

const effect = (what: string) => `appendFileSync(\${LOG}, ${what} + "\\n")`;

const fiveSteps = `import { defineWorkflow, NonRetriableError } from \${API};
import { appendFileSync } from "node:fs";
export default defineWorkflow({
  name: "five",
  on: { type: ["five.start"] },
  retry: { attempts: 3, backoff: { initial: "10ms", max: "50ms" } },
  async run(event, step) {
    const id = event.data.n;
    const a = await step.run("a", () => { ${effect("`a ${id}`")}; return { n: id * 2 }; });
    await step.sleep("nap", "300ms");
    const got = await step.waitForEvent("ack", { type: "five.ack", match: "data.n", timeout: "20s" });
    if (!got) throw new NonRetriableError("no ack");
    const b = await step.run("b", () => { ${effect("`b ${id}`")}; return a.n + got.data.extra; });
    await step.emit("done", { type: "five.done", data: { n: id, b } });
    return { b };
  },
});
`;

export function runWorkflowSuite(o: SuiteOptions): void {
  const t = (name: string, fn: () => Promise<void>) => {
    const gap = o.skipTests && o.skipTests.tests.some((prefix) => name.startsWith(prefix)) ? o.skipTests.reason : false;
    if (gap) console.log(`# skipping "${name}" on ${o.name}: ${gap}`);
    return test(`workflows (${o.name}) - ${name}`, { skip: o.skip || gap, timeout: 180_000 }, fn);
  };

  t("a run goes through steps, a sleep, a wait and an emit; completed steps do not run again", async () => {
    const app = writeApp({ "five.ts": fiveSteps });
    const server = await start(app, await o.store(app));
    try {
      const startedAt = Date.now();
      await publish(server, { source: "test", type: "five.start", data: { n: 1 } });
      await eventually(async () => ((await server.workflows.list({ workflow: "five" }))[0]?.status === "waiting" ? true : undefined), "the run waiting");
      const sleptMs = Date.now() - startedAt;
      assert.ok(sleptMs >= 300, `woke after ${sleptMs} ms, before its 300 ms sleep ended`);
      await publish(server, { source: "test", type: "five.ack", data: { n: 2, extra: 100 } });
      await publish(server, { source: "test", type: "five.ack", data: { n: 1, extra: 5 } });
      const [run] = await runsSettled(server, "five", 1, 30_000);
      assert.equal(run!.status, "completed", JSON.stringify(run));
      assert.deepEqual(run!.output, { b: 7 });
      assert.equal(app.count("a 1"), 1);
      assert.equal(app.count("b 1"), 1);
      const show = await admin(server, "GET", `runs/${run!.runId}`);
      assert.equal(show.status, 200);
      assert.deepEqual(show.body.steps.map((s: { id: string; status: string }) => `${s.id}:${s.status}`), ["a:completed", "nap:completed", "ack:completed", "b:completed", "done:completed"]);
      assert.equal(show.body.memo.ack.data.extra, 5);
      const list = await admin(server, "GET", "runs?workflow=five&status=completed");
      assert.equal(list.body.length, 1);
      assert.equal((await admin(server, "GET", "runs?status=bogus")).status, 400);
      assert.equal((await admin(server, "GET", "runs/nope")).status, 404);
      // The trigger again (same source and id): no second run.
      const trigger = run!.trigger;
      await publish(server, { ...trigger, id: trigger.id });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await server.workflows.list({ workflow: "five" })).length, 1);
    } finally {
      await server.close();
    }
  });

  t("waitForEvent receives an event published in the same batch as the trigger, every time (200 runs)", async () => {
    const app = writeApp({
      "race.ts": `import { defineWorkflow } from \${API};
export default defineWorkflow({
  name: "race",
  on: { type: ["race.start"] },
  async run(event, step) {
    const got = await step.waitForEvent("go", { type: "race.go", match: "data.k", timeout: "30s" });
    return got ? got.data.k : null;
  },
});
`,
    });
    const server = await start(app, await o.store(app));
    try {
      const n = 200;
      for (let i = 0; i < n; i += 25) {
        const batch = [];
        for (let k = i; k < i + 25; k++) {
          // Half with the awaited event first, half with the trigger first.
          const pair = [
            { source: "test", type: "race.start", data: { k } },
            { source: "test", type: "race.go", data: { k } },
          ];
          batch.push(...(k % 2 === 0 ? pair : pair.reverse()));
        }
        const out = await publish(server, batch);
        assert.equal(out.failedEntryCount, 0);
      }
      const runs = await runsSettled(server, "race", n, 120_000);
      const bad = runs.filter((r) => r.status !== "completed" || r.output !== (r.trigger.data as any).k);
      assert.deepEqual(bad.map((r) => ({ status: r.status, output: r.output, k: (r.trigger.data as any).k })), []);
    } finally {
      await server.close();
    }
  });

  const sagaFiles = (fixFile: string) => ({
    "trip.ts": `import { defineSaga } from \${API};
export default defineSaga({
  name: "trip",
  on: { type: ["trip.requested"] },
  retry: { attempts: 3, backoff: { initial: "10ms", max: "20ms" } },
  steps: [
    { name: "flight", run: "book-flight", compensate: "cancel-flight" },
    { name: "hotel", run: "book-hotel", compensate: "cancel-hotel" },
    { name: "car", run: "book-car", compensate: "cancel-car" },
  ],
});
`,
    ...Object.fromEntries(
      ["flight", "hotel", "car"].flatMap((what) => [
        [
          `book-${what}.ts`,
          `import { defineFunction, NonRetriableError } from \${API};
import { appendFileSync } from "node:fs";
export default defineFunction({
  name: "book-${what}",
  async handler(event) {
    const { trigger } = event.data;
    if (trigger.data.hold === "${what}") await new Promise((r) => setTimeout(r, 1500));
    if (trigger.data.fail === "${what}") throw new NonRetriableError("no ${what} available");
    ${effect(`"book-${what} " + trigger.data.id`)};
    return { ${what}: "ref-" + trigger.data.id };
  },
});
`,
        ],
        [
          `cancel-${what}.ts`,
          `import { defineFunction } from \${API};
import { appendFileSync, existsSync } from "node:fs";
export default defineFunction({
  name: "cancel-${what}",
  async handler(event) {
    const { trigger, result } = event.data;
    if (trigger.data.badUndo === "${what}" && !existsSync(${JSON.stringify(fixFile)})) throw new Error("the ${what} API is down");
    ${effect(`"cancel-${what} " + trigger.data.id + " " + JSON.stringify(result)`)};
  },
});
`,
        ],
      ]),
    ),
  });

  t("saga: the third step fails for good, compensations of steps 2 and 1 run in that order, compensated", async () => {
    const app = writeApp({});
    const fix = join(app.dir, "fixed");
    for (const [f, src] of Object.entries(sagaFiles(fix))) writeFileSync(join(app.dir, "functions", f), src.replaceAll("${API}", JSON.stringify(new URL("../../src/runtime/function-api.ts", import.meta.url).pathname)).replaceAll("${LOG}", JSON.stringify(app.log)));
    const server = await start(app, await o.store(app));
    try {
      await publish(server, { source: "test", type: "trip.requested", data: { id: "t1", fail: "car" } });
      const [run] = await runsSettled(server, "trip", 1, 30_000);
      assert.equal(run!.status, "compensated", JSON.stringify(run));
      assert.deepEqual(app.effects(), ["book-flight t1", "book-hotel t1", 'cancel-hotel t1 {"hotel":"ref-t1"}', 'cancel-flight t1 {"flight":"ref-t1"}']);
      assert.match(run!.error!.message, /no car available/);

      // A compensation that keeps failing: retried, then compensation-failed with a dead letter; redrive after the fix.
      await publish(server, { source: "test", type: "trip.requested", data: { id: "t2", fail: "car", badUndo: "flight" } });
      await eventually(async () => ((await server.workflows.list({ workflow: "trip" })).find((r) => (r.trigger.data as any).id === "t2")?.status === "compensation-failed" ? true : undefined), "compensation-failed", 30_000);
      const failed = (await server.workflows.list({ workflow: "trip" })).find((r) => (r.trigger.data as any).id === "t2")!;
      const flight = failed.steps.find((s) => s.id === "flight")!;
      assert.equal(flight.compensation?.status, "failed");
      assert.equal(flight.compensation?.attempts, 3);
      assert.equal(app.count('cancel-hotel t2 {"hotel":"ref-t2"}'), 1);
      assert.equal(app.effects().filter((l) => l.startsWith("cancel-flight t2")).length, 0);
      const dead = await eventually(async () => {
        const list = await server.broker.listDeadLetters({ rule: "workflow.trip", target: "run" });
        return list.length > 0 ? list : undefined;
      }, "the compensation's dead letter");
      assert.equal(dead.length, 1);
      assert.match(dead[0]!.lastError ?? "", /compensation of step "flight"/);
      writeFileSync(fix, "");
      assert.equal(await server.broker.redrive({ rule: "workflow.trip", target: "run" }), 1);
      await eventually(async () => ((await server.workflows.get(failed.runId)).status === "compensated" ? true : undefined), "compensated after the redrive", 30_000);
      assert.equal(app.count('cancel-flight t2 {"flight":"ref-t2"}'), 1);
      rmSync(fix);

      // Cancel mid-run: while the hotel is being booked. Its booking completes and is undone too.
      await publish(server, { source: "test", type: "trip.requested", data: { id: "t3", hold: "hotel" } });
      const t3 = await eventually(async () => (await server.workflows.list({ workflow: "trip" })).find((r) => (r.trigger.data as any).id === "t3" && r.steps.some((s) => s.id === "flight" && s.status === "completed")), "t3 booked its flight", 30_000);
      const cancelled = await admin(server, "POST", `runs/${t3.runId}/cancel`);
      assert.equal(cancelled.status, 200);
      await eventually(async () => ((await server.workflows.get(t3.runId)).status === "cancelled" ? true : undefined), "cancelled", 30_000);
      const t3effects = app.effects().filter((l) => l.includes(" t3"));
      assert.equal(t3effects.filter((l) => l.startsWith("book-car")).length, 0, t3effects.join("\n"));
      assert.ok(t3effects.includes('cancel-flight t3 {"flight":"ref-t3"}'), t3effects.join("\n"));
      const undoneHotel = t3effects.includes('cancel-hotel t3 {"hotel":"ref-t3"}');
      assert.equal(undoneHotel, t3effects.includes("book-hotel t3"), "the hotel is undone exactly when it was booked");
      assert.ok(t3effects.indexOf('cancel-flight t3 {"flight":"ref-t3"}') === t3effects.length - 1, "the flight is undone last");
    } finally {
      await server.close();
    }
  });

  t("step.run compensations (closures) run newest first after a NonRetriableError; waitForEvent timeout returns null", async () => {
    const app = writeApp({
      "order.ts": `import { defineWorkflow, NonRetriableError } from \${API};
import { appendFileSync } from "node:fs";
export default defineWorkflow({
  name: "order",
  on: { type: ["order.placed"] },
  async run(event, step) {
    const id = event.data.id;
    const charge = await step.run("charge", ({ idempotencyKey }) => { ${effect("`charge ${id} ${idempotencyKey.length > 0}`")}; return { amount: 5 }; },
      { compensate: (c) => { ${effect("`refund ${id} ${c.amount}`")}; } });
    await step.run("reserve", () => { ${effect("`reserve ${id}`")}; return "r"; }, { compensate: () => { ${effect("`release ${id}`")}; } });
    const shipped = await step.waitForEvent("shipped", { type: "order.shipped", match: "data.id", timeout: "200ms" });
    if (!shipped) throw new NonRetriableError("never shipped");
    return charge;
  },
});
`,
    });
    const server = await start(app, await o.store(app));
    try {
      await publish(server, { source: "test", type: "order.placed", data: { id: randomUUID().slice(0, 6) } });
      const [run] = await runsSettled(server, "order", 1, 30_000);
      const id = (run!.trigger.data as any).id;
      assert.equal(run!.status, "compensated", JSON.stringify(run));
      assert.deepEqual(app.effects(), [`charge ${id} true`, `reserve ${id}`, `release ${id}`, `refund ${id} 5`]);
      assert.equal(run!.memo.shipped, null);
      assert.match(run!.error!.message, /never shipped/);
    } finally {
      await server.close();
    }
  });

  t("concurrency: { key, limit: 1 } runs one run per key at a time; idempotency by key skips a second trigger", async () => {
    const app = writeApp({
      "serial.ts": `import { defineWorkflow } from \${API};
import { appendFileSync } from "node:fs";
export default defineWorkflow({
  name: "serial",
  on: { type: ["serial.start"] },
  concurrency: { key: "data.customer", limit: 1 },
  idempotency: { key: "data.order" },
  async run(event, step) {
    await step.run("begin", () => { appendFileSync(\${LOG}, "begin " + event.data.customer + " " + Date.now() + "\\n"); });
    await step.sleep("work", "150ms");
    await step.run("end", () => { appendFileSync(\${LOG}, "end " + event.data.customer + " " + Date.now() + "\\n"); });
  },
});
`,
    });
    const server = await start(app, await o.store(app));
    try {
      const events = [];
      for (let i = 0; i < 4; i++) events.push({ source: "test", type: "serial.start", data: { customer: "ada", order: `o${i}` } });
      events.push({ source: "test", type: "serial.start", data: { customer: "bob", order: "o9" } });
      events.push({ source: "test", type: "serial.start", data: { customer: "bob", order: "o9" } });
      await publish(server, events);
      const runs = await runsSettled(server, "serial", 5, 60_000);
      assert.ok(runs.every((r) => r.status === "completed"));
      const lines = app.effects().map((l) => l.split(" "));
      const ada = lines.filter((l) => l[1] === "ada");
      // Strictly alternating begin/end for one customer: never two of its runs inside at once.
      assert.deepEqual(ada.map((l) => l[0]), ["begin", "end", "begin", "end", "begin", "end", "begin", "end"]);
      assert.equal(lines.filter((l) => l[1] === "bob" && l[0] === "begin").length, 1);
    } finally {
      await server.close();
    }
  });
}
