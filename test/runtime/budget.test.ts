import { test } from "node:test";
import assert from "node:assert/strict";
import type { CloudEvent } from "../../src/event/types.ts";
import { createRuntime } from "../../src/runtime/runtime.ts";
import type { InvocationRecord } from "../../src/runtime/metering.ts";
import { event, tempDir, uuidV7, writeFunction } from "./helpers.ts";

test("runtime budget - crossing an invocation budget emits sluice.budget.exceeded once and throttles until the window ends", async () => {
  const dir = tempDir();
  let now = Date.UTC(2026, 0, 1, 10, 0, 0);
  const published: CloudEvent[] = [];
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "metered", `budget: { invocations: 3, per: "1h", throttle: true },`, "return 'ok';") }],
    emit: async (events) => {
      published.push(...events);
    },
    clock: { now: () => now },
  });
  try {
    for (let i = 0; i < 3; i++) assert.equal(await runtime.invoke("metered", event("x")), "ok");
    assert.equal(published.length, 1);
    assert.equal(published[0]!.type, "sluice.budget.exceeded");
    assert.equal(published[0]!.subject, "metered");
    assert.match(published[0]!.id, uuidV7, "a time-sortable id");
    assert.deepEqual((published[0]!.data as { invocations: number }).invocations, 3);
    await assert.rejects(runtime.invoke("metered", event("x")), { code: "E_THROTTLED", retryable: true });
    await assert.rejects(runtime.deliver("metered", event("x"), { attempt: 1 }), { code: "E_THROTTLED" });
    assert.equal(published.length, 1, "announced once per window");
    const m = runtime.metrics().functions.metered!;
    assert.equal(m.throttled, 2);
    assert.equal(m.budget?.exceeded, true);
    now += 3_600_000; // the next window
    assert.equal(await runtime.invoke("metered", event("x")), "ok");
    assert.equal(runtime.metrics().functions.metered!.budget?.invocations, 1);
  } finally {
    await runtime.close();
  }
});

test("runtime budget - GB-seconds are metered per invocation; a budget without throttle only announces", async () => {
  const dir = tempDir();
  const published: CloudEvent[] = [];
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "heavy", `memory: 1024, budget: { gbSeconds: 0.05, per: "1d" },`, "await sleep(80); return 'ok';") }],
    emit: async (events) => {
      published.push(...events);
    },
  });
  const records: InvocationRecord[] = [];
  runtime.on("invocation", (r) => records.push(r));
  try {
    await runtime.invoke("heavy", event("x"));
    await runtime.invoke("heavy", event("x"));
    assert.equal(records.length, 2);
    for (const r of records) {
      assert.equal(r.memoryMb, 1024);
      assert.ok(r.durationMs >= 80, `duration ${r.durationMs}`);
      assert.equal(r.gbSeconds, r.durationMs / 1000);
      assert.equal(r.outcome, "success");
    }
    assert.deepEqual(records.map((r) => r.cold), [true, false]);
    assert.equal(published.filter((e) => e.type === "sluice.budget.exceeded").length, 1);
    const m = runtime.metrics().functions.heavy!;
    assert.ok(Math.abs(m.gbSeconds - (records[0]!.gbSeconds + records[1]!.gbSeconds)) < 1e-9);
    assert.equal(m.throttled, 0);
  } finally {
    await runtime.close();
  }
});
