import { test } from "node:test";
import assert from "node:assert/strict";
import { defineFunction, normalizeFunctionConfig, parseDuration } from "../../src/runtime/define.ts";

const handler = async () => undefined;

test("runtime define - durations accept ms numbers and unit strings", () => {
  assert.equal(parseDuration(250, "$.t"), 250);
  assert.equal(parseDuration("250ms", "$.t"), 250);
  assert.equal(parseDuration("30s", "$.t"), 30_000);
  assert.equal(parseDuration("5m", "$.t"), 300_000);
  assert.equal(parseDuration("1h", "$.t"), 3_600_000);
  assert.equal(parseDuration("1d", "$.t"), 86_400_000);
  assert.equal(parseDuration("1.5s", "$.t"), 1500);
  for (const bad of ["30", "s", "-1s", "1w", -5, Number.NaN, null]) {
    assert.throws(() => parseDuration(bad, "$.timeout"), { code: "E_CONFIG_INVALID", path: "$.timeout" }, String(bad));
  }
});

test("runtime define - defaults and normalization", () => {
  const c = normalizeFunctionConfig(defineFunction({ name: "billing", handler }));
  assert.deepEqual(c, {
    name: "billing",
    on: undefined,
    retry: { attempts: 3, backoff: { initialMs: 1000, maxMs: 300_000 } },
    concurrency: undefined,
    reservedConcurrency: undefined,
    minInstances: 0,
    instanceConcurrency: 1,
    timeoutMs: 30_000,
    memoryMb: 128,
    idempotency: undefined,
    budget: undefined,
    isolation: "worker",
  });
  const full = normalizeFunctionConfig(
    defineFunction({
      name: "billing",
      on: { type: ["order.created"] },
      retry: { attempts: 5, backoff: { initial: "1s", max: "5m" } },
      concurrency: 20,
      timeout: "30s",
      memory: 256,
      idempotency: { key: "id" },
      budget: { gbSeconds: 100, per: "1d" },
      isolation: "process",
      handler,
    }),
  );
  assert.deepEqual(full.idempotency, { key: "id", ttlMs: 86_400_000 });
  assert.deepEqual(full.budget, { gbSeconds: 100, invocations: undefined, perMs: 86_400_000, throttle: false });
  assert.equal(full.memoryMb, 256);
});

test("runtime define - every invalid field is a typed error naming the field", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ name: "" }, "$.name"],
    [{ name: "has space" }, "$.name"],
    [{ name: "ok", handler: "nope" }, "$.handler"],
    [{ name: "ok", on: [1] }, "$.on"],
    [{ name: "ok", retry: { attempts: -1 } }, "$.retry.attempts"],
    [{ name: "ok", retry: { backoff: { initial: "1x" } } }, "$.retry.backoff.initial"],
    [{ name: "ok", retry: { backoff: { initial: "10s", max: "1s" } } }, "$.retry.backoff.max"],
    [{ name: "ok", concurrency: 0 }, "$.concurrency"],
    [{ name: "ok", concurrency: 1.5 }, "$.concurrency"],
    [{ name: "ok", reservedConcurrency: -1 }, "$.reservedConcurrency"],
    [{ name: "ok", minInstances: 3, concurrency: 2 }, "$.minInstances"],
    [{ name: "ok", instanceConcurrency: 0 }, "$.instanceConcurrency"],
    [{ name: "ok", timeout: "forever" }, "$.timeout"],
    [{ name: "ok", memory: 8 }, "$.memory"],
    [{ name: "ok", idempotency: { key: "data..x" } }, "$.idempotency.key"],
    [{ name: "ok", idempotency: { ttl: "soon" } }, "$.idempotency.ttl"],
    [{ name: "ok", budget: { per: "1d" } }, "$.budget"],
    [{ name: "ok", budget: { gbSeconds: -1, per: "1d" } }, "$.budget.gbSeconds"],
    [{ name: "ok", budget: { invocations: 5, per: "10ms" } }, "$.budget.per"],
    [{ name: "ok", budget: { invocations: 5, per: "1h", throttle: "yes" } }, "$.budget.throttle"],
    [{ name: "ok", isolation: "vm" }, "$.isolation"],
    [{ name: "ok", colour: "blue" }, "$.colour"],
  ];
  for (const [def, path] of cases) {
    assert.throws(() => defineFunction({ handler, ...def } as never), { code: "E_CONFIG_INVALID", path }, JSON.stringify(def));
  }
});
