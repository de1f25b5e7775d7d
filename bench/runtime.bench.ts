/**
 * Function runtime: cold start (work arrives → handler starts), warm no-op invocations per second at concurrency
 * 1, 8 and 64 through `runtime.deliver()` (the bus's function handler), and memory per idle instance in worker and
 * process mode; next to a bare worker_threads echo (one postMessage round trip per call, same concurrency) measured
 * in the same run, which is the limit for this design.
 *
 * Run: npm run bench -- runtime        (SLUICE_BENCH_SECONDS per throughput point, default 2)
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { CloudEvent } from "../src/event/types.ts";
import { createRuntime, type InstanceChange, type Runtime } from "../src/runtime/runtime.ts";

const seconds = Number(process.env.SLUICE_BENCH_SECONDS ?? 2);
const functionApi = fileURLToPath(new URL("../src/runtime/function-api.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-runtime-"));

function writeFn(name: string, config: string): string {
  const file = join(dir, `${name}.ts`);
  writeFileSync(
    file,
    `import { defineFunction } from ${JSON.stringify(functionApi)};
export default defineFunction({ name: ${JSON.stringify(name)}, ${config}
  handler() { return performance.timeOrigin + performance.now(); } });
`,
  );
  return file;
}

const ev = (): CloudEvent => ({ specversion: "1.0", id: randomUUID(), source: "bench", type: "bench.noop", data: { n: 1 } });
const emit = async (): Promise<void> => {};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const now = () => performance.timeOrigin + performance.now();

async function coldStarts(isolation: "worker" | "process", n: number): Promise<number[]> {
  const runtime = await createRuntime({
    functions: [{ file: writeFn(`cold-${isolation}`, `isolation: "${isolation}",`) }],
    emit,
    limits: { idleTimeoutMs: 0 },
  });
  const samples: number[] = [];
  let cold = 0;
  let fromStandby = 0;
  runtime.on("invocation", (r) => void (r.cold && cold++));
  runtime.on("instance", (c: InstanceChange) => void (c.state === "ready" && c.fromStandby && fromStandby++));
  try {
    for (let i = 0; i < n; i++) {
      const stopped = new Promise<void>((resolve) => {
        const off = runtime.on("instance", (c: InstanceChange) => {
          if (c.state === "stopped") {
            off();
            resolve();
          }
        });
      });
      // Worker mode: the standby worker (no function in it) is up, as it is between cold starts in service.
      if (isolation === "worker") await standbyReady(runtime);
      const arrived = now();
      const started = (await runtime.invoke(`cold-${isolation}`, ev())) as number;
      samples.push(started - arrived);
      await stopped; // scaled back to zero: the next one is cold again
    }
    // Every sample started a new function instance (none reused a warm one); in worker mode each adopted the standby.
    if (cold !== n) throw new Error(`${isolation}: ${n - cold} of ${n} cold-start samples ran on a warm instance`);
    if (isolation === "worker" && fromStandby !== n) throw new Error(`worker: ${n - fromStandby} of ${n} cold starts did not use the standby`);
  } finally {
    await runtime.close();
  }
  return samples;
}

async function standbyReady(runtime: Runtime): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (runtime.metrics().instances.standby < 1) {
    if (performance.now() > deadline) throw new Error("no standby worker within 10 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Baseline: a bare worker thread from `new Worker` to its first message (what any worker-based cold start pays). */
async function bareSpawns(n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = now();
    const worker = new Worker(`require("node:worker_threads").parentPort.postMessage(performance.timeOrigin + performance.now())`, {
      eval: true,
      execArgv: [],
    });
    const [startedAt] = (await once(worker, "message")) as [number];
    samples.push(startedAt - start);
    await worker.terminate();
  }
  return samples;
}

async function closedLoop(concurrency: number, call: () => Promise<unknown>): Promise<number> {
  // Warm-up, then measure.
  await Promise.all(Array.from({ length: concurrency }, () => call()));
  let count = 0;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await call();
        count++;
      }
    }),
  );
  return (count / (performance.now() - start)) * 1000;
}

async function bareEcho(concurrency: number): Promise<number> {
  const worker = new Worker(`const { parentPort } = require("node:worker_threads"); parentPort.on("message", (m) => parentPort.postMessage(m));`, {
    eval: true,
  });
  await once(worker, "online");
  const waiting = new Map<number, () => void>();
  let seq = 0;
  worker.on("message", (m: { id: number }) => {
    const done = waiting.get(m.id);
    waiting.delete(m.id);
    done?.();
  });
  const rate = await closedLoop(
    concurrency,
    () =>
      new Promise<void>((resolve) => {
        const id = ++seq;
        waiting.set(id, resolve);
        worker.postMessage({ id, event: ev() });
      }),
  );
  await worker.terminate();
  return rate;
}

async function warm(runtime: Runtime, name: string, concurrency: number): Promise<number> {
  return closedLoop(concurrency, () => runtime.deliver(name, ev(), { attempt: 1 }));
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) pids.push(Number(entry));
    } catch {
      // the process went away
    }
  }
  return pids;
}

