/**
 * The target registry: a kind registered from this file is validated by its own compile (in putRule and in the
 * config alike), delivers end to end through a real bus on SQLite, and reports retriable and final failures
 * through the existing error codes. An unregistered kind is a typed error naming its key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createBroker, type Broker } from "../../src/bus/broker.ts";
import { NonRetriableError } from "../../src/errors.ts";
import type { TargetHandler } from "../../src/bus/targets/target.ts";
import type { RuleInput } from "../../src/bus/types.ts";
import { ErrorCode, SluiceError } from "../../src/errors.ts";
import type { CloudEvent } from "../../src/event/types.ts";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { isObject } from "../../src/util/validate.ts";
import { Changes, ev, watch } from "../bus/harness.ts";
import { tempDir } from "../runtime/helpers.ts";

interface SinkSpec {
  label: string;
  /** How many attempts fail (retryably) before one succeeds. */
  failFirst: number;
  /** Every attempt fails for good. */
  reject: boolean;
}

/** A target kind that keeps what it is sent; `opened` and `closed` count its bindings to brokers. */
function sinkKind() {
  const received: { label: string; event: CloudEvent; attempt: number; encoded: string | undefined }[] = [];
  const counts = { opened: 0, closed: 0 };
  const kind: TargetHandler<SinkSpec> = {
    kind: "test-sink",
    compile(value, path) {
      if (!isObject(value)) throw new SluiceError(ErrorCode.BadRequest, "test-sink must be { label }", { path });
      if (typeof value.label !== "string" || value.label === "") throw new SluiceError(ErrorCode.BadRequest, "label must be a non-empty string", { path: `${path}.label` });
      return { label: value.label, failFirst: typeof value.failFirst === "number" ? value.failFirst : 0, reject: value.reject === true };
    },
    defaultId: (value) => `sink-${isObject(value) ? String(value.label) : "x"}`,
    open() {
      counts.opened++;
      return {
        async deliver(spec, event, context, encoded) {
          if (spec.reject) throw new NonRetriableError(`sink ${spec.label} refuses`);
          if (context.attempt <= spec.failFirst) throw new SluiceError(ErrorCode.StoreUnavailable, "sink busy", { retryable: true });
          received.push({ label: spec.label, event, attempt: context.attempt, encoded });
        },
        async close() {
          counts.closed++;
        },
      };
    },
  };
  return { kind, received, counts };
}

