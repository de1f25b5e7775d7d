import { test } from "node:test";
import assert from "node:assert/strict";
import type { CloudEvent } from "../../src/event/types.ts";
import { createRuntime, type InstanceChange } from "../../src/runtime/runtime.ts";
import type { InvocationRecord } from "../../src/runtime/metering.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { event, noEmit, tempDir, within, writeFunction } from "./helpers.ts";

// Instances time ctx.signal on their own wall clock, so the manual clock starts at the real time.

test("runtime clock - ctx.deadline is on the instance's own clock, whatever clock the host runs on", async () => {
  const dir = tempDir();
  const clock = new ManualClock(Date.UTC(2001, 0, 1)); // far from the wall clock
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "remaining", `timeout: "30s",`, `return ctx.deadline - Date.now();`) }],
    emit: noEmit,
    clock,
    limits: { standbyWorkers: 0 },
  });
  try {
    const remaining = (await runtime.invoke("remaining", event("x"))) as number;
    assert.ok(remaining > 25_000 && remaining <= 30_000, `the handler sees ${remaining} ms left of its 30 s`);
  } finally {
    await runtime.close();
  }
});

test("runtime clock - a hung invocation times out when the clock passes its deadline, not before", async () => {
  const dir = tempDir();
  const clock = new ManualClock(Date.now());
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "hang", `timeout: "5s",`, `await ctx.emit({ type: "started", source: "test" }); await new Promise(() => {});`) }],
    emit: async (events: CloudEvent[]) => {
      if (events.some((e) => e.type === "started")) started();
    },
    clock,
    limits: { standbyWorkers: 0 },
  });
  try {
    const records: InvocationRecord[] = [];
    runtime.on("invocation", (r) => records.push(r));
    const stopped = new Promise<InstanceChange>((resolve) => runtime.on("instance", (c) => c.state === "stopped" && resolve(c)));
    const result = runtime.invoke("hang", event("x"));
    result.catch(() => undefined);
    await within(running, 20_000, "the handler to start");
    clock.advance(4_999);
    assert.equal(records.length, 0, "still running 1 ms before its deadline");
    clock.advance(1);
    assert.deepEqual(records.map((r) => [r.outcome, r.durationMs]), [["timeout", 5_000]], "timed out at the deadline, measured by the clock");
    await assert.rejects(result, { code: "E_HANDLER_TIMEOUT" });
    assert.equal((await within(stopped, 10_000, "the hung instance to stop")).exit, "terminated");
  } finally {
    await runtime.close();
  }
});

test("runtime clock - an idle instance stops once the clock has passed idleTimeoutMs since it last became idle", async () => {
  const dir = tempDir();
  const clock = new ManualClock(Date.now());
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "sometimes", "", "return 'hi';") }],
    emit: noEmit,
    clock,
    limits: { idleTimeoutMs: 400, standbyWorkers: 0 },
  });
  try {
    const stopped = new Promise<InstanceChange>((resolve) => runtime.on("instance", (c) => c.state === "stopped" && resolve(c)));
    const live = () => runtime.metrics().instances.total;
    await runtime.invoke("sometimes", event("x")); // idle from here: its idle timer is armed
    clock.advance(250);
    await runtime.invoke("sometimes", event("x")); // busy for a moment, idle again from here
    clock.advance(399);
    assert.equal(live(), 1, "kept: 649 ms since its first idle moment, 399 ms since its last");
    clock.advance(1);
    assert.equal(live(), 0, "stopped 400 ms after it last became idle");
    assert.equal((await within(stopped, 10_000, "the instance to stop")).exit, "terminated");
  } finally {
    await runtime.close();
  }
});
