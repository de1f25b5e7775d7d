/**
 * The function runtime and the bus agree on failures end to end: each failure mode follows the function's own
 * retry policy, then its dead-letter queue with the reason, checked through the broker's DLQ API, while a healthy
 * function keeps serving. Real SQLite file, real worker threads, wired as the server wires them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { CloudEvent } from "../../src/event/types.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { writeFunction } from "../runtime/helpers.ts";
import { startStack } from "./stack.ts";

const ev = (type: string, data: unknown = {}) => ({ specversion: "1.0", id: randomUUID(), source: "/int", type, data });

test("integration - a throwing function is retried per its retry policy, then dead-lettered with its reason and attempts", async () => {
  const s = await startStack({
    functions: (dir) => [
      writeFunction(dir, "thrower", `on: { type: ["t.boom"] }, retry: { attempts: 2, backoff: { initial: "20ms", max: "40ms" } },`, `throw new Error("boom " + ctx.attempt);`),
    ],
  });
  try {
    // The function's retry settings are its implicit rule's target policy.
    assert.deepEqual(s.broker.getRule("function.thrower").targets[0]?.retryPolicy, { maxAttempts: 3, baseBackoffMs: 20, maxBackoffMs: 40 });
    const e = ev("t.boom");
    await s.broker.publish("default", e);
    await s.changes.until(() => s.deliveries("dead", "thrower").length === 1, "the dead letter", 30_000);

    const runs = s.of("thrower");
    assert.deepEqual(runs.map((r) => [r.attempt, r.outcome, r.reason]), [
      [1, "error", "error: boom 1"],
      [2, "error", "error: boom 2"],
      [3, "error", "error: boom 3"],
    ]);
    const retries = s.deliveries("retry", "thrower");
    assert.equal(retries.length, 2);
    assert.ok(retries[0]!.delayMs < 20 && retries[1]!.delayMs < 40, `full-jitter delays under 20 and 40 ms: ${retries.map((r) => r.delayMs)}`);
    assert.equal(retries[0]!.error, "error: boom 1");

    const [dead, ...more] = await s.broker.listDeadLetters(s.ref("thrower"));
    assert.equal(more.length, 0);
    assert.ok(dead);
    assert.equal(dead.reason, "max-attempts");
    assert.equal(dead.attempts, 3);
    assert.equal(dead.lastError, "error: boom 3");
    assert.equal(dead.event.id, e.id);
  } finally {
    await s.close();
  }
});

test("integration - timeout, out-of-memory and process.exit dead-letter with their reasons while a healthy function keeps serving", async () => {
  const s = await startStack({
    functions: (dir) => [
      writeFunction(dir, "spinner", `on: { type: ["t.spin"] }, timeout: "500ms", retry: { attempts: 1, backoff: { initial: "10ms", max: "10ms" } },`, `for (;;) {}`),
      writeFunction(dir, "quitter", `on: { type: ["t.quit"] }, retry: { attempts: 1, backoff: { initial: "10ms", max: "10ms" } },`, `process.exit(3);`),
      // A long timeout: on a loaded machine the heap can take seconds to fill.
      writeFunction(
        dir,
        "hog",
        `on: { type: ["t.hog"] }, timeout: "60s", memory: 32, retry: { attempts: 0 },`,
        `const hog: number[][] = []; for (;;) hog.push(new Array(1_000_000).fill(hog.length));`,
      ),
      writeFunction(dir, "healthy", `on: { type: ["t.ping"] },`, `return data.n;`),
    ],
  });
  try {
    await s.broker.publish("default", [ev("t.spin"), ev("t.quit"), ev("t.hog")]);
    const failed = () => ["spinner", "quitter", "hog"].every((fn) => s.deliveries("dead", fn).length === 1);
    // Keep the healthy function busy, one event at a time, until every failure is dead-lettered.
    let served = 0;
    while (!failed()) {
      await s.broker.publish("default", ev("t.ping", { n: served }));
      await s.changes.until(() => s.deliveries("delivered", "healthy").length === served + 1, `healthy event ${served}`, 30_000);
      served++;
      if (served > 5000) assert.fail("the failures were not dead-lettered");
    }
    assert.ok(served >= 1);
    assert.ok(s.of("healthy").every((r) => r.outcome === "success"));

    const one = async (fn: string) => {
      const list = await s.broker.listDeadLetters(s.ref(fn));
      assert.equal(list.length, 1, `${fn}: one dead letter`);
      return list[0]!;
    };
    const spin = await one("spinner");
    assert.equal(spin.reason, "max-attempts");
    assert.equal(spin.attempts, 2);
    assert.match(spin.lastError ?? "", /^timeout: spinner ran past 500 ms/);
    const quit = await one("quitter");
    assert.equal(quit.attempts, 2);
    assert.match(quit.lastError ?? "", /^crashed: /);
    const hog = await one("hog");
    assert.equal(hog.attempts, 1);
    assert.match(hog.lastError ?? "", /^out-of-memory: hog exceeded 32 MB/);
    assert.deepEqual(s.of("spinner").map((r) => r.outcome), ["timeout", "timeout"]);
    assert.deepEqual(s.of("quitter").map((r) => r.outcome), ["crashed", "crashed"]);
    assert.deepEqual(s.of("hog").map((r) => r.outcome), ["out-of-memory"]);
    assert.deepEqual(await s.broker.listDeadLetters(s.ref("healthy")), []);
  } finally {
    await s.close();
  }
});

test("integration - a chain past 16 hops is dead-lettered once with recursive-loop and sluice.loop.detected is published", async () => {
  let out = "";
  const s = await startStack({
    functions: (dir) => {
      out = join(dir, "loop-events.jsonl");
      return [
        // Re-emits its own event type; retries allowed, so a retried loop would show more attempts.
        writeFunction(dir, "echo", `on: { type: ["t.echo"] }, retry: { attempts: 3, backoff: { initial: "10ms", max: "10ms" } },`, `await ctx.emit({ type: "t.echo", source: "echo", data: { n: (data.n ?? 0) + 1 } });`),
        writeFunction(
          dir,
          "watcher",
          `on: { type: ["sluice.loop.detected"] },`,
          `const { appendFileSync } = await import("node:fs"); appendFileSync(${JSON.stringify(join(dir, "loop-events.jsonl"))}, JSON.stringify(event) + "\\n");`,
        ),
      ];
    },
  });
  try {
    const first = ev("t.echo", { n: 0 });
    await s.broker.publish("default", first);
    await s.changes.until(
      () => s.deliveries("dead", "echo").length === 1 && s.of("watcher").some((r) => r.outcome === "success"),
      "the loop dead letter and the loop event",
      60_000,
    );
    const runs = s.of("echo");
    assert.equal(runs.length, 17, "hops 0 to 16 ran, each once");
    // Records come in completion order: hop 15's success is recorded when its handler returns, which can be after
    // hop 16 (emitted by that handler) was already turned away. So count, not index.
    const outcomes = runs.map((r) => [r.outcome, r.attempt]);
    assert.equal(outcomes.filter(([o, a]) => o === "success" && a === 1).length, 16, `16 hops succeed at once: ${JSON.stringify(outcomes)}`);
    assert.equal(outcomes.filter(([o, a]) => o === "recursive-loop" && a === 1).length, 1, `one is turned away: ${JSON.stringify(outcomes)}`);

    const dead = await s.broker.listDeadLetters(s.ref("echo"));
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.reason, "recursive-loop");
    assert.equal(dead[0]!.attempts, 1);
    assert.match(dead[0]!.lastError ?? "", /^recursive-loop/);
    assert.equal(dead[0]!.event.sluicehops, 16);
    assert.equal((dead[0]!.event.data as { n: number }).n, 16);
    assert.equal(s.deliveries("retry", "echo").length, 0, "a recursive loop is not retried");
    const [stats] = await s.broker.queueStats(s.ref("echo"));
    assert.deepEqual(stats && [stats.ready, stats.delayed, stats.leased, stats.dead], [0, 0, 0, 1]);

    assert.ok(existsSync(out));
    const seen = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l) as CloudEvent);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.type, "sluice.loop.detected");
    assert.equal(seen[0]!.correlationid, first.id);
    const data = seen[0]!.data as { functionName: string; hops: number; maxHops: number };
    assert.equal(data.functionName, "echo");
    assert.equal(data.hops, 17);
    assert.equal(data.maxHops, 16);
  } finally {
    await s.close();
  }
});

test("integration - NonRetriableError dead-letters after one attempt despite a retry policy", async () => {
  const s = await startStack({
    functions: (dir) => [
      writeFunction(dir, "picky", `on: { type: ["t.picky"] }, retry: { attempts: 5, backoff: { initial: "10ms", max: "10ms" } },`, `throw new NonRetriableError("bad input");`),
      // Recognised by code, not class: an error of the user's own making with the code is final too.
      writeFunction(dir, "coded", `on: { type: ["t.coded"] }, retry: { attempts: 5, backoff: { initial: "10ms", max: "10ms" } },`, `throw Object.assign(new Error("gone for good"), { code: "E_NON_RETRIABLE" });`),
    ],
  });
  try {
    await s.broker.publish("default", [ev("t.picky"), ev("t.coded")]);
    await s.changes.until(() => s.deliveries("dead", "picky").length === 1 && s.deliveries("dead", "coded").length === 1, "the dead letters", 30_000);
    const [coded] = await s.broker.listDeadLetters(s.ref("coded"));
    assert.deepEqual(coded && [coded.reason, coded.attempts, coded.lastError], ["non-retriable", 1, "error: gone for good"]);
    const [dead] = await s.broker.listDeadLetters(s.ref("picky"));
    assert.equal(dead?.reason, "non-retriable");
    assert.equal(dead?.attempts, 1);
    assert.equal(dead?.lastError, "error: bad input");
    assert.equal(s.of("picky").length, 1);
    assert.equal(s.deliveries("retry", "picky").length, 0);
  } finally {
    await s.close();
  }
});

test("integration - RetryAfterError delays the retry by its delay on the broker's clock", async () => {
  const clock = new ManualClock(Date.now());
  const s = await startStack({
    clock,
    functions: (dir) => [
      writeFunction(
        dir,
        "later",
        `on: { type: ["t.later"] }, retry: { attempts: 3, backoff: { initial: "10ms", max: "10ms" } },`,
        `if (ctx.attempt === 1) throw new RetryAfterError(60000, "busy"); return "done";`,
      ),
    ],
  });
  try {
    await s.broker.publish("default", ev("t.later"));
    await s.changes.until(() => s.deliveries("retry", "later").length === 1, "the retry", 30_000);
    const [retry] = s.deliveries("retry", "later");
    assert.equal(retry!.delayMs, 60_000);
    assert.equal(retry!.availableAt, clock.now() + 60_000);
    assert.equal(retry!.error, "error: busy");

    clock.advance(59_999);
    const [early] = await s.broker.queueStats(s.ref("later"));
    assert.deepEqual(early && [early.ready, early.delayed, early.leased], [0, 1, 0], "not due one ms before its time");
    assert.equal(s.of("later").length, 1);
    clock.advance(1);
    await s.changes.until(() => s.deliveries("delivered", "later").length === 1, "the second attempt", 30_000);
    assert.equal(s.deliveries("delivered", "later")[0]!.attempt, 2);
    assert.deepEqual(s.of("later").map((r) => [r.attempt, r.outcome]), [
      [1, "error"],
      [2, "success"],
    ]);
  } finally {
    await s.close();
  }
});

test("integration - idempotency skips a redelivered, already completed event, across a runtime restart", async () => {
  const s = await startStack({
    functions: (dir) => [writeFunction(dir, "once", `on: { type: ["t.once"] }, idempotency: true,`, `return { charged: data.amount };`)],
  });
  try {
    const e = ev("t.once", { amount: 42 });
    await s.broker.publish("default", e);
    await s.changes.until(() => s.deliveries("delivered", "once").length === 1, "the first delivery", 30_000);
    await s.restartRuntime();
    // The same event (same source and id) again, through a replay into the function's rule.
    const name = `again-${randomUUID()}`;
    await s.broker.startReplay({ name, bus: "default", fromAt: 0, toAt: Date.now(), destination: { rule: "function.once" } });
    const replay = await s.broker.waitForReplay(name);
    assert.equal(replay.eventsReplayed, 1);
    await s.changes.until(() => s.deliveries("delivered", "once").length === 2, "the redelivery", 30_000);
    assert.deepEqual(s.of("once").map((r) => [r.eventId, r.outcome]), [
      [e.id, "success"],
      [e.id, "skipped"],
    ]);
  } finally {
    await s.close();
  }
});

test("integration - a lease shorter than the function's run is extended: the event runs once", async () => {
  const s = await startStack({
    // A 1 s lease and a 100 ms poll: an expired lease would be taken again within the handler's 3 s.
    limits: { leaseMs: 1000, pollIntervalMs: 100 },
    functions: (dir) => [writeFunction(dir, "slow", `on: { type: ["t.slow"] }, timeout: "20s",`, `await sleep(3000); return "done";`)],
  });
  try {
    await s.broker.publish("default", ev("t.slow"));
    await s.changes.until(() => s.deliveries("delivered", "slow").length === 1, "the delivery", 30_000);
    assert.equal(s.deliveries("delivered", "slow")[0]!.attempt, 1);
    // Acked for good: nothing left in the queue, and no second run of the same event going on.
    const [stats] = await s.broker.queueStats(s.ref("slow"));
    assert.deepEqual(stats && [stats.ready, stats.delayed, stats.leased, stats.dead], [0, 0, 0, 0]);
    assert.equal(s.runtime.metrics().functions.slow?.inflight, 0);
    assert.deepEqual(s.of("slow").map((r) => [r.attempt, r.outcome]), [[1, "success"]]);
    assert.equal(s.deliveries("retry", "slow").length, 0);
  } finally {
    await s.close();
  }
});