async function withBroker(targets: readonly TargetHandler[], fn: (broker: Broker, changes: Changes, seen: ReturnType<typeof watch>) => Promise<void>) {
  const dir = tempDir("sluice-targets-");
  const store: StorageBackend = await createSqliteStore({ path: join(dir, "sluice.db") });
  const broker = await createBroker({ store, targets, retryPolicy: { baseBackoffMs: 5, maxBackoffMs: 10, maxAttempts: 3 } });
  const changes = new Changes();
  const seen = watch(broker, changes);
  try {
    await fn(broker, changes, seen);
  } finally {
    await broker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rule = (targets: unknown[]): RuleInput => ({ name: "r", pattern: { type: ["order.created"] }, targets: targets as RuleInput["targets"] });

test("targets - a registered kind delivers through a real bus; retriable failures retry, final ones dead-letter", async () => {
  const sink = sinkKind();
  await withBroker([sink.kind], async (broker, changes, seen) => {
    await broker.putRule(
      rule([
        { id: "ok", "test-sink": { label: "ok" } },
        { id: "flaky", "test-sink": { label: "flaky", failFirst: 1 } },
        { id: "no", "test-sink": { label: "no", reject: true } },
        { id: "shaped", "test-sink": { label: "shaped" }, inputTransformer: { inputPaths: { n: "$.data.n" }, inputTemplate: '{"n": <n>}' } },
      ]),
    );
    await broker.publish("default", ev("order.created", { n: 7 }));
    await changes.until(() => sink.received.length === 3 && seen.dead.length === 1, "three deliveries and one dead letter");
    const byLabel = new Map(sink.received.map((r) => [r.label, r]));
    assert.equal(byLabel.get("ok")?.attempt, 1);
    assert.equal(JSON.parse(byLabel.get("ok")?.encoded ?? "{}").data.n, 7, "the stored encoding is handed over");
    assert.equal(byLabel.get("flaky")?.attempt, 2, "a retryable failure is retried");
    assert.deepEqual(byLabel.get("shaped")?.event.data, { n: 7 });
    assert.equal(byLabel.get("shaped")?.encoded, undefined, "a transformed event has no stored encoding");
    assert.equal(seen.dead[0]?.reason, "non-retriable");
    assert.match(seen.dead[0]?.error ?? "", /sink no refuses/);
    const dead = await broker.listDeadLetters({ rule: "r", target: "no" });
    assert.equal(dead.length, 1);
    assert.equal(sink.counts.opened, 1, "one binding per broker");
  });
  assert.equal(sink.counts.closed, 1, "broker.close() closes the kind's binding");
});

test("targets - a kind validates its own value; an unknown kind is a typed error naming its key", async () => {
  const sink = sinkKind();
  await withBroker([sink.kind], async (broker) => {
    await assert.rejects(broker.putRule(rule([{ id: "a", "test-sink": { label: "" } }])), { code: "E_BAD_REQUEST", path: "$.targets[0].test-sink.label" });
    await assert.rejects(broker.putRule(rule([{ id: "a", "test-sink": 5 }])), { code: "E_BAD_REQUEST", path: "$.targets[0].test-sink" });
    await assert.rejects(broker.putRule(rule([{ id: "a", kafka: { url: "kafka://x" } }])), {
      code: "E_BAD_REQUEST",
      path: "$.targets[0].kafka",
      message: /"kafka" is not a target kind or field; kinds are function, bus, webhook, amqp, nats, mqtt, redisStream, remoteBus, test-sink/,
    });
    await assert.rejects(broker.putRule(rule([{ id: "a", "test-snk": { label: "x" } }])), { path: "$.targets[0].test-snk", message: /did you mean "test-sink"/ });
    await assert.rejects(broker.putRule(rule([{ id: "a", "test-sink": { label: "x" }, webhook: "http://x" }])), {
      path: "$.targets[0]",
      message: /exactly one of function, bus, webhook, amqp, nats, mqtt, redisStream, remoteBus, test-sink/,
    });
  });
  await withBroker([], async (broker) => {
    await assert.rejects(broker.putRule(rule([{ id: "a", "test-sink": { label: "x" } }])), { code: "E_BAD_REQUEST", path: "$.targets[0].test-sink" });
  });
  await assert.rejects(createBroker({ store: undefined as never, targets: [{ ...sink.kind, kind: "webhook" }] }), { code: "E_CONFIG_INVALID", message: /"webhook" is registered twice/ });
});

test("targets - the config delegates target validation to the kind, with default ids and every problem at once", () => {
  const sink = sinkKind();
  const app = validateApp(
    { name: "shop", rules: [{ name: "r", pattern: { type: ["x"] }, targets: [{ "test-sink": { label: "a" } }, { webhook: "http://127.0.0.1:1/h" }] }] },
    { file: "sluice.config.ts", targets: [sink.kind] },
  );
  assert.deepEqual(app.rules[0]?.targets, [
    { id: "sink-a", "test-sink": { label: "a", failFirst: 0, reject: false } },
    { id: "webhook-1", webhook: { url: "http://127.0.0.1:1/h" } },
  ]);
  let error: unknown;
  try {
    validateApp(
      {
        name: "shop",
        rules: [
          {
            name: "r",
            pattern: { type: ["x"] },
            targets: [{ "test-sink": { label: 1 } }, { kafka: {} }, { webhook: "ftp://x" }, { id: "b", bus: "nowhere" }],
          },
        ],
      },
      { file: "sluice.config.ts", targets: [sink.kind] },
    );
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError, String(error));
  const keys = error.problems.map((p) => p.key);
  assert.deepEqual(keys, [
    'rules[0] ("r").targets[0].test-sink.label',
    'rules[0] ("r").targets[1].kafka',
    'rules[0] ("r").targets[2].webhook.url',
    'rules[0] ("r").targets[3].bus',
  ]);
  assert.match(error.problems[3]?.fix ?? "", /buses: \["nowhere"\]/);
});
