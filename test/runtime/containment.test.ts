import { test } from "node:test";
import assert from "node:assert/strict";
import { createRuntime, type InvocationError, type Runtime } from "../../src/runtime/runtime.ts";
import type { InvocationRecord } from "../../src/runtime/metering.ts";
import { event, noEmit, tempDir, within, writeFunction } from "./helpers.ts";

const faultyBody = `
  switch (event.type) {
    case "throw": throw new Error("boom");
    case "reject": return Promise.reject(new TypeError("rejected on purpose"));
    case "non-retriable": throw new NonRetriableError("bad input");
    case "retry-after": throw new RetryAfterError(1234, "later");
    case "exit": process.exit(3);
    case "loop": for (;;) {}
    case "oom": { const hog: number[][] = []; for (;;) hog.push(new Array(1_000_000).fill(hog.length)); }
    case "signal": return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve({ aborted: true, msBeforeDeadline: ctx.deadline - Date.now() })));
    default: return "ok";
  }`;

const failures = [
  { type: "throw", code: "E_HANDLER_ERROR", reason: "error: boom", retryable: true },
  { type: "reject", code: "E_HANDLER_ERROR", reason: "error: rejected on purpose", retryable: true },
  { type: "non-retriable", code: "E_NON_RETRIABLE", reason: "error: bad input", retryable: false },
  { type: "retry-after", code: "E_RETRY_AFTER", reason: "error: later", retryable: true },
  { type: "exit", code: "E_HANDLER_CRASHED", reason: "crashed", retryable: true },
  { type: "loop", code: "E_HANDLER_TIMEOUT", reason: "timeout", retryable: true },
  { type: "oom", code: "E_HANDLER_OUT_OF_MEMORY", reason: "out-of-memory", retryable: true, fn: "hog" },
] as const;

async function containmentRun(isolation: "worker" | "process"): Promise<void> {
  const dir = tempDir();
  const runtime: Runtime = await createRuntime({
    functions: [
      { file: writeFunction(dir, "faulty", `timeout: "2s", memory: 64, isolation: "${isolation}", concurrency: 10,`, faultyBody) },
      // Out of memory gets its own function with a long timeout: on a loaded machine the heap can take
      // seconds to fill, and the test is about the OOM being reported as such, not about speed.
      { file: writeFunction(dir, "hog", `timeout: "60s", memory: 32, isolation: "${isolation}",`, faultyBody) },
      { file: writeFunction(dir, "healthy", `isolation: "${isolation}", concurrency: 2,`, `return { n: data.n };`) },
    ],
    emit: noEmit,
    limits: { maxInstances: 16 },
  });
  const records: InvocationRecord[] = [];
  runtime.on("invocation", (r) => records.push(r));
  try {
    // Warm the healthy function, then keep it busy while every failure mode happens at once.
    assert.deepEqual(await runtime.invoke("healthy", event("ping", { n: -1 })), { n: -1 });
    let stop = false;
    const served: number[] = [];
    const healthyLoop = (async () => {
      for (let n = 0; !stop; n++) {
        const r = (await runtime.invoke("healthy", event("ping", { n }))) as { n: number };
        served.push(r.n);
      }
    })();
    const outcomes = await within(
      Promise.all(failures.map((f) => runtime.invoke("fn" in f ? f.fn : "faulty", event(f.type)).then((v) => ({ ok: v }), (err: InvocationError) => ({ err })))),
      90_000,
      "all failures",
    );
    const servedDuringFailures = served.length;
    stop = true;
    await healthyLoop;

    for (const [i, f] of failures.entries()) {
      const outcome = outcomes[i]!;
      assert.ok("err" in outcome, `${f.type} should fail`);
      assert.equal(outcome.err.code, f.code, `${f.type}: code`);
      assert.equal(outcome.err.reason, f.reason, `${f.type}: reason`);
      assert.equal(outcome.err.retryable, f.retryable, `${f.type}: retryable`);
      assert.match(outcome.err.invocationId, /^[0-9a-f-]{36}$/);
    }
    assert.equal((outcomes[3] as { err: { delayMs?: number } }).err.delayMs, 1234);
    assert.ok(servedDuringFailures >= 5, `the healthy function kept serving (${servedDuringFailures} invocations)`);
    assert.deepEqual(served, served.map((_, i) => i), "no healthy invocation was lost");

    // The faulty function's dead instances were replaced: it still serves, and ctx.signal fires before the deadline.
    assert.equal(await runtime.invoke("faulty", event("fine")), "ok");
    const signalled = (await runtime.invoke("faulty", event("signal"))) as { aborted: boolean; msBeforeDeadline: number };
    assert.equal(signalled.aborted, true);
    assert.ok(signalled.msBeforeDeadline > 0 && signalled.msBeforeDeadline <= 300, `signal ${signalled.msBeforeDeadline} ms before the deadline`);

    const m = runtime.metrics();
    assert.equal(m.functions.faulty!.failures, failures.length - 1);
    assert.equal(m.functions.hog!.failures, 1);
    assert.equal(m.functions.healthy!.failures, 0);
    const byOutcome = (o: string) => records.filter((r) => r.functionName !== "healthy" && r.outcome === o).length;
    assert.equal(byOutcome("timeout"), 1);
    assert.equal(byOutcome("out-of-memory"), 1);
    assert.equal(byOutcome("crashed"), 1);
    assert.equal(byOutcome("error"), 4);
  } finally {
    await runtime.close();
  }
}

