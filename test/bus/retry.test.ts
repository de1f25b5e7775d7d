import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffMs, decideAfterFailure, defaultRetryPolicy, resolveRetryPolicy } from "../../src/bus/retry.ts";
import { classifyFailure } from "../../src/bus/handler-errors.ts";
import { NonRetriableError, RetryAfterError, isSluiceError } from "../../src/errors.ts";

const policy = resolveRetryPolicy({ baseBackoffMs: 100, maxBackoffMs: 1000, maxAttempts: 5, maxEventAgeMs: 10_000 }, "$");

test("retry - full jitter draws uniformly below an exponentially growing, capped ceiling", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffMs(n, policy, () => 0.999999)), [99, 199, 399, 799, 999, 999]);
  assert.deepEqual([1, 2, 3].map((n) => backoffMs(n, policy, () => 0)), [0, 0, 0]);
  assert.equal(backoffMs(3, policy, () => 0.5), 200);
  assert.equal(backoffMs(500, defaultRetryPolicy, () => 0.5), defaultRetryPolicy.maxBackoffMs / 2, "huge attempts do not overflow");
});

test("retry - decisions: attempts, age, non-retriable and retry-after", () => {
  const half = () => 0.5;
  assert.deepEqual(decideAfterFailure({ kind: "retry" }, 1, 0, 1000, policy, half), { action: "retry", delayMs: 50, availableAt: 1050 });
  assert.deepEqual(decideAfterFailure({ kind: "retry" }, 5, 0, 1000, policy, half), { action: "dead", reason: "max-attempts" });
  assert.deepEqual(decideAfterFailure({ kind: "non-retriable" }, 1, 0, 1000, policy, half), { action: "dead", reason: "non-retriable" });
  assert.deepEqual(decideAfterFailure({ kind: "retry", delayMs: 7000 }, 2, 0, 1000, policy, half), { action: "retry", delayMs: 7000, availableAt: 8000 });
  assert.deepEqual(decideAfterFailure({ kind: "retry", delayMs: 9000 }, 2, 0, 1000, policy, half), { action: "dead", reason: "max-age" });
});

test("retry - handler errors are classified by code, also when rebuilt from JSON", () => {
  assert.deepEqual(classifyFailure(new NonRetriableError("no")), { kind: "non-retriable" });
  assert.deepEqual(classifyFailure(new RetryAfterError(250)), { kind: "retry", delayMs: 250 });
  assert.deepEqual(classifyFailure(JSON.parse(JSON.stringify(new RetryAfterError(250)))), { kind: "retry", delayMs: 250 });
  assert.deepEqual(classifyFailure(JSON.parse(JSON.stringify(new NonRetriableError("no")))), { kind: "non-retriable" });
  assert.deepEqual(classifyFailure(new Error("x")), { kind: "retry" });
  assert.deepEqual(classifyFailure("text"), { kind: "retry" });
  assert.throws(() => new RetryAfterError(-1), RangeError);
});

test("retry - policies are validated with the path of the bad field", () => {
  for (const [input, path] of [
    [{ maxAttempts: 0 }, "$.p.maxAttempts"],
    [{ maxAttempts: 1.5 }, "$.p.maxAttempts"],
    [{ maxEventAgeMs: 10 }, "$.p.maxEventAgeMs"],
    [{ nope: 1 }, "$.p.nope"],
    ["x", "$.p"],
  ] as const) {
    assert.throws(
      () => resolveRetryPolicy(input, "$.p"),
      (err) => isSluiceError(err, "E_BAD_REQUEST") && err.path === path,
    );
  }
  assert.deepEqual(resolveRetryPolicy(undefined, "$"), defaultRetryPolicy);
  assert.equal(resolveRetryPolicy({ maxAttempts: 3 }, "$").maxEventAgeMs, defaultRetryPolicy.maxEventAgeMs);
});
