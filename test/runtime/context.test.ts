import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pino } from "pino";
import type { CloudEvent } from "../../src/event/types.ts";
import { createRuntime, type InvocationError, type Runtime } from "../../src/runtime/runtime.ts";
import { event, noEmit, tempDir, uuidV7, within, writeFunction } from "./helpers.ts";

test("runtime context - ctx.emit children inherit correlationid and traceparent and add one hop", async () => {
  const dir = tempDir();
  const published: { events: CloudEvent[]; parent: CloudEvent | undefined }[] = [];
  const runtime = await createRuntime({
    functions: [
      {
        file: writeFunction(
          dir,
          "billing",
          "",
          `await ctx.emit({ type: "payment.captured", source: "billing", data: { orderId: data.orderId } });
           await ctx.emit([{ type: "a", source: "billing" }, { type: "b", source: "billing", correlationid: "mine" }]);
           try { await ctx.emit({ type: "", source: "billing" } as any); } catch (err) { return (err as any).code; }
           return "no error";`,
        ),
      },
    ],
    emit: async (events, parent) => {
      published.push({ events, parent });
    },
  });
  try {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const parent = event("order.created", { orderId: "o-1" }, { correlationid: "corr-1", traceparent, sluicehops: 3 });
    assert.equal(await runtime.invoke("billing", parent), "E_EVENT_INVALID", "a bad child is refused with a typed error");
    assert.equal(published.length, 2);
    const [first, second] = published;
    assert.equal(first!.parent!.id, parent.id);
    const child = first!.events[0]!;
    assert.equal(child.type, "payment.captured");
    assert.equal(child.specversion, "1.0");
    assert.match(child.id, uuidV7, "a time-sortable id, as the bus gives every event");
    assert.ok(typeof child.time === "string");
    assert.deepEqual(child.data, { orderId: "o-1" });
    assert.equal(child.correlationid, "corr-1");
    assert.equal(child.traceparent, traceparent);
    assert.equal(child.sluicehops, 4);
    assert.deepEqual(second!.events.map((e) => [e.type, e.correlationid, e.sluicehops]), [["a", "corr-1", 4], ["b", "mine", 4]]);

    // Without a correlation id, the chain is correlated by the root event's id.
    published.length = 0;
    const root = event("order.created", { orderId: "o-2" });
    await runtime.invoke("billing", root);
    assert.equal(published[0]!.events[0]!.correlationid, root.id);
    assert.equal(published[0]!.events[0]!.sluicehops, 1);
  } finally {
    await runtime.close();
  }
});

test("runtime context - a chain of emits is stopped at 16 hops with recursive-loop and sluice.loop.detected", async () => {
  const dir = tempDir();
  const deliveries: Promise<unknown>[] = [];
  const loopEvents: CloudEvent[] = [];
  let failed: ((err: InvocationError & { hops: number }) => void) | undefined;
  const failure = new Promise<InvocationError & { hops: number }>((resolve) => (failed = resolve));
  let runtime: Runtime | undefined;
  // A minimal bus: every emitted event is delivered back to the function that emitted it.
  const emit = async (events: CloudEvent[]) => {
    for (const e of events) {
      if (e.type === "sluice.loop.detected") {
        loopEvents.push(e);
        continue;
      }
      const hops = Number(e.sluicehops ?? 0);
      deliveries.push(
        runtime!.deliver("looper", e, { attempt: 1 }).catch((err: InvocationError) => failed!(Object.assign(err, { hops }))),
      );
    }
  };
  runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "looper", "", `await ctx.emit({ type: "again", source: "looper" }); return event.sluicehops ?? 0;`) }],
    emit,
  });
  try {
    const first = event("again");
    await runtime.invoke("looper", first);
    const err = await within(failure, 20_000, "the loop to be stopped");
    await Promise.all(deliveries);
    assert.equal(err.code, "E_RECURSIVE_LOOP");
    assert.equal(err.reason, "recursive-loop");
    assert.equal(err.retryable, false);
    assert.equal(err.hops, 16, "the invocation of the 16th hop could not emit a 17th");
    const m = runtime.metrics().functions.looper!;
    assert.equal(m.successes, 16, "hops 0..15 succeeded");
    assert.equal(m.failures, 1);
    assert.equal(loopEvents.length, 1);
    assert.match(loopEvents[0]!.id, uuidV7);
    assert.equal(loopEvents[0]!.correlationid, first.id);
    assert.equal((loopEvents[0]!.data as { functionName: string }).functionName, "looper");
  } finally {
    await runtime.close();
  }
});

test("runtime context - ctx.log lines reach the host's pino logger with function, invocation, event, attempt and correlation", async () => {
  const dir = tempDir();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: "trace" }, sink);
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "chatty", "", `ctx.log.info({ order: data.orderId }, "charging"); ctx.log.child({ step: 2 }).warn("careful"); return ctx.invocationId;`) }],
    emit: noEmit,
    logger,
  });
  try {
    const e = event("order.created", { orderId: "o-9" }, { correlationid: "corr-9" });
    const invocationId = await runtime.invoke("chatty", e, { attempt: 3 });
    const charging = lines.find((l) => l.msg === "charging");
    assert.ok(charging, "the info line arrived");
    assert.equal(charging.level, 30);
    assert.equal(charging.function, "chatty");
    assert.equal(charging.invocationId, invocationId);
    assert.equal(charging.eventId, e.id);
    assert.equal(charging.attempt, 3);
    assert.equal(charging.correlationId, "corr-9");
    assert.equal(charging.order, "o-9");
    const careful = lines.find((l) => l.msg === "careful");
    assert.equal(careful?.level, 40);
    assert.equal(careful?.step, 2);
  } finally {
    await runtime.close();
  }
});

test("runtime context - a caller's abort reaches ctx.signal whether the handler read it before or only after", async () => {
  const dir = tempDir();
  const callers = new Map<string, AbortController>();
  // The caller gives up while the handler waits for its emit: the abort travels to the instance ahead of the emit's answer.
  const emit = async (events: CloudEvent[]) => {
    for (const e of events) callers.get(e.subject!)?.abort();
  };
  const runtime = await createRuntime({
    functions: [
      {
        file: writeFunction(
          dir,
          "patient",
          "",
          `const early = data.readFirst ? ctx.signal : undefined;
           await ctx.emit({ type: "waiting", source: "patient", subject: data.caller });
           const signal = early ?? ctx.signal;
           return { aborted: signal.aborted, reason: signal.reason?.name };`,
        ),
      },
    ],
    emit,
  });
  try {
    for (const readFirst of [true, false]) {
      const caller = `caller-${readFirst}`;
      const controller = new AbortController();
      callers.set(caller, controller);
      const result = await runtime.invoke("patient", event("wait", { readFirst, caller }), { signal: controller.signal });
      assert.deepEqual(result, { aborted: true, reason: "AbortError" }, `signal read ${readFirst ? "before" : "after"} the abort`);
    }
  } finally {
    await runtime.close();
  }
});
