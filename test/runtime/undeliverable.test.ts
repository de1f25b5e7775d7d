import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { createRuntime } from "../../src/runtime/runtime.ts";
import { event, noEmit, tempDir, writeFunction } from "./helpers.ts";

/** An object nested `levels` deep: past what structured clone and JSON serialization can copy. */
function nested(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}

for (const isolation of ["worker", "process"] as const) {
  test(`runtime ${isolation} mode - an event too deep to copy fails its invocation only; the instance goes on`, async () => {
    const dir = tempDir();
    const file = writeFunction(dir, "echo", `isolation: "${isolation}", instanceConcurrency: 4,`, `return { ok: true, pid: process.pid };`);
    const runtime = await createRuntime({ functions: [{ file }], emit: noEmit });
    try {
      const before = (await runtime.invoke("echo", event("x", { n: 1 }))) as { pid: number };
      // Sent in one batch with healthy invocations: those still run.
      const results = await Promise.allSettled([
        runtime.invoke("echo", event("x", nested(20_000))),
        runtime.invoke("echo", event("x", { n: 2 })),
        runtime.invoke("echo", event("x", { n: 3 })),
      ]);
      assert.equal(results[0].status, "rejected");
      const err = (results[0] as PromiseRejectedResult).reason as { code: string; retryable: boolean; message: string };
      assert.equal(err.code, "E_EVENT_INVALID");
      assert.equal(err.retryable, false);
      assert.match(err.message, /could not be handed to an instance of echo/);
      assert.deepEqual(results.slice(1).map((r) => r.status), ["fulfilled", "fulfilled"]);
      const after = (await runtime.invoke("echo", event("x", { n: 4 }))) as { pid: number };
      assert.equal(after.pid, before.pid, "the same instance served before and after");
    } finally {
      await runtime.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("runtime - a result too deep to copy back fails that invocation with a clear error", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "deep", ``, `let v: any = 1; for (let i = 0; i < 20000; i++) v = { a: v }; return data.deep ? v : "flat";`);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit });
  try {
    await assert.rejects(runtime.invoke("deep", event("x", { deep: true })), /could not be copied to the host/);
    assert.equal(await runtime.invoke("deep", event("x", { deep: false })), "flat");
  } finally {
    await runtime.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