async function idleMemory(isolation: "worker" | "process", n: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().rss;
  const childrenBefore = new Set(childPids());
  const name = `idle-${isolation}`;
  const runtime = await createRuntime({
    functions: [{ file: writeFn(name, `isolation: "${isolation}", minInstances: ${n}, concurrency: ${n},`) }],
    emit,
    // Per instance: the runtime's one standby worker is a fixed cost, not an instance's.
    limits: { maxInstances: n, standbyWorkers: 0 },
  });
  await new Promise<void>((resolve) => {
    const check = () => (runtime.metrics().functions[name]!.instances.idle === n ? resolve() : setTimeout(check, 20));
    check();
  });
  // Each instance ran one invocation, as an idle instance in service would have.
  await Promise.all(Array.from({ length: n }, () => runtime.invoke(name, ev())));
  await new Promise((r) => setTimeout(r, 500));
  gc?.();
  const own = process.memoryUsage().rss - before;
  const children = childPids()
    .filter((p) => !childrenBefore.has(p))
    .reduce((sum, pid) => sum + rssOf(pid), 0);
  await runtime.close();
  return (own + children) / n;
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

const bare = await bareSpawns(30);
const coldWorker = await coldStarts("worker", 30);
const coldProcess = await coldStarts("process", 10);

const runtime = await createRuntime({
  functions: [{ file: writeFn("noop", "concurrency: 1, instanceConcurrency: 64,") }],
  emit,
});
const rows: string[] = [];
for (const c of [1, 8, 64]) {
  const echo = await bareEcho(c);
  const ours = await warm(runtime, "noop", c);
  rows.push(`| warm no-op invocations/s, concurrency ${c} | ${fmt(ours)} | ${fmt(echo)} | ${(ours / echo).toFixed(2)} |`);
}
await runtime.close();

// End to end through the bus (SQLite store): publish N events in batches of 100 to a rule whose target is the
// function, until the last delivery is acked. The baseline is the same bus with an in-process no-op handler.
async function throughBus(concurrency: number | undefined, n: number): Promise<number> {
  const { createBroker } = await import("../src/bus/broker.ts");
  const { createSqliteStore } = await import("../src/store/sqlite/index.ts");
  const store = await createSqliteStore({ path: join(mkdtempSync(join(tmpdir(), "sluice-bench-rt-bus-")), "bus.db") });
  const broker = await createBroker({ store, limits: { concurrency: concurrency ?? 64 } });
  const name = `bus-${concurrency ?? "inline"}`;
  const runtime =
    concurrency === undefined
      ? undefined
      : await createRuntime({ functions: [{ file: writeFn(name, `concurrency: 1, instanceConcurrency: ${concurrency},`) }], emit });
  broker.setFunctionHandler(runtime ?? { deliver: async () => undefined });
  await broker.putRule({ name: "bench", pattern: { type: ["bench.noop"] }, targets: [{ id: "fn", function: name }] });
  if (runtime) await runtime.invoke(name, ev()); // warm
  let acked = 0;
  let done: (() => void) | undefined;
  broker.on("delivered", () => {
    if (++acked === n) done?.();
  });
  const all = new Promise<void>((r) => (done = r));
  const start = performance.now();
  for (let i = 0; i < n; i += 100) {
    const res = await broker.publish("default", Array.from({ length: Math.min(100, n - i) }, ev));
    if (res.failedEntryCount > 0) throw new Error("publish failed");
  }
  await all;
  const rate = (n / (performance.now() - start)) * 1000;
  await broker.close();
  await runtime?.close();
  await store.close();
  return rate;
}

const busN = Number(process.env.SLUICE_BENCH_BUS_N ?? 20_000);
const busBaseline = await throughBus(undefined, busN);
for (const c of [1, 8, 64]) {
  const ours = await throughBus(c, busN);
  rows.push(`| end to end through the bus (SQLite), function instanceConcurrency ${c} | ${fmt(ours)} | bus + in-process no-op: ${fmt(busBaseline)} | ${(ours / busBaseline).toFixed(2)} |`);
}

const memWorker = await idleMemory("worker", 8);
const memProcess = await idleMemory("process", 4);

console.log(`Node ${process.version}, ${seconds} s per throughput point; warm calls go through runtime.deliver() (the bus's function`);
console.log(`handler) to one instance with instanceConcurrency 64; the baseline is a bare worker echoing postMessage round trips.\n`);
console.log("| measure | runtime | bare worker_threads echo | ratio |");
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(r);
console.log("\n| cold start (work arrives → handler starts) | p50 ms | p99 ms | samples |");
console.log("|---|---:|---:|---:|");
console.log(`| baseline: bare worker thread, new Worker → first line runs | ${pct(bare, 50).toFixed(1)} | ${pct(bare, 99).toFixed(1)} | ${bare.length} |`);
console.log(`| worker mode | ${pct(coldWorker, 50).toFixed(1)} | ${pct(coldWorker, 99).toFixed(1)} | ${coldWorker.length} |`);
console.log(`| process mode (permission model) | ${pct(coldProcess, 50).toFixed(1)} | ${pct(coldProcess, 99).toFixed(1)} | ${coldProcess.length} |`);
console.log("\n| memory per idle instance (after one invocation) | MB |");
console.log("|---|---:|");
console.log(`| worker mode (host RSS growth / 8 instances) | ${mb(memWorker)} |`);
console.log(`| process mode (child RSS / 4 instances) | ${mb(memProcess)} |`);
