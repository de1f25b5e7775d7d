import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { createRuntime } from "../../src/runtime/runtime.ts";
import { event, noEmit, tempDir, writeFunction } from "./helpers.ts";

// The handler counts its runs in a file of its own folder, so the count survives runtime restarts.
const countingBody = `
  const { appendFileSync } = await import("node:fs");
  appendFileSync(new URL("./runs.log", import.meta.url).pathname.replace(/[^/]*$/, "") + "runs.log", data.orderId + "\\n");
  await sleep(100);
  return { charged: data.orderId, at: Date.now() };`;

test("runtime idempotency - a completed key is skipped with its first result, across a restart, on a real SQLite store", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "charge", `idempotency: { key: "data.orderId" },`, countingBody);
  const dbPath = join(tempDir("sluice-db-"), "state.db");
  const runs = async () => {
    const { readFileSync, existsSync } = await import("node:fs");
    const log = join(dir, "runs.log");
    return existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
  };

  let store = await createSqliteStore({ path: dbPath });
  let runtime = await createRuntime({ functions: [{ file }], emit: noEmit, state: store.state });
  const first = (await runtime.invoke("charge", event("order.created", { orderId: "o-1" }))) as { at: number };
  // A different event (new id) with the same key: skipped, first result returned.
  const again = await runtime.invoke("charge", event("order.created", { orderId: "o-1" }));
  assert.deepEqual(again, first);
  assert.equal(runtime.metrics().functions.charge!.skipped, 1);
  await runtime.close();
  await store.close();

  store = await createSqliteStore({ path: dbPath });
  runtime = await createRuntime({ functions: [{ file }], emit: noEmit, state: store.state });
  try {
    assert.deepEqual(await runtime.invoke("charge", event("order.created", { orderId: "o-1" })), first, "still skipped after a restart");
    await runtime.invoke("charge", event("order.created", { orderId: "o-2" }));
    assert.deepEqual(await runs(), ["o-1", "o-2"]);
  } finally {
    await runtime.close();
    await store.close();
  }
});

test("runtime idempotency - concurrent duplicates run once; a failure releases the key", async () => {
  const dir = tempDir();
  const file = writeFunction(
    dir,
    "once",
    `idempotency: true, concurrency: 5,`,
    `if (data.fail) throw new Error("declined"); ${countingBody}`,
  );
  const store = await createSqliteStore({ path: join(tempDir("sluice-db-"), "state.db") });
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, state: store.state });
  try {
    // Default key: source + id. Five copies of one event at once.
    const e = event("order.created", { orderId: "o-7" });
    const results = await Promise.all(Array.from({ length: 5 }, () => runtime.invoke("once", e)));
    for (const r of results) assert.deepEqual(r, results[0]);
    const { readFileSync } = await import("node:fs");
    assert.deepEqual(readFileSync(join(dir, "runs.log"), "utf8").trim().split("\n"), ["o-7"], "ran once");

    const failing = event("order.created", { orderId: "o-8", fail: true });
    await assert.rejects(runtime.invoke("once", failing), { code: "E_HANDLER_ERROR" });
    // The key was released: the retry runs (and fails again) instead of being skipped.
    await assert.rejects(runtime.invoke("once", failing), { code: "E_HANDLER_ERROR" });
    assert.equal(runtime.metrics().functions.once!.failures, 2);
  } finally {
    await runtime.close();
    await store.close();
  }
});

test("runtime idempotency - a function with idempotency needs a state store, and a missing key is a typed error", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "keyed", `idempotency: { key: "data.orderId" },`, "return 1;");
  await assert.rejects(createRuntime({ functions: [{ file }], emit: noEmit }), { code: "E_CONFIG_INVALID", path: "$.state" });
  const store = await createSqliteStore({ path: join(tempDir("sluice-db-"), "state.db") });
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, state: store.state });
  try {
    await assert.rejects(runtime.invoke("keyed", event("x", {})), { code: "E_EVENT_INVALID", path: "$.data.orderId" });
  } finally {
    await runtime.close();
    await store.close();
  }
});
