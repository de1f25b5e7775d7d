import { test } from "node:test";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createRuntime, type InstanceChange, type Runtime } from "../../src/runtime/runtime.ts";
import { event, noEmit, tempDir, within, writeFunction } from "./helpers.ts";

/** Resolves when `runtime.metrics()` satisfies `check` (polled), rejects after `ms`. */
async function until(runtime: Runtime, check: (m: ReturnType<Runtime["metrics"]>) => boolean, ms: number, what: string): Promise<void> {
  await within(
    (async () => {
      while (!check(runtime.metrics())) await new Promise((r) => setTimeout(r, 10));
    })(),
    ms,
    what,
  );
}

function readyEvents(runtime: Runtime): InstanceChange[] {
  const changes: InstanceChange[] = [];
  runtime.on("instance", (c) => {
    if (c.state === "ready") changes.push(c);
  });
  return changes;
}

const heap = `const { getHeapStatistics } = await import("node:v8");
  if (data.ms) await sleep(data.ms);
  return { threadId, heapLimit: getHeapStatistics().heap_size_limit };`;
type Answer = { threadId: number; heapLimit: number };

test("runtime standby - a cold start adopts the standby, a replacement starts, and it is never a function instance", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [{ file: writeFunction(dir, "adopter", "concurrency: 2,", heap) }],
    emit: noEmit,
  });
  try {
    await until(runtime, (m) => m.instances.standby === 1, 10_000, "standby ready");
    const before = runtime.metrics();
    assert.equal(before.instances.total, 0, "the standby is not counted as an instance");
    assert.deepEqual(before.functions.adopter!.instances, { starting: 0, idle: 0, busy: 0 }, "scale from zero: no instance before work");

    const ready = readyEvents(runtime);
    const first = (await runtime.invoke("adopter", event("x"))) as Answer;
    assert.equal(ready.length, 1);
    assert.equal(ready[0]!.fromStandby, true, "the cold start took the standby worker");
    assert.equal(runtime.metrics().functions.adopter!.cold, 1);

    await until(runtime, (m) => m.instances.standby === 1, 10_000, "replacement standby");
    const after = runtime.metrics();
    assert.equal(after.instances.total, 1, "one function instance; the replacement standby is not one");
    assert.deepEqual(after.functions.adopter!.instances, { starting: 0, idle: 1, busy: 0 });

    // Two at once need a second instance: it adopts the replacement, a thread other than the first.
    const [a, b] = (await Promise.all([runtime.invoke("adopter", event("x", { ms: 300 })), runtime.invoke("adopter", event("x", { ms: 300 }))])) as Answer[];
    assert.equal(ready.length, 2);
    assert.equal(ready[1]!.fromStandby, true, "the second cold start took the replacement");
    assert.equal(new Set([first.threadId, a!.threadId, b!.threadId]).size, 2, "two instances, two threads");
    await until(runtime, (m) => m.instances.standby === 1, 10_000, "second replacement");
    assert.equal(runtime.metrics().instances.total, 2);
  } finally {
    await runtime.close();
  }
  assert.equal(runtime.metrics().instances.standby, 0, "close stopped the standby");
});

test("runtime standby - a function whose memory differs from the standby's starts a fresh worker with its own limit", async () => {
  const dir = tempDir();
  const runtime = await createRuntime({
    functions: [
      { file: writeFunction(dir, "roomy", "memory: 256,", heap) },
      { file: writeFunction(dir, "plain", "", heap) },
    ],
    emit: noEmit,
  });
  try {
    await until(runtime, (m) => m.instances.standby === 1, 10_000, "standby ready");
    const ready = readyEvents(runtime);
    const roomy = (await runtime.invoke("roomy", event("x"))) as Answer;
    assert.equal(ready[0]!.fromStandby, false, "the 128 MB standby is not used for a 256 MB function");
    assert.equal(runtime.metrics().instances.standby, 1, "the standby is still there");
    const plain = (await runtime.invoke("plain", event("x"))) as Answer;
    assert.equal(ready[1]!.fromStandby, true, "a default-memory function takes it");
    assert.ok(roomy.heapLimit > plain.heapLimit, `the fresh worker has the larger heap limit (${roomy.heapLimit} > ${plain.heapLimit})`);
  } finally {
    await runtime.close();
  }
});

test("runtime standby - standbyWorkers 0 disables it, and process mode never has one", async () => {
  const dir = tempDir();
  const off = await createRuntime({ functions: [{ file: writeFunction(dir, "nostandby", "", heap) }], emit: noEmit, limits: { standbyWorkers: 0 } });
  try {
    const ready = readyEvents(off);
    await off.invoke("nostandby", event("x"));
    assert.equal(ready[0]!.fromStandby, false);
    assert.equal(off.metrics().instances.standby, 0);
  } finally {
    await off.close();
  }
  const proc = await createRuntime({ functions: [{ file: writeFunction(dir, "forked", `isolation: "process",`, "return process.pid;") }], emit: noEmit });
  try {
    const ready = readyEvents(proc);
    assert.notEqual(await proc.invoke("forked", event("x")), process.pid);
    assert.equal(ready[0]!.fromStandby, false);
    assert.equal(proc.metrics().instances.standby, 0);
  } finally {
    await proc.close();
  }
});

test("runtime standby - the standby worker does not keep the process alive", async () => {
  const dir = tempDir();
  const fnFile = writeFunction(dir, "lingering", "", "return 1;");
  const runtimeUrl = new URL("../../src/runtime/runtime.ts", import.meta.url).href;
  const script = join(dir, "main.mts");
  writeFileSync(
    script,
    `import { createRuntime } from ${JSON.stringify(runtimeUrl)};
const runtime = await createRuntime({ functions: [{ file: ${JSON.stringify(fnFile)} }], emit: async () => {} });
const deadline = Date.now() + 10000;
while (runtime.metrics().instances.standby < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
console.log("standby " + runtime.metrics().instances.standby);
// no close(): only the standby worker is left, and it must not hold the process open
`,
  );
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  try {
    const [code] = (await within(once(child, "exit"), 20_000, "the process exiting on its own")) as [number];
    assert.equal(code, 0);
    assert.equal(out.trim(), "standby 1");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test("runtime standby - a reload that changes the memory setting replaces the standby with one of the new setting", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "grower", "", heap);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, limits: { idleTimeoutMs: 0 } });
  try {
    await until(runtime, (m) => m.instances.standby === 1, 10_000, "standby ready");
    const ready = readyEvents(runtime);
    const small = (await runtime.invoke("grower", event("x"))) as Answer;
    writeFunction(dir, "grower", "memory: 256,", heap);
    await runtime.reload(file);
    await until(runtime, (m) => m.instances.standby === 1 && m.instances.total === 0, 10_000, "a 256 MB standby and no instance");
    const big = (await runtime.invoke("grower", event("x"))) as Answer;
    assert.deepEqual(ready.map((c) => c.fromStandby), [true, true], "both cold starts adopted a standby");
    assert.ok(big.heapLimit > small.heapLimit, `the new standby has the new limit (${big.heapLimit} > ${small.heapLimit})`);
  } finally {
    await runtime.close();
  }
});