test("runtime containment - worker mode: throw, reject, non-retriable, retry-after, exit, infinite loop and OOM fail only their invocation", async () => {
  await containmentRun("worker");
});

test("runtime containment - process mode: the same failures are contained in child processes", async () => {
  await containmentRun("process");
});

test("runtime containment - a function file that throws at load is reported, the others load", async () => {
  const dir = tempDir();
  const bad = writeFunction(dir, "bad", "", "return 1;");
  const { writeFileSync, readFileSync } = await import("node:fs");
  writeFileSync(bad, `${readFileSync(bad, "utf8")}\nthrow new Error('top-level failure');\n`);
  await assert.rejects(
    createRuntime({ functions: [{ file: bad }], emit: noEmit }),
    (err: Error & { code?: string }) => err.code === "E_CONFIG_INVALID" && /top-level failure/.test(err.message),
  );
  await assert.rejects(createRuntime({ functions: [{ file: `${dir}/missing.ts` }], emit: noEmit }), { code: "E_CONFIG_INVALID" });
});

test("runtime containment - each invocation times out at its own deadline, a shorter one dispatched after a longer one included", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [
      { file: writeFunction(dir, "long", `timeout: "2s",`, "for (;;) {}") },
      { file: writeFunction(dir, "short", `timeout: "200ms",`, "for (;;) {}") },
    ],
    emit: noEmit,
  });
  const records: InvocationRecord[] = [];
  runtime.on("invocation", (r) => records.push(r));
  try {
    const longReady = new Promise<void>((resolve) => runtime.on("instance", (c) => c.functionName === "long" && c.state === "ready" && resolve()));
    const long = runtime.invoke("long", event("x")).catch((err: InvocationError) => err);
    await within(longReady, 20_000, "the long function's instance"); // dispatched on ready: its deadline is armed first
    const short = await within(runtime.invoke("short", event("x")).catch((err: InvocationError) => err), 20_000, "the short timeout");
    assert.equal((short as InvocationError).code, "E_HANDLER_TIMEOUT");
    assert.equal(((await long) as InvocationError).code, "E_HANDLER_TIMEOUT");
    const took = (name: string) => records.find((r) => r.functionName === name)!.durationMs;
    assert.ok(took("short") >= 200 && took("short") < 1500, `short timed out after ${took("short")} ms, not at the long one's deadline`);
    assert.ok(took("long") >= 2000, `long ran its full 2 s (${took("long")} ms)`);
  } finally {
    await runtime.close();
  }
});
