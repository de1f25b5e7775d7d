/**
 * The wiring between functions and the bus (src/server/wire.ts): a function's retry settings become its implicit
 * rule's retry policy, validated against what the bus accepts, with errors naming the function and the field.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveRetryPolicy } from "../../src/bus/retry.ts";
import { isSluiceError } from "../../src/errors.ts";
import { normalizeFunctionConfig } from "../../src/runtime/define.ts";
import { functionQueue, functionRetryPolicy, functionRules, publishError } from "../../src/server/wire.ts";

const config = (extra: Record<string, unknown>) => normalizeFunctionConfig({ name: "billing", on: { type: ["order.created"] }, ...extra });

test("wire - retry settings become the implicit rule's retry policy (attempts are retries after the first)", () => {
  const [rule, ...rest] = functionRules([config({ retry: { attempts: 5, backoff: { initial: "1s", max: "5m" } } }), normalizeFunctionConfig({ name: "no-on" })]);
  assert.equal(rest.length, 0, "a function without `on` has no implicit rule");
  assert.equal(rule?.name, "function.billing");
  assert.deepEqual(rule?.pattern, { type: ["order.created"] });
  assert.deepEqual(rule?.targets, [{ id: "fn", function: "billing", retryPolicy: { maxAttempts: 6, baseBackoffMs: 1000, maxBackoffMs: 300_000 } }]);
  // The defaults (3 retries, 1 s to 5 min) pass the bus's own validation.
  const policy = functionRetryPolicy(config({}));
  assert.deepEqual(policy, { maxAttempts: 4, baseBackoffMs: 1000, maxBackoffMs: 300_000 });
  assert.deepEqual(resolveRetryPolicy(policy, "$"), { ...policy, maxEventAgeMs: 24 * 60 * 60 * 1000 });
  assert.equal(functionQueue("billing"), "rule:default/function.billing/fn");
  assert.deepEqual(functionRetryPolicy(config({ retry: { attempts: 0, backoff: { initial: "1.4ms", max: 2.6 } } })), { maxAttempts: 1, baseBackoffMs: 1, maxBackoffMs: 3 });
});

test("wire - retry settings the bus cannot take fail with the function and the field named", () => {
  for (const [retry, path] of [
    [{ attempts: 1000 }, "$.retry.attempts"],
    [{ backoff: { max: "2d" } }, "$.retry.backoff.max"],
    [{ backoff: { initial: "2d", max: "3d" } }, "$.retry.backoff.initial"],
  ] as const) {
    assert.throws(
      () => functionRules([config({ retry })]),
      (err: unknown) => isSluiceError(err, "E_CONFIG_INVALID") && err.path === path && err.message.startsWith(`function "billing": ${path.slice(2)}`),
      JSON.stringify(retry),
    );
  }
});

test("wire - the first refused entry of a publish becomes the error", () => {
  assert.equal(publishError({ entries: [{ eventId: "a" }, { eventId: "b", duplicate: true }] }), undefined);
  const err = publishError({ entries: [{ eventId: "a" }, { errorCode: "E_EVENT_INVALID", errorMessage: "source is required", path: "$[1].source" }] });
  assert.ok(isSluiceError(err, "E_EVENT_INVALID"));
  assert.equal(err.path, "$[1].source");
});
