/**
 * The bus suite: one test body, run against every storage backend (test/bus/*.test.ts call it).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createBroker, type Broker, type BrokerOptions } from "../../src/bus/broker.ts";
import { verifyWebhookSignature } from "../../src/bus/targets/webhook.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { NonRetriableError, RetryAfterError, isSluiceError, type ErrorCode } from "../../src/errors.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { Changes, Recorder, ev, eventually, settle, watch } from "./harness.ts";

export interface BusLocation {
  /** Opens a backend on this location; may be called again after close (restart). */
  open(): Promise<StorageBackend>;
  cleanup(): Promise<void>;
}

export interface BusSuiteOptions {
  name: string;
  /** A fresh, empty storage location per test. */
  location(): Promise<BusLocation>;
  skip?: { reason: string; tests: string[] }[];
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), code: ErrorCode, path?: string): Promise<void> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    assert.ok(isSluiceError(err), `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (path !== undefined) assert.equal(err.path, path);
    return;
  }
  assert.fail(`expected a rejection with ${code}`);
}

export function runBusSuite(options: BusSuiteOptions): void {
  const skipped = new Map<string, string>();
  for (const s of options.skip ?? []) for (const t of s.tests) skipped.set(t, s.reason);

  /** Each test gets a location, a store, a broker (with the given options) and a recorder; all closed after. */
  function busTest(
    title: string,
    brokerOptions: Partial<BrokerOptions>,
    body: (ctx: {
      broker: Broker;
      store: StorageBackend;
      location: BusLocation;
      rec: Recorder;
      changes: Changes;
      seen: ReturnType<typeof watch>;
      open: (o?: Partial<BrokerOptions>) => Promise<Broker>;
    }) => Promise<void>,
  ): void {
    const full = `bus (${options.name}) - ${title}`;
    const skip = skipped.get(title) ?? skipped.get("*");
    test(full, skip === undefined ? {} : { skip }, async (t) => {
      const location = await options.location();
      const stores: StorageBackend[] = [];
      const brokers: Broker[] = [];
      t.after(async () => {
        for (const b of brokers) await b.close();
        for (const s of stores) await s.close();
        await location.cleanup();
      });
      const changes = new Changes();
      const clock = brokerOptions.clock;
      const rec = new Recorder(changes, clock ? () => clock.now() : Date.now);
      const open = async (o: Partial<BrokerOptions> = {}) => {
        const store = await location.open();
        stores.push(store);
        const b = await createBroker({ limits: { pollIntervalMs: 200 }, ...brokerOptions, ...o, store });
        brokers.push(b);
        return b;
      };
      const broker = await open();
      broker.setFunctionHandler(rec);
      const seen = watch(broker, changes);
      await body({ broker, store: stores[0]!, location, rec, changes, seen, open });
    });
  }

  busTest("publish stores events and delivers them to every matching target", {}, async ({ broker, rec, changes }) => {
    await broker.putRule({
      name: "orders",
      pattern: { type: ["order.created"] },
      targets: [
        { id: "a", function: "fa" },
        { id: "b", function: "fb" },
      ],
    });
    await broker.putRule({ name: "other", pattern: { type: ["order.paid"] }, targets: [{ id: "c", function: "fc" }] });
    const res = await broker.publish("default", [ev("order.created", { n: 1 }), ev("order.shipped", { n: 2 })]);
    assert.equal(res.failedEntryCount, 0);
    assert.equal(res.entries.length, 2);
    const id = (res.entries[0] as { eventId: string }).eventId;
    assert.match(id, /^[0-9a-f-]{36}$/);
    await changes.until(() => rec.ok().length === 2, "two deliveries");
    assert.deepEqual(rec.ok().map((c) => c.fn).sort(), ["fa", "fb"]);
    assert.equal(rec.ok()[0]!.event.id, id);
    assert.deepEqual(rec.ok()[0]!.event.data, { n: 1 });
    assert.equal(rec.ok()[0]!.attempt, 1);
    await settle();
    assert.equal(rec.calls.length, 2, "the unmatched event reached no target");
  });

  busTest("publish reports per-entry failures like PutEvents and stores the good entries", { maxEventBytes: 2000 }, async ({ broker, rec, changes }) => {
    await broker.putRule({ name: "all", pattern: { source: ["/test"] }, targets: [{ id: "a", function: "fa" }] });
    const res = await broker.publish("default", [
      ev("ok.one", 1),
      { specversion: "1.0", type: "no.source" },
      ev("too.big", "x".repeat(3000)),
      ev("ok.two", 2),
      "not an event",
    ]);
    assert.equal(res.failedEntryCount, 3);
    assert.ok("eventId" in res.entries[0]! && !("errorCode" in res.entries[0]!));
    const bad = res.entries[1] as { errorCode: string; errorMessage: string; path?: string };
    assert.equal(bad.errorCode, "E_EVENT_INVALID");
    assert.equal(bad.path, "$[1].source");
    assert.ok(bad.errorMessage.length > 0);
    assert.equal((res.entries[2] as { errorCode: string }).errorCode, "E_EVENT_TOO_LARGE");
    assert.ok("eventId" in res.entries[3]!);
    assert.equal((res.entries[4] as { errorCode: string }).errorCode, "E_EVENT_INVALID");
    await changes.until(() => rec.ok().length === 2, "the two good events");
    assert.deepEqual(rec.ok().map((c) => c.event.type).sort(), ["ok.one", "ok.two"]);
  });

  busTest("an input transformer reshapes the delivered event's data per target", {}, async ({ broker, rec, changes }) => {
    await broker.putRule({
      name: "t",
      pattern: { type: ["order.created"] },
      targets: [
        { id: "shaped", function: "shaped", inputTransformer: { inputPaths: { id: "$.data.orderId" }, inputTemplate: '{"order": <id>, "rule": "<sluice.rule-name>"}' } },
        { id: "text", function: "text", inputTransformer: { inputPaths: { id: "$.data.orderId" }, inputTemplate: "order <id> created" } },
        { id: "plain", function: "plain" },
      ],
    });
    await broker.publish("default", ev("order.created", { orderId: "o-1", total: 5 }));
    await changes.until(() => rec.ok().length === 3, "three deliveries");
    const by = (fn: string) => rec.ok(fn)[0]!.event;
    assert.deepEqual(by("shaped").data, { order: "o-1", rule: "t" });
    assert.equal(by("shaped").datacontenttype, "application/json");
    assert.equal(by("shaped").type, "order.created", "the envelope stays");
    assert.equal(by("text").data, "order o-1 created");
    assert.equal(by("text").datacontenttype, "text/plain");
    assert.deepEqual(by("plain").data, { orderId: "o-1", total: 5 });
    await rejectsWith(
      broker.putRule({ name: "bad", pattern: { type: ["x"] }, targets: [{ id: "a", function: "f", inputTransformer: { inputTemplate: "<missing>" } }] }),
      "E_TRANSFORM_INVALID",
    );
  });

  busTest("bad input fails with typed errors naming what and where", {}, async ({ broker }) => {
    await rejectsWith(broker.publish("nope", ev("x", 1)), "E_BUS_NOT_FOUND");
    await rejectsWith(broker.publish("default", Array.from({ length: 101 }, (_, i) => ev("x", i))), "E_BAD_REQUEST", "$");
    await rejectsWith(broker.publish("default", []), "E_BAD_REQUEST");
    const six = Array.from({ length: 6 }, (_, i) => ({ id: `t${i}`, function: "f" }));
    await rejectsWith(broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: six }), "E_BAD_REQUEST", "$.targets");
    await rejectsWith(broker.putRule({ name: "r", pattern: { type: "x" }, targets: [] }), "E_PATTERN_INVALID");
    await rejectsWith(broker.putRule({ name: "r", bus: "nope", pattern: { type: ["x"] }, targets: [] }), "E_BUS_NOT_FOUND", "$.bus");
    await rejectsWith(broker.putRule({ name: "bad name!", pattern: { type: ["x"] }, targets: [] }), "E_BAD_REQUEST", "$.name");
    await rejectsWith(
      broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "f" }, { id: "a", function: "g" }] }),
      "E_BAD_REQUEST",
      "$.targets[1].id",
    );
    await rejectsWith(
      broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "f", bus: "default" } as never] }),
      "E_BAD_REQUEST",
      "$.targets[0]",
    );
    await rejectsWith(
      broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", webhook: { url: "ftp://x" } }] }),
      "E_BAD_REQUEST",
      "$.targets[0].webhook.url",
    );
    await rejectsWith(
      broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "f", retryPolicy: { maxAttempts: 0 } }] }),
      "E_BAD_REQUEST",
      "$.targets[0].retryPolicy.maxAttempts",
    );
    await rejectsWith(
      broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", bus: "missing" }] }),
      "E_BUS_NOT_FOUND",
      "$.targets[0].bus",
    );
    await rejectsWith(() => broker.getRule("missing"), "E_RULE_NOT_FOUND");
    await rejectsWith(broker.deleteRule("missing"), "E_RULE_NOT_FOUND");
    await rejectsWith(broker.disableRule("missing"), "E_RULE_NOT_FOUND");
    await rejectsWith(broker.redrive({ rule: "missing", target: "a" }), "E_RULE_NOT_FOUND");
    await rejectsWith(broker.getReplay("missing"), "E_REPLAY_NOT_FOUND");
    await rejectsWith(broker.deleteBus("default"), "E_BAD_REQUEST");
    await rejectsWith(() => broker.getBus("missing"), "E_BUS_NOT_FOUND");
    assert.deepEqual(broker.listRules(), []);
  });

  busTest("an event with the same source and id within the dedupe window is acknowledged but not delivered again", { clock: new ManualClock(), dedupeWindowMs: 60_000 }, async ({ broker, rec, changes }) => {
    await broker.putRule({ name: "r", pattern: { source: ["/test"] }, targets: [{ id: "a", function: "fa" }] });
    const first = await broker.publish("default", ev("x", 1, { id: "same" }));
    const second = await broker.publish("default", ev("x", 2, { id: "same" }));
    assert.deepEqual(first.entries[0], { eventId: "same" });
    assert.deepEqual(second.entries[0], { eventId: "same", duplicate: true });
    assert.equal(second.failedEntryCount, 0);
    const other = await broker.publish("default", ev("x", 3, { id: "same", source: "/other" }));
    assert.deepEqual(other.entries[0], { eventId: "same" }, "another source is another event");
    await broker.publish("default", ev("marker", 4));
    await changes.until(() => rec.ok().some((c) => c.event.type === "marker"), "the marker");
    await changes.until(() => rec.ok().length === 2, "two deliveries");
    assert.deepEqual(rec.ok().filter((c) => c.event.id === "same").map((c) => c.event.data), [1]);
  });

  {
    const clock = new ManualClock();
    busTest("dedupe ends with the window (injectable clock)", { clock, dedupeWindowMs: 60_000 }, async ({ broker }) => {
      await broker.publish("default", ev("x", 1, { id: "w" }));
      clock.advance(59_999);
      assert.deepEqual((await broker.publish("default", ev("x", 1, { id: "w" }))).entries[0], { eventId: "w", duplicate: true });
      clock.advance(1);
      assert.deepEqual((await broker.publish("default", ev("x", 1, { id: "w" }))).entries[0], { eventId: "w" });
    });
  }

  {
    const clock = new ManualClock();
    busTest(
      "failed attempts are retried with exponential backoff and full jitter on the injected clock",
      { clock, random: () => 0.5, retryPolicy: { baseBackoffMs: 1000, maxBackoffMs: 3000, maxAttempts: 5 } },
      async ({ broker, rec, changes, seen }) => {
        await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
        rec.behaviour = () => {
          throw new Error("boom");
        };
        const t0 = clock.now();
        await broker.publish("default", ev("x", 1));
        // 0.5 * min(3000, 1000 * 2^(n-1)): 500, 1000, 1500 (capped), 1500, then attempt 5 is the last.
        const expected = [500, 1000, 1500, 1500];
        let at = t0;
        for (let i = 0; i < expected.length; i++) {
          await changes.until(() => seen.retry.length === i + 1, `retry ${i + 1}`);
          const r = seen.retry[i]!;
          assert.equal(r.attempt, i + 1);
          assert.equal(r.delayMs, expected[i]);
          assert.equal(r.availableAt, at + expected[i]!);
          assert.equal(r.error, "boom");
          clock.advance(expected[i]! - 1);
          await settle();
          assert.equal(rec.calls.length, i + 1, "not retried before its time");
          clock.advance(1);
          at += expected[i]!;
          await changes.until(() => rec.calls.length === i + 2, `attempt ${i + 2}`);
          assert.equal(rec.calls[i + 1]!.at, at);
          assert.equal(rec.calls[i + 1]!.attempt, i + 2);
        }
        await changes.until(() => seen.dead.length === 1, "the dead letter");
        assert.equal(seen.dead[0]!.reason, "max-attempts");
        const [dead] = await broker.listDeadLetters({ rule: "r", target: "a" });
        assert.ok(dead);
        assert.equal(dead.reason, "max-attempts");
        assert.equal(dead.attempts, 5);
        assert.equal(dead.lastError, "boom");
        assert.equal(dead.enqueuedAt, t0);
        assert.equal(dead.deadAt, at);
        assert.equal(dead.event.type, "x");
      },
    );
  }

  {
    const clock = new ManualClock();
    busTest(
      "RetryAfterError sets the delay, NonRetriableError dead-letters at once, and old events die of max-age",
      { clock, random: () => 0.99, retryPolicy: { baseBackoffMs: 10_000, maxEventAgeMs: 60_000 } },
      async ({ broker, rec, changes, seen }) => {
        await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
        rec.behaviour = (_fn, event) => {
          const mode = (event.data as { mode: string }).mode;
          if (mode === "after") throw new RetryAfterError(1234, "busy");
          if (mode === "never") throw new NonRetriableError("bad order");
          throw new Error("slow down");
        };
        await broker.publish("default", [ev("x", { mode: "after" }), ev("x", { mode: "never" })]);
        await changes.until(() => seen.retry.length === 1 && seen.dead.length === 1, "one retry and one dead letter");
        assert.equal(seen.retry[0]!.delayMs, 1234);
        assert.equal(seen.dead[0]!.reason, "non-retriable");
        assert.equal(seen.dead[0]!.attempt, 1);
        const dead = await broker.getDeadLetter(seen.dead[0]!.deliveryId);
        assert.equal(dead?.reason, "non-retriable");
        assert.equal(dead?.lastError, "E_NON_RETRIABLE: bad order");

        await broker.publish("default", ev("x", { mode: "age" }));
        // Backoffs of ~10 s, 20 s, 40 s: the third retry would end past the 60 s age limit.
        for (let i = 0; i < 10 && seen.dead.length < 2; i++) {
          const pending = seen.retry.filter((r) => r.error === "slow down");
          await changes.until(() => seen.retry.filter((r) => r.error === "slow down").length > pending.length || seen.dead.length === 2, "age retries");
          if (seen.dead.length === 2) break;
          // The last retry of the "slow down" event, not of the RetryAfterError one (1 234 ms), whose retries interleave.
          const slowDown = seen.retry.filter((r) => r.error === "slow down");
          clock.advance(slowDown[slowDown.length - 1]!.delayMs);
        }
        await changes.until(() => seen.dead.length === 2, "the max-age dead letter");
        assert.equal(seen.dead[1]!.reason, "max-age");
      },
    );
  }

  busTest("dead letters can be listed, inspected, redriven (all, by filter, one) and purged", { retryPolicy: { maxAttempts: 1 } }, async ({ broker, rec, changes, seen }) => {
    await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
    let failing = true;
    rec.behaviour = () => {
      if (failing) throw new Error("down");
    };
    await broker.publish("default", [1, 2, 3, 4, 5].map((n) => ev("x", { n, color: n % 2 ? "red" : "blue" })));
    await changes.until(() => seen.dead.length === 5, "five dead letters");
    const ref = { rule: "r", target: "a" };
    const dead = await broker.listDeadLetters(ref);
    assert.equal(dead.length, 5);
    for (const d of dead) {
      assert.equal(d.reason, "max-attempts");
      assert.equal(d.attempts, 1);
      assert.equal(d.lastError, "down");
      assert.equal(d.queue, "rule:default/r/a");
    }
    const page = await broker.listDeadLetters(ref, { limit: 2 });
    assert.equal(page.length, 2);
    const rest = await broker.listDeadLetters(ref, { afterId: page[1]!.deliveryId });
    assert.equal(rest.length, 3);
    failing = false;
    // By filter: the red ones (n = 1, 3, 5).
    assert.equal(await broker.redrive(ref, { filter: { data: { color: ["red"] } } }), 3);
    await changes.until(() => rec.ok().length === 3, "three redriven deliveries");
    assert.deepEqual(rec.ok().map((c) => (c.event.data as { n: number }).n).sort(), [1, 3, 5]);
    assert.equal(rec.ok()[0]!.attempt, 1, "a redriven delivery starts again at attempt 1");
    const left = await broker.listDeadLetters(ref);
    assert.equal(left.length, 2);
    // One by id.
    assert.equal(await broker.redrive(ref, { ids: [left[0]!.deliveryId] }), 1);
    await changes.until(() => rec.ok().length === 4, "the one redriven delivery");
    // Purge the last one.
    assert.equal(await broker.purgeDeadLetters(ref), 1);
    assert.deepEqual(await broker.listDeadLetters(ref), []);
    // Redrive all (nothing left) is zero.
    assert.equal(await broker.redrive(ref), 0);
    failing = true;
    await broker.publish("default", [ev("x", { n: 6 }), ev("x", { n: 7 })]);
    await changes.until(() => seen.dead.length === 7, "two more dead letters");
    failing = false;
    assert.equal(await broker.redrive(ref), 2);
    await changes.until(() => rec.ok().length === 6, "redrive all");
  });

  busTest("per-key ordering holds under concurrency with failing events holding their key", { limits: { concurrency: 16, pollIntervalMs: 50 }, retryPolicy: { baseBackoffMs: 2, maxBackoffMs: 10 } }, async ({ broker, rec, changes }) => {
    await broker.putRule({ name: "r", pattern: { type: ["k"] }, targets: [{ id: "a", function: "fa" }] });
    const keys = ["k1", "k2", "k3", "k4", "k5"];
    const perKey = 30;
    const active = new Map<string, number>();
    let maxActiveTotal = 0;
    let activeTotal = 0;
    const failedOnce = new Set<string>();
    const violations: string[] = [];
    rec.behaviour = async (_fn, event) => {
      const key = event.partitionkey as string;
      const now = (active.get(key) ?? 0) + 1;
      if (now > 1) violations.push(`two deliveries of ${key} at once`);
      active.set(key, now);
      activeTotal++;
      maxActiveTotal = Math.max(maxActiveTotal, activeTotal);
      try {
        for (let i = 0; i < Math.floor(Math.random() * 5); i++) await new Promise((r) => setImmediate(r));
        const seq = (event.data as { seq: number }).seq;
        if (seq % 7 === 3 && !failedOnce.has(event.id)) {
          failedOnce.add(event.id);
          throw new Error("deliberate failure");
        }
      } finally {
        active.set(key, active.get(key)! - 1);
        activeTotal--;
      }
    };
    // Interleaved publishes from concurrent producers, each key's events in order within its producer.
    await Promise.all(
      keys.map(async (key) => {
        for (let seq = 0; seq < perKey; seq += 5) {
          const batch = [0, 1, 2, 3, 4].map((j) => ev("k", { key, seq: seq + j }, { partitionkey: key }));
          const res = await broker.publish("default", batch);
          assert.equal(res.failedEntryCount, 0);
        }
      }),
    );
    await changes.until(() => rec.ok().length === keys.length * perKey, "every keyed delivery", 30_000);
    assert.deepEqual(violations, []);
    for (const key of keys) {
      const order = rec.ok().filter((c) => c.event.partitionkey === key).map((c) => (c.event.data as { seq: number }).seq);
      assert.deepEqual(order, Array.from({ length: perKey }, (_, i) => i), `publish order for ${key}`);
    }
    assert.ok(failedOnce.size >= 20, "failures happened");
    assert.ok(maxActiveTotal > 1, "different keys ran in parallel");
  });

  busTest("rule changes take effect while events flow", {}, async ({ broker, rec, changes }) => {
    await broker.putRule({ name: "r", pattern: { type: ["flow"] }, targets: [{ id: "a", function: "fa" }] });
    let stop = false;
    let background = 0;
    const producer = (async () => {
      while (!stop) {
        const res = await broker.publish("default", Array.from({ length: 10 }, () => ev("flow", { phase: "bg" })));
        assert.equal(res.failedEntryCount, 0);
        background += 10;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const phase = async (name: string) => {
      const res = await broker.publish("default", Array.from({ length: 5 }, () => ev("flow", { phase: name })));
      assert.equal(res.failedEntryCount, 0);
    };
    await phase("p1");
    await broker.putRule({ name: "r", pattern: { type: ["flow"] }, targets: [{ id: "b", function: "fb" }] });
    await phase("p2");
    await broker.disableRule("r");
    assert.equal(broker.getRule("r").enabled, false);
    await phase("p3");
    await broker.enableRule("r");
    await phase("p4");
    await broker.deleteRule("r");
    await phase("p5");
    stop = true;
    await producer;
    const of = (p: string) => rec.ok().filter((c) => (c.event.data as { phase: string }).phase === p);
    await changes.until(() => of("p1").length === 5 && of("p2").length === 5 && of("p4").length === 5, "phases 1, 2 and 4");
    await broker.putRule({ name: "m", pattern: { type: ["marker"] }, targets: [{ id: "m", function: "fm" }] });
    await broker.publish("default", ev("marker", {}));
    await changes.until(() => rec.ok("fm").length === 1, "the marker");
    await settle();
    assert.ok(of("p1").every((c) => c.fn === "fa"));
    assert.ok(of("p2").every((c) => c.fn === "fb"));
    assert.equal(of("p3").length, 0, "nothing while disabled");
    assert.ok(of("p4").every((c) => c.fn === "fb"));
    assert.equal(of("p5").length, 0, "nothing after delete");
    assert.ok(background > 0);
    const bg = rec.calls.filter((c) => (c.event.data as { phase: string }).phase === "bg");
    assert.ok(bg.every((c) => c.ok), "no failed background delivery");
  });

  busTest("definitions persist across restarts and reach other processes on the same store", {}, async ({ broker, open, changes }) => {
    await broker.putBus({ name: "orders", retentionMs: 1000 });
    await broker.putRule({ name: "r", bus: "orders", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
    const other = await open({ limits: { definitionsPollMs: 20, pollIntervalMs: 200 } });
    assert.deepEqual(other.getRule("r", { bus: "orders" }).targets, [{ id: "a", function: "fa" }]);
    assert.equal(other.getBus("orders").retentionMs, 1000);
    const rec2 = new Recorder(changes);
    other.setFunctionHandler(rec2);
    // A change made through the first broker reaches the second by polling the version key.
    await broker.putRule({ name: "r2", bus: "orders", pattern: { type: ["y"] }, targets: [{ id: "b", function: "fb" }] });
    await eventually(() => other.listRules({ bus: "orders" }).length === 2, "the second broker to see r2");
    assert.equal(other.getRule("r2", { bus: "orders" }).name, "r2");
  });

  {
    const clock = new ManualClock();
    busTest("archive replay republishes a time range filtered by a pattern, marks events, and reports progress", { clock }, async ({ broker, rec, changes }) => {
      await broker.putBus({ name: "dest" });
      await broker.putRule({ name: "live", pattern: { type: ["x"] }, targets: [{ id: "a", function: "live" }] });
      await broker.putRule({ name: "copy", bus: "dest", pattern: { type: ["x"] }, targets: [{ id: "a", function: "copy" }] });
      const t0 = clock.now();
      for (let slice = 0; slice < 3; slice++) {
        await broker.publish("default", Array.from({ length: 10 }, (_, i) => ev("x", { slice, i, keep: i % 2 === 0 })));
        clock.advance(1000);
      }
      await changes.until(() => rec.ok("live").length === 30, "the live deliveries");
      const started = await broker.startReplay({
        name: "r1",
        bus: "default",
        fromAt: t0 + 1000,
        toAt: t0 + 2000,
        pattern: { data: { keep: [true] } },
        destination: { bus: "dest" },
      });
      assert.equal(started.state, "running");
      const done = await broker.waitForReplay("r1");
      assert.equal(done.state, "completed");
      assert.equal(done.eventsRead, 10);
      assert.equal(done.eventsReplayed, 5);
      assert.ok(done.lastSeq > 0);
      assert.equal(done.lastAt, t0 + 1000);
      assert.deepEqual(await broker.getReplay("r1"), done);
      await changes.until(() => rec.ok("copy").length === 5, "the replayed deliveries");
      for (const c of rec.ok("copy")) {
        assert.equal(c.event.replay, "r1");
        assert.deepEqual({ slice: (c.event.data as { slice: number }).slice, keep: (c.event.data as { keep: boolean }).keep }, { slice: 1, keep: true });
      }
      // Into one rule's targets only: another rule with the same pattern gets nothing.
      await broker.putRule({ name: "other", pattern: { type: ["x"] }, targets: [{ id: "o", function: "other" }] });
      await broker.startReplay({ name: "r2", bus: "default", fromAt: t0, toAt: t0 + 1000, destination: { rule: "live" } });
      const r2 = await broker.waitForReplay("r2");
      assert.equal(r2.state, "completed");
      assert.equal(r2.eventsReplayed, 10);
      await changes.until(() => rec.ok("live").length === 40, "the rule replay");
      assert.ok(rec.ok("live").slice(30).every((c) => c.event.replay === "r2" && (c.event.data as { slice: number }).slice === 0));
      await settle();
      assert.equal(rec.calls.filter((c) => c.fn === "other").length, 0);
      assert.deepEqual((await broker.listReplays()).map((r) => r.name), ["r1", "r2"]);
      await rejectsWith(broker.startReplay({ name: "r1", bus: "default", fromAt: t0, toAt: t0 + 1, destination: { bus: "dest" } }), "E_ALREADY_EXISTS");
      await rejectsWith(broker.startReplay({ name: "r3", bus: "default", fromAt: t0, toAt: clock.now() + 1, destination: { bus: "dest" } }), "E_BAD_REQUEST", "$.toAt");
      await rejectsWith(broker.startReplay({ name: "r3", bus: "default", fromAt: t0, toAt: t0 + 1, destination: { rule: "nope" } }), "E_RULE_NOT_FOUND");
      await rejectsWith(broker.startReplay({ name: "r3", bus: "nope", fromAt: t0, toAt: t0 + 1, destination: { bus: "dest" } }), "E_BUS_NOT_FOUND");
      await rejectsWith(
        broker.startReplay({ name: "r3", bus: "default", fromAt: t0, toAt: t0 + 1, pattern: { type: "x" }, destination: { bus: "dest" } }),
        "E_PATTERN_INVALID",
      );
    });
  }

  {
    // Paced on a manual clock: after its first page the replay waits for the clock, so it is surely running.
    const clock = new ManualClock();
    busTest("a running replay can be cancelled and says how far it got", { clock }, async ({ broker }) => {
      await broker.putBus({ name: "big" });
      await broker.putBus({ name: "sink" });
      const fromAt = clock.now();
      for (let i = 0; i < 4; i++) await broker.publish("big", Array.from({ length: 100 }, (_, j) => ev("x", { n: i * 100 + j })));
      clock.advance(1);
      await broker.startReplay({ name: "long", bus: "big", fromAt, toAt: clock.now(), destination: { bus: "sink" }, maxPerSecond: 100 });
      await eventually(async () => (await broker.getReplay("long")).eventsReplayed === 100, "the first page");
      const cancelled = await broker.cancelReplay("long");
      assert.equal(cancelled.state, "cancelled");
      assert.equal(cancelled.eventsReplayed, 100, "stopped where it waited");
      assert.equal(cancelled.eventsRead, cancelled.eventsReplayed);
      assert.equal((await broker.getReplay("long")).state, "cancelled");
      assert.ok((await broker.getReplay("long")).endedAt !== undefined);
    });
  }

  {
    const clock = new ManualClock();
    busTest("a paced replay replays at most maxPerSecond events per second of its clock", { clock }, async ({ broker }) => {
      await broker.putBus({ name: "big" });
      await broker.putBus({ name: "sink" });
      const fromAt = clock.now();
      await broker.publish("big", Array.from({ length: 100 }, (_, j) => ev("x", { n: j })));
      await broker.publish("big", Array.from({ length: 20 }, (_, j) => ev("x", { n: 100 + j })));
      clock.advance(1);
      await broker.startReplay({ name: "paced", bus: "big", fromAt, toAt: clock.now(), destination: { bus: "sink" }, maxPerSecond: 50 });
      const replayed = async () => (await broker.getReplay("paced")).eventsReplayed;
      await eventually(async () => (await replayed()) === 50, "the first second's 50");
      await settle();
      clock.advance(999);
      await settle();
      assert.equal(await replayed(), 50, "nothing more before the second is over");
      clock.advance(1);
      await eventually(async () => (await replayed()) === 100, "the second second's 50");
      clock.advance(1000);
      await eventually(async () => (await broker.getReplay("paced")).state === "completed", "the last 20");
      assert.equal(await replayed(), 120);
      await rejectsWith(broker.startReplay({ name: "bad", bus: "big", fromAt, toAt: clock.now(), destination: { bus: "sink" }, maxPerSecond: 0 }), "E_BAD_REQUEST", "$.maxPerSecond");
    });
  }

  busTest("a replay left running by a closed broker is resumed from its position by exactly one of two brokers", {}, async ({ broker, rec, changes, open }) => {
    await broker.putBus({ name: "big" });
    const total = 4000;
    const fromAt = Date.now() - 1;
    for (let i = 0; i < total / 100; i++) await broker.publish("big", Array.from({ length: 100 }, (_, j) => ev("x", { n: i * 100 + j })));
    await new Promise((r) => setTimeout(r, 2));
    // Created after the events were archived: its deliveries come from the replay only, with no publish dedupe
    // to hide a page replayed twice.
    await broker.putRule({ name: "copy", bus: "big", pattern: { type: ["x"] }, targets: [{ id: "a", function: "copy" }] });
    const others = [await open({ limits: { pollIntervalMs: 50 } }), await open({ limits: { pollIntervalMs: 50 } })];
    for (const b of others) b.setFunctionHandler(rec);
    await broker.startReplay({ name: "handover", bus: "big", fromAt, toAt: Date.now(), destination: { rule: "copy" } });
    await broker.close();
    const handedOver = await others[0]!.getReplay("handover");
    assert.equal(handedOver.state, "running", "closing the broker left the replay running");
    assert.ok(handedOver.eventsRead < total, `handed over mid-way (${handedOver.eventsRead} read)`);

    // No event announces progress made by another broker: poll its record.
    const deadline = Date.now() + 20_000;
    let done = handedOver;
    while (done.state === "running" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      done = await others[0]!.getReplay("handover");
    }
    assert.equal(done.state, "completed", JSON.stringify(done));
    assert.equal(done.eventsRead, total);
    const replayed = () => rec.ok("copy").filter((c) => c.event.replay === "handover");
    await changes.until(() => replayed().length >= total, "every archived event delivered", 20_000);
    await settle();
    const ns = replayed().map((c) => (c.event.data as { n: number }).n);
    assert.equal(new Set(ns).size, total, "every event replayed");
    assert.equal(ns.length, total, "no page replayed twice: one broker resumed it, from the saved position");
  });

  {
    const clock = new ManualClock();
    busTest("archives are trimmed past each bus's retention", { clock }, async ({ broker, store }) => {
      await broker.putBus({ name: "short", retentionMs: 10_000 });
      await broker.putBus({ name: "none", retentionMs: 0 });
      await broker.publish("short", ev("x", 1));
      await broker.publish("none", ev("x", 1));
      await broker.publish("default", ev("x", 1));
      clock.advance(1);
      assert.equal(await broker.trimArchives(), 1, "retention 0 keeps nothing");
      assert.equal((await store.events.read("short", { limit: 10 })).length, 1);
      clock.advance(10_000);
      assert.equal(await broker.trimArchives(), 1);
      assert.equal((await store.events.read("short", { limit: 10 })).length, 0);
      assert.equal((await store.events.read("default", { limit: 10 })).length, 1, "default keeps 7 days");
    });
  }

  busTest("a webhook target gets signed CloudEvents; 4xx is final, 5xx and timeouts are retried", { retryPolicy: { baseBackoffMs: 5, maxBackoffMs: 20, maxAttempts: 4 } }, async ({ broker, changes, seen }) => {
    const secret = `s-${randomUUID()}`;
    const received: { path: string; body: string; headers: IncomingMessage["headers"]; valid: boolean }[] = [];
    let flaky = 0;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        const valid = verifyWebhookSignature({
          secret,
          body,
          signature: req.headers["x-sluice-signature"] as string | undefined,
          timestamp: req.headers["x-sluice-timestamp"] as string | undefined,
        });
        received.push({ path: req.url ?? "", body, headers: req.headers, valid });
        changes.emit("change");
        if (req.url === "/ok") res.writeHead(200).end("ok");
        else if (req.url === "/bad") res.writeHead(400).end("bad request");
        else if (req.url === "/flaky") res.writeHead(flaky++ === 0 ? 503 : 204).end();
        else if (req.url === "/slow") {
          /* never answers: the client times out */
        } else res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await broker.putRule({
        name: "hooks",
        pattern: { type: ["hook"] },
        targets: [
          { id: "ok", webhook: { url: `${base}/ok`, secret, headers: { "x-tenant": "t1" } } },
          { id: "bad", webhook: { url: `${base}/bad`, secret } },
          { id: "flaky", webhook: { url: `${base}/flaky`, secret } },
          { id: "slow", webhook: { url: `${base}/slow`, secret, timeoutMs: 100 }, retryPolicy: { maxAttempts: 2, baseBackoffMs: 5 } },
        ],
      });
      const res = await broker.publish("default", ev("hook", { total: 5 }));
      const id = (res.entries[0] as { eventId: string }).eventId;
      await changes.until(() => seen.dead.length === 2 && seen.delivered.length === 2, "two deliveries and two dead letters", 15_000);
      const ok = received.find((r) => r.path === "/ok")!;
      assert.equal(ok.valid, true);
      assert.equal(ok.headers["content-type"], "application/cloudevents+json; charset=utf-8");
      assert.equal(ok.headers["x-tenant"], "t1");
      assert.equal(JSON.parse(ok.body).id, id);
      assert.deepEqual(JSON.parse(ok.body).data, { total: 5 });
      assert.equal(verifyWebhookSignature({ secret: "wrong", body: ok.body, signature: ok.headers["x-sluice-signature"] as string, timestamp: ok.headers["x-sluice-timestamp"] as string }), false);
      assert.equal(verifyWebhookSignature({ secret, body: `${ok.body} `, signature: ok.headers["x-sluice-signature"] as string, timestamp: ok.headers["x-sluice-timestamp"] as string }), false);
      assert.equal(
        verifyWebhookSignature({ secret, body: ok.body, signature: ok.headers["x-sluice-signature"] as string, timestamp: ok.headers["x-sluice-timestamp"] as string, now: Date.now() + 10 * 60_000 }),
        false,
        "an old request is refused (replay protection)",
      );
      const byQueue = new Map(seen.dead.map((d) => [d.queue, d]));
      assert.equal(byQueue.get("rule:default/hooks/bad")?.reason, "non-retriable");
      assert.equal(byQueue.get("rule:default/hooks/bad")?.attempt, 1);
      assert.match(byQueue.get("rule:default/hooks/bad")?.error ?? "", /400/);
      assert.equal(byQueue.get("rule:default/hooks/slow")?.reason, "max-attempts");
      assert.match(byQueue.get("rule:default/hooks/slow")?.error ?? "", /timed out/);
      assert.equal(received.filter((r) => r.path === "/flaky").length, 2);
      assert.ok(seen.delivered.some((d) => d.queue === "rule:default/hooks/flaky" && d.attempt === 2));
      assert.equal(received.filter((r) => r.path === "/bad").length, 1);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  busTest("bus targets route events to other buses and a loop stops at the hop limit", { hopLimit: 4 }, async ({ broker, rec, changes, seen }) => {
    await broker.putBus({ name: "a" });
    await broker.putBus({ name: "b" });
    await broker.putBus({ name: "c" });
    await broker.putRule({ name: "fwd", bus: "a", pattern: { type: ["x"] }, targets: [{ id: "to-c", bus: "c" }] });
    await broker.putRule({ name: "sink", bus: "c", pattern: { type: ["x"] }, targets: [{ id: "f", function: "fc" }] });
    await broker.publish("a", ev("x", 1));
    await changes.until(() => rec.ok("fc").length === 1, "the forwarded event");
    assert.equal(rec.ok("fc")[0]!.event.sluicehops, 1);

    await broker.putRule({ name: "ab", bus: "a", pattern: { type: ["loop"] }, targets: [{ id: "t", bus: "b" }] });
    await broker.putRule({ name: "ba", bus: "b", pattern: { type: ["loop"] }, targets: [{ id: "t", bus: "a" }] });
    await broker.putRule({ name: "watch", bus: "b", pattern: { type: ["loop"] }, targets: [{ id: "f", function: "fb" }] });
    await broker.publish("a", ev("loop", 1));
    await changes.until(() => seen.dead.length === 1, "the loop to be stopped");
    assert.equal(seen.dead[0]!.reason, "recursive-loop");
    assert.match(seen.dead[0]!.error ?? "", /E_RECURSIVE_LOOP/);
    // a(0) -> b(1) -> a(2) -> b(3) -> a(4) -> refused: b saw hops 1 and 3.
    assert.deepEqual(rec.ok("fb").map((c) => c.event.sluicehops).sort(), [1, 3]);
    assert.equal(seen.dead[0]!.queue, "rule:a/ab/t");
    // An event that arrives past the limit is refused at publish.
    const res = await broker.publish("a", ev("loop", 1, { sluicehops: 5 }));
    assert.equal((res.entries[0] as { errorCode: string }).errorCode, "E_RECURSIVE_LOOP");
  });

  busTest("publish fails with a retryable E_BACKPRESSURE when pending deliveries pass the limit", { limits: { maxPendingDeliveries: 20, pollIntervalMs: 200 } }, async ({ broker, rec, changes, seen }) => {
    await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    rec.behaviour = () => gate;
    await broker.publish("default", Array.from({ length: 20 }, (_, i) => ev("x", i)));
    let err: unknown;
    try {
      await broker.publish("default", ev("x", 99));
    } catch (e) {
      err = e;
    }
    assert.ok(isSluiceError(err, "E_BACKPRESSURE"), String(err));
    assert.equal(err.retryable, true);
    release();
    await changes.until(() => seen.delivered.length === 20, "the backlog to drain (acked)");
    // Acks lower the estimate: publishing works again.
    const res = await broker.publish("default", ev("x", 100));
    assert.equal(res.failedEntryCount, 0);
  });

  busTest("publish fails with E_BACKPRESSURE when too many entries wait for the store, and memory stays bounded", { limits: { maxQueuedEntries: 150 } }, async ({ broker }) => {
    const batch = () => Array.from({ length: 100 }, (_, i) => ev("x", i));
    const results = await Promise.allSettled([broker.publish("default", batch()), broker.publish("default", batch()), broker.publish("default", batch())]);
    assert.equal(results[0]!.status, "fulfilled");
    assert.equal(results[1]!.status, "fulfilled");
    assert.equal(results[2]!.status, "rejected");
    const err = (results[2] as PromiseRejectedResult).reason;
    assert.ok(isSluiceError(err, "E_BACKPRESSURE") && err.retryable, String(err));
    // Once the waiting entries are stored, publishing works again.
    assert.equal((await broker.publish("default", batch())).failedEntryCount, 0);
  });

  // Real time (the lease is extended by a timer against the store): margins wide enough for a loaded machine.
  busTest("a long handler keeps its lease: no second delivery while it runs", { limits: { leaseMs: 1000, pollIntervalMs: 50 } }, async ({ broker, rec, changes }) => {
    await broker.putRule({ name: "r", pattern: { type: ["slow"] }, targets: [{ id: "a", function: "fa" }] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    rec.behaviour = () => gate;
    await broker.publish("default", ev("slow", 1));
    await changes.until(() => rec.calls.length === 1, "the first delivery");
    // Two and a half lease periods: without extension the delivery would be leased (and delivered) again meanwhile.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(rec.calls.length, 1, "not redelivered while running");
    release();
    await changes.until(() => rec.ok().length === 1, "the success");
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(rec.calls.length, 1, "acked once, never redelivered");
  });

  busTest("a store closed under a running broker fails publishes with a typed error and close() still returns", {}, async ({ broker, store }) => {
    await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
    await store.close();
    let err: unknown;
    try {
      await broker.publish("default", ev("x", 1));
    } catch (e) {
      err = e;
    }
    assert.ok(isSluiceError(err) && (err.code === "E_CLOSED" || err.code === "E_STORE_UNAVAILABLE"), String(err));
    await broker.close();
  });

  busTest("close finishes in-flight deliveries within the grace period and releases the rest", { limits: { closeGraceMs: 50, pollIntervalMs: 200 } }, async ({ broker, rec, changes, open }) => {
    await broker.putRule({ name: "r", pattern: { type: ["x"] }, targets: [{ id: "a", function: "fa" }] });
    let aborted = 0;
    rec.behaviour = (_fn, _event, ctx) =>
      new Promise<void>((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => {
          aborted++;
          reject(new Error("aborted"));
        });
      });
    await broker.publish("default", ev("x", 1));
    await changes.until(() => rec.calls.length === 1, "the delivery to start");
    const started = Date.now();
    await broker.close();
    assert.equal(aborted, 1);
    assert.ok(Date.now() - started < 5000);
    await rejectsWith(broker.publish("default", ev("x", 2)), "E_CLOSED");
    // The released lease is leasable at once by the next broker (no wait for the 30 s visibility timeout).
    const next = await open();
    const rec2 = new Recorder(changes);
    next.setFunctionHandler(rec2);
    await changes.until(() => rec2.ok().length === 1, "redelivery after restart", 5000);
    assert.equal(rec2.ok()[0]!.attempt, 2);
  });
}
