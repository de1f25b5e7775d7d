/**
 * How the bus reads a failed attempt: final or retried (by `code` and `retryable`, never by prototype) and the
 * text it records as the last error (the runtime's `reason` when there is one).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { classifyFailure, failureText } from "../../src/bus/handler-errors.ts";
import { decideAfterFailure, resolveRetryPolicy } from "../../src/bus/retry.ts";
import { ErrorCode, SluiceError } from "../../src/errors.ts";

/** An error as it arrives from the runtime: coded, with the reason it recorded. */
const runtimeError = (code: ErrorCode, message: string, reason: string, retryable: boolean) =>
  Object.assign(new SluiceError(code, message, { retryable }), { reason, invocationId: "inv-1" });
/** The same error after a JSON round trip (another thread or process): no prototype, same fields. */
const rebuilt = (err: SluiceError & { reason: string }) => ({ ...(JSON.parse(JSON.stringify(err)) as object), reason: err.reason });

test("failure classification - a Sluice error with retryable false is final, with its own reason when it is a token", () => {
  const loop = runtimeError(ErrorCode.RecursiveLoop, "recursive-loop: the event chain went past 16 hops", "recursive-loop", false);
  assert.deepEqual(classifyFailure(loop), { kind: "non-retriable", reason: "recursive-loop" });
  assert.deepEqual(classifyFailure(rebuilt(loop)), { kind: "non-retriable", reason: "recursive-loop" });
  assert.deepEqual(classifyFailure({ code: ErrorCode.RecursiveLoop, message: "x", retryable: false }), { kind: "non-retriable", reason: "recursive-loop" });
  assert.deepEqual(classifyFailure(new SluiceError(ErrorCode.EventInvalid, "idempotency key missing", { path: "$.data.id" })), { kind: "non-retriable" });
  // A reason that is free text (`error: <message>`) is not a dead-letter reason.
  assert.deepEqual(classifyFailure(runtimeError(ErrorCode.NonRetriable, "bad input", "error: bad input", false)), { kind: "non-retriable" });
});

test("failure classification - retryable errors, transient codes, unknown codes and plain errors are retried", () => {
  assert.deepEqual(classifyFailure(runtimeError(ErrorCode.HandlerTimeout, "timeout: f ran past 10 ms", "timeout", true)), { kind: "retry" });
  assert.deepEqual(classifyFailure(runtimeError(ErrorCode.HandlerCrashed, "crashed: exit 3", "crashed", true)), { kind: "retry" });
  // States of this process, never of the event, even when the flag was left false.
  for (const code of [ErrorCode.Closed, ErrorCode.Backpressure, ErrorCode.StoreUnavailable, ErrorCode.LeaseLost, ErrorCode.Throttled]) {
    assert.deepEqual(classifyFailure(new SluiceError(code, "transient")), { kind: "retry" }, code);
  }
  assert.deepEqual(classifyFailure({ code: "E_SOMETHING_ELSE", retryable: false }), { kind: "retry" });
  assert.deepEqual(classifyFailure(Object.assign(new Error("x"), { retryable: false })), { kind: "retry" });
});

test("failure classification - a final failure dead-letters on its first attempt with its reason", () => {
  const policy = resolveRetryPolicy({ maxAttempts: 5 }, "$");
  const loop = classifyFailure(runtimeError(ErrorCode.RecursiveLoop, "recursive-loop: x", "recursive-loop", false));
  assert.deepEqual(decideAfterFailure(loop, 1, 0, 10, policy, () => 0.5), { action: "dead", reason: "recursive-loop" });
});

test("failure classification - the last error is the runtime's reason with its detail, else CODE: message", () => {
  assert.equal(failureText(runtimeError(ErrorCode.HandlerTimeout, "timeout: billing ran past 30000 ms", "timeout", true)), "timeout: billing ran past 30000 ms");
  assert.equal(failureText(runtimeError(ErrorCode.HandlerOutOfMemory, "out-of-memory: hog exceeded 32 MB", "out-of-memory", true)), "out-of-memory: hog exceeded 32 MB");
  assert.equal(failureText(runtimeError(ErrorCode.HandlerCrashed, "crashed: the instance exited with code 3", "crashed", true)), "crashed: the instance exited with code 3");
  assert.equal(failureText(runtimeError(ErrorCode.HandlerError, "error: boom", "error: boom", true)), "error: boom");
  assert.equal(failureText(runtimeError(ErrorCode.NonRetriable, "bad input", "error: bad input", false)), "error: bad input");
  assert.equal(failureText(runtimeError(ErrorCode.RetryAfter, "error in upstream", "error: error in upstream", true)), "error: error in upstream");
  assert.equal(failureText(rebuilt(runtimeError(ErrorCode.HandlerTimeout, "timeout: f ran past 5 ms", "timeout", true))), "timeout: f ran past 5 ms");
  // Without a reason (webhooks, in-process handlers): the code and the message.
  assert.equal(failureText(new SluiceError(ErrorCode.WebhookFailed, "503 from target", { retryable: true })), "E_WEBHOOK_FAILED: 503 from target");
  assert.equal(failureText(new Error("down")), "down");
  assert.equal(failureText(runtimeError(ErrorCode.HandlerError, "error: x".padEnd(3000, "x"), "error: x".padEnd(3000, "x"), true)).length, 2001);
});
