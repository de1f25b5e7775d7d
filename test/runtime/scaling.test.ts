import { test } from "node:test";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { createRuntime, type InstanceChange } from "../../src/runtime/runtime.ts";
import type { InvocationRecord } from "../../src/runtime/metering.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { event, maxOverlap, noEmit, tempDir, within, writeFunction } from "./helpers.ts";

const timed = `const start = Date.now(); await sleep(data.ms ?? 100); return { start, end: Date.now(), threadId };`;
type Timed = { start: number; end: number; threadId: number };
/** Waits until `data.parties` invocations have arrived at the folder `data.barrier` (or 20 s passed). */
const rendezvous = `const start = Date.now();
  const { writeFileSync, readdirSync } = await import("node:fs");
  writeFileSync(data.barrier + "/" + ctx.invocationId, "");
  while (readdirSync(data.barrier).length < data.parties && Date.now() - start < 20000) await sleep(10);
  return { start, end: Date.now(), threadId, met: readdirSync(data.barrier).length >= data.parties };`;

test("runtime scaling - scales from zero on the first event and back to zero after the idle timeout", async () => {
  const dir = tempDir();
  const clock = new ManualClock(Date.now());
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "lazy", "", "return 'hi';") }],
    emit: noEmit,
    clock,
    limits: { idleTimeoutMs: 300 },
  });
  try {
    assert.deepEqual(runtime.metrics().functions.lazy!.instances, { starting: 0, idle: 0, busy: 0 }, "no instance before work");
    assert.equal(runtime.metrics().instances.total, 0);
    const records: InvocationRecord[] = [];
    runtime.on("invocation", (r) => records.push(r));
    assert.equal(await runtime.invoke("lazy", event("x")), "hi");
    assert.equal(await runtime.invoke("lazy", event("x")), "hi");
    assert.deepEqual(records.map((r) => r.cold), [true, false], "first cold, then warm");
    assert.deepEqual(runtime.metrics().functions.lazy!.instances, { starting: 0, idle: 1, busy: 0 });
    const stopped = new Promise<InstanceChange>((resolve) => runtime.on("instance", (c) => c.state === "stopped" && resolve(c)));
    clock.advance(300);
    const change = await within(stopped, 5000, "scale to zero");
    assert.equal(change.exit, "terminated");
    assert.equal(runtime.metrics().instances.total, 0, "scaled to zero");
    assert.equal(await runtime.invoke("lazy", event("x")), "hi", "and back from zero");
    const m = runtime.metrics().functions.lazy!;
    assert.equal(m.cold, 2);
    assert.equal(m.warm, 1);
  } finally {
    await runtime.close();
  }
});

test("runtime scaling - adds instances with the backlog up to concurrency, one event per instance", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "capped", "concurrency: 3,", timed) }],
    emit: noEmit,
    limits: { maxInstances: 10 },
  });
  try {
    const results = (await Promise.all(Array.from({ length: 12 }, () => runtime.invoke("capped", event("x", { ms: 150 }))))) as Timed[];
    assert.equal(maxOverlap(results), 3, "three ran at once, never more");
    assert.equal(new Set(results.map((r) => r.threadId)).size, 3, "three instances");
    for (const id of new Set(results.map((r) => r.threadId))) {
      assert.equal(maxOverlap(results.filter((r) => r.threadId === id)), 1, "one event at a time per instance");
    }
  } finally {
    await runtime.close();
  }
});

test("runtime scaling - instanceConcurrency lets one instance take several events", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "io", "concurrency: 1, instanceConcurrency: 4,", timed) }],
    emit: noEmit,
  });
  try {
    const results = (await Promise.all(Array.from({ length: 8 }, () => runtime.invoke("io", event("x", { ms: 150 }))))) as Timed[];
    assert.equal(new Set(results.map((r) => r.threadId)).size, 1);
    assert.equal(maxOverlap(results), 4);
  } finally {
    await runtime.close();
  }
});

test("runtime scaling - the node-wide limit caps all functions, reservedConcurrency keeps a function's share", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [
      { file: writeFunction(dir, "greedy", "concurrency: 10,", timed) },
      { file: writeFunction(dir, "other", "concurrency: 10,", timed) },
      { file: writeFunction(dir, "reserved", "reservedConcurrency: 2,", rendezvous) },
    ],
    emit: noEmit,
    limits: { maxInstances: 5 },
  });
  try {
    // greedy and other flood the shared pool (5 - 2 reserved = 3 instances).
    const flood = [
      ...Array.from({ length: 12 }, () => runtime.invoke("greedy", event("x", { ms: 200 }))),
      ...Array.from({ length: 12 }, () => runtime.invoke("other", event("x", { ms: 200 }))),
    ];
    // Both reserved invocations must be running at the same moment: each waits (up to 20 s) for the other to
    // arrive, so the check does not depend on how fast instances start on a loaded machine.
    const barrier = mkdtempSync(join(dir, "barrier-"));
    const reserved = (await Promise.all(
      Array.from({ length: 2 }, () => runtime.invoke("reserved", event("x", { barrier, parties: 2 }))),
    )) as (Timed & { met: boolean })[];
    assert.deepEqual(reserved.map((r) => r.met), [true, true], "the reserved function ran both at once while the pool was full");
    const shared = (await Promise.all(flood)) as Timed[];
    assert.ok(maxOverlap(shared) <= 3, `shared pool respected (${maxOverlap(shared)})`);
    const sharedEnd = Math.max(...shared.map((r) => r.end));
    assert.ok(Math.max(...reserved.map((r) => r.end)) < sharedEnd, "it did not wait for the flood to drain");
    const all = [...shared, ...reserved];
    assert.ok(maxOverlap(all) <= 5, "never more than maxInstances");
    // Fair turns across functions: "other" did not wait for greedy's whole backlog, though greedy came first.
    const greedyStarts = shared.slice(0, 12).map((r) => r.start);
    const otherStarts = shared.slice(12).map((r) => r.start);
    assert.ok(Math.min(...otherStarts) < Math.max(...greedyStarts));
  } finally {
    await runtime.close();
  }
});

test("runtime scaling - a full queue throttles with E_THROTTLED, minInstances stay warm", async () => {
  const dir = tempDir();
  const clock = new ManualClock(Date.now());
  const runtime = await createRuntime({
    functions: [
      { file: writeFunction(dir, "narrow", "concurrency: 1,", timed) },
      { file: writeFunction(dir, "warm", "minInstances: 1,", "return threadId;") },
    ],
    emit: noEmit,
    clock,
    limits: { maxQueuedPerFunction: 2, idleTimeoutMs: 100 },
  });
  try {
    const settled = await Promise.allSettled(Array.from({ length: 6 }, () => runtime.invoke("narrow", event("x", { ms: 100 }))));
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected");
    assert.ok(rejected.length >= 3, `${rejected.length} throttled`);
    for (const r of rejected) {
      assert.equal(r.reason.code, "E_THROTTLED");
      assert.equal(r.reason.retryable, true);
    }
    assert.equal(runtime.metrics().functions.narrow!.throttled, rejected.length);
    // minInstances: the warm function has an instance without any work, and keeps it past the idle timeout.
    const ready = runtime.metrics().functions.warm!.instances;
    assert.equal(ready.starting + ready.idle, 1);
    const first = await runtime.invoke("warm", event("x"));
    clock.advance(400); // longer than idleTimeoutMs
    assert.equal(runtime.metrics().functions.warm!.instances.idle, 1);
    assert.equal(await runtime.invoke("warm", event("x")), first, "the same instance served both");
  } finally {
    await runtime.close();
  }
});
